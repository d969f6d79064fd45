"""The ``hypernas`` command line. The only module that writes to the terminal.

Errors hypernas raises on purpose end the command with a one-line reason and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Callable, Sequence

from ..errors import HypernasError
from ._common import EXIT_USAGE, _console
from .parser import build_parser

__all__ = ["main", "build_parser"]

# the commands that open a run's study
OPTUNA_COMMANDS = ("refine", "export", "search", "show", "report", "calibrate", "probe")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset / container CPU sets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _process_settings(args: argparse.Namespace) -> None:
    """Process-wide settings that the library leaves to the application.

    Optuna logs every trial at INFO, which would interleave with this command's own output; Ray
    reads ``RAY_AUTH_MODE`` once, when imported, and warns when it has to pick a mode itself.
    """
    if args.command in OPTUNA_COMMANDS:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if getattr(args, "workers", None):
        from ..cluster import default_auth_mode

        default_auth_mode()


def _trust_run_space(name: str) -> None:
    """``--trust-space``: add the space file the run names to this user's trusted spaces."""
    from ..runs.store import Run
    from ..spaces.trust import is_space_file, trust

    space = str(Run(name).read_config().get("space", ""))
    if is_space_file(space):
        trust(space)


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like SIGINT: checkpoints and locks are released


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``hypernas`` command; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the command started (parsing, settings)
        _console(stderr=True).print("hypernas: interrupted", markup=False)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    threads = getattr(args, "threads", None)
    if threads is not None:
        import torch

        if threads < 0:
            _console(stderr=True).print(f"hypernas {args.command}: error: --threads must be 0 "
                                        f"(one per core) or more, got {threads}", markup=False)
            return EXIT_USAGE
        torch.set_num_threads(threads or _usable_cores())
    _process_settings(args)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # as Ctrl-C
    try:
        if getattr(args, "trust_space", False):
            _trust_run_space(args.run)
        return func(args)
    except KeyboardInterrupt:
        _console(stderr=True).print(f"hypernas {args.command}: interrupted; what was done is "
                                    "saved, run the same command to resume", markup=False,
                                    soft_wrap=True)
        return EXIT_INTERRUPTED
    except HypernasError as err:  # data errors included
        _console(stderr=True).print(f"hypernas {args.command}: error: {err}", markup=False,
                                    soft_wrap=True)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `hypernas sample ... | head`
        return 0
    except OSError as err:  # a full disk, a read-only runs folder: say which file, keep the rest
        where = f" {err.filename}" if err.filename else ""
        _console(stderr=True).print(f"hypernas {args.command}: error: cannot write or read{where}: "
                                    f"{err.strerror or err}; free space or fix the folder's "
                                    "permissions, then run the same command again (what was "
                                    "written before is kept)", markup=False, soft_wrap=True)
        return EXIT_USAGE
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
