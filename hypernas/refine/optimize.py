"""The run's refinement study, optimised in this process (or, with workers, on Ray).

:func:`refine_run` seeds the study with the ranking's top candidates in rank order, asks Optuna
for trials until enough have finished or the time is up, trains each from predicted (or random)
weights, reports its validation accuracy after every epoch and lets the median pruner stop the
ones that fall behind. Run again after a kill, it recovers the interrupted trial first.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import optuna

from ..errors import HypernasError
from ..ranking.run import LoadedRun
from ..runs.rankings import ranked_rows
from .fit import initial_network, warm_start_hypernet
from .plan import RefineConfig, plan_trial, seed_next
from .study import finished, open_study, recover_trials, run_lock, save_weights, state_bytes
from .train import train_network

__all__ = ["refine_run"]


def refine_run(loaded: LoadedRun, cfg: RefineConfig,
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               workers: int | None = None, address: str | None = None,
               keep_going: Callable[[optuna.Study], bool] | None = None) -> optuna.Study:
    """Run (or continue) the run's refinement study until ``cfg.trials`` trials have finished or
    ``cfg.budget_minutes`` have passed (no trial starts after that, running ones finish, and at
    least one trial runs per call); with ``workers`` > 1, that many trials train at once, as a
    Ray Tune experiment (see :func:`hypernas.refine.on_tune.optimize_on_tune`).
    ``keep_going(study)``, when given, is asked before each further trial starts, and ``False``
    stops the study like the deadline."""
    deadline = (time.monotonic() + 60 * cfg.budget_minutes if cfg.budget_minutes is not None
                else math.inf)

    def in_time(study: optuna.Study) -> bool:
        return time.monotonic() < deadline and (keep_going is None or keep_going(study))

    run = loaded.run
    rows = ranked_rows(run, cfg.ranking)  # all of them: a retried trial may name a lower rank
    if cfg.budget:
        rows = cfg.budget.rows_within(rows, loaded.space, run.latency_path)
        if not rows:
            raise HypernasError(f"no ranked candidate of run {run.name} fits "
                                f"{cfg.budget.describe()}; rank candidates within it first "
                                "(hypernas rank RUN --n N --max-params P)")
    hnet = warm_start_hypernet(loaded, cfg.warm_start)
    with run_lock(run):
        study = open_study(run, cfg.seed)

        def report_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if on_trial is not None:
                on_trial({"number": trial.number, "state": trial.state.name,
                          "value": trial.value, "finished": finished(study), "of": cfg.trials,
                          **trial.params, **trial.user_attrs})

        if workers is not None and workers > 1:  # recovers (or restores) trials itself
            from .on_tune import optimize_on_tune

            optimize_on_tune(loaded, study, rows, cfg, workers, address, report_trial, in_time)
            return study
        recover_trials(run, study)

        def objective(trial: optuna.Trial) -> float:
            cand, recipe = plan_trial(trial, loaded, rows, cfg)
            net = initial_network(cand, hnet)

            def report(row: dict[str, float]) -> None:
                trial.report(row["val_acc"], row["epoch"])
                if cfg.prune and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

            try:
                result = train_network(net, loaded.data.train, loaded.data.val, recipe,
                                       on_epoch=report)
            except KeyboardInterrupt:  # Optuna marks it failed; the next call runs it again
                trial.set_user_attr("interrupted", True)
                raise
            save_weights(run, trial.number, state_bytes(net))
            trial.set_user_attr("history", result.history)
            return result.val_acc

        first = True  # every call runs at least one trial, so a re-run always makes progress
        while finished(study) < cfg.trials and (first or in_time(study)):
            seed_next(study, rows, cfg, loaded.space)
            study.optimize(objective, n_trials=1, callbacks=[report_trial], gc_after_trial=False)
            first = False
    return study
