"""The run report: one self-contained HTML page, checked as a person would see it."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from hypernas.cli import main
from hypernas.report import FIGURES

TINY = ["mlp", "--data", "digits", "--set", "max_depth=2", "--meta-batch", "2", "--batch-size",
        "8", "--dim", "8", "--samples", "2"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny run taken through every stage: trained, ranked, refined, exported."""
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("HYPERNAS_RUNS", str(root))
    try:
        assert main(["train", *TINY, "--run", "t", "--steps", "20"]) == 0
        assert main(["rank", "t", "--n", "12", "--combine", "naswot"]) == 0
        assert main(["refine", "t", "--top", "4", "--trials", "4", "--max-epochs", "1"]) == 0
        assert main(["export", "t", "--out", str(root / "t" / "exports" / "best"),
                     "--format", "safetensors"]) == 0
        assert main(["train", *TINY, "--run", "bare", "--steps", "20"]) == 0
        yield root
    finally:
        mp.undo()


def test_the_report_holds_every_figure_and_fetches_nothing(searched, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    assert main(["report", "t", "--png", str(searched / "png")]) == 0
    assert "report of run t" in capsys.readouterr().out
    page = (searched / "t" / "report.html").read_text()
    for name in FIGURES:
        assert f'id="{name}" data-has-plot="yes"' in page, name
        assert (searched / "png" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # nothing to fetch: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "Spearman" in page and "Pareto front" in page


def test_a_run_without_trials_says_what_each_missing_figure_needs(searched, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    out = searched / "bare.html"
    assert main(["report", "bare", "--out", str(out)]) == 0
    page = out.read_text()
    assert 'id="hypernet-training" data-has-plot="yes"' in page
    assert 'id="score-vs-accuracy" data-has-plot="no"' in page
    assert "run hypernas refine bare" in page and "run hypernas rank bare" in page
    assert main(["report", "nope"]) == 2


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (bash scripts/setup.sh installs it)")
def test_the_report_renders_in_a_headless_browser_without_console_errors(searched, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    assert main(["report", "t"]) == 0
    page = searched / "t" / "report.html"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert f'data-checked="{len(FIGURES)}"' in dom  # the page's script ran to its end
    rendered = re.findall(r'<figure class="plot" id="([\w-]+)" data-has-plot="yes" '
                          r'data-rendered="(\w+)"', dom)
    assert sorted(rendered) == sorted((name, "yes") for name in FIGURES)
    errors = [line for line in proc.stderr.splitlines()
              if "CONSOLE" in line or "Uncaught" in line]
    assert not errors, errors


def test_an_existing_out_is_replaced_only_when_it_is_an_earlier_report_and_forced(
        searched, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    page = searched / "mine.html"
    assert main(["report", "t", "--out", str(page)]) == 0
    assert main(["report", "t", "--out", str(page)]) == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    assert main(["report", "t", "--out", str(page), "--force"]) == 0
    other = searched / "notes.html"
    other.write_text("<html>my notes</html>")
    assert main(["report", "t", "--out", str(other), "--force"]) == 2
    assert "is not a hypernas report" in capsys.readouterr().err
    assert other.read_text() == "<html>my notes</html>"
    assert main(["report", "t"]) == 0 and main(["report", "t"]) == 0  # the run's own page


def test_the_dashboard_serves_the_runs_trials_with_their_candidates(searched, monkeypatch,
                                                                   capsys):
    import json
    import os
    import socket
    import sys
    import time
    import urllib.request

    from hypernas.refine.study import open_study
    from hypernas.runs.store import Run

    pytest.importorskip("optuna_dashboard")
    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.listen()  # held: the dashboard refuses a port in use
        assert main(["dashboard", "t", "--port", str(port)]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["dashboard", "bare", "--port", str(port)]) == 2
    assert "has no study yet" in capsys.readouterr().err
    proc = subprocess.Popen([sys.executable, "-m", "hypernas", "dashboard", "t", "--port",
                             str(port)], env={**os.environ}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url, studies = f"http://127.0.0.1:{port}", None
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{url}/api/studies", timeout=2) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert studies and studies[0]["study_name"] == "refine"
        with urllib.request.urlopen(f"{url}/api/studies/{studies[0]['study_id']}") as r:
            trials = json.load(r)["trials"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    study = open_study(Run("t", root=searched), create=False)
    assert len(trials) == len(study.trials) == 4
    attrs = {a["key"]: a["value"] for a in trials[0]["user_attrs"]}
    for key in ("id", "encoding", "params", "macs", "base_hypernet_score", "ranking", "recipe"):
        assert key in attrs, key


def test_the_dashboard_without_optuna_dashboard_names_the_extra(searched, monkeypatch, capsys):
    import importlib.util

    import hypernas.cli.dashboard as dashboard

    monkeypatch.setenv("HYPERNAS_RUNS", str(searched))
    real = importlib.util.find_spec
    monkeypatch.setattr(dashboard.importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    assert main(["dashboard", "t"]) == 2
    assert "pip install 'hypernas[dashboard]'" in capsys.readouterr().err


def test_optunas_own_command_line_reads_the_runs_study(searched):
    """The study is plain Optuna SQLite: `optuna trials` and `optuna best-trial` read it."""
    import json
    import sys
    from pathlib import Path

    from hypernas.refine.study import open_study
    from hypernas.runs.store import Run

    optuna_cli = Path(sys.executable).with_name("optuna")
    if not optuna_cli.exists():
        pytest.skip("optuna's command line is not installed beside this Python")
    storage = f"sqlite:///{searched / 't' / 'study.db'}"
    out = subprocess.run([str(optuna_cli), "best-trial", "--storage", storage, "--study-name",
                          "refine", "-f", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    best = json.loads(out.stdout)
    study = open_study(Run("t", root=searched), create=False)
    assert best["number"] == study.best_trial.number and best["value"] == study.best_value
    assert best["user_attrs"]["encoding"] == study.best_trial.user_attrs["encoding"]
    out = subprocess.run([str(optuna_cli), "trials", "--storage", storage, "--study-name",
                          "refine", "-f", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == len(study.trials)
