"""Ranking on Ray: the same rows as in-process `rank_run`, resumable without duplicates, and a lost
node costs no result; Ray is imported by hypernas.cluster alone, and only when used.

A tiny mlp/digits run trained 3 steps; Ray clusters of 1-CPU nodes (the test machine is small)."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from hypernas.data import DataConfig
from hypernas.cluster import ClusterUnreachableError, DistributedError
from hypernas.ranking.on_ray import ScoringWorker, rank_on_ray
from hypernas.hypernet.model import HyperNetConfig
from hypernas.hypernet.trainer import HyperTrainConfig
from hypernas.runs import Run, append_jsonl, read_jsonl
from hypernas.ranking import LoadedRun, RunConfig, rank_run, start_run, train_run

ray = pytest.importorskip("ray")

N_CANDS, CHUNK = 24, 4


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> LoadedRun:
    cfg = RunConfig(space="mlp", space_settings={"max_depth": 2}, data=DataConfig("digits"),
                    hypernet=HyperNetConfig(dim=8, samples=2),
                    train=HyperTrainConfig(steps=3, meta_batch=2, batch_size=8))
    lr = start_run(Run("t", root=tmp_path_factory.mktemp("runs")), cfg)
    train_run(lr)
    return lr


@pytest.fixture(scope="module")
def cands(loaded):
    return loaded.space.sample_many(N_CANDS, seed=0)


@pytest.fixture(scope="module")
def reference(loaded, cands) -> dict[str, dict[str, Any]]:
    return rank_run(loaded, cands, label="reference")


def _assert_same(got: dict[str, dict], ref: dict[str, dict]) -> None:
    """Same ids and fields; scores equal to float tolerance (graphs packed in other groups)."""
    assert sorted(got) == sorted(ref)
    for key, want in ref.items():
        row = got[key]
        assert row.keys() == want.keys()
        for field in ("score", "spread", "loss", "acc"):
            assert math.isclose(row[field], want[field], rel_tol=1e-5, abs_tol=1e-6), field
        assert {k: row[k] for k in ("encoding", "id", "params", "scorer")} == \
               {k: want[k] for k in ("encoding", "id", "params", "scorer")}


def _file_ids(loaded: LoadedRun, label: str) -> list[str]:
    return [row["id"] for row in read_jsonl(loaded.run.ranking_path(label))]


def test_import_hypernas_does_not_import_ray():
    code = ("import hypernas, hypernas.ranking, hypernas.refine, hypernas.search, sys; "
            "assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_worker_scores_like_rank_run_without_ray(loaded, cands, reference):
    blob = loaded.run.checkpoint_path.read_bytes()
    worker = ScoringWorker(loaded.config.to_dict(), "hypernet", blob)
    encodings = [c.encoding for c in cands]
    rows = worker.score(encodings[:7]) + worker.score(encodings[7:])  # chunking changes nothing
    _assert_same({r["id"]: {**r, "scorer": "hypernet"} for r in rows}, reference)
    params = ScoringWorker(loaded.config.to_dict(), "params", None).score([cands[0].encoding])
    assert params[0]["score"] == float(params[0]["params"]) and params[0]["spread"] == 0.0


def test_private_cluster_ranks_like_rank_run(loaded, cands, reference):
    assert not ray.is_initialized()
    got = rank_on_ray(loaded, [*cands, *cands[:5]], label="private", workers=2, chunk=CHUNK)
    _assert_same(got, reference)
    assert list(got) == list(reference)  # same order too: old rows, then new in input order
    ids = _file_ids(loaded, "private")
    assert len(ids) == len(set(ids)) == N_CANDS
    assert not ray.is_initialized()  # the private cluster is gone


@pytest.mark.parametrize("kwargs, words", [
    (dict(workers=0), "at least 1"),
    (dict(chunk=0), "chunk"),
    (dict(scorer="magic"), "unknown scorer"),
    (dict(address="127.0.0.1:1"), "no Ray cluster answers"),
    (dict(address="nowhere"), "not HOST:PORT"),
])
def test_bad_settings_name_the_fix(loaded, cands, kwargs, words):
    with pytest.raises(DistributedError, match=words):
        rank_on_ray(loaded, cands[:2], label="bad", **kwargs)
    assert not ray.is_initialized()


def test_a_session_needs_a_worker():
    from hypernas.cluster import ray_session

    with pytest.raises(DistributedError, match="at least 1"), ray_session(workers=0):
        pass
    assert not ray.is_initialized()


def test_unreachable_cluster_is_its_own_error(loaded, cands):
    with pytest.raises(ClusterUnreachableError, match="ray start --head"):
        rank_on_ray(loaded, cands[:2], label="bad", address="127.0.0.1:1")


@pytest.fixture(scope="class")
def shared_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.usefixtures("shared_session")
class TestInASharedSession:
    """Ray already initialised by the caller: used as it is, left running, no actors leaked."""

    def test_one_worker_ranks_like_rank_run_and_frees_its_cpu(self, loaded, cands, reference):
        got = rank_on_ray(loaded, cands, label="one", workers=1, chunk=CHUNK)
        _assert_same(got, reference)
        assert ray.is_initialized()
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2

    def test_a_raced_ranking_on_one_worker_is_the_in_process_one(self, loaded, cands):
        from hypernas.ranking.racing import RaceConfig

        race = RaceConfig(top_k=2, min_calibration=4)
        want = rank_run(loaded, cands, label="raced-here", race=race)
        got = rank_on_ray(loaded, cands, label="raced-ray", workers=1, chunk=CHUNK, race=race)
        assert sorted(got) == sorted(want)
        assert any(r["images"] < r["full_images"] for r in want.values())  # some stopped
        for key, row in want.items():   # each chunk left with the rows of all before it
            assert got[key]["images"] == row["images"] and got[key]["scoring"] == "adaptive"
            assert math.isclose(got[key]["score"], row["score"], rel_tol=1e-5, abs_tol=1e-6)

    def test_interrupted_ranking_resumes_without_duplicates(self, loaded, cands, reference):
        class Stop(Exception):
            pass

        def stop(rows):
            raise Stop

        with pytest.raises(Stop):
            rank_on_ray(loaded, cands, label="resume", workers=2, chunk=CHUNK, on_rows=stop)
        before = loaded.run.ranking_path("resume").read_text()
        written = len(_file_ids(loaded, "resume"))
        assert 0 < written <= CHUNK                         # one chunk; the one in flight is lost
        scored = []
        got = rank_on_ray(loaded, cands, label="resume", workers=2, chunk=CHUNK,
                          on_rows=lambda rows: scored.extend(r["id"] for r in rows))
        assert len(scored) == N_CANDS - written
        ids = _file_ids(loaded, "resume")
        assert len(ids) == len(set(ids)) == N_CANDS
        assert loaded.run.ranking_path("resume").read_text().startswith(before)
        _assert_same(got, reference)

    def test_rows_already_ranked_are_kept_not_rescored(self, loaded, cands, reference):
        half = [reference[c.id] for c in cands[:N_CANDS // 2]]
        for row in half:
            append_jsonl(loaded.run.ranking_path("half"), row)
        scored = []
        got = rank_on_ray(loaded, cands, label="half", workers=2, chunk=CHUNK,
                          on_rows=lambda rows: scored.extend(r["id"] for r in rows))
        assert sorted(scored) == sorted(c.id for c in cands[N_CANDS // 2:])
        assert all(got[row["id"]] == row for row in half)
        _assert_same(got, reference)
        assert rank_on_ray(loaded, cands, label="half", on_rows=scored.append) == got
        assert len(scored) == N_CANDS - N_CANDS // 2         # nothing left: no call made

    def test_workers_that_cannot_start_give_up_with_the_cause(self, loaded, cands, tmp_path):
        missing = DataConfig(name="npz", path=str(tmp_path / "missing.npz"))  # not on the workers
        config = dataclasses.replace(loaded.config, data=missing)
        broken = dataclasses.replace(loaded, config=config)
        with pytest.raises(DistributedError, match="failed to start 2 times.*missing.npz"):
            rank_on_ray(broken, cands, label="broken", workers=1, retries=1)
        assert not loaded.run.ranking_path("broken").exists()

    def test_a_proxy_ranks_like_rank_run(self, loaded, cands):
        want = rank_run(loaded, cands[:8], scorer="synflow", label="synflow-ref")
        got = rank_on_ray(loaded, cands[:8], scorer="synflow", label="synflow", workers=2)
        assert got == want


@pytest.fixture
def two_nodes(monkeypatch):
    """A head and a worker node of one CPU each; the head's CPU is held by a placement group made
    before the worker node joins, so the first scoring actor must run on the worker node."""
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group

    from hypernas.cluster import _cached_auth_mode

    mode = _cached_auth_mode()  # every node must use the auth mode this process's Ray uses
    if mode is not None:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        hold = placement_group([{"CPU": 1}])
        ray.get(hold.ready(), timeout=60)
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert ray.cluster_resources()["CPU"] == 2
        yield cluster, worker, hold
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_losing_a_node_mid_ranking_loses_no_result(loaded, cands, reference, two_nodes, caplog,
                                                   monkeypatch):
    from ray.util.placement_group import remove_placement_group

    from hypernas.ranking import on_ray

    # the replacement worker starts on the head node; on a loaded 2-core machine that has taken
    # over the product's 120 s limit, which is not what this test is about
    monkeypatch.setattr(on_ray, "START_TIMEOUT_S", 600.0)
    cluster, worker, hold = two_nodes
    seen: list[int] = []

    def lose_the_worker_node(rows):
        seen.append(len(rows))
        if len(seen) == 1:  # the worker node's actor just scored a chunk and gets the next one
            cluster.remove_node(worker)
            remove_placement_group(hold)  # the second actor can start on the head now

    with caplog.at_level(logging.WARNING, logger="hypernas.ranking.on_ray"):
        got = rank_on_ray(loaded, cands, label="node", workers=2, chunk=CHUNK,
                          on_rows=lose_the_worker_node)
    assert "lost with its worker" in caplog.text
    _assert_same(got, reference)
    ids = _file_ids(loaded, "node")
    assert len(ids) == len(set(ids)) == N_CANDS and sum(seen) == N_CANDS


@pytest.mark.parametrize("resources, workers, words", [
    ({"CPU": 16.0, "GPU": 2.0}, 4, "has 2 GPU(s) and each of --workers 4 takes one: lower "
                                   "--workers to 2"),
    ({"CPU": 2.0}, 3, "has 2 CPU(s) and each of --workers 3 takes one: lower --workers to 2"),
])
def test_a_cluster_too_small_for_the_workers_is_refused_at_once(resources, workers, words):
    from hypernas.ranking.on_ray import check_resources

    with pytest.raises(DistributedError, match=re.escape(words)):
        check_resources(resources, workers)
    assert check_resources({"CPU": 8.0, "GPU": 4.0}, 4) is True
    assert check_resources({"CPU": 8.0}, 4) is False
