"""The command line: every command's --help, tables, JSON lines, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import hypernas as hn
from hypernas.cli import build_parser, main

COMMANDS = ["spaces", "sample", "show-arch", "datasets", "train", "rank", "show", "runs", "refine",
            "export", "search", "pretrained", "calibrate", "probe", "report",
            "dashboard"]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hypernas", *argv], capture_output=True,
                          text=True, timeout=120)


def test_every_command_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0
        assert "usage: hypernas " + cmd in capsys.readouterr().out


def test_module_entry_point_help():
    proc = run("--help")
    assert proc.returncode == 0 and "show-arch" in proc.stdout


def test_spaces_table(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in hn.list_spaces():
        assert name in out
    assert "15,625" in out


def test_sample_json_lines(capsys):
    assert main(["sample", "nb201", "--n", "5", "--seed", "3", "--json", "--set", "N=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    space = hn.load_space("nb201", N=1)
    for line in lines:
        row = json.loads(line)
        assert set(row) == {"encoding", "id", "graph"}
        graph = hn.graph_from_json(json.dumps(row["graph"]))
        assert hn.canonical_id(graph) == row["id"] == space.replay(row["encoding"]).id
    assert len({json.loads(l)["id"] for l in lines}) == 5


def test_sample_table_is_deterministic(capsys):
    main(["sample", "mlp", "--n", "4", "--seed", "7"])
    first = capsys.readouterr().out
    main(["sample", "mlp", "--n", "4", "--seed", "7"])
    assert capsys.readouterr().out == first
    assert "samples of mlp" in first


def test_show_arch_tree(capsys):
    assert main(["show-arch", "nb201", "331003", "--data", "fashion-mnist", "--set", "N=1"]) == 0
    out = capsys.readouterr().out
    assert "code=331003" in out and "params" in out and "1x28x28" in out
    cand = hn.load_space("nb201", input_shape=(1, 28, 28), N=1).replay("331003")
    assert f"{hn.count_params(cand.graph):,} params" in out


def test_show_arch_saves_graph(tmp_path, capsys):
    path = tmp_path / "arch.json"
    # the mlp encoding format is the space's own; use a sampled one to be independent of it
    enc = hn.load_space("mlp").sample(0).encoding
    assert main(["show-arch", "mlp", enc, "--save", str(path)]) == 0
    assert hn.canonical_id(hn.load_graph(path)) == hn.load_space("mlp").replay(enc).id


def test_invalid_encoding_is_one_line_without_traceback():
    proc = run("show-arch", "nb201", "3310")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "6-digit code" in proc.stderr


@pytest.mark.parametrize("argv, words", [
    (["show-arch", "nb301", "1"], "unknown search space"),
    (["sample", "nb201", "--n", "0"], "at least 1"),
    (["sample", "nb201", "--set", "Q=1"], "no setting"),
    (["sample", "nb201", "--set", "N"], "KEY=VALUE"),
    (["sample", "nb201", "--data", "cifar10"], "unknown dataset"),
    (["sample", "nb201", "--data", "mnist1d"], "mlp space"),
    (["search", "--finalists", "0"], "--finalists must be at least 1"),
])
def test_user_errors_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_piped_output_has_no_control_codes():
    proc = run("sample", "nb201", "--n", "3", "--set", "N=1")
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stdout


def test_datasets_table(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "digits", "mnist1d", "npz"):
        assert name in out


def test_your_own_npz_file_from_the_command_line(tmp_path, monkeypatch, capsys):
    """``--data path/to/file.npz`` through train, rank, search and export: the run keeps the
    file's absolute path and its shape, and the exported model takes the file's inputs."""
    import numpy as np
    import torch

    from hypernas.runs import Run

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path / "runs"))
    from hypernas.data import load_dataset

    digits = load_dataset("digits", seed=0)
    file = tmp_path / "mine.npz"
    np.savez(file, x=digits.train.x.reshape(len(digits.train), -1).numpy()[:600],
             y=digits.train.y.numpy()[:600] % 4)  # 64 features, 4 classes
    monkeypatch.chdir(tmp_path)
    tiny = ["--meta-batch", "2", "--batch-size", "8", "--dim", "8", "--samples", "2"]
    assert main(["train", "mlp", "--data", "mine.npz", "--run", "t", "--steps", "3", *tiny]) == 0
    config = json.loads(Run("t").config_path.read_text())
    assert config["data"]["name"] == "npz" and config["data"]["path"] == str(file.resolve())
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "runs")  # the run finds its file from any folder
    assert main(["rank", "t", "--n", "4", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4
    assert main(["sample", "mlp", "--data", str(file), "--n", "1", "--json"]) == 0
    assert main(["search", "mlp", "--data", str(file), "--set", "max_depth=2", "--budget", "0.05",
                 "--n", "4", "--top", "2", "--trials", "2", "--format", "safetensors"]) == 0
    out = capsys.readouterr().out
    best = tmp_path / "runs" / "search-mlp-mine" / "exports" / "best"
    assert str(best) in out
    model = hn.load(best)
    assert model(torch.zeros(3, 64)).shape == (3, 4)


@pytest.mark.parametrize("data, words", [
    ("npz", "give its path instead, --data path/to/file.npz"),
    ("missing.npz", "no .npz file at missing.npz"),
])
def test_npz_data_without_a_file_names_the_fix(tmp_path, monkeypatch, capsys, data, words):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "mlp", "--data", data, "--run", "t", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()
