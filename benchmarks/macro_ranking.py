"""Ranking the dynamic ``macro`` space: the hypernetwork against the proxies on the macro truth.

The truth is ``macro_truth.py``'s: 80 frozen candidates (half uniform over the space, half within
the 50,000-70,000 parameter band) trained from scratch on Fashion-MNIST at 16x16, a candidate's
value being its test accuracy averaged over the seeds it was trained with. The candidates are split
once by their position in the frozen list: even positions are the **design half** (where a choice
such as ranking with the hypernet alone or rank-averaged with naswot is made), odd positions the
**report half**.

``score`` ranks the truth's candidates with a trained hypernetwork run and every zero-cost proxy
(in the run's own rankings, so a re-run resumes) and writes one row per candidate to
``results/macro_scores/LABEL.jsonl`` (encoding, id, group, params, MACs, depth, each scorer's
score, whether the candidate had parameters in places no candidate of the hypernetwork's
training space had). With ``--space-set KEY=VALUE`` the candidates are built in a space other
than the run's (the full space, for a hypernetwork trained on ``max_depth=3``): how depth
generalisation is measured. ``report`` prints, per label, scorer, group (all / band) and half,
Spearman, Kendall, the truth of the top pick and the mean truth of the first five picks, next to
the truth's own seed-to-seed agreement; ``--json`` writes it to ``results/macro_ranking.json``.

Usage:
    hypernas train macro --data fashion-mnist --run t16-macro-s0
    python benchmarks/macro_ranking.py score --run t16-macro-s0 --label macro-s0
    python benchmarks/macro_ranking.py report macro-s0 macro-s1 --json
    hypernas train macro --data fashion-mnist --set max_depth=3 --run t16-macro-d3
    python benchmarks/macro_ranking.py score --run t16-macro-d3 --label macro-d3 --space-set max_depth=4
    python benchmarks/macro_ranking.py depth --shallow macro-d3 --full macro-s0 --json
    python benchmarks/macro_ranking.py explain macro-s0 macro-s1 macro-ship --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent))
from macro_truth import CANDIDATES  # noqa: E402
from macro_truth import OUT as TRUTH  # noqa: E402
from truth_ranking import load_scores, metrics, run_meta, score_all, write_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SCORES = RESULTS / "macro_scores"
PROXIES = ("synflow", "naswot", "jacob_cov")
HALVES = ("design", "report", "all")
GROUPS = ("all", "band")


def truth_by_seed(path: Path = TRUTH) -> dict[int, dict[str, float]]:
    """{seed: {encoding: test accuracy}} of a truth file (this one's by default)."""
    out: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.setdefault(row["seed"], {})[row["code"]] = row["test_acc"]
    return out


def truth(path: Path = TRUTH) -> dict[str, float]:
    """{encoding: test accuracy averaged over its seeds}."""
    runs: dict[str, list[float]] = {}
    for accs in truth_by_seed(path).values():
        for code, acc in accs.items():
            runs.setdefault(code, []).append(acc)
    return {code: statistics.fmean(v) for code, v in runs.items()}


def subset(half: str, group: str) -> set[str]:
    cands = json.loads(CANDIDATES.read_text())
    return {c["encoding"] for i, c in enumerate(cands)
            if (half == "all" or i % 2 == (0 if half == "design" else 1))
            and (group == "all" or c["group"] == group)}


def score(args: argparse.Namespace) -> int:
    import torch

    import hypernas as hn
    from hypernas.ranking import load_run
    from hypernas.runs import Run

    torch.set_num_threads(args.threads)
    loaded = load_run(Run(args.run, root=args.runs_root))
    space = loaded.space
    if args.space_set:
        settings = {**loaded.space.config.to_dict()}
        for item in args.space_set:
            key, _, value = item.partition("=")
            settings[key] = json.loads(value)
        space = hn.load_space("macro", **settings)
    groups = {c["encoding"]: c["group"] for c in json.loads(CANDIDATES.read_text())}
    cands = {code: space.replay(code) for code in groups}
    suffix = f"-{args.label}" if args.space_set else ""  # rankings of another space kept apart
    by_scorer = score_all(loaded, cands, ("hypernet", *PROXIES), suffix)
    rows = [{"label": args.label, "code": code, "id": cand.id, "group": groups[code],
             "params": hn.count_params(cand.graph), "macs": hn.count_macs(cand.graph),
             "max_depth": max(len(stage.split(",")) for stage in code.split("|")),
             "scores": {s: by_scorer[s][code]["score"] for s in by_scorer},
             "hypernet_spread": by_scorer["hypernet"][code]["spread"],
             "unseen_slots": by_scorer["hypernet"][code].get("unseen_slots", 0)}
            for code, cand in cands.items()]
    out = write_scores(SCORES, args.label, rows, run_meta(loaded, space_set=args.space_set))
    print(f"{len(cands)} candidates scored by {len(by_scorer)} scorers -> {out}")
    return 0


def scorers(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{scorer: {encoding: score}}: the run's scorers, params and MACs (more is better, as
    ranked), and the hypernet rank-averaged with naswot (the product's ``--combine naswot``)."""
    from hypernas.runs.rankings import combine_rankings

    out = {s: {r["code"]: r["scores"][s] for r in rows} for s in rows[0]["scores"]}
    out["params"] = {r["code"]: float(r["params"]) for r in rows}
    out["macs"] = {r["code"]: float(r["macs"]) for r in rows}
    parts = {s: {c: {"id": c, "score": v} for c, v in out[s].items()}
             for s in ("hypernet", "naswot")}
    out["rankavg(hypernet,naswot)"] = {c: r["score"] for c, r in combine_rankings(parts).items()}
    return out


def with_top_pick(scores: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    out = metrics(scores, truth)
    codes = [c for c in scores if c in truth]
    if codes:
        out["top_pick"] = truth[max(codes, key=lambda c: (scores[c], c))]
    return out


def cells(tables: dict[str, dict[str, float]], values: dict[str, float],
          within: set[str] | None = None) -> dict[str, dict[str, dict]]:
    """``{scorer: {"group/half": Spearman, Kendall, top pick ...}}`` of each scorer's scores
    (those of candidates in ``within``, if given) against the truth ``values``."""
    return {name: {f"{g}/{h}": with_top_pick(
        {c: v for c, v in scores.items()
         if c in subset(h, g) and (within is None or c in within)}, values)
        for g in GROUPS for h in HALVES} for name, scores in tables.items()}


def print_cells(table: dict[str, dict[str, dict]], width: int,
                more: Callable[[str, dict], str] = lambda name, m: "") -> None:
    """Each group/half, its scorers best Spearman first, and ``more(name, cell)`` after each."""
    for key in (f"{g}/{h}" for g in GROUPS for h in HALVES):
        print(key)
        for name, by_key in sorted(table.items(), key=lambda kv: -kv[1][key].get("spearman", -9)):
            m = by_key[key]
            if "spearman" in m:
                print(f"  {name:{width}s} n={m['n']:3d}  Sp {m['spearman']:+.3f}  Kt "
                      f"{m['kendall']:+.3f}  top pick {m['top_pick']:.4f}" + more(name, m))


def agreement() -> dict:
    """The truth's own noise: seed 0 against seed 1 on the candidates trained with both."""
    from scipy.stats import kendalltau, spearmanr

    by_seed = truth_by_seed()
    both = sorted(set(by_seed.get(0, {})) & set(by_seed.get(1, {})))
    if len(both) < 3:
        return {"n": len(both)}
    a, b = [by_seed[0][c] for c in both], [by_seed[1][c] for c in both]
    diffs = [x - y for x, y in zip(a, b)]
    return {"n": len(both), "spearman": float(spearmanr(a, b).statistic),
            "kendall": float(kendalltau(a, b).statistic),
            "seed_sd": statistics.pstdev(diffs) / 2 ** 0.5,
            "candidate_sd": statistics.pstdev(by_seed[0].values())}


def report(args: argparse.Namespace) -> int:
    values = truth()
    result: dict = {"truth": {"candidates": len(values), "agreement": agreement()}, "labels": {}}
    for label in args.labels:
        rows = load_scores(label, SCORES)
        if args.min_depth:
            rows = [r for r in rows if r["max_depth"] >= args.min_depth]
        table = {}
        for name, scores in scorers(rows).items():
            table[name] = {f"{group}/{half}": with_top_pick(
                {c: v for c, v in scores.items() if c in subset(half, group)}, values)
                for group in GROUPS for half in HALVES}
        result["labels"][label] = table
        print(f"\n{label} ({len(rows)} candidates scored, {len(values)} with truth)")
        for key in (f"{g}/{h}" for g in GROUPS for h in HALVES):
            print(f"  {key}")
            for name, by_key in sorted(table.items(),
                                       key=lambda kv: -kv[1][key].get("spearman", -9)):
                m = by_key[key]
                if "spearman" in m:
                    print(f"    {name:28s} n={m['n']:3d}  Sp {m['spearman']:+.3f}  Kt "
                          f"{m['kendall']:+.3f}  top pick {m['top_pick']:.4f}  top-5 "
                          f"{m['top5_mean']:.4f} (best 5 {m['best5_mean']:.4f})")
    agree = result["truth"]["agreement"]
    if "spearman" in agree:
        print(f"\ntruth seed 0 vs seed 1 on {agree['n']}: Spearman {agree['spearman']:.3f}, "
              f"Kendall {agree['kendall']:.3f}; one training's sd {100 * agree['seed_sd']:.2f} "
              f"points against a spread of {100 * agree['candidate_sd']:.2f} between candidates")
    if args.json:
        name = "macro_ranking" + (f"_depth{args.min_depth}" if args.min_depth else "")
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def depth(args: argparse.Namespace) -> int:
    """Depth generalisation: a hypernetwork trained on shallower stages (``--shallow``, e.g.
    ``max_depth=3``) against one trained on the full space (``--full``), on the candidates with
    a stage deeper than the shallow one ever saw: how the two rankings agree, how well each
    predicts (its mean loss with predicted weights), and each against the truth."""
    from scipy.stats import kendalltau, spearmanr

    def load(label: str) -> dict[str, dict]:
        return {r["code"]: r for r in map(json.loads, (SCORES / f"{label}.jsonl").read_text()
                                           .splitlines()) if r}

    shallow, full = load(args.shallow), load(args.full)
    values = truth()
    result: dict = {"shallow": args.shallow, "full": args.full}
    for name, keep in (("deeper", lambda r: r["max_depth"] > args.trained_depth),
                       ("within", lambda r: r["max_depth"] <= args.trained_depth)):
        codes = sorted(c for c, r in shallow.items() if keep(r) and c in full)
        a = [shallow[c]["scores"]["hypernet"] for c in codes]
        b = [full[c]["scores"]["hypernet"] for c in codes]
        known = [c for c in codes if c in values]
        part = {"n": len(codes),
                "spearman_between": float(spearmanr(a, b).statistic),
                "kendall_between": float(kendalltau(a, b).statistic),
                "loss_shallow": -statistics.fmean(a), "loss_full": -statistics.fmean(b),
                "unseen_slots_median": statistics.median(shallow[c]["unseen_slots"]
                                                         for c in codes),
                "truth_n": len(known)}
        if len(known) >= 5:
            for who, rows in (("shallow", shallow), ("full", full)):
                part[f"truth_spearman_{who}"] = float(spearmanr(
                    [rows[c]["scores"]["hypernet"] for c in known],
                    [values[c] for c in known]).statistic)
        result[name] = part
        print(f"{name} (max depth {'>' if name == 'deeper' else '<='} {args.trained_depth}): "
              + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in part.items()))
    if args.json:
        (RESULTS / "macro_depth.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def traits(code: str) -> dict[str, float]:
    """What a macro encoding says of a network's shape: blocks in all, blocks in the first
    stage, mean output width of its blocks.

    >>> traits("k3e1w8,k7e3w8+|k7e3w32|k7e6w48,k3e6w32")
    {'blocks': 5.0, 'first_stage_blocks': 2.0, 'mean_width': 25.6}
    """
    stages = [stage.split(",") for stage in code.split("|")]
    widths = [int(block.split("w")[1].rstrip("+")) for stage in stages for block in stage]
    return {"blocks": float(len(widths)), "first_stage_blocks": float(len(stages[0])),
            "mean_width": statistics.fmean(widths)}


def explain(args: argparse.Namespace) -> int:
    """What the truth follows and what each hypernetwork's score follows: Spearman of the truth
    (and of each label's hypernet score) with the truth trainings' own final training loss
    (averaged over seeds), parameters and the shape traits, over all candidates and the band."""
    from scipy.stats import spearmanr

    losses: dict[str, list[float]] = {}
    params: dict[str, float] = {}
    for row in map(json.loads, TRUTH.read_text().splitlines()):
        losses.setdefault(row["code"], []).append(row["train_loss"])
        params[row["code"]] = float(row["params"])
    codes = sorted(losses)
    facts = {c: {"train_loss": statistics.fmean(losses[c]), "params": params[c], **traits(c)}
             for c in codes}
    values = {"truth": truth()}
    for label in args.labels:
        values[label] = {r["code"]: r["scores"]["hypernet"] for r in load_scores(label, SCORES)}
    result: dict = {}
    for group in GROUPS:
        keep = sorted(subset("all", group))
        for name, of in values.items():
            row = {fact: float(spearmanr([of[c] for c in keep],
                                         [facts[c][fact] for c in keep]).statistic)
                   for fact in facts[keep[0]]}
            result[f"{group}/{name}"] = row
            print(f"{group} {name} (n {len(keep)}): "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in row.items()))
    if args.json:
        (RESULTS / "macro_explain.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score the truth's candidates with a run and the proxies")
    p.add_argument("--run", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--runs-root", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--space-set", action="append", metavar="KEY=VALUE",
                   help="build the candidates in the run's space with this setting changed")
    p.set_defaults(func=score)
    p = sub.add_parser("report", help="every scorer against the truth")
    p.add_argument("labels", nargs="+")
    p.add_argument("--min-depth", type=int, help="only candidates with a stage this deep")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=report)
    p = sub.add_parser("depth", help="a shallow-trained hypernetwork against a full-space one")
    p.add_argument("--shallow", required=True, help="label scored with --space-set max_depth=4")
    p.add_argument("--full", required=True)
    p.add_argument("--trained-depth", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=depth)
    p = sub.add_parser("explain", help="what the truth and each hypernet score follow")
    p.add_argument("labels", nargs="*", default=["macro-s0", "macro-s1", "macro-ship"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=explain)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
