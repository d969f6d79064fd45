"""ResNet truth set: candidates of the example PyTorch space ``search_spaces/resnet.py`` trained
from scratch on Fashion-MNIST.

The ground truth for ranking a space written as ``define(trial, config) -> nn.Module`` and imported
by ``torch.fx`` (issue #20). ``CANDIDATES`` candidates are drawn uniformly from the space (seed
``DRAW_SEED``, ``SearchSpace.sample_many``) and frozen to ``results/resnet_truth_candidates.json``
on first use; every fourth candidate (positions 0, 4, 8, ...) is also trained with a second seed,
so the truth's own noise is measured. Each row is one (candidate, seed) training: test accuracy
on the 10,000 official test images (never read by a ranker), validation accuracy, parameters,
MACs and the seconds it took. Rows are appended one at a time to ``results/resnet_truth.jsonl``
and the script resumes from what the file holds.

Recipe: the macro truth's (``macro_truth.py``, ``fmnist_truth.RECIPES["short"]``: 10,000
class-balanced training images area-resized to 16x16, 5 epochs of SGD with Nesterov momentum 0.9,
lr 0.1 cosine-annealed, weight decay 5e-4, batch 128, gradient clipping at norm 5), the space
built for the prepared data's input shape (1, 16, 16) and 10 classes.

Usage:
    python benchmarks/resnet_truth.py --time 1            # time one training first, write nothing
    python benchmarks/resnet_truth.py --workers 1          # the set; resumes where it stopped
    python benchmarks/resnet_truth.py --report
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_truth import RECIPES, train_one  # noqa: E402
from macro_truth import reseeded, run_set, seed_agreement  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "resnet.py")  # by path, as a user would give it
RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "resnet_truth.jsonl"
CANDIDATES_FILE = RESULTS / "resnet_truth_candidates.json"  # drawn once, then frozen
SKELETON: dict = {}  # the space has no settings beyond input shape and classes
RECIPE = RECIPES["short"]
CANDIDATES = 24
RESEED_EVERY = 4
DRAW_SEED = 2026


def candidates() -> list[dict]:
    """The frozen candidate list: ``{"encoding", "id", "params", "macs"}``."""
    if CANDIDATES_FILE.exists():
        return json.loads(CANDIDATES_FILE.read_text())
    import hypernas as hn

    space = hn.load_space(SPACE, input_shape=(1, RECIPE["resolution"], RECIPE["resolution"]),
                          num_classes=10, **SKELETON)
    drawn = space.sample_many(CANDIDATES, seed=DRAW_SEED)
    out = [{"encoding": c.encoding, "id": c.id, "params": hn.count_params(c.graph),
            "macs": hn.count_macs(c.graph)} for c in drawn]
    CANDIDATES_FILE.write_text(json.dumps(out, indent=0) + "\n")
    return out


def jobs() -> list[tuple[str, int]]:
    return reseeded([c["encoding"] for c in candidates()], RESEED_EVERY)


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_seed = {s: {r["code"]: r["test_acc"] for r in rows if r["seed"] == s} for s in (0, 1)}
    accs = sorted(by_seed[0].values())
    print(f"{len(by_seed[0])} of {len(candidates())} candidates (seed 0), "
          f"{len(by_seed[1])} with seed 1")
    if accs:
        print(f"test accuracy {accs[0]:.4f}..{accs[-1]:.4f}, median {statistics.median(accs):.4f}")
    agreement = seed_agreement(by_seed)
    if agreement:
        print(agreement)
    secs = [r["seconds"] for r in rows]
    if secs:
        print(f"median {statistics.median(secs):.0f} s per training (min {min(secs):.0f}, max "
              f"{max(secs):.0f}), {sum(secs) / 3600:.2f} CPU-h")


def main(argv: list[str] | None = None) -> int:
    work = functools.partial(train_one, recipe=RECIPE, space_name=SPACE, skeleton=SKELETON)
    return run_set(argv, __doc__, work, jobs, OUT, report, code_width=60)


if __name__ == "__main__":
    sys.exit(main())
