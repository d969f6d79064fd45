"""Fashion-MNIST truth set: NB201 cells trained from scratch with one fixed recipe.

The ground truth that decides whether a ranking of NB201 cells is right on Fashion-MNIST. Each
row of the output is one (cell, seed) training: test accuracy on the 10,000 official test images
(never read by any ranker), validation accuracy, the recipe, and the time it took. Every fifth
cell is also trained with a second seed, so the truth's own reliability (seed-to-seed Kendall) is
measured as the set grows. Results are appended one line at a time and the script resumes from
what the file holds, so it can be stopped and restarted at any point.

Recipe (fixed; changing it means a new output file): NB201 skeleton C=16, N=1; inputs area-resized
to 16x16; a class-balanced 10,000-image subset of the training split (seed 0); 5 epochs of SGD
(Nesterov momentum 0.9, lr 0.1 cosine-annealed to 0, weight decay 5e-4, batch 128, gradient
clipping at norm 5); evaluation with running batch-norm statistics.

``--recipe long`` is the second truth (issue #15): the same cells, in the same order, trained with
twice the images and twice the epochs (20,000 images, 10 epochs; everything else as above),
written to ``fmnist_truth_long.jsonl``; every third cell also gets a second seed (``--reseed-every
3``), so 60 cells carry 20 second seeds.

Usage:
    python benchmarks/fmnist_truth.py --cells 100 --reseed 20 --workers 1
    python benchmarks/fmnist_truth.py --recipe long --cells 60 --reseed 20 --reseed-every 3
    python benchmarks/fmnist_truth.py --recipe long --cells 60 --reseed 20 --reseed-every 3 --more-seeds 2
    python benchmarks/fmnist_truth.py --report        # summary of what the file holds
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

RECIPE = dict(epochs=5, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
              train_size=10_000, resolution=16, grad_clip=5.0)
RECIPES = {"short": RECIPE, "long": {**RECIPE, "epochs": 10, "train_size": 20_000}}
SKELETON = dict(C=16, N=1)
CELL_SEED = 2026  # which random connected cells make up the truth set
OUT = Path(__file__).parent / "results" / "fmnist_truth.jsonl"
OUTS = {"short": OUT, "long": OUT.with_name("fmnist_truth_long.jsonl")}


def connected_cells(n: int) -> list[str]:
    """``n`` distinct random NB201 codes whose cell output is not identically zero."""
    import hypernas as hn

    space = hn.load_space("nb201", input_shape=(1, 16, 16), **SKELETON)
    rng, codes, ids = random.Random(CELL_SEED), [], set()
    while len(codes) < n:
        cand = space.sample(rng)
        if any(data["op"] == "zero" for _, data in cand.graph.nodes(data=True)):
            continue  # a disconnected cell: its output is zero whatever the input
        if cand.id not in ids:
            ids.add(cand.id)
            codes.append(space.code(cand.params))
    return codes


CELLS = OUT.parent / "fmnist_truth_cells.json"  # the drawn cells, frozen on first use


def truth_cells(cells: int) -> list[str]:
    """The truth set's cells: read from CELLS, or drawn and written there the first time, so the
    set does not move when canonical ids (used to skip duplicates) are refined."""
    if CELLS.exists():
        frozen = json.loads(CELLS.read_text())
        if len(frozen) >= cells:
            return frozen[:cells]
    drawn = connected_cells(cells)
    CELLS.write_text(json.dumps(drawn))
    return drawn


def jobs(cells: int, reseed: int, every: int = 5,
         more: tuple[int, ...] = ()) -> list[tuple[str, int]]:
    """(code, seed) pairs in training order: every ``every``-th cell gets its second seed right
    away, ``reseed`` of them at most; then every cell once more for each seed in ``more``."""
    out = []
    for i, code in enumerate(truth_cells(cells)):
        out.append((code, 0))
        if i % every == 0 and i // every < reseed:
            out.append((code, 1))
    return out + [(code, s) for s in more for code in truth_cells(cells)]


def done(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill; that job runs again
    return {(r["code"], r["seed"]) for r in rows}


def train_one(job: tuple[str, int], recipe: dict = RECIPE, space_name: str = "nb201",
              skeleton: dict = SKELETON) -> dict:
    """Train one (code or encoding, seed) of ``space_name`` with ``recipe``; the row to keep."""
    import torch

    torch.set_num_threads(1)
    import hypernas as hn
    from hypernas.data import load_dataset
    from hypernas.refine.train import TrainConfig, evaluate, prepare_dataset, train_network

    code, seed = job
    cfg = TrainConfig(seed=seed, **recipe)
    ds = prepare_dataset(load_dataset("fashion-mnist"), cfg)
    space = hn.load_space(space_name, input_shape=ds.input_shape, **skeleton)
    cand = space.replay(code)
    torch.manual_seed(seed)
    net = hn.Network(cand.graph)
    start = time.perf_counter()
    result = train_network(net, ds.train, ds.val.subset(1000, seed=0), cfg)
    test_acc, test_loss = evaluate(net, ds.test)
    val_acc, val_loss = evaluate(net, ds.val)
    return {"code": code, "arch": cand.encoding, "id": cand.id, "seed": seed,
            "test_acc": test_acc, "test_loss": test_loss, "val_acc": val_acc, "val_loss": val_loss,
            "train_loss": result.history[-1]["train_loss"], "params": hn.count_params(cand.graph),
            "macs": hn.count_macs(cand.graph), "seconds": time.perf_counter() - start,
            "recipe": recipe, "skeleton": skeleton}


def append(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def report(path: Path) -> None:
    from scipy.stats import kendalltau

    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    by_seed = {s: {r["code"]: r["test_acc"] for r in rows if r["seed"] == s} for s in (0, 1)}
    accs = sorted(by_seed[0].values())
    print(f"{len(by_seed[0])} cells (seed 0), {len(by_seed[1])} retrained with seed 1")
    if accs:
        print(f"test accuracy {accs[0]:.4f}..{accs[-1]:.4f}, median {accs[len(accs) // 2]:.4f}")
    both = sorted(set(by_seed[0]) & set(by_seed[1]))
    if len(both) >= 3:
        a, b = [by_seed[0][c] for c in both], [by_seed[1][c] for c in both]
        diffs = [abs(x - y) for x, y in zip(a, b)]
        print(f"two seeds on {len(both)} cells: Kendall {kendalltau(a, b).statistic:.3f}, mean "
              f"|diff| {100 * sum(diffs) / len(diffs):.2f} points, max {100 * max(diffs):.2f}")
    secs = [r["seconds"] for r in rows]
    print(f"median {sorted(secs)[len(secs) // 2]:.0f} s per training, {sum(secs) / 3600:.2f} CPU-h")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100, help="random connected cells (100)")
    parser.add_argument("--reseed", type=int, default=20, help="cells also trained with seed 1")
    parser.add_argument("--reseed-every", type=int, default=5,
                        help="every N-th cell gets the second seed (5)")
    parser.add_argument("--more-seeds", default="",
                        help="comma-separated seeds every cell is trained with as well (e.g. 2)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="short",
                        help="short (the first truth) or long (20,000 images, 10 epochs)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, 1 thread each")
    parser.add_argument("--out", type=Path, help="JSONL output (default: the recipe's file)")
    parser.add_argument("--report", action="store_true", help="summarise the output and exit")
    args = parser.parse_args(argv)
    out = args.out or OUTS[args.recipe]
    if args.report:
        report(out)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    more = tuple(int(x) for x in args.more_seeds.split(",") if x)
    todo = [j for j in jobs(args.cells, args.reseed, args.reseed_every, more) if j not in done(out)]
    print(f"{len(todo)} trainings to go -> {out}", flush=True)
    work = functools.partial(train_one, recipe=RECIPES[args.recipe])
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap(work, todo):
            append(out, row)
            print(f"{row['code']} seed {row['seed']}: test {row['test_acc']:.4f} "
                  f"({row['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
