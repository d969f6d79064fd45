"""Racing over images: score every candidate on a few of the fixed images first, and only those
that may still reach the top ``k`` on more (successive halving over images, as in racing
algorithms for model selection).

A hypernetwork score is the mean loss of predicted weights over fixed evaluation batches, one
list of batches per weight sample (:func:`hypernas.ranking.scoring.eval_slices`). Racing cuts
those into *units* (one batch of one weight sample) taken batch by batch across the samples, and
stops a candidate at a *rung* (a count of units: the first batch of the first sample, then the
first batch of the first two samples, then the first batch of every sample, then all) once its
estimate cannot reach the top ``k``:

- a rung's raw estimate is the score on the units so far; every candidate sees the same units in
  the same order, so estimates at one rung compare with each other;
- what a rung estimate says about the full score is learned from the candidates scored in full
  (each keeps its rung estimates): the mean of ``full - estimate`` (``offset``, the units' own
  difficulty) and its standard deviation (``se``, how far the full score may lie from it);
- a candidate goes on while ``estimate + offset + z * se`` reaches the ``k``-th best score seen so
  far; until ``min_calibration`` candidates are scored in full, every candidate is.

A stopped candidate's row carries ``estimate + offset`` as its score, the images it used and
``se``; the top of a ranking is therefore always scored in full. Only plain numbers cross between
processes (:meth:`Race.state`), so Ray workers race with the driver's latest state.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..errors import HypernasError

__all__ = ["RaceConfig", "Race", "rungs", "check_scoring", "SCORING_FULL", "SCORING_ADAPTIVE"]

SCORING_FULL, SCORING_ADAPTIVE = "full", "adaptive"


@dataclass(frozen=True)
class RaceConfig:
    """How candidates race: ``top_k`` is the boundary a candidate must be able to reach."""

    top_k: int = 50
    z: float = 1.5  # standard errors of optimism before a candidate is stopped (chosen on the
    # design half of 622 NB201 cells replayed by benchmarks/race_design.py: 1.0 lost no top-k
    # cell there, 0.5 lost one; 1.5 keeps a step of margin)
    min_calibration: int = 30  # candidates scored in full before any is stopped

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise HypernasError(f"--top-k must be at least 1, got {self.top_k}")
        if not (self.z >= 0 and math.isfinite(self.z)):
            raise HypernasError(f"the racing z must be a finite number >= 0, got {self.z}")
        if self.min_calibration < 2:
            raise HypernasError("racing needs at least 2 candidates scored in full to calibrate, "
                                f"got min_calibration={self.min_calibration}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rungs(samples: int, units: int) -> list[int]:
    """Unit counts a candidate is judged at: one unit, one of each of two samples, one per
    sample, all of them (for NB201's default: 250, 500, 1,000 and 2,000 images).

    >>> rungs(4, 8)
    [1, 2, 4, 8]
    >>> rungs(1, 2)
    [1, 2]
    """
    return sorted({1, min(2, samples, units), min(samples, units), units})


class _Moments:
    """Running mean and variance (Welford)."""

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n, self.mean, self.m2 = n, mean, m2

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else math.inf


class Race:
    """The racing state: the best ``top_k`` scores so far and, per rung, how rung estimates
    relate to full scores. Feed it every row (:meth:`observe`), ask it per rung (:meth:`judge`).
    """

    def __init__(self, cfg: RaceConfig, n_rungs: int) -> None:
        self.cfg, self.n_rungs = cfg, n_rungs
        self._best: list[float] = []  # min-heap of the top_k scores
        self._diffs = [_Moments() for _ in range(n_rungs - 1)]

    @classmethod
    def from_rows(cls, cfg: RaceConfig, n_rungs: int, rows: Iterable[dict[str, Any]]) -> Race:
        race = cls(cfg, n_rungs)
        for row in rows:
            race.observe(row)
        return race

    def observe(self, row: dict[str, Any]) -> None:
        """Take one ranking row into account (its score; its rung estimates if it is full)."""
        score = row.get("score")
        if score is None or not math.isfinite(score):
            return
        if len(self._best) < self.cfg.top_k:
            heapq.heappush(self._best, score)
        elif score > self._best[0]:
            heapq.heapreplace(self._best, score)
        estimates = row.get("rung_scores")
        if estimates and len(estimates) == self.n_rungs and row.get("images") == row.get(
                "full_images"):
            for moments, estimate in zip(self._diffs, estimates):
                if math.isfinite(estimate):
                    moments.add(score - estimate)

    @property
    def threshold(self) -> float:
        """The ``top_k``-th best score so far (minus infinity until there are that many)."""
        return self._best[0] if len(self._best) >= self.cfg.top_k else -math.inf

    def calibration(self, rung: int) -> tuple[float, float] | None:
        """``(offset, se)`` of rung ``rung`` (not the last), or None before ``min_calibration``
        candidates were scored in full."""
        moments = self._diffs[rung]
        if moments.n < self.cfg.min_calibration:
            return None
        return moments.mean, moments.sd

    def judge(self, rung: int, estimate: float) -> tuple[bool, float, float]:
        """After rung ``rung`` (not the last): ``(go_on, adjusted estimate, se)``."""
        if not math.isfinite(estimate):  # a loss that overflowed: it reaches no top
            return False, estimate, math.inf
        calib = self.calibration(rung)
        if calib is None:
            return True, estimate, math.inf
        offset, se = calib
        adjusted = estimate + offset
        return adjusted + self.cfg.z * se >= self.threshold, adjusted, se

    def state(self) -> dict[str, Any]:
        """Plain numbers for another process (:meth:`from_state`)."""
        return {"cfg": self.cfg.to_dict(), "n_rungs": self.n_rungs, "best": list(self._best),
                "diffs": [[m.n, m.mean, m.m2] for m in self._diffs]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Race:
        race = cls(RaceConfig(**state["cfg"]), state["n_rungs"])
        race._best = list(state["best"])
        heapq.heapify(race._best)
        race._diffs = [_Moments(*d) for d in state["diffs"]]
        return race


def check_scoring(rows: Sequence[dict[str, Any]], scoring: str, label: str) -> None:
    """Refuse to extend ranking ``label`` in another scoring mode than its rows were made in."""
    modes = {row.get("scoring", SCORING_FULL) for row in rows if row.get("scorer") == "hypernet"}
    other = modes - {scoring}
    if other:
        flag = "--full" if SCORING_FULL in other else "no --full"
        raise HypernasError(
            f"ranking {label!r} was scored {other.pop()} and this call scores {scoring}: "
            f"rank with {flag} to go on with it, or into another ranking with --label NAME")
