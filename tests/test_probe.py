"""The probe: a ridge read-out of the hypernetwork's graph embedding (hypernas.ranking.probe)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from scipy.stats import spearmanr

import hypernas as hn
from hypernas.errors import HypernasError
from hypernas.ranking.probe import MIN_LABELS, WEAK, Probe, fit_probe, graph_embeddings


def test_a_probe_recovers_a_linear_signal_on_candidates_it_was_not_fitted_on():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, 12, generator=gen)
    y = 0.85 + 0.01 * x[:, 2] - 0.005 * x[:, 7] + 0.002 * torch.randn(120, generator=gen)
    probe = fit_probe(x[:60], y[:60], recipe="toy")
    assert probe.labels == 60 and probe.cv_spearman > 0.8 and probe.recipe == "toy"
    assert spearmanr(probe.predict(x[60:]), y[60:]).statistic > 0.85
    # pure noise: the held-out agreement says there is nothing to read
    assert fit_probe(x[:60], torch.randn(60, generator=gen)).cv_spearman < WEAK


def test_a_probe_round_trips_and_refuses_what_it_cannot_read():
    x, y = torch.randn(20, 4), torch.linspace(0.8, 0.9, 20)
    probe = fit_probe(x, y)
    again = Probe.from_dict(json.loads(json.dumps(probe.to_dict())))
    assert again == probe and torch.equal(again.predict(x), probe.predict(x))
    with pytest.raises(HypernasError, match="reads 4 features per candidate"):
        probe.predict(torch.randn(3, 5))
    with pytest.raises(HypernasError, match=f"at least {MIN_LABELS} trained candidates"):
        fit_probe(x[:MIN_LABELS - 1], y[:MIN_LABELS - 1])
    with pytest.raises(HypernasError, match="not all equal"):
        fit_probe(x, torch.full((20,), 0.5))
    with pytest.raises(HypernasError, match="not a probe"):
        Probe.from_dict({"mean": [0.0]})


def _tiny_hypernet(space, seed: int = 0):
    from hypernas.hypernet.model import GraphHyperNetwork, HyperNetConfig

    torch.manual_seed(seed)
    return GraphHyperNetwork(HyperNetConfig.for_space(space, dim=16, samples=1)).eval()


def test_embeddings_are_one_mean_per_graph_whatever_the_batch_and_members_sit_side_by_side():
    from hypernas.hypernet.ensemble import HyperNetEnsemble

    space = hn.load_space("mlp", input_shape=(64,), num_classes=10, max_depth=3)
    graphs = [c.graph for c in space.sample_many(7, seed=1)]
    hnet = _tiny_hypernet(space)
    together = graph_embeddings(hnet, graphs, chunk=16)
    alone = torch.cat([graph_embeddings(hnet, [g]) for g in graphs])
    assert together.shape == (7, 16) and torch.allclose(together, alone, atol=1e-5)
    pair = HyperNetEnsemble([hnet, _tiny_hypernet(space, seed=1)])
    both = graph_embeddings(pair, graphs, chunk=3)
    assert both.shape == (7, 32) and torch.allclose(both[:, :16], together, atol=1e-5)


def test_a_probe_on_the_graph_embedding_ranks_unseen_candidates_by_what_the_labels_reward():
    # the "recipe" here rewards shallow, wide networks; the probe never sees depth or width,
    # only the hypernetwork's embedding of each graph, and is judged on candidates it never saw
    space = hn.load_space("mlp", input_shape=(64,), num_classes=10, max_depth=3)
    cands = space.sample_many(90, seed=3)
    rng = random.Random(0)

    def reached(c):
        widths = [v for k, v in c.params.items() if k.endswith("_width")]
        return 0.9 - 0.02 * c.params["depth"] + 0.0002 * sum(widths) / len(widths) \
            + rng.gauss(0, 0.002)

    accs = torch.tensor([reached(c) for c in cands])
    feats = graph_embeddings(_tiny_hypernet(space), [c.graph for c in cands])
    probe = fit_probe(feats[:50], accs[:50])
    assert spearmanr(probe.predict(feats[50:]), accs[50:]).statistic > 0.7


@pytest.fixture
def ranked_run(tmp_path, monkeypatch, capsys):
    """A tiny run with a hypernet ranking, and a truth file whose accuracies reward shallow
    candidates (by encoding, as a benchmark's rows give them)."""
    from hypernas.cli import main

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", "mlp", "--data", "digits", "--set", "max_depth=3", "--steps", "2",
                 "--dim", "8", "--samples", "2", "--run", "t"]) == 0
    assert main(["rank", "t", "--n", "6"]) == 0
    capsys.readouterr()
    space = hn.load_space("mlp", input_shape=(64,), num_classes=10, max_depth=3)
    rng = random.Random(0)
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(
        json.dumps({"encoding": c.encoding, "accuracy": 0.95 - 0.03 * c.params["depth"]
                    + rng.gauss(0, 0.003)}) + "\n" for c in space.sample_many(30, seed=5)))
    return tmp_path, truth


def test_probe_then_rank_by_it(ranked_run, capsys):
    from hypernas.cli import main
    from hypernas.ranking.probe import load_probe
    from hypernas.runs.rankings import ranking_rows
    from hypernas.runs.store import Run

    root, truth = ranked_run
    assert main(["rank", "t", "--scorer", "probe", "--n", "4"]) == 2
    assert "has no probe; fit one on trained candidates: hypernas probe t" in \
        capsys.readouterr().err
    assert main(["probe", "t", "--truth", str(truth), "--recipe", "a made-up recipe"]) == 0
    out = capsys.readouterr().out
    assert "fitted on 30 trained candidates" in out and "a made-up recipe" in out
    probe = load_probe(Run("t", root=root))
    assert probe.labels == 30 and probe.recipe == "a made-up recipe"
    assert main(["rank", "t", "--scorer", "probe", "--n", "12", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and [r["score"] for r in rows] == sorted(
        (r["score"] for r in rows), reverse=True)
    kept = ranking_rows(Run("t", root=root), "probe")
    assert set(kept) == {r["id"] for r in rows}
    space = hn.load_space("mlp", input_shape=(64,), num_classes=10, max_depth=3)
    depth = {r["id"]: space.replay(r["encoding"]).params["depth"] for r in rows}
    assert spearmanr([r["score"] for r in rows], [-depth[r["id"]] for r in rows]).statistic > 0.5


def test_probe_without_enough_trained_candidates_names_the_fix(ranked_run, capsys):
    from hypernas.cli import main

    root, truth = ranked_run
    assert main(["probe", "t"]) == 2
    assert "a probe needs 10: screen more (hypernas refine t --trials 10) or give --truth FILE" \
        in capsys.readouterr().err
    few = root / "few.jsonl"
    few.write_text("".join(truth.read_text().splitlines(keepends=True)[:5]))
    assert main(["probe", "t", "--truth", str(few)]) == 2
    assert "at least 10 trained candidates" in capsys.readouterr().err
    assert not (root / "t" / "probe.json").exists()


def test_a_search_by_the_probe_ranks_every_candidate_with_it_and_screens_in_its_order(
        ranked_run, capsys):
    from hypernas.cli import main
    from hypernas.ranking import load_run
    from hypernas.runs.rankings import ranking_rows
    from hypernas.runs.store import Run
    from hypernas.search.config import SearchConfig
    from hypernas.search.pipeline import _rank, screen_label

    root, truth = ranked_run
    assert main(["probe", "t", "--truth", str(truth)]) == 0
    loaded = load_run(Run("t", root=root))
    cfg = SearchConfig(space="mlp", data="digits", screen_rule="probe", candidates=40)
    cands = loaded.space.sample_many(40, seed=7)
    hypernet_before = ranking_rows(loaded.run, "hypernet")
    ranked, each = _rank(loaded, cands, cfg, minutes_left=0.001, on_rows=lambda rows: None)
    assert ranked == 40 and each is not None  # all of them, whatever the time left
    assert set(ranking_rows(loaded.run, "probe")) == {c.id for c in cands}
    assert ranking_rows(loaded.run, "hypernet") == hypernet_before  # no hypernet scoring
    assert screen_label(loaded.run, cfg) == "probe"
    assert screen_label(loaded.run, SearchConfig(screen_rule="rank")) == "combined"


def test_a_search_by_the_probe_without_one_names_the_fix_before_training(tmp_path, monkeypatch,
                                                                          capsys):
    from hypernas.cli import main

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["search", "mlp", "--data", "digits", "--set", "max_depth=2", "--budget", "0.05",
                 "--screen-by", "probe", "--run", "p"]) == 2
    err = capsys.readouterr().err
    assert "--screen-by probe: run 'p' has no probe" in err and "--screen-by ucb" in err
    assert not (tmp_path / "p" / "checkpoints").exists() or not any(
        (tmp_path / "p" / "checkpoints").iterdir())


def test_the_runs_own_screens_of_its_most_common_recipe_are_the_probes_labels(ranked_run):
    import optuna

    from hypernas.cli.calibrate import _screens
    from hypernas.refine.study import open_study
    from hypernas.runs.store import Run

    root, _ = ranked_run
    run = Run("t", root=root)
    study = open_study(run)
    screen = {"epochs": 2, "train_size": 5000, "lr": 0.1}
    for i in range(12):  # 11 screens of one recipe (one candidate twice), one other trial
        recipe = {**screen, "seed": i} if i < 11 else {**screen, "lr": 0.02}
        study.add_trial(optuna.trial.create_trial(
            value=0.5 + 0.01 * i, user_attrs={"encoding": f"code{min(i, 9)}", "recipe": recipe,
                                              "warm_start": i == 11}))
    labels, recipe = _screens(run)
    assert labels == {**{f"code{i}": 0.5 + 0.01 * i for i in range(9)}, "code9": 0.6}
    assert recipe == "validation accuracy after 2 epochs on 5000 images at lr 0.1, from random " \
                     "weights"
