"""Refining the top of a ranking with real training: an Optuna study stored in the run.

Each trial trains one candidate for a few epochs on the run's dataset and is scored by its
validation accuracy (the test split stays untouched). Its parameters:

- ``rank``: which of the ranking's top-K candidates is the base (1 = the best ranked); the study
  is seeded with them in rank order, one queued trial at a time, so a budget that ends early
  leaves the lower ranks for a later call;
- ``mutation``: 0 for the base itself, j > 0 for its j-th neighbour, ``space.mutate(base, j)``,
  drawn through the same space definition that made the base;
- ``lr``, ``weight_decay``, ``epochs``: the training recipe (SGD, cosine schedule).

The rank (an integer) rather than the id is the parameter, so calls with a different ``--top``
share one study. :func:`fit_candidate` trains one chosen candidate with a longer recipe and
records it in the same study (``hypernas search`` ends with it).

A trial starts from the hypernetwork's predicted weights (``warm_start``; random initialisation
otherwise), reports its validation accuracy after every epoch, and the median pruner stops
trials that fall behind. The study lives in ``runs/NAME/study.db`` (SQLite) and each finished
trial's weights in ``runs/NAME/refined/``. A killed refinement keeps its finished trials; run
again, the interrupted trial is marked failed and re-queued with the same parameters, and the
study continues to the requested number of finished trials.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import optuna
import torch

from .errors import HypernasError
from .hypernet.trainer import load_checkpoint
from .network import Network, count_params
from .report import ranked_rows
from .runs import Run, RunError
from .space import Candidate
from .train import TrainConfig, train_network
from .workflow import LoadedRun

__all__ = ["RefineConfig", "refine_run", "fit_candidate", "completed", "refined_rows",
           "best_refined", "trial_row", "trial_candidate", "open_study",
           "StudyError"]

STUDY = "refine"
LR_RANGE = (1e-3, 0.3)  # what Optuna may pick for a trial's learning rate
WD_RANGE = (1e-5, 1e-2)  # and for its weight decay


class StudyError(HypernasError, ValueError):
    """The study cannot be used: another run's file, a refinement already running, no trials."""


@dataclass(frozen=True)
class RefineConfig:
    """How the top of a ranking is refined."""

    top: int = 8  # ranked candidates the study starts from, in rank order
    trials: int = 16  # finished (complete or pruned) trials to reach
    max_epochs: int = 4  # most epochs a trial may train (Optuna picks 1..max_epochs)
    mutations: int = 4  # neighbours of each base Optuna may pick instead (0: the bases only)
    train_size: int | None = 10_000  # class-balanced training images per trial
    warm_start: bool = True  # start from hypernetwork-predicted weights (False: random init)
    ranking: str | None = None  # which ranking (default: hypernet, else the run's first)
    budget_minutes: float | None = None  # no new trial starts after this long (None: no limit)
    prune: bool = True  # stop trials whose accuracy falls below the median after epoch 2+
    seed: int = 0  # sampler, weight init, batch order

    def __post_init__(self) -> None:
        for key in ("top", "trials", "max_epochs"):
            if getattr(self, key) < 1:
                raise HypernasError(f"--{key.replace('_', '-')} must be at least 1, got "
                                    f"{getattr(self, key)}")
        if self.mutations < 0:
            raise HypernasError(f"--mutations must be 0 or more, got {self.mutations}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise HypernasError(f"--budget must be positive minutes, got {self.budget_minutes}")

    def seed_params(self, rank: int) -> dict[str, Any]:
        """The parameters of the trial that seeds the ``rank``-th candidate: all epochs, and from
        predicted weights a small step (0.02) that keeps what the hypernetwork gave (at the
        from-scratch rate one epoch lost accuracy); from random weights, NB201's 0.1."""
        return {"rank": rank, "mutation": 0, "lr": 0.02 if self.warm_start else 0.1,
                "weight_decay": 5e-4, "epochs": self.max_epochs}


def _storage_url(run: Run) -> str:
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
                study_name=STUDY, storage=_storage_url(run), direction="maximize",
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _create_study(run, seed)
    owner = study.user_attrs.get("run")
    if owner is None:
        study.set_user_attr("run", run.name)
    elif owner != run.name:
        raise StudyError(f"{run.study_path} belongs to run {owner!r}, not {run.name!r}; it was "
                         "copied here by mistake: move it back or delete it to start afresh")
    return study


@contextmanager
def _lock(run: Run) -> Iterator[None]:
    """One refinement per run at a time (a PID file; a dead owner's lock is taken over)."""
    path = run.refine_lock_path
    if path.exists():
        try:
            pid = int(path.read_text().strip() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pid = 0
        except PermissionError:
            pass
        if pid and pid != os.getpid():
            raise StudyError(f"run {run.name!r} is being refined by process {pid}; wait for it, "
                             f"or stop it (or delete {path} if that process is gone)")
    path.write_text(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _recover(run: Run, study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed refinement failed and queue their parameters again
    (only called while holding the run's refinement lock, so no live process owns them)."""
    storage = optuna.storages.get_storage(_storage_url(run))
    study_id = storage.get_study_id_from_name(STUDY)
    stuck = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stuck:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(stuck)


def _finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def trial_candidate(loaded: LoadedRun, base_encoding: str, mutation: int) -> Candidate:
    """The candidate a trial trains: the base, or its ``mutation``-th neighbour."""
    base = loaded.space.replay(base_encoding)
    return base if mutation == 0 else loaded.space.mutate(base, seed=mutation)


def refine_run(loaded: LoadedRun, cfg: RefineConfig,
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               workers: int | None = None, address: str | None = None,
               keep_going: Callable[[optuna.Study], bool] | None = None) -> optuna.Study:
    """Run (or continue) the run's refinement study until ``cfg.trials`` trials have finished or
    ``cfg.budget_minutes`` have passed (no trial starts after that, running ones finish, and at
    least one trial runs per call); with ``workers`` > 1, that many trials train at once on Ray
    (see :func:`hypernas.refine_ray.optimize_on_ray`). ``keep_going(study)``, when given, is
    asked before each further trial starts, and ``False`` stops the study like the deadline."""
    deadline = (time.monotonic() + 60 * cfg.budget_minutes if cfg.budget_minutes is not None
                else math.inf)

    def in_time(study: optuna.Study) -> bool:
        return time.monotonic() < deadline and (keep_going is None or keep_going(study))

    run = loaded.run
    rows = ranked_rows(run, cfg.ranking)  # all of them: a retried trial may name a lower rank
    hnet = None
    if cfg.warm_start:
        hnet, _, _ = load_checkpoint(run.checkpoint_path, loaded.config.hypernet)
        hnet.eval()
    with _lock(run):
        study = open_study(run, cfg.seed)
        _recover(run, study)

        def report_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if on_trial is not None:
                on_trial({"number": trial.number, "state": trial.state.name,
                          "value": trial.value, "finished": _finished(study), "of": cfg.trials,
                          **trial.params, **trial.user_attrs})

        if workers is not None and workers > 1:
            from .refine_ray import optimize_on_ray

            optimize_on_ray(loaded, study, rows, cfg, workers, address, report_trial, in_time)
            return study

        def objective(trial: optuna.Trial) -> float:
            cand, recipe = _plan(trial, loaded, rows, cfg)
            net = _initial_network(cand, hnet)

            def report(row: dict[str, float]) -> None:
                trial.report(row["val_acc"], row["epoch"])
                if cfg.prune and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

            result = train_network(net, loaded.data.train, loaded.data.val, recipe, on_epoch=report)
            _save_weights(run, trial.number, _state_bytes(net))
            trial.set_user_attr("history", result.history)
            return result.val_acc

        first = True  # every call runs at least one trial, so a re-run always makes progress
        while _finished(study) < cfg.trials and (first or in_time(study)):
            _seed_next(study, rows, cfg)
            study.optimize(objective, n_trials=1, callbacks=[report_trial], gc_after_trial=False)
            first = False
    return study


def _seed_next(study: optuna.Study, rows: Sequence[dict[str, Any]], cfg: RefineConfig) -> None:
    """Queue the trial of the best-ranked top-K candidate not seeded yet, unless a queued trial
    is already waiting: seeds run in rank order, each once, and only as trials are started."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
        return
    seeded = {t.user_attrs.get("seed_of") for t in trials}
    for rank, row in enumerate(rows[:cfg.top], start=1):
        if row["id"] not in seeded:
            study.enqueue_trial(cfg.seed_params(rank), user_attrs={"seed_of": row["id"]})
            return


def _plan(trial: optuna.Trial, loaded: LoadedRun, rows: Sequence[dict[str, Any]],
          cfg: RefineConfig) -> tuple[Candidate, TrainConfig]:
    """The trial's candidate and recipe, drawn from its parameters (recorded on the trial)."""
    base = rows[trial.suggest_int("rank", 1, min(cfg.top, len(rows))) - 1]
    mutation = trial.suggest_int("mutation", 0, cfg.mutations)
    cand = trial_candidate(loaded, base["encoding"], mutation)
    recipe = TrainConfig(epochs=trial.suggest_int("epochs", 1, cfg.max_epochs),
                         lr=trial.suggest_float("lr", *LR_RANGE, log=True),
                         weight_decay=trial.suggest_float("weight_decay", *WD_RANGE, log=True),
                         train_size=cfg.train_size, resolution=loaded.config.resolution,
                         seed=cfg.seed)
    for key, value in {"id": cand.id, "encoding": cand.encoding, "base": base["id"],
                       "params": count_params(cand.graph), "warm_start": cfg.warm_start,
                       "recipe": recipe.to_dict()}.items():
        trial.set_user_attr(key, value)
    return cand, recipe


def fit_candidate(loaded: LoadedRun, trial_number: int, recipe: TrainConfig,
                  warm_start: bool = True) -> dict[str, Any]:
    """Train the candidate of finished trial ``trial_number`` again with ``recipe`` (all epochs,
    no pruning) and record it as a finished trial of the run's study, weights included, marked
    by the user attribute ``fit_of``; returns that trial's row (as :func:`best_refined` gives
    one). Nothing is recorded until training ends, so a killed fit is re-run whole. Several at
    once on Ray workers: :func:`hypernas.refine_ray.fit_on_ray`."""
    run = loaded.run
    with _lock(run):
        study = open_study(run)
        source = _fit_source(run, study, trial_number)
        cand = loaded.space.replay(source.user_attrs["encoding"])
        hnet = None
        if warm_start:
            hnet, _, _ = load_checkpoint(run.checkpoint_path, loaded.config.hypernet)
            hnet.eval()
        net = _initial_network(cand, hnet)
        result = train_network(net, loaded.data.train, loaded.data.val, recipe)
        number = _record_fit(run, study, source, recipe, warm_start, result.history,
                             _state_bytes(net))
    return trial_row(run, number)


def _fit_source(run: Run, study: optuna.Study, trial_number: int) -> optuna.trial.FrozenTrial:
    """The finished trial whose candidate a fit trains again (a clear error otherwise)."""
    if not 0 <= trial_number < len(study.trials):
        raise StudyError(f"run {run.name!r} has no trial {trial_number}; it has "
                         f"{len(study.trials)}")
    source = study.trials[trial_number]
    if source.state != optuna.trial.TrialState.COMPLETE:
        raise StudyError(f"trial {trial_number} of run {run.name!r} did not finish "
                         f"({source.state.name.lower()}); fit a finished trial")
    return source


def _record_fit(run: Run, study: optuna.Study, source: optuna.trial.FrozenTrial,
                recipe: TrainConfig, warm_start: bool, history: list[dict[str, float]],
                weights: bytes) -> int:
    """Add a finished fit of ``source``'s candidate to the study (its weights saved first, so
    no trial names missing weights); returns the new trial's number."""
    lr, wd = recipe.lr, recipe.weight_decay
    params = {**source.params, "lr": lr, "weight_decay": wd, "epochs": recipe.epochs}
    dists = {**source.distributions,
             "epochs": optuna.distributions.IntDistribution(1, recipe.epochs),
             "lr": optuna.distributions.FloatDistribution(
                 min(LR_RANGE[0], lr), max(LR_RANGE[1], lr), log=True),
             "weight_decay": optuna.distributions.FloatDistribution(
                 min(WD_RANGE[0], wd), max(WD_RANGE[1], wd), log=True)}
    attrs = {**{k: source.user_attrs[k] for k in ("id", "encoding", "base", "params")
                if k in source.user_attrs},
             "warm_start": warm_start, "recipe": recipe.to_dict(), "history": history,
             "fit_of": source.number}
    number = len(study.trials)
    _save_weights(run, number, weights)
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                              value=history[-1]["val_acc"], user_attrs=attrs))
    return number


def _initial_network(cand: Candidate, hnet: Any) -> Network:
    net = Network(cand.graph)
    if hnet is not None:
        with torch.no_grad():
            weights = hnet([cand.graph], heads=[0])[0]
        missing = set(dict(net.named_parameters())) - set(weights)
        if missing:
            raise HypernasError(f"the hypernetwork gave no weights for {sorted(missing)[:3]}")
        net.load_state_dict(weights, strict=False)
    return net


def _state_bytes(net: Network) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})


def _save_weights(run: Run, number: int, blob: bytes) -> None:
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


def refined_rows(run: Run, fits: bool = True) -> dict[str, dict[str, Any]]:
    """Best finished trial per candidate id: ``{id: {val_acc, trial, epochs, ...}}`` (empty when
    the run has no study); ``fits=False`` leaves out the trainings :func:`fit_candidate` added."""
    if not run.study_path.exists():
        return {}
    best: dict[str, dict[str, Any]] = {}
    for trial in completed(open_study(run, create=False), fits):
        cid = trial.user_attrs.get("id")
        if cid is not None and (cid not in best or trial.value > best[cid]["val_acc"]):
            best[cid] = {"val_acc": trial.value, "trial": trial.number,
                         "encoding": trial.user_attrs.get("encoding"), **trial.params}
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
