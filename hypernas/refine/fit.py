"""A trial's starting weights, and a chosen candidate trained again with a longer recipe.

:func:`initial_network` builds a trial's network from the hypernetwork's predicted weights (or
random ones). :func:`fit_candidate` trains the candidate of a finished trial again (all epochs,
no pruning) and records it in the same study as a finished trial marked ``fit_of``; ``hypernas
search`` ends with it. Several at once on Ray workers: :func:`hypernas.refine.on_tune.fit_on_tune`.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from ..errors import HypernasError
from ..graphs.network import Network
from ..hypernet.model import GraphHyperNetwork
from ..hypernet.trainer import load_checkpoint
from ..ranking.run import LoadedRun
from ..runs.store import Run
from ..spaces.space import Candidate
from .plan import LR_RANGE, WD_RANGE
from .study import StudyError, open_study, run_lock, save_weights, state_bytes, trial_row
from .train import TrainConfig, train_network

__all__ = ["initial_network", "warm_start_hypernet", "fit_candidate", "fit_source", "record_fit"]


def warm_start_hypernet(loaded: LoadedRun, warm_start: bool) -> GraphHyperNetwork | None:
    """The run's trained hypernetwork in eval mode when trials start from predicted weights
    (``warm_start``), else None (random initialisation)."""
    if not warm_start:
        return None
    hnet, _, _ = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    return hnet.eval()


def initial_network(cand: Candidate, hnet: Any) -> Network:
    """``cand``'s network with the weights ``hnet`` predicts (its first head), or with random
    weights when ``hnet`` is None; a clear error if the hypernetwork misses a parameter."""
    net = Network(cand.graph)
    if hnet is not None:
        with torch.no_grad():
            weights = hnet([cand.graph], heads=[0])[0]
        missing = set(dict(net.named_parameters())) - set(weights)
        if missing:
            raise HypernasError(f"the hypernetwork gave no weights for {sorted(missing)[:3]}")
        net.load_state_dict(weights, strict=False)
    return net


def fit_candidate(loaded: LoadedRun, trial_number: int, recipe: TrainConfig,
                  warm_start: bool = True) -> dict[str, Any]:
    """Train the candidate of finished trial ``trial_number`` again with ``recipe`` (all epochs,
    no pruning) and record it as a finished trial of the run's study, weights included, marked
    by the user attribute ``fit_of``; returns that trial's row (as :func:`best_refined` gives
    one). Nothing is recorded until training ends, so a killed fit is re-run whole. Several at
    once on Ray workers: :func:`hypernas.refine.on_tune.fit_on_tune`."""
    run = loaded.run
    with run_lock(run):
        study = open_study(run)
        source = fit_source(run, study, trial_number)
        cand = loaded.space.replay(source.user_attrs["encoding"])
        net = initial_network(cand, warm_start_hypernet(loaded, warm_start))
        result = train_network(net, loaded.data.train, loaded.data.val, recipe)
        number = record_fit(run, study, source, recipe, warm_start, result.history,
                             state_bytes(net))
    return trial_row(run, number)


def fit_source(run: Run, study: optuna.Study, trial_number: int) -> optuna.trial.FrozenTrial:
    """The finished trial whose candidate a fit trains again (a clear error otherwise)."""
    if not 0 <= trial_number < len(study.trials):
        raise StudyError(f"run {run.name!r} has no trial {trial_number}; it has "
                         f"{len(study.trials)}")
    source = study.trials[trial_number]
    if source.state != optuna.trial.TrialState.COMPLETE:
        raise StudyError(f"trial {trial_number} of run {run.name!r} did not finish "
                         f"({source.state.name.lower()}); fit a finished trial")
    return source


def record_fit(run: Run, study: optuna.Study, source: optuna.trial.FrozenTrial,
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
    attrs = {**{k: source.user_attrs[k] for k in ("id", "encoding", "base", "params", "macs",
                                                  "ranking", "base_score",
                                                  "base_hypernet_score")
                if k in source.user_attrs},
             "warm_start": warm_start, "recipe": recipe.to_dict(), "history": history,
             "fit_of": source.number}
    number = len(study.trials)
    save_weights(run, number, weights)
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                              value=history[-1]["val_acc"], user_attrs=attrs))
    return number
