"""Ranking on a Ray cluster: the rows :func:`hypernas.ranking.rank.rank_run` writes, scored by a
pool of Ray actors on one machine or many.

The driver drops candidates whose canonical id repeats or already has a row in the ranking, and
cuts the rest into chunks of encodings. Each actor receives the run's config and the hypernetwork
checkpoint once, rebuilds the space and the fixed evaluation batches from them, and scores chunks
(replaying each encoding). Only the driver writes the ranking file, appending a chunk's rows as it
completes, so a kill loses at most the chunks in flight and a re-run scores only what is missing.
A chunk whose actor or node dies is retried on another actor and a replacement actor is started,
a bounded number of times. Ray itself is reached through :mod:`hypernas.cluster`.

Example:
    >>> from hypernas.runs import Run  # doctest: +SKIP
    >>> from hypernas.ranking.run import load_run  # doctest: +SKIP
    >>> loaded = load_run(Run("demo"))  # doctest: +SKIP
    >>> ranking = rank_on_ray(loaded, loaded.space.sample_many(1000), workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from typing import Any, Callable, Iterator, Sequence

import torch

from ..cluster import DistributedError, check_workers, first_line, lost_errors, ray_session
from ..errors import HypernasError
from ..hypernet.trainer import checkpoint_from_bytes, load_checkpoint
from ..runs.rankings import ranking_rows
from ..runs.store import append_jsonl, run_lock
from ..spaces.space import Candidate
from .probe import PROBE
from .proxies import list_proxies
from .racing import Race, RaceConfig
from .rank import make_scorer, missing_candidates, rank_run, start_race
from .run import LoadedRun, RunConfig, materialise, portable_config

__all__ = ["rank_on_ray", "ScoringWorker"]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # retries are logged; the application decides if shown

START_TIMEOUT_S = 120.0  # how long to wait for a worker when no work is in flight
BALANCE = 4  # chunks per worker at least, when ``chunk`` would give fewer


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
        cfg = RunConfig.from_dict(config)
        self.space, data = materialise(cfg)
        hnet = None
        if scorer == "hypernet":
            if checkpoint is None:
                raise DistributedError("the hypernet scorer needs the checkpoint's bytes")
            hnet = checkpoint_from_bytes(checkpoint, cfg.hypernet)
        self._score = make_scorer(scorer, cfg, data, hnet, device=device, chunk=10**6)

    def ready(self) -> int:
        """Answers once the constructor has finished (its process id)."""
        return os.getpid()

    def score(self, encodings: list[str], race: dict[str, Any] | None = None
              ) -> list[dict[str, Any]]:
        """One row per encoding, as :func:`~hypernas.ranking.rank.rank_run` computes it; with
        ``race`` (a :meth:`~hypernas.ranking.racing.Race.state`), racing from that state."""
        return self._score([self.space.replay(e) for e in encodings],
                           Race.from_state(race) if race else None)


def rank_on_ray(loaded: LoadedRun, cands: Sequence[Candidate], scorer: str = "hypernet",
                label: str | None = None, workers: int = 2, address: str | None = None,
                chunk: int = 32, on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
                retries: int = 3, race: RaceConfig | None = None) -> dict[str, dict[str, Any]]:
    """:func:`~hypernas.ranking.rank.rank_run` on Ray: the same rows in the same ranking file.

    Args:
        loaded: the run (its config and checkpoint are sent to every worker).
        cands: candidates to rank; repeats of a canonical id and ids already ranked are skipped.
        scorer: ``"hypernet"``, a proxy name, or ``"probe"`` (ranked in this process).
        label: ranking name (default: the scorer's name).
        workers: scoring actors (one CPU, or one GPU where the cluster has GPUs, each).
        address: a running cluster (``HOST:PORT`` or ``auto``); ``None`` starts a private local
            one for this call. When Ray is already initialised in this process, it is used.
        chunk: the most candidates per Ray call (give each call well over 50 ms of work);
            fewer when that leaves under 4 chunks per worker, so none idles at the end.
        on_rows: called with each chunk's rows once they are written.
        retries: times a chunk (or a failed actor start) is retried before giving up.
        race: race the hypernet scorer's candidates over the images; each chunk is sent with
            the race as the driver knows it then (the rows of every chunk done so far).

    Returns:
        the whole ranking by canonical id: rows already there, then the new ones.
    """
    if scorer == PROBE:  # a linear read-out: cheaper here than shipping candidates to actors
        return rank_run(loaded, cands, scorer, label=label, on_rows=on_rows)
    _check_args(scorer, workers, chunk, retries)
    label = label or scorer
    with run_lock(loaded.run, f"rank-{label}", f"ranked into {label!r}"):
        path = loaded.run.ranking_path(label)
        have = ranking_rows(loaded.run, label)
        racing = start_race(loaded, scorer, label, have, race)
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
                for index, scored in pool.run([[c.encoding for c in part] for part in parts],
                                              lambda: racing.state() if racing else None):
                    rows = [{**r, "encoding": c.encoding, "id": c.id, "scorer": scorer}
                            for c, r in zip(parts[index], scored)]
                    for row in rows:
                        append_jsonl(path, row)
                        if racing is not None:
                            racing.observe(row)
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
    check_workers(workers)
    if chunk < 1:
        raise DistributedError(f"chunk must be at least 1, got {chunk}")
    if retries < 0:
        raise DistributedError(f"retries must be 0 or more, got {retries}")


# ----- the actor pool ------------------------------------------------------------------------

class _ActorWorker(ScoringWorker):
    """A :class:`ScoringWorker` in its own Ray actor process, with one torch thread: one core
    per actor (with more threads small calls were erratic). The setting is the process's, so it
    is made here, where the process is the actor's, and never in the caller's."""

    def __init__(self, *args: Any) -> None:
        torch.set_num_threads(1)
        super().__init__(*args)


def check_resources(resources: dict[str, float], workers: int) -> bool:
    """Whether the actors take GPUs (one each, where the cluster has any), after checking the
    cluster can hold ``workers`` of them at all: a request it cannot meet is refused at once,
    naming what is missing, instead of waiting for actors that never start."""
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    if gpus and gpus < workers:
        raise DistributedError(f"the cluster has {gpus} GPU(s) and each of --workers {workers} "
                               f"takes one: lower --workers to {gpus}, or add GPU nodes")
    if cpus < workers:
        raise DistributedError(f"the cluster has {cpus} CPU(s) and each of --workers {workers} "
                               f"takes one: lower --workers to {max(cpus, 1)}, or add nodes")
    return gpus >= 1


class _Pool:
    """``workers`` scoring actors fed one chunk at a time; lost chunks go back in the queue and
    lost actors are replaced."""

    def __init__(self, ray: Any, config: dict[str, Any], scorer: str, checkpoint: bytes | None,
                 workers: int, retries: int) -> None:
        self.ray, self.workers, self.retries = ray, workers, retries
        gpu = check_resources(ray.cluster_resources(), workers)
        self.cls = ray.remote(_ActorWorker).options(
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

    def run(self, chunks: list[list[str]], race: Callable[[], dict[str, Any] | None]
            ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(chunk index, rows)`` as chunks complete, each chunk exactly once; each is
        sent with ``race()`` as it is then."""
        for _ in range(self.workers):
            self._start()
        pending, tries = collections.deque(range(len(chunks))), collections.Counter()
        idle: list[Any] = []
        busy: dict[Any, tuple[Any, int]] = {}  # score() ref -> (actor, chunk index)
        while pending or busy:
            while idle and pending:
                actor, index = idle.pop(), pending.popleft()
                busy[actor.score.remote(chunks[index], race())] = (actor, index)
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
                        f"{first_line(err)}); the cluster is losing nodes or workers run out "
                        "of memory: check `ray status`, or use a smaller chunk or fewer workers"
                    ) from None
                log.warning("chunk %d lost with its worker (%s); retrying (%d/%d)", index,
                            first_line(err), tries[index], self.retries)
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
                    f"{first_line(err, last=True)}); every node needs hypernas, the run's "
                    "dataset and, for a .py space, that file at the same path") from None
            log.warning("a worker failed to start (%s); starting another",
                        first_line(err, last=True))
            self._drop(actor)
            self._start()
            return
        idle.append(actor)


def _task_error(err: Any) -> BaseException:
    """A scorer's own error: a hypernas error is raised as itself, anything else wrapped."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, HypernasError):
        return cause
    return DistributedError(f"scoring failed on a Ray worker: {err}")
