"""A contract test suite every search space opts into with one fixture.

Subclass :class:`SpaceContract` in a pytest file and give it a ``space`` fixture::

    import pytest
    from hypernas.testing import SpaceContract

    class TestMySpace(SpaceContract):
        @pytest.fixture
        def space(self):
            return hypernas.load_space("my_space.py")

Each test runs for ``SEEDS`` seeds: the sample validates, round-trips through JSON, replays from
its encoding, builds, runs a forward pass with the right output shape, and mutates into a valid
neighbour of the same space.
"""

from __future__ import annotations

import json

import pytest
import torch

from .errors import EncodingError, HypernasError
from .graphs.canonical import canonical_id
from .graphs.graph import validate
from .graphs.network import Network, param_shapes
from .graphs.serialize import graph_from_json, graph_to_json, graphs_equal
from .spaces.space import SearchSpace

__all__ = ["SpaceContract", "SEEDS"]

SEEDS = range(20)


class SpaceContract:
    """Tests every :class:`~hypernas.spaces.space.SearchSpace` must pass; needs a ``space`` fixture."""

    @pytest.fixture
    def space(self) -> SearchSpace:  # pragma: no cover - overridden
        raise NotImplementedError("give the test class a `space` fixture")

    @pytest.mark.parametrize("seed", SEEDS)
    def test_sample_is_valid_and_deterministic(self, space: SearchSpace, seed: int) -> None:
        cand = space.sample(seed)
        shapes = validate(cand.graph)
        assert shapes[next(n for n, d in cand.graph.nodes(data=True) if d["op"] == "output")] \
            == (space.config.num_classes,)
        again = space.sample(seed)
        assert again.encoding == cand.encoding and again.id == cand.id
        assert cand.graph.graph["space"] == space.name
        assert cand.graph.graph["encoding"] == cand.encoding

    @pytest.mark.parametrize("seed", SEEDS)
    def test_json_round_trip(self, space: SearchSpace, seed: int) -> None:
        cand = space.sample(seed)
        back = graph_from_json(graph_to_json(cand.graph))
        assert graphs_equal(back, cand.graph)
        assert canonical_id(back) == cand.id
        assert json.loads(json.dumps(cand.to_dict()))["id"] == cand.id

    @pytest.mark.parametrize("seed", SEEDS)
    def test_replay_from_encoding(self, space: SearchSpace, seed: int) -> None:
        cand = space.sample(seed)
        again = space.replay(cand.encoding)
        assert again.encoding == cand.encoding
        assert again.params == cand.params
        assert graphs_equal(again.graph, cand.graph)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_builds_and_runs(self, space: SearchSpace, seed: int) -> None:
        cand = space.sample(seed)
        net = Network(cand.graph)
        assert {k: tuple(p.shape) for k, p in net.named_parameters()} == param_shapes(cand.graph)
        torch.manual_seed(seed)
        x = torch.randn(2, *space.config.input_shape)
        out = net(x)
        assert out.shape == (2, space.config.num_classes)
        assert torch.isfinite(out).all()

    @pytest.mark.parametrize("seed", SEEDS)
    def test_mutation_stays_in_space(self, space: SearchSpace, seed: int) -> None:
        cand = space.sample(seed)
        child = space.mutate(cand, seed=seed)
        assert child.encoding != cand.encoding
        validate(child.graph)
        replayed = space.replay(child.encoding)  # the child is a member of the space
        assert graphs_equal(replayed.graph, child.graph)
        choices = space.choices()
        for name, value in child.params.items():
            assert name in choices and value in choices[name], (name, value)

    def test_choices_cover_samples(self, space: SearchSpace) -> None:
        choices = space.choices()
        assert choices and all(len(v) >= 1 for v in choices.values())
        for seed in SEEDS:
            for name, value in space.sample(seed).params.items():
                assert value in choices[name]

    def test_size(self, space: SearchSpace) -> None:
        size = space.size()
        assert size is None or (isinstance(size, int) and size > 1)
        distinct = {space.sample(seed).encoding for seed in SEEDS}
        assert len(distinct) > 1
        if size is not None:
            assert len(distinct) <= size

    def test_bad_encoding_is_refused(self, space: SearchSpace) -> None:
        for bad in ("", "definitely not an encoding", "=3"):
            with pytest.raises(EncodingError):
                space.replay(bad)

    def test_bad_setting_is_refused(self, space: SearchSpace) -> None:
        with pytest.raises(HypernasError, match="no setting"):
            type(space)(no_such_setting=1)
