"""The search: train, rank, screen, fit the finalists and export, within one time budget.

Takes a :class:`SearchConfig` (space, dataset, budget, workers); gives the run folder with every
stage's output, the winner's row and its export (``runs/<name>/exports/best/``). Every stage
resumes from what the run holds, so the same call after a kill continues where it stopped.

    config.py    SearchConfig: the whole search, shared out between the stages
    pipeline.py  run_search: the stages in order, and how the screens and finalists are chosen
    timing.py    how long trainings take, measured from the ones done; time kept for the last

Example:
    >>> SearchConfig().run
    'search-nb201-fashion-mnist'
"""

from . import timing
from .config import SearchConfig
from .pipeline import run_search, screen_order

__all__ = ["SearchConfig", "run_search", "screen_order", "timing"]
