"""Ray behind one thin module: start or join a cluster, and the errors that mean a worker is gone.

Only this module imports Ray, and only inside functions: ``import hypernas`` neither imports nor
starts Ray. The ranking pool (:mod:`hypernas.ranking.on_ray`) and the refinement trials
(:mod:`hypernas.refine.on_tune`, Ray Tune experiments) both run inside :func:`ray_session`.

Authentication: recent Ray (2.60 here) turns token auth on for clusters that ``ray.init`` starts.
A private cluster (no ``address``) is started by this process, so every node inherits its
``RAY_AUTH_MODE``; unset, Ray picks ``token`` and says so in a warning. The CLI sets
``RAY_AUTH_MODE=token`` when it is unset, before Ray is imported (:func:`default_auth_mode`);
a program of your own may do the same. Joining a cluster needs the same mode on this machine and
every node, set before Python and ``ray start`` run: ``RAY_AUTH_MODE=token`` with the cluster's
token (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``) everywhere, or ``RAY_AUTH_MODE=disabled``
everywhere (trusted networks only). Unset, ``ray start --head`` turns token auth on only when a
token file exists and ``ray start --address`` never does, which is how a second node ends up
refused with ``InvalidAuthToken``.

Example:
    >>> with ray_session(workers=2) as ray:  # doctest: +SKIP
    ...     ray.get(ray.remote(lambda: 1).remote())
    1
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import Any, Iterator

from .errors import HypernasError

__all__ = ["DistributedError", "ClusterUnreachableError", "ray_session", "lost_errors",
           "first_line", "check_workers", "default_auth_mode"]

PROBE_TIMEOUT_S = 5.0  # TCP probe of --address before Ray's own (minutes-long) connect retries


class DistributedError(HypernasError, RuntimeError):
    """Ranking on Ray cannot go on: bad settings, or workers that keep dying or never start."""


class ClusterUnreachableError(DistributedError):
    """No Ray cluster answers at the given address, or it refused this machine."""


def check_workers(workers: int) -> None:
    """A clear error for a worker count below one."""
    if workers < 1:
        raise DistributedError(f"workers must be at least 1, got {workers}; give --workers K "
                               "with K >= 1 (or leave it out to rank in this process)")


QUIET_TUNE = {
    # Tune's terminal reporter prints its own tables to stdout even at verbose=0; the legacy
    # reporter honours verbose=0, and hypernas reports the trials itself
    "RAY_AIR_NEW_OUTPUT": "0",
}


def default_auth_mode() -> None:
    """Set ``RAY_AUTH_MODE=token`` (Ray's own default for new clusters) where it is unset and Ray
    is not imported yet, and quiet Ray Tune's own terminal output (:data:`QUIET_TUNE`, where
    unset): process-wide settings, so the application calls it (the CLI does)."""
    if "ray" not in sys.modules:  # Ray reads the mode once, when imported
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    for key, value in QUIET_TUNE.items():
        os.environ.setdefault(key, value)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DistributedError("Ray is not installed; pip install 'ray>=2.9' (or rank without "
                               "--workers)") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int = 2) -> Iterator[Any]:
    """Ray, initialised: the session already open in this process, a private local cluster of
    ``workers`` CPUs (``address`` None), or a connection to ``address``; shut down on exit if
    opened here. Hold one around several
    :func:`~hypernas.ranking.on_ray.rank_on_ray` calls to start Ray once.

    Example:
        >>> with ray_session(workers=2):  # doctest: +SKIP
        ...     by_hypernet = rank_on_ray(loaded, cands)
        ...     by_synflow = rank_on_ray(loaded, cands, scorer="synflow")
    """
    check_workers(workers)
    private = address in (None, "local")
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if private:
        _check_auth_env()
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    else:
        _probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as err:
            raise ClusterUnreachableError(
                f"cannot join the Ray cluster at {address} ({err}); if it runs, the usual cause is "
                "token auth: set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token) here and on every node, or RAY_AUTH_MODE=disabled on all of "
                "them, before starting Python and `ray start`") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail in seconds when nothing listens at ``address`` (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachableError(f"cluster address {address!r} is not HOST:PORT; give the "
                                      "head node's address as `ray start --head` printed it")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise ClusterUnreachableError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head --port PORT` (and `ray start --address HEAD:PORT` on each other "
            "node), or leave out the address to rank on a private local cluster") from None


def _cached_auth_mode() -> str | None:
    """The auth mode Ray read in this process (``token``/``disabled``); None for a Ray without
    token auth."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:
        return None
    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


def _check_auth_env() -> None:
    """Ray reads ``RAY_AUTH_MODE`` once, at import; the nodes of a private cluster read it from
    the environment at start. Changed in between, they disagree and the start hangs."""
    env, cached = os.environ.get("RAY_AUTH_MODE"), _cached_auth_mode()
    if env is not None and cached is not None and env.lower() != cached:
        raise DistributedError(f"RAY_AUTH_MODE is {env!r} but Ray read {cached!r} when it was "
                               "imported, so a private cluster's nodes would refuse this process; "
                               "set RAY_AUTH_MODE before starting Python")


def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors that mean a worker, its node or a result is gone: the chunk can be retried."""
    ex = ray.exceptions
    return (ex.RayActorError, ex.NodeDiedError, ex.WorkerCrashedError, ex.ObjectLostError,
            ex.OutOfMemoryError)


def first_line(err: BaseException, last: bool = False) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(err).__name__
