"""How many NB201 candidates per second does ranking score: in-process, on Ray with 1 and 2 workers,
against the floor of a plain forward pass per candidate?

Makes a tiny run (NB201 C=16 N=1, Fashion-MNIST at 16x16 as benchmarks/rank_nb201.py, hypernet
trained a few steps) in a temporary runs folder, then ranks the same N candidates (a) in-process
with ``rank_run``, (b) with ``rank_on_ray`` and 1 worker, (c) with 2 workers, each into a fresh
ranking label. Ray timings start cold (a private local cluster and its actors are started and shut
down inside the call); ``steady`` rates count only the rows after the first chunk, between the
first and last chunk's arrival.

The floor is a plain forward pass of each candidate over all the fixed evaluation images with
one set of predicted weights already materialised (only ``functional_call`` is timed). The hypernet
ranking per candidate is split into weight generation (every ensemble head), forward passes (each
head over its own slice of the images, with the loss) and the rest (replay, graph packing,
bookkeeping); the parts are timed in a separate pass, so the rest can come out slightly negative.

Usage:
    python benchmarks/ray_throughput.py --n 200
    python benchmarks/ray_throughput.py --n 20 --steps 5 --out /tmp/ray_throughput.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from hypernas.data import DataConfig
from hypernas.ranking.on_ray import rank_on_ray
from hypernas.hypernet.model import HyperNetConfig
from hypernas.hypernet.trainer import (HyperTrainConfig, load_checkpoint, meta_network,
                                       predicted_logits)
from hypernas.runs import Run
from hypernas.ranking.scoring import eval_slices
from hypernas.spaces.space import Candidate
from hypernas.ranking import LoadedRun, RunConfig, rank_run, start_run, train_run

RESULTS = Path(__file__).parent / "results"
SKELETON = {"C": 16, "N": 1}
PACK = 16  # graphs per hypernetwork call, as rank_run's default chunk


def timed_ranking(rank: Callable[..., dict], n: int) -> dict[str, Any]:
    """Wall time of one ranking call, and the steady rate between its first and last chunk."""
    arrivals: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    by_id = rank(on_rows=lambda rows: arrivals.append((time.perf_counter(), len(rows))))
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "cands_per_s": n / wall, "first_rows_s": arrivals[0][0] - t0,
           "chunks": len(arrivals)}
    if len(arrivals) > 1:
        span = arrivals[-1][0] - arrivals[0][0]
        out["steady_cands_per_s"] = sum(k for _, k in arrivals[1:]) / span if span > 0 else None
    return {"result": by_id, **out}


@torch.no_grad()
def floor_and_breakdown(loaded: LoadedRun, cands: list[Candidate]) -> dict[str, float]:
    """Seconds per candidate: one plain forward pass over the evaluation images (the floor),
    weight generation for every head, and each head's forward pass with the loss over its own
    slice of those images, as ``score_hypernet`` runs them."""
    hnet, _, _ = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    hnet.eval()
    slices = eval_slices(loaded.data.val, loaded.config.score, hnet.config.samples)
    batches = [b for part in slices for b in part]
    nets = [meta_network(c.graph, c.id) for c in cands]  # built (and cached) outside the clocks
    gen = floor = fwd = 0.0
    for start in range(0, len(cands), PACK):
        part = cands[start:start + PACK]
        t0 = time.perf_counter()
        samples = hnet.samples([c.graph for c in part])
        gen += time.perf_counter() - t0
        for net, heads in zip(nets[start:start + PACK], samples):
            t0 = time.perf_counter()
            for x, _ in batches:
                predicted_logits(net, heads[0], x)
            floor += time.perf_counter() - t0
            t0 = time.perf_counter()
            for weights, part in zip(heads, slices):
                for x, y in part:
                    F.cross_entropy(predicted_logits(net, weights, x), y, reduction="sum")
            fwd += time.perf_counter() - t0
    n = len(cands)
    return {"floor_s": floor / n, "weight_generation_s": gen / n, "forward_all_heads_s": fwd / n,
            "heads": hnet.config.samples, "eval_images": sum(len(y) for _, y in batches)}


def max_score_gap(a: dict[str, dict], b: dict[str, dict]) -> float:
    return max(abs(a[k]["score"] - b[k]["score"]) for k in a)


def main(argv: list[str] | None = None) -> int:
    from hypernas.cluster import default_auth_mode

    default_auth_mode()  # a process-wide setting, made before Ray is imported, as the CLI does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="candidates ranked by each method")
    parser.add_argument("--steps", type=int, default=20, help="hypernetwork training steps")
    parser.add_argument("--chunk", type=int, default=32, help="candidates per Ray call")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in-process (each Ray worker uses 1)")
    parser.add_argument("--seed", type=int, default=0, help="which candidates")
    parser.add_argument("--runs-root", default=None, help="default: a temporary folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_throughput.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="ray-throughput-") as tmp:
        run = Run("ray-throughput", root=args.runs_root or tmp)
        cfg = RunConfig(space="nb201", space_settings=SKELETON, data=DataConfig("fashion-mnist"),
                        resolution=16, hypernet=HyperNetConfig(),
                        train=HyperTrainConfig(steps=args.steps))
        loaded = start_run(run, cfg)
        t0 = time.perf_counter()
        train_run(loaded)
        train_s = time.perf_counter() - t0
        cands = loaded.space.sample_many(args.n, seed=args.seed)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        methods = {
            "in_process": lambda **kw: rank_run(loaded, cands, label=f"inproc-{stamp}", **kw),
            "ray_1_worker": lambda **kw: rank_on_ray(loaded, cands, label=f"ray1-{stamp}",
                                                     workers=1, chunk=args.chunk, **kw),
            "ray_2_workers": lambda **kw: rank_on_ray(loaded, cands, label=f"ray2-{stamp}",
                                                      workers=2, chunk=args.chunk, **kw),
        }
        load_before = os.getloadavg()
        timings = {name: timed_ranking(rank, len(cands)) for name, rank in methods.items()}
        floor = floor_and_breakdown(loaded, cands)
        load_after = os.getloadavg()

    results = {name: t.pop("result") for name, t in timings.items()}
    inproc, ray1, ray2 = (timings[k] for k in methods)
    per_cand = inproc["wall_s"] / len(cands)
    other = per_cand - floor["weight_generation_s"] - floor["forward_all_heads_s"]
    steady = [t.get("steady_cands_per_s") for t in (ray1, ray2)]
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": load_after, "torch": torch.__version__,
                    "torch_threads_in_process": args.threads},
        "setup": {"space": "nb201", **SKELETON, "data": "fashion-mnist", "resolution": 16,
                  "train_steps": args.steps, "train_s": train_s, "n": len(cands),
                  "chunk": args.chunk, "eval_images": floor["eval_images"],
                  "heads": floor["heads"]},
        "methods": timings,
        "scaling_efficiency_wall": ray2["cands_per_s"] / (2 * ray1["cands_per_s"]),
        "scaling_efficiency_steady": (steady[1] / (2 * steady[0])) if all(steady) else None,
        "ray1_over_in_process_wall": ray1["cands_per_s"] / inproc["cands_per_s"],
        "ray1_over_in_process_steady": (steady[0] / inproc["cands_per_s"]) if steady[0] else None,
        "floor": {
            "floor_s_per_cand": floor["floor_s"],
            "ranking_s_per_cand": per_cand,
            "ranking_over_floor": per_cand / floor["floor_s"],
            "breakdown_s_per_cand": {"weight_generation": floor["weight_generation_s"],
                                     "forward_all_heads": floor["forward_all_heads_s"],
                                     "other": other},
        },
        "max_score_gap": {"ray1_vs_in_process": max_score_gap(results["in_process"],
                                                              results["ray_1_worker"]),
                          "ray2_vs_in_process": max_score_gap(results["in_process"],
                                                              results["ray_2_workers"])},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(summary(report))
    print(f"report: {args.out}")
    return 0


def summary(r: dict[str, Any]) -> str:
    m, f = r["methods"], r["floor"]
    lines = [f"{r['setup']['n']} NB201 candidates, chunk <= {r['setup']['chunk']}, "
             f"{r['machine']['cpus']} CPUs (load {r['machine']['loadavg_before'][0]:.1f})"]
    for name, t in m.items():
        steady = t.get("steady_cands_per_s")
        lines.append(f"  {name:14s} {t['cands_per_s']:7.1f} cands/s wall ({t['wall_s']:.1f} s)"
                     + (f", {steady:7.1f} steady" if steady else ""))
    eff = r["scaling_efficiency_steady"]
    lines.append(f"  scaling efficiency rate2/(2*rate1): wall {r['scaling_efficiency_wall']:.2f}"
                 + (f", steady {eff:.2f}" if eff else ""))
    ratio = r["ray1_over_in_process_steady"]
    lines.append(f"  ray 1 worker / in-process: wall {r['ray1_over_in_process_wall']:.2f}"
                 + (f", steady {ratio:.2f}" if ratio else ""))
    b = f["breakdown_s_per_cand"]
    lines.append(f"  floor {1e3 * f['floor_s_per_cand']:.2f} ms/cand; ranking "
                 f"{1e3 * f['ranking_s_per_cand']:.2f} ms/cand = {f['ranking_over_floor']:.1f}x "
                 f"floor (weights {1e3 * b['weight_generation']:.2f}, forwards "
                 f"{1e3 * b['forward_all_heads']:.2f} over {r['setup']['heads']} heads, other "
                 f"{1e3 * b['other']:.2f} ms)")
    gaps = r["max_score_gap"]
    lines.append(f"  max |score| gap vs in-process: ray1 {gaps['ray1_vs_in_process']:.1e}, "
                 f"ray2 {gaps['ray2_vs_in_process']:.1e}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
