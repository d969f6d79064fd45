"""The ``hypernas`` command line. The only module that writes to the terminal.

Errors hypernas raises on purpose end the command with a one-line reason and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from rich.console import Console

from .errors import HypernasError

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


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

    p = sub.add_parser("datasets", help="list datasets and whether they are installed",
                       description="List the datasets hypernas reads, and how to install them.")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``hypernas`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
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
