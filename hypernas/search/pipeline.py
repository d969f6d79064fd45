"""One search, end to end: train the hypernetwork, rank, screen the top, fit the finalists, export.

1. take the hypernetwork shipped with the package for this space, settings, data and resolution
   (``ranking.pretrained``; trained once for far longer than a search can), or, where none is
   shipped or ``pretrained=False``, train one over the space for a share of the budget;
2. rank random candidates by the loss of their predicted weights, as many as fit in a quarter
   of the time left (``RANK_SHARE``, timed on the first ``RANK_PROBE``);
3. screen the top of that ranking, in rank order, with short real training from random weights
   (a refinement study in ``runs/<name>/study.db``) for what the budget leaves;
4. train the few best-screened candidates (the finalists, 3 by default) with a longer recipe
   (NB201's, 5 epochs) from random weights and keep the one with the best validation accuracy;
5. export that model.

With ``workers`` (Ray), ranking, screening and the finalists' trainings run that many at once.

Screening starts from random weights on purpose: measured on the Fashion-MNIST truth cells
(benchmarks/screen_signal.py), a short training from *predicted* weights mostly repeats the
hypernetwork's own ranking (Spearman 0.85 with it, 0.67 with the truth), while the same training
from random weights is a second opinion of its own (0.59 with the hypernetwork, 0.80 with the
truth). The hypernetwork chooses which candidates are worth that training; the training chooses
among them. A two-epoch screen is too noisy to pick *the* best of a good top (on the 100 truth
cells it agrees with the truth at Spearman 0.80 overall but -0.02 inside the best ten, which lie
within 0.44 points), so the last choice is made on the longer training of a few finalists:
successive halving with two rungs. The finalists' training also starts from random weights:
with the hypernetwork a 15-minute search can train, five epochs from its predicted weights ended
3 points below five epochs from random weights on the same cell (docs/BENCHMARKS.md); predicted
weights pay off in short trainings (``hypernas refine``), not in a full one.

Every stage writes into ``runs/<name>/`` and resumes from what is there, so running the same
search again after a kill (at any point) continues where it stopped; a finished search re-run
only re-prints its result. The default is the embedded one: NB201 (C=16, N=1) on Fashion-MNIST
at 16x16, sized to finish on 2 CPU cores in about 15 minutes.

The search's settings are a :class:`~hypernas.search.config.SearchConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import optuna

from ..errors import HypernasError
from ..export.from_run import export_run
from ..ranking.probe import PROBE, load_probe
from ..ranking.racing import RaceConfig
from ..ranking.rank import rank_run
from ..ranking.run import LoadedRun, RunConfig, start_run, train_run
from ..ranking.scoring import chance_warning
from ..ranking.uncertainty import UCB, write_ucb
from ..refine.fit import fit_candidate
from ..refine.optimize import refine_run
from ..refine.study import completed, finished, open_study, trial_row
from ..refine.train import TrainConfig
from ..runs.rankings import COMBINED, pareto_front, ranking_rows, write_combined
from ..runs.store import Run
from ..spaces.budget import fits_space, sample_within
from . import timing
from .config import SearchConfig

__all__ = ["run_search", "screen_order", "screen_label", "EXPORT_RESERVE_MIN", "FINALIST_SHARE",
           "RANK_SHARE"]

EXPORT_RESERVE_MIN = 0.5  # minutes kept back for the screening trial that overruns + export
SCREENED = "search_screened"  # study attribute: the search's screening stage has finished
FITTED = "search_fitted"  # study attribute: the finalists' trainings have finished
PLANNED = "search_free_minutes"  # study attribute: minutes free for screens and finalists
# after the first screen (the finalists' share is planned from it)
RANK_SHARE = 0.25  # at most this share of the time left after training goes to ranking (the
# default NB201 search ranks all 200 candidates well inside it; on macro, where a candidate
# costs more, it ranks fewer rather than leave screening no time)
RANK_PROBE = 16  # candidates ranked first, to time ranking on this machine
RACE_TOP_K = 50  # the hypernet races candidates over its images to this top (ranking.racing)
FINALIST_SHARE = 0.5  # at most this share of the time free after the first screen goes to
# finalists beyond the first (measured at 1 thread: a finalist's training costs 4-5 screens)


def run_search(cfg: SearchConfig, on_event: Callable[[str, dict[str, Any]], None] | None = None
               ) -> dict[str, Any]:
    """Train, rank, screen, fit and export (each resumed from the run folder); returns the
    ranking rows, the winner's row, the finalists' validation accuracies (``{id: acc}``) and
    the export path. ``on_event(stage, info)`` reports progress."""
    def event(stage: str, **info: Any) -> None:
        if on_event is not None:
            on_event(stage, info)

    begun = time.monotonic()
    run = Run(cfg.run)
    loaded = start_run(run, _run_config(cfg, run))
    meter = cfg.budget.run_meter(run.latency_path)
    fits_space(loaded.space, cfg.budget, meter)  # before any training: a budget nothing meets
    if cfg.screen_rule == PROBE:  # before any training: a probe rule with no probe to follow
        try:
            load_probe(run)
        except HypernasError as err:
            raise HypernasError(f"--screen-by probe: {err}; or screen by the ranking: "
                                "--screen-by ucb") from None
    shipped = loaded.config.pretrained
    if shipped:
        train = loaded.config.train
        event("pretrained", run=str(run.path), name=shipped, steps=train.steps)
    else:
        event("train", run=str(run.path), minutes=cfg.train_minutes)
    summary = train_run(loaded, on_log=lambda row: event("train-step", **row))
    event("trained", **summary)
    started = time.monotonic()
    # training's share counts in full even when a resumed call found it done
    spent = max(started - begun, 0 if shipped else 60 * cfg.train_minutes)
    with contextlib.ExitStack() as held:
        if cfg.workers:  # one Ray session for ranking, screening and the finalists
            from ..cluster import ray_session

            held.enter_context(ray_session(cfg.address, cfg.workers))
        cands = sample_within(loaded.space, cfg.budget, cfg.candidates, seed=cfg.seed,
                              meter=meter)

        def elapsed() -> float:  # minutes
            return (spent + time.monotonic() - started) / 60

        event("rank", candidates=len(cands), workers=cfg.workers, budget=cfg.budget.describe(),
              combine=cfg.combine, share=RANK_SHARE, scorer=_label(cfg))
        if not run.study_path.exists():  # once screening has begun, the ranking is final
            n, each = _rank(loaded, cands, cfg, cfg.budget_minutes - elapsed(),
                            lambda rows: event("ranked-rows", rows=len(rows)))
            event("ranked", ranked=n, of=len(cands), seconds_each=each)
        ranked = ranking_rows(run, "hypernet")  # the probe has no chance level to fall to
        warning = chance_warning([ranked[c.id] for c in cands if c.id in ranked],
                                 loaded.data.num_classes)
        if warning:
            event("warning", text=warning)
        if not (run.study_path.exists() and open_study(run, cfg.seed).user_attrs.get(SCREENED)):
            _screen(loaded, cfg, elapsed, event)
        best, finalists = _fit_finalists(loaded, cfg, elapsed, event)
    out = run.exports_dir / "best"
    event("export", out=str(out))
    card = _export(loaded, out, best, cfg)
    ranked = sorted(ranking_rows(run, _label(cfg)).values(), key=lambda r: -r["score"])
    return {"run": run, "ranking": ranked, "ranked_by": _label(cfg), "best": best,
            "finalists": finalists, "export": out, "card": card}


def _label(cfg: SearchConfig) -> str:
    """The ranking a search reports: the probe's with the probe rule, else the hypernet's."""
    return PROBE if cfg.screen_rule == PROBE else "hypernet"


def _run_config(cfg: SearchConfig, run: Run) -> RunConfig:
    """The shipped hypernetwork's run config where one matches (unless the run exists and
    trained its own: a resumed search keeps what it started with), else the search's own."""
    if run.exists() and not run.read_config().get("pretrained"):
        return cfg.run_config()
    return cfg.shipped_config() or cfg.run_config()


def _screen(loaded: LoadedRun, cfg: SearchConfig, spent: Callable[[], float],
            event: Callable) -> None:
    """Screen the top of the ranking while the budget, after what is ``spent()`` (minutes),
    still holds one more screen, the finalists' trainings and the export. The finalists'
    minutes are estimated again after every screen, from the current best screens' own paces
    (the best screens are often larger cells than the first one timed), and they get at most
    ``FINALIST_SHARE`` of the time free when screening began (at least one finalist):
    screening more of the top matters as much."""
    def on_trial(t: dict[str, Any]) -> None:
        event("trial", **t)

    run = loaded.run
    screen = cfg.screen_config(ranking=screen_label(run, cfg))
    event("refine", top=screen.top, ranking=screen.ranking, trials=screen.trials,
          explore=screen.explore,
          minutes=cfg.budget_minutes - spent())
    if timing.pace(open_study(run, cfg.seed)) is None:  # time one trial first
        refine_run(loaded, dataclasses.replace(screen, trials=1), on_trial=on_trial,
                   workers=cfg.workers, address=cfg.address)
    study = open_study(run, cfg.seed)
    if PLANNED not in study.user_attrs:  # kept, so that a resumed search plans the same way
        trial_min = timing.minutes(timing.pace(study), cfg.screen_epochs, cfg.screen_train_size)
        study.set_user_attr(PLANNED, cfg.budget_minutes - spent() - EXPORT_RESERVE_MIN - trial_min)
    share = FINALIST_SHARE * study.user_attrs[PLANNED]
    images = cfg.fit_train_size or len(loaded.data.train)

    def keep_going(study: optuna.Study) -> bool:
        pace = timing.pace(study)
        best = [timing.pace_of(t) for t in screen_order(study)]
        fits = timing.finalist_minutes(best, pace, cfg.finalists, share, cfg.fit_epochs, images,
                                       _parallel(cfg))
        trial_min = timing.minutes(pace, cfg.screen_epochs, cfg.screen_train_size)
        return spent() + trial_min + fits + EXPORT_RESERVE_MIN <= cfg.budget_minutes

    if finished(study) < screen.trials and keep_going(study):
        study = refine_run(loaded, screen, on_trial=on_trial, workers=cfg.workers,
                           address=cfg.address, keep_going=keep_going)
    # the budget may have stopped it short of its trials: a re-run must not add more
    study.set_user_attr(SCREENED, True)


def screen_order(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished screens, best validation accuracy first (ties: the better-ranked one, then
    the earlier explored one)."""
    done = completed(study, fits=False)
    if not done:
        raise HypernasError("no screening trial finished; run the search again to continue")
    return sorted(done, key=lambda t: (-t.value, t.params.get("rank", t.user_attrs.get(
        "rank", math.inf)), t.number))


def _fit_finalists(loaded: LoadedRun, cfg: SearchConfig, spent: Callable[[], float],
                   event: Callable) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the ``cfg.finalists`` best screens with the fit recipe, best first: the first
    always, each further one only if its estimated time (from its own screen's pace) still fits
    in the budget beside the export. With Ray workers they train at once, as many as there are
    workers, and the time is planned in such waves. Fits already in the study are kept (a
    killed search resumes with the next finalist). Returns the row of the fit with the best
    validation accuracy (ties: the better screen) and ``{id: validation accuracy}`` of every
    fit."""
    run = loaded.run
    study = open_study(run, cfg.seed)
    finalists = screen_order(study)[:cfg.finalists]
    fits = {t.user_attrs["fit_of"]: t for t in completed(study) if "fit_of" in t.user_attrs}
    if not study.user_attrs.get(FITTED):
        recipe = cfg.fit_recipe(loaded.config.resolution)
        images = recipe.train_size or len(loaded.data.train)
        parallel, begun = _parallel(cfg), spent()
        chosen: list[tuple[int, optuna.trial.FrozenTrial]] = []
        minutes: list[float] = []
        for place, screen in enumerate(finalists, start=1):
            if screen.number in fits:
                continue
            pace = timing.pace_of(screen) or timing.pace(study)
            each = timing.minutes(pace, cfg.fit_epochs, images) if pace is not None else 0.0
            if parallel == 1:
                begun, minutes = spent(), []  # one at a time: the clock is read before each
            if (fits or chosen) and (begun + timing.waves(minutes + [each], parallel)
                                     + EXPORT_RESERVE_MIN > cfg.budget_minutes):
                continue  # a smaller finalist further down may still fit
            chosen.append((place, screen))
            minutes.append(each)
            event("fit", id=screen.user_attrs["id"], epochs=cfg.fit_epochs, place=place,
                  finalists=len(finalists), screen_acc=screen.value,
                  warm_start=cfg.fit_warm_start)
            if parallel == 1:
                fits[screen.number] = _fit_one(loaded, cfg, recipe, place, screen, event)
        if parallel > 1 and chosen:
            fits.update(_fit_many(loaded, cfg, recipe, chosen, event))
        # the budget may have stopped it short of its finalists: a re-run must not add more
        open_study(run, cfg.seed).set_user_attr(FITTED, True)
    place = {t.number: i for i, t in enumerate(finalists)}
    best = max(fits.values(),
               key=lambda t: (t.value, -place.get(t.user_attrs["fit_of"], len(place))))
    return trial_row(run, best.number), {t.user_attrs["id"]: t.value for t in fits.values()}


def _parallel(cfg: SearchConfig) -> int:
    """How many finalists train at once: one per Ray worker (one in this process)."""
    return cfg.workers if cfg.workers and cfg.workers > 1 else 1


def _fit_one(loaded: LoadedRun, cfg: SearchConfig, recipe: TrainConfig, place: int,
             screen: optuna.trial.FrozenTrial, event: Callable) -> optuna.trial.FrozenTrial:
    """One finalist trained in this process; its fit trial."""
    row = fit_candidate(loaded, screen.number, recipe, warm_start=cfg.fit_warm_start)
    event("fitted", id=row["id"], place=place, screen_acc=screen.value, val_acc=row["val_acc"])
    return open_study(loaded.run, cfg.seed).trials[row["trial"]]


def _fit_many(loaded: LoadedRun, cfg: SearchConfig, recipe: TrainConfig,
              chosen: list[tuple[int, optuna.trial.FrozenTrial]],
              event: Callable) -> dict[int, optuna.trial.FrozenTrial]:
    """The ``chosen`` finalists (place, screen) trained at once on Ray workers; their fit
    trials by screen number."""
    from ..refine.on_tune import fit_on_tune

    screens = {screen.number: (place, screen) for place, screen in chosen}

    def fitted(row: dict[str, Any]) -> None:
        place, screen = screens[row["fit_of"]]
        event("fitted", id=row["id"], place=place, screen_acc=screen.value,
              val_acc=row["val_acc"])

    rows = fit_on_tune(loaded, list(screens), recipe, warm_start=cfg.fit_warm_start,
                       workers=cfg.workers, address=cfg.address, on_fitted=fitted)
    trials = open_study(loaded.run, cfg.seed).trials
    return {row["fit_of"]: trials[row["trial"]] for row in rows}


def _rank(loaded: LoadedRun, cands: list, cfg: SearchConfig, minutes_left: float,
          on_rows: Callable) -> tuple[int, float | None]:
    """Rank with the hypernetwork and each proxy of ``cfg.combine`` as many of ``cands`` (in
    their drawn order) as fit in ``RANK_SHARE`` of ``minutes_left``, then write their rank
    average as the run's combined ranking (what the screening then follows). The first
    ``RANK_PROBE`` candidates not yet ranked are scored first and timed; the pace they set
    decides how many more are. Returns how many of ``cands`` are ranked and the seconds one
    took (None when nothing was left to rank)."""
    if cfg.screen_rule == PROBE:  # a linear read-out of the graph embedding: rank them all
        have = ranking_rows(loaded.run, PROBE)
        begun = time.monotonic()
        rank_run(loaded, cands, PROBE, on_rows=on_rows)
        todo = sum(c.id not in have for c in cands)
        return len(cands), (time.monotonic() - begun) / todo if todo else None
    scorers = ("hypernet", *cfg.combine)
    race = RaceConfig(top_k=min(RACE_TOP_K, len(cands)))

    def score(batch: list) -> None:
        for scorer in scorers:
            if not batch:
                return
            race_of = race if scorer == "hypernet" else None
            if cfg.workers:
                from ..ranking.on_ray import rank_on_ray

                rank_on_ray(loaded, batch, scorer, workers=cfg.workers, address=cfg.address,
                            on_rows=on_rows, race=race_of)
            else:
                rank_run(loaded, batch, scorer, on_rows=on_rows, race=race_of)

    def unranked() -> list:
        have = [ranking_rows(loaded.run, s) for s in scorers]
        return [c for c in cands if any(c.id not in h for h in have)]

    todo, each = unranked(), None
    if todo:
        begun = time.monotonic()
        score(todo[:RANK_PROBE])
        taken = time.monotonic() - begun
        each = taken / len(todo[:RANK_PROBE])
        more = int(max(60 * RANK_SHARE * minutes_left - taken, 0.0) / max(each, 1e-6))
        score(todo[RANK_PROBE:RANK_PROBE + more])
    if cfg.combine:
        write_combined(loaded.run, list(scorers))
    if cfg.screen_rule == "ucb":
        write_ucb(loaded.run)
    return len(cands) - len(unranked()), each


def screen_label(run: Run, cfg: SearchConfig) -> str | None:
    """The ranking the screening follows: the probe's with the probe rule; the run's ``ucb``
    ranking when the rule is ucb and the run has one (it has a calibration), else the combined
    one (None: the hypernet's)."""
    if cfg.screen_rule == PROBE:
        return PROBE
    if cfg.screen_rule == "ucb" and run.ranking_path(UCB).exists():
        return UCB
    return COMBINED if cfg.combine else None


def _export(loaded: LoadedRun, out: Path, best: dict[str, Any], cfg: SearchConfig
            ) -> dict[str, Any]:
    """Export the winner unless ``out`` already holds exactly it (a re-run)."""
    run = loaded.run
    card_path = out / "model_card.json"
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
            if card.get("trial") == best["trial"] and set(card.get("formats", ())) >= set(cfg.formats):
                return card
        except json.JSONDecodeError:
            pass
    extra = {"budget": cfg.budget.to_dict(),
             "pareto": front_place(loaded, best["id"], cfg)}
    return export_run(run, out, trial=best["trial"], formats=cfg.formats, force=True, extra=extra)


def front_place(loaded: LoadedRun, cand_id: str, cfg: SearchConfig) -> dict[str, Any]:
    """Where a candidate sits against the Pareto front (hypernet score against the budget's
    cost: latency, else MACs, else parameters) of the search's ranked candidates within its
    budget: its place on the front, or how many candidates beat it on both."""
    budget, run = cfg.budget, loaded.run
    rows = budget.rows_within(list(ranking_rows(run, "hypernet").values()), loaded.space,
                              run.latency_path)
    x = "latency_ms" if "latency" in budget.limits else "macs" if "macs" in budget.limits \
        else "params"
    front = pareto_front(rows, x)
    place = next((i for i, r in enumerate(front, start=1) if r["id"] == cand_id), None)
    mine = next((r for r in rows if r["id"] == cand_id), None)
    beaten_by = (0 if mine is None or place else
                 sum(r[x] <= mine[x] and r["score"] >= mine["score"]
                     and (r[x], r["score"]) != (mine[x], mine["score"]) for r in rows))
    return {"x": x, "front": len(front), "of": len(rows), "place": place,
            "beaten_by": beaten_by}
