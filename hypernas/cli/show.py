"""The ``show`` and ``runs`` commands: a run's ranking, one architecture, every run."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import HypernasError
from ._common import _check_top, _console, _json_fields

__all__ = ["cmd_report", "cmd_runs", "cmd_show"]


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report
    from ..runs.store import Run

    run = Run(args.run)
    run.read_config()
    out = write_report(run, args.out, args.png, force=args.force)
    _console().print(f"report of run {args.run}: {out}" + (f" (figures as PNG in {args.png})"
                                                            if args.png else ""), markup=False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..graphs.network import count_macs, count_params
    from ..ranking.uncertainty import check_level, run_uncertainty
    from ..refine.study import refined_rows
    from ..runs.rankings import default_label, find_candidate, ranked_rows, scores_of, select_rows
    from ..runs.store import Run
    from ..runs.summary import run_space
    from .console import arch_tree, ranking_table, scores_table

    _check_top(args)
    check_level(args.level)
    run = Run(args.run)
    if args.arch:
        cand_id, encoding = find_candidate(run, args.arch)
        cand = run_space(run).replay(encoding)
        scores = scores_of(run, cand_id)
        if args.json:
            sys.stdout.write(json.dumps({"id": cand_id, "encoding": encoding,
                                         "params": count_params(cand.graph),
                                         "macs": count_macs(cand.graph), "scores": scores}) + "\n")
            return 0
        console = _console()
        console.print(arch_tree(cand))
        console.print(scores_table(scores))
        return 0
    rows = ranked_rows(run, args.ranking)
    cal, ann = run_uncertainty(run, args.level)
    rows = [{**row, **ann.get(row["id"], {})} for row in rows]
    if args.pareto:
        return _show_pareto(args, run, rows, cal, len(ann))
    picked = select_rows(rows, sort=args.sort, descending=args.desc, top=args.top,
                         max_params=args.max_params, min_params=args.min_params,
                         max_macs=args.max_macs)
    # refinement (or screening) trials and the finalists' longer trainings are kept apart: a
    # 2-epoch screen and a 5-epoch finalist are not the same measurement
    trained = {"refined": refined_rows(run, fits=False),
               "finalist": refined_rows(run, only_fits=True)}
    if args.json:
        for row in picked:
            extra = {f"{kind}_val_acc": rows_[row["id"]]["val_acc"]
                     for kind, rows_ in trained.items() if row["id"] in rows_}
            extra.update({f"{kind}_epochs": rows_[row["id"]].get("epochs")
                          for kind, rows_ in trained.items() if row["id"] in rows_})
            sys.stdout.write(json.dumps({**_json_fields(row), **extra}) + "\n")
        return 0
    label = args.ranking or default_label(run)
    extra = {f"{kind} val acc": {i: r["val_acc"] for i, r in rows_.items()}
             for kind, rows_ in trained.items() if rows_} or None
    _console().print(ranking_table(picked, extra, title=f"{args.run}: {len(picked)} of {len(rows)} "
                                                 f"candidates ({label}), by {args.sort}",
                                   calibration=cal, pool=len(ann)))
    return 0


def _show_pareto(args: argparse.Namespace, run, rows: list[dict], cal=None, pool: int = 0
                 ) -> int:
    from ..runs.rankings import default_label, pareto_front, select_rows
    from .console import pareto_plot, ranking_table

    kept = select_rows(rows, max_params=args.max_params, min_params=args.min_params,
                       max_macs=args.max_macs)
    if not kept:
        raise HypernasError(f"run {args.run} has no ranked candidate to put on a Pareto front"
                            + (" within the filters" if len(rows) else "; rank some first "
                               f"(hypernas rank {args.run} --n 200)"))
    x = "latency_ms" if args.x == "latency" else args.x
    if x == "latency_ms":
        from ..graphs.latency import LatencyMeter
        from ..runs.summary import run_space
        from ..spaces.budget import with_latency

        meter = LatencyMeter(args.latency_runtime, path=run.latency_path)
        kept = with_latency(kept, run_space(run), meter)
    front = pareto_front(kept, x)
    shown = front[:args.top] if args.top else front
    if args.json:
        for place, row in enumerate(shown, start=1):
            sys.stdout.write(json.dumps({**_json_fields(row), "pareto": {
                "x": x, "place": place, "of": len(front)}}) + "\n")
        return 0
    label = args.ranking or default_label(run)
    console = _console()
    console.print(ranking_table(shown, title=f"{args.run}: the {len(front)} of {len(kept)} "
                                             f"candidates no other beats on both {label} score "
                                             f"and {args.x}, cheapest first",
                                calibration=cal, pool=pool))
    console.print(pareto_plot(kept, front, x))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ..runs.summary import list_runs
    from .console import runs_table

    summaries = list_runs(args.root)
    if args.json:
        for s in summaries:
            sys.stdout.write(json.dumps(s) + "\n")
        return 0
    if not summaries:
        _console().print("no runs yet; start one: hypernas train nb201 --run NAME")
        return 0
    _console().print(runs_table(summaries))
    return 0
