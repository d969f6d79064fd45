"""Refinement trials and finalist fits as Ray Tune experiments (``--workers W``).

The study stays the run's own: Tune's Optuna searcher (:class:`RunSearch`, Ray's
``OptunaSearch`` over the define-by-run definition of :func:`~hypernas.refine.plan.plan_trial`)
asks and tells the run's SQLite study, so ``optuna trials``, optuna-dashboard and ``hypernas
show`` read the trials Tune ran, numbered as the study numbers them. Each trial trains on one
worker (:func:`train_trial`, one torch thread) and reports its validation accuracy after every
epoch with a checkpoint (weights, optimiser, schedule and curve). Then:

- Tune's scheduler stops the trials that fall behind (``RefineConfig.scheduler``: the median
  stopping rule by default, or ASHA; ``docs/BENCHMARKS.md`` has the measurement that chose);
  the study records them as pruned;
- a trial whose worker dies is restarted from its last epoch's checkpoint (``FailureConfig``);
- a refinement killed with its process is restored by the same command (``Tuner.restore``): its
  trials go on from their last checkpoints under the same trial numbers, and the searcher asks
  for as many more as the new call wants.

Each call's experiment lives in ``runs/NAME/tune/refine-K`` (fits: ``fit-K``), K counting the
calls that started one. On a cluster (``--address``) the run folder must be on storage every node
sees, as Tune asks of its ``storage_path``. Imported only with workers, so Ray stays optional.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
import torch
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..cluster import first_line, ray_session
from ..hypernet.trainer import checkpoint_from_bytes
from ..ranking.run import LoadedRun, RunConfig, materialise, portable_config
from ..runs.store import Run
from .fit import fit_source, initial_network, record_fit
from .plan import OverBudget, RefineConfig, plan_trial, seed_next
from .study import (
    STUDY,
    StudyError,
    finished,
    open_study,
    recover_trials,
    run_lock,
    state_bytes,
    storage_url,
    trial_row,
)
from .train import TrainConfig, train_network

__all__ = ["RunSearch", "train_trial", "optimize_on_tune", "fit_on_tune", "SCHEDULERS",
           "MAX_FAILURES"]

METRIC = "val_acc"
SCHEDULERS = ("median", "asha")
MAX_FAILURES = 3  # restarts of a trial whose worker was lost, before the refinement fails
MAX_OVER_BUDGET = 100  # explored candidates over the budget in a row before the search stops
DONE = "finished"  # marker file: the experiment ended; the next call starts a new one
ROW = ("epoch", "train_loss", "val_acc", "val_loss", "seconds", "eval_seconds")


# ---------------------------------------------------------------- on the workers


def train_trial(config: dict[str, Any], run_config: dict[str, Any] | None = None,
                hypernet: bytes | None = None) -> None:
    """Tune's trainable: train ``config["encoding"]`` with ``config["recipe"]`` from predicted
    (``hypernet`` checkpoint bytes) or random weights, resuming from Tune's checkpoint when the
    trial was restarted; report every epoch with a checkpoint, and write the final weights to
    ``config["weights"]`` (when given) before the last report."""
    cfg = RunConfig.from_dict(run_config)
    space, data = _materialised(json.dumps(run_config, sort_keys=True))
    hnet = checkpoint_from_bytes(hypernet, cfg.hypernet).eval() if hypernet is not None else None
    net = initial_network(space.replay(config["encoding"]), hnet)
    recipe = TrainConfig(**config["recipe"])
    state = _resume(net, tune.get_checkpoint())
    latest: dict[str, Any] = {}

    def report(row: dict[str, float]) -> None:
        final = row["epoch"] == recipe.epochs
        if final and config.get("weights"):
            save_weights_at(Path(config["weights"]), state_bytes(net))
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "weights.safetensors").write_bytes(state_bytes(net))
            torch.save({k: latest[k] for k in ("epoch", "optimizer", "scheduler")},
                       Path(tmp, "train_state.pt"))
            Path(tmp, "history.json").write_text(json.dumps(latest["history"]))
            tune.report({k: row[k] for k in ROW if k in row},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    train_network(net, data.train, data.val, recipe, on_epoch=report, state=state,
                  on_state=latest.update)


@functools.lru_cache(maxsize=2)
def _materialised(config: str) -> tuple[Any, Any]:
    """The run's space and data, loaded once per worker process (Tune reuses a worker's actor
    for the next trial, so the data is not read again)."""
    return materialise(RunConfig.from_dict(json.loads(config)))


def _train_on_worker(config: dict[str, Any], run_config: dict[str, Any] | None = None,
                     hypernet: bytes | None = None) -> None:
    """:func:`train_trial` in a Tune worker's own process, with one torch thread (a
    process-wide setting, so it is made here and never in the caller's process)."""
    torch.set_num_threads(1)
    train_trial(config, run_config, hypernet)


def _resume(net: torch.nn.Module, checkpoint: Any) -> dict[str, Any] | None:
    """Load a restarted trial's weights into ``net``; its optimiser, schedule and curve."""
    if checkpoint is None:
        return None
    from safetensors.torch import load_file

    with checkpoint.as_directory() as folder:
        net.load_state_dict(load_file(Path(folder, "weights.safetensors")))
        state = torch.load(Path(folder, "train_state.pt"), weights_only=True)
        state["history"] = json.loads(Path(folder, "history.json").read_text())
    return state


def save_weights_at(path: Path, blob: bytes) -> None:
    """Write weights atomically where the driver expects a trial's weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def _read_checkpoint(checkpoint: Any) -> tuple[bytes, list[dict[str, float]]]:
    with checkpoint.as_directory() as folder:
        return (Path(folder, "weights.safetensors").read_bytes(),
                json.loads(Path(folder, "history.json").read_text()))


# ---------------------------------------------------------------- on the driver


@dataclass
class _Call:
    """What the driver's searcher and callbacks need in this call (never pickled with Tune's
    experiment state, so a restored experiment follows the call that restores it)."""

    loaded: LoadedRun
    cfg: RefineConfig | None = None
    rows: Sequence[dict[str, Any]] = ()
    in_time: Callable[[optuna.Study], bool] = lambda study: True
    report_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] = lambda s, t: None
    asked: bool = False  # the first trial of a call is asked whatever the deadline
    done: bool = False  # the searcher said no further trial
    errors: list[int] = field(default_factory=list)  # trials that failed on every restart
    fits: dict[int, Any] = field(default_factory=dict)  # fit source number -> recorded row
    on_fitted: Callable[[dict[str, Any]], None] | None = None
    recipe: TrainConfig | None = None
    warm_start: bool = False


_CALLS: dict[str, _Call] = {}


def _key(run: Run) -> str:
    return str(run.path.resolve())


@contextlib.contextmanager
def _registered(run: Run, call: _Call) -> Iterator[_Call]:
    _CALLS[_key(run)] = call
    try:
        yield call
    finally:
        _CALLS.pop(_key(run), None)


class RunSearch(OptunaSearch):
    """Ray's Optuna searcher on the run's study, with the refinement's own rules: the ranking's
    top-K are queued one at a time in rank order (:func:`~hypernas.refine.plan.seed_next`);
    no trial is asked once the call's trials have finished or its time is up; a trial the
    scheduler stopped is told pruned, with its curve, as the in-process pruner records it."""

    def __init__(self, run: Run, seed: int, folder: Path) -> None:
        self.key, self.folder = _key(run), str(folder)
        self.curves: dict[str, dict[int, dict[str, float]]] = {}
        super().__init__(space=self.define, metric=METRIC, mode="max",
                         storage=optuna.storages.RDBStorage(storage_url(run)),
                         study_name=STUDY, sampler=optuna.samplers.TPESampler(seed=seed))

    def define(self, trial: optuna.Trial) -> dict[str, Any]:
        """The define-by-run space: the trial's candidate and recipe (its parameters and user
        attributes recorded on the study's trial), and what its worker needs to train it."""
        call = _CALLS[self.key]
        cand, recipe = plan_trial(trial, call.loaded, call.rows, call.cfg)
        weights = call.loaded.run.refined_weights_path(trial.number).resolve()
        return {"number": trial.number, "encoding": cand.encoding, "recipe": recipe.to_dict(),
                "weights": str(weights)}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self._ot_trials:  # a restored trial asked again: its own parameters
            return super().suggest(trial_id)
        call, study = _CALLS[self.key], self._ot_study
        live = len(set(self._ot_trials) - self._completed_trials)
        if call.asked and not call.in_time(study) or finished(study) >= call.cfg.trials \
                or len(call.errors) > MAX_FAILURES:
            call.done = True
            return Searcher.FINISHED
        if finished(study) + live >= call.cfg.trials:
            return None  # enough are running; asked again if one of them fails
        call.asked = True
        for _ in range(MAX_OVER_BUDGET):
            seed_next(study, call.rows, call.cfg, call.loaded.space)
            try:
                return super().suggest(trial_id)
            except OverBudget:  # an explored candidate not worth a worker: told, asked again
                study.tell(self._ot_trials.pop(trial_id), state=optuna.trial.TrialState.PRUNED)
        call.done = True  # TPE keeps proposing what does not fit: the screening ends here
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        frozen = self._frozen(trial_id)
        if frozen.state.is_finished():  # restored from a snapshot older than the study: ignored
            return
        epoch = int(result["epoch"])
        self.curves.setdefault(trial_id, {})[epoch] = {k: result[k] for k in ROW if k in result}
        if epoch not in frozen.intermediate_values:  # resumed from an earlier epoch: reported
            self._ot_trials[trial_id].report(result[METRIC], epoch)

    def _frozen(self, trial_id: str) -> optuna.trial.FrozenTrial:
        """The study's record of the trial: its end may already be there (told before a kill
        that the restored snapshot of the searcher predates), and epochs it reported."""
        return self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number]

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial, study = self._ot_trials[trial_id], self._ot_study
        curve = self.curves.pop(trial_id, {})
        if self._frozen(trial_id).state.is_finished():
            self._completed_trials.add(trial_id)
            return
        history = [curve[e] for e in sorted(curve)]
        trial.set_user_attr("history", history)
        if not error and history and history[-1]["epoch"] < trial.params["epochs"]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # the scheduler stopped it
            self._completed_trials.add(trial_id)
        else:
            super().on_trial_complete(trial_id, result, error)
        call = _CALLS.get(self.key)
        for checkpoint in Path(self.folder, f"trial-{trial.number}-{trial_id}").glob(
                "checkpoint_*"):
            shutil.rmtree(checkpoint, ignore_errors=True)  # the study holds what it needs
        if error and call is not None:  # failed on every restart: queued once more, afresh
            call.errors.append(trial.number)
            if len(call.errors) <= MAX_FAILURES:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        if call is not None:
            call.report_trial(study, study.trials[trial.number])


class _RecordFits(tune.Callback):
    """Each finished fit recorded in the study as it ends (so a kill keeps the finished ones)."""

    def __init__(self, run: Run) -> None:
        self.key = _key(run)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        call = _CALLS[self.key]
        if trial.checkpoint is None:
            return
        weights, history = _read_checkpoint(trial.checkpoint)
        run = call.loaded.run
        study = open_study(run)
        source = fit_source(run, study, int(trial.config["number"]))
        number = record_fit(run, study, source, call.recipe, call.warm_start, history, weights)
        call.fits[source.number] = trial_row(run, number)
        if call.on_fitted is not None:
            call.on_fitted(call.fits[source.number])


def _scheduler(cfg: RefineConfig) -> Any:
    """Tune's early stopping for ``cfg``: never on the first epoch's accuracy (it swings by tens
    of points at the peak learning rate), and only once 3 trials give a median to compare with."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if not cfg.prune:
        return FIFOScheduler()
    if cfg.scheduler == "asha":
        return ASHAScheduler(time_attr="epoch", max_t=cfg.max_epochs, grace_period=2,
                             reduction_factor=2)
    return MedianStoppingRule(time_attr="epoch", grace_period=2, min_samples_required=3)


def _experiment(run: Run, kind: str, restore: bool) -> tuple[Path, bool]:
    """The folder of this call's experiment of ``kind``, and whether it restores the last one
    (left unfinished by a killed process)."""
    made = sorted((p for p in run.tune_dir.glob(f"{kind}-*")
                   if p.name.removeprefix(f"{kind}-").isdigit()),
                  key=lambda p: int(p.name.removeprefix(f"{kind}-")))
    if restore and made and not (made[-1] / DONE).exists() \
            and tune.Tuner.can_restore(str(made[-1])):
        return made[-1], True
    k = int(made[-1].name.removeprefix(f"{kind}-")) + 1 if made else 1
    return run.tune_dir / f"{kind}-{k}", False


def _dirname(trial: Any) -> str:
    """A trial's folder named by its study trial (a fit: the trial it trains again)."""
    return f"trial-{trial.config.get('number', trial.trial_id)}-{trial.trial_id}"


def _run_config(folder: Path, callbacks: list | None = None) -> tune.RunConfig:
    return tune.RunConfig(name=folder.name, storage_path=str(folder.parent.resolve()),
                          failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                          # every epoch's is kept until the trial ends (Tune deleting older
                          # ones can race a restore from its last snapshot); the refinement's
                          # searcher deletes them once the study holds the trial's end
                          checkpoint_config=tune.CheckpointConfig(),
                          # the experiment's snapshot (what a restore reads) reaches the run
                          # folder within a second of being taken (Tune's default is 5 minutes)
                          sync_config=tune.SyncConfig(sync_period=1),
                          callbacks=callbacks, verbose=0)


def _trainable(loaded: LoadedRun, warm_start: bool) -> Any:
    hypernet = loaded.run.checkpoint_path.read_bytes() if warm_start else None
    return tune.with_resources(
        tune.with_parameters(_train_on_worker,
                             run_config=portable_config(loaded.config.to_dict()),
                             hypernet=hypernet), {"cpu": 1})


def _check(results: Any, what: str) -> None:
    """A clear error when a trial failed on its worker more than ``MAX_FAILURES`` times."""
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise StudyError(f"{len(errors)} {what} failed on their workers {MAX_FAILURES + 1} times "
                         f"({first_line(errors[0], last=True)}); check `ray status` and the "
                         "trial logs under the run's tune/ folder")


def optimize_on_tune(loaded: LoadedRun, study: optuna.Study, rows: Sequence[dict[str, Any]],
                     cfg: RefineConfig, workers: int, address: str | None,
                     report_trial: Callable, in_time: Callable[[optuna.Study], bool]) -> None:
    """The refinement's trials as a Tune experiment in the run folder, ``workers`` at a time,
    until ``cfg.trials`` have finished or ``in_time(study)`` says no further trial may start
    (running ones finish); an experiment a killed process left is restored first. Called
    holding the run's refinement lock."""
    run = loaded.run
    folder, restoring = _experiment(run, "refine", restore=True)
    call = _Call(loaded, cfg, rows, in_time, report_trial)
    with ray_session(address, workers), _registered(run, call):
        trainable = _trainable(loaded, cfg.warm_start)
        if restoring:
            tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True)
            owned = {r.config.get("number") for r in tuner.get_results() if r.config}
            recover_trials(run, study, keep=owned)
        else:
            recover_trials(run, study)
            searcher = RunSearch(run, cfg.seed, folder)
            tuner = tune.Tuner(trainable, run_config=_run_config(folder),
                               tune_config=tune.TuneConfig(
                                   search_alg=searcher, scheduler=_scheduler(cfg), metric=METRIC,
                                   mode="max", num_samples=-1, max_concurrent_trials=workers,
                                   trial_dirname_creator=_dirname, reuse_actors=True))
        results = tuner.fit()
        if not call.done:  # Tune stopped before the searcher did: interrupted
            raise KeyboardInterrupt
        (folder / DONE).touch()
    if len(call.errors) > MAX_FAILURES:  # fewer were queued again and replaced
        _check(results, "refinement trials")


def fit_on_tune(loaded: LoadedRun, trial_numbers: Sequence[int], recipe: TrainConfig,
                warm_start: bool = False, workers: int = 2, address: str | None = None,
                on_fitted: Callable[[dict[str, Any]], None] | None = None
                ) -> list[dict[str, Any]]:
    """:func:`hypernas.refine.fit.fit_candidate` for several finished trials at once, one Tune
    trial each (a grid over the trial numbers): each fit is recorded in the study as soon as it
    ends (``on_fitted(row)`` is told), so a kill keeps the finished ones; a fit whose worker is
    lost restarts from its last epoch. Returns the fits' rows in the order of
    ``trial_numbers``."""
    run = loaded.run
    numbers = list(dict.fromkeys(trial_numbers))  # each once, in order
    with run_lock(run):
        study = open_study(run)
        sources = {n: fit_source(run, study, n) for n in numbers}
        folder, _ = _experiment(run, "fit", restore=False)
        call = _Call(loaded, on_fitted=on_fitted, recipe=recipe, warm_start=warm_start)
        encodings = {n: source.user_attrs["encoding"] for n, source in sources.items()}
        space = {"number": tune.grid_search(numbers),
                 "encoding": tune.sample_from(lambda config: encodings[config["number"]]),
                 "recipe": recipe.to_dict()}
        with ray_session(address, workers), _registered(run, call):
            tuner = tune.Tuner(_trainable(loaded, warm_start), param_space=space,
                               tune_config=tune.TuneConfig(max_concurrent_trials=workers,
                                                           trial_dirname_creator=_dirname,
                                                           reuse_actors=True),
                               run_config=_run_config(folder, [_RecordFits(run)]))
            results = tuner.fit()
            (folder / DONE).touch()
    _check(results, "fits")
    return [call.fits[n] for n in numbers]
