"""Ranking on a Ray cluster: the rows :func:`hypernas.workflow.rank_run` writes, scored by a pool
of Ray actors on one machine or many.

The driver drops candidates whose canonical id repeats or already has a row in the ranking, and
cuts the rest into chunks of encodings. Each actor receives the run's config and the hypernetwork
checkpoint once, rebuilds the space and the fixed evaluation batches from them, and scores chunks
(replaying each encoding). Only the driver writes the ranking file, appending a chunk's rows as it
completes, so a kill loses at most the chunks in flight and a re-run scores only what is missing.
A chunk whose actor or node dies is retried on another actor and a replacement actor is started,
a bounded number of times.

This is the only module that imports Ray, and only inside functions: ``import hypernas`` does not.

Authentication: recent Ray (2.60 here) turns token auth on for clusters that ``ray.init`` starts.
A private cluster (no ``address``) is started by this process, so every node inherits its
``RAY_AUTH_MODE``; when it is unset it is set to ``token`` (Ray's own default for new clusters)
before Ray is imported, and Ray keeps the token in ``~/.ray/auth_token``. Joining a cluster needs
the same mode on this machine and every node, set before Python and ``ray start`` run:
``RAY_AUTH_MODE=token`` with the cluster's token (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``)
everywhere, or ``RAY_AUTH_MODE=disabled`` everywhere (trusted networks only). Unset, ``ray start
--head`` turns token auth on only when a token file exists and ``ray start --address`` never does,
which is how a second node ends up refused with ``InvalidAuthToken``.

Example:
    >>> from hypernas.runs import Run  # doctest: +SKIP
    >>> from hypernas.workflow import load_run  # doctest: +SKIP
    >>> loaded = load_run(Run("demo"))  # doctest: +SKIP
    >>> ranking = rank_on_ray(loaded, loaded.space.sample_many(1000), workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .errors import HypernasError
from .hypernet.model import GraphHyperNetwork
from .hypernet.trainer import load_checkpoint
from .proxies import list_proxies
from .runs import append_jsonl
from .space import Candidate
from .workflow import (LoadedRun, RunConfig, make_scorer, materialise, missing_candidates,
                       ranking_rows)

__all__ = ["rank_on_ray", "ray_session", "ScoringWorker", "DistributedError",
           "ClusterUnreachableError", "hypernet_from_bytes", "portable_config", "lost_errors"]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # retries are logged; the application decides if shown

START_TIMEOUT_S = 120.0  # how long to wait for a worker when no work is in flight
BALANCE = 4  # chunks per worker at least, when ``chunk`` would give fewer
PROBE_TIMEOUT_S = 5.0  # TCP probe of --address before Ray's own (minutes-long) connect retries


class DistributedError(HypernasError, RuntimeError):
    """Ranking on Ray cannot go on: bad settings, or workers that keep dying or never start."""


class ClusterUnreachableError(DistributedError):
    """No Ray cluster answers at the given address, or it refused this machine."""


class ScoringWorker:
    """What one Ray actor runs (a plain class: it also works in-process).

    Args:
        config: the run's config (``RunConfig.to_dict()``); space and data are rebuilt from it.
        scorer: ``"hypernet"`` or a proxy name.
        checkpoint: the hypernetwork checkpoint file's bytes (``None`` for proxies).
        device: ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, config: dict[str, Any], scorer: str, checkpoint: bytes | None,
                 device: str = "cpu") -> None:
        torch.set_num_threads(1)  # one core per actor; more threads made small calls erratic
        cfg = RunConfig.from_dict(config)
        self.space, data = materialise(cfg)
        hnet = None
        if scorer == "hypernet":
            if checkpoint is None:
                raise DistributedError("the hypernet scorer needs the checkpoint's bytes")
            hnet = hypernet_from_bytes(checkpoint, cfg)
        self._score = make_scorer(scorer, cfg, data, hnet, device=device, chunk=10**6)

    def ready(self) -> int:
        """Answers once the constructor has finished (its process id)."""
        return os.getpid()

    def score(self, encodings: list[str]) -> list[dict[str, Any]]:
        """One row per encoding, as :func:`~hypernas.workflow.rank_run` computes it."""
        return self._score([self.space.replay(e) for e in encodings])


def hypernet_from_bytes(data: bytes, cfg: RunConfig) -> GraphHyperNetwork:
    """A hypernetwork from the bytes of a checkpoint file (as shipped to workers once), checked
    against ``cfg`` like any checkpoint."""
    with tempfile.TemporaryDirectory(prefix="hypernas-") as tmp:
        path = Path(tmp) / "last.safetensors"
        path.write_bytes(data)
        hnet, _, _ = load_checkpoint(path, cfg.hypernet)
    return hnet


def rank_on_ray(loaded: LoadedRun, cands: Sequence[Candidate], scorer: str = "hypernet",
                label: str | None = None, workers: int = 2, address: str | None = None,
                chunk: int = 32, on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
                retries: int = 3) -> dict[str, dict[str, Any]]:
    """:func:`~hypernas.workflow.rank_run` on Ray: the same rows in the same ranking file.

    Args:
        loaded: the run (its config and checkpoint are sent to every worker).
        cands: candidates to rank; repeats of a canonical id and ids already ranked are skipped.
        scorer: ``"hypernet"`` or a proxy name.
        label: ranking name (default: the scorer's name).
        workers: scoring actors (one CPU, or one GPU where the cluster has GPUs, each).
        address: a running cluster (``HOST:PORT`` or ``auto``); ``None`` starts a private local
            one for this call. When Ray is already initialised in this process, it is used.
        chunk: the most candidates per Ray call (give each call well over 50 ms of work);
            fewer when that leaves under 4 chunks per worker, so none idles at the end.
        on_rows: called with each chunk's rows once they are written.
        retries: times a chunk (or a failed actor start) is retried before giving up.

    Returns:
        the whole ranking by canonical id: rows already there, then the new ones.
    """
    _check_args(scorer, workers, chunk, retries)
    label = label or scorer
    path = loaded.run.ranking_path(label)
    have = ranking_rows(loaded.run, label)
    todo = missing_candidates(cands, have)
    if not todo:
        return have
    checkpoint = None
    if scorer == "hypernet":
        load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)  # fail here, not there
        checkpoint = loaded.run.checkpoint_path.read_bytes()
    size = max(1, min(chunk, -(-len(todo) // (BALANCE * workers))))
    parts = [todo[i:i + size] for i in range(0, len(todo), size)]
    done: dict[int, list[dict[str, Any]]] = {}
    with ray_session(address, workers) as ray:
        pool = _Pool(ray, portable_config(loaded.config.to_dict()), scorer, checkpoint, workers, retries)
        try:
            for index, scored in pool.run([[c.encoding for c in part] for part in parts]):
                rows = [{**r, "encoding": c.encoding, "id": c.id, "scorer": scorer}
                        for c, r in zip(parts[index], scored)]
                for row in rows:
                    append_jsonl(path, row)
                done[index] = rows
                if on_rows is not None:
                    on_rows(rows)
        finally:
            pool.close()
    for index in sorted(done):
        have.update((row["id"], row) for row in done[index])
    return have


def _check_args(scorer: str, workers: int, chunk: int, retries: int) -> None:
    if scorer != "hypernet" and scorer not in list_proxies():
        raise DistributedError(f"unknown scorer {scorer!r}; known: hypernet, "
                               f"{', '.join(list_proxies())}")
    _check_workers(workers)
    if chunk < 1:
        raise DistributedError(f"chunk must be at least 1, got {chunk}")
    if retries < 0:
        raise DistributedError(f"retries must be 0 or more, got {retries}")


def _check_workers(workers: int) -> None:
    if workers < 1:
        raise DistributedError(f"workers must be at least 1, got {workers}; give --workers K "
                               "with K >= 1 (or leave it out to rank in this process)")


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with a ``.py`` space path and an ``npz`` data path made absolute, since the
    workers' working directory is not the driver's (the files must exist on every node)."""
    out = {**config, "data": dict(config["data"])}
    if str(out["space"]).endswith(".py"):
        out["space"] = str(Path(out["space"]).resolve())
    if out["data"].get("path"):
        out["data"]["path"] = str(Path(out["data"]["path"]).resolve())
    return out


# ----- connecting ----------------------------------------------------------------------------

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
    opened here. Hold one around several :func:`rank_on_ray` calls to start Ray once.

    Example:
        >>> with ray_session(workers=2):  # doctest: +SKIP
        ...     by_hypernet = rank_on_ray(loaded, cands)
        ...     by_synflow = rank_on_ray(loaded, cands, scorer="synflow")
    """
    _check_workers(workers)
    private = address in (None, "local")
    if private and "ray" not in sys.modules:  # Ray reads the mode once, when imported
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default for new clusters, said
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


# ----- the actor pool ------------------------------------------------------------------------

def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors that mean a worker, its node or a result is gone: the chunk can be retried."""
    ex = ray.exceptions
    return (ex.RayActorError, ex.NodeDiedError, ex.WorkerCrashedError, ex.ObjectLostError,
            ex.OutOfMemoryError)


class _Pool:
    """``workers`` scoring actors fed one chunk at a time; lost chunks go back in the queue and
    lost actors are replaced."""

    def __init__(self, ray: Any, config: dict[str, Any], scorer: str, checkpoint: bytes | None,
                 workers: int, retries: int) -> None:
        self.ray, self.workers, self.retries = ray, workers, retries
        gpu = ray.cluster_resources().get("GPU", 0) >= 1
        self.cls = ray.remote(ScoringWorker).options(
            num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=0, max_task_retries=0)
        self.args = (config, scorer, ray.put(checkpoint), "cuda" if gpu else "cpu")
        self.lost = lost_errors(ray)
        self.actors: list[Any] = []
        self.starting: dict[Any, Any] = {}  # ready() ref -> actor
        self.failed_starts = 0

    def _start(self) -> None:
        actor = self.cls.remote(*self.args)
        self.actors.append(actor)
        self.starting[actor.ready.remote()] = actor

    def _drop(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor this pool started (a shared session keeps running)."""
        for actor in self.actors:
            self._drop(actor)
        self.actors.clear()

    def run(self, chunks: list[list[str]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(chunk index, rows)`` as chunks complete, each chunk exactly once."""
        for _ in range(self.workers):
            self._start()
        pending, tries = collections.deque(range(len(chunks))), collections.Counter()
        idle: list[Any] = []
        busy: dict[Any, tuple[Any, int]] = {}  # score() ref -> (actor, chunk index)
        while pending or busy:
            while idle and pending:
                actor, index = idle.pop(), pending.popleft()
                busy[actor.score.remote(chunks[index])] = (actor, index)
            ref = self._next([*busy, *self.starting], waiting_only_for_starts=not busy)
            if ref in self.starting:
                self._started(ref, idle)
                continue
            actor, index = busy.pop(ref)
            try:
                rows = self.ray.get(ref)
            except self.lost as err:
                tries[index] += 1
                if tries[index] > self.retries:
                    raise DistributedError(
                        f"chunk {index} lost its worker {tries[index]} times (last: "
                        f"{_first_line(err)}); the cluster is losing nodes or workers run out "
                        "of memory: check `ray status`, or use a smaller chunk or fewer workers"
                    ) from None
                log.warning("chunk %d lost with its worker (%s); retrying (%d/%d)", index,
                            _first_line(err), tries[index], self.retries)
                pending.appendleft(index)
                self._drop(actor)
                self._start()
                continue
            except self.ray.exceptions.RayTaskError as err:
                raise _task_error(err) from None
            idle.append(actor)
            yield index, rows

    def _next(self, refs: list[Any], waiting_only_for_starts: bool) -> Any:
        timeout = START_TIMEOUT_S if waiting_only_for_starts else None
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            raise DistributedError(
                f"no Ray worker started within {START_TIMEOUT_S:.0f} s; the cluster has no free "
                "CPU (or GPU) for one: check `ray status`, add nodes or lower --workers")
        return ready[0]

    def _started(self, ref: Any, idle: list[Any]) -> None:
        actor = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except self.lost as err:
            self.failed_starts += 1
            if self.failed_starts > self.retries:
                raise DistributedError(
                    f"Ray workers failed to start {self.failed_starts} times (last: "
                    f"{_first_line(err, last=True)}); every node needs hypernas, the run's "
                    "dataset and, for a .py space, that file at the same path") from None
            log.warning("a worker failed to start (%s); starting another",
                        _first_line(err, last=True))
            self._drop(actor)
            self._start()
            return
        idle.append(actor)


def _first_line(err: BaseException, last: bool = False) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(err).__name__


def _task_error(err: Any) -> BaseException:
    """A scorer's own error: a hypernas error is raised as itself, anything else wrapped."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, HypernasError):
        return cause
    return DistributedError(f"scoring failed on a Ray worker: {err}")
