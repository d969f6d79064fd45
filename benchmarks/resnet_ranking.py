"""Ranking the example ResNet space: the hypernetwork against the proxies on the ResNet truth.

The space is ``search_spaces/resnet.py``, written in plain PyTorch (``define(trial, config)``
returns an ``nn.Module``, imported by ``torch.fx``; issue #20). The truth is ``resnet_truth.py``'s:
24 frozen candidates drawn uniformly from the space, trained from scratch on Fashion-MNIST at
16x16 with the macro truth's recipe, a candidate's value being its test accuracy averaged over the
seeds it was trained with (6 of them have two). The candidates are split once by their position in
the frozen list: even positions are the **design half**, odd positions the **report half**.

``score`` ranks the truth's candidates with a trained hypernetwork run (made with
``hypernas train search_spaces/resnet.py``) and the zero-cost proxies synflow, naswot and
jacob_cov (in the run's own rankings, so a re-run resumes) and writes one row per candidate to
``results/resnet_scores/LABEL.jsonl`` (encoding, id, params, MACs, each scorer's score, the
hypernetwork's spread over its weight samples). ``report`` prints, per label, scorer and half,
Spearman, Kendall, the truth of the top pick and the mean truth of the first five picks (params
and MACs ranked as more is better; the rank average of hypernet and naswot as ``--combine
naswot`` makes it), next to the truth's own seed-to-seed agreement and, with two labels or more,
how the hypernetworks agree with each other, and a 90 % bootstrap interval (candidates resampled)
of the hypernet's Spearman minus each proxy's; ``--json`` writes it to
``results/resnet_ranking.json``.

Usage:
    hypernas train search_spaces/resnet.py --data fashion-mnist --resolution 16 --run t16-resnet-s0
    python benchmarks/resnet_ranking.py score --run t16-resnet-s0 --label resnet-s0
    python benchmarks/resnet_ranking.py report resnet-s0 resnet-s1 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from macro_ranking import scorers, truth, truth_by_seed, with_top_pick  # noqa: E402
from resnet_truth import CANDIDATES_FILE  # noqa: E402
from resnet_truth import OUT as TRUTH  # noqa: E402
from truth_ranking import bootstrap, load_scores, run_meta, score_all, write_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SCORES = RESULTS / "resnet_scores"
PROXIES = ("synflow", "naswot", "jacob_cov")
HALVES = ("all", "design", "report")


def encodings() -> list[str]:
    return [c["encoding"] for c in json.loads(CANDIDATES_FILE.read_text())]


def subset(half: str) -> set[str]:
    return {c for i, c in enumerate(encodings())
            if half == "all" or i % 2 == (0 if half == "design" else 1)}


def score(args: argparse.Namespace) -> int:
    import torch

    import hypernas as hn
    from hypernas.ranking import load_run
    from hypernas.runs import Run

    torch.set_num_threads(args.threads)
    loaded = load_run(Run(args.run, root=args.runs_root))
    cands = {code: loaded.space.replay(code) for code in encodings()}
    by_scorer = score_all(loaded, cands, ("hypernet", *PROXIES))
    rows = [{"label": args.label, "code": code, "id": cand.id,
             "params": hn.count_params(cand.graph), "macs": hn.count_macs(cand.graph),
             "scores": {s: by_scorer[s][code]["score"] for s in by_scorer},
             "hypernet_spread": by_scorer["hypernet"][code].get("spread"),
             "hypernet_acc": by_scorer["hypernet"][code].get("acc")}
            for code, cand in cands.items()]
    out = write_scores(SCORES, args.label, rows, run_meta(loaded))
    print(f"{len(cands)} candidates scored by {len(by_scorer)} scorers -> {out}")
    return 0


def agreement() -> dict:
    """The truth's own noise: seed 0 against seed 1 on the candidates trained with both."""
    from scipy.stats import kendalltau, spearmanr

    by_seed = truth_by_seed(TRUTH)
    both = sorted(set(by_seed.get(0, {})) & set(by_seed.get(1, {})))
    if len(both) < 3:
        return {"n": len(both)}
    a, b = [by_seed[0][c] for c in both], [by_seed[1][c] for c in both]
    diffs = [x - y for x, y in zip(a, b)]
    return {"n": len(both), "spearman": float(spearmanr(a, b).statistic),
            "kendall": float(kendalltau(a, b).statistic),
            "mean_abs_diff": statistics.fmean(abs(d) for d in diffs),
            "seed_sd": statistics.pstdev(diffs) / 2 ** 0.5,
            "candidate_sd": statistics.pstdev(by_seed[0].values())}


def between(labels: list[str]) -> dict:
    """How the labels' hypernetworks rank the candidates alike (Spearman, Kendall)."""
    from scipy.stats import kendalltau, spearmanr

    out = {}
    for a, b in itertools.combinations(labels, 2):
        sa = {r["code"]: r["scores"]["hypernet"] for r in load_scores(a, SCORES)}
        sb = {r["code"]: r["scores"]["hypernet"] for r in load_scores(b, SCORES)}
        codes = sorted(set(sa) & set(sb))
        x, y = [sa[c] for c in codes], [sb[c] for c in codes]
        out[f"{a} vs {b}"] = {"n": len(codes), "spearman": float(spearmanr(x, y).statistic),
                              "kendall": float(kendalltau(x, y).statistic)}
    return out


def report(args: argparse.Namespace) -> int:
    values = truth(TRUTH)
    accs = sorted(values.values())
    result: dict = {"truth": {"candidates": len(values), "min": accs[0], "max": accs[-1],
                              "median": statistics.median(accs),
                              "best5_mean": statistics.fmean(accs[-5:]),
                              "agreement": agreement()},
                    "labels": {}, "hypernets_agree": between(args.labels)}
    for label in args.labels:
        rows = load_scores(label, SCORES)
        meta_path = SCORES / f"{label}.meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        table = {name: {half: with_top_pick({c: v for c, v in scores.items() if c in subset(half)},
                                            values) for half in HALVES}
                 for name, scores in scorers(rows).items()}
        named = scorers(rows)
        intervals = {}
        for other in ("params", "macs", *PROXIES):
            lo, hi = bootstrap(named["hypernet"], named[other], values)
            intervals[f"hypernet - {other}"] = [lo, hi]
        result["labels"][label] = {"run": meta.get("run"), "step": meta.get("step"),
                                   "elapsed_s": meta.get("elapsed_s"), "scorers": table,
                                   "spearman_diff_bootstrap_90": intervals}
        print(f"\n{label} (run {meta.get('run')}, step {meta.get('step')}; {len(rows)} candidates "
              f"scored, {len(values)} with truth)")
        for half in HALVES:
            print(f"  {half}")
            ordered = sorted(table.items(), key=lambda kv: -kv[1][half].get("spearman", -9))
            for name, cells in ordered:
                m = cells[half]
                if "spearman" in m:
                    print(f"    {name:26s} n={m['n']:3d}  Sp {m['spearman']:+.3f}  Kt "
                          f"{m['kendall']:+.3f}  top pick {m['top_pick']:.4f}  top-5 "
                          f"{m['top5_mean']:.4f} (best 5 {m['best5_mean']:.4f})")
        for name, (lo, hi) in intervals.items():
            print(f"  Spearman({name}), all candidates, 90 % bootstrap interval "
                  f"[{lo:+.3f}, {hi:+.3f}]")
    agree = result["truth"]["agreement"]
    if "spearman" in agree:
        print(f"\ntruth seed 0 vs seed 1 on {agree['n']}: Spearman {agree['spearman']:.3f}, "
              f"Kendall {agree['kendall']:.3f}; one training's sd {100 * agree['seed_sd']:.2f} "
              f"points against a spread of {100 * agree['candidate_sd']:.2f} between candidates")
    for pair, m in result["hypernets_agree"].items():
        print(f"hypernets {pair}: Spearman {m['spearman']:.3f}, Kendall {m['kendall']:.3f} "
              f"(n={m['n']})")
    if args.json:
        (RESULTS / "resnet_ranking.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score the truth's candidates with a run and the proxies")
    p.add_argument("--run", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--runs-root", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=score)
    p = sub.add_parser("report", help="every scorer against the truth")
    p.add_argument("labels", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
