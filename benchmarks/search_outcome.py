"""Search outcome: hypernas against random search and Optuna TPE, same wall-clock budget.

Each method gets the same budget on the same resources and returns one NB201 cell on
Fashion-MNIST:

- ``hypernas``: ``run_search`` (train the hypernetwork, rank random candidates, screen the top
  in rank order with short trainings from random weights, pick the best-screened cell), the
  embedded default apart from the budget and seed;
- ``random``: random cells, each trained with the screening recipe of ``hypernas search`` (2
  epochs on 5,000 images, 16x16, from random weights), the best validation accuracy wins;
- ``tpe``: the same objective, with Optuna's TPE sampler choosing the six edge operations.

Every chosen cell is then trained with the truth-set recipe (benchmarks/fmnist_truth.py, seed 0;
reused from the truth file when the cell is there) and scored on the 10,000 Fashion-MNIST test
images, which no method reads. Regret is the best truth-set test accuracy minus the chosen cell's.
As a cross-dataset check the chosen cell's NAS-Bench-201 CIFAR-10 validation accuracy is reported
(best possible 91.61). Results are appended per (method, seed) to a JSON-lines file; re-running
skips what is there, so the script can be stopped and resumed.

Usage:
    python benchmarks/search_outcome.py --seeds 0,1,2 --budget 15 --threads 2
    python benchmarks/search_outcome.py --report
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
import fmnist_truth  # noqa: E402
from rank_nb201 import fmnist_truth as truth_table, nb201_labels  # noqa: E402

import hypernas as hn  # noqa: E402
from hypernas.data import load_dataset  # noqa: E402
from hypernas.pipeline import SearchConfig, run_search  # noqa: E402
from hypernas.refine import refined_rows  # noqa: E402
from hypernas.runs import read_jsonl  # noqa: E402
from hypernas.train import TrainConfig, prepare_dataset, train_network  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "search_outcome.jsonl"
METHODS = ("hypernas", "random", "tpe")
# the objective of the baselines: one screening trial of `hypernas search`
TRIAL = TrainConfig(epochs=2, train_size=5_000, resolution=16)


class Objective:
    """Short real training of one NB201 code; validation accuracy on the run's split."""

    def __init__(self, seed: int) -> None:
        self.ds = prepare_dataset(load_dataset("fashion-mnist", seed=seed), TRIAL)
        self.space = hn.load_space("nb201", input_shape=self.ds.input_shape,
                                   **fmnist_truth.SKELETON)
        self.seed = seed

    def __call__(self, code: str) -> float:
        cand = self.space.replay(code)
        torch.manual_seed(self.seed)
        net = hn.Network(cand.graph)
        return train_network(net, self.ds.train, self.ds.val, TRIAL).val_acc


def search_random(seed: int, budget_s: float) -> dict:
    import random

    objective, rng = Objective(seed), random.Random(seed)
    deadline, tried = time.perf_counter() + budget_s, {}
    while time.perf_counter() < deadline:
        code = objective.space.code(objective.space.sample(rng).params)
        if code not in tried:
            tried[code] = objective(code)
    best = max(tried, key=tried.get)
    return {"code": best, "val_acc": tried[best], "evaluated": len(tried)}


def search_tpe(seed: int, budget_s: float) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = Objective(seed)
    ops = list(range(5))  # NB201 code digits: one operation per edge

    def trial_objective(trial: optuna.Trial) -> float:
        code = "".join(str(trial.suggest_categorical(f"edge{i}", ops)) for i in range(6))
        return objective(code)

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(trial_objective, timeout=budget_s)
    code = "".join(str(study.best_params[f"edge{i}"]) for i in range(6))
    return {"code": code, "val_acc": study.best_value, "evaluated": len(study.trials)}


def search_hypernas(seed: int, budget_s: float, runs_root: Path) -> dict:
    import os

    os.environ["HYPERNAS_RUNS"] = str(runs_root)
    cfg = SearchConfig(budget_minutes=budget_s / 60, seed=seed, name=f"outcome-{seed}",
                       formats=("safetensors",))
    out = run_search(cfg)
    space = hn.load_space("nb201", input_shape=(1, 16, 16), **fmnist_truth.SKELETON)
    best = out["best"]
    code = space.code(space.replay(best["encoding"]).params)
    top = out["ranking"][0]
    screened = refined_rows(out["run"], fits=False)
    return {"code": code, "val_acc": screened[best["id"]]["val_acc"],
            "fit_val_acc": best["val_acc"], "fit_test_acc": out["card"]["test_acc"],
            "evaluated": len(out["ranking"]), "screened": len(screened),
            "hypernet_top": space.code(space.replay(top["encoding"]).params)}


def truth_of(code: str) -> float:
    """Test accuracy with the truth recipe, seed 0: from the truth file, else trained now."""
    for row in read_jsonl(fmnist_truth.OUT):
        if row["code"] == code and row["seed"] == 0:
            return row["test_acc"]
    return fmnist_truth.train_one((code, 0))["test_acc"]


def report(path: Path) -> dict:
    rows = list(read_jsonl(path))
    out = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        regrets = [r["regret_points"] for r in mine]
        out[method] = {"seeds": len(mine), "mean_regret_points": statistics.fmean(regrets),
                       "std_regret_points": statistics.pstdev(regrets) if len(mine) > 1 else 0.0,
                       "mean_test_acc": statistics.fmean(r["test_acc"] for r in mine),
                       "mean_cifar10_val": statistics.fmean(r["cifar10_val"] for r in mine),
                       "codes": [r["code"] for r in mine]}
    base = [out[m]["mean_regret_points"] for m in ("random", "tpe") if m in out]
    if "hypernas" in out and base:
        out["hypernas_regret_over_better_baseline"] = (out["hypernas"]["mean_regret_points"]
                                                       / max(min(base), 1e-9))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget", type=float, default=15.0, help="minutes per method and seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--runs-root", type=Path, default=Path("runs") / "search-outcome")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="only summarise the file")
    args = parser.parse_args(argv)
    if args.report:
        print(json.dumps(report(args.out), indent=1))
        return 0
    torch.set_num_threads(args.threads)
    truth = truth_table()
    best_truth = max(truth.values())
    c10 = nb201_labels()["cifar10"]
    have = {(r["method"], r["seed"]) for r in read_jsonl(args.out)} if args.out.exists() else set()
    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            if (method, seed) in have:
                continue
            t0 = time.perf_counter()
            budget_s = 60 * args.budget
            if method == "hypernas":
                found = search_hypernas(seed, budget_s, args.runs_root)
            elif method == "random":
                found = search_random(seed, budget_s)
            elif method == "tpe":
                found = search_tpe(seed, budget_s)
            else:
                parser.error(f"unknown method {method!r}; known: {', '.join(METHODS)}")
            wall = time.perf_counter() - t0
            test_acc = truth_of(found["code"])
            row = {"method": method, "seed": seed, **found, "wall_s": wall,
                   "budget_min": args.budget, "threads": args.threads, "test_acc": test_acc,
                   "regret_points": 100 * (best_truth - test_acc), "best_truth": best_truth,
                   "cifar10_val": c10.get(found["code"])}
            fmnist_truth.append(args.out, row)
            print(json.dumps(row), flush=True)
    print(json.dumps(report(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
