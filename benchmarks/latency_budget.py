"""Latency budgets on the macro space: how good the drawing estimate is, and what drawing costs.

On the macro space at 16x16 (Fashion-MNIST's default), one torch thread:

1. ``--n`` candidates drawn uniformly are measured (batch 1, median of 30 timed runs after 5
   warm-up runs; ``hypernas.graphs.latency``) and estimated (the per-node table, calibrated on
   the whole networks measured); reported: Spearman between the two, the median and 90th percentile
   of |estimate / measured - 1|, the spread (IQR / median) of the measurements themselves, and
   what a measurement and an estimate cost.
2. For limits at the 25th, 50th and 75th percentile of the measured latencies, ``--draw``
   candidates are drawn within the limit (``sample_within``): seconds per candidate, how many
   candidates were measured but not kept (the measurement put them over the limit, so they were
   drawn again; plus the two probes, the fastest and the largest candidate), and the share of the
   uniform draws the limit lets through, against which "drawn within, never thrown away"
   is judged.

One row per candidate (encoding, params, MACs, measured, IQR, estimate) and the summary go to
``results/latency_budget.json``.

Usage:
    python benchmarks/latency_budget.py --n 60 --draw 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

import hypernas as hn
from hypernas.graphs.latency import LatencyMeter
from hypernas.spaces.budget import Budget, sample_within

OUT = Path(__file__).parent / "results" / "latency_budget.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--draw", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    space = hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    cands = space.sample_many(args.n, seed=args.seed)
    meter = LatencyMeter()
    rows, t_measure, t_estimate = [], [], []
    for cand in cands:
        start = time.perf_counter()
        measured = meter.measure(cand.graph)
        t_measure.append(time.perf_counter() - start)
    for cand in cands:  # estimates after calibration, so every one uses the same factor
        start = time.perf_counter()
        estimate = meter.estimate(cand.graph)
        t_estimate.append(time.perf_counter() - start)
        measured = meter.measure(cand.graph)
        rows.append({"encoding": cand.encoding, "id": cand.id,
                     "params": hn.count_params(cand.graph), "macs": hn.count_macs(cand.graph),
                     "ms": measured["ms"], "iqr_ms": measured["iqr_ms"], "estimate_ms": estimate})
    errors = sorted(abs(r["estimate_ms"] / r["ms"] - 1) for r in rows)
    summary = {
        "n": len(rows),
        "spearman_estimate_measured": float(spearmanr([r["estimate_ms"] for r in rows],
                                                      [r["ms"] for r in rows]).statistic),
        "spearman_macs_measured": float(spearmanr([r["macs"] for r in rows],
                                                  [r["ms"] for r in rows]).statistic),
        "median_abs_rel_error": statistics.median(errors),
        "p90_abs_rel_error": errors[int(0.9 * (len(errors) - 1))],
        "median_rel_iqr": statistics.median(r["iqr_ms"] / r["ms"] for r in rows),
        "measure_s_median": statistics.median(t_measure),
        "estimate_s_median": statistics.median(t_estimate),
        "latency_ms_quartiles": statistics.quantiles([r["ms"] for r in rows], n=4),
    }
    draws = []
    for q, limit in zip((25, 50, 75), summary["latency_ms_quartiles"]):
        budget = Budget(max_latency_ms=round(limit, 3))
        before = {k for k in meter._rows}
        start = time.perf_counter()
        drawn = sample_within(space, budget, args.draw, seed=args.seed + q, meter=meter)
        seconds = time.perf_counter() - start
        measured_new = len(set(meter._rows) - before)
        draws.append({"quantile": q, "limit_ms": budget.max_latency_ms, "drawn": len(drawn),
                      "s_per_candidate": seconds / len(drawn),
                      "measured": measured_new, "measured_not_kept": measured_new - len(
                          {c.id for c in drawn} - before),
                      "uniform_share_within": sum(r["ms"] <= limit for r in rows) / len(rows),
                      "drawn_ms_median": statistics.median(meter.ms(c.graph) for c in drawn)})
    result = {"command": " ".join(["python", *sys.argv]), "summary": summary, "draws": draws,
              "rows": rows}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"summary": summary, "draws": draws}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
