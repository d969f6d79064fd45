"""Calibrated intervals and rank uncertainty (issue #18): ``hypernas.ranking.uncertainty`` measured.

For every truth set and every hypernetwork training scored on it (the committed rows of
``results/truth_scores`` and ``results/macro_scores``), a :class:`Calibration` (hypernet and
naswot mapped to accuracy, their disagreement plus a floor as the uncertainty, split-conformal
width) is fitted on the truth's **design half** and judged on its **report half**:

- ``coverage``: the share of report candidates whose mean trained accuracy lies inside their
  nominal 80 % interval (target 70-90 %), and the median interval width in points;
- ``spearman_rank``: Spearman between the rank uncertainty (the width of the rank range the
  interval allows in the report pool) and the absolute rank error of the predicted-accuracy
  ranking (target >= 0.3); ``spearman_rank_hypernet`` the same against the hypernet's own
  ranking's error; ``spearman_u``: the accuracy-unit uncertainty u against the same error;
- ``ucb``: the search's screening order simulated on the report pool: the mean and best truth of
  the first k candidates by predicted accuracy, by the upper end of the interval (an
  upper-confidence rule) and by the rank average of hypernet and naswot (today's order).

The floor (a share of the residual sd) was chosen on the design halves alone: each design half is
split in two folds (alternate positions), a calibration fitted on one fold is judged on the other
and back; ``--choose`` prints that table for floor shares 0.25, 0.5, 1 and 4 (4: the width barely
depends on the disagreement), over the NB201 trainings.

The calibration shipped with the NB201 hypernetwork (``hypernas/ranking/shipped/*.json``,
``calibration``) is the one fitted here on the first truth's design half with the scores of
the shipped ensemble (``SHIPPED_LABEL``): ``--ship`` writes it.

Usage:
    python benchmarks/uncertainty_calibration.py --choose
    python benchmarks/uncertainty_calibration.py            # results/uncertainty_calibration.json
    python benchmarks/uncertainty_calibration.py --ship
    python benchmarks/uncertainty_calibration.py --ranking   # issue #15's metrics
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from scipy.stats import rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).parent))
import macro_ranking  # noqa: E402
import truth_ranking  # noqa: E402

from hypernas.ranking.uncertainty import FLOOR_SHARE, annotate, fit_calibration  # noqa: E402

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "uncertainty_calibration.json"
SHIPPED_CARD = (Path(__file__).parent.parent / "hypernas" / "ranking" / "shipped"
                / "nb201-fashion-mnist-16.json")
LEVEL = 0.8
SHIPPED_LABEL = "shipped-ensemble"  # the truth_scores rows of the hypernetwork shipped today
NB201_LABELS = ("default-seed0", "default-seed1", "shipped-10k", "member-seed1", "member-seed2",
                SHIPPED_LABEL)
SETS = {  # truth -> (score labels, score folder)
    "nb201-short": (NB201_LABELS, "truth_scores"),
    "nb201-long": (NB201_LABELS, "truth_scores"),
    "macro": (("macro-s0", "macro-s1"), "macro_scores"),
}
RECIPES = {
    "nb201-short": "test accuracy after 5 epochs on 10,000 Fashion-MNIST training images at "
                   "16x16 (SGD, lr 0.1 cosine, batch 128): the search's finalist recipe; NB201 "
                   "cells C=16 N=1",
    "nb201-long": "test accuracy after 10 epochs on 20,000 Fashion-MNIST images at 16x16",
    "macro": "test accuracy after 5 epochs on 10,000 Fashion-MNIST images at 16x16",
}


def truth_and_halves(name: str) -> tuple[dict[str, float], list[str], list[str]]:
    """{code: mean test accuracy}, then the design and report halves' codes in frozen order."""
    if name == "macro":
        acc = macro_ranking.truth()
        cands = [c["encoding"] for c in json.loads(macro_ranking.CANDIDATES.read_text())]
    else:
        acc = truth_ranking.truth(name.split("-")[1])
        cands = json.loads(truth_ranking.CELLS.read_text())
    cands = [c for c in cands if c in acc]
    return acc, cands[0::2], cands[1::2]


def score_rows(folder: str, label: str) -> dict[str, dict[str, float]]:
    path = RESULTS / folder / f"{label}.jsonl"
    return {r["code"]: r["scores"] for r in map(json.loads, path.read_text().splitlines())
            if r}


def rho(a: list[float], b: list[float]) -> float | None:
    """Spearman, or None where one side is constant (every candidate ties with the first)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def judge(cal, scores: dict[str, dict[str, float]], acc: dict[str, float],
          codes: list[str]) -> dict:
    codes = [c for c in codes if c in scores]
    ann = annotate({c: scores[c] for c in codes}, cal, LEVEL)
    truth_rank = rankdata([-acc[c] for c in codes])
    pred_rank = rankdata([-ann[c]["predicted_acc"] for c in codes])
    hyper_rank = rankdata([-scores[c]["hypernet"] for c in codes])
    err = [abs(a - b) for a, b in zip(pred_rank, truth_rank)]
    err_h = [abs(a - b) for a, b in zip(hyper_rank, truth_rank)]
    width = [ann[c]["uncertainty"] for c in codes]
    expected = [ann[c]["rank_error"] for c in codes]
    u = [ann[c]["interval"][1] - ann[c]["interval"][0] for c in codes]
    inside = [ann[c]["interval"][0] <= acc[c] <= ann[c]["interval"][1] for c in codes]
    nas_rank = rankdata([-scores[c]["naswot"] for c in codes])
    rank_avg = [-(a + b) for a, b in zip(hyper_rank, nas_rank)]
    orders = {"predicted": [ann[c]["predicted_acc"] for c in codes],
              "ucb": [ann[c]["interval"][1] for c in codes], "rank_average": rank_avg}
    ucb = {}
    for name, key in orders.items():
        ordered = [acc[c] for _, c in sorted(zip(key, codes), key=lambda t: -t[0])]
        ucb[name] = {f"top{k}": {"mean": statistics.fmean(ordered[:k]), "best": max(ordered[:k])}
                     for k in (3, 5, 10)}
    return {"n": len(codes), "coverage": sum(inside) / len(codes),
            "median_width_points": 100 * statistics.median(u),
            "spearman_rank": rho(width, err),
            "spearman_rank_hypernet": rho(width, err_h),
            "spearman_u": rho(u, err),
            "spearman_expected": rho(expected, err),
            "spearman_expected_hypernet": rho(expected, err_h),
            "ties_first": sum(ann[c]["ties_first"] for c in codes), "ucb": ucb}


def calibrate(scores, acc, codes, floor_share, recipe="", source=""):
    codes = [c for c in codes if c in scores]
    return fit_calibration([scores[c] for c in codes], [acc[c] for c in codes],
                           floor_share=floor_share, recipe=recipe, source=source)


def choose() -> dict:
    """2-fold cross-validation inside each NB201 design half, per floor share."""
    table = {}
    for share in (0.25, 0.5, 1.0, 4.0):
        cov, sp, width, sw = [], [], [], []
        for name in ("nb201-short", "nb201-long"):
            acc, design, _ = truth_and_halves(name)
            for label in SETS[name][0]:
                scores = score_rows(SETS[name][1], label)
                folds = design[0::2], design[1::2]
                for a, b in (folds, folds[::-1]):
                    r = judge(calibrate(scores, acc, a, share), scores, acc, b)
                    cov.append(r["coverage"])
                    sp.append(r["spearman_rank"])
                    sw.append(r["spearman_expected"])
                    width.append(r["median_width_points"])
        table[share] = {"coverage": statistics.fmean(cov), "coverage_min": min(cov),
                        "spearman_rank": statistics.fmean(sp),
                        "spearman_expected": statistics.fmean(sw),
                        "median_width_points": statistics.fmean(width)}
    return table


def fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:+.2f}"


def ranking_quality() -> dict:
    """Issue #15's metrics on each NB201 truth's report half: every proxy, the hypernet, the
    rank average the search used before (hypernet + naswot) and the calibrated prediction
    (hypernet and naswot lines fitted on the *first* truth's design half only, so the second
    truth is judged by a calibration that never saw it)."""
    from scipy.stats import rankdata as ranks

    acc_first, design_first, _ = truth_and_halves("nb201-short")
    out: dict = {}
    for name in ("nb201-short", "nb201-long"):
        acc, _, report = truth_and_halves(name)
        for label in SETS[name][0]:
            scores = score_rows("truth_scores", label)
            cal = calibrate(scores, acc_first, design_first, FLOOR_SHARE)
            rep = [c for c in report if c in scores]
            truth = {c: acc[c] for c in rep}
            h, n = ranks([scores[c]["hypernet"] for c in rep]), ranks([scores[c]["naswot"]
                                                                      for c in rep])
            table = {s: truth_ranking.metrics({c: scores[c][s] for c in rep}, truth)
                     for s in ("hypernet", *truth_ranking.PROXIES)}
            table["rank_average"] = truth_ranking.metrics(
                {c: h[i] + n[i] for i, c in enumerate(rep)}, truth)
            table["calibrated"] = truth_ranking.metrics(
                {c: cal.predict(scores[c])[0] for c in rep}, truth)
            out[f"{name}/{label}"] = table
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--choose", action="store_true", help="the design-half floor choice")
    parser.add_argument("--ship", action="store_true",
                        help="write the shipped NB201 hypernetwork's calibration into its card")
    parser.add_argument("--ranking", action="store_true",
                        help="issue #15's ranking metrics of the calibrated prediction against "
                             "every proxy (results/calibrated_ranking.json)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.ranking:
        table = ranking_quality()
        (RESULTS / "calibrated_ranking.json").write_text(json.dumps(table, indent=1) + "\n")
        for key, rows in table.items():
            print(key)
            for scorer, m in rows.items():
                print(f"  {scorer:13s} " + " ".join(f"{k} {m[k]:.4f}" for k in (
                    "spearman", "kendall", "top10_overlap", "top5_mean")))
        return 0
    if args.choose:
        print(json.dumps(choose(), indent=1))
        return 0
    if args.ship:
        acc, design, _ = truth_and_halves("nb201-short")
        cal = calibrate(score_rows("truth_scores", SHIPPED_LABEL), acc, design, FLOOR_SHARE,
                        recipe=RECIPES["nb201-short"],
                        source="benchmarks/results/fmnist_truth.jsonl, design half (even "
                               "positions of fmnist_truth_cells.json), scores of "
                               f"truth_scores/{SHIPPED_LABEL}.jsonl; made by python "
                               "benchmarks/uncertainty_calibration.py --ship")
        card = json.loads(SHIPPED_CARD.read_text())
        card["calibration"] = cal.to_dict()
        SHIPPED_CARD.write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote the calibration of {cal.n} cells into {SHIPPED_CARD}")
        return 0
    out = {"level": LEVEL, "floor_share": FLOOR_SHARE, "results": {}}
    for name, (labels, folder) in SETS.items():
        acc, design, report = truth_and_halves(name)
        for label in labels:
            scores = score_rows(folder, label)
            cal = calibrate(scores, acc, design, FLOOR_SHARE)
            out["results"][f"{name}/{label}"] = {
                "report": judge(cal, scores, acc, report),
                "design": judge(cal, scores, acc, design),
                "calibration": cal.to_dict()}
            r = out["results"][f"{name}/{label}"]["report"]
            print(f"{name:12s} {label:14s} n={r['n']:3d} coverage {r['coverage']:.2f} "
                  f"width {r['median_width_points']:.2f} pt  places/err "
                  f"{fmt(r['spearman_rank'])} (hypernet's {fmt(r['spearman_rank_hypernet'])}) "
                  "expected "
                  f"{r['spearman_expected']:+.2f} ({r['spearman_expected_hypernet']:+.2f}) "
                  f"u/err {fmt(r['spearman_u'])}  ties {r['ties_first']}  top5 mean "
                  + " ".join(f"{k} {v['top5']['mean']:.4f}" for k, v in r["ucb"].items()))
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
