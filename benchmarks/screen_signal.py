"""Which signal should choose among the hypernetwork's top cells? Measured on the truth cells.

For each of the 100 Fashion-MNIST truth cells (benchmarks/fmnist_truth.py) one signal is
computed and appended to ``results/screen_signal/<signal>.jsonl`` (resumable, one line per cell):

- ``scratch``: the validation accuracy after the screening recipe of ``hypernas search`` (2 epochs
  of SGD at lr 0.1 on 5,000 images, 16x16, seed 0) from random weights;
- ``warm``: the same training started from a hypernetwork's predicted weights (first weight
  sample) at ``--lr``;
- ``hypernet``: a trained hypernetwork's score (the default sliced scoring), no training.

``--report`` gives each signal's Spearman correlation with the truth and with the others, on the
cells both have. ``--fit CODE ...`` trains cells for 5 epochs (the truth recipe) from random
weights and from ``--run``'s predicted weights at lr 0.1 and 0.05, and reports test accuracy.

Usage:
    python benchmarks/screen_signal.py scratch
    python benchmarks/screen_signal.py warm --run runs/search-outcome-v1/outcome-0 --lr 0.05
    python benchmarks/screen_signal.py hypernet --run runs/search-outcome-v1/outcome-0
    python benchmarks/screen_signal.py fit 230321 --run runs/search-outcome-v1/outcome-0
    python benchmarks/screen_signal.py --report
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
import search_outcome  # noqa: E402
from rank_nb201 import fmnist_truth  # noqa: E402

import hypernas as hn  # noqa: E402
from hypernas.data import load_dataset  # noqa: E402
from hypernas.hypernet.trainer import load_checkpoint  # noqa: E402
from hypernas.graphs.network import Network  # noqa: E402
from hypernas.runs import Run, read_jsonl  # noqa: E402
from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet  # noqa: E402
from hypernas.refine.train import TrainConfig, evaluate, prepare_dataset, train_network  # noqa: E402
from hypernas.ranking import load_run  # noqa: E402

OUT = Path(__file__).parent / "results" / "screen_signal"


def predicted_network(cand, hnet) -> Network:
    """``cand`` with the first weight sample of ``hnet``'s prediction loaded."""
    net = Network(cand.graph)
    with torch.no_grad():
        net.load_state_dict(hnet([cand.graph], heads=[0])[0], strict=False)
    return net


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def done(path: Path) -> set[str]:
    return {row["code"] for row in read_jsonl(path)} if path.exists() else set()


def hypernet_of(run_dir: Path):
    run = Run(run_dir.name, root=run_dir.parent)
    hnet, _, _ = load_checkpoint(run.checkpoint_path)
    return run, hnet.eval()


def signal_scratch(truth: dict[str, float]) -> None:
    path, objective = OUT / "scratch.jsonl", search_outcome.Objective(0)
    have = done(path)
    for code in truth:
        if code not in have:
            t0 = time.perf_counter()
            append(path, {"code": code, "val": objective(code), "s": time.perf_counter() - t0})


def signal_warm(truth: dict[str, float], run_dir: Path, lr: float) -> None:
    path = OUT / f"warm_{run_dir.name}_lr{lr:g}.jsonl"
    _, hnet = hypernet_of(run_dir)
    objective, recipe = search_outcome.Objective(0), dataclasses.replace(search_outcome.TRIAL, lr=lr)
    have = done(path)
    for code in truth:
        if code in have:
            continue
        t0 = time.perf_counter()
        torch.manual_seed(0)
        net = predicted_network(objective.space.replay(code), hnet)
        val = train_network(net, objective.ds.train, objective.ds.val, recipe).val_acc
        append(path, {"code": code, "val": val, "s": time.perf_counter() - t0})


def signal_hypernet(truth: dict[str, float], run_dir: Path) -> None:
    path = OUT / f"hypernet_{run_dir.name}.jsonl"
    run, hnet = hypernet_of(run_dir)
    loaded = load_run(run)
    cands = [loaded.space.replay(code) for code in truth]
    rows = score_hypernet(hnet, cands, eval_slices(loaded.data.val, ScoreConfig(),
                                                   hnet.config.samples))
    path.unlink(missing_ok=True)
    for code, row in zip(truth, rows):
        append(path, {"code": code, "val": row["score"], "spread": row["spread"],
                      "acc": row["acc"]})


def fit(codes: list[str], run_dir: Path) -> None:
    """5 epochs of the truth recipe from random and from predicted weights, test accuracy."""
    _, hnet = hypernet_of(run_dir)
    ds = prepare_dataset(load_dataset("fashion-mnist", seed=0), TrainConfig(resolution=16))
    space = hn.load_space("nb201", input_shape=ds.input_shape, C=16, N=1)
    for code in codes:
        for warm, lr in ((False, 0.1), (True, 0.1), (True, 0.05)):
            torch.manual_seed(0)
            cand = space.replay(code)
            net = predicted_network(cand, hnet) if warm else Network(cand.graph)
            recipe = TrainConfig(epochs=5, lr=lr, train_size=10_000, resolution=16)
            result = train_network(net, ds.train, ds.val, recipe)
            row = {"code": code, "run": run_dir.name, "warm": warm, "lr": lr,
                   "val": result.val_acc, "test": evaluate(net, ds.test)[0],
                   "val_per_epoch": [round(h["val_acc"], 4) for h in result.history]}
            append(OUT / "fit.jsonl", row)
            print(json.dumps(row), flush=True)


def report(truth: dict[str, float]) -> dict:
    signals = {"truth": truth}
    for path in sorted(OUT.glob("*.jsonl")):
        if path.stem != "fit":
            signals[path.stem] = {row["code"]: row["val"] for row in read_jsonl(path)}
    out: dict = {"cells": {name: len(values) for name, values in signals.items()}}
    for a, b in itertools.combinations(signals, 2):
        common = [c for c in signals[a] if c in signals[b]]
        if len(common) >= 10:
            out[f"{a} ~ {b}"] = {"n": len(common), "spearman": round(spearmanr(
                [signals[a][c] for c in common], [signals[b][c] for c in common]).statistic, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("signal", nargs="?", choices=("scratch", "warm", "hypernet", "fit"))
    parser.add_argument("codes", nargs="*", help="NB201 codes (fit only)")
    parser.add_argument("--run", type=Path, help="a hypernetwork run folder (warm, hypernet, fit)")
    parser.add_argument("--lr", type=float, default=0.05, help="warm: learning rate (0.05)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    truth = fmnist_truth()
    if args.signal in ("warm", "hypernet", "fit") and args.run is None:
        parser.error(f"{args.signal} needs --run RUN_FOLDER")
    if args.signal == "scratch":
        signal_scratch(truth)
    elif args.signal == "warm":
        signal_warm(truth, args.run, args.lr)
    elif args.signal == "hypernet":
        signal_hypernet(truth, args.run)
    elif args.signal == "fit":
        fit(args.codes, args.run)
    if args.report or args.signal:
        print(json.dumps(report(truth), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
