"""How fast the hypernetwork trains and ranks on the macro space, against the floor, by depth.

For each total depth (blocks over the three stages: 3, 6, 9, 12; the first, the fourth and the
last of each depth's candidates are fixed by a seeded draw), on Fashion-MNIST at 16x16, one
torch thread:

- **ranking**: seconds to score one candidate with the hypernetwork (predict its weights with
  every head, run each head on its slice of the 2,000 fixed evaluation images), against the
  **floor**: one plain forward pass of the same network, with ordinary weights, over the same
  2,000 images. The ratio is what the hypernetwork's weight generation costs on top of the
  forward pass any scorer that looks at data pays.
- **training**: seconds per hypernetwork training step on meta-batches of candidates of that
  depth (8 candidates, 64 images), against the floor of one forward and backward pass of the
  same 8 networks on the same images with ordinary weights.

Medians of ``--repeats`` runs, measured alternately, side by side in one process. Run it on an
otherwise idle machine; results go to ``results/macro_speed.json``.

Usage:
    python benchmarks/macro_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import hypernas as hn
from hypernas.data import load_dataset
from hypernas.data.dataset import resize_dataset
from hypernas.hypernet.model import GraphHyperNetwork, HyperNetConfig
from hypernas.hypernet.trainer import HyperTrainConfig, HyperTrainer
from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet

OUT = Path(__file__).parent / "results" / "macro_speed.json"


def by_depth(space, depth: int, n: int, seed: int) -> list:
    """``n`` candidates with ``depth`` blocks in all (depths spread over the stages)."""
    import random

    rng, out = random.Random(seed), []
    stages = len(space.config.stage_widths)
    while len(out) < n:
        cand = space.sample(rng)
        if sum(cand.params[f"s{s}_depth"] for s in range(1, stages + 1)) == depth:
            out.append(cand)
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--depths", default="3,6,9,12")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = resize_dataset(load_dataset("fashion-mnist"), 16)
    space = hn.load_space("macro", input_shape=data.input_shape, num_classes=10)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space))
    score = ScoreConfig()
    slices = eval_slices(data.val, score, hnet.config.samples)
    x_eval = data.val.subset(score.eval_size, seed=score.seed).x
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        cands = by_depth(space, depth, 8, seed=depth)
        nets = [hn.Network(c.graph).eval() for c in cands]

        def rank_one() -> None:
            score_hypernet(hnet, cands[:1], slices)

        def floor_one() -> None:
            with torch.no_grad():
                for i in range(0, len(x_eval), score.eval_batch):
                    nets[0](x_eval[i:i + score.eval_batch])

        trainer = HyperTrainer(hnet, space, data.train, HyperTrainConfig(steps=10**9, seed=0))
        trainer._draw = lambda rng, draws, c=cands: c[rng.randrange(len(c))]  # this depth only
        rng = __import__("random").Random(0)
        x, y = data.train.x[:64], data.train.y[:64]

        def train_step() -> None:
            trainer.train_step(rng, torch.device("cpu"))

        def floor_step() -> None:
            loss = sum(F.cross_entropy(net.train()(x), y) for net in nets)
            loss.backward()

        timed = {"rank": [], "rank_floor": [], "train": [], "train_floor": []}
        for _ in range(args.repeats):  # alternate, so drift hits both sides alike
            timed["rank"].append(median_time(rank_one, 1))
            timed["rank_floor"].append(median_time(floor_one, 1))
            timed["train"].append(median_time(train_step, 1))
            timed["train_floor"].append(median_time(floor_step, 1))
        med = {k: statistics.median(v) for k, v in timed.items()}
        row = {"depth": depth, "params_median": statistics.median(
            hn.count_params(c.graph) for c in cands), **{f"{k}_s": v for k, v in med.items()},
               "rank_ratio": med["rank"] / med["rank_floor"],
               "train_ratio": med["train"] / med["train_floor"], "repeats": args.repeats}
        rows.append(row)
        print(f"depth {depth:2d}: rank {med['rank']:.2f} s/candidate (floor "
              f"{med['rank_floor']:.2f}, x{row['rank_ratio']:.1f}); train "
              f"{med['train']:.2f} s/step (floor {med['train_floor']:.2f}, "
              f"x{row['train_ratio']:.1f})", flush=True)
    OUT.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows},
                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
