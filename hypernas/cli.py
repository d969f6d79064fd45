"""The ``hypernas`` command line. The only module that writes to the terminal.

Errors hypernas raises on purpose end the command with a one-line reason and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from typing import Any, Callable, Sequence

from rich.console import Console

from .errors import HypernasError

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _console(stderr: bool = False) -> Console:
    # Piped output gets wide lines (rich would assume 80 columns) and no control codes.
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=wide)


def _parse_setting(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise HypernasError(f"--set expects KEY=VALUE (e.g. --set N=1), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _space_from_args(args: argparse.Namespace):
    from .space import load_space

    overrides = dict(_parse_setting(s) for s in args.set or [])
    if getattr(args, "data", None):
        from .data import list_datasets

        info = {d.name: d for d in list_datasets()}
        if args.data not in info:
            raise HypernasError(f"unknown dataset {args.data!r}; known: {', '.join(info)}")
        if info[args.data].input_shape is not None:
            overrides.setdefault("input_shape", tuple(info[args.data].input_shape))
        if info[args.data].num_classes is not None:
            overrides.setdefault("num_classes", info[args.data].num_classes)
    return load_space(args.space, **overrides)


# ----- commands -------------------------------------------------------------------------------

def cmd_spaces(args: argparse.Namespace) -> int:
    from .console import spaces_table
    from .space import list_spaces, load_space

    _console().print(spaces_table(load_space(name) for name in list_spaces()))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .console import candidates_table

    if args.n < 1:
        raise HypernasError(f"--n must be at least 1, got {args.n}")
    space = _space_from_args(args)
    cands = space.sample_many(args.n, seed=args.seed, unique=not args.allow_duplicates)
    if args.json:
        for cand in cands:
            sys.stdout.write(json.dumps(cand.to_dict()) + "\n")
        return 0
    _console().print(candidates_table(cands, title=f"{args.n} samples of {space.name} "
                                                   f"(seed {args.seed})"))
    return 0


def cmd_show_arch(args: argparse.Namespace) -> int:
    from .console import arch_tree
    from .graph import graph_to_json

    space = _space_from_args(args)
    cand = space.replay(args.encoding)
    if args.json:
        sys.stdout.write(json.dumps(cand.to_dict()) + "\n")
        return 0
    extra = {"code": space.code(cand.params)} if hasattr(space, "code") else {}
    _console().print(arch_tree(cand, extra))
    if args.save:
        with open(args.save, "w") as fh:
            fh.write(graph_to_json(cand.graph, indent=1))
        _console().print(f"graph written to {args.save}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .data import list_datasets

    table = Table(title="datasets")
    for col in ("dataset", "input shape", "classes", "available", "description / how to get it"):
        table.add_column(col)
    for d in list_datasets():
        shape = "from file" if d.input_shape is None else "x".join(map(str, d.input_shape))
        table.add_row(d.name, shape, str(d.num_classes or "from file"),
                      "yes" if d.available else "no",
                      d.description if d.available else d.hint)
    _console().print(table)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .data import DataConfig
    from .hypernet.model import HyperNetConfig
    from .hypernet.trainer import HyperTrainConfig
    from .runs import Run
    from .workflow import RunConfig, start_run, train_run

    if args.budget is not None and args.steps is not None:
        raise HypernasError("give --budget MINUTES or --steps N, not both")
    train = HyperTrainConfig(steps=args.steps, budget_minutes=args.budget or 30.0,
                             meta_batch=args.meta_batch, large_draws=args.large_draws,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    cfg = RunConfig(space=args.space, space_settings=dict(_parse_setting(s) for s in args.set or []),
                    data=DataConfig(name=args.data, seed=args.seed), resolution=args.resolution,
                    hypernet=HyperNetConfig(backbone=args.backbone, dim=args.dim,
                                            samples=args.samples),
                    train=train)
    loaded = start_run(Run(args.run), cfg)
    console = _console()
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
    return 0


JSON_FIELDS = ("rank", "line", "encoding", "id", "score", "spread", "params", "macs")


def _json_fields(row: dict[str, Any], extra: dict[str, dict[str, float]] | None = None
                 ) -> dict[str, Any]:
    """The fields a ranking row shows in ``--json`` output (``rank`` and ``show`` alike)."""
    fields = {k: row.get(k) for k in JSON_FIELDS if k in row}
    if extra:
        fields["proxies"] = {p: extra[p].get(row["id"]) for p in extra}
    return fields


def _check_ray_args(args: argparse.Namespace, workers: str) -> None:
    """``--address`` only with ``--workers``; ``workers`` says what the workers do."""
    if args.address and not args.workers:
        raise HypernasError(f"--address needs --workers {workers}")


def _rank_live(console: Console, title: str, total: int, top: int = 10):
    """A live display (progress, rate, ETA and the current top-k) fed with ranking rows."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

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


def cmd_rank(args: argparse.Namespace) -> int:
    from .console import ranking_table
    from .runs import Run
    from .workflow import load_run, rank_run, ranking_rows, read_archs

    loaded = load_run(Run(args.run))
    err = _console(stderr=True)
    if args.archs:
        lines = read_archs(loaded.space, args.archs)
        for bad in (l for l in lines if l.error):
            err.print(f"{args.archs}:{bad.line}: skipped: {bad.error}", markup=False,
                      soft_wrap=True)
        cands = [l.candidate for l in lines if l.candidate is not None]
        if not cands:
            raise HypernasError(f"no valid architecture in {args.archs}")
    else:
        if args.n < 1:
            raise HypernasError(f"--n must be at least 1, got {args.n}")
        cands = loaded.space.sample_many(args.n, seed=args.seed)
    scorers = [args.scorer] + [p for p in (args.proxies.split(",") if args.proxies else [])
                               if p and p != args.scorer]
    labels = {s: s for s in scorers}
    if args.ranking:
        labels[args.scorer] = args.ranking
    unique = {c.id for c in cands}
    _check_ray_args(args, "K (the number of scoring actors)")
    if args.workers is not None and args.workers < 1:
        raise HypernasError(f"--workers must be at least 1, got {args.workers}")
    session: Any = contextlib.nullcontext()
    rank: Callable[..., dict[str, dict[str, Any]]] = rank_run
    if args.workers:
        from .distributed import rank_on_ray, ray_session

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
                                    on_rows=lambda rows, l=label: feed.add(l, rows))
    main = rankings[args.scorer]
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
        return 0
    _console().print(ranking_table(shown, extra, title=f"{args.run}: {len(rows)} candidates by "
                                                       f"{labels[args.scorer]}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .console import arch_tree, ranking_table, scores_table
    from .network import count_macs, count_params
    from .refine import refined_rows
    from .report import (default_label, find_candidate, ranked_rows, run_space, scores_of,
                         select_rows)
    from .runs import Run

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
    picked = select_rows(rows, sort=args.sort, descending=args.desc, top=args.top,
                         max_params=args.max_params, min_params=args.min_params,
                         max_macs=args.max_macs)
    if args.json:
        trained = {i: r["val_acc"] for i, r in refined_rows(run).items()}
        for row in picked:
            extra = {"trained_val_acc": trained[row["id"]]} if row["id"] in trained else {}
            sys.stdout.write(json.dumps({**_json_fields(row), **extra}) + "\n")
        return 0
    label = args.ranking or default_label(run)
    trained = {i: r["val_acc"] for i, r in refined_rows(run).items()}
    extra = {"trained val acc": trained} if trained else None
    _console().print(ranking_table(picked, extra, title=f"{args.run}: {len(picked)} of {len(rows)} "
                                                 f"candidates ({label}), by {args.sort}"))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .console import runs_table
    from .report import list_runs

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


def cmd_refine(args: argparse.Namespace) -> int:
    from .refine import RefineConfig, refine_run
    from .runs import Run
    from .workflow import load_run

    cfg = RefineConfig(top=args.top, trials=args.trials, max_epochs=args.max_epochs,
                       mutations=args.mutations, warm_start=not args.random_init,
                       ranking=args.ranking, seed=args.seed)
    loaded = load_run(Run(args.run))
    console = _console()

    def on_trial(t: dict[str, Any]) -> None:
        value = f"val acc {t['value']:.4f}" if t["value"] is not None else t["state"].lower()
        console.print(f"trial {t['number']:>3} [{t['finished']}/{t['of']}] {t.get('id', '?')} "
                      f"mutation {t.get('mutation')} epochs {t.get('epochs')} lr "
                      f"{t.get('lr', 0):.3g}: {value}", markup=False)

    _check_ray_args(args, "W (trials trained at once)")
    study = refine_run(loaded, cfg, on_trial=on_trial, workers=args.workers, address=args.address)
    best = study.best_trial
    console.print(f"best: trial {best.number}, {best.user_attrs['id']} val acc {best.value:.4f} "
                  f"({best.user_attrs['encoding']}); study {loaded.run.study_path}", markup=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .refine import export_run
    from .runs import Run

    formats = [f for f in args.format.split(",") if f]
    card = export_run(Run(args.run), args.out, arch=args.arch, formats=formats, force=args.force)
    _console().print(f"exported {card['id']} ({card['encoding']}), test acc "
                     f"{card['test_acc']:.4f}, to {args.out}: {', '.join(sorted(card['files']))}",
                     markup=False)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .console import ranking_table
    from .pipeline import SearchConfig, run_search
    from .refine import refined_rows

    formats = tuple(f for f in args.format.split(",") if f)
    cfg = SearchConfig(space=args.space, data=args.data,
                       space_settings=dict(_parse_setting(s) for s in args.set or []),
                       resolution=args.resolution, budget_minutes=args.budget, candidates=args.n, top=args.top,
                       trials=args.trials, workers=args.workers, address=args.address,
                       formats=formats, name=args.run, seed=args.seed)
    _check_ray_args(args, "K (the number of scoring actors)")
    console, err = _console(), _console(stderr=True)
    last_log = {"step": 0}

    def on_event(stage: str, info: dict[str, Any]) -> None:
        if stage == "train":
            console.print(f"[1/4] training the hypernetwork for {info['minutes']:.1f} min "
                          f"-> {info['run']}", markup=False)
        elif stage == "train-step":
            if info["step"] - last_log["step"] >= 100:
                last_log["step"] = info["step"]
                err.print(f"      step {info['step']}: loss {info['loss']:.3f} acc "
                          f"{info['acc']:.3f}", markup=False)
        elif stage == "rank":
            console.print(f"[2/4] ranking {info['candidates']} candidates"
                          + (f" on {info['workers']} Ray workers" if info["workers"] else ""),
                          markup=False)
        elif stage == "refine":
            console.print(f"[3/4] refining the top {info['top']} with {info['trials']} "
                          "training trials", markup=False)
        elif stage == "trial":
            value = f"{info['value']:.4f}" if info["value"] is not None else info["state"].lower()
            console.print(f"      trial {info['number']} ({info.get('id', '?')}, mutation "
                          f"{info.get('mutation')}): val acc {value}", markup=False)
        elif stage == "export":
            console.print(f"[4/4] exporting the winner -> {info['out']}", markup=False)

    result = run_search(cfg, on_event)
    trained = {i: r["val_acc"] for i, r in refined_rows(result["run"]).items()}
    rows = [{**r, "rank": i} for i, r in enumerate(result["ranking"], start=1)][:args.show]
    console.print(ranking_table(rows, {"trained val acc": trained},
                                title=f"{cfg.run}: top {len(rows)} of {len(result['ranking'])} "
                                      "by hypernet score"))
    card = result["card"]
    console.print(f"winner: {card['id']} {card['encoding']}", markup=False)
    console.print(f"        val acc {card['val_acc']:.4f}, test acc {card['test_acc']:.4f}, "
                  f"{card['params']:,} params", markup=False)
    console.print(f"exported to {result['export']} ({', '.join(sorted(card['files']))}); "
                  f"load it with hypernas.load(\"{result['export']}\")", markup=False)
    return 0


# ----- parser ---------------------------------------------------------------------------------

def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="search space name (see `hypernas spaces`) or path to a .py file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="space setting, e.g. --set N=1 --set 'input_shape=[1,28,28]' (repeatable)")
    p.add_argument("--data", metavar="DATASET",
                   help="shape the space for this dataset's inputs and classes (e.g. fashion-mnist)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``hypernas`` command."""
    parser = argparse.ArgumentParser(
        prog="hypernas", description="Hypernetwork-driven neural architecture search.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("spaces", help="list search spaces and their sizes",
                       description="List the search spaces and their sizes.")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="sample random candidates of a space",
                       description="Sample random candidates of a search space.")
    _add_space_args(p)
    p.add_argument("--n", type=int, default=10, help="number of candidates (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: {"encoding", "id", "graph"}')
    p.add_argument("--allow-duplicates", action="store_true",
                   help="keep candidates whose canonical id was already drawn")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("show-arch", help="show one architecture as a tree",
                       description="Show the architecture an encoding describes, as a tree with "
                                   "shapes and parameter counts.")
    _add_space_args(p)
    p.add_argument("encoding", help="the candidate's encoding (NB201: arch string or 6-digit code)")
    p.add_argument("--json", action="store_true", help="print the candidate as one JSON object")
    p.add_argument("--save", metavar="FILE", help="also write the graph as node-link JSON")
    p.set_defaults(func=cmd_show_arch)

    p = sub.add_parser("train", help="train a hypernetwork over a search space",
                       description="Train a graph hypernetwork over a search space; resumes "
                                   "from runs/RUN's last checkpoint when re-run.")
    p.add_argument("space", help="search space name or path to a .py file")
    p.add_argument("--run", required=True, help="run name: everything goes to runs/RUN/")
    p.add_argument("--data", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--budget", type=float, help="wall-clock minutes (default 30)")
    p.add_argument("--steps", type=int, help="optimisation steps instead of a time budget")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="space setting (repeatable)")
    p.add_argument("--resolution", type=int, help="resize square images to this side")
    p.add_argument("--backbone", default="gated_gnn",
                   help="gated_gnn | graph_transformer | graph_free (default gated_gnn)")
    p.add_argument("--dim", type=int, default=64, help="node embedding width (default 64)")
    p.add_argument("--samples", type=int, default=4, help="weight samples (ensemble heads) (4)")
    p.add_argument("--meta-batch", type=int, default=8, help="architectures per step (8)")
    p.add_argument("--large-draws", type=int, default=3,
                   help="half of each meta-batch is the largest of this many random draws, so "
                        "large candidates get their share of training (3; 1 = uniform)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small ops run steadier single-threaded)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("rank", help="score candidates with a run's hypernetwork or a proxy",
                       description="Score random candidates (--n) or those listed in a file "
                                   "(--archs, one encoding per line) and print the ranking.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--n", type=int, default=100, help="random candidates (default 100)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--archs", metavar="FILE", help="file with one encoding per line")
    p.add_argument("--scorer", default="hypernet",
                   help="hypernet | params | synflow | naswot | jacob_cov | snip | grad_norm")
    p.add_argument("--proxies", default="", metavar="A,B",
                   help="proxies to compute and show side by side, e.g. params,naswot")
    p.add_argument("--ranking", metavar="LABEL",
                   help="name of the ranking to write (default: the scorer's name)")
    p.add_argument("--workers", type=int, metavar="K",
                   help="score on Ray with K actors (a private local Ray unless --address)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join a running Ray cluster (as `ray start --head` printed it); "
                        "needs --workers")
    p.add_argument("--top", type=int, help="show only the best N")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small ops run steadier single-threaded)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("show", help="show a run's ranking, or one architecture with its scores",
                       description="Print a run's ranked candidates (filter, sort, --json), or "
                                   "with --arch ID one candidate drawn as a tree with its score "
                                   "under every ranking of the run.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--ranking", metavar="LABEL",
                   help="which ranking (default: hypernet, else the run's first)")
    p.add_argument("--arch", metavar="ID", help="one candidate by canonical id (or a prefix)")
    p.add_argument("--top", type=int, help="show the first N rows (after filters and sorting)")
    p.add_argument("--sort", default="rank",
                   help="rank | score | spread | params | macs | id | encoding (default rank)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--max-params", type=int, metavar="N", help="only candidates with <= N params")
    p.add_argument("--min-params", type=int, metavar="N", help="only candidates with >= N params")
    p.add_argument("--max-macs", type=int, metavar="N", help="only candidates with <= N MACs")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("refine", help="refine the top of a ranking with real training (Optuna)",
                       description="An Optuna study in runs/RUN/study.db seeded with the top-K "
                                   "candidates: short real training warm-started from predicted "
                                   "weights, with the recipe and local mutations as parameters; "
                                   "pruned per epoch; resumable.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--top", type=int, default=8, help="ranked candidates to start from (8)")
    p.add_argument("--trials", type=int, default=16, help="finished trials to reach (16)")
    p.add_argument("--max-epochs", type=int, default=4, help="most epochs per trial (4)")
    p.add_argument("--mutations", type=int, default=4,
                   help="neighbours of each candidate Optuna may try instead (4; 0 = none)")
    p.add_argument("--random-init", action="store_true",
                   help="start trials from random weights instead of predicted ones")
    p.add_argument("--ranking", metavar="LABEL", help="which ranking (default: hypernet)")
    p.add_argument("--workers", type=int, metavar="W",
                   help="train W trials at once on Ray (a private local Ray unless --address)")
    p.add_argument("--address", metavar="HOST:PORT", help="a running Ray cluster (with --workers)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("export", help="export the refined winner (or --arch ID) to a directory",
                       description="Write safetensors weights, graph JSON and a model card, plus "
                                   "ONNX (checked against onnxruntime) and a torch.export .pt2.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--out", required=True, help="directory to create")
    p.add_argument("--arch", metavar="ID", help="a refined candidate (default: the best)")
    p.add_argument("--format", default="safetensors,onnx,pt2",
                   help="comma-separated: safetensors,onnx,pt2 (default all)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("search", help="train -> rank -> refine -> export in one command",
                       description="The whole search in one resumable command. With no "
                                   "arguments: NB201 (C=16, N=1) on Fashion-MNIST at 16x16, "
                                   "about 15 minutes on 2 CPU cores.")
    p.add_argument("space", nargs="?", default="nb201", help="search space (default nb201)")
    p.add_argument("--data", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="space setting (repeatable)")
    p.add_argument("--budget", type=float, default=15.0,
                   help="minutes for the whole search (default 15; 45%% trains the hypernet)")
    p.add_argument("--resolution", type=int,
                   help="resize square images to this side (default: 16 for fashion-mnist)")
    p.add_argument("--n", type=int, default=200, help="candidates to rank (default 200)")
    p.add_argument("--top", type=int, default=4, help="ranked candidates to refine (4)")
    p.add_argument("--trials", type=int, default=6, help="refinement trials (6)")
    p.add_argument("--workers", type=int, metavar="K", help="rank on Ray with K workers")
    p.add_argument("--address", metavar="HOST:PORT", help="a running Ray cluster (with --workers)")
    p.add_argument("--format", default="safetensors,onnx,pt2", help="export formats")
    p.add_argument("--run", help="run name (default search-SPACE-DATA)")
    p.add_argument("--show", type=int, default=10, help="rows of the final table (10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("runs", help="list runs with their stage, size and best score",
                       description="List the runs under runs/ (or $HYPERNAS_RUNS).")
    p.add_argument("--root", help="runs folder (default $HYPERNAS_RUNS or runs/)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("datasets", help="list datasets and whether they are installed",
                       description="List the datasets hypernas reads, and how to install them.")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``hypernas`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return func(args)
    except HypernasError as err:  # data errors included
        _console(stderr=True).print(f"hypernas {args.command}: error: {err}", markup=False,
                                    soft_wrap=True)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `hypernas sample ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
