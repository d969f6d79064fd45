"""Shipped hypernetworks: the packaged one loads, matches its card and scores as recorded; a
search ranks with a matching one instead of training, and everything else trains its own."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hypernas.cli import main
from hypernas.data import DataConfig
from hypernas.errors import HypernasError
from hypernas.hypernet import HyperNetEnsemble
from hypernas.hypernet.features import OP_INDEX
from hypernas.hypernet.trainer import load_checkpoint, weight_samples
from hypernas.ranking import pretrained
from hypernas.ranking.pretrained import (available, check_reference, find_pretrained,
                                         get_pretrained, ship)
from hypernas.ranking.racing import RaceConfig
from hypernas.ranking.rank import rank_run
from hypernas.ranking.run import RunConfig, load_run, start_run, train_run
from hypernas.runs import Run
from hypernas.search.config import SearchConfig

FASHION_DIR = Path(os.environ.get("HYPERNAS_FASHION_MNIST_DIR")
                   or "/usr/share/datasets/fashion-mnist")
SHIPPED = "nb201-fashion-mnist-16"
MACRO = "macro-fashion-mnist-16"


def _config(name: str) -> RunConfig:
    return RunConfig.from_dict(get_pretrained(name).config_dict)


def test_the_package_ships_a_hypernetwork_for_the_default_search():
    pre = get_pretrained(SHIPPED)
    assert [p.name for p in available()] == [MACRO, SHIPPED]
    cfg = RunConfig.from_dict(pre.config_dict)
    assert (cfg.space, cfg.data.name, cfg.resolution, cfg.pretrained) == (
        "nb201", "fashion-mnist", 16, SHIPPED)
    assert cfg.train.steps == pre.card["trained"]["steps"]  # step-counted: reproducible
    assert f"--steps {cfg.train.steps}" in pre.card["command"]
    # the default search's own config ({"C": 16, "N": 1}) matches the card's ({"N": 1})
    assert find_pretrained(SearchConfig().run_config()).name == SHIPPED
    assert SearchConfig().shipped_config() == cfg
    assert SearchConfig(pretrained=False).shipped_config() is None


def test_the_macro_search_under_a_budget_ranks_with_the_shipped_macro_hypernetwork():
    cfg = SearchConfig(space="macro", max_params=60_000)
    assert find_pretrained(cfg.run_config()).name == MACRO
    assert cfg.shipped_config() == _config(MACRO)  # the budget is not part of the setup
    assert cfg.shipped_config().space_settings == {}  # the full space: depths 1-4


def test_every_search_seed_ranks_with_the_shipped_hypernetwork_on_its_split():
    for seed in (1, 3):
        cfg = SearchConfig(seed=seed)
        assert cfg.run_config().data.seed == seed  # no shipped one: the seed's own split
        assert cfg.shipped_config() == _config(SHIPPED)  # shipped: the split it trained on
        assert cfg.shipped_config().data.seed == 0
    # a split asked for by name is kept, and no shipped hypernetwork was trained on it
    held = SearchConfig(seed=0, data_seed=2)
    assert held.run_config().data.seed == 2 and held.shipped_config() is None
    assert SearchConfig(seed=5, data_seed=0).shipped_config() == _config(SHIPPED)


@pytest.mark.parametrize("change", [
    dict(resolution=28), dict(data=DataConfig(name="fashion-mnist", seed=1)),
    dict(space_settings={"C": 16, "N": 2}), dict(space="mlp", space_settings={}),
])
def test_a_different_setup_finds_no_shipped_hypernetwork(change):
    cfg = dataclasses.replace(SearchConfig().run_config(), **change)
    assert find_pretrained(cfg) is None


def test_a_different_hypernetwork_finds_none_and_a_space_file_is_never_matched(tmp_path):
    base = SearchConfig().run_config()
    assert find_pretrained(dataclasses.replace(
        base, hypernet=dataclasses.replace(base.hypernet, dim=32))) is None
    assert find_pretrained(dataclasses.replace(base, space=str(tmp_path / "nb201.py"))) is None
    with pytest.raises(HypernasError,
                       match="shipped: macro-fashion-mnist-16, nb201-fashion-mnist-16"):
        get_pretrained("nb201-cifar10")


@pytest.mark.parametrize("name", [SHIPPED, MACRO])
def test_the_shipped_weights_match_their_hash_and_hold_no_optimiser_state(name):
    pre = get_pretrained(name)
    assert pretrained._sha256(pre.weights) == pre.card["sha256"]
    tensors = load_file(str(pre.weights))
    assert tensors and all(k.startswith("hnet.") for k in tensors)
    hnet, opt_state, meta = load_checkpoint(pre.weights, _config(name).hypernet)
    assert opt_state == {} and meta["step"] == pre.card["trained"]["steps"]


@pytest.fixture(scope="module", params=[SHIPPED, MACRO])
def shipped_run(request, tmp_path_factory):
    if not all((FASHION_DIR / f).is_file() for f in ("train-images-idx3-ubyte.gz",
                                                    "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"Fashion-MNIST files not in {FASHION_DIR}; apt-get install "
                    "dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("runs")
    loaded = start_run(Run("shipped", root=root), _config(request.param))
    summary = train_run(loaded)
    return loaded, summary


def test_a_run_from_the_shipped_hypernetwork_installs_it_instead_of_training(shipped_run):
    loaded, summary = shipped_run
    pre = get_pretrained(loaded.config.pretrained)
    assert summary["step"] == pre.card["trained"]["steps"]
    assert not loaded.run.train_log_path.exists()  # not one training step
    shipped = load_file(str(pre.weights))
    installed = load_file(str(loaded.run.checkpoint_path))
    assert shipped.keys() == installed.keys()
    # the same weights (of every member of an ensemble), with zero weights for the ops appended
    # to the vocabulary since it was shipped (hypernas.hypernet.trainer._pad_vocabulary)
    members = [k[:-len("op_embed.weight")] for k in shipped if k.endswith(".op_embed.weight")]
    assert len(members) == len(pre.card.get("members", [None]))
    for m in members:
        old = shipped[f"{m}op_embed.weight"].shape[0]
        assert torch.equal(installed[f"{m}op_embed.weight"][:old], shipped[f"{m}op_embed.weight"])
        assert not installed[f"{m}op_embed.weight"][old:].any()
        embed, added = installed[f"{m}embed.weight"], len(OP_INDEX) - old
        assert torch.equal(torch.cat([embed[:, :old], embed[:, old + added:]], dim=1),
                           shipped[f"{m}embed.weight"]) and not embed[:, old:old + added].any()
    assert all(torch.equal(shipped[k], installed[k]) for k in shipped
               if not k.endswith(("op_embed.weight", ".embed.weight")))
    assert json.loads(Path(loaded.run.path / "config.json").read_text())["pretrained"] == pre.name
    # reopened, it is the same run and stays trained
    again = load_run(loaded.run)
    assert again.config == loaded.config and train_run(again)["step"] == summary["step"]


def test_the_shipped_hypernetwork_scores_its_reference_cells_as_recorded(shipped_run):
    loaded, _ = shipped_run
    result = check_reference(loaded, get_pretrained(loaded.config.pretrained))
    assert len(result["again"]) == 5 and result["max_diff"] <= 1e-4
    # the scores tell cells apart: a shuffled card would not pass
    assert len({round(s, 3) for s in result["recorded"].values()}) == 5


# ------------------------------------------------------------------ a shipped mlp on digits


@pytest.fixture
def tiny_shipped(tmp_path, monkeypatch):
    """A hypernetwork for the mlp space on digits (default hypernet, 3 steps) shipped into a
    temporary folder in place of the package's."""
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path / "runs"))
    assert main(["train", "mlp", "--data", "digits", "--set", "max_depth=2", "--steps", "3",
                 "--meta-batch", "2", "--batch-size", "8", "--run", "src"]) == 0
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(pretrained, "SHIPPED", shipped)
    src = load_run(Run("src"))
    cells = [c.encoding for c in src.space.sample_many(2, seed=0)]
    ship(src, "mlp-digits", "hypernas train mlp ... --steps 3", cells, out_dir=shipped)
    return shipped


SEARCH = ["search", "mlp", "--data", "digits", "--set", "max_depth=2", "--budget", "0.05",
          "--n", "6", "--top", "2", "--format", "safetensors"]


def test_a_search_ranks_with_the_shipped_hypernetwork_and_says_so(tiny_shipped, capsys):
    assert main([*SEARCH, "--run", "s"]) == 0
    out = capsys.readouterr().out
    assert "ranking with the shipped hypernetwork mlp-digits (trained 3 steps" in out
    assert "training the hypernetwork" not in out
    run = Run("s")
    assert run.read_config()["pretrained"] == "mlp-digits"
    assert not run.train_log_path.exists()
    assert (run.exports_dir / "best" / "model_card.json").exists()
    # run again (a resume): still the shipped one, nothing trained
    assert main([*SEARCH, "--run", "s"]) == 0
    assert not run.train_log_path.exists()


def test_no_pretrained_trains_its_own_and_a_run_keeps_what_it_started_with(tiny_shipped, capsys):
    assert main([*SEARCH, "--run", "own", "--no-pretrained"]) == 0
    assert "training the hypernetwork" in capsys.readouterr().out
    own = Run("own")
    _, _, meta = load_checkpoint(own.checkpoint_path)
    assert own.read_config()["pretrained"] is None and meta["step"] > 0
    assert "pretrained" not in meta
    # resumed without the flag, the search keeps its own hypernetwork
    assert main([*SEARCH, "--run", "own"]) == 0
    assert Run("own").read_config()["pretrained"] is None
    # a run started from the shipped one refuses --no-pretrained instead of mixing the two
    assert main([*SEARCH, "--run", "s"]) == 0
    assert main([*SEARCH, "--run", "s", "--no-pretrained"]) == 2
    assert "different setup" in capsys.readouterr().err


def test_an_ensemble_of_trainings_ships_and_ranks_as_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path / "runs"))
    base = ["train", "mlp", "--data", "digits", "--set", "max_depth=2", "--steps", "3",
            "--meta-batch", "2", "--batch-size", "8"]
    for seed in (0, 1):
        assert main([*base, "--seed", str(seed), "--data-seed", "0", "--run", f"m{seed}"]) == 0
    assert main([*base, "--seed", "2", "--run", "split2"]) == 0  # its own split (data seed 2)
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(pretrained, "SHIPPED", shipped)
    m0, m1 = load_run(Run("m0")), load_run(Run("m1"))
    assert m1.config.data.seed == 0 and m1.config.train.seed == 1
    with pytest.raises(HypernasError, match="split2 differs from m0 in data"):
        ship(m0, "x", "cmd", [], out_dir=shipped, members=[load_run(Run("split2"))])
    assert not shipped.exists()
    cells = [c.encoding for c in m0.space.sample_many(2, seed=0)]
    ship(m0, "mlp-digits", "cmd", cells, out_dir=shipped, members=[m1])
    pre = get_pretrained("mlp-digits")
    assert [(m["run"], m["train"]["seed"], m["trained"]["steps"]) for m in pre.card["members"]] \
        == [("m0", 0, 3), ("m1", 1, 3)]
    # a run from it holds the ensemble: every member's heads score each candidate
    loaded = start_run(Run("from-ensemble"), _config("mlp-digits"))
    assert train_run(loaded)["step"] == 3
    hnet, _, meta = load_checkpoint(loaded.run.checkpoint_path)
    assert isinstance(hnet, HyperNetEnsemble) and meta["members"] == 2
    assert hnet.config.samples == 2 * m0.config.hypernet.samples
    again = check_reference(loaded, pre)
    assert again["max_diff"] <= 1e-4
    alone = pretrained.reference_scores(m0, [m0.space.replay(c) for c in cells])
    assert all(abs(alone[c] - again["again"][c]) > 1e-6 for c in cells)  # not m0's alone
    # a raced ranking counts the ensemble's samples: a row scored in full is the full score
    cands = loaded.space.sample_many(12, seed=3)
    full = rank_run(loaded, cands, label="full")
    raced = rank_run(loaded, cands, race=RaceConfig(top_k=2, min_calibration=4))
    whole = next(iter(full.values()))["full_images"]
    assert all(r["score"] == full[i]["score"] for i, r in raced.items() if r["images"] == whole)
    assert weight_samples(loaded.run.checkpoint_path) == hnet.config.samples
    assert main([*SEARCH, "--run", "s"]) == 0
    assert "ranking with the shipped hypernetwork mlp-digits" in capsys.readouterr().out
    assert not Run("s").train_log_path.exists()


def test_changed_shipped_weights_are_refused(tiny_shipped, tmp_path):
    weights = tiny_shipped / "mlp-digits.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"00000000")
    cfg = _config("mlp-digits")
    with pytest.raises(HypernasError, match="does not match the hash on its card"):
        train_run(start_run(Run("x", root=tmp_path / "other"), cfg))


def test_shipping_needs_a_run_trained_to_its_step_count(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", "mlp", "--data", "digits", "--set", "max_depth=2", "--budget",
                 "0.001", "--meta-batch", "2", "--batch-size", "8", "--run", "timed"]) == 0
    with pytest.raises(HypernasError, match="--steps N"):
        ship(load_run(Run("timed")), "x", "cmd", [], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.rmtree(tmp_path / "timed")


def test_hypernas_pretrained_lists_the_shipped_hypernetwork(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    card = get_pretrained(SHIPPED).card
    assert SHIPPED in out and f"{card['trained']['steps']:,} steps" in out
    assert "fashion-mnist (seed 0)" in out


def test_the_shipped_macro_probe_is_refit_exactly_from_the_committed_rows(shipped_run):
    """The probe in the macro card comes from the committed label screens and the shipped
    weights' embeddings of them (benchmarks/macro_probe.py ship), and a run installed from the
    shipped weights embeds candidates as those rows say."""
    import sys

    from hypernas.hypernet.trainer import load_checkpoint
    from hypernas.ranking.probe import Probe, graph_embeddings, load_probe

    loaded, _ = shipped_run
    if loaded.config.pretrained != MACRO:
        pytest.skip("the macro card ships the probe")
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import macro_probe

    card = get_pretrained(MACRO).card["probe"]
    assert Probe.from_dict(card) == macro_probe.shipped_probe()
    assert load_probe(loaded.run) == Probe.from_dict(card)  # the run ranks with it
    rows = [json.loads(line) for line in (macro_probe.FEATURES / "macro-ship.jsonl").read_text()
            .splitlines()[1:4]]
    hnet, _, _ = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    now = graph_embeddings(hnet, [loaded.space.replay(r["code"]).graph for r in rows])
    assert torch.allclose(now, torch.tensor([r["mean"] for r in rows]), atol=1e-4)
