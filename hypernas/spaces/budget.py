"""Budgets: candidates drawn within a parameter, MAC and latency limit, not drawn and thrown away.

A :class:`Budget` caps a candidate's parameter count, its multiply-accumulates (one sample, one
forward pass; :func:`~hypernas.graphs.network.count_macs`) and/or its latency on this machine
(batch 1, measured in a named runtime; :mod:`hypernas.graphs.latency`). :func:`sample_within` draws
candidates that fit it the way a define-by-run space is sampled, one decision at a time, with the
options of each decision narrowed to those that can still be completed within the budget:

1. for every parameter of the space and every metric, the option that costs least is found
   once, by probing each option on the space's largest candidate;
2. at each decision an option is drawn uniformly among those whose cheapest completion (every
   later decision at its cheapest option) fits: an option that does not fit is struck out and
   the draw repeated among the rest.

At the last decision the completion is the candidate itself, so every candidate drawn fits its
parameter and MAC limits. Latency is drawn with its additive estimate (the nodes' own latencies,
calibrated on whole networks) and every drawn candidate is then measured: one the measurement
puts over the limit is drawn again (rare; many raise :class:`BudgetError`).
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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import networkx as nx

from ..errors import SpaceError
from ..graphs.latency import LatencyMeter, check_runtime
from ..graphs.network import count_macs, count_params
from .space import Candidate, SearchSpace
from .trials import BaseTrial, PathTrial

__all__ = ["Budget", "BudgetError", "METRICS", "sample_within", "cheapest", "fits_space",
           "with_latency", "default_meter"]

METRICS: dict[str, Callable[[nx.DiGraph], int]] = {"params": count_params, "macs": count_macs}
FLAGS = {"params": "--max-params", "macs": "--max-macs", "latency": "--max-latency-ms"}
UNITS = {"params": "parameters", "macs": "MACs", "latency": "ms"}
_METERS: dict[str, LatencyMeter] = {}  # per runtime, for budgets used without a run's meter


def default_meter(runtime: str = "torch") -> LatencyMeter:
    """This process's latency meter for ``runtime`` (nothing kept on disk)."""
    if runtime not in _METERS:
        _METERS[runtime] = LatencyMeter(runtime)
    return _METERS[runtime]


class BudgetError(SpaceError):
    """A budget no candidate can meet, or a space the budget cannot be kept in."""


@dataclass(frozen=True)
class Budget:
    """Upper limits on a candidate's cost; None = no limit. ``latency_runtime`` names what the
    latency limit is measured in (``torch`` or ``onnxruntime``)."""

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    latency_runtime: str = "torch"

    def __post_init__(self) -> None:
        for flag, value in ((FLAGS["params"], self.max_params), (FLAGS["macs"], self.max_macs)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):
                raise BudgetError(f"{flag} must be a positive whole number, got {value!r}")
        if self.max_latency_ms is not None:
            value = self.max_latency_ms
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or value == float("inf"):
                raise BudgetError(f"--max-latency-ms must be a positive number of milliseconds, "
                                  f"got {value!r}")
            check_runtime(self.latency_runtime)

    @property
    def limits(self) -> dict[str, float]:
        """{metric: limit} of the limits that are set (``latency`` in milliseconds)."""
        return {m: v for m, v in (("params", self.max_params), ("macs", self.max_macs),
                                  ("latency", self.max_latency_ms)) if v is not None}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def meter(self, meter: LatencyMeter | None = None) -> LatencyMeter:
        """``meter`` if given (a run's, keeping what it measured), else this process's one for
        the budget's runtime."""
        return meter if meter is not None else default_meter(self.latency_runtime)

    def run_meter(self, path: str | Path) -> LatencyMeter | None:
        """With a latency limit, a meter for the budget's runtime keeping what it measures in
        ``path`` (a run's ``latency.jsonl``), so each candidate is measured once per run."""
        return LatencyMeter(self.latency_runtime, path=path) if "latency" in self.limits else None

    def costs(self, graph: nx.DiGraph, meter: LatencyMeter | None = None) -> dict[str, float]:
        return {m: self.meter(meter).ms(graph) if m == "latency" else METRICS[m](graph)
                for m in self.limits}

    def fits(self, graph: nx.DiGraph, meter: LatencyMeter | None = None) -> bool:
        """Whether ``graph`` is within every limit (its latency measured, once per meter)."""
        return all(cost <= self.limits[m] for m, cost in self.costs(graph, meter).items())

    def fits_row(self, row: Mapping[str, Any]) -> bool:
        """Whether a ranking row (with its ``params``, ``macs`` and, for a latency limit,
        ``latency_ms``: see :func:`with_latency`) fits."""
        key = {"params": "params", "macs": "macs", "latency": "latency_ms"}
        return all(row[key[m]] <= v for m, v in self.limits.items())

    def rows_within(self, rows: Sequence[dict[str, Any]], space: SearchSpace,
                    latency_path: str | Path) -> list[dict[str, Any]]:
        """The ranking rows that fit; with a latency limit each carries ``latency_ms``,
        measured once per candidate and kept in ``latency_path`` (the run's)."""
        if "latency" in self.limits:
            rows = with_latency(rows, space, self.run_meter(latency_path))
        return [row for row in rows if self.fits_row(row)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_params": self.max_params, "max_macs": self.max_macs}
        if self.max_latency_ms is not None:
            out.update(max_latency_ms=self.max_latency_ms, latency_runtime=self.latency_runtime)
        return out

    def describe(self) -> str:
        parts = [f"latency <= {v:g} ms ({self.latency_runtime}, batch 1)" if m == "latency"
                 else f"{m} <= {v:,}" for m, v in self.limits.items()]
        return ", ".join(parts) or "no budget"


def with_latency(rows: Sequence[dict[str, Any]], space: SearchSpace, meter: LatencyMeter
                 ) -> list[dict[str, Any]]:
    """The rows, each with ``latency_ms`` (measured by ``meter``, once per candidate)."""
    return [row if "latency_ms" in row else
            {**row, "latency_ms": meter.ms(space.replay(row["encoding"]).graph)}
            for row in rows]


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
    """Each parameter's cheapest option per metric, probed on the largest candidate (every
    conditional parameter present; the probe graphs are built once per space, each metric's
    cheapest options found when first asked for), and the cost of a prefix's cheapest
    completion."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        largest = PathTrial(last=True)
        space.define(largest)
        base = dict(largest.params)
        options = {**space.choices(), **largest.choices}
        self.probes = {name: [(option, space.define(_Completion({**base, name: option}, {})))
                              for option in opts] for name, opts in options.items()}
        self._low: dict[str, dict[str, Any]] = {}

    def low(self, metric: str, measure: Callable[[nx.DiGraph], float]) -> dict[str, Any]:
        if metric not in self._low:
            self._low[metric] = {name: min(probes, key=lambda p: measure(p[1]))[0]
                                 for name, probes in self.probes.items()}
        return self._low[metric]

    def cost(self, metric: str, measure: Callable[[nx.DiGraph], float],
             prefix: Mapping[str, Any]) -> float:
        return measure(self.space.define(_Completion(prefix, self.low(metric, measure))))


class _DeadEnd(Exception):
    """No option of a decision can be completed within the budget (the estimate was wrong)."""


class _WithinTrial(BaseTrial):
    """Uniform random choices among the options whose cheapest completion fits ``limits``
    (``measures``: metric -> the cost, or for latency its estimate)."""

    def __init__(self, extremes: _Extremes, limits: dict[str, float],
                 measures: dict[str, Callable[[nx.DiGraph], float]], rng: random.Random) -> None:
        super().__init__()
        self.extremes, self.limits, self.measures, self.rng = extremes, limits, measures, rng

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        left = list(options)
        while left:
            option = left.pop(self.rng.randrange(len(left)))
            prefix = {**self.params, name: option}
            if all(self.extremes.cost(m, self.measures[m], prefix) <= v
                   for m, v in self.limits.items()):
                return option
        raise _DeadEnd(name)


_CACHE: "weakref.WeakKeyDictionary[SearchSpace, _Extremes]" = weakref.WeakKeyDictionary()


def _extremes(space: SearchSpace) -> _Extremes:
    """The space's probes, built once per space object (the refusal check and the draws of
    every budget share them)."""
    if space not in _CACHE:
        _CACHE[space] = _Extremes(space)
    return _CACHE[space]


def _estimates(meter: LatencyMeter) -> dict[str, Callable[[nx.DiGraph], float]]:
    """What drawing compares with each limit: exact counts, the latency's estimate."""
    return {**METRICS, "latency": meter.estimate}


def cheapest(space: SearchSpace, metric: str, meter: LatencyMeter | None = None) -> Candidate:
    """The candidate of ``space`` with every decision at its cheapest option for ``metric``
    (for ``latency``, by ``meter``'s estimate)."""
    measure = _estimates(meter or default_meter())[metric]
    return space.from_trial(_Completion({}, _extremes(space).low(metric, measure)))


def fits_space(space: SearchSpace, budget: Budget, meter: LatencyMeter | None = None) -> None:
    """Raise :class:`BudgetError` naming the smallest feasible value when no candidate of
    ``space`` meets a limit of ``budget`` (for latency: the fastest candidate, measured)."""
    meter = budget.meter(meter)
    for metric, limit in budget.limits.items():
        graph = cheapest(space, metric, meter).graph
        least = meter.ms(graph) if metric == "latency" else METRICS[metric](graph)
        if least > limit:
            shown = f"{least:.3g}" if metric == "latency" else f"{least:,}"
            raise BudgetError(f"no candidate of {space.name} fits {FLAGS[metric]} {limit:,}: the "
                              f"smallest has {shown} {UNITS[metric]}"
                              + (f" ({budget.latency_runtime}, batch 1, on this machine)"
                                 if metric == "latency" else "")
                              + f"; raise {FLAGS[metric]} to at least {shown}")


def sample_within(space: SearchSpace, budget: Budget, n: int, seed: int = 0, *,
                  unique: bool = True, meter: LatencyMeter | None = None) -> list[Candidate]:
    """``n`` random candidates that fit ``budget`` (distinct canonical ids with ``unique``);
    without a limit, the same as ``space.sample_many``. A latency limit is measured with
    ``meter`` (a run's keeps what it measured), else this process's meter."""
    if not budget:
        return space.sample_many(n, seed=seed, unique=unique)
    meter = budget.meter(meter)
    fits_space(space, budget, meter)
    extremes, measures = _extremes(space), _estimates(meter)
    if "latency" in budget.limits:
        meter.ms(space.from_trial(PathTrial(last=True)).graph)  # calibrates the estimate too
        # fits_space measured the fastest candidate within the limit; where the estimate puts
        # it over, scale the estimates down only as far as the limit needs, so the first
        # decision has an option that fits and the others stay as estimated (scaling to the
        # fastest's measurement made most draws at a low limit optimistic: measured over and
        # drawn again)
        fastest = cheapest(space, "latency", meter).graph
        scale = min(1.0, budget.limits["latency"] / meter.estimate(fastest))
        measures["latency"] = lambda graph: scale * meter.estimate(graph)
    rng, out, seen = random.Random(seed), [], set()
    attempts = dead_ends = over = 0
    while len(out) < n:
        try:
            cand = space.from_trial(_WithinTrial(extremes, budget.limits, measures, rng))
        except _DeadEnd as end:
            dead_ends += 1
            if dead_ends > 10 * n + 100:
                raise BudgetError(f"drawing within {budget.describe()} ran into {dead_ends} dead "
                                  f"ends (last at {end}): this space's costs do not add up per "
                                  "decision; rank without a budget and filter with `hypernas "
                                  "show --max-params`") from None
            continue
        attempts += 1
        if "latency" in budget.limits and not budget.fits(cand.graph, meter):
            over += 1  # the estimate let through one the measurement puts over the limit
            if over > 5 * n + 50:
                raise BudgetError(f"{over} candidates drawn within the estimated latency were "
                                  f"over {budget.describe()} when measured: the limit sits "
                                  "inside this machine's timing noise; raise --max-latency-ms")
            continue
        assert budget.fits(cand.graph, meter), cand.encoding  # last decision checked exactly
        if not unique or cand.id not in seen:
            seen.add(cand.id)
            out.append(cand)
        elif attempts > 50 * n + 1000:
            raise BudgetError(f"space {space.name!r} gave only {len(out)} distinct candidates "
                              f"within {budget.describe()} in {attempts} draws; ask for fewer or "
                              "raise the budget")
    return out
