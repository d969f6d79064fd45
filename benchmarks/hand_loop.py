"""The hand-written Ray loop that ran refinement trials before Ray Tune did (issue #19).

Removed from the package (``hypernas/refine/on_ray.py``) when ``hypernas refine --workers``
moved to Ray Tune (``hypernas/refine/on_tune.py``); kept here unchanged apart from its imports,
and without its finalist fits, only as the baseline ``benchmarks/refine_on_tune.py`` measures
Tune against. This process keeps the Optuna study and asks for trials; each Ray worker trains
one trial and sends back its per-epoch history and weights; the median rule of the in-process
pruner is applied on the worker from the finished trials' accuracies sent with the trial.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import optuna
import torch

from hypernas.cluster import lost_errors, ray_session
from hypernas.hypernet.trainer import checkpoint_from_bytes
from hypernas.ranking.run import LoadedRun, RunConfig, materialise, portable_config
from hypernas.refine.fit import initial_network
from hypernas.refine.plan import RefineConfig, plan_trial, seed_next
from hypernas.refine.study import StudyError, completed, finished, save_weights, state_bytes
from hypernas.refine.train import TrainConfig, train_network

__all__ = ["optimize_on_ray", "train_trial"]


def _median_rule(table: dict[int, list[float]], epoch: int, value: float) -> bool:
    """The median pruner's decision from finished trials' accuracies at each epoch: prune after
    the first epoch when at least 3 finished trials reached this epoch and did better."""
    seen = table.get(epoch, [])
    return epoch > 1 and len(seen) >= 3 and value < statistics.median(seen)


def train_trial(config: dict[str, Any], checkpoint: bytes | None, encoding: str,
                recipe: dict[str, Any], table: dict[int, list[float]]) -> dict[str, Any]:
    """What a Ray worker runs for one trial: train ``encoding`` with ``recipe`` from predicted
    (``checkpoint``) or random weights; ``history``, ``pruned`` and the weights' bytes back."""
    cfg = RunConfig.from_dict(config)
    space, data = materialise(cfg)
    hnet = (checkpoint_from_bytes(checkpoint, cfg.hypernet).eval() if checkpoint is not None
            else None)
    net = initial_network(space.replay(encoding), hnet)
    history: list[dict[str, float]] = []

    class Prune(Exception):
        pass

    def watch(row: dict[str, float]) -> None:
        history.append(row)
        if _median_rule(table, int(row["epoch"]), row["val_acc"]):
            raise Prune

    try:
        train_network(net, data.train, data.val, TrainConfig(**recipe), on_epoch=watch)
    except Prune:
        return {"history": history, "pruned": True, "weights": None}
    return {"history": history, "pruned": False, "weights": state_bytes(net)}


def _train_on_worker(*args: Any) -> dict[str, Any]:
    """:func:`train_trial` in a Ray worker's own process, with one torch thread (a process-wide
    setting, so it is made here and never in the caller's process)."""
    torch.set_num_threads(1)
    return train_trial(*args)


def _prune_table(study: optuna.Study) -> dict[int, list[float]]:
    table: dict[int, list[float]] = {}
    for t in completed(study):  # fits report no epochs: they add nothing here
        for step, value in t.intermediate_values.items():
            table.setdefault(int(step), []).append(value)
    return table


def optimize_on_ray(loaded: LoadedRun, study: optuna.Study, rows: Sequence[dict[str, Any]],
                    cfg: RefineConfig, workers: int, address: str | None,
                    report_trial: Callable,
                    in_time: Callable[[optuna.Study], bool] = lambda study: True,
                    retries: int = 3) -> None:
    """Ask/tell on this process, training on ``workers`` Ray workers until ``cfg.trials`` have
    finished or ``in_time(study)`` says no further trial may start (running ones finish); a
    trial whose worker is lost is failed and queued again with its parameters."""
    checkpoint = loaded.run.checkpoint_path.read_bytes() if cfg.warm_start else None
    with ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(_train_on_worker)
        config = ray.put(portable_config(loaded.config.to_dict()))
        blob, lost = ray.put(checkpoint), lost_errors(ray)
        running: dict[Any, optuna.Trial] = {}
        tries: dict[int, int] = {}
        asked = False  # the first trial of this call is asked whatever the deadline

        def more() -> bool:
            return (finished(study) + len(running) < cfg.trials
                    and (not asked or in_time(study)))

        while more() or running:
            while len(running) < workers and more():
                seed_next(study, rows, cfg)
                trial = study.ask()
                asked = True
                cand, recipe = plan_trial(trial, loaded, rows, cfg)
                ref = remote.remote(config, blob, cand.encoding, recipe.to_dict(),
                                    _prune_table(study) if cfg.prune else {})
                running[ref] = trial
            if not running:  # time ran out between the two checks
                break
            (ref,), _ = ray.wait(list(running), num_returns=1)
            trial = running.pop(ref)
            try:
                out = ray.get(ref)
            except lost as err:
                attempt = tries.get(trial.number, 0) + 1
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if attempt > retries:
                    raise StudyError(f"trial {trial.number} lost its worker {attempt} times "
                                     f"({err}); check `ray status`") from None
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                continue
            for row in out["history"]:
                trial.report(row["val_acc"], int(row["epoch"]))
            trial.set_user_attr("history", out["history"])
            if out["pruned"]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                save_weights(loaded.run, trial.number, out["weights"])
                study.tell(trial, out["history"][-1]["val_acc"])
            report_trial(study, study.trials[trial.number])
