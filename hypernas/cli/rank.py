"""The ``train`` and ``rank`` commands, with the live ranking display."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
from typing import Any, Callable

from rich.console import Console

from ..errors import HypernasError
from ._common import (
    EXIT_PARTIAL,
    _budget,
    _check_ray_args,
    _check_top,
    _console,
    _json_fields,
    _parse_setting,
)

__all__ = ["cmd_rank", "cmd_train"]


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..data.registry import data_config
    from ..hypernet.model import HyperNetConfig
    from ..hypernet.trainer import HyperTrainConfig
    from ..ranking.run import RunConfig, start_run, train_run
    from ..ranking.scoring import CHANCE_FACTOR
    from ..runs.store import Run, read_jsonl
    from ..spaces.defaults import describe_defaults, with_defaults

    if args.budget is not None and args.steps is not None:
        raise HypernasError("give --budget MINUTES or --steps N, not both")
    budget = 30.0 if args.budget is None else args.budget
    train = HyperTrainConfig(steps=args.steps, budget_minutes=budget,
                             meta_batch=args.meta_batch, large_draws=args.large_draws,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    settings, resolution, picked = with_defaults(
        args.space, args.data, dict(_parse_setting(s) for s in args.set or []), args.resolution)
    data_seed = args.seed if args.data_seed is None else args.data_seed
    cfg = RunConfig(space=args.space, space_settings=settings,
                    data=data_config(args.data, data_seed), resolution=resolution,
                    hypernet=HyperNetConfig(backbone=args.backbone, dim=args.dim,
                                            samples=args.samples),
                    train=train)
    if args.pretrained:
        from ..ranking.pretrained import available, find_pretrained

        pre = find_pretrained(cfg)
        if pre is None:
            shipped = "; ".join(f"{p.name} (`{p.card['command'].split(' --steps')[0]}`)"
                                for p in available()) or "none"
            raise HypernasError("no shipped hypernetwork matches this space, settings, data, "
                                f"resolution and hypernetwork; shipped: {shipped}")
        cfg = RunConfig.from_dict(pre.config_dict)
    loaded = start_run(Run(args.run), cfg)
    console = _console()
    told = describe_defaults(args.space, args.data, picked)
    if told:
        console.print(told, markup=False)
    if loaded.config.pretrained:
        console.print(f"run [bold]{args.run}[/] starts from the shipped hypernetwork "
                      f"[bold]{loaded.config.pretrained}[/] ({loaded.config.train.steps:,} steps)")
    console.print(f"run [bold]{args.run}[/]: {loaded.space.name} on {loaded.data.name} "
                  f"{'x'.join(map(str, loaded.data.input_shape))}, hypernet "
                  f"{loaded.config.hypernet.backbone} -> {loaded.run.path}")
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TextColumn("step {task.fields[step]}  loss {task.fields[loss]}"
                                               "  acc {task.fields[acc]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("training", total=100, step=0, loss="-", acc="-")

        def on_log(row: dict) -> None:
            total = loaded.config.train
            done = (row["step"] / total.steps if total.steps else
                    row["elapsed"] / (60 * total.budget_minutes))
            progress.update(task, completed=100 * min(done, 1.0), step=row["step"],
                            loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}")

        summary = train_run(loaded, on_log=on_log)
        progress.update(task, completed=100)
    console.print(f"trained to step {summary['step']} in {summary['elapsed'] / 60:.1f} min "
                  f"({summary['nan_skipped']} non-finite steps skipped); checkpoint "
                  f"{loaded.run.checkpoint_path}")
    last = list(read_jsonl(loaded.run.train_log_path))[-1:]
    chance = 1 / loaded.data.num_classes
    if last and last[0]["acc"] < CHANCE_FACTOR * chance:
        _console(stderr=True).print(
            f"warning: after {summary['step']} steps the hypernetwork's training accuracy is "
            f"{last[0]['acc']:.3f} (chance {chance:.3f}): a ranking from it would be noise; "
            f"train longer (the same command with a larger --budget or --steps resumes)",
            style="bold yellow", markup=False, soft_wrap=True)
    return 0


def _rank_live(console: Console, title: str, total: int, top: int = 10):
    """A live display (progress, rate, ETA and the current top-k) fed with ranking rows."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .console import ranking_table

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} cand/s"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console)
    live = Live(progress, console=console, transient=True, refresh_per_second=4)

    class Feed:
        def __init__(self) -> None:
            self.rows: dict[str, dict[str, Any]] = {}
            self.task = progress.add_task(title, total=total, rate="-")

        def start(self, label: str, done: dict[str, dict[str, Any]]) -> None:
            progress.update(self.task, description=f"{title} [{label}]", completed=len(done),
                            total=total)
            progress.reset(self.task, completed=len(done), total=total)
            self.rows = dict(done)
            self.draw(label)

        def add(self, label: str, rows: list[dict[str, Any]]) -> None:
            self.rows.update((r["id"], r) for r in rows)
            progress.advance(self.task, len(rows))
            speed = progress.tasks[0].speed
            progress.update(self.task, rate=f"{speed:.1f}" if speed else "-")
            self.draw(label)

        def draw(self, label: str) -> None:
            best = sorted(self.rows.values(), key=lambda r: -r["score"])[:top]
            live.update(Group(progress, ranking_table(best, title=f"current top {top} by {label}")))

    return live, Feed()


def _race(args: argparse.Namespace, candidates: int) -> Any:
    """The racing config of ``rank`` (None with ``--full``); ``--top-k`` must fit the
    candidates."""
    from ..ranking.racing import RaceConfig

    if args.full:
        if args.top_k is not None:
            raise HypernasError("--top-k sets the racing boundary and --full turns racing off; "
                                "give one of them")
        return None
    if args.top_k is not None and args.top_k > candidates:
        raise HypernasError(f"--top-k {args.top_k} is more than the {candidates} distinct "
                            f"candidates ranked; give at most --top-k {candidates}, or rank more "
                            "with --n")
    return RaceConfig(top_k=args.top_k if args.top_k is not None else min(50, candidates))


def cmd_rank(args: argparse.Namespace) -> int:
    from ..ranking.rank import rank_run, read_archs
    from ..ranking.run import load_run
    from ..ranking.scoring import chance_warning
    from ..runs.rankings import COMBINED, ranking_rows, write_combined
    from ..runs.store import Run
    from ..spaces.budget import sample_within
    from .console import ranking_table

    _check_top(args)
    loaded = load_run(Run(args.run))
    err = _console(stderr=True)
    budget, skipped = _budget(args), 0
    meter = budget.run_meter(loaded.run.latency_path)
    if args.archs:
        lines = read_archs(loaded.space, args.archs)
        if budget:
            lines = [dataclasses.replace(l, candidate=None, error=f"over the budget "
                                         f"({budget.describe()})")
                     if l.candidate is not None and not budget.fits(l.candidate.graph, meter)
                     else l
                     for l in lines]
        skipped = sum(1 for l in lines if l.error)
        for bad in (l for l in lines if l.error):
            err.print(f"{args.archs}:{bad.line}: skipped: {bad.error}", markup=False,
                      soft_wrap=True)
        cands = [l.candidate for l in lines if l.candidate is not None]
        if not cands:
            raise HypernasError(f"no valid architecture in {args.archs}")
    else:
        if args.n < 1:
            raise HypernasError(f"--n must be at least 1, got {args.n}")
        cands = sample_within(loaded.space, budget, args.n, seed=args.seed, meter=meter)
    combine = [p for p in (args.combine.split(",") if args.combine else []) if p]
    if combine and args.ranking:
        raise HypernasError("--combine writes the run's 'combined' ranking; leave out --ranking")
    scorers = list(dict.fromkeys([args.scorer, *(p for p in (args.proxies.split(",")
                                                                if args.proxies else []) if p),
                                  *combine]))
    labels = {s: s for s in scorers}
    if args.ranking:
        labels[args.scorer] = args.ranking
    unique = {c.id for c in cands}
    race = _race(args, len(unique))
    _check_ray_args(args, "K (the number of scoring actors)")
    if args.workers is not None and args.workers < 1:
        raise HypernasError(f"--workers must be at least 1, got {args.workers}")
    session: Any = contextlib.nullcontext()
    rank: Callable[..., dict[str, dict[str, Any]]] = rank_run
    if args.workers:
        from ..cluster import ray_session
        from ..ranking.on_ray import rank_on_ray

        session = ray_session(args.address, args.workers)  # one Ray start for every scorer
        rank = functools.partial(rank_on_ray, workers=args.workers, address=args.address)
    rankings = {}
    live, feed = _rank_live(err, f"ranking {len(unique)} candidates", len(unique), top=10)
    with session, live:
        for scorer in scorers:
            label = labels[scorer]
            feed.start(label, {i: r for i, r in ranking_rows(loaded.run, label).items()
                               if i in unique})
            rankings[scorer] = rank(loaded, cands, scorer, label=label,
                                    on_rows=lambda rows, l=label: feed.add(l, rows),
                                    race=race if scorer == "hypernet" else None)
    main, title = rankings[args.scorer], labels[args.scorer]
    if args.scorer == "hypernet":
        warning = chance_warning([main[c.id] for c in cands], loaded.data.num_classes)
        if warning:
            err.print(f"warning: {warning}", style="bold yellow", markup=False,
                      soft_wrap=True)
    if combine:  # rank average of the scorer and the combined proxies, over the run's pool
        parts = [labels[args.scorer], *(p for p in combine if p != args.scorer)]
        main = write_combined(loaded.run, parts)
        title = f"{COMBINED} ({' + '.join(parts)}, rank average)"
    if args.archs:
        rows = [{**main[l.candidate.id], "line": l.line, "encoding": l.text}
                for l in lines if l.candidate is not None]
    else:
        rows = [main[c.id] for c in cands]
    rows.sort(key=lambda r: -r["score"])
    order = {r["id"]: None for r in rows}
    rank_of = {i: k for k, i in enumerate(order, start=1)}
    rows = [{**r, "rank": rank_of[r["id"]]} for r in rows]
    extra = {p: {i: r["score"] for i, r in rankings[p].items()} for p in scorers[1:]}
    shown = rows[:args.top] if args.top else rows
    if args.json:
        for row in shown:
            sys.stdout.write(json.dumps(_json_fields(row, extra)) + "\n")
    else:
        _console().print(ranking_table(shown, extra, title=f"{args.run}: {len(rows)} candidates "
                                                           f"by {title}"))
    if skipped and not args.skip_bad:
        err.print(f"{skipped} line(s) of {args.archs} skipped (exit status 1); pass --skip-bad "
                  "to accept that", markup=False, soft_wrap=True)
        return EXIT_PARTIAL
    return 0
