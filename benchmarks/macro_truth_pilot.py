"""Where does the macro space's truth tell candidates apart? Spread against seed noise, by budget.

``macro_truth.py``'s set (uniform draws and a 50-70 k parameter band, 5 epochs on 10,000 images)
came out nearly flat: candidates' test accuracies spread by 0.51 points (standard deviation)
against 0.31 points between two trainings of one candidate, so no scorer can rank it well. This
pilot measures the same two figures for candidates drawn within a small parameter budget (the
setting of a search under ``--max-params``), with the same recipe: ``--n`` candidates drawn with
``sample_within`` under ``--max-params``, each trained with seeds 0 and 1. Rows are appended to
``results/macro_truth_pilot.jsonl`` (the same fields as the truth's) and the script resumes.

Reliability of a one-seed truth = (candidate variance - seed variance) / candidate variance; the
best Spearman any scorer can reach against it is about its square root.

Usage:
    python benchmarks/macro_truth_pilot.py --max-params 25000 --n 10
    python benchmarks/macro_truth_pilot.py --report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_truth import RECIPES, append, done, train_one  # noqa: E402

OUT = Path(__file__).parent / "results" / "macro_truth_pilot.jsonl"
DRAW_SEED = 2027


def spread(rows: list[dict]) -> dict:
    by: dict[str, dict[int, float]] = {}
    for row in rows:
        by.setdefault(row["code"], {})[row["seed"]] = row["test_acc"]
    pairs = [(v[0], v[1]) for v in by.values() if 0 in v and 1 in v]
    if len(pairs) < 3:
        return {"pairs": len(pairs)}
    seed_var = statistics.fmean((a - b) ** 2 for a, b in pairs) / 2
    cand_var = statistics.pvariance([a for a, _ in pairs])
    from scipy.stats import spearmanr

    return {"pairs": len(pairs), "candidate_sd": cand_var ** 0.5, "seed_sd": seed_var ** 0.5,
            "reliability": max(0.0, (cand_var - seed_var) / cand_var),
            "seed_spearman": float(spearmanr(*zip(*pairs)).statistic),
            "acc_range": (min(a for a, _ in pairs), max(a for a, _ in pairs))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-params", type=int, default=25_000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in OUT.read_text().splitlines()] if OUT.exists() else []
    if args.report:
        for limit in sorted({r["max_params"] for r in rows}):
            print(limit, json.dumps(spread([r for r in rows if r["max_params"] == limit])))
        return 0
    import hypernas as hn
    from hypernas.spaces.budget import Budget, sample_within

    space = hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    cands = sample_within(space, Budget(max_params=args.max_params), args.n, seed=DRAW_SEED)
    todo = [(c.encoding, s) for c in cands for s in (0, 1) if (c.encoding, s) not in done(OUT)]
    for job in todo:
        row = {**train_one(job, recipe=RECIPES["short"], space_name="macro", skeleton={}),
               "max_params": args.max_params}
        append(OUT, row)
        print(f"{row['params']:,} params seed {row['seed']}: test {row['test_acc']:.4f} "
              f"({row['seconds']:.0f} s)", flush=True)
    print(json.dumps(spread([json.loads(line) for line in OUT.read_text().splitlines()
                             if json.loads(line)["max_params"] == args.max_params])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
