"""Helpers shared by the ``hypernas`` commands: console, settings, spaces, JSON rows."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from ..errors import HypernasError

__all__ = [
    "EXIT_USAGE",
    "JSON_FIELDS",
    "_add_space_args",
    "_check_ray_args",
    "_console",
    "_json_fields",
    "_parse_setting",
    "_space_from_args",
]

EXIT_USAGE = 2
EXIT_PARTIAL = 1  # done, but part of the input was skipped (rank --archs without --skip-bad)


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
    from ..spaces.space import load_space

    overrides = dict(_parse_setting(s) for s in args.set or [])
    if getattr(args, "data", None):
        from ..data.registry import data_config, list_datasets, load_dataset_from_config

        cfg = data_config(args.data)
        info = {d.name: d for d in list_datasets()}[cfg.name]
        shape, classes = info.input_shape, info.num_classes
        if cfg.path is not None:  # your own file: its shape and classes are in it
            data = load_dataset_from_config(cfg)
            shape, classes = data.input_shape, data.num_classes
        if shape is not None:
            overrides.setdefault("input_shape", tuple(shape))
        if classes is not None:
            overrides.setdefault("num_classes", classes)
    return load_space(args.space, **overrides)


JSON_FIELDS = ("rank", "line", "encoding", "id", "score", "spread", "score_se", "images",
               "params", "macs", "latency_ms", "unseen_slots", "predicted_acc", "interval",
               "level", "rank_range", "rank_error", "ties_first")


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


def _add_budget_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--max-params``, ``--max-macs`` and ``--max-latency-ms`` (they combine)."""
    p.add_argument("--max-params", type=int, metavar="N",
                   help=f"only {what} with at most N parameters")
    p.add_argument("--max-macs", type=int, metavar="N",
                   help=f"only {what} with at most N multiply-accumulates per image")
    p.add_argument("--max-latency-ms", type=float, metavar="X",
                   help=f"only {what} that run one image in at most X ms on this machine with "
                        "--threads threads (median of 30 runs, measured once per candidate and "
                        "kept in the run)")
    _add_runtime_arg(p)


def _add_runtime_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latency-runtime", default="torch", choices=("torch", "onnxruntime"),
                   help="what latency is measured in (torch: eager PyTorch, one thread; "
                        "onnxruntime: the exported ONNX model, needs the export extra)")


def _add_trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-space`` for the commands that reopen a run (``hypernas.spaces.trust``)."""
    p.add_argument("--trust-space", action="store_true",
                   help="run the run's space file even though you have not used it before "
                        "(read it first: it is code)")


def _budget(args: argparse.Namespace):
    from ..spaces.budget import Budget

    return Budget(max_params=args.max_params, max_macs=args.max_macs,
                  max_latency_ms=args.max_latency_ms, latency_runtime=args.latency_runtime)


def _check_top(args: argparse.Namespace) -> None:
    """``--top N`` shows the first N rows: N must be at least 1."""
    if getattr(args, "top", None) is not None and args.top < 1:
        raise HypernasError(f"--top must be at least 1, got {args.top}")


def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="search space name (see `hypernas spaces`) or path to a .py file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="space setting, e.g. --set N=1 --set 'input_shape=[1,28,28]' (repeatable)")
    p.add_argument("--data", metavar="DATASET",
                   help="shape the space for this dataset's inputs and classes (a name, e.g. "
                   "fashion-mnist, or your own .npz file)")
