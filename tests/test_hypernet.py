"""Graph hypernetworks: every backbone on every space predicts weights of exactly the right names
and shapes that run a candidate and train the hypernetwork; batching, ensemble heads, graph
awareness, scale normalisation, the census, graph packing, configs, checkpoints and the trainer.

All tiny and seeded: hypernetworks of width 16 over spaces shrunk to a few channels."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor
from torch.func import functional_call

import hypernas.hypernet.trainer as trainer_module
from hypernas.data import Split, load_dataset
from hypernas.errors import HypernasError
from hypernas.hypernet import (CensusError, GraphHyperNetwork, HyperNetConfig, HyperNetEnsemble,
                               PackedGraphs, list_hypernets, pack_graphs)
from hypernas.hypernet.features import MAX_DISTANCE, NUM_FEATURES
from hypernas.hypernet.trainer import (CheckpointError, HyperTrainConfig, HyperTrainer,
                                       load_checkpoint, meta_network, save_checkpoint)
from hypernas.graphs.network import count_params, param_shapes
from hypernas.spaces.space import SearchSpace, load_space

SPACES: dict[str, dict[str, Any]] = {  # each space shrunk to a few channels
    "nb201": dict(input_shape=(1, 8, 8), N=1, C=4),
    "macro": dict(input_shape=(1, 8, 8), stem_channels=4, stage_widths=(4, 8, 8),
                  head_channels=16, expand_ratios=(1, 3), max_depth=3),
    "mlp": dict(input_shape=(16,), widths=(8, 16), max_depth=3),
}
BACKBONES = list_hypernets()
B = 4  # images per forward pass
# Two NB201 cells that differ in one edge (3<-1: 1x1 vs 3x3 conv) but not in depth or shapes.
CELL_A, CELL_B = "331423", "331433"
STEM = "nodes.stem_conv.weight"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors gain nothing from threads, and with a busy core index_add's thread pool
    # stalls for ~0.1 s per call.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def space_of(name: str) -> SearchSpace:
    return load_space(name, **SPACES[name])


@functools.cache
def config_of(name: str) -> HyperNetConfig:
    return HyperNetConfig.for_space(space_of(name), census_samples=8, dim=16)


def make_hnet(space: str, backbone: str = "gated_gnn", seed: int = 0, **kw: Any
              ) -> GraphHyperNetwork:
    torch.manual_seed(seed)
    return GraphHyperNetwork(dataclasses.replace(config_of(space), backbone=backbone, **kw))


def mixed_graphs(space: str) -> list[nx.DiGraph]:
    """Three candidates of different sizes."""
    graphs, sizes = [], set()
    for cand in space_of(space).sample_many(40, seed=1):
        if len(cand.graph) not in sizes:
            sizes.add(len(cand.graph))
            graphs.append(cand.graph)
        if len(graphs) == 3:
            return graphs
    raise AssertionError(f"{space}: could not find 3 candidates of different sizes")


def logits_of(graph: nx.DiGraph, weights: dict[str, Tensor], x: Tensor) -> Tensor:
    return functional_call(meta_network(graph), weights, (x,), {"batch_stats": True},
                           strict=False)


def images(space: str, seed: int = 0) -> Tensor:
    return torch.randn(B, *SPACES[space]["input_shape"],
                       generator=torch.Generator().manual_seed(seed))


# ----- predicted weights ----------------------------------------------------------------------

@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("space", SPACES)
def test_weights_have_param_shapes_run_and_train(space: str, backbone: str) -> None:
    hnet = make_hnet(space, backbone)
    graphs = mixed_graphs(space)
    weights = hnet(graphs, heads=[0, 1, 2])
    x = images(space)
    y = torch.arange(B) % space_of(space).config.num_classes
    loss = torch.zeros(())
    for graph, w in zip(graphs, weights):
        assert {k: tuple(v.shape) for k, v in w.items()} == param_shapes(graph)
        logits = logits_of(graph, w, x)
        assert logits.shape == (B, space_of(space).config.num_classes)
        assert torch.isfinite(logits).all()
        loss = loss + F.cross_entropy(logits, y)
    loss.backward()
    for part in ("embed", "op_embed", "backbone", "norm"):
        for name, p in getattr(hnet, part).named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{part}.{name} got no gradient"
    used = {n.split(".")[0] for n, p in hnet.decoder.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}
    assert used == {"bases", "mix", "gain", "scale", "own"}  # "own": positional anchors
    for kind in dict(hnet.config.census):
        base = hnet.decoder.bases[kind.replace(".", "__")]
        assert base.grad is not None and base.grad.abs().sum() > 0, f"bases of {kind} unused"


def test_the_largest_candidate_of_the_full_macro_space_gets_every_weight_at_its_shape() -> None:
    """The built-in macro space at Fashion-MNIST's 16x16: its largest candidate (every decision
    at its last, largest option: 4 blocks per stage, kernel 7, expansion 6, full width)."""
    from hypernas.spaces.trials import PathTrial

    space = load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    largest = space.from_trial(PathTrial(last=True))
    assert all(len(stage.split(",")) == 4 for stage in largest.encoding.split("|"))
    torch.manual_seed(0)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=0, dim=8))
    weights, = hnet([largest.graph], heads=[0])
    assert {k: tuple(v.shape) for k, v in weights.items()} == param_shapes(largest.graph)
    assert count_params(largest.graph) >= max(count_params(c.graph)
                                              for c in space.sample_many(64, seed=0))
    logits = functional_call(meta_network(largest.graph), weights,
                             (torch.randn(2, 1, 16, 16),), {"batch_stats": True}, strict=False)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("space", SPACES)
def test_batched_prediction_equals_single(space: str, backbone: str) -> None:
    hnet = make_hnet(space, backbone).eval()
    graphs = mixed_graphs(space)
    with torch.no_grad():
        batched = hnet(graphs, heads=[1, 0, 1])
        for graph, head, w in zip(graphs, [1, 0, 1], batched):
            alone = hnet([graph], heads=[head])[0]
            for name, tensor in alone.items():
                torch.testing.assert_close(w[name], tensor, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_samples_are_the_ensemble_heads(backbone: str) -> None:
    hnet = make_hnet("nb201", backbone).eval()
    graphs = mixed_graphs("nb201")[:2]
    S = hnet.config.samples
    with torch.no_grad():
        samples = hnet.samples(graphs)
        assert len(samples) == 2 and all(len(per_graph) == S for per_graph in samples)
        for s in range(S):
            other = (s + 1) % S
            direct = hnet(graphs, heads=[s, other])
            for g, head in ((0, s), (1, other)):
                assert set(direct[g]) == set(samples[g][head]) == set(param_shapes(graphs[g]))
                for name, tensor in direct[g].items():
                    torch.testing.assert_close(tensor, samples[g][head][name], msg=name)
            for t in range(s + 1, S):
                assert not torch.allclose(samples[0][s][STEM], samples[0][t][STEM]), (s, t)
    with pytest.raises(HypernasError, match="ensemble heads"):
        hnet(graphs, heads=[0, S])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_graph_reaches_shared_nodes(backbone: str) -> None:
    space = space_of("nb201")
    a, b = space.replay(CELL_A).graph, space.replay(CELL_B).graph
    packed = pack_graphs([a, b])
    stem = [names.index("stem_conv") for names in packed.names]
    stem[1] += len(packed.names[0])
    assert torch.equal(packed.x[stem[0]], packed.x[stem[1]])  # the stem's own features agree
    hnet = make_hnet("nb201", backbone).eval()
    with torch.no_grad():
        wa, wb = hnet([a, b])
    gap = (wa[STEM] - wb[STEM]).abs().max().item()
    if backbone == "graph_free":
        assert gap == 0.0
    else:
        assert gap > 1e-5, f"{backbone}: the stem's weights ignore a change in the cell"


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("space", SPACES)
def test_scale_normalisation_at_init(space: str, backbone: str) -> None:
    hnet = make_hnet(space, backbone)
    graphs = mixed_graphs(space)
    with torch.no_grad():
        for graph, weights in zip(graphs, hnet.samples(graphs)):
            for name, w in (item for sample in weights for item in sample.items()):
                op = graph.nodes[name.split(".")[1]]["op"]
                if w.dim() >= 2:
                    he = math.sqrt(2 / math.prod(w.shape[1:]))
                    assert he / 3 < w.std().item() < 3 * he, (name, w.std().item(), he)
                elif op in ("batch_norm", "layer_norm") and name.endswith(".weight"):
                    assert 0.8 <= w.min() and w.max() <= 1.2, name
                else:
                    assert name.endswith(".bias") and w.abs().max() <= 0.1, name


def test_census_refuses_unknown_parameter_kinds() -> None:
    hnet = make_hnet("mlp")
    graph = space_of("nb201").sample(0).graph
    with pytest.raises(CensusError, match=r"conv\.weight\.k3.*'mlp'.*train a hypernetwork"):
        hnet([graph])
    with pytest.raises(CensusError):
        hnet.samples([graph])


def test_candidates_larger_than_the_census_are_refused_not_tiled() -> None:
    # tiling a (4, 4) base to (8, 8) would give output channels in identical pairs
    hnet = make_hnet("nb201")
    big = load_space("nb201", **{**SPACES["nb201"], "C": 8})
    graph = big.replay(CELL_A).graph
    k3 = dict(hnet.config.census)["conv.weight.k3"]
    assert any(s[-1] == 3 and s[0] > k3[0] and s[1] > k3[1] for s in param_shapes(graph).values())
    with pytest.raises(CensusError, match=r"larger than any .* cannot make it without repeating"):
        hnet([graph])
    with pytest.raises(CensusError):
        hnet.samples([graph])
    small = load_space("nb201", **{**SPACES["nb201"], "C": 2}).replay(CELL_A).graph
    weights = hnet([small])[0]  # smaller is sliced
    assert {k: tuple(v.shape) for k, v in weights.items()} == param_shapes(small)


# ----- graph packing --------------------------------------------------------------------------

@pytest.mark.parametrize("space", ["nb201", "macro"])
def test_pack_graphs_fields(space: str) -> None:
    graphs = mixed_graphs(space)
    p = pack_graphs(graphs)
    sizes = [len(g) for g in graphs]
    n, n_max = sum(sizes), max(sizes)
    assert p.num_graphs == 3 and [len(names) for names in p.names] == sizes
    assert p.x.shape == (n, NUM_FEATURES) and torch.isfinite(p.x).all()
    for field in (p.op, p.graph, p.level, p.rlevel):
        assert field.shape == (n,)
    assert p.graph.tolist() == [g for g, size in enumerate(sizes) for _ in range(size)]
    assert p.edges.shape == (2, sum(g.number_of_edges() for g in graphs))
    assert p.far.shape[0] == 3 and p.dist.shape == (3, n_max, n_max)
    src, dst = p.edges
    assert 0 <= p.edges.min() and p.edges.max() < n
    assert torch.equal(p.graph[src], p.graph[dst])
    assert (p.level[dst] > p.level[src]).all() and (p.rlevel[src] > p.rlevel[dst]).all()
    fsrc, fdst, fd = p.far
    assert 0 <= p.far[:2].min() and p.far[:2].max() < n
    assert torch.equal(p.graph[fsrc], p.graph[fdst])
    assert ((2 <= fd) & (fd <= MAX_DISTANCE)).all() and (p.level[fdst] > p.level[fsrc]).all()
    for g, size in enumerate(sizes):
        inside = p.dist[g, :size, :size]
        assert (inside >= 0).all() and (inside <= MAX_DISTANCE + 1).all()
        assert (inside.diagonal() == 0).all()
        assert (p.dist[g, size:] == -1).all() and (p.dist[g, :, size:] == -1).all()
    offsets = [sum(sizes[:g]) for g in range(3)]
    for g, (graph, params) in enumerate(zip(graphs, p.params)):
        assert {name: shape for _, name, shape in params} == param_shapes(graph)
        for node, name, _ in params:
            assert offsets[g] <= node < offsets[g] + sizes[g]
            assert p.names[g][node - offsets[g]] == name.split(".")[1]


def _same_packing(a: PackedGraphs, b: PackedGraphs) -> bool:
    tensors = ("x", "op", "graph", "level", "rlevel", "edges", "far", "dist")
    return (all(torch.equal(getattr(a, k), getattr(b, k)) for k in tensors)
            and a.names == b.names and a.params == b.params)


def test_pack_cache_serves_same_graph_and_repacks_changed_ones() -> None:
    graph = space_of("mlp").replay("depth=1,norm=none,l1_width=8,l1_act=relu").graph
    first = pack_graphs([graph])
    assert _same_packing(first, pack_graphs([graph]))
    wider = graph.copy()
    wider.nodes["l1_linear"]["out_features"] = 16
    changed = pack_graphs([wider])
    assert not torch.equal(changed.x, first.x)
    assert {name: s for _, name, s in changed.params[0]} == param_shapes(wider)
    graph.nodes["l1_linear"]["out_features"] = 16  # the same object, mutated in place
    assert _same_packing(pack_graphs([graph]), changed)


# ----- config and checkpoints -----------------------------------------------------------------

def test_config_round_trip() -> None:
    cfg = dataclasses.replace(config_of("macro"), backbone="graph_transformer", layers=2)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert HyperNetConfig.from_dict(data) == cfg
    with pytest.raises(HypernasError, match="unknown fields.*'depth'"):
        HyperNetConfig.from_dict({**data, "depth": 3})


def _outputs(hnet: GraphHyperNetwork, graphs: list[nx.DiGraph]) -> list[list[dict[str, Tensor]]]:
    with torch.no_grad():
        return hnet.eval().samples(graphs)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    hnet = make_hnet("nb201", "graph_transformer", seed=3)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, hnet, None, {"step": 7})
    back, opt_state, meta = load_checkpoint(path, hnet.config)
    assert back.config == hnet.config and opt_state == {} and meta["step"] == 7
    graphs = mixed_graphs("nb201")
    for mine, theirs in zip(_outputs(hnet, graphs), _outputs(back, graphs)):
        for a, b in zip(mine, theirs):
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_ensemble_serves_each_members_heads_in_turn_and_round_trips(tmp_path: Path) -> None:
    members = [make_hnet("nb201", seed=s) for s in (1, 2, 3)]
    ens = HyperNetEnsemble(members)
    per = members[0].config.samples
    assert ens.config.samples == 3 * per and ens.member_config == members[0].config
    graphs = mixed_graphs("nb201")
    theirs = [_outputs(m, graphs) for m in members]
    mine = _outputs(ens, graphs)
    for g in range(len(graphs)):
        assert len(mine[g]) == 3 * per
        for m in range(3):
            for h in range(per):
                a, b = mine[g][m * per + h], theirs[m][g][h]
                assert all(torch.equal(a[k], b[k]) for k in b)
    # forward with a sample per graph: graph g gets member heads[g] // per, head heads[g] % per
    heads = [per + 1, 0, 3 * per - 1]
    with torch.no_grad():
        picked = ens(graphs, heads)
    for g, s in enumerate(heads):
        want = theirs[s // per][g][s % per]
        assert all(torch.equal(picked[g][k], want[k]) for k in want)
    with pytest.raises(HypernasError, match="heads must lie in 0..11"):
        ens(graphs, [12, 0, 0])
    # saved as one file and loaded back as the same ensemble, checked against a member's config
    path = tmp_path / "ens.safetensors"
    save_checkpoint(path, ens, None, {"step": 5})
    back, _, meta = load_checkpoint(path, members[0].config)
    assert isinstance(back, HyperNetEnsemble) and meta["members"] == 3 and meta["step"] == 5
    for a_g, b_g in zip(_outputs(back, graphs), mine):
        assert all(torch.equal(a[k], b[k]) for a, b in zip(a_g, b_g) for k in a)
    # a single hypernetwork saved over it is a single one again
    save_checkpoint(path, members[0], None, {"step": 6, "members": 3})
    assert isinstance(load_checkpoint(path)[0], GraphHyperNetwork)


def test_an_ensemble_needs_members_of_one_config_and_cannot_be_trained_on(tmp_path: Path) -> None:
    with pytest.raises(HypernasError, match="at least two"):
        HyperNetEnsemble([make_hnet("mlp")])
    with pytest.raises(HypernasError, match="share one config"):
        HyperNetEnsemble([make_hnet("mlp"), make_hnet("mlp", dim=8)])
    path = tmp_path / "ens.safetensors"
    save_checkpoint(path, HyperNetEnsemble([make_hnet("mlp", seed=s) for s in (0, 1)]), None,
                    {"step": 3, "elapsed": 1.0})
    data = load_dataset("digits")
    with pytest.raises(CheckpointError, match="ensemble of 2 .* cannot be trained further"):
        HyperTrainer(make_hnet("mlp"), space_of("mlp"), data.train,
                     HyperTrainConfig(steps=4), checkpoint=path)


def test_bad_checkpoint_files_name_their_path(tmp_path: Path) -> None:
    hnet = make_hnet("mlp")
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, hnet, None, {"step": 1})
    blob = good.read_bytes()
    bad = {
        "truncated": blob[: len(blob) // 2],
        "garbage": b"\x00\xff not a checkpoint" * 50,
        "empty": b"",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "odd_meta"), metadata={"hypernas": "3"})
    future = json.dumps({"step": 1, "hypernet": {**hnet.config.to_dict(), "new_knob": 1}})
    save_file({"w": torch.zeros(2)}, str(tmp_path / "future"), metadata={"hypernas": future})
    for name in [*bad, "foreign", "odd_meta", "future"]:
        path = tmp_path / name
        before = path.read_bytes()
        with pytest.raises(CheckpointError, match="corrupt") as err:
            load_checkpoint(path)
        assert str(path) in str(err.value)
        assert path.read_bytes() == before, name
    with pytest.raises(CheckpointError, match="train first"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_checkpoint_refuses_another_hypernet(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, make_hnet("mlp"), None, {"step": 1})
    before = path.read_bytes()
    other_backbone = dataclasses.replace(config_of("mlp"), backbone="graph_free")
    with pytest.raises(CheckpointError, match=r"differs in backbone\)") as err:
        load_checkpoint(path, other_backbone)
    assert str(path) in str(err.value) and "--run" in str(err.value)
    with pytest.raises(CheckpointError, match="space, census"):
        load_checkpoint(path, config_of("nb201"))
    assert path.read_bytes() == before


# ----- training -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits() -> tuple[SearchSpace, Split]:
    ds = load_dataset("digits")
    return load_space("mlp", input_shape=ds.input_shape, widths=(8, 16), max_depth=2), ds.train


def _trainer(digits: tuple[SearchSpace, Split], path: Path | None, steps: int, seed: int = 0,
             log: list | None = None) -> HyperTrainer:
    space, train = digits
    torch.manual_seed(seed)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=8, dim=16))
    cfg = HyperTrainConfig(steps=steps, meta_batch=2, batch_size=16, log_every=2)
    return HyperTrainer(hnet, space, train, cfg, checkpoint=path,
                        log=log.append if log is not None else None)


def _params(trainer: HyperTrainer) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in trainer.hnet.named_parameters()}


def test_trainer_trains_checkpoints_and_resumes(digits, tmp_path: Path) -> None:
    path, rows = tmp_path / "ck" / "last.safetensors", []
    first = _trainer(digits, path, steps=6, log=rows)
    summary = first.fit()
    assert summary["step"] == 6 and summary["nan_skipped"] == 0 and path.exists()
    assert [r["step"] for r in rows] == [2, 4, 6]
    for row in rows:
        assert math.isfinite(row["loss"]) and 0 <= row["acc"] <= 1 and 0 < row["lr"] <= 2e-3

    second = _trainer(digits, path, steps=9, seed=1)  # other init: the checkpoint must win
    assert second.step == 6
    mine, theirs = _params(first), _params(second)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    by_name = dict(zip((n for n, _ in first.hnet.named_parameters()), second.hnet.parameters()))
    assert int(second.opt.state[by_name["embed.weight"]]["step"]) == 6
    for p_first, p_second in zip(first.hnet.parameters(), second.hnet.parameters()):
        for key, value in first.opt.state[p_first].items():
            assert torch.equal(torch.as_tensor(value), second.opt.state[p_second][key])
    assert second.fit()["step"] == 9
    assert second.step == 9 and load_checkpoint(path)[2]["step"] == 9


def test_interrupted_training_resumes_exactly(digits, tmp_path: Path) -> None:
    straight = _trainer(digits, None, steps=5)
    straight.fit()
    path = tmp_path / "ck.safetensors"
    interrupted = _trainer(digits, path, steps=5)
    interrupted.fit(should_stop=lambda: interrupted.step >= 3)
    resumed = _trainer(digits, path, steps=5, seed=1)
    assert resumed.fit()["step"] == 5
    mine, theirs = _params(straight), _params(resumed)
    for k in mine:
        torch.testing.assert_close(theirs[k], mine[k], msg=k)


def test_non_finite_loss_skips_the_step(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = trainer_module.predicted_logits, []

    def poisoned(*args: Any) -> Tensor:
        calls.append(1)
        logits = real(*args)
        return logits * float("nan") if len(calls) <= 2 else logits  # meta_batch=2: one step

    monkeypatch.setattr(trainer_module, "predicted_logits", poisoned)
    trainer = _trainer(digits, None, steps=3)
    before = _params(trainer)
    loss, _ = trainer.train_step(random.Random(0), torch.device("cpu"))
    assert loss is None
    assert all(torch.equal(v, before[k]) for k, v in _params(trainer).items())
    calls.clear()
    summary = trainer.fit()
    assert summary == {**summary, "step": 3, "nan_skipped": 1}
    assert any(not torch.equal(v, before[k]) for k, v in _params(trainer).items())


def test_trainer_keeps_apart_spaces_whose_encodings_coincide() -> None:
    # One candidate each, same encoding, different input shapes.
    kw = dict(widths=(8,), max_depth=1, activations=("relu",), norms=("none",))
    for shape in ((16,), (1, 4, 4)):
        space = load_space("mlp", input_shape=shape, **kw)
        torch.manual_seed(0)
        hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=2, dim=16))
        train = Split(torch.randn(8, *shape), torch.arange(8) % 10)
        trainer = HyperTrainer(hnet, space, train, HyperTrainConfig(steps=1, meta_batch=1,
                                                                    batch_size=4))
        assert trainer.fit()["step"] == 1 and trainer.nan_skipped == 0


def test_meta_networks_are_not_confused_by_equal_ids() -> None:
    # Two NB201 cells that compute the same function (same canonical id) from differently named
    # nodes, so with different parameter names.
    a, b = (space_of("nb201").replay(code) for code in ("034211", "230011"))
    assert a.id == b.id and set(param_shapes(a.graph)) != set(param_shapes(b.graph))
    for cand in (a, b, a):
        net = meta_network(cand.graph, cand.id)
        assert {k: tuple(p.shape) for k, p in net.named_parameters()} == param_shapes(cand.graph)


def test_large_draws_give_half_the_meta_batch_to_the_largest_of_several(digits) -> None:
    space, train = digits
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=8, dim=16))
    sizes = {}
    for draws in (1, 4):
        trainer = HyperTrainer(hnet, space, train, HyperTrainConfig(steps=1, large_draws=draws))
        rng = random.Random(0)
        sizes[draws] = [count_params(trainer._draw(rng, draws).graph) for _ in range(40)]
        # the draw is the largest of `draws` fresh samples from the same stream
        rng, again = random.Random(1), random.Random(1)
        picked = trainer._draw(rng, draws)
        pool = [space.sample(again) for _ in range(draws)]
        assert count_params(picked.graph) == max(count_params(c.graph) for c in pool)
    assert statistics.fmean(sizes[4]) > statistics.fmean(sizes[1])


class _WithoutHeldOut:
    """The trainer's view of a space: draws that land on a held-out candidate are redrawn, so
    the held-out candidates are never trained on."""

    def __init__(self, space: SearchSpace, held_out: set[str]) -> None:
        self.space, self.held_out, self.redrawn = space, held_out, 0

    def sample(self, rng: random.Random):
        cand = self.space.sample(rng)
        while cand.id in self.held_out:
            self.redrawn += 1
            cand = self.space.sample(rng)
        return cand


TINY_LEARNERS = {  # a space small enough to learn in seconds: steps, images per step, and the
    # loss ratio it must reach (macro's deep networks learn slower per step, as at full size)
    "mlp": (dict(widths=(16, 32, 64), max_depth=3), 80, 32, 0.6),
    "macro": (dict(stem_channels=8, stage_widths=(8, 16), stage_strides=(1, 2),
                   head_channels=32, expand_ratios=(1, 3), kernel_sizes=(3, 5), max_depth=2),
              150, 64, 0.9),
}


@pytest.mark.parametrize("name", TINY_LEARNERS)
def test_training_lowers_the_loss_of_predicted_weights_on_held_out_candidates(name) -> None:
    """The hypernetwork learns: after a short seeded training, the weights it predicts for
    candidates it never trained on score a lower loss on validation images it never saw (a
    fixed-depth MLP space, and a dynamic macro space of varying depth, width and kernel)."""
    from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet

    ds = load_dataset("digits")
    settings, steps, batch, factor = TINY_LEARNERS[name]
    space = load_space(name, input_shape=ds.input_shape, num_classes=10, **settings)
    held_out = space.sample_many(8, seed=99)
    torch.manual_seed(0)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=8, dim=32))
    slices = eval_slices(ds.val, ScoreConfig(eval_size=300, eval_batch=100), hnet.config.samples)

    def held_out_loss() -> float:
        return statistics.mean(-row["score"] for row in score_hypernet(hnet, held_out, slices))

    before = held_out_loss()
    view = _WithoutHeldOut(space, {c.id for c in held_out})
    cfg = HyperTrainConfig(steps=steps, meta_batch=4, batch_size=batch, large_draws=1,
                           lr=5e-3 if name == "macro" else HyperTrainConfig.lr)
    HyperTrainer(hnet, view, ds.train, cfg).fit()  # type: ignore[arg-type]
    after = held_out_loss()
    assert math.isfinite(before) and after < factor * before, (before, after)


# ------------------------------------------------------------------ coverage of the space


def test_the_census_comes_from_the_space_and_covers_every_candidate():
    from hypernas.hypernet.model import _grow, _kind_of, _kinds, shape_census
    from hypernas.graphs.network import param_shapes
    from hypernas.hypernet.decoder import slot_key

    space = load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    kinds, slots = shape_census(space, samples=0)  # from the definition alone
    seen_kinds, seen_slots = {}, {}
    for cand in space.sample_many(400, seed=7, unique=False):
        for kind, shape in _kinds(cand.graph).items():
            _grow(seen_kinds, kind, shape)
        for name, shape in param_shapes(cand.graph).items():
            _grow(seen_slots, slot_key(name, _kind_of(cand.graph, name, shape)), shape)
    assert seen_kinds == kinds  # exact: every largest shape is reached, none overstated
    assert set(seen_slots) <= set(slots)
    assert all(all(a <= b for a, b in zip(seen_slots[k], slots[k])) for k in seen_slots)


def test_a_score_row_says_when_a_candidate_reaches_beyond_the_trained_space():
    from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet

    shallow = load_space("macro", input_shape=(1, 16, 16), num_classes=10, max_depth=3)
    full = load_space("macro", input_shape=(1, 16, 16), num_classes=10)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(shallow, census_samples=0, dim=8,
                                                      samples=2))
    from hypernas.data.dataset import resize_dataset

    data = load_dataset("digits")
    deep = full.replay("k3e1w16,k3e1w16,k3e1w16,k3e1w16|k3e1w32|k3e1w64")
    inside = shallow.replay("k3e1w16,k3e1w16,k3e1w16|k3e1w32|k3e1w64")
    split = resize_dataset(data, 16).val
    rows = score_hypernet(hnet, [deep, inside], eval_slices(split, ScoreConfig(eval_size=40), 2))
    assert rows[0]["unseen_slots"] > 0 and rows[1]["unseen_slots"] == 0


def test_every_registered_op_has_a_fixed_place_in_the_vocabulary():
    # a new op is appended to OP_VOCAB, never inserted: checkpoints index ops by these places
    from hypernas.graphs.ops import list_ops
    from hypernas.hypernet.features import OP_INDEX, OP_VOCAB

    assert set(list_ops()) <= set(OP_VOCAB) and len(set(OP_VOCAB)) == len(OP_VOCAB)
    assert [OP_INDEX[op] for op in OP_VOCAB] == list(range(len(OP_VOCAB)))


def test_a_checkpoint_from_before_ops_were_added_loads_and_predicts_as_before(digits, tmp_path):
    # simulate a checkpoint made before the ops after "zero" were appended (the vocabulary the
    # shipped NB201 hypernetwork was trained with): drop their one-hot columns, embedding rows
    # and optimiser moments
    from safetensors import safe_open
    from safetensors.torch import load_file

    from hypernas.hypernet.features import OP_INDEX

    path = tmp_path / "ck" / "last.safetensors"
    trainer = _trainer(digits, path, steps=2)
    trainer.fit()
    last = OP_INDEX["zero"] + 1  # the old vocabulary's size
    added = len(OP_INDEX) - last
    names = [n for n, _ in trainer.hnet.named_parameters()]
    embed, op_embed = str(names.index("embed.weight")), str(names.index("op_embed.weight"))
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    old = {}
    for key, t in tensors.items():
        if key in ("hnet.embed.weight", f"opt.{embed}.exp_avg", f"opt.{embed}.exp_avg_sq"):
            t = torch.cat([t[:, :last], t[:, last + added:]], dim=1)
        elif key in ("hnet.op_embed.weight", f"opt.{op_embed}.exp_avg",
                     f"opt.{op_embed}.exp_avg_sq"):
            t = t[:last]
        old[key] = t.contiguous()
    old_path = tmp_path / "old.safetensors"
    save_file(old, str(old_path), metadata=metadata)

    hnet, opt_state, meta = load_checkpoint(old_path, trainer.hnet.config)
    assert meta["ops_added"] == added > 0
    assert torch.all(hnet.embed.weight[:, last:last + added] == 0)
    assert torch.all(hnet.op_embed.weight[last:] == 0)
    assert opt_state[f"{embed}.exp_avg"].shape == hnet.embed.weight.shape
    space, _ = digits
    graphs = [space.sample(s).graph for s in range(3)]
    with torch.no_grad():
        before, after = trainer.hnet.eval()(graphs), hnet.eval()(graphs)
    for a, b in zip(before, after):
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert load_checkpoint(path, trainer.hnet.config)[2]["ops_added"] == 0
