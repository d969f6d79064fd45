"""Refinement: the top of a ranking trained for real, as an Optuna study stored in the run.

Takes a loaded run (its ranking, its hypernetwork) and a :class:`RefineConfig`; gives finished
trials in ``runs/NAME/study.db`` with their weights, read back as rows (validation accuracy,
candidate, recipe, weights path).

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

    train.py     real training of one network: TrainConfig, train_network, evaluate
    study.py     the study file: open, lock, recover after a kill; finished trials as rows
    plan.py      RefineConfig; a trial's candidate and recipe from its parameters
    fit.py       a trial's starting weights; a chosen candidate trained again (fit_candidate)
    optimize.py  refine_run: the study optimised in this process
    on_tune.py   the same trials, and several fits, as Ray Tune experiments (imported on demand)
"""

from .fit import fit_candidate, initial_network
from .optimize import refine_run
from .plan import RefineConfig, trial_candidate
from .study import (
                    StudyError,
                    best_refined,
                    completed,
                    finished,
                    open_study,
                    refined_rows,
                    trial_row,
)
from .train import TrainConfig, TrainResult, evaluate, prepare_dataset, train_network

__all__ = ["RefineConfig", "StudyError", "TrainConfig", "TrainResult", "best_refined",
           "completed", "evaluate", "finished", "fit_candidate", "initial_network", "open_study",
           "prepare_dataset", "refine_run", "refined_rows", "train_network", "trial_candidate",
           "trial_row"]
