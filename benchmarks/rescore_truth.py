"""Score trained hypernetwork runs on the Fashion-MNIST truth cells with the current scoring.

For ablations whose checkpoints were trained earlier: each run's last checkpoint ranks the 100
truth cells with the default ``ScoreConfig`` (2,000 fixed validation images, one slice per weight
sample), and the same metrics as ``rank_nb201.py`` are computed against the truth. No training
happens; one JSON line per run is appended to ``--out``.

Usage:
    python benchmarks/rescore_truth.py exp-large3 bench-gnn abl-tf abl-s1
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
from rank_nb201 import fmnist_truth, metrics, spread_vs_error  # noqa: E402

from hypernas.hypernet.trainer import load_checkpoint  # noqa: E402
from hypernas.runs import Run  # noqa: E402
from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet  # noqa: E402
from hypernas.ranking import load_run  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run names under --runs-root")
    parser.add_argument("--runs-root", default="runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "rescore_truth.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    truth = fmnist_truth()
    for name in args.runs:
        loaded = load_run(Run(name, root=args.runs_root))
        cands = {code: loaded.space.replay(code) for code in truth}
        hnet, _, meta = load_checkpoint(loaded.run.checkpoint_path)
        t0 = time.perf_counter()
        slices = eval_slices(loaded.data.val, ScoreConfig(), hnet.config.samples)
        rows = dict(zip(cands, score_hypernet(hnet, list(cands.values()), slices)))
        out = {"run": name, "backbone": hnet.config.backbone, "samples": hnet.config.samples,
               "layers": hnet.config.layers, "train": meta.get("train"), "step": meta["step"],
               "fmnist_truth": metrics({c: r["score"] for c, r in rows.items()}, truth),
               "mean_predicted_acc": statistics.fmean(r["acc"] for r in rows.values()),
               "uncertainty_fmnist": spread_vs_error(rows, truth),
               "rank_s": time.perf_counter() - t0}
        with args.out.open("a") as fh:
            fh.write(json.dumps(out, default=float) + "\n")
        print(json.dumps(out, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
