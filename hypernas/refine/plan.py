"""What a refinement trial trains: its candidate and recipe, drawn from the trial's parameters.

A trial's parameters are ``rank`` (which of the ranking's top-K is the base; the study is seeded
with them in rank order by :func:`seed_next`), ``mutation`` (0 for the base, j > 0 for its j-th
neighbour), and the recipe's ``lr``, ``weight_decay`` and ``epochs``. :class:`RefineConfig` says
how far down the ranking and how many trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import optuna

from ..errors import HypernasError
from ..graphs.network import count_macs, count_params
from ..ranking.run import LoadedRun
from ..spaces.budget import Budget
from ..spaces.space import Candidate
from .train import TrainConfig

__all__ = ["RefineConfig", "LR_RANGE", "WD_RANGE", "trial_candidate", "seed_next", "plan_trial"]

LR_RANGE = (1e-3, 0.3)  # what Optuna may pick for a trial's learning rate
WD_RANGE = (1e-5, 1e-2)  # and for its weight decay


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
    scheduler: str = "median"  # with Ray workers, Tune's early stopping: "median" or "asha"
    seed: int = 0  # sampler, weight init, batch order
    max_params: int | None = None  # only candidates within these (ranked bases and mutants)
    max_macs: int | None = None
    max_latency_ms: float | None = None  # batch 1 on this machine, in latency_runtime
    latency_runtime: str = "torch"

    @property
    def budget(self) -> Budget:
        return Budget(self.max_params, self.max_macs, self.max_latency_ms, self.latency_runtime)

    def __post_init__(self) -> None:
        for key in ("top", "trials", "max_epochs"):
            if getattr(self, key) < 1:
                raise HypernasError(f"--{key.replace('_', '-')} must be at least 1, got "
                                    f"{getattr(self, key)}")
        if self.mutations < 0:
            raise HypernasError(f"--mutations must be 0 or more, got {self.mutations}")
        if self.scheduler not in ("median", "asha"):
            raise HypernasError(f"--scheduler must be median or asha, got {self.scheduler!r}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise HypernasError(f"--budget must be positive minutes, got {self.budget_minutes}")
        self.budget  # refuses a limit that is not a positive number

    def seed_params(self, rank: int) -> dict[str, Any]:
        """The parameters of the trial that seeds the ``rank``-th candidate: all epochs, and from
        predicted weights a small step (0.02) that keeps what the hypernetwork gave (at the
        from-scratch rate one epoch lost accuracy); from random weights, NB201's 0.1."""
        return {"rank": rank, "mutation": 0, "lr": 0.02 if self.warm_start else 0.1,
                "weight_decay": 5e-4, "epochs": self.max_epochs}


MUTANT_TRIES = 20  # neighbours tried for one within the budget before the base is kept


def trial_candidate(loaded: LoadedRun, base_encoding: str, mutation: int,
                    budget: Budget = Budget()) -> Candidate:
    """The candidate a trial trains: the base, or its ``mutation``-th neighbour (the first of
    its seeded neighbours within ``budget``; the base when none of ``MUTANT_TRIES`` fits)."""
    base = loaded.space.replay(base_encoding)
    if mutation == 0:
        return base
    meter = budget.run_meter(loaded.run.latency_path)
    for k in range(MUTANT_TRIES):
        cand = loaded.space.mutate(base, seed=mutation + 1_000_003 * k)
        if budget.fits(cand.graph, meter):
            return cand
    return base


def seed_next(study: optuna.Study, rows: Sequence[dict[str, Any]], cfg: RefineConfig) -> None:
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


def hypernet_score(row: dict[str, Any]) -> float | None:
    """The hypernet's score of a ranking row, whichever ranking it is from (a combined row
    keeps its parts, an upper-confidence row its hypernet score)."""
    if row.get("scorer", "hypernet") == "hypernet" and "hypernet_score" not in row:
        return row["score"]
    return row.get("hypernet_score", (row.get("parts") or {}).get("hypernet"))


def plan_trial(trial: optuna.Trial, loaded: LoadedRun, rows: Sequence[dict[str, Any]],
          cfg: RefineConfig) -> tuple[Candidate, TrainConfig]:
    """The trial's candidate and recipe, drawn from its parameters (recorded on the trial)."""
    base = rows[trial.suggest_int("rank", 1, min(cfg.top, len(rows))) - 1]
    mutation = trial.suggest_int("mutation", 0, cfg.mutations)
    cand = trial_candidate(loaded, base["encoding"], mutation, cfg.budget)
    recipe = TrainConfig(epochs=trial.suggest_int("epochs", 1, cfg.max_epochs),
                         lr=trial.suggest_float("lr", *LR_RANGE, log=True),
                         weight_decay=trial.suggest_float("weight_decay", *WD_RANGE, log=True),
                         train_size=cfg.train_size, resolution=loaded.config.resolution,
                         seed=cfg.seed)
    for key, value in {"id": cand.id, "encoding": cand.encoding, "base": base["id"],
                       "params": count_params(cand.graph), "macs": count_macs(cand.graph),
                       "ranking": cfg.ranking or "hypernet", "base_score": base["score"],
                       "base_hypernet_score": hypernet_score(base),
                       "warm_start": cfg.warm_start, "recipe": recipe.to_dict()}.items():
        trial.set_user_attr(key, value)
    return cand, recipe
