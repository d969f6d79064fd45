"""The ``refine``, ``export`` and ``search`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import HypernasError
from ._common import _check_ray_args, _console, _parse_setting

__all__ = ["cmd_export", "cmd_refine", "cmd_search"]


def cmd_refine(args: argparse.Namespace) -> int:
    from ..ranking.run import load_run
    from ..refine.optimize import refine_run
    from ..refine.plan import RefineConfig
    from ..runs.store import Run

    cfg = RefineConfig(top=args.top, trials=args.trials, max_epochs=args.max_epochs,
                       mutations=args.mutations, warm_start=not args.random_init,
                       explore=args.explore,
                       ranking=args.ranking, budget_minutes=args.budget, seed=args.seed,
                       max_params=args.max_params, max_macs=args.max_macs,
                       max_latency_ms=args.max_latency_ms, latency_runtime=args.latency_runtime,
                       **({"scheduler": args.scheduler} if args.scheduler else {}))
    if args.scheduler and not args.workers:
        raise HypernasError("--scheduler chooses Ray Tune's early stopping: it needs --workers W "
                            "(in this process Optuna's median pruner stops trials)")
    loaded = load_run(Run(args.run))
    console = _console()

    def on_trial(t: dict[str, Any]) -> None:
        value = _outcome(t)
        recipe = t.get("recipe") or {}
        how = (f"mutation {t.get('mutation')}" if "mutation" in t
               else f"rank {t['rank']}" if t.get("base") else "explored")
        console.print(f"trial {t['number']:>3} [{t['finished']}/{t['of']}] {t.get('id', '?')} "
                      f"{how} epochs {recipe.get('epochs')} lr {recipe.get('lr', 0):.3g}: "
                      f"{value}", markup=False)

    _check_ray_args(args, "W (trials trained at once)")
    study = refine_run(loaded, cfg, on_trial=on_trial, workers=args.workers, address=args.address)
    best = study.best_trial
    console.print(f"best: trial {best.number}, {best.user_attrs['id']} val acc {best.value:.4f} "
                  f"({best.user_attrs['encoding']}); study {loaded.run.study_path}", markup=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export.from_run import export_run
    from ..runs.store import Run

    formats = [f for f in args.format.split(",") if f]
    card = export_run(Run(args.run), args.out, arch=args.arch, formats=formats, force=args.force,
                      raw_input=args.raw_input)
    console = _console()
    console.print(f"exported {card['id']} ({card['encoding']}), test acc "
                  f"{card['test_acc']:.4f}, to {args.out}: {', '.join(sorted(card['files']))}",
                  markup=False)
    if card.get("input"):
        c = card["input"]
        console.print(f"inputs: raw {'x'.join(map(str, c['raw_shape']))} -> "
                      f"x{c['scale']:.4g}, -{c['mean']}, /{c['std']}"
                      + (f", area-resized to {'x'.join(map(str, c['input_size']))}"
                         if c['input_size'] != c['raw_shape'] else "")
                      + (" (inside the ONNX / .pt2 files)" if card.get("onnx_input") == "raw"
                         else f"; hypernas.load(\"{args.out}\").transform does it"),
                      markup=False)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..ranking.uncertainty import run_uncertainty
    from ..refine.study import refined_rows
    from ..search.config import SearchConfig
    from ..search.pipeline import RANK_SHARE, run_search
    from ..spaces.defaults import describe_defaults, with_defaults
    from .console import candidates_screened_table, ranking_table

    formats = tuple(f for f in args.format.split(",") if f)
    cfg = SearchConfig(space=args.space, data=args.data,
                       space_settings=dict(_parse_setting(s) for s in args.set or []),
                       resolution=args.resolution, budget_minutes=args.budget,
                       candidates=args.n, top=args.top, trials=args.trials,
                       finalists=args.finalists, explore_after=args.explore_after,
                       workers=args.workers, address=args.address,
                       formats=formats, name=args.run, seed=args.seed,
                       data_seed=args.data_seed,
                       combine=tuple(p for p in args.combine.split(",") if p and p != "none"),
                       pretrained=args.pretrained, max_params=args.max_params,
                       max_macs=args.max_macs, max_latency_ms=args.max_latency_ms,
                       latency_runtime=args.latency_runtime, screen_rule=args.screen_by)
    _check_ray_args(args, "K (the number of scoring actors)")
    console, err = _console(), _console(stderr=True)
    last_log = {"step": 0}

    told = describe_defaults(cfg.space, cfg.data, with_defaults(
        cfg.space, cfg.data, cfg.space_settings, cfg.resolution)[2])
    if told:
        console.print(told, markup=False)

    def on_event(stage: str, info: dict[str, Any]) -> None:
        if stage == "train":
            console.print(f"[1/5] training the hypernetwork for {info['minutes']:.1f} min "
                          f"-> {info['run']}", markup=False)
        elif stage == "pretrained":
            console.print(f"[1/5] ranking with the shipped hypernetwork {info['name']} (trained "
                          f"{info['steps']:,} steps; --no-pretrained trains the search's own) "
                          f"-> {info['run']}", markup=False)
        elif stage == "warning":
            err.print(f"warning: {info['text']}", style="bold yellow", markup=False,
                      soft_wrap=True)
        elif stage == "train-step":
            if info["step"] - last_log["step"] >= 100:
                last_log["step"] = info["step"]
                err.print(f"      step {info['step']}: loss {info['loss']:.3f} acc "
                          f"{info['acc']:.3f}", markup=False)
        elif stage == "rank":
            console.print(f"[2/5] ranking {info['candidates']} candidates"
                          + (f" within {info['budget']}" if info["budget"] != "no budget" else "")
                          + (" by the probe (the hypernetwork's graph embedding read out "
                             "toward the screens' accuracy)" if info.get("scorer") == "probe"
                             else f" by the hypernet and {', '.join(info['combine'])} (rank "
                             "average)" if info.get("combine") else " by the hypernet")
                          + (f" on {info['workers']} Ray workers" if info["workers"] else ""),
                          markup=False)
        elif stage == "ranked" and info["ranked"] < info["of"]:
            console.print(f"      ranked {info['ranked']} of {info['of']} candidates: "
                          f"{info['seconds_each']:.2f} s each, and ranking gets at most "
                          f"{100 * RANK_SHARE:.0f} % of the time left (--budget gives it more)",
                          markup=False)
        elif stage == "refine":
            order = ("by the upper end of their calibrated 80 % accuracy interval"
                     if info.get("ranking") == "ucb" else "in rank order")
            then = (", then candidates of the whole space picked by Optuna's TPE from "
                    "their accuracies," if info.get("explore") else "")
            console.print(f"[3/5] screening up to {info['top']} of the best-ranked, {order}"
                          f"{then} with short trainings from random weights "
                          f"({info['minutes']:.1f} min left)",
                          markup=False)
        elif stage == "trial":
            value = _outcome(info)
            where = (f"rank {info.get('rank')}" if info.get("base") or "mutation" in info
                     else "explored")
            mutation = f", mutation {info['mutation']}" if "mutation" in info else ""
            console.print(f"      trial {info['number']} ({where}, {info.get('id', '?')}"
                          f"{mutation}): {value}", markup=False)
        elif stage == "fit":
            n = info["finalists"]
            if not last_log.get("fitting"):  # the stage's header, once per call
                last_log["fitting"] = True
                which = "the best screen" if n == 1 else f"the {n} best screens"
                console.print(f"[4/5] training {which} for {info['epochs']} epochs from "
                              + ("their predicted weights" if info["warm_start"]
                                 else "random weights") + " (while the budget lasts)",
                              markup=False)
        elif stage == "fitted":
            console.print(f"      finalist {info['place']}: {info['id']} screened "
                          f"{info['screen_acc']:.4f} -> val acc {info['val_acc']:.4f}",
                          markup=False)
        elif stage == "export":
            console.print(f"[5/5] exporting the winner -> {info['out']}", markup=False)

    result = run_search(cfg, on_event)
    screened = {i: r["val_acc"] for i, r in refined_rows(result["run"], fits=False).items()}
    calibration, ann = run_uncertainty(result["run"])  # intervals where the run is calibrated
    rows = [{**r, "rank": i, **ann.get(r["id"], {})}
            for i, r in enumerate(result["ranking"], start=1)][:args.show]
    console.print(ranking_table(rows, {"screened val acc": screened,
                                              "finalist val acc": result["finalists"]},
                                title=f"{cfg.run}: top {len(rows)} of {len(result['ranking'])} "
                                      f"by {result['ranked_by']} score", calibration=calibration,
                                pool=len(ann)))
    explored = _explored_rows(result["run"], {r["id"] for r in result["ranking"]})
    if explored:
        console.print(candidates_screened_table(
            explored, result["finalists"], title=f"{cfg.run}: {len(explored)} candidates TPE "
            "picked from the whole space (not ranked), best screen first"))
    card = result["card"]
    console.print(f"winner: {card['id']} {card['encoding']}", markup=False)
    console.print(f"        val acc {card['val_acc']:.4f} ± {card['val_acc_se']:.4f}, test acc "
                  f"{card['test_acc']:.4f} ± {card['test_acc_se']:.4f} (± one standard error "
                  f"of the {card['val_images']:,} and {card['test_images']:,} images), "
                  f"{card['params']:,} params", markup=False)
    tie = _tie_note(card, result["finalists"])
    if tie:
        console.print(f"        {tie}", markup=False)
    console.print(f"exported to {result['export']} ({', '.join(sorted(card['files']))}); "
                  f"load it with hypernas.load(\"{result['export']}\")"
                  + ("; its .transform prepares raw images (the card's input contract)"
                     if card.get("input") else ""), markup=False)
    from ..report import write_report

    try:
        console.print(f"report: {write_report(result['run'])} (hypernas report {cfg.run} "
                      "--png DIR for the figures as images)", markup=False)
    except Exception as e:  # noqa: BLE001 - the search's results are written; only the page failed
        err.print(f"warning: the HTML report could not be written ({e}); the search's results "
                  f"are in {result['run'].path}: try hypernas report {cfg.run}", markup=False)
    return 0


def _tie_note(card: dict[str, Any], finalists: dict[str, float]) -> str | None:
    """A warning when the winner's lead over the runner-up finalist (validation accuracy, one
    training each) is under two standard errors of the winner's measurement.

    >>> _tie_note({"id": "a", "val_acc": 0.880, "val_acc_se": 0.005}, {"a": 0.880, "b": 0.875})
    'runner-up finalist 0.0050 behind, under two standard errors: not told apart'
    >>> _tie_note({"id": "a", "val_acc": 0.880, "val_acc_se": 0.001}, {"a": 0.880, "b": 0.875})
    """
    others = sorted((v for k, v in finalists.items() if k != card["id"]), reverse=True)
    if not others or card["val_acc"] - others[0] >= 2 * card["val_acc_se"]:
        return None
    return (f"runner-up finalist {card['val_acc'] - others[0]:.4f} behind, under two standard "
            "errors: not told apart")


def _outcome(trial: dict[str, Any]) -> str:
    """A screening or refinement trial's outcome as both trial printers word it.

    >>> _outcome({"value": 0.81234, "state": "COMPLETE"})
    'val acc 0.8123'
    >>> _outcome({"value": None, "state": "PRUNED", "over_budget": True})
    'over the budget, not trained'
    """
    if trial.get("over_budget"):
        return "over the budget, not trained"
    return f"val acc {trial['value']:.4f}" if trial["value"] is not None else trial["state"].lower()


def _explored_rows(run: Any, ranked: set[str]) -> list[dict[str, Any]]:
    """The screened candidates that are not in the ranking (an exploring search's TPE picks):
    the best screen of each, best first, with its parameters and multiply-adds."""
    from ..refine.study import refined_rows

    rows = [{**r, "id": i} for i, r in refined_rows(run, fits=False).items() if i not in ranked]
    return sorted(rows, key=lambda r: (-r["val_acc"], r["trial"]))
