"""One torch thread or two? The search's two costly stages timed at each thread count.

Times, in this process, (a) hypernetwork training steps of the default search run config
(NB201 C=16 N=1 on Fashion-MNIST at 16x16) and (b) one screening trial (2 epochs on 5,000 images
from random weights) of a fixed cell, first with 1 thread and then with 2, alternating
``--repeats`` times; reports the medians and the speed-up. Run it on an otherwise idle machine.

Usage:
    python benchmarks/threads.py --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import hypernas as hn
from hypernas.hypernet.trainer import HyperTrainConfig
from hypernas.search.pipeline import SearchConfig
from hypernas.runs import Run
from hypernas.refine.train import TrainConfig, train_network
from hypernas.ranking import start_run, train_run

CELL = "230321"  # any NB201 code; one of the cells the search-outcome runs picked


def time_steps(root: Path, steps: int, tag: str) -> float:
    """Seconds per hypernetwork training step (a fresh run, the search's default setup)."""
    cfg = dataclasses.replace(SearchConfig().run_config(),
                              train=HyperTrainConfig(steps=steps, seed=0, checkpoint_every=1e9))
    loaded = start_run(Run(f"threads-{tag}", root=root), cfg)
    t0 = time.perf_counter()
    train_run(loaded)
    return (time.perf_counter() - t0) / steps


def time_screen(data) -> float:
    space = hn.load_space("nb201", input_shape=data.input_shape, C=16, N=1)
    torch.manual_seed(0)
    net = hn.Network(space.replay(CELL).graph)
    t0 = time.perf_counter()
    train_network(net, data.train, data.val, TrainConfig(epochs=2, train_size=5_000, resolution=16))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from hypernas.ranking import materialise

    _, data = materialise(SearchConfig().run_config())
    times: dict[int, dict[str, list[float]]] = {1: {"step": [], "screen": []},
                                                2: {"step": [], "screen": []}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times[threads]["step"].append(time_steps(Path(tmp), args.steps, f"{r}-{threads}"))
                times[threads]["screen"].append(time_screen(data))
    out = {"command": "python benchmarks/threads.py " + " ".join(argv or sys.argv[1:]),
           "cores": torch.get_num_threads(), "torch": torch.__version__}
    for stage in ("step", "screen"):
        one, two = (statistics.median(times[t][stage]) for t in (1, 2))
        out[stage] = {"median_s_1_thread": one, "median_s_2_threads": two, "speedup": one / two,
                      "runs": {t: times[t][stage] for t in (1, 2)}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
