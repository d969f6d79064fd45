"""Where a search's regret comes from: its last choice, or the cells it reached.

For finished ``hypernas search`` runs (benchmarks/search_outcome.py's), every finalist and the
best few screens are trained with the truth-set recipe (benchmarks/fmnist_truth.py) over several
seeds, so each has a less noisy test accuracy (the mean). Per run this gives:

- the regret of the cell the search chose (on the means, against the best reference cell of
  search_outcome.py's multi-seed report);
- the regret of the best finalist, had the last choice been perfect;
- the regret of the best of the top screens, had the finalists been chosen perfectly too;
- the regret of one of the top screens at random (the mean over them);
- the finalists' own validation accuracy (one fit each, what the search decides on) beside
  their means, and the truth's seed noise against the true spread of the cells trained.

If the best finalist or the best screen is far better than the choice, the last choice is what
to improve (more trainings per finalist); if not, what the search reaches (ranking, screening)
is. Trainings are cached with search_outcome.py's extra evaluations and the script resumes.

Usage:
    python benchmarks/final_choice.py --runs runs/search-outcome/outcome-0 ... --shard 0/2
    python benchmarks/final_choice.py --runs ... --report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fmnist_truth  # noqa: E402
import search_outcome  # noqa: E402

import hypernas as hn  # noqa: E402
from hypernas.search.pipeline import screen_order  # noqa: E402
from hypernas.refine import completed, open_study  # noqa: E402
from hypernas.runs import Run  # noqa: E402


def cells_of(run_dir: Path, top_screens: int) -> dict:
    """The run's chosen cell, its finalists (fit val acc) and its best screens (screen val acc),
    as NB201 codes, with the hypernet rank each screen was taken at."""
    run = Run(run_dir.name, root=run_dir.parent)
    space = hn.load_space("nb201", input_shape=(1, 16, 16), **fmnist_truth.SKELETON)
    study = open_study(run, create=False)

    def code(trial) -> str:
        return space.code(space.replay(trial.user_attrs["encoding"]).params)

    screens = screen_order(study)  # the search's own order: best screen first
    by_number = {t.number: t for t in screens}
    fits = [t for t in completed(study) if "fit_of" in t.user_attrs]
    chosen = max(fits, key=lambda t: t.value)
    return {"run": str(run_dir), "screened": len(screens), "chosen": code(chosen),
            "finalists": {code(t): {"fit_val": t.value,
                                    "screen_val": by_number[t.user_attrs["fit_of"]].value}
                          for t in fits},
            "screens": [{"code": code(t), "screen_val": t.value, "rank": t.params["rank"]}
                        for t in screens[:top_screens]]}


def known() -> dict[tuple[str, int], float]:
    """Every truth-recipe training on record, the searches' chosen cells (seed 0) included."""
    out = {}
    for path in sorted(search_outcome.RESULTS.glob("search_outcome*.jsonl")):
        if path != search_outcome.EVALS:
            out.update(search_outcome.known_runs(path))
    return out


def jobs(runs: list[dict], seeds: list[int]) -> list[tuple[str, int]]:
    have = known()
    codes = {c for r in runs for c in [*r["finalists"], *(s["code"] for s in r["screens"])]}
    return sorted({(c, s) for c in codes for s in seeds if (c, s) not in have})


def report(runs: list[dict], seeds: list[int]) -> dict:
    have = known()

    def mean(code: str) -> float | None:
        accs = [have.get((code, s)) for s in seeds]
        return None if None in accs else 100 * statistics.fmean(accs)

    ref = search_outcome.multi_seed(search_outcome.OUT, [], seeds)["reference"] * 100
    rows, out = [], {"reference": ref, "seeds": seeds}
    for r in runs:
        fin = {c: mean(c) for c in r["finalists"]}
        scr = {s["code"]: mean(s["code"]) for s in r["screens"]}
        if None in fin.values() or None in scr.values():
            return {"missing": "train first (without --report)"}
        rows.append({"run": r["run"], "screened": r["screened"], "finalists": len(fin),
                     "chosen": r["chosen"], "regret_chosen": ref - fin[r["chosen"]],
                     "regret_best_finalist": ref - max(fin.values()),
                     "regret_best_screen": ref - max([*scr.values(), *fin.values()]),
                     "regret_top_screen": ref - scr[r["screens"][0]["code"]],
                     "regret_random_screen": ref - statistics.fmean(scr.values()),
                     "finalist_means": {c: round(m, 2) for c, m in fin.items()},
                     "finalist_fit_val": {c: round(100 * v["fit_val"], 2)
                                          for c, v in r["finalists"].items()},
                     "screen_means": [(s["code"], s["rank"], round(100 * s["screen_val"], 2),
                                       round(scr[s["code"]], 2)) for s in r["screens"]]})
    out["runs"] = rows
    for key in ("regret_chosen", "regret_best_finalist", "regret_best_screen",
                "regret_top_screen", "regret_random_screen"):
        vals = [row[key] for row in rows]
        out[key] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals)}
    out["seed_noise"] = seed_noise(have, seeds)
    return out


def seed_noise(have: dict[tuple[str, int], float], seeds: list[int]) -> dict:
    """Over every cell trained with all ``seeds``: one training's seed-to-seed standard
    deviation (pooled), the spread of the cells' means, and the true spread left once the
    seeds' noise is taken out of it (points)."""
    accs = [[100 * have[(c, s)] for s in seeds] for c in {c for c, _ in have}
            if all((c, s) in have for s in seeds)]
    within = statistics.fmean(statistics.variance(a) for a in accs)
    means = statistics.pvariance([statistics.fmean(a) for a in accs])
    true = max(means - within / len(seeds), 0.0)
    return {"cells": len(accs), "one_training_sd": within ** 0.5, "means_sd": means ** 0.5,
            "true_sd": true ** 0.5, "reliability_of_one_training": true / (true + within)}


def main(argv: list[str] | None = None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a process-wide setting: the script's
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="search run folders")
    parser.add_argument("--top-screens", type=int, default=5)
    parser.add_argument("--eval-seeds", default="0,1,2")
    parser.add_argument("--shard", default="0/1", help="i/n: this process's share of trainings")
    parser.add_argument("--report", action="store_true", help="only summarise")
    parser.add_argument("--dry", action="store_true", help="only count the trainings to do")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.eval_seeds.split(",")]
    runs = [cells_of(d, args.top_screens) for d in args.runs]
    if args.dry:
        print(len(jobs(runs, seeds)), "trainings to do")
        return 0
    if not args.report:
        i, n = map(int, args.shard.split("/"))
        search_outcome.train_missing(jobs(runs, seeds)[i::n], known)
    print(json.dumps(report(runs, seeds), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
