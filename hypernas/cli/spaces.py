"""The ``spaces``, ``sample``, ``show-arch`` and ``datasets`` commands."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import HypernasError
from ._common import _console, _space_from_args

__all__ = ["cmd_datasets", "cmd_sample", "cmd_show_arch", "cmd_spaces"]


def cmd_spaces(args: argparse.Namespace) -> int:
    from ..spaces.space import list_spaces, load_space
    from .console import spaces_table

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
    from ..graphs.serialize import graph_to_json
    from .console import arch_tree

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

    from ..data.registry import list_datasets

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


def cmd_pretrained(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..ranking.pretrained import available
    from ..ranking.run import RunConfig

    table = Table(title="shipped hypernetworks (used by `hypernas search` where the setup matches)")
    for col in ("name", "space", "settings", "data", "resolution", "trained", "trains again with"):
        table.add_column(col)
    for pre in available():
        cfg, trained = RunConfig.from_dict(pre.config_dict), pre.card["trained"]
        settings = ", ".join(f"{k}={v}" for k, v in cfg.space_settings.items()) or "defaults"
        more = pre.card.get("members", [])[1:]  # an ensemble: the first member is `trained`
        also = (f"; ensemble with {len(more)} more (seeds "
                f"{', '.join(str(m['train']['seed']) for m in more)}: "
                f"{', '.join(format(m['trained']['steps'], ',') for m in more)} steps)"
                if more else "")
        table.add_row(pre.name, cfg.space, settings, f"{cfg.data.name} (seed {cfg.data.seed})",
                      str(cfg.resolution or "as stored"),
                      f"{trained['steps']:,} steps, {trained['minutes']} min{also}",
                      pre.card["command"])
    _console().print(table)
    return 0
