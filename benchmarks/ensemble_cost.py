"""What an ensemble of hypernetworks costs at ranking time, against one of its members.

Scores the same NB201 cells (the first ``--cells`` of the frozen truth list) with the hypernet
scorer of two runs, alternating ``--repeats`` times in this process: a run holding one
hypernetwork (``--single``) and a run holding an ensemble (``--ensemble``; e.g. a run started
from the shipped ``nb201-fashion-mnist-16``). Both score every cell on the same 2,000 evaluation
images, cut into one slice per weight sample; reports seconds per cell (median over the
repeats) and their ratio. One torch thread.

Usage:
    python benchmarks/ensemble_cost.py --single t15-long10k --ensemble t15-ensemble
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import truth_ranking  # noqa: E402

from hypernas.hypernet.trainer import load_checkpoint  # noqa: E402
from hypernas.ranking import load_run  # noqa: E402
from hypernas.ranking.rank import make_scorer  # noqa: E402
from hypernas.runs import Run  # noqa: E402

OUT = Path(__file__).parent / "results" / "ensemble_cost.json"


def seconds_per_cell(loaded, hnet, cands) -> float:
    score = make_scorer("hypernet", loaded.config, loaded.data, hnet, chunk=16)
    begun = time.perf_counter()
    score(cands, None)
    return (time.perf_counter() - begun) / len(cands)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--single", required=True, help="run with one hypernetwork")
    p.add_argument("--ensemble", required=True, help="run with an ensemble")
    p.add_argument("--cells", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs-root", help="runs folder (default runs/)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = {kind: load_run(Run(name, root=args.runs_root))
            for kind, name in (("single", args.single), ("ensemble", args.ensemble))}
    nets = {kind: load_checkpoint(r.run.checkpoint_path, r.config.hypernet)[0]
            for kind, r in runs.items()}
    codes = json.loads(truth_ranking.CELLS.read_text())[:args.cells]
    cands = [runs["single"].space.replay(c) for c in codes]
    times: dict[str, list[float]] = {kind: [] for kind in runs}
    for _ in range(args.repeats):
        for kind in runs:
            times[kind].append(seconds_per_cell(runs[kind], nets[kind], cands))
    med = {kind: statistics.median(t) for kind, t in times.items()}
    out = {"command": " ".join(sys.argv), "cells": len(cands), "repeats": args.repeats,
           "samples": {kind: net.config.samples for kind, net in nets.items()},
           "seconds_per_cell": times, "median": med, "ratio": med["ensemble"] / med["single"]}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"single {med['single']:.3f} s/cell ({out['samples']['single']} samples), ensemble "
          f"{med['ensemble']:.3f} s/cell ({out['samples']['ensemble']} samples): "
          f"{out['ratio']:.2f}x -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
