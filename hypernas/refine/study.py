"""The run's Optuna study: opened, locked, recovered after a kill, and read back as rows.

The study lives in ``runs/NAME/study.db`` (SQLite) and each finished trial's weights in
``runs/NAME/refined/trial_<n>.safetensors``. One process at a time changes it
(:func:`run_lock`); a trial left running by a killed process is marked failed and queued again
with the same parameters (:func:`recover_trials`). Everything else here reads: the finished
trials, the best trial per candidate, one trial as a row with the path of its weights.

Optuna's own log lines (a study created, a trial finished) are left to the application: the CLI
sets Optuna's verbosity to warnings.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from typing import Any, Collection

import optuna

from ..cluster import first_line
from ..errors import HypernasError
from ..graphs.network import Network
from ..runs.store import Run, RunError
from ..runs.store import run_lock as store_lock

__all__ = ["STUDY", "StudyError", "storage_url", "open_study", "run_lock", "recover_trials",
           "finished", "completed", "refined_rows", "trial_row", "best_refined", "state_bytes",
           "save_weights"]

STUDY = "refine"


class StudyError(HypernasError, ValueError):
    """The study cannot be used: another run's file, a refinement already running, no trials."""


def storage_url(run: Run) -> str:
    """The SQLAlchemy URL of the run's study file (what ``optuna`` and its dashboard open)."""
    return f"sqlite:///{run.study_path.resolve()}"


def _create_study(run: Run, seed: int, attempts: int = 6) -> optuna.Study:
    """``optuna.create_study`` on the run's file, retried while another process creates it.

    Two processes opening a new SQLite study at once (``hypernas show`` beside a starting
    refinement, Ray workers) race on Optuna's schema set-up: the loser gets a unique-constraint
    or "database is locked" error although the file is fine a moment later.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError  # Optuna's own dependency

    for attempt in range(attempts):
        try:
            return optuna.create_study(
                study_name=STUDY, storage=storage_url(run), direction="maximize",
                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed),
                # steps are epochs counted from 1: no pruning on the first epoch's accuracy,
                # which at the peak learning rate swings by tens of points (Optuna prunes at
                # step >= warmup)
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2 ** attempt)
    raise AssertionError("unreachable")


def open_study(run: Run, seed: int = 0, create: bool = True) -> optuna.Study:
    """The run's study (created on first use); refuses a study file made for another run."""
    if not create and not run.study_path.exists():
        raise StudyError(f"run {run.name!r} has not been refined yet; hypernas refine {run.name}")
    try:
        study = _create_study(run, seed)
    except Exception as err:  # sqlalchemy's errors: a torn, foreign or corrupted database file
        if type(err).__module__.split(".")[0] != "sqlalchemy":
            raise
        raise StudyError(f"{run.study_path} is not a readable study ({first_line(err)}); move it "
                         "away to refine afresh, or restore it from a copy") from None
    owner = study.user_attrs.get("run")
    if owner is None:
        study.set_user_attr("run", run.name)
    elif owner != run.name:
        raise StudyError(f"{run.study_path} belongs to run {owner!r}, not {run.name!r}; it was "
                         "copied here by mistake: move it back or delete it to start afresh")
    return study


def run_lock(run: Run) -> AbstractContextManager[None]:
    """One refinement per run at a time (an OS lock: :func:`hypernas.runs.store.run_lock`)."""
    return store_lock(run, "refine", "refined")


def recover_trials(run: Run, study: optuna.Study, keep: Collection[int] = ()) -> int:
    """Mark trials left RUNNING by a killed refinement failed and queue their parameters again,
    and queue again the trials an interrupt (Ctrl-C, SIGTERM) failed; each is retried once.
    Only called while holding the run's refinement lock, so no live process owns them; the
    trials numbered in ``keep`` are left running (a restored Tune experiment goes on with
    them)."""
    storage = optuna.storages.get_storage(storage_url(run))
    study_id = storage.get_study_id_from_name(STUDY)
    stuck = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
             if t.number not in keep]
    for trial in stuck:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    cut = [t for t in trials if t.state == optuna.trial.TrialState.FAIL
           and (t.number in {s.number for s in stuck} or t.user_attrs.get("interrupted"))
           and t.number not in retried]
    for trial in cut:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(cut)


def finished(study: optuna.Study) -> int:
    """How many of the study's trials have finished (complete or pruned)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def state_bytes(net: Network) -> bytes:
    """``net``'s state dict as safetensors bytes (what a trial's weights file holds)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})


def save_weights(run: Run, number: int, blob: bytes) -> None:
    """Write trial ``number``'s weights (safetensors bytes) atomically into the run."""
    path = run.refined_weights_path(number)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def completed(study: optuna.Study, fits: bool = True) -> list[optuna.trial.FrozenTrial]:
    """The study's complete trials; ``fits=False`` leaves out those :func:`fit_candidate`
    added (they carry the user attribute ``fit_of``)."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return done if fits else [t for t in done if "fit_of" not in t.user_attrs]


def refined_rows(run: Run, fits: bool = True, only_fits: bool = False
                 ) -> dict[str, dict[str, Any]]:
    """Best finished trial per candidate id: ``{id: {val_acc, trial, encoding, params, macs,
    epochs, ...}}`` (its parameters and multiply-adds where the trial recorded them; empty when
    the run has no study); ``fits=False`` leaves out the trainings :func:`fit_candidate` added,
    ``only_fits=True`` keeps only those."""
    if not run.study_path.exists():
        return {}
    best: dict[str, dict[str, Any]] = {}
    trials = completed(open_study(run, create=False), fits)
    for trial in (t for t in trials if not only_fits or "fit_of" in t.user_attrs):
        cid = trial.user_attrs.get("id")
        if cid is not None and (cid not in best or trial.value > best[cid]["val_acc"]):
            best[cid] = {"val_acc": trial.value, "trial": trial.number,
                         "encoding": trial.user_attrs.get("encoding"),
                         **{k: trial.user_attrs[k] for k in ("params", "macs")
                            if k in trial.user_attrs}, **trial.params}
    return best


def trial_row(run: Run, number: int) -> dict[str, Any]:
    """A finished trial as a refined row, with the path of its weights (and, for a fit, the
    number of the trial it trained again, ``fit_of``)."""
    trials = open_study(run, create=False).trials
    if not 0 <= number < len(trials) or trials[number].state != optuna.trial.TrialState.COMPLETE:
        raise StudyError(f"run {run.name!r} has no finished trial {number}; see hypernas show "
                         f"{run.name} for the refined candidates")
    t = trials[number]
    return {"val_acc": t.value, "trial": number, "encoding": t.user_attrs.get("encoding"),
            **t.params, "id": t.user_attrs.get("id"), "weights": run.refined_weights_path(number),
            **({"fit_of": t.user_attrs["fit_of"]} if "fit_of" in t.user_attrs else {})}


def best_refined(run: Run) -> dict[str, Any]:
    """The best finished trial of the run's study, with the path of its weights."""
    rows = refined_rows(run)
    if not rows:
        raise StudyError(f"run {run.name!r} has no finished refinement trial; run hypernas "
                         f"refine {run.name}")
    cid, row = max(rows.items(), key=lambda kv: kv[1]["val_acc"])
    weights = run.refined_weights_path(row["trial"])
    if not weights.exists():
        raise RunError(f"weights of trial {row['trial']} are missing ({weights}); re-run "
                       f"hypernas refine {run.name}")
    return {**row, "id": cid, "weights": weights}
