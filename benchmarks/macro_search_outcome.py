"""Search outcome under a budget: hypernas against random search and Optuna TPE on ``macro``.

The dynamic-space counterpart of ``search_outcome.py`` (issue #16): each method gets the same
wall clock (``--budget`` minutes) on one core, searches the macro space on Fashion-MNIST at 16x16
under ``--max-params P``, and returns one candidate within the budget:

- ``hypernas``: ``run_search`` with ``max_params=P`` as ``hypernas search macro --max-params P
  --seed S`` runs it: rank candidates drawn within the budget with the macro hypernetwork
  shipped with the package, screen them in ranked order, train the finalists, keep the best by
  validation; the embedded defaults apart from the space, the budget and the seed;
- ``hypernas-explore``: the same with ``--explore-after 4 --n 50``: screen the 4 best of 50
  ranked candidates, then let Optuna's TPE pick candidates of the whole space (within the budget)
  from the screens' accuracies for the rest of the screening time;
- ``hypernas-probe``: the same with ``--screen-by probe``: rank the 200 drawn candidates by the
  probe shipped with the macro hypernetwork (its graph embedding read out toward the screens'
  accuracy, ``benchmarks/macro_probe.py``) and screen in that order;
- ``hypernas-own``: the same as ``hypernas`` with ``pretrained=False`` (``--no-pretrained``):
  the search trains its own hypernetwork for 45 % of the budget first (what it did before one
  was shipped);
- ``random``: candidates drawn uniformly within the budget (``spaces.budget.sample_within``),
  each trained with the screening recipe of ``hypernas search`` (2 epochs on 5,000 images, from
  random weights); the best validation accuracy wins;
- ``tpe``: the same objective, with Optuna's TPE sampler choosing the macro space's decisions
  through its own define-by-run definition; a candidate over the budget is not trained and is
  reported to TPE as infeasible (``Trial.set_constraint``), as a user of Optuna would set it up.

Every pick is then trained with the macro truth recipe (``macro_truth.py``: 10,000 images,
5 epochs) with ``--eval-seeds`` (default 0,1,2) and scored on the 10,000 official test images,
which no method reads; rows of the truth set are reused where the pick is one of its candidates.
The outcome of a (method, seed) is the mean test accuracy of its pick over those seeds. The
issue's criterion: hypernas's mean over search seeds beats each baseline's by more than twice the
standard error of the difference (``se = sqrt(var_a / n_a + var_b / n_b)``).

One row per (method, seed) goes to ``results/macro_search_outcome.jsonl`` (the pick, what was
tried, the wall clock); one row per truth-recipe training of a pick to
``results/macro_search_outcome_evals.jsonl``. Both are appended as they finish; re-running skips
what is there, so the script can be stopped and resumed.

Usage:
    python benchmarks/macro_search_outcome.py --seeds 0 --methods hypernas,random,tpe
    python benchmarks/macro_search_outcome.py --report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

sys.path.insert(0, str(Path(__file__).parent))
import macro_truth  # noqa: E402
from fmnist_truth import RECIPES, append, train_one  # noqa: E402
from search_outcome import TRIAL  # noqa: E402

import hypernas as hn  # noqa: E402
from hypernas.data import load_dataset  # noqa: E402
from hypernas.refine import refined_rows  # noqa: E402
from hypernas.refine.train import TrainConfig, TrainResult, prepare_dataset, train_network  # noqa: E402
from hypernas.runs import Run, read_jsonl  # noqa: E402
from hypernas.search.pipeline import SearchConfig, run_search  # noqa: E402
from hypernas.spaces.budget import Budget, sample_within  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "macro_search_outcome.jsonl"
EVALS = RESULTS / "macro_search_outcome_evals.jsonl"
METHODS = ("hypernas", "hypernas-explore", "hypernas-probe", "hypernas-own", "random", "tpe")
SEARCHES = ("hypernas", "hypernas-explore", "hypernas-probe", "hypernas-own")
EXPLORE = {"explore_after": 4, "candidates": 50}  # hypernas-explore's settings
SETTINGS = {"hypernas-explore": EXPLORE, "hypernas-probe": {"screen_rule": "probe"}}
BASELINES = ("random", "tpe")
MAX_PARAMS = 60_000  # the example budget; the macro truth set's band is 50-70 k
INFEASIBLE = 0.0  # what TPE is told for a candidate over the budget (it is also marked infeasible)


def macro_space() -> hn.SearchSpace:
    return hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10, **macro_truth.SKELETON)


class Objective:
    """The screening trial of ``hypernas search``: a short training from random weights,
    validation accuracy on the run's split."""

    def __init__(self, seed: int, recipe: TrainConfig = TRIAL) -> None:
        self.recipe, self.seed = recipe, seed
        self.ds = prepare_dataset(load_dataset("fashion-mnist", seed=seed), recipe)
        self.space = macro_space()

    def __call__(self, encoding: str) -> float:
        return self.train(encoding).val_acc

    def train(self, encoding: str) -> TrainResult:
        torch.manual_seed(self.seed)
        net = hn.Network(self.space.replay(encoding).graph)
        return train_network(net, self.ds.train, self.ds.val, self.recipe)


def search_random(seed: int, budget_s: float, max_params: int) -> dict:
    deadline = time.perf_counter() + budget_s
    objective, tried, draw = Objective(seed), {}, 0
    while time.perf_counter() < deadline:
        # drawn in small batches within the budget, distinct ids; each batch its own seed
        for cand in sample_within(objective.space, Budget(max_params=max_params), 8,
                                  seed=1000 * seed + draw):
            if time.perf_counter() >= deadline:
                break
            if cand.encoding not in tried:
                tried[cand.encoding] = objective(cand.encoding)
        draw += 1
    best = max(tried, key=tried.get)
    return {"encoding": best, "val_acc": tried[best], "evaluated": len(tried)}


def search_tpe(seed: int, budget_s: float, max_params: int) -> dict:
    import optuna

    objective = Objective(seed)

    def trial_objective(trial: optuna.Trial) -> float:
        cand = objective.space.from_trial(trial)
        params = hn.count_params(cand.graph)
        trial.set_constraint("max_params", params - max_params)  # TPE models feasibility
        trial.set_user_attr("params", params)
        trial.set_user_attr("encoding", cand.encoding)
        return objective(cand.encoding) if params <= max_params else INFEASIBLE

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(trial_objective, timeout=budget_s)
    feasible = [t for t in study.trials
                if t.value is not None and t.user_attrs["params"] <= max_params]
    best = max(feasible, key=lambda t: t.value)
    return {"encoding": best.user_attrs["encoding"], "val_acc": best.value,
            "evaluated": len(feasible), "over_budget": len(study.trials) - len(feasible)}


def run_name(method: str, seed: int) -> str:
    return {"hypernas-own": f"macro-outcome-{seed}", "hypernas-explore": f"macro-explore-{seed}",
            "hypernas-probe": f"macro-probe-{seed}"
            }.get(method, f"macro-shipped-{seed}")


def search_hypernas(method: str, seed: int, budget_s: float, max_params: int,
                    runs_root: Path) -> dict:
    os.environ["HYPERNAS_RUNS"] = str(runs_root)
    cfg = SearchConfig(space="macro", budget_minutes=budget_s / 60, seed=seed,
                       name=run_name(method, seed), formats=("safetensors",),
                       max_params=max_params, pretrained=method != "hypernas-own",
                       **SETTINGS.get(method, {}))
    out = run_search(cfg)
    best = out["best"]
    return {"encoding": best["encoding"], "fit_val_acc": best["val_acc"],
            "fit_test_acc": out["card"]["test_acc"], "evaluated": len(out["ranking"]),
            "hypernet_top": out["ranking"][0]["encoding"],
            "finalists": {str(k): v for k, v in out["finalists"].items()},
            **run_facts(out["run"])}


def run_facts(run: Run) -> dict:
    """How far a search's hypernetwork trained and how many candidates it screened."""
    screened = len(refined_rows(run, fits=False))
    config = run.read_config()
    if config.get("pretrained"):  # installed, not trained here: no training log
        return {"screened": screened, "hypernet": config["pretrained"],
                "hypernet_steps": config["train"]["steps"]}
    last = list(read_jsonl(run.path / "train_log.jsonl"))[-1]
    return {"screened": screened, "hypernet_steps": last["step"],
            "hypernet_train_acc": last["acc"]}


def recorded() -> Iterator[dict]:
    """Every truth-recipe training on record: the truth set's and the picks' evaluations."""
    for source in (macro_truth.OUT, EVALS):
        if source.exists():
            yield from read_jsonl(source)


def truth_runs() -> dict[tuple[str, int], float]:
    """Truth-recipe test accuracy of every (encoding, seed) on record."""
    out = {}
    for row in recorded():
        out.setdefault((row["code"], row["seed"]), row["test_acc"])
    return out


def evaluate(encoding: str, seeds: list[int]) -> list[float]:
    """The pick's truth-recipe test accuracy for each seed, training what is not on record."""
    accs = []
    for seed in seeds:
        known = truth_runs().get((encoding, seed))
        if known is None:
            row = train_one((encoding, seed), recipe=RECIPES["short"], space_name="macro",
                            skeleton=macro_truth.SKELETON)
            append(EVALS, row)
            known = row["test_acc"]
        accs.append(known)
    return accs


def difference(a: list[float], b: list[float]) -> dict:
    """Mean of ``a`` minus mean of ``b`` and the standard error of that difference.

    >>> difference([0.9, 0.8], [0.7, 0.6])["diff"]
    0.2
    """
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) \
        if min(len(a), len(b)) > 1 else float("nan")
    diff = round(statistics.fmean(a) - statistics.fmean(b), 6)
    return {"diff": diff, "se": se, "beats_by_2se": diff > 2 * se}


def report(path: Path = OUT) -> dict:
    rows = list(read_jsonl(path)) if path.exists() else []
    out: dict = {}
    truth = [r for r in read_jsonl(macro_truth.OUT) if r["seed"] == 0]
    within = [r["test_acc"] for r in truth if r["params"] <= MAX_PARAMS]
    if within:
        out["truth_set_within_budget"] = {"n": len(within), "best": max(within),
                                          "median": statistics.median(within)}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if mine:
            means = [r["pick_mean_test_acc"] for r in mine]
            out[method] = {"seeds": [r["seed"] for r in mine], "pick_means": means,
                           "mean": statistics.fmean(means),
                           "std": statistics.stdev(means) if len(means) > 1 else 0.0,
                           "trained": [r.get("screened", r["evaluated"]) for r in mine],
                           "params": [r["params"] for r in mine]}
    for mine in SEARCHES:
        for base in BASELINES:
            if mine in out and base in out:
                out[f"{mine}_minus_{base}"] = difference(out[mine]["pick_means"],
                                                         out[base]["pick_means"])
    out["reachable"] = reachable(out)
    return out


def reachable(out: dict, seeds: int = 5, eval_seeds: int = 3) -> dict:
    """What beating a baseline by twice the standard error asks of a search, from the record:
    every candidate within the budget trained with the truth recipe over 3 or more seeds (the
    truth set's and the picks'), the seed-to-seed spread of one training (pooled), and for each
    baseline the smallest mean pick that would beat it by 2 se even if the search's picks
    varied by that seed noise alone (``needed``), with how many candidates on record reach it.
    """
    runs: dict[str, dict[int, float]] = {}
    for row in recorded():
        if row["params"] <= MAX_PARAMS:
            runs.setdefault(row["code"], {})[row["seed"]] = row["test_acc"]
    several = [list(v.values()) for v in runs.values() if len(v) >= 2]
    sd = math.sqrt(sum(statistics.variance(v) * (len(v) - 1) for v in several)
                   / sum(len(v) - 1 for v in several))
    means = sorted((statistics.fmean(v.values()) for v in runs.values()
                    if len(v) >= eval_seeds), reverse=True)
    facts = {"candidates_with_3_seeds": len(means), "best_means": means[:5], "seed_sd": sd}
    for base in BASELINES:
        if base in out:
            b = out[base]["pick_means"]
            se = math.sqrt(statistics.variance(b) / len(b) + sd ** 2 / eval_seeds / seeds)
            needed = statistics.fmean(b) + 2 * se
            facts[f"needed_vs_{base}"] = needed
            facts[f"on_record_reaching_{base}"] = sum(m > needed for m in means)
    return facts


def main(argv: list[str] | None = None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the script's process, not the package
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget", type=float, default=15.0, help="minutes per method and seed")
    parser.add_argument("--max-params", type=int, default=MAX_PARAMS)
    parser.add_argument("--eval-seeds", default="0,1,2", help="truth-recipe seeds of each pick")
    parser.add_argument("--runs-root", type=Path, default=Path("runs") / "macro-search-outcome")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="only summarise the file")
    parser.add_argument("--annotate", action="store_true",
                        help="add what a hypernas row lacks (screened, hypernet steps) from its "
                             "run folder under --runs-root, then summarise")
    args = parser.parse_args(argv)
    if args.annotate:
        os.environ["HYPERNAS_RUNS"] = str(args.runs_root)
        rows = list(read_jsonl(args.out))
        for row in rows:
            if row["method"] in SEARCHES and "screened" not in row:
                row.update(run_facts(Run(run_name(row["method"], row["seed"]))))
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if args.report or args.annotate:
        print(json.dumps(report(args.out), indent=1))
        return 0
    torch.set_num_threads(1)
    eval_seeds = [int(s) for s in args.eval_seeds.split(",")]
    have = {(r["method"], r["seed"]) for r in read_jsonl(args.out)} if args.out.exists() else set()
    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            if (method, seed) in have:
                continue
            if method not in METHODS:
                parser.error(f"unknown method {method!r}; known: {', '.join(METHODS)}")
            t0, budget_s = time.perf_counter(), 60 * args.budget
            if method in SEARCHES:
                found = search_hypernas(method, seed, budget_s, args.max_params,
                                        args.runs_root)
            else:
                found = {"random": search_random, "tpe": search_tpe}[method](
                    seed, budget_s, args.max_params)
            wall = time.perf_counter() - t0
            graph = macro_space().replay(found["encoding"]).graph
            accs = evaluate(found["encoding"], eval_seeds)
            row = {"method": method, "seed": seed, **found, "wall_s": wall,
                   "budget_min": args.budget, "max_params": args.max_params,
                   "params": hn.count_params(graph), "macs": hn.count_macs(graph),
                   "eval_seeds": eval_seeds, "test_accs": accs,
                   "pick_mean_test_acc": statistics.fmean(accs)}
            append(args.out, row)
            print(json.dumps(row), flush=True)
    print(json.dumps(report(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
