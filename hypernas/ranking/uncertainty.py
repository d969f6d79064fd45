"""How sure a ranking is: a score mapped to an accuracy with a calibrated interval.

A hypernetwork's score is the loss of predicted weights, not an accuracy, and on its own it does
not say which candidates it misjudges: the spread over weight samples does not flag them
(``docs/BENCHMARKS.md``, "Uncertainty"). What does is *disagreement* with an independent judge
of the same candidate. Here each scorer of a :class:`Calibration` (by default the hypernetwork
and naswot, the proxy the search already combines with it) is mapped to an accuracy by a
least-squares line fitted on candidates that were trained for real; a candidate's predicted
accuracy is the mean of those predictions and its uncertainty

    u = sqrt(floor**2 + (p_1 - p_2)**2 / 2)      (the predictions' spread, plus a floor)

where the floor is a share of the fitted residual's standard deviation (no two judges agree by
chance about everything). The interval at level L is ``mean +- q_L * u``, with q_L the
split-conformal quantile of ``|accuracy - mean| / u`` over the calibration candidates: about a
share L of candidates like them have their trained accuracy inside (under the same training
recipe, which the calibration names). With one scorer the width is constant (q_L * floor).

In rank terms, a candidate's interval spans the places it could take: from one behind every
candidate predicted above its upper end to one behind every candidate predicted above its lower
end (:func:`annotate`). A wide rank range is what a ranking should not be trusted on; the top
candidates whose interval reaches the first's lower end cannot be told apart from it.

Example:
    >>> cal = fit_calibration([{"hypernet": -1.0 + i / 20, "naswot": 500 + i} for i in range(20)],
    ...                       [0.80 + i / 200 for i in range(20)], recipe="demo")
    >>> mean, lo, hi = cal.interval({"hypernet": -0.5, "naswot": 510}, level=0.8)
    >>> round(mean, 3), lo <= mean <= hi
    (0.85, True)
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import HypernasError

__all__ = ["Calibration", "fit_calibration", "annotate", "check_level", "expected_rank_error",
           "load_calibration", "save_calibration", "calibration_path", "pool_rows", "pool_field",
           "run_uncertainty", "write_ucb", "UCB", "DEFAULT_SCORERS", "DEFAULT_LEVEL",
           "FLOOR_SHARE", "MIN_CALIBRATION"]

DEFAULT_SCORERS = ("hypernet", "naswot")
DEFAULT_LEVEL = 0.8
FLOOR_SHARE = 1.0  # the floor, as a share of the residual sd (chosen on the design halves:
# benchmarks/uncertainty_calibration.py)
_NORMAL = statistics.NormalDist()
MIN_CALIBRATION = 10  # trained candidates a calibration needs at least
DRAWS = 256  # Monte Carlo draws of the expected rank error


def check_level(level: float) -> float:
    """``level`` if it is a probability strictly between 0 and 1, else an error naming the fix."""
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < level < 1:
        raise HypernasError(f"interval level must lie strictly between 0 and 1 (e.g. 0.8 for an "
                            f"80 % interval), got {level!r}")
    return float(level)


@dataclass(frozen=True)
class Calibration:
    """Score-to-accuracy lines per scorer, the floor, and the normalised residuals that set the
    interval width (sorted, per set of scorers used: ``"hypernet+naswot"``, ``"hypernet"``)."""

    scorers: tuple[str, ...]
    lines: dict[str, tuple[float, float]]  # scorer -> (intercept, slope): accuracy ~ a + b*score
    floor: float
    residuals: dict[str, tuple[float, ...]]
    recipe: str = ""  # what the calibration's accuracies are (the training that made them)
    source: str = ""  # where they came from
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def usable(self, scores: Mapping[str, float]) -> tuple[str, ...]:
        """The calibration's scorers that ``scores`` holds (the first one is required)."""
        first = self.scorers[0]
        if not isinstance(scores.get(first), (int, float)):
            raise HypernasError(f"this calibration needs the {first!r} score of every candidate; "
                                f"rank with it first (hypernas rank RUN --scorer {first})")
        return tuple(s for s in self.scorers if isinstance(scores.get(s), (int, float))
                     and math.isfinite(scores[s]))

    def predict(self, scores: Mapping[str, float], errors: Mapping[str, float] | None = None
                ) -> tuple[float, float, str]:
        """(predicted accuracy, uncertainty u, the scorers used). ``errors`` holds the standard
        error of a score that is an estimate (a candidate raced on fewer images): it widens u
        by what it moves the prediction."""
        used = self.usable(scores)
        preds = [self.lines[s][0] + self.lines[s][1] * scores[s] for s in used]
        mean = statistics.fmean(preds)
        spread2 = statistics.pvariance(preds) * len(preds) / 2 if len(preds) > 1 else 0.0
        noise2 = sum((self.lines[s][1] * (errors or {}).get(s, 0.0) / len(used)) ** 2
                     for s in used)
        return mean, math.sqrt(self.floor ** 2 + spread2 + noise2), "+".join(used)

    def quantile(self, level: float, used: str) -> float:
        """The split-conformal quantile of the normalised residuals at ``level``."""
        check_level(level)
        res = self.residuals.get(used)
        if not res:
            raise HypernasError(f"the calibration has no residuals for scorers {used!r}; "
                                "calibrate again (hypernas calibrate RUN)")
        k = min(len(res) - 1, max(0, math.ceil((len(res) + 1) * level) - 1))
        return res[k]

    def interval(self, scores: Mapping[str, float], level: float = DEFAULT_LEVEL,
                 errors: Mapping[str, float] | None = None) -> tuple[float, float, float]:
        """(predicted accuracy, lower end, upper end) of the nominal ``level`` interval."""
        mean, u, used = self.predict(scores, errors)
        half = self.quantile(level, used) * u
        return mean, mean - half, mean + half

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scorers"] = list(self.scorers)
        d["lines"] = {k: list(v) for k, v in self.lines.items()}
        d["residuals"] = {k: list(v) for k, v in self.residuals.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        try:
            return cls(scorers=tuple(d["scorers"]),
                       lines={k: (float(v[0]), float(v[1])) for k, v in d["lines"].items()},
                       floor=float(d["floor"]),
                       residuals={k: tuple(float(x) for x in v)
                                  for k, v in d["residuals"].items()},
                       recipe=str(d.get("recipe", "")), source=str(d.get("source", "")),
                       n=int(d.get("n", 0)), extra=dict(d.get("extra", {})))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise HypernasError(f"not a hypernas calibration ({e!r}); calibrate again: "
                                "hypernas calibrate RUN") from e


def _line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope); a constant score gives a flat line at the mean."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx > 0 else 0.0
    return my - slope * mx, slope


def fit_calibration(scores: Sequence[Mapping[str, float]], accuracies: Sequence[float], *,
                    scorers: Sequence[str] = DEFAULT_SCORERS, floor_share: float = FLOOR_SHARE,
                    recipe: str = "", source: str = "") -> Calibration:
    """Fit a :class:`Calibration` on candidates trained for real: ``scores[i]`` holds candidate
    i's score under each of ``scorers`` (``{"hypernet": ..., "naswot": ...}``) and
    ``accuracies[i]`` its trained accuracy (a fraction)."""
    scorers = tuple(scorers)
    if len(scores) != len(accuracies):
        raise HypernasError(f"{len(scores)} score rows but {len(accuracies)} accuracies")
    if not scorers:
        raise HypernasError("a calibration needs at least one scorer, e.g. hypernet")
    keep = [i for i, s in enumerate(scores)
            if all(isinstance(s.get(k), (int, float)) and math.isfinite(s[k]) for k in scorers)
            and isinstance(accuracies[i], (int, float)) and math.isfinite(accuracies[i])]
    if len(keep) < MIN_CALIBRATION:
        raise HypernasError(f"a calibration needs at least {MIN_CALIBRATION} trained candidates "
                            f"with every one of {', '.join(scorers)} scored; got {len(keep)}: "
                            "train more (hypernas refine RUN) or rank them with every scorer")
    if any(not 0 <= accuracies[i] <= 1 for i in keep):
        raise HypernasError("accuracies must be fractions between 0 and 1 (divide percentages "
                            "by 100)")
    ys = [float(accuracies[i]) for i in keep]
    lines = {k: _line([float(scores[i][k]) for i in keep], ys) for k in scorers}

    def means(used: tuple[str, ...]) -> list[float]:
        return [statistics.fmean(lines[k][0] + lines[k][1] * scores[i][k] for k in used)
                for i in keep]

    full = means(scorers)
    floor = floor_share * statistics.pstdev(y - m for y, m in zip(ys, full)) or 1e-6
    base = Calibration(scorers, lines, floor, {}, recipe, source, len(keep))
    residuals = {}
    for used in {scorers, scorers[:1]}:
        ms = means(used)
        us = [base.predict({k: scores[i][k] for k in used})[1] for i in keep]
        residuals["+".join(used)] = tuple(sorted(abs(y - m) / u for y, m, u in zip(ys, ms, us)))
    return Calibration(scorers, lines, floor, residuals, recipe, source, len(keep))


def expected_rank_error(means: Mapping[str, float], sds: Mapping[str, float], *,
                        draws: int = DRAWS, seed: int = 0) -> dict[str, float]:
    """Per id, the expected |predicted rank - true rank| if the true accuracies were drawn
    independently from normal distributions (``means``, ``sds``): Monte Carlo over ``draws``
    seeded draws. Large in a dense middle when the predictions are sharp, and at both ends when
    they are flat (a ranking that knows little misplaces its first and last the most)."""
    import torch

    ids = list(means)
    if not ids:
        return {}
    m = torch.tensor([means[i] for i in ids], dtype=torch.float64)
    s = torch.tensor([sds[i] for i in ids], dtype=torch.float64)
    predicted = _ranks(m.unsqueeze(0))[0]
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(ids), dtype=torch.float64)
    for start in range(0, draws, 64):
        k = min(64, draws - start)
        sample = m + s * torch.randn(k, len(ids), generator=g, dtype=torch.float64)
        total += (_ranks(sample) - predicted).abs().sum(0)
    return {i: float(v) for i, v in zip(ids, total / draws)}


def _ranks(x: Any) -> Any:
    """1-based ranks, highest first, along the last dimension (ties broken by position)."""
    import torch

    order = torch.argsort(-x, dim=-1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(1, x.shape[-1] + 1).expand_as(order))
    return ranks.to(torch.float64)


def annotate(scores: Mapping[str, Mapping[str, float]], calibration: Calibration,
             level: float = DEFAULT_LEVEL,
             errors: Mapping[str, Mapping[str, float]] | None = None
             ) -> dict[str, dict[str, Any]]:
    """Per candidate id of ``scores`` (``{id: {scorer: score}}``, the pool the ranking holds;
    ``errors``: ``{id: {scorer: standard error}}`` of scores that are estimates):
    ``predicted_acc``, ``interval`` [lo, hi], ``level``, ``rank_range`` [best, worst] (the places
    the interval allows among the pool's predicted accuracies), ``uncertainty`` (worst - best,
    in places) and ``ties_first`` (its interval reaches the lower end of the candidate
    predicted best)."""
    check_level(level)
    errors = errors or {}
    out = {i: dict(zip(("predicted_acc", "lo", "hi"),
                       calibration.interval(s, level, errors.get(i))))
           for i, s in scores.items()}
    if not out:
        return {}
    means = sorted(v["predicted_acc"] for v in out.values())
    z = _NORMAL.inv_cdf(0.5 + level / 2)
    sd = {i: (v["hi"] - v["lo"]) / (2 * z) for i, v in out.items()}
    expected = expected_rank_error({i: v["predicted_acc"] for i, v in out.items()}, sd)
    first = max(out, key=lambda i: (out[i]["predicted_acc"], i))
    first_lo = out[first]["lo"]
    n = len(means)
    for i, v in out.items():
        lo, hi = v.pop("lo"), v.pop("hi")
        best = 1 + n - bisect.bisect_right(means, hi)  # one behind all predicted above hi
        worst = max(best, n - bisect.bisect_right(means, lo)
                    + (1 if v["predicted_acc"] <= lo else 0))  # ... and all above lo
        v.update(interval=[lo, hi], level=level, rank_range=[best, worst],
                 uncertainty=worst - best, rank_error=expected[i],
                 ties_first=i == first or hi >= first_lo)
    return out


# -- a run's calibration and the uncertainty of its rankings ---------------------------------

UCB = "ucb"  # the label of a run's upper-confidence ranking (what the search screens by)


def calibration_path(run: Any) -> Path:
    return run.path / "calibration.json"


def save_calibration(run: Any, cal: Calibration) -> Path:
    """Write ``cal`` as the run's calibration (atomically)."""
    from ..runs.store import write_json

    path = calibration_path(run)
    write_json(path, cal.to_dict())
    return path


def load_calibration(run: Any) -> Calibration | None:
    """The run's own calibration (``hypernas calibrate``), else the shipped hypernetwork's when
    the run ranks with one, else None."""
    from .pretrained import run_or_shipped

    data = run_or_shipped(run, calibration_path(run), "calibration",
                          f"calibrate again: hypernas calibrate {run.name}")
    return Calibration.from_dict(data) if data is not None else None


def pool_rows(run: Any, scorers: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{id: {scorer: ranking row}}`` over the ids the run's ranking of the first scorer holds
    (the pool a ranking's places are counted in), with the other scorers where ranked; each
    ranking is read once."""
    from ..runs.rankings import ranking_labels, ranking_rows

    have = set(ranking_labels(run))
    by = {s: ranking_rows(run, s) for s in scorers if s in have}
    return {i: {s: rows[i] for s, rows in by.items() if i in rows} for i in by.get(scorers[0], {})}


def pool_field(pool: Mapping[str, Mapping[str, dict[str, Any]]], field: str = "score"
               ) -> dict[str, dict[str, float]]:
    """``{id: {scorer: row[field]}}`` from :func:`pool_rows` (where the row has ``field``:
    ``score_se`` gives the standard errors of raced estimates)."""
    return {i: {s: row[field] for s, row in rows.items() if field in row}
            for i, rows in pool.items()}


def _uncertainty(run: Any, level: float) -> tuple[Calibration | None, dict[str, Any],
                                                  dict[str, dict[str, Any]]]:
    """The run's calibration, its pool's rows and :func:`annotate` over them."""
    check_level(level)
    cal = load_calibration(run)
    if cal is None:
        return None, {}, {}
    pool = pool_rows(run, cal.scorers)
    return cal, pool, annotate(pool_field(pool), cal, level, pool_field(pool, "score_se"))


def run_uncertainty(run: Any, level: float = DEFAULT_LEVEL
                    ) -> tuple[Calibration | None, dict[str, dict[str, Any]]]:
    """The run's calibration and :func:`annotate` over its pool (empty without one)."""
    cal, _, ann = _uncertainty(run, level)
    return cal, ann


def write_ucb(run: Any, level: float = DEFAULT_LEVEL) -> dict[str, dict[str, Any]] | None:
    """Rewrite the run's ``ucb`` ranking: its pool scored by the upper end of the calibrated
    interval (an upper-confidence rule: a candidate that may be the best is looked at before a
    confident loser). None (and no file) when the run has no calibration."""
    from ..runs.store import write_jsonl

    cal, pool, ann = _uncertainty(run, level)
    if cal is None:
        return None
    first = cal.scorers[0]
    rows = {i: {**pool[i][first], "score": a["interval"][1], "spread": 0.0, "scorer": UCB,
                "hypernet_score": pool[i][first]["score"], **a} for i, a in ann.items()}
    write_jsonl(run.ranking_path(UCB), rows.values())
    return rows
