"""Budgets: candidates drawn within a parameter and MAC limit, never drawn and thrown away.

A :class:`Budget` caps a candidate's parameter count and/or its multiply-accumulates (one sample,
one forward pass; :func:`~hypernas.graphs.network.count_macs`). :func:`sample_within` draws
candidates that fit it the way a define-by-run space is sampled, one decision at a time, with the
options of each decision narrowed to those that can still be completed within the budget:

1. for every parameter of the space and every metric, the option that costs least is found
   once, by probing each option on the space's largest candidate;
2. at each decision an option is drawn uniformly among those whose cheapest completion (every
   later decision at its cheapest option) fits: an option that does not fit is struck out and
   the draw repeated among the rest.

At the last decision the completion is the candidate itself, so every candidate drawn fits.
Where decisions interact (in ``macro`` a block whose width equals its input's needs no projection,
so the smallest width is not always the cheapest), the cheapest completion is an estimate: a
draw can reach a decision with no option left (a dead end) and is then drawn again; many dead
ends raise :class:`BudgetError`. A budget below the space's cheapest candidate is refused up
front with the smallest value that would do.

Example:
    >>> from hypernas.spaces import load_space
    >>> space = load_space("nb201", N=1, input_shape=(1, 16, 16))
    >>> budget = Budget(max_params=90_000)
    >>> cands = sample_within(space, budget, 5, seed=0)
    >>> all(budget.fits(c.graph) for c in cands)
    True
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import networkx as nx

from ..errors import SpaceError
from ..graphs.network import count_macs, count_params
from .space import Candidate, SearchSpace
from .trials import BaseTrial, PathTrial

__all__ = ["Budget", "BudgetError", "METRICS", "sample_within", "cheapest", "fits_space"]

METRICS: dict[str, Callable[[nx.DiGraph], int]] = {"params": count_params, "macs": count_macs}


class BudgetError(SpaceError):
    """A budget no candidate can meet, or a space the budget cannot be kept in."""


@dataclass(frozen=True)
class Budget:
    """Upper limits on a candidate's cost; None = no limit."""

    max_params: int | None = None
    max_macs: int | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--max-params", self.max_params), ("--max-macs", self.max_macs)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise BudgetError(f"{flag} must be a positive whole number, got {value!r}")

    @property
    def limits(self) -> dict[str, int]:
        """{metric: limit} of the limits that are set."""
        return {m: v for m, v in (("params", self.max_params), ("macs", self.max_macs))
                if v is not None}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def costs(self, graph: nx.DiGraph) -> dict[str, int]:
        return {m: METRICS[m](graph) for m in self.limits}

    def fits(self, graph: nx.DiGraph) -> bool:
        return all(METRICS[m](graph) <= v for m, v in self.limits.items())

    def fits_row(self, row: Mapping[str, Any]) -> bool:
        """Whether a ranking row (with its ``params`` and ``macs``) fits."""
        return all(row[m] <= v for m, v in self.limits.items())

    def to_dict(self) -> dict[str, int | None]:
        return {"max_params": self.max_params, "max_macs": self.max_macs}

    def describe(self) -> str:
        return ", ".join(f"{m} <= {v:,}" for m, v in self.limits.items()) or "no budget"


class _Completion(BaseTrial):
    """The ``prefix`` choices, then each later parameter at ``prefer[name]`` (else its last
    option: the largest, in the built-in spaces' order)."""

    def __init__(self, prefix: Mapping[str, Any], prefer: Mapping[str, Any]) -> None:
        super().__init__()
        self.prefix, self.prefer = prefix, prefer

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        for source in (self.prefix, self.prefer):
            if name in source and source[name] in options:
                return source[name]
        return options[-1]


class _Extremes:
    """Per metric (all of :data:`METRICS`, from the same probes), each parameter's cheapest
    option, probed on the largest candidate (every conditional parameter present); the cost
    of a prefix's cheapest completion."""

    def __init__(self, space: SearchSpace, metrics: Sequence[str]) -> None:
        self.space = space
        largest = PathTrial(last=True)
        space.define(largest)
        base = dict(largest.params)
        options = {**space.choices(), **largest.choices}
        self.low: dict[str, dict[str, Any]] = {m: {} for m in metrics}
        for name, opts in options.items():
            costs = {m: [] for m in metrics}
            for option in opts:
                graph = space.define(_Completion({**base, name: option}, {}))
                for m in metrics:
                    costs[m].append(METRICS[m](graph))
            for m in metrics:
                self.low[m][name] = opts[min(range(len(opts)), key=costs[m].__getitem__)]

    def cost(self, metric: str, prefix: Mapping[str, Any]) -> int:
        return METRICS[metric](self.space.define(_Completion(prefix, self.low[metric])))


class _DeadEnd(Exception):
    """No option of a decision can be completed within the budget (the estimate was wrong)."""


class _WithinTrial(BaseTrial):
    """Uniform random choices among the options whose cheapest completion fits ``limits``."""

    def __init__(self, extremes: _Extremes, limits: dict[str, int], rng: random.Random) -> None:
        super().__init__()
        self.extremes, self.limits, self.rng = extremes, limits, rng

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        left = list(options)
        while left:
            option = left.pop(self.rng.randrange(len(left)))
            prefix = {**self.params, name: option}
            if all(self.extremes.cost(m, prefix) <= v for m, v in self.limits.items()):
                return option
        raise _DeadEnd(name)


_CACHE: "weakref.WeakKeyDictionary[SearchSpace, _Extremes]" = weakref.WeakKeyDictionary()


def _extremes(space: SearchSpace) -> _Extremes:
    """The space's probed extremes for every metric, computed once per space object (the
    refusal check and the draws of one budget share them)."""
    if space not in _CACHE:
        _CACHE[space] = _Extremes(space, list(METRICS))
    return _CACHE[space]


def cheapest(space: SearchSpace, metric: str) -> Candidate:
    """The candidate of ``space`` with every decision at its cheapest option for ``metric``."""
    return space.from_trial(_Completion({}, _extremes(space).low[metric]))


def fits_space(space: SearchSpace, budget: Budget) -> None:
    """Raise :class:`BudgetError` naming the smallest feasible value when no candidate of
    ``space`` meets a limit of ``budget``."""
    flags = {"params": "--max-params", "macs": "--max-macs"}
    for metric, limit in budget.limits.items():
        least = METRICS[metric](cheapest(space, metric).graph)
        if least > limit:
            raise BudgetError(f"no candidate of {space.name} fits {flags[metric]} {limit:,}: the "
                              f"smallest has {least:,} {metric}; raise {flags[metric]} to at "
                              f"least {least:,}")


def sample_within(space: SearchSpace, budget: Budget, n: int, seed: int = 0, *,
                  unique: bool = True) -> list[Candidate]:
    """``n`` random candidates that fit ``budget`` (distinct canonical ids with ``unique``);
    without a limit, the same as ``space.sample_many``."""
    if not budget:
        return space.sample_many(n, seed=seed, unique=unique)
    fits_space(space, budget)
    extremes = _extremes(space)
    rng, out, seen, attempts, dead_ends = random.Random(seed), [], set(), 0, 0
    while len(out) < n:
        try:
            cand = space.from_trial(_WithinTrial(extremes, budget.limits, rng))
        except _DeadEnd as end:
            dead_ends += 1
            if dead_ends > 10 * n + 100:
                raise BudgetError(f"drawing within {budget.describe()} ran into {dead_ends} dead "
                                  f"ends (last at {end}): this space's costs do not add up per "
                                  "decision; rank without a budget and filter with `hypernas "
                                  "show --max-params`") from None
            continue
        attempts += 1
        assert budget.fits(cand.graph), cand.encoding  # the last decision is checked exactly
        if not unique or cand.id not in seen:
            seen.add(cand.id)
            out.append(cand)
        elif attempts > 50 * n + 1000:
            raise BudgetError(f"space {space.name!r} gave only {len(out)} distinct candidates "
                              f"within {budget.describe()} in {attempts} draws; ask for fewer or "
                              "raise the budget")
    return out
