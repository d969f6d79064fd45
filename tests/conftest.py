"""Settings every test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_trust_store(tmp_path_factory, monkeypatch):
    """Space files trusted during a test go to a file of the test session, not the user's."""
    store = tmp_path_factory.getbasetemp() / "trusted_spaces"
    monkeypatch.setenv("HYPERNAS_TRUSTED_SPACES", str(store))


@pytest.fixture
def hold_run_lock():
    """``hold(root, run, part)`` starts a process that holds that part of the run's lock
    (``hypernas.runs.store.run_lock``) until it is killed, and returns it; any still alive
    are killed after the test."""
    import subprocess
    import sys

    code = ("import sys, time\n"
            "from hypernas.runs.store import Run, run_lock\n"
            "with run_lock(Run(sys.argv[2], root=sys.argv[1]), sys.argv[3], 'held'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n")
    procs = []

    def hold(root, run, part):
        proc = subprocess.Popen([sys.executable, "-c", code, str(root), run, part],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()
