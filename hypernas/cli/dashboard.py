"""The ``dashboard`` command: optuna-dashboard on a run's study (the refinement's trials)."""

from __future__ import annotations

import argparse
import importlib.util
import signal
import socket
import threading

from ..errors import HypernasError
from ._common import _console

__all__ = ["cmd_dashboard", "port_free"]


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be listened on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..runs.store import Run

    run = Run(args.run)
    run.read_config()
    if not run.study_path.exists():
        raise HypernasError(f"run {args.run!r} has no study yet (no refinement trial); run "
                            f"hypernas refine {args.run} or hypernas search first")
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise HypernasError("optuna-dashboard is not installed: pip install 'hypernas[dashboard]' "
                            "(or pip install optuna-dashboard)")
    if not 0 < args.port < 65536:
        raise HypernasError(f"--port must lie in 1..65535, got {args.port}")
    if not port_free(args.host, args.port):
        raise HypernasError(f"port {args.port} on {args.host} is in use; pass another --port")
    import optuna
    import optuna_dashboard

    storage = optuna.storages.RDBStorage(f"sqlite:///{run.study_path.resolve()}")
    _console().print(f"optuna-dashboard on run {args.run}'s study: http://{args.host}:"
                     f"{args.port}/dashboard (Ctrl-C stops it)", markup=False)
    if threading.current_thread() is threading.main_thread():
        # the dashboard only reads, so SIGTERM may stop it at once; raised as an interrupt (as
        # hypernas does elsewhere) it could land inside a request, where wsgiref swallows it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0
