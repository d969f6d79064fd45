"""Macro truth set: candidates of the dynamic ``macro`` space trained from scratch on Fashion-MNIST.

The ground truth for ranking a space whose candidates differ in depth, width, kernel and
expansion (issue #16). Half the candidates are drawn uniformly from the space; the other half
within one parameter band (50,000 to 70,000 parameters, drawn with ``spaces.budget`` under the
band's top and kept from its bottom), where counting parameters cannot tell candidates apart.
Every fourth candidate is also trained with a second seed, so the truth's own noise is measured.
Each row is one (candidate, seed) training: test accuracy on the 10,000 official test images
(never read by a ranker), validation accuracy, parameters, MACs and the seconds it took. Rows
are appended one at a time and the script resumes from what the file holds.

Recipe: the first NB201 truth's (``fmnist_truth.py``: 10,000 class-balanced training images at
16x16, 5 epochs of SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed, weight decay 5e-4,
batch 128) on the macro space's default configuration.

Usage:
    python benchmarks/macro_truth.py --time 3            # time three trainings first, write nothing
    python benchmarks/macro_truth.py --workers 1          # the set; resumes where it stopped
    python benchmarks/macro_truth.py --report
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_truth import RECIPES, append, done, train_one  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "macro_truth.jsonl"
CANDIDATES = RESULTS / "macro_truth_candidates.json"  # drawn once, then frozen
SKELETON: dict = {}  # the macro space's defaults
UNIFORM, BANDED, BAND = 40, 40, (50_000, 70_000)
RESEED_EVERY = 4
DRAW_SEED = 2026


def candidates() -> list[dict]:
    """The frozen candidate list: ``{"encoding", "group"}`` with group uniform or band."""
    if CANDIDATES.exists():
        return json.loads(CANDIDATES.read_text())
    import hypernas as hn

    space = hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10, **SKELETON)
    uniform = space.sample_many(UNIFORM, seed=DRAW_SEED)
    banded = draw_band(space, BANDED, {c.id for c in uniform}, DRAW_SEED)
    rng = random.Random(DRAW_SEED)
    out = [{"encoding": c.encoding, "group": "uniform"} for c in uniform]
    out += [{"encoding": c.encoding, "group": "band"} for c in banded]
    rng.shuffle(out)  # so a partial set holds both groups
    CANDIDATES.write_text(json.dumps(out, indent=0) + "\n")
    return out


def draw_band(space, n: int, seen: set[str], seed: int) -> list:
    """``n`` candidates within ``BAND`` whose ids are not in ``seen``: drawn with
    ``spaces.budget`` under the band's top, kept from its bottom, in batches seeded from
    ``seed`` on."""
    import hypernas as hn
    from hypernas.spaces.budget import Budget, sample_within

    banded, seen, draw = [], set(seen), 0
    while len(banded) < n:
        for cand in sample_within(space, Budget(max_params=BAND[1]), 4 * n, seed=seed + draw):
            if BAND[0] <= hn.count_params(cand.graph) and cand.id not in seen:
                seen.add(cand.id)
                banded.append(cand)
        draw += 1
    return banded[:n]


def reseeded(encodings: list[str], every: int) -> list[tuple[str, int]]:
    """(encoding, seed) in training order: every ``every``-th candidate's second seed right
    after its first."""
    out = []
    for i, code in enumerate(encodings):
        out.append((code, 0))
        if i % every == 0:
            out.append((code, 1))
    return out


def jobs() -> list[tuple[str, int]]:
    return reseeded([c["encoding"] for c in candidates()], RESEED_EVERY)


def seed_agreement(by_seed: dict[int, dict[str, float]]) -> str | None:
    """The line saying how seeds 0 and 1 agree on the candidates trained with both."""
    from scipy.stats import kendalltau, spearmanr

    both = sorted(set(by_seed[0]) & set(by_seed[1]))
    if len(both) < 3:
        return None
    a, b = [by_seed[0][c] for c in both], [by_seed[1][c] for c in both]
    return (f"two seeds on {len(both)}: Spearman {spearmanr(a, b).statistic:.3f}, Kendall "
            f"{kendalltau(a, b).statistic:.3f}, mean |diff| "
            f"{100 * statistics.fmean(abs(x - y) for x, y in zip(a, b)):.2f} points")


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    group = {c["encoding"]: c["group"] for c in candidates()}
    by_seed = {s: {r["code"]: r["test_acc"] for r in rows if r["seed"] == s} for s in (0, 1)}
    for g in ("uniform", "band"):
        accs = sorted(a for c, a in by_seed[0].items() if group.get(c) == g)
        if accs:
            print(f"{g}: {len(accs)} candidates, test accuracy {accs[0]:.4f}..{accs[-1]:.4f}, "
                  f"median {statistics.median(accs):.4f}")
    agreement = seed_agreement(by_seed)
    if agreement:
        print(agreement)
    secs = [r["seconds"] for r in rows]
    if secs:
        print(f"median {statistics.median(secs):.0f} s per training, {sum(secs) / 3600:.2f} CPU-h")


def main(argv: list[str] | None = None) -> int:
    work = functools.partial(train_one, recipe=RECIPES["short"], space_name="macro",
                             skeleton=SKELETON)
    return run_set(argv, __doc__, work, jobs, OUT, report, code_width=40)


def run_set(argv: list[str] | None, doc: str, work: Callable[[tuple[str, int]], dict],
            jobs: Callable[[], list[tuple[str, int]]], out: Path,
            report: Callable[[Path], None], code_width: int) -> int:
    """A truth set's command line: ``--report``, ``--time N``, or train what ``out`` lacks."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, 1 thread each")
    parser.add_argument("--time", type=int, metavar="N",
                        help="time N trainings of the first candidates and stop (nothing written)")
    parser.add_argument("--report", action="store_true", help="summarise the output and exit")
    args = parser.parse_args(argv)
    if args.report:
        report(out)
        return 0
    if args.time:
        for job in jobs()[:args.time]:
            row = work(job)
            print(f"{row['params']:,} params, {row['macs']:,} MACs: {row['seconds']:.0f} s, "
                  f"test {row['test_acc']:.4f}", flush=True)
        return 0
    todo = [j for j in jobs() if j not in done(out)]
    print(f"{len(todo)} trainings to go -> {out}", flush=True)
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap(work, todo):
            append(out, row)
            print(f"{row['code'][:code_width]} seed {row['seed']}: test {row['test_acc']:.4f} "
                  f"({row['seconds']:.0f} s; {(time.perf_counter() - started) / 60:.0f} min in)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
