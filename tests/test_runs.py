"""The run store: safe names, config.json written once, JSONL that survives a kill mid-write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hypernas.runs import Run, RunError, append_jsonl, read_jsonl


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a/b", "..", ".hidden", "x/../y", "a\\b"])
def test_unsafe_run_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not allowed"):
        Run(name, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_run_paths(tmp_path: Path) -> None:
    run = Run("exp-1.2_a", root=tmp_path)
    assert run.path == tmp_path / "exp-1.2_a" and not run.path.exists()
    assert run.config_path == run.path / "config.json"
    assert run.checkpoint_path == run.path / "checkpoints" / "last.safetensors"
    assert run.ranking_path("val-1") == run.path / "rankings" / "val-1.jsonl"
    with pytest.raises(RunError, match="label"):
        run.ranking_path("../x")


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert Run("a").path == tmp_path / "a"


def test_create_writes_config_once(tmp_path: Path) -> None:
    run = Run("exp", root=tmp_path)
    config = {"space": "nb201", "settings": {"input_shape": (1, 8, 8)}, "steps": 3}
    assert not run.exists()
    run.create(config)
    assert run.exists() and json.loads(run.config_path.read_text()) == run.read_config()
    assert run.read_config()["settings"]["input_shape"] == [1, 8, 8]
    run.create(config)  # the same config again: fine (tuples and lists compare equal via JSON)
    before = run.config_path.read_text()
    with pytest.raises(RunError, match="--run"):
        run.create({**config, "steps": 4})
    assert run.config_path.read_text() == before
    assert [p.name for p in run.path.iterdir()] == ["config.json"]


def test_read_config_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="train it first.*--run ghost"):
        Run("ghost", root=tmp_path).read_config()
    broken = Run("broken", root=tmp_path)
    broken.path.mkdir()
    broken.config_path.write_text('{"space": ')
    with pytest.raises(RunError, match="not valid JSON"):
        broken.read_config()


def test_append_and_read_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "log.jsonl"
    assert list(read_jsonl(path)) == []  # a missing file reads as empty
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2, "loss": 0.5})
    assert list(read_jsonl(path)) == [{"step": 1}, {"step": 2, "loss": 0.5}]
    with path.open("a") as fh:
        fh.write('[1, 2]\n"text"\n\n{"step": 3, "lo')  # non-dict rows, a blank, a torn last line
    assert [row["step"] for row in read_jsonl(path)] == [1, 2]
    append_jsonl(path, {"step": 4})  # a row appended after a torn one (a resumed run) is kept
    assert path.read_text().endswith('"lo\n{"step": 4}\n')
    assert [row["step"] for row in read_jsonl(path)] == [1, 2, 4]


def test_a_run_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path, hold_run_lock):
    from hypernas.runs.store import lock_holder, run_lock

    run = Run("locked", root=tmp_path)
    assert lock_holder(run, "train") is None
    proc = hold_run_lock(tmp_path, "locked", "train")
    assert lock_holder(run, "train") == str(proc.pid)  # what `hypernas runs` shows
    with pytest.raises(RunError, match=f"being trained by process {proc.pid}; wait"):
        with run_lock(run, "train", "trained"):
            pass
    with run_lock(run, "rank-hypernet", "ranked"):  # another part of the run is free
        with run_lock(run, "rank-hypernet", "ranked"):  # and re-entrant in one process
            assert lock_holder(run, "rank-hypernet") == str(os.getpid())
    assert lock_holder(run, "rank-hypernet") is None  # released
    proc.kill()
    proc.wait()
    assert lock_holder(run, "train") is None  # killed: its pid is still in the file, it is dead
    with run_lock(run, "train", "trained"):  # the OS released the dead holder's lock
        pass


def test_a_space_file_runs_only_unchanged_and_trusted(tmp_path, monkeypatch, capsys):
    from tests.test_space_contract import USER_SPACE

    from hypernas.cli import main

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HYPERNAS_TRUSTED_SPACES", str(tmp_path / "mine"))
    space = tmp_path / "tiny_space.py"
    space.write_text(USER_SPACE)
    train = ["train", str(space), "--data", "mnist1d", "--steps", "1", "--meta-batch", "2",
             "--batch-size", "4", "--dim", "8", "--samples", "1", "--run", "u"]
    assert main(train) == 0  # the user named the file: trusted
    assert main(["rank", "u", "--n", "2", "--json"]) == 0
    assert len(Run("u").read_config()["space_sha256"]) == 64
    capsys.readouterr()
    # a run folder from someone else: this user has never run that file
    monkeypatch.setenv("HYPERNAS_TRUSTED_SPACES", str(tmp_path / "someone-else"))
    assert main(["rank", "u", "--n", "1"]) == 2
    assert "which you have not used before" in capsys.readouterr().err
    assert main(["refine", "u", "--trials", "1"]) == 2
    assert "which you have not used before" in capsys.readouterr().err
    assert main(["rank", "u", "--n", "2", "--json", "--trust-space"]) == 0
    cand = json.loads(capsys.readouterr().out.splitlines()[0])
    assert main(["show", "u", "--arch", cand["id"], "--json"]) == 0  # trusted from now on
    # the file changed since the run was made: refused even when trusted
    space.write_text(USER_SPACE + "\nimport os  # something new\n")
    for argv in (["rank", "u", "--n", "2", "--trust-space"], ["show", "u", "--arch", cand["id"]],
                 train):
        assert main(argv) == 2
        assert "was made with another version of" in capsys.readouterr().err


@pytest.mark.parametrize("line", ['{"id": "abc"}', '{"id": 3, "encoding": "x", "score": 1.0}',
                                  '{"id": "a", "encoding": "x", "score": "high"}',
                                  '{"id": "a", "encoding": "x", "score": true}'])
def test_a_foreign_ranking_row_is_refused_with_its_row(tmp_path, line):
    from hypernas.runs.rankings import ranking_rows

    run = Run("r", root=tmp_path)
    good = {"id": "a1", "encoding": "e", "score": -0.3}
    append_jsonl(run.ranking_path("hypernet"), good)
    assert ranking_rows(run, "hypernet") == {"a1": good}
    with run.ranking_path("hypernet").open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(RunError, match=r"row 2: not a hypernas ranking row"):
        ranking_rows(run, "hypernet")


def test_combined_ranking_is_the_rank_average_over_the_common_pool():
    from hypernas.runs.rankings import combine_rankings

    hyper = {i: {"id": i, "encoding": i, "score": s, "params": 1}
             for i, s in {"a": -0.3, "b": -0.5, "c": -0.4, "d": -0.35}.items()}
    naswot = {i: {"id": i, "encoding": i, "score": s}
              for i, s in {"a": 500.0, "b": 520.0, "c": 510.0, "d": 510.0, "e": 1.0}.items()}
    rows = combine_rankings({"hypernet": hyper, "naswot": naswot})
    assert set(rows) == {"a", "b", "c", "d"}  # e is not ranked by the hypernet
    # percentiles over 4: hypernet a 1, d 2/3, c 1/3, b 0; naswot b 1, c and d tie at 0.5, a 0
    want = {"a": 0.5, "b": 0.5, "c": (1 / 3 + 0.5) / 2, "d": (2 / 3 + 0.5) / 2}
    assert {i: r["score"] for i, r in rows.items()} == pytest.approx(want)
    assert rows["a"]["parts"] == {"hypernet": -0.3, "naswot": 500.0}
    assert rows["a"]["params"] == 1 and rows["a"]["scorer"] == "combined"
    # scale-free: any increasing transform of a part changes nothing
    scaled = {i: {**r, "score": r["score"] * 1e6 - 7} for i, r in naswot.items()}
    again = combine_rankings({"hypernet": hyper, "naswot": scaled})
    assert {i: r["score"] for i, r in again.items()} == pytest.approx(want)


def test_rank_combine_writes_the_combined_ranking(tmp_path, monkeypatch, capsys):
    from hypernas.cli import main
    from hypernas.runs.rankings import ranked_rows

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", "mlp", "--data", "digits", "--set", "max_depth=2", "--steps", "2",
                 "--dim", "8", "--samples", "2", "--run", "t"]) == 0
    capsys.readouterr()
    assert main(["rank", "t", "--n", "6", "--combine", "naswot", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    combined = ranked_rows(Run("t"), "combined")
    assert [r["id"] for r in shown] == [r["id"] for r in combined]
    assert all(0 <= r["score"] <= 1 for r in combined) and len(combined) == 6
    assert main(["rank", "t", "--n", "6", "--combine", "naswot", "--ranking", "x"]) == 2
