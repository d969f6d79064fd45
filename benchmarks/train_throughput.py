"""Where a hypernetwork training step's time goes, against the floor (issue #18).

The default NB201 hypernetwork (C=16, N=1, Fashion-MNIST at 16x16, the default
``HyperTrainConfig``: 8 candidates per step, 64 images), one torch thread. A step is replayed
phase by phase exactly as ``HyperTrainer.train_step`` runs it, each phase timed:

- ``draw``: sampling the step's candidates (half of them the largest of 3 draws);
- ``batch``: picking the images;
- ``pack``: turning the graphs into the hypernetwork's packed input;
- ``hypernet``: the graph network and the decoder predicting every candidate's weights;
- ``targets``: the 8 candidates run on the images with the predicted weights (functional calls
  on cached weightless networks), and their losses;
- ``backward``: gradients through the candidates and the hypernetwork;
- ``update``: gradient clipping and the optimiser step.

The **floor** is one forward and backward pass of the same 8 candidates with ordinary weights on
the same images (plus an SGD step): what any method that trains these networks pays per image.
Side by side in one process, alternating, medians of ``--steps`` steps after ``--warmup``.
``--profile`` adds the operators with the most self CPU time over 10 steps (torch.profiler).
Results: ``results/train_throughput.json``.

Usage:
    python benchmarks/train_throughput.py --steps 40 --profile
"""

from __future__ import annotations

import argparse
import json
import random
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
from hypernas.hypernet.trainer import HyperTrainConfig, HyperTrainer, meta_network, predicted_logits

OUT = Path(__file__).parent / "results" / "train_throughput.json"
PHASES = ("draw", "batch", "pack", "hypernet", "targets", "backward", "update")


def timed_step(trainer: HyperTrainer, rng: random.Random) -> tuple[dict[str, float], list, tuple]:
    """One training step, as ``train_step`` runs it, with each phase's seconds."""
    cfg, hnet, t = trainer.cfg, trainer.hnet, {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        t[name] = now - clock
        clock = now

    cands = [trainer._draw(rng, cfg.large_draws if i % 2 else 1) for i in range(cfg.meta_batch)]
    heads = [rng.randrange(hnet.config.samples) for _ in cands]
    lap("draw")
    idx = torch.tensor([rng.randrange(len(trainer.train)) for _ in range(cfg.batch_size)])
    x, y = trainer.train.x[idx], trainer.train.y[idx]
    lap("batch")
    packed = hnet.pack([c.graph for c in cands])
    lap("pack")
    weights = hnet(packed, heads)
    lap("hypernet")
    loss = torch.stack([F.cross_entropy(predicted_logits(meta_network(c.graph, c.encoding), w, x),
                                        y) for c, w in zip(cands, weights)]).mean()
    lap("targets")
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    lap("backward")
    torch.nn.utils.clip_grad_norm_(hnet.parameters(), cfg.grad_clip)
    trainer.opt.step()
    lap("update")
    return t, cands, (x, y)


def floor_step(nets: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor) -> float:
    params = [p for net in nets for p in net.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    begun = time.perf_counter()
    loss = torch.stack([F.cross_entropy(net(x), y) for net in nets]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - begun


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = resize_dataset(load_dataset("fashion-mnist"), 16)
    space = hn.load_space("nb201", input_shape=data.input_shape, num_classes=10, C=16, N=1)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space))
    trainer = HyperTrainer(hnet, space, data.train, HyperTrainConfig(steps=10**9, seed=0))
    rng = random.Random(0)
    phases: dict[str, list[float]] = {k: [] for k in PHASES}
    totals, floors = [], []
    for step in range(args.warmup + args.steps):
        t, cands, (x, y) = timed_step(trainer, rng)
        nets = [hn.Network(c.graph).train() for c in cands]
        floor = floor_step(nets, x, y)
        if step >= args.warmup:
            for k, v in t.items():
                phases[k].append(v)
            totals.append(sum(t.values()))
            floors.append(floor)
    med = {k: statistics.median(v) for k, v in phases.items()}
    step_s, floor_s = statistics.median(totals), statistics.median(floors)
    result = {"command": " ".join(["python", *sys.argv]), "steps": args.steps,
              "step_s": step_s, "floor_s": floor_s, "ratio": step_s / floor_s,
              "steps_per_s": 1 / step_s, "phases_s": med,
              "phase_share": {k: v / sum(med.values()) for k, v in med.items()},
              "rows": [{"step": i, "total_s": a, "floor_s": b,
                        **{k: phases[k][i] for k in PHASES}}
                       for i, (a, b) in enumerate(zip(totals, floors))]}
    print(f"step {step_s:.3f} s ({1 / step_s:.2f} steps/s), floor {floor_s:.3f} s: "
          f"x{step_s / floor_s:.2f}")
    for k in PHASES:
        print(f"  {k:9s} {1000 * med[k]:8.1f} ms  {100 * result['phase_share'][k]:5.1f} %")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                timed_step(trainer, rng)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        result["profile_top"] = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000 / 10,
                                  "share": e.self_cpu_time_total / total, "calls": e.count // 10}
                                 for e in events]
        for e in result["profile_top"]:
            print(f"  {e['op'][:48]:48s} {e['self_cpu_ms']:8.1f} ms/step {100 * e['share']:5.1f} %"
                  f" {e['calls']:6d} calls/step")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
