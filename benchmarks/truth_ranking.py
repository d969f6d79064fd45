"""Does a ranking hold? Every scorer against both Fashion-MNIST truths, on a design and a report half.

Two truths rank the same NB201 cells (C=16, N=1, 16x16; ``fmnist_truth.py``): the first trained
with 10,000 images for 5 epochs, the second ("long") with 20,000 images for 10 epochs. The cells
are split once, by their position in the frozen cell list (``fmnist_truth_cells.json``): even
positions are the **design half** (where choices such as a score's form or weight are made),
odd positions the **report half** (where they are judged). A truth's value for a cell is its test
accuracy, averaged over the seeds the cell was trained with.

``score`` ranks the truth cells with one trained hypernetwork run and every zero-cost proxy (in
the run's own rankings, so a re-run resumes) and writes one row per cell to
``results/truth_scores/LABEL.jsonl``: code, id, params and each scorer's score, so every figure
below can be recomputed without the run. ``report`` reads those files and prints, for every
scorer, truth and half, Spearman, Kendall, top-10 % overlap and the mean truth of the first five
picks; with ``--json`` it writes the same to ``results/truth_ranking.json``. NAS-Bench-201's
labels are never read here.

Usage:
    hypernas train nb201 --data fashion-mnist --set N=1 --resolution 16 --run t15-default --steps 2910
    python benchmarks/truth_ranking.py score --run t15-default --label default-seed0
    python benchmarks/truth_ranking.py report default-seed0 default-seed1 --json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable

from scipy.stats import kendalltau, spearmanr

RESULTS = Path(__file__).parent / "results"
CELLS = RESULTS / "fmnist_truth_cells.json"
TRUTHS = {"short": RESULTS / "fmnist_truth.jsonl", "long": RESULTS / "fmnist_truth_long.jsonl"}
SCORES = RESULTS / "truth_scores"
HALVES = ("design", "report", "all")
PROXIES = ("params", "synflow", "naswot", "jacob_cov", "snip", "grad_norm")


def seeds(name: str) -> dict[int, dict[str, float]]:
    """{seed: {code: test accuracy}} of truth ``name``."""
    out: dict[int, dict[str, float]] = {}
    path = TRUTHS[name]
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.setdefault(row["seed"], {})[row["code"]] = row["test_acc"]
    return out


TRUTH_SEEDS = (0, 1, 2)  # the seeds a truth averages (the second truth has all three)


def truth(name: str, use: tuple[int, ...] | None = None) -> dict[str, float]:
    """{code: test accuracy averaged over its seeds among ``use``} of truth ``name`` (as far as
    it has got); ``use`` defaults to :data:`TRUTH_SEEDS`."""
    accs: dict[str, list[float]] = {}
    use = TRUTH_SEEDS if use is None else use
    for seed, by_code in seeds(name).items():
        if seed not in use:
            continue
        for code, acc in by_code.items():
            accs.setdefault(code, []).append(acc)
    return {code: statistics.fmean(v) for code, v in accs.items()}


def half(name: str) -> set[str]:
    """The cells of one half: even (design) or odd (report) positions of the frozen cell list."""
    cells = json.loads(CELLS.read_text())
    if name == "all":
        return set(cells)
    return {c for i, c in enumerate(cells) if i % 2 == (0 if name == "design" else 1)}


def metrics(scores: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    """Spearman, Kendall, top-10 % overlap (at least one cell) and top-5 mean truth."""
    codes = sorted(c for c in scores if c in truth and math.isfinite(scores[c]))
    if len(codes) < 5:
        return {"n": len(codes)}
    s, t = [scores[c] for c in codes], [truth[c] for c in codes]
    k = max(1, round(len(codes) / 10))
    by_score = sorted(codes, key=lambda c: (-scores[c], c))
    by_truth = sorted(codes, key=lambda c: (-truth[c], c))
    return {"n": len(codes), "spearman": float(spearmanr(s, t).statistic),
            "kendall": float(kendalltau(s, t).statistic),
            "top10_overlap": len(set(by_score[:k]) & set(by_truth[:k])) / k,
            "top5_mean": statistics.fmean(truth[c] for c in by_score[:5]),
            "best5_mean": statistics.fmean(truth[c] for c in by_truth[:5])}


def zscores(values: dict[str, float]) -> dict[str, float]:
    mean = statistics.fmean(values.values())
    sd = statistics.pstdev(values.values()) or 1.0
    return {k: (v - mean) / sd for k, v in values.items()}


CAPACITY_WEIGHTS = (0.02, 0.05, 0.1, 0.2, 0.3)  # weights of ln(params), searched on the design half
SYNFLOW_WEIGHTS = (0.0025, 0.005, 0.01, 0.02)  # weights of ln(synflow), the same
NASWOT_WEIGHTS = (0.0005, 0.001, 0.002, 0.005)  # weights of the NASWOT score, the same


def _ln(x: float) -> float:
    return math.log(max(x, 1e-30))  # synflow is 0 for a cell with no path from input to output


def derived(rows: list[dict]) -> dict[str, Callable[[dict], float]]:
    """Scorers computed from a row's own scores (no training, no truth): the hypernet's score
    (minus the loss of predicted weights) plus ``w`` times the log of the parameter count, the
    log of the synflow score or the NASWOT score: per-candidate scores that do not depend on
    which other cells are ranked."""
    if "hypernet" not in rows[0]["scores"]:
        return {}
    out: dict[str, Callable[[dict], float]] = {}
    for w in CAPACITY_WEIGHTS:
        out[f"hypernet+{w}*ln(params)"] = lambda r, w=w: r["scores"]["hypernet"] + w * _ln(r["params"])
    for w in SYNFLOW_WEIGHTS:
        out[f"hypernet+{w}*ln(synflow)"] = (
            lambda r, w=w: r["scores"]["hypernet"] + w * _ln(r["scores"]["synflow"]))
    for w in NASWOT_WEIGHTS:
        out[f"hypernet+{w}*naswot"] = lambda r, w=w: r["scores"]["hypernet"] + w * r["scores"]["naswot"]
    return out


RANK_AVERAGES = (("naswot",), ("naswot", "synflow"))  # proxies rank-averaged with the hypernet


def rank_averaged(rows: list[dict]) -> dict[str, dict[str, float]]:
    """The product's combined ranking (``hypernas.runs.rankings.combine_rankings``, as ``rank
    --combine`` and ``search --combine`` make it) of the hypernet with each proxy set of
    ``RANK_AVERAGES``, over all the label's cells: {scorer name: {code: score}}."""
    from hypernas.runs.rankings import combine_rankings

    if "hypernet" not in rows[0]["scores"]:
        return {}
    out = {}
    for proxies in RANK_AVERAGES:
        parts = {s: {r["code"]: {"id": r["code"], "score": r["scores"][s]} for r in rows}
                 for s in ("hypernet", *proxies)}
        combined = combine_rankings(parts)
        out[f"rankavg(hypernet,{','.join(proxies)})"] = {c: r["score"] for c, r in combined.items()}
    return out


def load_scores(label: str, folder: Path = SCORES) -> list[dict]:
    """The rows ``write_scores`` wrote for ``label`` (one per scored candidate)."""
    return [json.loads(line) for line in (folder / f"{label}.jsonl").read_text().splitlines()
            if line.strip()]


def write_scores(folder: Path, label: str, rows: list[dict], meta: dict) -> Path:
    """Each scored candidate's row as a line of ``folder/LABEL.jsonl``, and what the scores were
    made with (``run_meta``) beside it as ``LABEL.meta.json``; returns the rows' path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{label}.jsonl"
    with out.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (folder / f"{label}.meta.json").write_text(json.dumps(meta, indent=1))
    return out


def score_all(loaded, cands: dict, scorers: tuple[str, ...], suffix: str = "") -> dict:
    """{scorer: {code: ranking row}}: ``cands`` ({code: candidate}) ranked by every scorer in
    the run's own rankings (labelled ``scorer + suffix``), so a re-run resumes."""
    from hypernas.ranking import rank_run

    by_scorer = {}
    for scorer in scorers:
        ranking = rank_run(loaded, list(cands.values()), scorer, label=scorer + suffix)
        by_scorer[scorer] = {code: ranking[cand.id] for code, cand in cands.items()}
    return by_scorer


def run_meta(loaded, **extra) -> dict:
    """What a scores file was made with: the run, its config, its training and the command."""
    from hypernas.hypernet.trainer import load_checkpoint

    _, _, ckpt = load_checkpoint(loaded.run.checkpoint_path)
    return {"run": loaded.run.name, "config": loaded.config.to_dict(), "step": ckpt["step"],
            "elapsed_s": ckpt["elapsed"], **extra, "command": " ".join(["python", *sys.argv])}


def score(args: argparse.Namespace) -> int:
    import torch

    import hypernas as hn
    from hypernas.ranking import load_run
    from hypernas.runs import Run

    torch.set_num_threads(args.threads)
    loaded = load_run(Run(args.run, root=args.runs_root))
    cells = json.loads(CELLS.read_text())[:args.cells]
    cands = {code: loaded.space.replay(code) for code in cells}
    by_scorer = score_all(loaded, cands, ("hypernet", *PROXIES))
    rows = [{"label": args.label, "code": code, "id": cand.id,
             "params": hn.count_params(cand.graph),
             "scores": {s: by_scorer[s][code]["score"] for s in by_scorer},
             "hypernet_spread": by_scorer["hypernet"][code]["spread"],
             "hypernet_acc": by_scorer["hypernet"][code].get("acc")}
            for code, cand in cands.items()]
    out = write_scores(SCORES, args.label, rows, run_meta(loaded, trained_with=args.trained_with))
    print(f"{len(cands)} cells scored by {len(by_scorer)} scorers -> {out}")
    return 0


def adapt(args: argparse.Namespace) -> int:
    """Experiment: score each truth cell after ``--steps`` SGD steps from its predicted weights
    (every head, on fixed training batches, batch statistics), as minus the loss on the run's
    fixed evaluation images; added to the label's rows as the scorer ``adapt<steps>``."""
    import torch
    import torch.nn.functional as F

    from hypernas.data import Split
    from hypernas.hypernet.trainer import load_checkpoint, meta_network, predicted_logits
    from hypernas.ranking import load_run
    from hypernas.ranking.scoring import eval_slices
    from hypernas.runs import Run

    torch.set_num_threads(args.threads)
    loaded = load_run(Run(args.run, root=args.runs_root))
    hnet, _, _ = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    hnet.eval()
    slices = eval_slices(loaded.data.val, loaded.config.score, hnet.config.samples)
    fixed = loaded.data.train.subset(args.batch * args.steps, seed=1)
    batches = list(Split(fixed.x, fixed.y).batches(args.batch))
    name = f"adapt{args.steps}" + (f"_lr{args.lr}" if args.lr != 0.05 else "")
    rows = load_scores(args.label)
    for row in rows:
        cand = loaded.space.replay(row["code"])
        net = meta_network(cand.graph, cand.id)
        with torch.no_grad():
            samples = hnet.samples([cand.graph])[0]
        losses = []
        for weights, part in zip(samples, slices):
            w = {k: v.detach().clone().requires_grad_(True) for k, v in weights.items()}
            opt = torch.optim.SGD(list(w.values()), lr=args.lr, momentum=0.9)
            for x, y in batches:
                loss = F.cross_entropy(predicted_logits(net, w, x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                total = sum(float(F.cross_entropy(predicted_logits(net, w, x), y, reduction="sum"))
                            for x, y in part)
            losses.append(total / sum(len(y) for _, y in part))
        row["scores"][name] = -statistics.fmean(losses)
    with (SCORES / f"{args.label}.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(f"{name} added to {len(rows)} rows of {args.label}")
    return 0


def table(labels: list[str]) -> dict:
    out: dict = {}
    truths = {name: truth(name) for name in TRUTHS}
    for label in labels:
        rows = load_scores(label)
        scorers = {s: {r["code"]: r["scores"][s] for r in rows} for s in rows[0]["scores"]}
        for name, fn in derived(rows).items():
            scorers[name] = {r["code"]: fn(r) for r in rows}
        scorers.update(rank_averaged(rows))
        for scorer, scores in scorers.items():
            key = scorer if scorer in PROXIES else f"{scorer} [{label}]"
            if key in out:
                continue
            out[key] = {t: {h: metrics({c: v for c, v in scores.items() if c in half(h)},
                                       truths[t]) for h in HALVES} for t in truths}
    return out


def agreement() -> dict:
    """How each truth agrees with itself (two seeds) and how the two truths agree."""
    out: dict = {}
    for name in TRUTHS:
        by_seed = seeds(name)
        both = sorted(set(by_seed.get(0, {})) & set(by_seed.get(1, {})))
        if len(both) >= 3:
            a, b = [by_seed[0][c] for c in both], [by_seed[1][c] for c in both]
            out[f"{name}: seed 0 vs seed 1"] = {
                "n": len(both), "spearman": float(spearmanr(a, b).statistic),
                "kendall": float(kendalltau(a, b).statistic),
                "mean_abs_diff_points": 100 * statistics.fmean(abs(x - y) for x, y in zip(a, b))}
    short, long = truth("short"), truth("long")
    common = sorted(set(short) & set(long))
    if len(common) >= 3:
        a, b = [short[c] for c in common], [long[c] for c in common]
        out["short vs long"] = {"n": len(common), "spearman": float(spearmanr(a, b).statistic),
                                "kendall": float(kendalltau(a, b).statistic),
                                "mean_gain_points": 100 * statistics.fmean(y - x for x, y in zip(a, b))}
    return out


def ceiling() -> dict:
    """The truth's own noise as a scorer: one seed's accuracies ranking the cells against
    another seed's, for every pair of seeds with at least five cells in common, on each half
    (what any scorer could expect against a single-seed truth on those cells; on the top-10 %
    and top-5 figures, how much of a difference between scorers is noise)."""
    out = {}
    for name in TRUTHS:
        by_seed = seeds(name)
        for a in sorted(by_seed):
            for b in sorted(by_seed):
                common = set(by_seed[a]) & set(by_seed[b])
                if a < b and len(common) >= 5:
                    out[f"{name}: seed {b} as a scorer of seed {a}"] = {
                        h: metrics({c: by_seed[b][c] for c in common & half(h)}, by_seed[a])
                        for h in HALVES}
    return out


def bootstrap(scores_a: dict[str, float], scores_b: dict[str, float], truth: dict[str, float],
              draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90 % interval of Spearman(a) - Spearman(b) over cells resampled with replacement."""
    import random

    codes = sorted(c for c in scores_a if c in truth and c in scores_b)
    rng, diffs = random.Random(seed), []
    for _ in range(draws):
        pick = [rng.choice(codes) for _ in codes]
        t = [truth[c] for c in pick]
        diffs.append(spearmanr([scores_a[c] for c in pick], t).statistic
                     - spearmanr([scores_b[c] for c in pick], t).statistic)
    diffs.sort()
    return diffs[int(0.05 * draws)], diffs[int(0.95 * draws) - 1]


def report(args: argparse.Namespace) -> int:
    result = table(args.labels)
    for name, by_half in ceiling().items():
        for h, m in by_half.items():
            if "spearman" in m:
                print(f"{name}, {h} half ({m['n']} cells): Spearman {m['spearman']:.3f}, Kendall "
                      f"{m['kendall']:.3f}, top-10 % {m['top10_overlap']:.2f}, top-5 "
                      f"{100 * m['top5_mean']:.2f} (best 5: {100 * m['best5_mean']:.2f})")
    for name, figures in agreement().items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in figures.items()))
    for t in TRUTHS:
        for h in HALVES:
            n = max((v[t][h].get("n", 0) for v in result.values()), default=0)
            print(f"\n{t} truth, {h} half ({n} cells): Spearman / Kendall / top-10 % / top-5 mean")
            ordered = sorted(result.items(), key=lambda kv: -kv[1][t][h].get("spearman", -9))
            for name, v in ordered:
                m = v[t][h]
                if "spearman" in m:
                    print(f"  {name:40s} {m['spearman']:6.3f} {m['kendall']:6.3f} "
                          f"{m['top10_overlap']:5.2f} {100 * m['top5_mean']:6.2f}")
    truths = {t: truth(t) for t in TRUTHS}
    intervals = {}
    for label in args.labels:
        rows = load_scores(label)
        mine = {"hypernet": {r["code"]: r["scores"]["hypernet"] for r in rows},
                "rankavg(hypernet,naswot)": rank_averaged(rows)["rankavg(hypernet,naswot)"]}
        for name, scores in mine.items():
            for t in TRUTHS:
                for proxy in ("naswot", "synflow", "params"):
                    lo, hi = bootstrap(scores, {r["code"]: r["scores"][proxy] for r in rows},
                                       truths[t])
                    intervals[f"{name} [{label}] - {proxy}, {t}"] = [lo, hi]
                    print(f"{label} {t}: Spearman({name}) - Spearman({proxy}), all cells, 90 % "
                          f"bootstrap interval [{lo:+.3f}, {hi:+.3f}]")
    for label in args.labels:
        for kind in ("params", "synflow", "naswot", ""):
            print(f"{label}: chosen on the design halves (best worst-truth Spearman) among "
                  f"hypernet+w*{kind or 'any'}: {choose_combined(result, label, kind)}")
    if args.markdown:
        print(markdown(result, args.markdown))
    if args.json:
        (RESULTS / "truth_ranking.json").write_text(
            json.dumps({"truths": agreement(), "ceiling": ceiling(), "scorers": result,
                        "bootstrap_90": intervals}, indent=1))
    return 0


def choose_combined(result: dict, label: str, kind: str = "") -> str:
    """The hypernet score or a derived one (``kind``: "params", "synflow", "naswot" or "" for
    any) whose worse design-half Spearman over the two truths is highest: chosen without
    looking at the report half."""
    names = [n for n in result if n.endswith(f" [{label}]") and n.startswith("hypernet")
             and (not kind or n == f"hypernet [{label}]" or f"{kind})" in n or f"*{kind} " in n)]

    def worst(name: str) -> float:
        return min(result[name][t]["design"].get("spearman", -1.0) for t in TRUTHS)
    return max(names, key=worst)


def markdown(result: dict, half_name: str) -> str:
    """One table: a row per scorer, each truth's four figures on ``half_name``."""
    head = ["scorer"] + [f"{t} {m}" for t in TRUTHS for m in ("Sp.", "Kt.", "top-10 %", "top-5")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in sorted(result.items(), key=lambda kv: -kv[1]["short"][half_name].get(
            "spearman", -9)):
        cells = [name]
        for t in TRUTHS:
            m = v[t][half_name]
            cells += ([f"{m['spearman']:.3f}", f"{m['kendall']:.3f}", f"{m['top10_overlap']:.2f}",
                       f"{100 * m['top5_mean']:.2f}"] if "spearman" in m else ["-"] * 4)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score the truth cells with a run and every proxy")
    p.add_argument("--run", required=True)
    p.add_argument("--label", required=True, help="name of the scores file")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cells", type=int, default=None, help="only the first N cells (a smoke test)")
    p.add_argument("--trained-with", default="", help="the command that trained the run (kept)")
    p.set_defaults(func=score)
    p = sub.add_parser("adapt", help="experiment: score after a few SGD steps from predicted weights")
    p.add_argument("--run", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=adapt)
    p = sub.add_parser("report", help="metrics of every scorer on both truths and halves")
    p.add_argument("labels", nargs="+")
    p.add_argument("--json", action="store_true", help="also write results/truth_ranking.json")
    p.add_argument("--markdown", choices=HALVES, help="also print a markdown table of this half")
    p.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
