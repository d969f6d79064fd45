"""Which short training signal ranks the macro truth: the screen's accuracy, or how fast it fits?

The macro truth (``macro_truth.py``: 5 epochs on 10,000 images) follows its own trainings' final
training loss at Spearman -0.91 (``macro_ranking.py explain``): it measures how fast a network
fits. ``hypernas search`` screens candidates with 2 epochs on 5,000 images and keeps the best
validation accuracy; random search and TPE do the same. This script trains each of the truth's
80 candidates with exactly that screening recipe (from random weights, seed 0) and records every
step's training loss and each epoch's validation accuracy, so that several signals are read off
the one training, each at the cost of the part of the training it needs:

- ``screen``: validation accuracy after both epochs (what the searches use now);
- ``val@1``: validation accuracy after the first epoch (the same schedule, stopped halfway);
- ``fit@K``: minus the mean training loss over the first K steps (a training-speed estimate:
  the sum of training losses, as in Ru et al., "Speedy performance estimation for NAS", 2021),
  for K = a quarter, half and all of the 78 steps; no validation pass needed.

Rows go to ``results/macro_screen_signal.jsonl`` (one per candidate, resumable; ``--shard i/n``
takes every n-th candidate so two pinned processes share the set). ``--report`` gives each
signal's Spearman and Kendall with the truth and the truth of its top pick, over all 80 and
within the 50-70 k band, on the design half, the report half (``macro_ranking.py``'s halves) and
both, beside the shipped macro hypernetwork and the proxies from the committed score rows; and
what each signal costs per candidate (median seconds on one core).

Usage:
    taskset -c 0 python benchmarks/macro_screen_signal.py --shard 0/2
    taskset -c 1 python benchmarks/macro_screen_signal.py --shard 1/2
    python benchmarks/macro_screen_signal.py --report --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_truth import append  # noqa: E402
from macro_ranking import SCORES, cells, print_cells, scorers, truth  # noqa: E402
from macro_truth import CANDIDATES  # noqa: E402
from truth_ranking import load_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "macro_screen_signal.jsonl"
SCREEN = dict(epochs=2, train_size=5_000, lr=0.1, weight_decay=5e-4, resolution=16, seed=0)
REFERENCE = "macro-ship"  # the shipped macro hypernetwork's committed score rows


def measure(code: str, group: str) -> dict:
    import torch

    import hypernas as hn
    from hypernas.data import load_dataset
    from hypernas.refine.train import TrainConfig, prepare_dataset, train_network

    cfg = TrainConfig(**SCREEN)
    ds = prepare_dataset(load_dataset("fashion-mnist"), cfg)
    space = hn.load_space("macro", input_shape=ds.input_shape)
    cand = space.replay(code)
    torch.manual_seed(cfg.seed)
    net = hn.Network(cand.graph)
    losses: list[float] = []
    result = train_network(net, ds.train, ds.val, cfg, on_step=losses.append)
    return {"code": code, "id": cand.id, "group": group, "params": hn.count_params(cand.graph),
            "macs": hn.count_macs(cand.graph), "recipe": SCREEN,
            "losses": [round(v, 5) for v in losses], "history": result.history}


def signals(row: dict) -> dict[str, tuple[float, float]]:
    """{signal: (value, seconds it costs)}; higher is better for every value."""
    hist, losses = row["history"], row["losses"]
    per_epoch = len(losses) // len(hist)
    train_s = [h["seconds"] - h["eval_seconds"] - (hist[i - 1]["seconds"] if i else 0)
               for i, h in enumerate(hist)]
    step_s = sum(train_s) / len(losses)
    out = {"screen": (hist[-1]["val_acc"], hist[-1]["seconds"]),
           "val@1": (hist[0]["val_acc"], hist[0]["seconds"])}
    for k in (per_epoch // 2, per_epoch, len(losses)):
        out[f"fit@{k}"] = (-statistics.fmean(losses[:k]), k * step_s)
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    index, of = (int(x) for x in args.shard.split("/"))
    cands = json.loads(CANDIDATES.read_text())
    done = ({json.loads(line)["code"] for line in OUT.read_text().splitlines() if line.strip()}
            if OUT.exists() else set())
    todo = [c for i, c in enumerate(cands) if i % of == index and c["encoding"] not in done]
    for n, cand in enumerate(todo, start=1):
        start = time.perf_counter()
        append(OUT, measure(cand["encoding"], cand["group"]))
        print(f"{n}/{len(todo)} {cand['encoding']} {time.perf_counter() - start:.0f} s",
              flush=True)
    return 0


def report(args: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
    values = truth()
    by_signal: dict[str, dict[str, float]] = {}
    cost: dict[str, list[float]] = {}
    for row in rows:
        for name, (value, seconds) in signals(row).items():
            by_signal.setdefault(name, {})[row["code"]] = value
            cost.setdefault(name, []).append(seconds)
    ref = scorers(load_scores(REFERENCE, SCORES))
    table = {**by_signal, **{f"{k} ({REFERENCE})" if k == "hypernet" else k: v
                             for k, v in ref.items()}}
    result = {"candidates": len(rows), "recipe": SCREEN,
              "seconds": {k: statistics.median(v) for k, v in cost.items()}}
    result["signals"] = cells(table, values, within=set(by_signal["screen"]))
    print_cells(result["signals"], 28, lambda name, m: f"  {result['seconds'][name]:5.1f} s"
                if name in result["seconds"] else "")
    if args.json:
        (RESULTS / "macro_screen_signal.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard", default="0/1", help="this process's share: i/n (0/1: all)")
    parser.add_argument("--report", action="store_true", help="summarise the rows and exit")
    parser.add_argument("--json", action="store_true", help="with --report, write the JSON")
    args = parser.parse_args(argv)
    return report(args) if args.report else run(args)


if __name__ == "__main__":
    sys.exit(main())
