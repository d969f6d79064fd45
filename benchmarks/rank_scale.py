"""Ranking at scale: NB201 cells ranked with racing over images against full scoring (issue #18).

With the hypernetwork shipped for the default search (NB201, C=16, N=1, Fashion-MNIST 16x16),
``--n`` NB201 cells are ranked twice: raced (``hypernas rank``'s default: a cell that cannot reach
the top ``--top-k`` stops after one batch of one weight sample, or one batch of every sample)
and in full (every cell on all 2,000 evaluation images). The cells are the 100 cells of the
Fashion-MNIST truth set (``fmnist_truth.py``) and further cells drawn at random (``--seed``)
from all 15,625 codes, or all of them with ``--n 15625``; a code whose canonical id repeats an
earlier one is ranked once.

Reported, side by side in one run: wall seconds of building the candidates and of each ranking,
seconds per distinct candidate, the share of evaluation images the race used, how many of the
raced top ``k`` are the full ranking's top ``k``, and Spearman / Kendall of each ranking against
the Fashion-MNIST truth (its cells) and against NAS-Bench-201's CIFAR-10 validation accuracy
(every cell; a cross-dataset check). Truth labels are read only here, after both rankings.

The full ranking is kept in the run (``runs/rank-scale``) and reused by later calls: its seconds
per candidate are those of the cells this call scored. One row per distinct candidate (code, id,
raced score, images, standard error, full score and its rung estimates) goes to
``results/rank_scale_N.jsonl`` (``_wK`` added with ``--workers K``) and
the summary to ``results/rank_scale.json`` (one entry per ``--n``).

Usage:
    python benchmarks/rank_scale.py --n 1000
    python benchmarks/rank_scale.py --n 15625 --workers 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from rank_nb201 import fmnist_truth, nb201_labels  # noqa: E402

from hypernas.ranking.racing import RaceConfig  # noqa: E402
from hypernas.ranking.rank import rank_run  # noqa: E402
from hypernas.ranking.run import start_run, train_run  # noqa: E402
from hypernas.runs.rankings import ranking_rows  # noqa: E402
from hypernas.runs.store import Run  # noqa: E402
from hypernas.search.config import SearchConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SUMMARY = RESULTS / "rank_scale.json"
ALL_CODES = ["".join(map(str, c)) for c in itertools.product(range(5), repeat=6)]


def cells(n: int, seed: int) -> list[str]:
    """The truth cells, then other codes in a seeded random order, ``n`` in all."""
    truth = list(fmnist_truth())
    rest = [c for c in ALL_CODES if c not in set(truth)]
    random.Random(seed).shuffle(rest)
    return (truth + rest)[:n]


def correlations(scores: dict[str, float], labels: dict[str, float]) -> dict[str, float]:
    common = [c for c in scores if c in labels]
    a, b = [scores[c] for c in common], [labels[c] for c in common]
    return {"n": len(common), "spearman": spearmanr(a, b).statistic,
            "kendall": kendalltau(a, b).statistic}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="NB201 codes (15625: all)")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="Ray workers (0: in this process)")
    parser.add_argument("--run", default="rank-scale")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("HYPERNAS_RUNS", "runs")
    cfg = SearchConfig(name=args.run)
    run = Run(cfg.run)
    loaded = start_run(run, cfg.shipped_config())
    train_run(loaded)  # installs the shipped hypernetwork
    codes = cells(args.n, args.seed)
    t0 = time.perf_counter()
    cands, seen = [], {}
    for code in codes:
        cand = loaded.space.replay(code)
        if cand.id not in seen:
            seen[cand.id] = code
            cands.append(cand)
    build_s = time.perf_counter() - t0
    rank = rank_run
    if args.workers:
        from hypernas.ranking.on_ray import rank_on_ray

        def rank(*a, **k):
            return rank_on_ray(*a, workers=args.workers, **k)
    before = set(ranking_rows(run, "full"))
    todo = sum(1 for c in cands if c.id not in before)
    t0 = time.perf_counter()
    full = rank(loaded, cands, "hypernet", label="full")
    full_call_s = time.perf_counter() - t0
    label = f"raced-{args.n}-k{args.top_k}-s{args.seed}"
    if run.ranking_path(label).exists():
        run.ranking_path(label).unlink()  # timed afresh every call
    t0 = time.perf_counter()
    raced = rank(loaded, cands, "hypernet", label=label, race=RaceConfig(top_k=args.top_k))
    raced_s = time.perf_counter() - t0
    ids = [c.id for c in cands]
    code_of = {c.id: seen[c.id] for c in cands}
    images = sum(raced[i]["images"] for i in ids)
    whole = raced[ids[0]]["full_images"]
    top = {i for i in sorted(ids, key=lambda i: -full[i]["score"])[:args.top_k]}
    top_raced = {i for i in sorted(ids, key=lambda i: -raced[i]["score"])[:args.top_k]}
    truth, c10 = fmnist_truth(), nb201_labels()["cifar10"]
    scores = {m: {code_of[i]: rows[i]["score"] for i in ids}
              for m, rows in (("raced", raced), ("full", full))}
    summary = {
        "command": "python benchmarks/rank_scale.py " + " ".join(argv or sys.argv[1:]),
        "n_codes": len(codes), "distinct": len(cands), "top_k": args.top_k,
        "workers": args.workers, "build_s": build_s, "raced_s": raced_s,
        "raced_s_per_candidate": raced_s / len(cands),
        "full_s_per_candidate": full_call_s / todo if todo else None,
        "full_scored_now": todo, "full_s_this_call": full_call_s,
        "image_share": images / (whole * len(cands)),
        "stopped_at": {str(n): sum(1 for i in ids if raced[i]["images"] == n)
                       for n in sorted({raced[i]["images"] for i in ids})},
        "top_k_overlap": len(top & top_raced) / args.top_k,
        "truth": {m: correlations(s, truth) for m, s in scores.items()},
        "cifar10_val": {m: correlations(s, c10) for m, s in scores.items()},
    }
    rows_path = RESULTS / (f"rank_scale_{args.n}.jsonl" if not args.workers
                           else f"rank_scale_{args.n}_w{args.workers}.jsonl")
    with rows_path.open("w") as fh:
        for i in ids:
            r = raced[i]
            fh.write(json.dumps({"code": code_of[i], "id": i, "raced_score": r["score"],
                                 "images": r["images"], "score_se": r["score_se"],
                                 "full_score": full[i]["score"],
                                 "rung_scores": full[i].get("rung_scores")}) + "\n")
    table = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    table[f"{args.n}-k{args.top_k}-w{args.workers}"] = summary
    SUMMARY.write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
