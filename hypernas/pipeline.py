"""One search, end to end: train the hypernetwork, rank candidates, refine the top, export.

Every stage writes into ``runs/<name>/`` and resumes from what is there, so running the same
search again after a kill (at any point) continues where it stopped; a finished search re-run
only re-prints its result. The default is the embedded one: NB201 (C=16, N=1) on Fashion-MNIST
at 16x16, sized to finish on 2 CPU cores in about 15 minutes.

Example:
    >>> cfg = SearchConfig(budget_minutes=15)
    >>> round(cfg.train_minutes, 2), cfg.run
    (6.75, 'search-nb201-fashion-mnist')
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .data import DataConfig
from .errors import HypernasError
from .hypernet.model import HyperNetConfig
from .hypernet.trainer import HyperTrainConfig
from .refine import RefineConfig, best_refined, export_run, open_study, refine_run
from .runs import Run
from .workflow import LoadedRun, RunConfig, rank_run, ranking_rows, start_run, train_run

__all__ = ["SearchConfig", "run_search"]

TRAIN_SHARE = 0.45  # of the budget: hypernetwork training (ranking and refinement fill the rest)
EXPORT_RESERVE_MIN = 1.5  # minutes kept back from refinement for the trial that overruns + export
MIN_REFINE_MIN = 1.0  # refinement always gets at least this long (its seeds start in order)
REFINED = "search_refined"  # study attribute: the search's refinement stage has finished
DEFAULT_SETTINGS = {"nb201": {"C": 16, "N": 1}}
DEFAULT_RESOLUTION = {"fashion-mnist": 16}


@dataclass(frozen=True)
class SearchConfig:
    """A whole search; ``budget_minutes`` is shared out between the stages."""

    space: str = "nb201"  # search space name or .py path
    data: str = "fashion-mnist"  # dataset name (see `hypernas datasets`)
    space_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"N": 1}
    resolution: int | None = None  # square image side after resizing (None: the dataset's
    # default, 16 for Fashion-MNIST as in the truth set, else as stored)
    budget_minutes: float = 15.0  # the whole search, on the machine it runs on
    candidates: int = 200  # random candidates ranked by the hypernetwork
    top: int = 4  # ranked candidates refined with real training
    trials: int = 12  # refinement trials at most (the budget usually stops it first)
    max_epochs: int = 3  # epochs per refinement trial at most
    refine_train_size: int = 10_000  # training images per refinement trial
    workers: int | None = None  # Ray workers for ranking (None: in this process)
    address: str | None = None  # a running Ray cluster (with workers)
    formats: tuple[str, ...] = ("safetensors", "onnx", "pt2")  # export formats
    name: str | None = None  # run name (default search-SPACE-DATA)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget_minutes <= 0:
            raise HypernasError(f"--budget must be positive minutes, got {self.budget_minutes}")
        if self.candidates < 1:
            raise HypernasError(f"--n must be at least 1, got {self.candidates}")

    @property
    def run(self) -> str:
        return self.name or f"search-{Path(self.space).stem}-{self.data}"

    @property
    def train_minutes(self) -> float:
        return TRAIN_SHARE * self.budget_minutes

    def run_config(self) -> RunConfig:
        settings = {**DEFAULT_SETTINGS.get(self.space, {}), **self.space_settings}
        return RunConfig(space=self.space, space_settings=settings,
                         data=DataConfig(name=self.data, seed=self.seed),
                         resolution=self.resolution or DEFAULT_RESOLUTION.get(self.data),
                         hypernet=HyperNetConfig(),
                         train=HyperTrainConfig(budget_minutes=self.train_minutes, seed=self.seed))

    def refine_config(self, ranking_minutes: float = 0.0) -> RefineConfig:
        """Refinement gets what the budget leaves after training, ``ranking_minutes`` and a
        reserve for the last trial and the export (at least ``MIN_REFINE_MIN``)."""
        minutes = max(MIN_REFINE_MIN, self.budget_minutes - self.train_minutes - ranking_minutes
                      - EXPORT_RESERVE_MIN)
        return RefineConfig(top=self.top, trials=self.trials, max_epochs=self.max_epochs,
                            train_size=self.refine_train_size, budget_minutes=minutes,
                            seed=self.seed)


def run_search(cfg: SearchConfig, on_event: Callable[[str, dict[str, Any]], None] | None = None
               ) -> dict[str, Any]:
    """Train, rank, refine and export (each resumed from the run folder); returns the ranking
    rows, the refined winner and the export path. ``on_event(stage, info)`` reports progress."""
    def event(stage: str, **info: Any) -> None:
        if on_event is not None:
            on_event(stage, info)

    run = Run(cfg.run)
    loaded = start_run(run, cfg.run_config())
    event("train", run=str(run.path), minutes=cfg.train_minutes)
    summary = train_run(loaded, on_log=lambda row: event("train-step", **row))
    event("trained", **summary)
    cands = loaded.space.sample_many(cfg.candidates, seed=cfg.seed)
    event("rank", candidates=len(cands), workers=cfg.workers)
    started = time.monotonic()
    _rank(loaded, cands, cfg, lambda rows: event("ranked-rows", rows=len(rows)))
    if not (run.study_path.exists() and open_study(run, cfg.seed).user_attrs.get(REFINED)):
        refine = cfg.refine_config((time.monotonic() - started) / 60)
        event("refine", top=cfg.top, trials=cfg.trials, minutes=refine.budget_minutes)
        study = refine_run(loaded, refine, on_trial=lambda t: event("trial", **t),
                           workers=cfg.workers, address=cfg.address)
        # the budget may have stopped it short of cfg.trials: a re-run must not add trials
        study.set_user_attr(REFINED, True)
    best = best_refined(run)
    out = run.exports_dir / "best"
    event("export", out=str(out))
    card = _export(run, out, best, cfg)
    ranked = sorted(ranking_rows(run, "hypernet").values(), key=lambda r: -r["score"])
    return {"run": run, "ranking": ranked, "best": best, "export": out, "card": card}


def _rank(loaded: LoadedRun, cands: list, cfg: SearchConfig, on_rows: Callable) -> None:
    if cfg.workers:
        from .distributed import rank_on_ray

        rank_on_ray(loaded, cands, "hypernet", workers=cfg.workers, address=cfg.address,
                    on_rows=on_rows)
    else:
        rank_run(loaded, cands, "hypernet", on_rows=on_rows)


def _export(run: Run, out: Path, best: dict[str, Any], cfg: SearchConfig) -> dict[str, Any]:
    """Export the winner unless ``out`` already holds exactly it (a re-run)."""
    card_path = out / "model_card.json"
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
            if card.get("trial") == best["trial"] and set(card.get("formats", ())) >= set(cfg.formats):
                return card
        except json.JSONDecodeError:
            pass
    return export_run(run, out, arch=best["id"], formats=cfg.formats, force=True)
