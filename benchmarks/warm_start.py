"""Warm start: accuracy after a short training from hypernetwork-predicted weights vs from random
initialisation, on the same candidates with the same recipe and batches.

Uses a trained hypernetwork run (e.g. the one benchmarks/rank_nb201.py trains) and N random
connected NB201 cells. For each cell: accuracy before training (predicted weights, batch
statistics; random init), then after E epochs of the truth-set recipe (SGD, cosine, 10,000
class-balanced images) from either start, scored on the run's validation split. Reports each
pair and the median gain.

Usage:
    python benchmarks/warm_start.py --run bench-final --cells 20 --epochs 1
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
from rank_nb201 import random_cells  # noqa: E402

from hypernas.hypernet.trainer import load_checkpoint  # noqa: E402
from hypernas.graphs.network import Network  # noqa: E402
from hypernas.runs import Run  # noqa: E402
from hypernas.refine.train import TrainConfig, evaluate, train_network  # noqa: E402
from hypernas.ranking import load_run  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="bench-final", help="a trained NB201 hypernetwork run")
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="which random cells")
    parser.add_argument("--out", type=Path, default=RESULTS / "warm_start.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loaded = load_run(Run(args.run))
    hnet, _, meta = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    hnet.eval()
    recipe = TrainConfig(epochs=args.epochs, train_size=10_000, resolution=loaded.config.resolution)
    rows = []
    for code in random_cells(loaded.space, args.cells, args.seed):
        cand = loaded.space.replay(code)
        row: dict = {"code": code, "id": cand.id}
        for start in ("predicted", "random"):
            torch.manual_seed(recipe.seed)
            net = Network(cand.graph)
            if start == "predicted":
                with torch.no_grad():
                    net.load_state_dict(hnet([cand.graph], heads=[0])[0], strict=False)
                row["predicted_before"] = evaluate(net, loaded.data.val, batch_stats=True)[0]
            t0 = time.perf_counter()
            result = train_network(net, loaded.data.train, loaded.data.val, recipe)
            row[f"{start}_after"] = result.val_acc
            row[f"{start}_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    gains = [r["predicted_after"] - r["random_after"] for r in rows]
    summary = {
        "command": " ".join(["python", *sys.argv]), "run": args.run, "hypernet_step": meta["step"],
        "cells": len(rows), "epochs": args.epochs, "recipe": recipe.to_dict(),
        "median_predicted_before": statistics.median(r["predicted_before"] for r in rows),
        "median_predicted_after": statistics.median(r["predicted_after"] for r in rows),
        "median_random_after": statistics.median(r["random_after"] for r in rows),
        "median_gain_points": 100 * statistics.median(gains),
        "wins": sum(g > 0 for g in gains), "rows": rows}
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
