"""`hypernas train` and `hypernas rank` end to end on a tiny space, in a temporary runs folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import hypernas as hn
from hypernas.cli import main
from hypernas.runs import Run, read_jsonl

TINY = ["mlp", "--data", "digits", "--meta-batch", "2", "--batch-size", "8", "--dim", "8",
        "--samples", "2", "--set", "max_depth=2"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", *TINY, "--run", "t", "--steps", "3"]) == 0
    return tmp_path


def _json_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_train_writes_the_run_and_resumes(runs, capsys):
    run = Run("t", root=runs)
    config = json.loads(run.config_path.read_text())
    assert config["space"] == "mlp" and config["hypernet"]["census"]
    assert config["train"]["steps"] == 3 and config["space_config"]["input_shape"] == [1, 8, 8]
    assert run.checkpoint_path.exists()
    assert main(["train", *TINY, "--run", "t", "--steps", "5"]) == 0
    assert "step 5" in capsys.readouterr().out
    from hypernas.hypernet.trainer import load_checkpoint
    _, _, meta = load_checkpoint(run.checkpoint_path)
    assert meta["step"] == 5


def test_train_refuses_a_different_setup(runs, capsys):
    assert main(["train", *TINY, "--run", "t", "--steps", "3", "--backbone", "graph_free"]) == 2
    assert "different setup" in capsys.readouterr().err


def test_rank_random_candidates_resumes_without_duplicates(runs, capsys):
    assert main(["rank", "t", "--n", "4", "--json"]) == 0
    rows = _json_lines(capsys)
    assert len(rows) == 4 and {"encoding", "id", "score", "spread", "params"} <= set(rows[0])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    path = Run("t", root=runs).ranking_path("hypernet")
    before = path.read_text()
    assert main(["rank", "t", "--n", "6", "--json"]) == 0          # 4 of these 6 are scored
    ids = [r["id"] for r in read_jsonl(path)]
    assert len(ids) == len(set(ids)) == 6
    assert path.read_text().startswith(before)
    assert len(_json_lines(capsys)) == 6


def test_rank_arch_file_reports_bad_lines_and_shares_duplicates(runs, tmp_path, capsys):
    space = hn.load_space("mlp", input_shape=(1, 8, 8), max_depth=2)
    a, b = space.sample(1).encoding, space.sample(2).encoding
    archs = tmp_path / "archs.txt"
    archs.write_text(f"{a}\n# a comment\n\nnot an encoding\n{b}\n{a}\n")
    assert main(["rank", "t", "--archs", str(archs), "--json", "--proxies", "params"]) == 1
    out, err = capsys.readouterr()
    assert f"{archs}:4: skipped" in err and "1 line(s) of" in err and "--skip-bad" in err
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert sorted(r["line"] for r in rows) == [1, 5, 6]
    by_line = {r["line"]: r for r in rows}
    assert by_line[1]["id"] == by_line[6]["id"] and by_line[1]["score"] == by_line[6]["score"]
    assert all(r["proxies"]["params"] == float(r["params"]) > 0 for r in rows)
    ranked = list(read_jsonl(Run("t", root=runs).ranking_path("hypernet")))
    assert len(ranked) == 2                                           # scored once per id
    assert main(["rank", "t", "--archs", str(archs), "--json", "--skip-bad"]) == 0
    archs.write_text(f"{a}\n{b}\n")
    assert main(["rank", "t", "--archs", str(archs), "--json"]) == 0


def test_rank_with_a_proxy(runs, capsys):
    assert main(["rank", "t", "--n", "3", "--scorer", "params", "--json"]) == 0
    rows = _json_lines(capsys)
    assert [r["score"] for r in rows] == sorted([float(r["params"]) for r in rows], reverse=True)


def test_corrupt_checkpoint_is_reported_and_kept(runs, capsys):
    ckpt = Run("t", root=runs).checkpoint_path
    ckpt.write_bytes(b"not a checkpoint")
    assert main(["rank", "t", "--n", "2"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"not a checkpoint"


@pytest.mark.parametrize("argv, words", [
    (["rank", "nope", "--n", "2"], "not found"),
    (["rank", "../x", "--n", "2"], "not allowed"),
    (["train", "mlp", "--data", "digits", "--run", "/abs"], "not allowed"),
    (["rank", "t", "--scorer", "magic", "--n", "2"], "unknown scorer"),
    (["train", *TINY, "--run", "u", "--budget", "1", "--steps", "2"], "not both"),
])
def test_bad_input(runs, argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_rankings_side_by_side_and_show(runs, capsys):
    assert main(["rank", "t", "--n", "8", "--proxies", "params", "--json"]) == 0
    ranked = _json_lines(capsys)
    assert [r["rank"] for r in ranked] == list(range(1, 9))
    assert main(["rank", "t", "--n", "3", "--seed", "5", "--ranking", "pool2", "--json"]) == 0
    capsys.readouterr()
    run = Run("t", root=runs)
    assert {p.stem for p in run.rankings_dir.glob("*.jsonl")} == {"hypernet", "params", "pool2"}

    assert main(["show", "t", "--json"]) == 0                       # default: the hypernet ranking
    shown = _json_lines(capsys)
    assert [(r["id"], r["rank"]) for r in shown] == [(r["id"], r["rank"]) for r in ranked]
    assert set(shown[0]) == set(ranked[0]) - {"proxies"} and shown[0]["macs"] > 0

    assert main(["show", "t", "--ranking", "pool2", "--json"]) == 0
    assert len(_json_lines(capsys)) == 3
    assert main(["show", "t", "--sort", "colour"]) == 2
    assert "cannot sort by 'colour'; use one of rank" in capsys.readouterr().err

    cap = sorted(r["params"] for r in ranked)[3]
    assert main(["show", "t", "--max-params", str(cap), "--sort", "params", "--desc", "--top", "3",
                 "--json"]) == 0
    small = _json_lines(capsys)
    assert [r["params"] for r in small] == sorted((r["params"] for r in ranked if r["params"] <= cap),
                                                  reverse=True)[:3]

    best = ranked[0]
    assert main(["show", "t", "--arch", best["id"][:6], "--json"]) == 0
    arch = _json_lines(capsys)[0]
    assert arch["id"] == best["id"] and arch["params"] == best["params"]
    assert arch["scores"]["hypernet"]["rank"] == 1 and arch["scores"]["params"]["of"] == 8
    assert main(["show", "t", "--arch", best["id"]]) == 0
    out = capsys.readouterr().out
    assert best["id"] in out and "params" in out and "hypernet" in out
    assert "\x1b[" not in out                                        # piped: no control codes


def test_runs_lists_stage_size_and_best(runs, capsys):
    assert main(["runs", "--json"]) == 0
    (before,) = _json_lines(capsys)
    assert before["run"] == "t" and before["stage"] == "trained" and before["step"] == 3
    assert before["best"] is None and before["size_bytes"] > 0
    assert main(["rank", "t", "--n", "5", "--json"]) == 0
    top = _json_lines(capsys)[0]
    assert main(["runs", "--json"]) == 0
    (after,) = _json_lines(capsys)
    assert after["stage"] == "ranked" and after["ranked"] == 5
    assert after["best"]["id"] == top["id"] and after["best"]["score"] == top["score"]
    assert main(["runs"]) == 0
    assert "ranked" in capsys.readouterr().out
    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    assert _json_lines(capsys)[0]["stage"] == "refined (2 trained)"
    assert main(["export", "t", "--out", str(runs / "t" / "exports" / "best"),
                 "--format", "safetensors"]) == 0
    card = json.loads((runs / "t" / "exports" / "best" / "model_card.json").read_text())
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    (done,) = _json_lines(capsys)
    assert done["stage"] == "exported"
    assert done["best"] == {"kind": "exported", "id": card["id"], "val_acc": card["val_acc"],
                            "test_acc": card["test_acc"]}  # the trained winner
    Run("t", root=runs).checkpoint_path.write_bytes(b"torn")
    assert main(["runs", "--json"]) == 0
    assert _json_lines(capsys)[0]["stage"] == "exported, checkpoint unreadable"
    assert main(["runs"]) == 0
    assert "exported: val acc" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["show", "nope"], "not found"),
    (["show", "t"], "no ranking yet"),
    (["show", "../t"], "not allowed"),
    (["show", "t", "--ranking", "naswot"], "no ranking 'naswot'"),
    (["show", "t", "--arch", "ffff"], "no candidate with id"),
    (["show", "t", "--top", "-5"], "--top must be at least 1, got -5"),
    (["show", "t", "--top", "0"], "--top must be at least 1, got 0"),
    (["rank", "t", "--top", "-1"], "--top must be at least 1"),
    (["train", *TINY, "--run", "t", "--budget", "0"], "--budget must be positive minutes, got 0"),
    (["train", *TINY, "--run", "t", "--budget", "-2"], "--budget must be positive minutes"),
])
def test_show_bad_input(runs, argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_show_refuses_an_empty_ranking(runs, capsys):
    path = Run("t", root=runs).ranking_path("hypernet")
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "abc", "sco')                           # a torn first line only
    assert main(["show", "t"]) == 2
    assert "is empty" in capsys.readouterr().err


def _kill_once_rows_appear(runs, args: list[str], path) -> str:
    """Start ``hypernas rank ARGS`` in a process, kill -9 it once ``path`` has a row; returns
    what had been written."""
    argv = [sys.executable, "-m", "hypernas", "rank", "t", *args]
    proc = subprocess.Popen(argv, env={**os.environ, "HYPERNAS_RUNS": str(runs)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (path.exists() and path.stat().st_size > 0):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return path.read_text()


def test_kill_9_mid_rank_then_rerun_completes_without_duplicates(runs):
    path = Run("t", root=runs).ranking_path("hypernet")
    written = _kill_once_rows_appear(runs, ["--n", "300", "--json"], path)
    assert 0 < len(written.splitlines()) < 300          # killed mid-rank
    assert main(["rank", "t", "--n", "300", "--json"]) == 0
    ids = [row["id"] for row in read_jsonl(path)]
    assert len(ids) == len(set(ids)) == 300
    assert path.read_text().startswith(written.rsplit("\n", 1)[0])   # nothing rewritten


def _ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_rank_on_ray_from_the_cli_matches_in_process_and_survives_kill_9(runs, capsys):
    pytest.importorskip("ray")
    assert main(["rank", "t", "--n", "6", "--json"]) == 0
    local = {r["id"]: r["score"] for r in _json_lines(capsys)}
    assert main(["rank", "t", "--n", "6", "--workers", "1", "--ranking", "ray", "--json"]) == 0
    remote = {r["id"]: r["score"] for r in _json_lines(capsys)}
    assert remote.keys() == local.keys()
    assert all(abs(remote[i] - local[i]) < 1e-5 for i in local)

    before = _ray_processes()
    path = Run("t", root=runs).ranking_path("ray-kill")
    args = ["--n", "400", "--workers", "1", "--ranking", "ray-kill", "--json"]
    assert 0 < len(_kill_once_rows_appear(runs, args, path).splitlines()) < 400
    deadline = time.monotonic() + 60                    # the private cluster dies with its driver
    while _ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_processes() - before
    assert main(["rank", "t", *args]) == 0
    ids = [row["id"] for row in read_jsonl(path)]
    assert len(ids) == len(set(ids)) == 400


def test_train_and_search_take_the_same_defaults_and_train_says_which(tmp_path, monkeypatch,
                                                                     capsys):
    from hypernas.search.config import SearchConfig

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    argv = ["train", "nb201", "--data", "digits", "--steps", "1", "--meta-batch", "1",
            "--batch-size", "4", "--dim", "8", "--samples", "1"]
    assert main([*argv, "--run", "d"]) == 0
    assert "defaults for nb201 on digits: C=16, N=1 (--set KEY=VALUE" in capsys.readouterr().out
    trained = Run("d").read_config()
    searched = SearchConfig(data="digits").run_config()
    assert trained["space_settings"] == searched.space_settings == {"C": 16, "N": 1}
    assert trained["resolution"] is searched.resolution is None  # digits: no default resize
    assert SearchConfig().run_config().resolution == 16  # fashion-mnist: 16x16
    # what the user gives wins, and then nothing is said about it
    assert main([*argv, "--run", "e", "--set", "N=2", "--set", "C=8"]) == 0
    assert "defaults for" not in capsys.readouterr().out
    assert Run("e").read_config()["space_settings"] == {"C": 8, "N": 2}


def test_a_hypernetwork_at_chance_is_said_loudly_by_train_and_rank(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    # ten steps (one logged row) at a learning rate of ~0: the weights stay at their start
    assert main(["train", *TINY, "--run", "c", "--steps", "10", "--lr", "1e-9"]) == 0
    assert "would be noise" in capsys.readouterr().err
    assert main(["rank", "c", "--n", "6"]) == 0
    err = capsys.readouterr().err
    assert "warning: the hypernetwork is no better than chance on these 6 candidates" in err
    assert "this ranking is noise" in err
    # a trained one is not flagged
    assert main(["train", *TINY, "--run", "ok", "--steps", "60", "--lr", "1e-2"]) == 0
    out = capsys.readouterr()
    assert "no better than chance" not in out.err and "would be noise" not in out.err
    assert main(["rank", "ok", "--n", "6"]) == 0
    assert "no better than chance" not in capsys.readouterr().err


def test_sigterm_and_ctrl_c_end_train_with_one_line_a_checkpoint_and_exit_130(tmp_path):
    from hypernas.hypernet.trainer import load_checkpoint

    env = {**os.environ, "HYPERNAS_RUNS": str(tmp_path), "PYTHONFAULTHANDLER": "1"}
    for sig in (signal.SIGTERM, signal.SIGINT):
        # a shell's background job inherits SIGINT ignored, and Python keeps it so: restore
        # the default, as a terminal's Ctrl-C finds it
        proc = subprocess.Popen([sys.executable, "-m", "hypernas", "train", *TINY, "--run", "s",
                                 "--steps", "100000"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        log = Run("s", root=tmp_path).train_log_path
        rows = log.read_text().count("\n") if log.exists() else 0
        deadline = time.time() + 120
        while not (log.exists() and log.read_text().count("\n") >= rows + 2) and (
                time.time() < deadline):
            time.sleep(0.2)
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # still running: show where every thread is
            proc.send_signal(signal.SIGABRT)  # faulthandler prints the stacks, then it dies
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"train did not end within 120 s of {sig.name}:\n{out}\n{err}")
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == ("hypernas train: interrupted; what was done is "
                                                "saved, run the same command to resume")
        assert "Traceback" not in err
        _, _, meta = load_checkpoint(Run("s", root=tmp_path).checkpoint_path)
        assert meta["step"] >= 20  # every logged step is in the checkpoint


def test_a_killed_train_resumes_with_each_step_logged_once(tmp_path):
    env = {**os.environ, "HYPERNAS_RUNS": str(tmp_path)}
    argv = [sys.executable, "-m", "hypernas", "train", *TINY, "--run", "k", "--steps", "60"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = Run("k", root=tmp_path).train_log_path
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 3) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # no checkpoint since the start: every logged step is redone
    proc.wait()
    assert subprocess.run(argv, env=env, capture_output=True).returncode == 0
    steps = [row["step"] for row in read_jsonl(log)]
    assert steps == list(range(10, 61, 10))
