"""Telling the hypernetwork what a short recipe rewards: a probe of its graph embedding (#16).

On the macro truth the hypernetwork's score (how well its *predicted* weights classify) does not
rank candidates within a parameter band, while a short real training does: the search's 2-epoch
screen ranks the band at Spearman 0.78 (``macro_screen_signal.py``). What the truth rewards (how
fast a network fits its images in 5 epochs) is a property of the recipe, which the hypernetwork
is never told. This benchmark asks whether its graph embedding holds that property anyway:
``hypernas.ranking.probe`` (the product's probe: a ridge regression from the mean-pooled node
embeddings of the trained GNN, its penalty chosen by 5-fold cross-validation on the labels
alone) fitted to the screen accuracies of *other* candidates, each screened once, then used to
rank the truth's 80 candidates, none of which it was fitted on and none of whose accuracies it
reads.

- ``screen``: draws the label candidates once (``results/macro_probe_candidates.json``: 40
  uniform over the space and 40 within the truth's 50-70 k band, seed 2027, none of them a
  truth candidate) and screens each with the search's recipe (``macro_screen_signal.measure``:
  2 epochs on 5,000 images from random weights, seed 0) into ``results/macro_probe_screens.jsonl``
  (resumable; ``--shard i/n`` takes every n-th candidate from the i-th).
- ``embed --run RUN --label L``: the run's hypernetwork embeds every label and truth candidate;
  rows to ``results/macro_probe_features/L.jsonl`` (committed, so ``report`` recomputes without
  the checkpoint).
- ``report L ...``: per embedding, the probe fitted on the label screens, and a control fitted
  the same way on the encoding's choices (one-hot) instead of the hypernetwork's embedding;
  Spearman, Kendall, top pick and top-5 mean against the truth on all 80 and on the band, per
  half of the truth (``macro_ranking.py``'s design / report halves), beside the hypernet score
  and the proxies of the committed score rows (``--reference``). ``--json`` writes
  ``results/macro_probe.json``.

Usage:
    taskset -c 0 python benchmarks/macro_probe.py screen --shard 0/2
    taskset -c 1 python benchmarks/macro_probe.py screen --shard 1/2
    python benchmarks/macro_probe.py embed --run t16-macro-ship --label macro-ship
    python benchmarks/macro_probe.py report macro-ship --json
    python benchmarks/macro_probe.py ship      # the probe shipped with the macro hypernetwork
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
from macro_screen_signal import measure  # noqa: E402
from macro_truth import CANDIDATES as TRUTH_CANDIDATES  # noqa: E402
from macro_truth import draw_band  # noqa: E402
from truth_ranking import load_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LABELS = RESULTS / "macro_probe_candidates.json"
SCREENS = RESULTS / "macro_probe_screens.jsonl"
FEATURES = RESULTS / "macro_probe_features"
UNIFORM, BANDED, DRAW_SEED = 40, 40, 2027


def label_candidates() -> list[dict]:
    """The frozen label list: ``{"encoding", "group"}``, disjoint from the truth's candidates."""
    if LABELS.exists():
        return json.loads(LABELS.read_text())
    import hypernas as hn

    space = hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    seen = {space.replay(c["encoding"]).id for c in json.loads(TRUTH_CANDIDATES.read_text())}
    uniform = [c for c in space.sample_many(2 * UNIFORM, seed=DRAW_SEED) if c.id not in seen]
    uniform = uniform[:UNIFORM]
    banded = draw_band(space, BANDED, seen | {c.id for c in uniform}, DRAW_SEED)
    out = [{"encoding": c.encoding, "group": "uniform"} for c in uniform]
    out += [{"encoding": c.encoding, "group": "band"} for c in banded]
    LABELS.write_text(json.dumps(out, indent=0) + "\n")
    return out


def screen(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    index, of = (int(x) for x in args.shard.split("/"))
    done = ({json.loads(line)["code"] for line in SCREENS.read_text().splitlines()
             if line.strip()} if SCREENS.exists() else set())
    todo = [c for i, c in enumerate(label_candidates())
            if i % of == index and c["encoding"] not in done]
    for n, cand in enumerate(todo, start=1):
        start = time.perf_counter()
        row = measure(cand["encoding"], cand["group"])
        append(SCREENS, {k: v for k, v in row.items() if k != "losses"})
        print(f"{n}/{len(todo)} {cand['encoding']} {time.perf_counter() - start:.0f} s",
              flush=True)
    return 0


def embed(args: argparse.Namespace) -> int:
    """The run's graph embedding (``hypernas.ranking.probe.graph_embeddings``: the GNN's node
    embeddings, mean-pooled) of every label and truth candidate."""
    import torch

    from hypernas.hypernet.trainer import load_checkpoint
    from hypernas.ranking import load_run
    from hypernas.ranking.probe import graph_embeddings
    from hypernas.runs import Run

    torch.set_num_threads(args.threads)
    loaded = load_run(Run(args.run, root=args.runs_root))
    hnet, _, meta = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    codes = [c["encoding"] for c in label_candidates()]
    codes += [c["encoding"] for c in json.loads(TRUTH_CANDIDATES.read_text())]
    feats = graph_embeddings(hnet, [loaded.space.replay(c).graph for c in codes])
    FEATURES.mkdir(parents=True, exist_ok=True)
    out = FEATURES / f"{args.label}.jsonl"
    out.write_text(json.dumps({"meta": {"run": args.run, "step": meta.get("step")}}) + "\n"
                   + "".join(json.dumps({"code": c, "mean": [round(v, 5) for v in f.tolist()]})
                             + "\n" for c, f in zip(codes, feats)))
    print(f"{len(codes)} candidates embedded -> {out}")
    return 0


def one_hot(codes: list[str]) -> dict[str, list[float]]:
    """The control: each candidate's choices in the space, one-hot (absent blocks all zero)."""
    import hypernas as hn

    space = hn.load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    params = {c: space.replay(c).params for c in codes}
    keys = sorted({(k, json.dumps(v)) for p in params.values() for k, v in p.items()})
    return {c: [float(k in p and json.dumps(p[k]) == v) for k, v in keys]
            for c, p in params.items()}


def read_out(feats: dict[str, list[float]], labels: dict[str, float], codes: list[str]
             ) -> tuple[dict[str, float], dict]:
    """``hypernas.ranking.probe.fit_probe`` on the labelled candidates' features; its
    predictions for ``codes`` and what it chose."""
    import torch

    from hypernas.ranking.probe import fit_probe

    probe = fit_probe(torch.tensor([feats[c] for c in labels]), list(labels.values()))
    pred = probe.predict(torch.tensor([feats[c] for c in codes])).tolist()
    return dict(zip(codes, pred)), {"penalty": probe.penalty, "cv_spearman": probe.cv_spearman,
                                    "labels": probe.labels}


def report(args: argparse.Namespace) -> int:
    screens = {r["code"]: r["history"][-1]["val_acc"]
               for r in map(json.loads, SCREENS.read_text().splitlines()) if r}
    values = truth()
    truth_codes = [c["encoding"] for c in json.loads(TRUTH_CANDIDATES.read_text())]
    result: dict = {"labels": len(screens), "label_sd": statistics.pstdev(screens.values()),
                    "probes": {}}
    tables: dict[str, dict[str, float]] = {}
    for label in args.labels:
        rows = [json.loads(line) for line in (FEATURES / f"{label}.jsonl").read_text()
                .splitlines()[1:] if line.strip()]
        name = f"probe ({label})"
        tables[name], result["probes"][name] = read_out(
            {r["code"]: r["mean"] for r in rows}, screens, truth_codes)
    name = "control: ridge on one-hot choices"
    tables[name], result["probes"][name] = read_out(one_hot(list(screens) + truth_codes),
                                                    screens, truth_codes)
    for ref in args.reference:
        for name, scores in scorers(load_scores(ref, SCORES)).items():
            tables[f"{name} ({ref})" if name == "hypernet" else name] = scores
    result["table"] = cells(tables, values)
    print_cells(result["table"], 36, lambda name, m: f"  top-5 {m['top5_mean']:.4f}")
    for name, fit in result["probes"].items():
        print(f"{name}: {fit}")
    if args.json:
        (RESULTS / "macro_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


SHIPPED = "macro-fashion-mnist-16"  # the shipped macro hypernetwork (t16-macro-ship's weights)
SCREEN_RECIPE = ("validation accuracy after the search's screen: 2 epochs on 5,000 images at lr "
                 "0.1 (cosine) from random weights, 16x16")


def shipped_probe():
    """The probe shipped with the macro hypernetwork: fitted on every label screen, from the
    committed embeddings of its own weights (``embed --run t16-macro-ship``)."""
    import torch

    from hypernas.ranking.probe import fit_probe

    screens = {r["code"]: r["history"][-1]["val_acc"]
               for r in map(json.loads, SCREENS.read_text().splitlines()) if r}
    rows = {r["code"]: r["mean"] for r in map(json.loads, (FEATURES / "macro-ship.jsonl")
                                               .read_text().splitlines()[1:]) if r}
    return fit_probe(torch.tensor([rows[c] for c in screens]), list(screens.values()),
                     recipe=SCREEN_RECIPE, source="benchmarks/results/macro_probe_screens.jsonl "
                     "with benchmarks/results/macro_probe_features/macro-ship.jsonl")


def ship(args: argparse.Namespace) -> int:
    """Write :func:`shipped_probe` into the shipped macro hypernetwork's card."""
    from hypernas.ranking.pretrained import get_pretrained

    path = get_pretrained(SHIPPED).weights.with_suffix(".json")
    card = json.loads(path.read_text())
    card["probe"] = shipped_probe().to_dict()
    path.write_text(json.dumps(card, indent=1) + "\n")
    print(f"probe on {card['probe']['labels']} screens (held-out Spearman "
          f"{card['probe']['cv_spearman']:+.3f}) -> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("screen", help="screen the label candidates (resumable)")
    p.add_argument("--shard", default="0/1", help="this process's share: i/n (0/1: all)")
    p.set_defaults(func=screen)
    p = sub.add_parser("embed", help="a run's graph embeddings of label and truth candidates")
    p.add_argument("--run", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=embed)
    p = sub.add_parser("report", help="fit the read-outs on the labels, rank the truth")
    p.add_argument("labels", nargs="+")
    p.add_argument("--reference", nargs="+", default=["macro-ship"],
                   help="committed score rows (macro_scores/LABEL.jsonl) to compare")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=report)
    p = sub.add_parser("ship", help="write the probe on every label screen into the shipped "
                       "macro hypernetwork's card")
    p.set_defaults(func=ship)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
