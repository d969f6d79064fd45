"""Time planning for a budgeted search: how long trainings take, measured from the ones done.

A training's pace is two numbers measured from its per-epoch history: seconds per training
image and epoch, and seconds per validation pass. From a pace, the minutes of any recipe
follow (:func:`minutes`); :func:`finalist_minutes` keeps time back for the search's last
trainings, and :func:`waves` counts trainings run several at a time on workers.

Example:
    >>> minutes((0.006, 6.0), epochs=5, images=1_000)  # 5 * (6 s + 6 s)
    1.0
"""

from __future__ import annotations

import statistics

import optuna

from ..refine.study import completed

__all__ = ["finalist_minutes", "history_pace", "minutes", "pace", "pace_of", "waves"]


def finalist_minutes(paces: list[tuple[float, float] | None], median: tuple[float, float],
                     most: int, share: float, epochs: int, images: int,
                     parallel: int = 1) -> float:
    """Minutes to keep for the finalists' trainings (``epochs`` on ``images``, ``parallel`` at a
    time): the best screens (``paces``, best first; ``None``, or a missing screen, at the
    ``median`` pace), as many as ``share`` minutes hold, at least one and at most ``most``.

    >>> finalist_minutes([(0.012, 12.0), None], (0.006, 6.0), 3, 3.5, 5, 1_000)  # 2 + 1 (+ 1)
    3.0
    >>> finalist_minutes([(0.012, 12.0), None], (0.006, 6.0), 3, 3.5, 5, 1_000, parallel=2)
    3.0
    """
    each = [minutes(p or median, epochs, images) for p in (paces + [None] * most)[:most]]
    planned = 1
    while planned < most and waves(each[:planned + 1], parallel) <= share:
        planned += 1
    return waves(each[:planned], parallel)


def waves(each: list[float], parallel: int) -> float:
    """Wall minutes of trainings started ``parallel`` at a time in the order given, each wave as
    long as its longest.

    >>> waves([2.0, 1.0, 1.0], 1), waves([2.0, 1.0, 1.0], 2), waves([2.0, 1.0, 1.0], 3)
    (4.0, 3.0, 2.0)
    """
    return sum(max(each[i:i + parallel]) for i in range(0, len(each), parallel))


def pace(study: optuna.Study) -> tuple[float, float] | None:
    """Median seconds per training image and epoch, and per validation pass, of the study's
    finished screens (None if there is none), from their per-epoch history."""
    paces = [p for p in map(pace_of, completed(study, fits=False)) if p is not None]
    if not paces:
        return None
    return statistics.median(p[0] for p in paces), statistics.median(p[1] for p in paces)


def pace_of(trial: optuna.trial.FrozenTrial) -> tuple[float, float] | None:
    """One finished training's seconds per training image and epoch, and per validation pass."""
    history = trial.user_attrs.get("history") or []
    images = (trial.user_attrs.get("recipe") or {}).get("train_size")
    return history_pace(history, images) if history and images else None


def history_pace(history: list[dict[str, float]], images: int) -> tuple[float, float]:
    """Seconds per training image and epoch, and per validation pass, of a training's per-epoch
    history (``train_network``'s) on ``images`` training images."""
    evals = sum(h.get("eval_seconds", 0.0) for h in history)
    return (history[-1]["seconds"] - evals) / len(history) / images, evals / len(history)


def minutes(speed: tuple[float, float], epochs: int, images: int) -> float:
    """Minutes of a training at ``speed``, a pace (seconds per image-epoch, per validation
    pass)."""
    return epochs * (images * speed[0] + speed[1]) / 60
