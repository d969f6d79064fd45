"""Refinement on Ray Tune against the hand-written Ray loop it replaced, at the same budget (#19).

One base run is made from committed commands: the NB201 space on Fashion-MNIST with the shipped
hypernetwork (``hypernas train nb201 --data fashion-mnist --pretrained``) and 200 candidates
ranked by it (``hypernas rank --n 200``). Each (variant, seed) refines a fresh copy of it with the
same settings on ``--workers`` Ray workers: the top 8, up to 4 epochs, 10,000 training images,
trials started for ``--minutes`` minutes (running ones finish), warm-started from the predicted
weights. The variants:

- ``loop``: the hand-written loop of ``hypernas/refine/on_ray.py`` (``benchmarks/hand_loop.py``):
  ask/tell on the driver, one Ray task per trial, its own median rule on the current epoch;
- ``median``: Tune with its median stopping rule (the trial's best so far against the median of
  the others' running means, from epoch 2, after 3 trials);
- ``asha``: Tune with ASHA (rungs at epochs 2 and 4, the top half go on);
- ``fifo``: Tune without early stopping, for reference.

Per trial it records state, value, planned and trained epochs, start and end (the study's own
times) and the seconds its training took; per (variant, seed): trials finished, pruned, best
validation accuracy, wall clock, and the idle share of the workers (1 - busy / (workers x
wall), busy being the sum of the trials' start-to-end times) with the per-trial overhead (a
trial's start-to-end time less its training). Rows go to ``results/refine_on_tune.jsonl`` (one
per trial) and the summary to ``results/refine_on_tune.json``; re-running skips the (variant,
seed) pairs already there.

Usage:
    python benchmarks/refine_on_tune.py --seeds 0,1 --minutes 5
    python benchmarks/refine_on_tune.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import optuna  # noqa: E402

from hypernas.cli import main  # noqa: E402
from hypernas.cluster import QUIET_TUNE  # noqa: E402
from hypernas.ranking import load_run  # noqa: E402
from hypernas.refine import RefineConfig, open_study, refine_run  # noqa: E402
from hypernas.refine.study import recover_trials, run_lock  # noqa: E402
from hypernas.runs import Run  # noqa: E402
from hypernas.runs.rankings import ranked_rows  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROWS, SUMMARY = RESULTS / "refine_on_tune.jsonl", RESULTS / "refine_on_tune.json"
VARIANTS = ("loop", "median", "asha", "fifo")
BASE = "tune-bench-base"


def base_run(root: Path) -> Run:
    run = Run(BASE, root=root)
    if not run.ranking_path("hypernet").exists():
        assert main(["train", "nb201", "--data", "fashion-mnist", "--pretrained",
                     "--run", BASE]) == 0
        assert main(["rank", BASE, "--n", "200"]) == 0
    return run


def fresh_copy(base: Run, name: str) -> Run:
    run = Run(name, root=base.root)
    shutil.rmtree(run.path, ignore_errors=True)
    shutil.copytree(base.path, run.path, ignore=shutil.ignore_patterns(
        "study.db", "refined", "tune", "exports", "*.lock"))
    return run


def refine(run: Run, variant: str, cfg: RefineConfig, workers: int) -> float:
    loaded = load_run(run)
    started = time.monotonic()
    if variant == "loop":
        from hand_loop import optimize_on_ray

        deadline = started + 60 * cfg.budget_minutes
        with run_lock(run):
            study = open_study(run, cfg.seed)
            recover_trials(run, study)
            optimize_on_ray(loaded, study, ranked_rows(run, None), cfg, workers, None,
                            lambda study, trial: None, lambda study: time.monotonic() < deadline)
    else:
        refine_run(loaded, cfg, workers=workers)
    return time.monotonic() - started


def trial_rows(run: Run, variant: str, seed: int) -> list[dict]:
    rows = []
    for t in open_study(run, create=False).trials:
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        history = t.user_attrs.get("history") or []
        rows.append({"variant": variant, "seed": seed, "number": t.number, "state": t.state.name,
                     "value": t.value, "id": t.user_attrs.get("id"),
                     "planned_epochs": t.params.get("epochs"), "epochs": len(history),
                     "lr": t.params.get("lr"), "start": t.datetime_start.timestamp(),
                     "end": t.datetime_complete.timestamp(),
                     "train_seconds": history[-1]["seconds"] if history else None})
    return rows


def summarise(rows: list[dict], wall: float, workers: int) -> dict:
    done = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    busy = sum(r["end"] - r["start"] for r in done)
    overheads = [r["end"] - r["start"] - r["train_seconds"] for r in done if r["train_seconds"]]
    values = [r["value"] for r in done if r["state"] == "COMPLETE"]
    return {"finished": len(done), "pruned": sum(r["state"] == "PRUNED" for r in done),
            "failed": sum(r["state"] == "FAIL" for r in rows),
            "epochs_trained": sum(r["epochs"] for r in done),
            "best_val_acc": max(values) if values else None, "wall_s": wall,
            "idle_share": 1 - busy / (workers * wall),
            "overhead_s_median": statistics.median(overheads) if overheads else None}


def report() -> None:
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    print(f"{'variant':8} {'seeds':>5} {'finished':>9} {'pruned':>7} {'epochs':>7} "
          f"{'best val':>9} {'idle':>6} {'overhead s':>11}")
    for variant in VARIANTS:
        runs = [v for k, v in summary.items() if k.split("/")[0] == variant]
        if not runs:
            continue

        def med(key: str) -> float:
            return statistics.median(r[key] for r in runs)

        print(f"{variant:8} {len(runs):>5} {med('finished'):>9.1f} {med('pruned'):>7.1f} "
              f"{med('epochs_trained'):>7.1f} {med('best_val_acc'):>9.4f} "
              f"{med('idle_share'):>6.3f} {med('overhead_s_median'):>11.2f}")


def run_benchmark(seeds: list[int], variants: list[str], minutes: float, workers: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for key, value in QUIET_TUNE.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    # the loop's remote function lives in benchmarks/hand_loop.py: Ray's workers import it
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parent.resolve()), os.environ.get("PYTHONPATH")) if p)
    root = Path(os.environ.get("HYPERNAS_RUNS", "runs"))
    base = base_run(root)
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    for seed in seeds:
        for variant in variants:
            key = f"{variant}/{seed}"
            if key in summary:
                continue
            run = fresh_copy(base, f"tune-bench-{variant}-s{seed}")
            cfg = RefineConfig(top=8, trials=1000, max_epochs=4, budget_minutes=minutes,
                               seed=seed, scheduler="asha" if variant == "asha" else "median",
                               prune=variant != "fifo")
            wall = refine(run, variant, cfg, workers)
            rows = trial_rows(run, variant, seed)
            with ROWS.open("a") as out:
                for row in rows:
                    out.write(json.dumps(row) + "\n")
            summary[key] = {**summarise(rows, wall, workers), "minutes": minutes,
                            "workers": workers}
            SUMMARY.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
            print(key, json.dumps(summary[key]), flush=True)


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if not args.report:
        run_benchmark([int(s) for s in args.seeds.split(",")], args.variants.split(","),
                      args.minutes, args.workers)
    report()


if __name__ == "__main__":
    cli()
