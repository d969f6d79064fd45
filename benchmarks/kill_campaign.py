"""Kill -9 at random moments in every stage; after each kill the same command must finish with
the result of an uninterrupted run.

For each stage (``train``, ``rank``, ``refine``, ``search``; ``rank-ray`` and ``refine-ray`` with
``--ray``) on a tiny setup (the ``mlp`` space on the digits data, seconds per command): time one
uninterrupted run, then ``--kills`` times start the command afresh, SIGKILL it at a uniformly
random moment within that time, run the same command again to the end and compare:

- ``train``: every step logged once, the checkpoint at the last step;
- ``rank``: the same ids with the same scores as the uninterrupted ranking, no id twice;
- ``refine``: the asked number of finished trials, each seed candidate finished once;
- ``search``: it finishes and exports a winner.

Writes per stage the kills, the runs that came out right, rows lost and rows doubled to
``results/kill_campaign.json``.

Usage:
    python benchmarks/kill_campaign.py --kills 20
    python benchmarks/kill_campaign.py --kills 10 --ray --only rank-ray,refine-ray \
        --out benchmarks/results/kill_campaign_ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "kill_campaign.json"
TINY = ["mlp", "--data", "digits", "--set", "max_depth=2"]
TRAIN = ["train", *TINY, "--meta-batch", "2", "--batch-size", "8", "--dim", "8", "--samples",
         "2", "--run", "t", "--steps", "200"]
SETUP_TRAIN = [*TRAIN[:-1], "30"]


def commands(ray: bool) -> dict[str, list[str]]:
    out = {"train": TRAIN, "rank": ["rank", "t", "--n", "60", "--json"],
           "refine": ["refine", "t", "--top", "4", "--trials", "4", "--max-epochs", "1",
                      "--mutations", "0"],
           "search": ["search", *TINY, "--budget", "0.3", "--n", "20", "--top", "3",
                      "--format", "safetensors", "--run", "s"]}
    if ray:
        out["rank-ray"] = [*out["rank"], "--workers", "2"]
        out["refine-ray"] = [*out["refine"], "--workers", "2"]
    return out


def run(argv: list[str], root: Path, kill_after: float | None = None) -> int:
    env = {**os.environ, "HYPERNAS_RUNS": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "hypernas", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if kill_after is None:
        return proc.wait()
    try:
        return proc.wait(timeout=kill_after)  # finished before the kill: counts as not killed
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and any Ray processes it started
        proc.wait()
        return -9


def result(stage: str, root: Path) -> dict:
    """What the stage left, in a form two runs can be compared by."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hypernas.runs import Run, read_jsonl

    if stage == "train":
        steps = [r["step"] for r in read_jsonl(Run("t", root=root).train_log_path)]
        return {"rows": steps}
    if stage.startswith("rank"):
        rows = list(read_jsonl(Run("t", root=root).ranking_path("hypernet")))
        return {"rows": sorted(r["id"] for r in rows),
                "scores": {r["id"]: round(r["score"], 5) for r in rows}}
    if stage.startswith("refine"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from hypernas.refine.study import open_study

        trials = open_study(Run("t", root=root), create=False).trials
        done = [t for t in trials if t.state.name == "COMPLETE"]
        return {"rows": sorted(t.params["rank"] for t in done)}
    card = Run("s", root=root).exports_dir / "best" / "model_card.json"
    return {"rows": [1] if card.exists() else []}


def compare(stage: str, got: dict, want: dict) -> tuple[int, int]:
    """(rows lost, rows doubled) of a run against the uninterrupted one."""
    lost = len(set(want["rows"]) - set(got["rows"]))
    doubled = len(got["rows"]) - len(set(got["rows"]))
    if "scores" in want:
        lost += sum(1 for i, s in want["scores"].items() if got["scores"].get(i) != s)
    return lost, doubled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="kills per stage (20)")
    p.add_argument("--ray", action="store_true", help="also rank and refine on 2 Ray workers")
    p.add_argument("--only", metavar="A,B", help="only these stages (e.g. rank-ray,refine-ray)")
    p.add_argument("--out", type=Path, default=OUT, help="where the figures go")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="kills-") as tmp:
        base = Path(tmp) / "base"
        assert run(SETUP_TRAIN, base) == 0  # a trained run for rank, refine to start from
        assert run(["rank", "t", "--n", "8"], base) == 0
        only = set(args.only.split(",")) if args.only else None
        for stage, argv in commands(args.ray).items():
            if only is not None and stage not in only:
                continue
            ref = Path(tmp) / f"{stage}-ref"
            shutil.copytree(base, ref)
            if stage == "train":
                shutil.rmtree(ref / "t")
            started = time.perf_counter()
            assert run(argv, ref) == 0, f"{stage} fails even without a kill"
            seconds = time.perf_counter() - started
            want = result(stage, ref)
            f = {"kills": 0, "came_out_right": 0, "rows_lost": 0, "rows_doubled": 0,
                 "uninterrupted_s": round(seconds, 1)}
            for k in range(args.kills):
                root = Path(tmp) / f"{stage}-{k}"
                shutil.copytree(base, root)
                if stage == "train":
                    shutil.rmtree(root / "t")
                if run(argv, root, kill_after=rng.uniform(0.05, 0.95) * seconds) == -9:
                    f["kills"] += 1
                status = run(argv, root)
                lost, doubled = compare(stage, result(stage, root), want)
                f["rows_lost"] += lost
                f["rows_doubled"] += doubled
                f["came_out_right"] += int(status == 0 and not lost and not doubled)
                shutil.rmtree(root)
            figures[stage] = f
            print(f"{stage:11s} {f['kills']:3d} kills, {f['came_out_right']}/{args.kills} came out "
                  f"right, rows lost {f['rows_lost']}, doubled {f['rows_doubled']}", flush=True)
    args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "stages": figures},
                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
