"""The ``calibrate`` and ``probe`` commands: fitted to trained candidates, a run's scores mapped to
accuracy intervals, and its hypernetwork's graph embedding read out toward a recipe's accuracy."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import HypernasError
from ._common import _console

__all__ = ["cmd_calibrate", "cmd_probe", "read_truth"]

ACC_KEYS = ("accuracy", "test_acc", "val_acc")  # what a truth row's accuracy may be called


def read_truth(path: Path) -> dict[str, float]:
    """``{id or encoding: accuracy}`` from a JSONL file of trained candidates, each row with an
    ``id`` or ``encoding`` and an ``accuracy`` (or ``test_acc`` / ``val_acc``), a fraction; a
    candidate on several rows (seeds) gets their mean."""
    if not path.exists():
        raise HypernasError(f"no truth file {path}; give a JSONL file with one trained candidate "
                            'per line, e.g. {"id": "4cd242221bc7084b", "accuracy": 0.871}')
    seen: dict[str, list[float]] = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HypernasError(f"{path}, line {i}: not JSON ({e.msg}); one object per line") from e
        key = row.get("id") or row.get("encoding") if isinstance(row, dict) else None
        acc = next((row[k] for k in ACC_KEYS if isinstance(row, dict) and k in row), None)
        if not isinstance(key, str) or not isinstance(acc, (int, float)) or isinstance(acc, bool) \
                or not math.isfinite(acc):
            raise HypernasError(f"{path}, line {i}: a truth row needs an 'id' (or 'encoding') and "
                                f"a numeric 'accuracy' (or {', '.join(ACC_KEYS[1:])})")
        seen.setdefault(key, []).append(float(acc))
    if not seen:
        raise HypernasError(f"{path} holds no trained candidates")
    return {k: sum(v) / len(v) for k, v in seen.items()}


def _study_truth(run: Any) -> dict[str, float]:
    from ..refine.study import refined_rows

    return {i: r["val_acc"] for i, r in refined_rows(run, fits=False).items()}


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..ranking.uncertainty import (
        DEFAULT_SCORERS,
        MIN_CALIBRATION,
        annotate,
        check_level,
        fit_calibration,
        pool_field,
        pool_rows,
        save_calibration,
    )
    from ..runs.rankings import ranking_labels
    from ..runs.store import Run

    check_level(args.level)
    run = Run(args.run)
    run.read_config()
    if args.truth:
        truth = read_truth(Path(args.truth))
        recipe = args.recipe or f"the accuracies of {args.truth}"
        source = str(args.truth)
    else:
        truth = _study_truth(run)
        if len(truth) < MIN_CALIBRATION:
            raise HypernasError(f"run {run.name!r} has {len(truth)} finished trials; a calibration "
                                f"needs {MIN_CALIBRATION}: refine more (hypernas refine "
                                f"{run.name} --trials {MIN_CALIBRATION}) or give --truth FILE")
        recipe = args.recipe or ("validation accuracy of the run's screening / refinement "
                                 "trials")
        source = f"runs/{run.name}/study.db (trials, finalists' trainings left out)"
    labels = set(ranking_labels(run))
    scorers = tuple(s for s in DEFAULT_SCORERS if s in labels)
    if "hypernet" not in scorers:
        raise HypernasError(f"run {run.name!r} has no hypernet ranking; rank first: hypernas rank "
                            f"{run.name} --combine naswot")
    rows = pool_rows(run, scorers)
    by_encoding = {r["hypernet"]["encoding"]: i for i, r in rows.items()}
    pool = pool_field(rows)
    ids = {by_encoding.get(k, k): acc for k, acc in truth.items()}
    matched = {i: acc for i, acc in ids.items() if i in pool and all(s in pool[i] for s in scorers)}
    if len(matched) < len(ids):
        missing = len(ids) - len(matched)
        _console(stderr=True).print(f"note: {missing} of {len(ids)} trained candidates are not "
                                    f"ranked by {' and '.join(scorers)} in this run; left out",
                                    markup=False)
    cal = fit_calibration([pool[i] for i in matched], list(matched.values()), scorers=scorers,
                          recipe=recipe, source=source)
    path = save_calibration(run, cal)
    ann = annotate({i: pool[i] for i in matched}, cal, args.level)
    inside = sum(a["interval"][0] <= matched[i] <= a["interval"][1] for i, a in ann.items())
    widths = sorted(100 * (a["interval"][1] - a["interval"][0]) for a in ann.values())
    console = _console()
    console.print(f"calibrated run {run.name} on {cal.n} trained candidates, from "
                  f"{' and '.join(scorers)} -> {path}", markup=False)
    console.print(f"  {100 * args.level:.0f} % intervals: median width "
                  f"{widths[len(widths) // 2]:.2f} points; {inside} of {len(ann)} of these "
                  "candidates inside theirs (on the candidates fitted, so optimistic: judge it "
                  "on others)", markup=False)
    console.print(f"  hypernas show {run.name} now prints each candidate's predicted accuracy "
                  "with its interval", markup=False)
    return 0


def _screens(run: Any) -> tuple[dict[str, float], str]:
    """``{encoding: validation accuracy}`` of the run's screening / refinement trials that share
    the most common recipe (a probe predicts one recipe's accuracy), and that recipe in words."""
    from ..refine.study import completed, open_study

    groups: dict[str, dict[str, float]] = {}
    for t in completed(open_study(run, create=False), fits=False):
        code, recipe = t.user_attrs.get("encoding"), t.user_attrs.get("recipe")
        if code is None or recipe is None:
            continue
        key = json.dumps({**{k: v for k, v in recipe.items() if k != "seed"},
                          "warm_start": bool(t.user_attrs.get("warm_start"))}, sort_keys=True)
        group = groups.setdefault(key, {})
        group[code] = max(group.get(code, t.value), t.value)
    if not groups:
        return {}, ""
    key, labels = max(groups.items(), key=lambda kv: len(kv[1]))
    r = json.loads(key)
    start = "predicted" if r["warm_start"] else "random"
    return labels, (f"validation accuracy after {r.get('epochs')} epochs on "
                    f"{r.get('train_size') or 'all'} images at lr {r.get('lr')}, from {start} "
                    "weights")


def cmd_probe(args: argparse.Namespace) -> int:
    from ..hypernet.trainer import load_checkpoint
    from ..ranking.probe import MIN_LABELS, WEAK, fit_probe, graph_embeddings, save_probe
    from ..ranking.run import load_run
    from ..runs.rankings import ranking_labels, ranking_rows
    from ..runs.store import Run

    loaded = load_run(Run(args.run))
    run = loaded.run
    if args.truth:
        truth = read_truth(Path(args.truth))
        recipe = args.recipe or f"the accuracies of {args.truth}"
        source = str(args.truth)
    else:
        truth, recipe = _screens(run) if run.study_path.exists() else ({}, "")
        if len(truth) < MIN_LABELS:
            raise HypernasError(f"run {run.name!r} has {len(truth)} screened candidates with one "
                                f"recipe; a probe needs {MIN_LABELS}: screen more (hypernas "
                                f"refine {run.name} --trials {MIN_LABELS}) or give --truth FILE")
        recipe = args.recipe or recipe
        source = f"runs/{run.name}/study.db (trials of that recipe, finalists left out)"
    encodings = {r["id"]: r["encoding"] for label in ranking_labels(run)
                 for r in ranking_rows(run, label).values()}
    graphs, accs, unknown = [], [], 0
    for key, acc in truth.items():
        code = encodings.get(key, key)
        try:
            graphs.append(loaded.space.replay(code).graph)
        except HypernasError:
            unknown += 1
            continue
        accs.append(acc)
    if unknown:
        _console(stderr=True).print(f"note: {unknown} of {len(truth)} trained candidates are "
                                    "neither an encoding of this run's space nor an id it "
                                    "ranked; left out", markup=False)
    hnet, _, _ = load_checkpoint(run.checkpoint_path, loaded.config.hypernet)
    probe = fit_probe(graph_embeddings(hnet, graphs), accs, recipe=recipe, source=source)
    path = save_probe(run, probe)
    console = _console()
    console.print(f"probe of run {run.name} fitted on {probe.labels} trained candidates "
                  f"(accuracy sd {100 * probe.label_sd:.2f} points; {recipe}) -> {path}",
                  markup=False)
    console.print(f"  held-out Spearman {probe.cv_spearman:+.3f} (5-fold, penalty "
                  f"{probe.penalty:g}); rank with it: hypernas rank {run.name} --scorer probe",
                  markup=False)
    if probe.cv_spearman < WEAK:
        _console(stderr=True).print(
            f"warning: the probe's held-out predictions follow the accuracies at Spearman "
            f"{probe.cv_spearman:+.2f}, so a ranking by it is close to noise: fit it on more "
            "trained candidates, or on ones whose accuracies differ by more than a training's "
            "seed noise", style="bold yellow", markup=False, soft_wrap=True)
    return 0
