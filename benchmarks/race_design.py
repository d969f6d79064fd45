"""Choosing the racing rule (``hypernas.ranking.racing``) on candidates scored in full.

Every full hypernet row keeps its rung estimates (the score after one batch of one weight
sample, after one batch of each sample, and the full score), so racing can be replayed exactly,
without scoring again, for any stopping rule. This script replays it on the full ranking that
``rank_scale.py`` wrote (``runs/rank-scale/rankings/full.jsonl``; for the 622 distinct cells of
``--n 1000`` the rows are committed as ``results/rank_scale_full_622.jsonl``) in the order the
candidates were scored, for each ``z`` and for two ways of reading a rung estimate:

- ``offset``: full score = estimate + mean(full - estimate) (the racing module's rule), standard
  error = sd(full - estimate);
- ``linear``: full score = a + b * estimate fitted by least squares on the candidates scored in
  full so far, standard error = the residuals' sd.

For each rule: the share of evaluation images used (the cost, against 1.0 for full scoring), the
overlap of the raced top ``k`` with the full top ``k``, and how many of the full top ``k`` were
stopped early. The rule is chosen on the **design half** (candidates at even positions, raced
with ``k`` halved) and reported on the **report half** (odd positions).

Usage:
    python benchmarks/race_design.py --rows benchmarks/results/rank_scale_full_622.jsonl --k 50 \
        --out benchmarks/results/race_design_622.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

UNITS = (1, 4, 8)  # units (one batch of one weight sample) at each rung, of 8


def replay(rows: list[dict], k: int, z: float, fit: str, min_calibration: int = 30) -> dict:
    """Race ``rows`` (each with ``rung_scores``: the estimates at every rung, full last)."""
    n_rungs = len(rows[0]["rung_scores"])
    best: list[float] = []
    seen: list[list[float]] = []  # rung estimates of the candidates scored in full
    units, stopped, out = 0, set(), {}
    for i, row in enumerate(rows):
        est = row["rung_scores"]
        threshold = sorted(best)[-k] if len(best) >= k else -math.inf
        score, used = est[-1], UNITS[-1]
        if len(seen) >= min_calibration:
            full = np.array([s[-1] for s in seen])
            for r in range(n_rungs - 1):
                x = np.array([s[r] for s in seen])
                if fit == "offset":
                    pred, resid = est[r] + float(np.mean(full - x)), full - x
                    se = float(np.std(resid, ddof=1))
                else:
                    b, a = np.polyfit(x, full, 1)
                    pred = a + b * est[r]
                    se = float(np.std(full - (a + b * x), ddof=2))
                if pred + z * se < threshold:
                    score, used = pred, UNITS[r]
                    stopped.add(i)
                    break
        if used == UNITS[-1]:
            seen.append(est)
        units += used
        out[i] = score
        best.append(score)
    truth_top = set(sorted(out, key=lambda i: -rows[i]["rung_scores"][-1])[:k])
    raced_top = set(sorted(out, key=lambda i: -out[i])[:k])
    return {"z": z, "fit": fit, "image_share": units / (UNITS[-1] * len(rows)),
            "top_k_overlap": len(truth_top & raced_top) / k,
            "top_k_stopped": len(truth_top & stopped)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, required=True)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("rung_scores") and len(r["rung_scores"]) == 3]
    halves = {"design": rows[0::2], "report": rows[1::2]}
    result = {"rows": str(args.rows), "k": args.k, "halves": {}}
    for half, part in halves.items():
        result["halves"][half] = [replay(part, args.k // 2, z, fit)
                                  for fit in ("offset", "linear")
                                  for z in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]
        for line in result["halves"][half]:
            print(half, json.dumps(line))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
