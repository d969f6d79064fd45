"""What a refinement trial trains: its candidate and recipe, drawn from the trial's parameters.

A trial's parameters are ``rank`` (which of the ranking's top-K is the base; the study is seeded
with them in rank order by :func:`seed_next`), ``mutation`` (0 for the base, j > 0 for its j-th
neighbour), and the recipe's ``lr``, ``weight_decay`` and ``epochs``. :class:`RefineConfig` says
how far down the ranking and how many trials.

With ``explore``, a trial's parameters are instead the space's own choices (``arch.<name>``):
the top-K are queued with theirs, and every later trial is a candidate of the whole space that
Optuna's TPE picks from the accuracies measured so far, all at the seeds' recipe. A candidate
over the budget is not trained: its trial is pruned with its excess recorded as a constraint,
so TPE learns where the budget ends (:class:`OverBudget`).
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

__all__ = ["RefineConfig", "LR_RANGE", "WD_RANGE", "ARCH", "OverBudget", "trial_candidate",
           "seed_next", "plan_trial"]

LR_RANGE = (1e-3, 0.3)  # what Optuna may pick for a trial's learning rate
WD_RANGE = (1e-5, 1e-2)  # and for its weight decay
ARCH = "arch."  # the prefix of the space's choices among an exploring trial's parameters


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
    explore: bool = False  # after the top-K, TPE picks candidates of the whole space (within
    # the budget) from the accuracies measured, at the seeds' recipe, instead of ranks,
    # mutations and recipes of the top

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
        return {"rank": rank, "mutation": 0, **self.seed_recipe}

    @property
    def seed_recipe(self) -> dict[str, Any]:
        """The seeds' ``lr``, ``weight_decay`` and ``epochs`` (every explored trial's too)."""
        return {"lr": 0.02 if self.warm_start else 0.1, "weight_decay": 5e-4,
                "epochs": self.max_epochs}


class OverBudget(optuna.TrialPruned):
    """An explored candidate over the budget: its trial is pruned untrained (in process by
    Optuna, on Ray by the searcher, which asks for another)."""


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


def seed_next(study: optuna.Study, rows: Sequence[dict[str, Any]], cfg: RefineConfig,
              space: Any = None) -> None:
    """Queue the trial of the best-ranked top-K candidate not seeded yet, unless a queued trial
    is already waiting: seeds run in rank order, each once, and only as trials are started.
    With ``cfg.explore`` a seed is queued with its choices in ``space`` (it must be given)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
        return
    seeded = {t.user_attrs.get("seed_of") for t in trials}
    for rank, row in enumerate(rows[:cfg.top], start=1):
        if row["id"] not in seeded:
            params = ({ARCH + k: v for k, v in space.replay(row["encoding"]).params.items()}
                      if cfg.explore else cfg.seed_params(rank))
            study.enqueue_trial(params, user_attrs={"seed_of": row["id"], "rank": rank})
            return


def hypernet_score(row: dict[str, Any]) -> float | None:
    """The hypernet's score of a ranking row, whichever ranking it is from (a combined row
    keeps its parts, an upper-confidence row its hypernet score)."""
    if row.get("scorer", "hypernet") == "hypernet" and "hypernet_score" not in row:
        return row["score"]
    return row.get("hypernet_score", (row.get("parts") or {}).get("hypernet"))


class _SpaceChoices:
    """An Optuna trial making a space's choices under ``ARCH``-prefixed names (beside the
    study's other parameters), with the unprefixed ``params`` ``SearchSpace.from_trial`` reads."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.params = trial, {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = self.trial.suggest_categorical(ARCH + name, list(choices))
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        self.params[name] = self.trial.suggest_int(ARCH + name, low, high, step=step)
        return self.params[name]


def plan_trial(trial: optuna.Trial, loaded: LoadedRun, rows: Sequence[dict[str, Any]],
          cfg: RefineConfig) -> tuple[Candidate, TrainConfig]:
    """The trial's candidate and recipe, drawn from its parameters (recorded on the trial).
    Raises :class:`OverBudget` for an explored candidate over the budget."""
    if cfg.explore:
        cand = loaded.space.from_trial(_SpaceChoices(trial))
        rank = trial.user_attrs.get("rank")
        base = (rows[rank - 1] if rank is not None and 0 < rank <= len(rows)
                and rows[rank - 1]["id"] == cand.id else None)
        recipe = TrainConfig(**cfg.seed_recipe, train_size=cfg.train_size,
                             resolution=loaded.config.resolution, seed=cfg.seed)
    else:
        base = rows[trial.suggest_int("rank", 1, min(cfg.top, len(rows))) - 1]
        mutation = trial.suggest_int("mutation", 0, cfg.mutations)
        cand = trial_candidate(loaded, base["encoding"], mutation, cfg.budget)
        recipe = TrainConfig(epochs=trial.suggest_int("epochs", 1, cfg.max_epochs),
                             lr=trial.suggest_float("lr", *LR_RANGE, log=True),
                             weight_decay=trial.suggest_float("weight_decay", *WD_RANGE,
                                                              log=True),
                             train_size=cfg.train_size, resolution=loaded.config.resolution,
                             seed=cfg.seed)
    for key, value in {"id": cand.id, "encoding": cand.encoding,
                       "base": base["id"] if base else None,
                       "params": count_params(cand.graph), "macs": count_macs(cand.graph),
                       "ranking": cfg.ranking or "hypernet",
                       "base_score": base["score"] if base else None,
                       "base_hypernet_score": hypernet_score(base) if base else None,
                       "warm_start": cfg.warm_start, "recipe": recipe.to_dict()}.items():
        trial.set_user_attr(key, value)
    if cfg.explore and cfg.budget:
        costs = cfg.budget.costs(cand.graph, cfg.budget.run_meter(loaded.run.latency_path))
        excess = {m: cost / cfg.budget.limits[m] - 1 for m, cost in costs.items()}
        for metric, over in excess.items():
            trial.set_constraint(f"max_{metric}", over)  # > 0: infeasible, to TPE
        if any(over > 0 for over in excess.values()):
            trial.set_user_attr("over_budget", True)
            raise OverBudget(f"{cand.id} is over {cfg.budget.describe()}")
    return cand, recipe
