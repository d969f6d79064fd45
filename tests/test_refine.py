"""`hypernas refine` and `hypernas export` on a tiny run: the study is seeded with the ranking's
top-K, survives a kill, refuses another run's study file, and exports a loadable winner."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch

import hypernas as hn
from hypernas.cli import main
from hypernas.data import load_dataset
from hypernas.errors import HypernasError
from hypernas.refine import open_study
from hypernas.runs import Run

TINY = ["mlp", "--data", "digits", "--meta-batch", "2", "--batch-size", "8", "--dim", "8",
        "--samples", "2", "--set", "max_depth=2"]
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", *TINY, "--run", "t", "--steps", "3"]) == 0
    assert main(["rank", "t", "--n", "6", "--json"]) == 0
    return tmp_path


def _ranked(capsys) -> list[dict]:
    assert main(["show", "t", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_refine_starts_from_the_top_and_feeds_back_into_show(runs, capsys):
    top = [r["id"] for r in _ranked(capsys)[:2]]
    assert main(["refine", "t", "--top", "2", "--trials", "3", "--max-epochs", "1"]) == 0
    assert "best: trial" in capsys.readouterr().out
    study = open_study(Run("t", root=runs), create=False)
    trials = study.get_trials(states=DONE)
    assert len(trials) == 3
    assert [t.user_attrs["base"] for t in trials[:2]] == top       # seeded in rank order
    assert [t.params["rank"] for t in trials[:2]] == [1, 2]
    assert all(t.params["mutation"] == 0 and t.user_attrs["warm_start"] for t in trials[:2])
    assert all(len(t.intermediate_values) >= 1 for t in trials)    # an accuracy per epoch
    shown = {r["id"]: r for r in _ranked(capsys)}
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert shown.get(t.user_attrs["id"], {}).get("refined_val_acc", t.value) >= t.value - 1e-9
    assert all("refined_val_acc" in shown[i] for i in top)
    # asked again for 3: nothing to do; asked for 4: one more trial, the first three kept
    assert main(["refine", "t", "--top", "2", "--trials", "4", "--max-epochs", "1",
                 "--random-init"]) == 0
    again = open_study(Run("t", root=runs), create=False).get_trials(states=DONE)
    assert len(again) == 4 and [t.value for t in again[:3]] == [t.value for t in trials]
    assert again[3].user_attrs["warm_start"] is False


def test_budget_stops_new_trials_but_each_call_makes_progress(runs, capsys):
    argv = ["refine", "t", "--top", "2", "--trials", "4", "--max-epochs", "1"]
    assert main([*argv, "--budget", "1e-6"]) == 0       # spent at once: still one trial
    run = Run("t", root=runs)
    assert len(open_study(run, create=False).get_trials(states=DONE)) == 1
    assert main([*argv, "--budget", "1e-6"]) == 0
    assert len(open_study(run, create=False).get_trials(states=DONE)) == 2
    assert main(argv) == 0                              # no budget: on to the trial count
    assert len(open_study(run, create=False).get_trials(states=DONE)) == 4
    assert main([*argv, "--budget", "0"]) == 2
    assert "--budget must be positive" in capsys.readouterr().err


def test_keep_going_is_asked_before_each_further_trial(runs):
    from hypernas.refine import RefineConfig, refine_run
    from hypernas.ranking import load_run

    loaded = load_run(Run("t", root=runs))
    cfg = RefineConfig(top=3, trials=5, max_epochs=1, seed=0)
    seen = []

    def keep_going(study: optuna.Study) -> bool:
        seen.append(len(study.get_trials(states=DONE)))
        return seen[-1] < 2

    study = refine_run(loaded, cfg, keep_going=keep_going)
    assert len(study.get_trials(states=DONE)) == 2 and seen == [1, 2]  # the first always runs
    study = refine_run(loaded, cfg, keep_going=lambda study: False)    # each call: one trial
    assert len(study.get_trials(states=DONE)) == 3


def test_the_finalists_time_is_planned_from_the_best_screens_own_paces():
    from hypernas.search.timing import finalist_minutes, minutes

    small, large = (1e-3, 2.0), (4e-3, 8.0)
    one_small, one_large = minutes(small, 5, 10_000), minutes(large, 5, 10_000)
    assert one_large > 3 * one_small
    # the best screens decide, in their order; a missing screen counts at the median pace
    assert finalist_minutes([large, small], small, 2, 1e9, 5, 10_000) == \
        pytest.approx(one_large + one_small)
    assert finalist_minutes([large], small, 3, 1e9, 5, 10_000) == \
        pytest.approx(one_large + 2 * one_small)
    assert finalist_minutes([None, large], small, 2, 1e9, 5, 10_000) == \
        pytest.approx(one_small + one_large)
    # as many as the share holds, but always the first
    assert finalist_minutes([small, large, small], small, 3, one_small + one_large, 5,
                             10_000) == pytest.approx(one_small + one_large)
    assert finalist_minutes([large, small], small, 2, one_small, 5, 10_000) == \
        pytest.approx(one_large)


def test_a_larger_top_continues_the_same_study(runs, capsys):
    # the base is a rank, not a categorical id: Optuna refuses categorical choices that change
    argv = ["refine", "t", "--trials", "2", "--max-epochs", "1", "--mutations", "0"]
    assert main([*argv, "--top", "1"]) == 0
    assert main([*argv[:2], "--trials", "4", "--max-epochs", "1", "--top", "3"]) == 0
    trials = open_study(Run("t", root=runs), create=False).get_trials(states=DONE)
    capsys.readouterr()
    ranked = [r["id"] for r in _ranked(capsys)]
    assert len(trials) == 4
    assert trials[0].user_attrs["base"] == ranked[0]
    assert [t.user_attrs["base"] for t in trials if "seed_of" in t.user_attrs][1:] == ranked[1:3]


def test_fit_candidate_records_a_longer_training_in_the_study(runs, capsys):
    from hypernas.refine import StudyError, fit_candidate
    from hypernas.refine.train import TrainConfig
    from hypernas.ranking import load_run

    assert main(["refine", "t", "--top", "1", "--trials", "1", "--max-epochs", "1"]) == 0
    loaded = load_run(Run("t", root=runs))
    recipe = TrainConfig(epochs=2, lr=0.05, train_size=None, resolution=None)
    row = fit_candidate(loaded, 0, recipe, warm_start=False)
    study = open_study(loaded.run, create=False)
    fit = study.trials[row["trial"]]
    assert row["trial"] == 1 and fit.value == row["val_acc"] and fit.user_attrs["fit_of"] == 0
    assert fit.user_attrs["id"] == study.trials[0].user_attrs["id"]
    assert fit.params["epochs"] == 2 and fit.user_attrs["recipe"]["lr"] == 0.05
    assert len(fit.user_attrs["history"]) == 2 and not fit.intermediate_values  # no pruner input
    assert row["weights"].exists()
    out = runs / "fit"
    assert main(["export", "t", "--out", str(out), "--format", "safetensors"]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["trial"] == (1 if fit.value >= study.trials[0].value else 0)
    study.enqueue_trial({"rank": 1, "mutation": 0, "lr": 0.05, "weight_decay": 1e-4, "epochs": 1})
    study.ask()                                  # left RUNNING, as a kill leaves it
    with pytest.raises(StudyError, match="did not finish"):
        fit_candidate(loaded, 2, recipe)


@pytest.mark.filterwarnings("ignore:Fixed parameter rank")  # rank 2 retried under --top 1
def test_a_trial_killed_mid_run_is_retried_with_its_parameters(runs, capsys):
    run = Run("t", root=runs)
    study = open_study(run)
    second = _ranked(capsys)[1]["id"]
    study.enqueue_trial({"rank": 2, "mutation": 1, "lr": 0.05, "weight_decay": 1e-4,
                         "epochs": 1})
    stuck = study.ask()                       # what a kill -9 leaves: a RUNNING trial
    assert stuck.suggest_int("rank", 1, 2) == 2
    assert stuck.suggest_int("mutation", 0, 4) == 1
    assert main(["refine", "t", "--top", "1", "--trials", "2", "--max-epochs", "1"]) == 0
    trials = open_study(run, create=False).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retried) == 1 and retried[0].params["mutation"] == 1
    assert retried[0].params["rank"] == 2 and retried[0].user_attrs["base"] == second  # --top 1
    assert retried[0].state in DONE
    assert len([t for t in trials if t.state in DONE]) == 2


def _finished(run: Run) -> bool:
    """Whether the study file holds a finished trial, read without writing to it."""
    if not run.study_path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{run.study_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
                              ).fetchone()[0] > 0
    except sqlite3.Error:  # the schema is being created
        return False


def test_processes_opening_a_new_study_at_once_all_get_it(tmp_path):
    ctx = multiprocessing.get_context("fork")

    def opener(root, start, results):
        start.wait()
        try:
            open_study(Run("t", root=root))
            results.put("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results.put(f"{type(exc).__name__}: {exc}")

    for attempt in range(3):              # the race is lost about half the time per round
        root = tmp_path / str(attempt)
        (root / "t").mkdir(parents=True)
        start, results = ctx.Barrier(5), ctx.Queue()
        procs = [ctx.Process(target=opener, args=(root, start, results)) for _ in range(4)]
        for p in procs:
            p.start()
        start.wait()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert outcomes == ["ok"] * 4
        assert open_study(Run("t", root=root), create=False).user_attrs["run"] == "t"


def _tune_snapshot_holds_a_running_trial(run: Run) -> bool:
    """Whether Tune's last snapshot in the run folder holds a trial that has reported an epoch
    and that the study still has running (so a restore has something to resume)."""
    states = sorted(run.tune_dir.glob("refine-1/experiment_state-*.json"))
    if not states or not run.study_path.exists():
        return False
    try:
        trials = [json.loads(t[0]) | json.loads(t[1])
                  for t in json.loads(states[-1].read_text())["trial_data"]]
        with sqlite3.connect(f"file:{run.study_path}?mode=ro", uri=True) as db:
            running = {n for (n,) in db.execute("SELECT number FROM trials "
                                                "WHERE state = 'RUNNING'")}
    except (OSError, ValueError, KeyError, sqlite3.Error):  # being written
        return False
    return any(t["status"] == "RUNNING" and t["last_result"].get("epoch")
               and t["config"]["number"] in running for t in trials)


def _kill_9_after_a_trial(runs: Path, argv: list[str], reporting: bool = False) -> None:
    """Run ``hypernas ARGV`` and SIGKILL it as soon as its first trial has finished (and, with
    ``reporting``, Tune's snapshot holds a running trial that has reported an epoch; Tune
    snapshots its experiment every half second here instead of every 10 s or more)."""
    log = runs / "refine.log"
    env = {**os.environ, "HYPERNAS_RUNS": str(runs), "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hypernas", *argv], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    # watched read-only: opening the study here would race the refinement's own creation of it
    run = Run("t", root=runs)
    while time.monotonic() < deadline and proc.poll() is None and not (
            _finished(run) and (not reporting or _tune_snapshot_holds_a_running_trial(run))):
        time.sleep(0.05)
    assert proc.poll() is None, f"refine exited early:\n{log.read_text()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_mid_refine_then_rerun_reaches_the_trial_count(runs):
    run = Run("t", root=runs)
    _kill_9_after_a_trial(runs, ["refine", "t", "--top", "2", "--trials", "4",
                                 "--max-epochs", "4"])
    finished = open_study(run, create=False).get_trials(states=DONE)
    assert finished, "no trial finished in 180 s"
    assert main(["refine", "t", "--top", "2", "--trials", "4", "--max-epochs", "4"]) == 0
    trials = open_study(run, create=False).trials
    done = [t for t in trials if t.state in DONE]
    assert len(done) == 4 and done[0].number == finished[0].number
    assert done[0].value == finished[0].value                       # kept, not redone
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="kills the driver mid-trial")
def test_kill_9_mid_tune_refine_then_rerun_restores_the_experiment(runs):
    pytest.importorskip("ray")
    run = Run("t", root=runs)
    argv = ["refine", "t", "--top", "2", "--trials", "6", "--max-epochs", "8", "--workers", "2"]
    _kill_9_after_a_trial(runs, argv, reporting=True)
    before = open_study(run, create=False).trials
    running = {t.number for t in before if t.state == optuna.trial.TrialState.RUNNING}
    assert running and not (runs / "t" / "tune" / "refine-1" / "finished").exists()
    assert main(argv) == 0
    # the same experiment went on (no refine-2); each trial it had saved finished under its own
    # number, one asked after its last snapshot was failed and queued again with its parameters
    assert sorted(p.name for p in (runs / "t" / "tune").iterdir()) == ["refine-1"]
    trials = open_study(run, create=False).trials
    assert len([t for t in trials if t.state in DONE]) == 6
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    for n in running:  # (a kill inside the searcher's define-by-run leaves part of them)
        retried = [t for t in trials if t.user_attrs.get("retry_of") == n]
        assert trials[n].state in DONE or (
            trials[n].state == optuna.trial.TrialState.FAIL and retried
            and trials[n].params.items() <= retried[0].params.items())
    assert any(trials[n].state in DONE for n in running)  # restored, not only re-queued
    for t in before:
        if t.state in DONE:
            assert trials[t.number].value == t.value  # kept, not redone


def test_refuses_another_runs_study_and_a_running_refinement(runs, capsys, hold_run_lock):
    assert main(["train", *TINY, "--run", "u", "--steps", "1"]) == 0
    assert main(["rank", "u", "--n", "2", "--json"]) == 0
    open_study(Run("t", root=runs))
    shutil.copy(Run("t", root=runs).study_path, Run("u", root=runs).study_path)
    capsys.readouterr()
    assert main(["refine", "u", "--trials", "1", "--max-epochs", "1"]) == 2
    assert "belongs to run 't'" in capsys.readouterr().err
    holder = hold_run_lock(runs, "t", "refine")  # a live process holds it
    assert main(["refine", "t", "--trials", "1", "--max-epochs", "1"]) == 2
    assert f"is being refined by process {holder.pid}" in capsys.readouterr().err
    holder.kill()
    holder.wait()
    # its lock went with it: no stale lock to clear by hand
    assert main(["refine", "t", "--trials", "1", "--max-epochs", "1"]) == 0


def test_export_the_winner_and_load_it(runs, tmp_path, capsys):
    assert main(["export", "t", "--out", str(tmp_path / "x")]) == 2
    assert "no finished refinement trial; run hypernas refine t" in capsys.readouterr().err
    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1"]) == 0
    best = open_study(Run("t", root=runs), create=False).best_trial
    out = tmp_path / "model"
    assert main(["export", "t", "--out", str(out), "--format", "safetensors,pt2"]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["id"] == best.user_attrs["id"] and card["val_acc"] == best.value
    assert 0 <= card["test_acc"] <= 1 and card["recipe"]["epochs"] == 1
    n = len(load_dataset("digits").test)
    assert card["test_images"] == n and card["test_acc_se"] == pytest.approx(
        (card["test_acc"] * (1 - card["test_acc"]) / n) ** 0.5)
    assert f"test accuracy**: {card['test_acc']:.4f} ± " in (out / "README.md").read_text()
    assert card["scores"]["hypernet"]["rank"] >= 1 and "model.pt2" in card["files"]
    net = hn.load(out)
    x = torch.randn(3, *net.graph.graph["input_shape"])
    assert net(x).shape == (3, 10)
    assert hn.canonical_id(net.graph) == card["id"]
    capsys.readouterr()
    assert main(["export", "t", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "t", "--out", str(out), "--arch", "zzzz"]) == 2
    assert "not a refined candidate" in capsys.readouterr().err
    # the card carries the data's input contract; the loaded model's transform applies it, and
    # --raw-input puts it inside the .pt2
    assert card["input"]["raw_range"] == [0.0, 16.0] and card["input"]["labels"][3] == "3"
    raw = torch.randint(0, 17, (5, 1, 8, 8)).float()
    with torch.no_grad():
        want = net(net.transform(raw))
    assert main(["export", "t", "--out", str(tmp_path / "raw"), "--format", "safetensors,pt2",
                 "--raw-input"]) == 0
    assert "inside the ONNX / .pt2 files" in capsys.readouterr().out
    program = torch.export.load(str(tmp_path / "raw" / "model.pt2")).module()
    with torch.no_grad():
        assert torch.allclose(program(raw), want, atol=1e-5)


def test_search_runs_every_stage_and_a_rerun_only_reprints(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    argv = ["search", "mlp", "--data", "digits", "--set", "max_depth=2", "--budget", "0.05",
            "--n", "6", "--top", "2", "--trials", "2", "--format", "safetensors", "--run", "s"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"[{i}/5]" in out for i in range(1, 6)) and "winner:" in out
    run = Run("s", root=tmp_path)
    card = json.loads((run.exports_dir / "best" / "model_card.json").read_text())
    assert card["id"] in out and str(run.exports_dir / "best") in out
    study = open_study(run, create=False)
    screens = [t for t in study.trials if "fit_of" not in t.user_attrs]
    fit, = [t for t in study.trials if "fit_of" in t.user_attrs]
    assert screens[0].params["rank"] == 1 and not screens[0].user_attrs["warm_start"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in screens)  # never pruned
    winner = max((t for t in screens if t.value is not None), key=lambda t: t.value)
    assert fit.user_attrs["fit_of"] == winner.number and fit.user_attrs["id"] == card["id"]
    assert not fit.user_attrs["warm_start"] and fit.params["epochs"] == 5   # the longer recipe
    assert card["trial"] == fit.number and card["val_acc"] == fit.value
    assert f"val acc {card['val_acc']:.4f} ± {card['val_acc_se']:.4f}" in out
    stamp = (run.exports_dir / "best" / "model_card.json").stat().st_mtime_ns
    ranking = run.ranking_path("hypernet").read_text()
    trials = len(open_study(run, create=False).trials)

    assert main(argv) == 0                                       # everything is there already
    assert "trial " not in capsys.readouterr().out
    assert run.ranking_path("hypernet").read_text() == ranking
    assert len(open_study(run, create=False).trials) == trials
    assert (run.exports_dir / "best" / "model_card.json").stat().st_mtime_ns == stamp
    assert hn.canonical_id(hn.load(run.exports_dir / "best").graph) == card["id"]


def test_trials_on_ray_workers_fill_the_same_study(runs, capsys):
    pytest.importorskip("ray")
    assert main(["refine", "t", "--top", "2", "--trials", "4", "--max-epochs", "2",
                 "--workers", "2"]) == 0
    run = Run("t", root=runs)
    trials = open_study(run, create=False).get_trials(states=DONE)
    assert len(trials) == 4
    for t in trials:
        assert len(t.intermediate_values) >= 1 and t.user_attrs["recipe"]["epochs"] >= 1
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert run.refined_weights_path(t.number).exists()
    # Tune's experiment is in the run folder, its trials named by the study's numbers
    folders = sorted(p.name for p in (runs / "t" / "tune" / "refine-1").glob("trial-*"))
    assert sorted(int(name.split("-")[1]) for name in folders) == sorted(t.number for t in trials)
    assert (runs / "t" / "tune" / "refine-1" / "finished").exists()
    assert main(["export", "t", "--out", str(runs / "x"), "--format", "safetensors"]) == 0
    assert hn.load(runs / "x") is not None
    # keep_going stops Tune's searcher like the deadline does: the call's first trial still runs
    from hypernas.refine import RefineConfig, refine_run
    from hypernas.ranking import load_run

    cfg = RefineConfig(top=2, trials=8, max_epochs=1, seed=0)
    study = refine_run(load_run(run), cfg, workers=2, keep_going=lambda study: False)
    assert len(study.get_trials(states=DONE)) == 5
    assert (runs / "t" / "tune" / "refine-2" / "finished").exists()  # a new call, a new one


def _kill_first_trial_process(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first Ray worker process seen running a refinement trial (Ray titles a
    worker's process after the task it runs), then stop looking."""
    while not stop.is_set() and not killed:
        for proc in Path("/proc").iterdir():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if proc.name.isdigit() and title.startswith(b"ray::ImplicitFunc"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
                return
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process in /proc")
def test_a_worker_killed_mid_trial_is_retried_and_the_study_completes(runs):
    pytest.importorskip("ray")
    from hypernas.ranking import load_run
    from hypernas.refine import RefineConfig, refine_run

    run = Run("t", root=runs)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_trial_process, args=(stop, killed), daemon=True)
    killer.start()
    try:
        study = refine_run(load_run(run), RefineConfig(top=2, trials=3, max_epochs=2, seed=0),
                           workers=2)
    finally:
        stop.set()
        killer.join()
    assert killed, "no trial process was seen to kill"
    # Tune restarted the lost trial (from its last epoch's checkpoint, if it had one) under the
    # same study trial: nothing failed, nothing was queued again
    assert not study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert not [t for t in study.trials if "retry_of" in t.user_attrs]
    assert len(study.trials) == 3 and len(study.get_trials(states=DONE)) == 3
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        epochs = [row["epoch"] for row in t.user_attrs["history"]]
        assert epochs == list(range(1, t.params["epochs"] + 1))
        assert Run("t", root=runs).refined_weights_path(t.number).exists()


def test_the_study_never_prunes_on_the_first_epoch(runs):
    # the first epoch's accuracy swings widely at the peak learning rate: in-process pruning
    # follows the same rule as the Ray loop's (epoch 2 onwards)
    study = open_study(Run("t", root=runs))
    dist = optuna.distributions.FloatDistribution(0, 1)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": dist},
                                                  value=0.9, intermediate_values={1: 0.9, 2: 0.9}))
    trial = study.ask()
    trial.report(0.1, 1)
    assert not trial.should_prune()
    trial.report(0.1, 2)
    assert trial.should_prune()


def test_a_trial_tunes_scheduler_stopped_is_recorded_pruned_with_its_curve(runs):
    pytest.importorskip("ray")
    from hypernas.ranking import load_run
    from hypernas.refine import RefineConfig
    from hypernas.refine.on_tune import RunSearch, _Call, _registered
    from hypernas.runs.rankings import ranked_rows

    run = Run("t", root=runs)
    loaded, cfg = load_run(run), RefineConfig(top=2, trials=3, max_epochs=3, seed=0)
    reported = []
    call = _Call(loaded, cfg, ranked_rows(run, None), report_trial=lambda s, t: reported.append(t))
    with _registered(run, call):
        search = RunSearch(run, cfg.seed, run.tune_dir / "refine-1")
        configs = [search.suggest(k) for k in ("a", "b")]
        # the ranking's top two are seeded first, in rank order, with all epochs
        assert [c["rank"] for c in configs] == [1, 2] and configs[0]["epochs"] == 3
        assert configs[0]["weights"].endswith(f"trial_{configs[0]['number']}.safetensors")
        row = {"epoch": 1, "val_acc": 0.5, "val_loss": 1.0, "train_loss": 1.2, "seconds": 1.0}
        kept = run.tune_dir / "refine-1" / f"trial-{configs[0]['number']}-a" / "checkpoint_000001"
        kept.mkdir(parents=True)  # as Tune leaves a trial's checkpoints
        search.on_trial_result("a", row)
        search.on_trial_result("a", {**row, "epoch": 2, "val_acc": 0.6})
        search.on_trial_complete("a", {**row, "epoch": 2, "val_acc": 0.6})  # stopped at 2 of 3
        assert not kept.exists() and kept.parent.exists()  # the study holds what is needed
        for epoch in (1, 2, 3):
            search.on_trial_result("b", {**row, "epoch": epoch})
        search.on_trial_complete("b", {**row, "epoch": 3})
        assert search.suggest("c") is not None  # one more to reach 3 finished
        assert search.suggest("d") is None  # 2 finished + 1 running: wait, it may fail
        search.on_trial_complete("c", error=True)  # failed on every restart
        again = search.suggest("e")  # queued again with its parameters, afresh
        assert again is not None and call.errors == [configs[0]["number"] + 2]
    study = open_study(run, create=False)
    a, b = (study.trials[c["number"]] for c in configs)
    assert a.state == optuna.trial.TrialState.PRUNED and a.intermediate_values == {1: 0.5, 2: 0.6}
    assert [r["epoch"] for r in a.user_attrs["history"]] == [1, 2]
    assert b.state == optuna.trial.TrialState.COMPLETE and b.value == 0.5
    assert study.trials[b.number + 1].state == optuna.trial.TrialState.FAIL
    retry = study.trials[again["number"]]
    assert retry.user_attrs["retry_of"] == b.number + 1
    assert study.trials[b.number + 1].params.items() <= retry.params.items()
    assert [t.number for t in reported] == [a.number, b.number, b.number + 1]


def test_the_searcher_stops_asking_once_the_time_is_up(runs):
    pytest.importorskip("ray")
    from ray.tune.search import Searcher

    from hypernas.ranking import load_run
    from hypernas.refine import RefineConfig
    from hypernas.refine.on_tune import RunSearch, _Call, _registered
    from hypernas.runs.rankings import ranked_rows

    run = Run("t", root=runs)
    loaded, cfg = load_run(run), RefineConfig(top=2, trials=5, max_epochs=1, seed=0)
    call = _Call(loaded, cfg, ranked_rows(run, None), in_time=lambda study: False)
    with _registered(run, call):
        search = RunSearch(run, cfg.seed, run.tune_dir / "refine-1")
        assert search.suggest("a") is not None  # a call's first trial runs whatever the time
        assert search.suggest("b") == Searcher.FINISHED and call.done


def test_scheduler_needs_workers(runs, capsys):
    assert main(["refine", "t", "--scheduler", "asha"]) == 2
    assert "--scheduler chooses Ray Tune's early stopping: it needs --workers" in \
        capsys.readouterr().err



def test_the_search_ranks_as_many_candidates_as_its_share_of_the_time_holds(runs, monkeypatch):
    from types import SimpleNamespace

    from hypernas.ranking import load_run
    from hypernas.runs.rankings import ranking_rows
    from hypernas.search import pipeline

    loaded = load_run(Run("t", root=runs))
    before = ranking_rows(loaded.run, "hypernet")
    cands = [c for c in loaded.space.sample_many(60, seed=5) if c.id not in before][:40]
    clock, real = [0.0], pipeline.rank_run

    def one_second_per_candidate(lr, batch, scorer, **kw):  # half a second for each scorer
        clock[0] += 0.5 * len(batch)
        return real(lr, batch, scorer, **kw)

    monkeypatch.setattr(pipeline, "rank_run", one_second_per_candidate)
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    cfg = pipeline.SearchConfig(combine=("naswot",))
    # 2 minutes left: a quarter is 30 s, the 16 timed first took 16 s, 14 more fit
    n, each = pipeline._rank(loaded, cands, cfg, 2.0, lambda rows: None)
    assert (n, each) == (30, 1.0) and pipeline.RANK_SHARE == 0.25
    for label in ("hypernet", "naswot", "combined"):
        rows = ranking_rows(loaded.run, label)
        assert {c.id for c in cands} & set(rows) == {c.id for c in cands[:30]}, label
    # too little time for more than the timed ones: those are still ranked
    n, each = pipeline._rank(loaded, cands, cfg, 0.01, lambda rows: None)
    assert (n, each) == (40, 1.0)


def test_the_finalists_are_the_best_screens_and_the_best_fit_wins(runs):
    from hypernas.search.pipeline import FITTED, SearchConfig, _fit_finalists
    from hypernas.refine import fit_candidate
    from hypernas.ranking import load_run

    assert main(["refine", "t", "--top", "3", "--trials", "3", "--max-epochs", "1",
                 "--mutations", "0"]) == 0
    loaded = load_run(Run("t", root=runs))
    study = open_study(loaded.run, create=False)
    screens = sorted((t for t in study.get_trials(states=DONE) if t.value is not None),
                     key=lambda t: (-t.value, t.params["rank"]))
    cfg = SearchConfig(budget_minutes=1e6, finalists=2, fit_epochs=1, fit_train_size=None)
    # a search killed after its first finalist's training: that fit is kept, the next is added
    fit_candidate(loaded, screens[0].number, cfg.fit_recipe(None), warm_start=False)
    events = []
    best, finalists = _fit_finalists(loaded, cfg, lambda: 0.0,
                                     lambda stage, **i: events.append((stage, i)))
    study = open_study(loaded.run, create=False)
    fits = [t for t in study.trials if "fit_of" in t.user_attrs]
    assert [t.user_attrs["fit_of"] for t in fits] == [s.number for s in screens[:2]]
    assert [i["place"] for stage, i in events if stage == "fit"] == [2]
    assert all(t.params["epochs"] == 1 and not t.user_attrs["warm_start"] for t in fits)
    assert best["trial"] == max(fits, key=lambda t: t.value).number
    assert finalists == {t.user_attrs["id"]: t.value for t in fits}
    assert study.user_attrs[FITTED]
    # done: a re-run with more finalists trains nothing more
    again = _fit_finalists(loaded, dataclasses.replace(cfg, finalists=3), lambda: 0.0,
                           lambda stage, **i: events.append((stage, i)))
    assert again[0] == best
    assert len(open_study(loaded.run, create=False).trials) == len(study.trials)


def test_the_budget_leaves_out_finalists_but_never_the_first(runs):
    from hypernas.search.pipeline import SearchConfig, _fit_finalists
    from hypernas.ranking import load_run

    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1",
                 "--mutations", "0"]) == 0
    loaded = load_run(Run("t", root=runs))
    cfg = SearchConfig(budget_minutes=1.0, finalists=2, fit_epochs=1, fit_train_size=None)
    best, finalists = _fit_finalists(loaded, cfg, lambda: 0.99, lambda s, **i: None)
    fits = [t for t in open_study(loaded.run, create=False).trials if "fit_of" in t.user_attrs]
    assert len(fits) == 1 == len(finalists) and best["trial"] == fits[0].number


def test_the_search_screens_as_far_down_the_ranking_as_the_budget_goes_unless_told():
    from hypernas.search.pipeline import SearchConfig

    assert SearchConfig(candidates=50).screen_config().top == 50
    assert SearchConfig(candidates=50).screen_config().trials == 50
    told = SearchConfig(candidates=50, top=4, trials=6).screen_config()
    assert (told.top, told.trials) == (4, 6)
    with pytest.raises(HypernasError, match="--top must be at least 1"):
        SearchConfig(top=0)


def test_finalists_on_workers_are_planned_in_waves(runs, monkeypatch):
    # two finalists that each take m minutes: one after another they need 2m, on two workers m;
    # a budget with 1.5m left trains one in this process and both on two workers
    import hypernas.refine.on_tune as refine_tune
    from hypernas.search.pipeline import (EXPORT_RESERVE_MIN, SearchConfig, _fit_finalists,
                                          screen_order)
    from hypernas.search.timing import minutes, pace_of
    from hypernas.refine import fit_candidate
    from hypernas.ranking import load_run

    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1",
                 "--mutations", "0", "--random-init"]) == 0
    loaded = load_run(Run("t", root=runs))
    screens = screen_order(open_study(loaded.run, create=False))
    images = len(loaded.data.train)
    m = max(minutes(pace_of(t), 1, images) for t in screens)
    budget = 10.0 + EXPORT_RESERVE_MIN + 1.5 * m
    calls = []

    def fit_on_tune(loaded, numbers, recipe, warm_start, workers, address, on_fitted):
        calls.append((list(numbers), workers))
        rows = [fit_candidate(loaded, n, recipe, warm_start=warm_start) for n in numbers]
        for row in rows:
            on_fitted(row)
        return rows

    monkeypatch.setattr(refine_tune, "fit_on_tune", fit_on_tune)
    events = []
    cfg = SearchConfig(budget_minutes=budget, finalists=2, fit_epochs=1, fit_train_size=None,
                       workers=2)
    best, finalists = _fit_finalists(loaded, cfg, lambda: 10.0,
                                     lambda stage, **i: events.append(stage))
    assert calls == [([t.number for t in screens], 2)] and len(finalists) == 2
    assert events == ["fit", "fit", "fitted", "fitted"]   # both started before either ended

    shutil.rmtree(runs / "t" / "refined")
    loaded.run.study_path.unlink()
    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1",
                 "--mutations", "0", "--random-init"]) == 0
    # the screens ran again: their paces (and so m) are this run's, not the first one's (on a
    # loaded machine the two differed enough to fit both finalists)
    m = max(minutes(pace_of(t), 1, images)
            for t in screen_order(open_study(loaded.run, create=False)))
    sequential = SearchConfig(budget_minutes=10.0 + EXPORT_RESERVE_MIN + 1.5 * m, finalists=2,
                              fit_epochs=1, fit_train_size=None)

    def clock() -> float:  # each fit takes its estimated m minutes
        trials = open_study(loaded.run, create=False).trials
        return 10.0 + m * sum("fit_of" in t.user_attrs for t in trials)

    best, finalists = _fit_finalists(loaded, sequential, clock, lambda s, **i: None)
    assert len(finalists) == 1 and len(calls) == 1


def test_the_finalists_train_at_once_on_ray_workers(runs, capsys):
    pytest.importorskip("ray")
    from hypernas.search.pipeline import SearchConfig, _fit_finalists, screen_order
    from hypernas.ranking import load_run

    assert main(["refine", "t", "--top", "3", "--trials", "3", "--max-epochs", "1",
                 "--mutations", "0", "--random-init"]) == 0
    loaded = load_run(Run("t", root=runs))
    screens = screen_order(open_study(loaded.run, create=False))
    cfg = SearchConfig(budget_minutes=1e6, finalists=2, fit_epochs=2, fit_train_size=None,
                       workers=2)
    events = []
    best, finalists = _fit_finalists(loaded, cfg, lambda: 0.0,
                                     lambda stage, **i: events.append((stage, i)))
    assert [stage for stage, _ in events] == ["fit", "fit", "fitted", "fitted"]
    study = open_study(loaded.run, create=False)
    fits = [t for t in study.trials if "fit_of" in t.user_attrs]
    assert sorted(t.user_attrs["fit_of"] for t in fits) == sorted(t.number for t in screens[:2])
    assert all(len(t.user_attrs["history"]) == 2 and t.params["epochs"] == 2 for t in fits)
    # the best validation accuracy wins; a tie goes to the better screen (fits are numbered in
    # the order they finish, so the trial number cannot break it)
    place = {t.number: i for i, t in enumerate(screens)}
    assert best["trial"] == max(fits, key=lambda t: (t.value, -place[t.user_attrs["fit_of"]])).number
    assert finalists == {t.user_attrs["id"]: t.value for t in fits}
    # the weights a worker sent back are a trained model (chance on digits is 0.1)
    from hypernas.export import export_run

    card = export_run(loaded.run, runs / "x", trial=best["trial"], formats=("safetensors",))
    assert card["id"] == best["id"] and card["test_acc"] > 0.5
    assert hn.load(runs / "x") is not None


def test_a_search_on_ray_workers_starts_ray_once(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    inits, init = [], ray.init
    monkeypatch.setattr(ray, "init", lambda *a, **k: inits.append(k) or init(*a, **k))
    argv = ["search", "mlp", "--data", "digits", "--set", "max_depth=2", "--budget", "0.05",
            "--n", "6", "--top", "2", "--format", "safetensors", "--run", "w", "--workers", "2"]
    assert main(argv) == 0
    assert len(inits) == 1 and not ray.is_initialized()  # ranking, screens and fits share it
    run = Run("w", root=tmp_path)
    fits = [t for t in open_study(run, create=False).trials if "fit_of" in t.user_attrs]
    card = json.loads((run.exports_dir / "best" / "model_card.json").read_text())
    assert fits and card["trial"] in [t.number for t in fits]
    assert "winner:" in capsys.readouterr().out


def test_the_screening_pace_separates_training_from_validation():
    # a finalist trains on twice the images of a screen but validates on the same split: its
    # time is estimated from both parts, not as a multiple of a screen
    from hypernas.search.timing import pace

    study = optuna.create_study()
    assert pace(study) is None
    x = optuna.distributions.FloatDistribution(0, 1)
    for per_image, per_eval in ((1e-3, 4.0), (2e-3, 6.0), (3e-3, 5.0)):
        epoch = 5_000 * per_image + per_eval
        history = [{"seconds": epoch * (e + 1), "eval_seconds": per_eval} for e in range(2)]
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions={"x": x}, value=0.8,
            user_attrs={"history": history, "recipe": {"train_size": 5_000}}))
    per_image, per_eval = pace(study)
    assert per_image == pytest.approx(2e-3) and per_eval == pytest.approx(5.0)


def test_an_interrupted_trial_runs_again_on_resume(runs, monkeypatch, capsys):
    import hypernas.refine.optimize as optimize_module

    real = optimize_module.train_network
    calls = {"n": 0}

    def interrupted_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize_module, "train_network", interrupted_once)
    argv = ["refine", "t", "--top", "3", "--trials", "3", "--max-epochs", "1", "--mutations", "0"]
    assert main(argv) == 130
    assert "interrupted; what was done is saved, run the same command to resume" in (
        capsys.readouterr().err)
    study = open_study(Run("t", root=runs), create=False)
    cut = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(cut) == 1 and cut[0].user_attrs["interrupted"]
    assert main(argv) == 0
    study = open_study(Run("t", root=runs), create=False)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    # the cut trial ran again with its own parameters: all three seeds finished, none lost
    assert len(done) == 3 and sorted(t.params["rank"] for t in done) == [1, 2, 3]
    assert [t.user_attrs.get("retry_of") for t in done].count(cut[0].number) == 1


def test_train_keeps_its_steps_when_interrupted(tmp_path, monkeypatch, capsys):
    import hypernas.hypernet.trainer as trainer_module
    from hypernas.hypernet.trainer import load_checkpoint

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    real = trainer_module.HyperTrainer.train_step

    def stop_at_7(self, rng, device):
        if self.step == 7:
            raise KeyboardInterrupt
        return real(self, rng, device)

    monkeypatch.setattr(trainer_module.HyperTrainer, "train_step", stop_at_7)
    assert main(["train", *TINY, "--run", "k", "--steps", "20"]) == 130
    _, _, meta = load_checkpoint(Run("k").checkpoint_path)
    assert meta["step"] == 7  # saved on the interrupt, though no periodic checkpoint was due
    monkeypatch.setattr(trainer_module.HyperTrainer, "train_step", real)
    assert main(["train", *TINY, "--run", "k", "--steps", "20"]) == 0
    assert load_checkpoint(Run("k").checkpoint_path)[2]["step"] == 20


def test_a_corrupted_study_or_a_full_disk_is_one_line_and_keeps_what_was_written(runs, capsys,
                                                                                monkeypatch):
    import errno

    study = Run("t", root=runs).study_path
    study.write_bytes(b"not a database")
    assert main(["refine", "t", "--trials", "1", "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not a readable study" in err and "Traceback" not in err
    assert study.read_bytes() == b"not a database"  # kept, for the user to look at
    study.unlink()
    ranking = Run("t", root=runs).ranking_path("hypernet").read_text()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(runs / "t"))

    import hypernas.ranking.rank as rank_module

    monkeypatch.setattr(rank_module, "append_jsonl", full)
    assert main(["rank", "t", "--n", "12"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device; free space" in err and "Traceback" not in err
    assert Run("t", root=runs).ranking_path("hypernet").read_text() == ranking


def test_every_step_reports_its_training_loss_and_the_epochs_average_them():
    from hypernas.refine import TrainConfig, prepare_dataset, train_network

    cfg = TrainConfig(epochs=2, batch_size=50, train_size=300, resolution=None, seed=1)
    data = prepare_dataset(load_dataset("digits"), cfg)
    space = hn.load_space("mlp", input_shape=data.input_shape, max_depth=2)
    torch.manual_seed(0)
    losses: list[float] = []
    result = train_network(hn.Network(space.sample(0).graph), data.train, data.val, cfg,
                           on_step=losses.append)
    assert len(losses) == 2 * 300 // 50  # one per step
    for epoch, row in enumerate(result.history):  # equal batches: the epoch's mean
        assert sum(losses[6 * epoch:6 * epoch + 6]) / 6 == pytest.approx(row["train_loss"])
    assert sum(losses[6:]) < sum(losses[:6])  # it learns


def test_a_training_resumed_from_its_state_ends_as_if_it_never_stopped():
    from hypernas.refine import TrainConfig, prepare_dataset, train_network

    cfg = TrainConfig(epochs=3, train_size=300, resolution=None, seed=1)
    data = prepare_dataset(load_dataset("digits"), cfg)
    space = hn.load_space("mlp", input_shape=data.input_shape, max_depth=2)
    torch.manual_seed(0)
    whole = hn.Network(space.sample(0).graph)
    resumed = hn.Network(space.sample(0).graph)
    resumed.load_state_dict(whole.state_dict())
    straight = train_network(whole, data.train, data.val, cfg)

    states = []

    class Stop(Exception):
        pass

    def stop_after_one(row):
        raise Stop

    with pytest.raises(Stop):  # killed after the first epoch, its state kept
        train_network(resumed, data.train, data.val, cfg, on_epoch=stop_after_one,
                      on_state=states.append)
    assert states[-1]["epoch"] == 1 and len(states[-1]["history"]) == 1
    again = train_network(resumed, data.train, data.val, cfg, state=states[-1])
    assert [r["epoch"] for r in again.history] == [1, 2, 3]
    assert again.val_acc == straight.val_acc
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    with pytest.raises(HypernasError, match="does not resume"):
        train_network(resumed, data.train, data.val, TrainConfig(epochs=1, resolution=None),
                      state={**states[-1], "epoch": 2})


def _explored(runs: Path, workers: int | None = None, trials: int = 9):
    """An exploring refinement of the tiny run under a parameter budget that about half of the
    space meets; its trials and the budget."""
    from hypernas.ranking import load_run
    from hypernas.refine import RefineConfig, refine_run
    from hypernas.spaces.budget import Budget

    loaded = load_run(Run("t", root=runs))
    sizes = sorted(hn.count_params(c.graph) for c in loaded.space.sample_many(40, seed=3))
    limit = sizes[len(sizes) // 2]
    cfg = RefineConfig(top=2, trials=trials, max_epochs=1, explore=True, warm_start=False,
                       prune=False, max_params=limit, seed=1)
    refine_run(loaded, cfg, workers=workers)
    return loaded, open_study(loaded.run, create=False).trials, Budget(max_params=limit)


def _check_explored(loaded, trials, budget, rows) -> None:
    from hypernas.refine.plan import ARCH

    top = [r for r in rows if budget.fits_row(r)][:2]
    seeds = [t for t in trials if "seed_of" in t.user_attrs]
    assert [t.user_attrs["id"] for t in seeds] == [r["id"] for r in top]  # the top, in order
    assert [t.user_attrs["rank"] for t in seeds] == [1, 2]
    explored = [t for t in trials if "seed_of" not in t.user_attrs]
    assert explored and all("rank" not in t.params for t in trials)
    for t in trials:  # every trial is the space's own choices, replayed to its recorded id
        choices = {k[len(ARCH):]: v for k, v in t.params.items() if k.startswith(ARCH)}
        assert choices and len(choices) == len(t.params)
        assert loaded.space.replay(choices).id == t.user_attrs["id"]
        over = t.user_attrs["params"] > budget.max_params
        assert t.user_attrs.get("over_budget", False) == over
        if over:  # not trained, and TPE is told it is infeasible
            assert t.state == optuna.trial.TrialState.PRUNED and t.constraints["max_params"] > 0
            assert not loaded.run.refined_weights_path(t.number).exists()
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE and t.constraints["max_params"] <= 0
            assert t.user_attrs["recipe"]["epochs"] == 1 and t.user_attrs["recipe"]["lr"] == 0.1
    assert len({t.user_attrs["id"] for t in explored}) > 1  # it does explore


def test_an_exploring_refinement_screens_the_top_then_lets_tpe_pick_within_the_budget(
        runs, capsys):
    rows = _ranked(capsys)
    loaded, trials, budget = _explored(runs)
    assert sum(t.state in DONE for t in trials) == 9
    _check_explored(loaded, trials, budget, rows)
    # the winner of a search's screening is still the best complete trial
    from hypernas.search.pipeline import screen_order

    best = screen_order(open_study(loaded.run, create=False))[0]
    assert best.value == max(t.value for t in trials if t.value is not None)
    # the search's table of what TPE picked: every trained candidate the ranking does not hold
    from hypernas.cli.search import _explored_rows

    ranked = {r["id"] for r in rows}
    shown = _explored_rows(loaded.run, ranked)
    trained = {t.user_attrs["id"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert shown and {r["id"] for r in shown} == trained - ranked
    assert [r["val_acc"] for r in shown] == sorted((r["val_acc"] for r in shown), reverse=True)
    assert all(r["params"] <= budget.max_params and r["encoding"] for r in shown)


def test_an_exploring_refinement_on_ray_workers_skips_what_does_not_fit(runs, capsys):
    pytest.importorskip("ray")
    rows = _ranked(capsys)
    loaded, trials, budget = _explored(runs, workers=2, trials=6)
    assert sum(t.state in DONE for t in trials) >= 6
    _check_explored(loaded, trials, budget, rows)


def test_explore_after_screens_that_many_of_the_top_then_explores():
    from hypernas.search.pipeline import SearchConfig

    cfg = SearchConfig(candidates=50, explore_after=6).screen_config()
    assert (cfg.top, cfg.explore) == (6, True) and cfg.trials > 50  # the budget stops it
    assert not SearchConfig(candidates=50).screen_config().explore
    with pytest.raises(HypernasError, match="--explore-after must be at least 1"):
        SearchConfig(explore_after=0)
    with pytest.raises(HypernasError, match="not both"):
        SearchConfig(explore_after=2, top=4)
