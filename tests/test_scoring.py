"""Hypernetwork scoring: every weight sample is scored on its own slice of the fixed evaluation
images; the score, spread and accuracy follow from those slice losses. Tiny and seeded."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from hypernas.data import load_dataset
from hypernas.errors import HypernasError
from hypernas.hypernet import GraphHyperNetwork, HyperNetConfig
from hypernas.hypernet.trainer import meta_network, predicted_logits
from hypernas.ranking.scoring import ScoreConfig, eval_slices, score_hypernet
from hypernas.spaces.space import load_space


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    space = load_space("mlp", input_shape=ds.input_shape, widths=(8, 16), max_depth=2)
    torch.manual_seed(0)
    hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, census_samples=8, dim=16, samples=3))
    return space, ds.val, hnet


def test_slices_are_disjoint_near_equal_and_cover_the_fixed_images(setup) -> None:
    _, val, _ = setup
    cfg = ScoreConfig(eval_size=100, eval_batch=16)
    slices = eval_slices(val, cfg, 3)
    sizes = [sum(len(y) for _, y in part) for part in slices]
    assert len(slices) == 3 and sum(sizes) == 100 and max(sizes) - min(sizes) <= 1
    assert all(len(y) <= 16 for part in slices for _, y in part)
    fixed = val.subset(100, seed=0)
    joined = torch.cat([x for part in slices for x, _ in part])
    assert torch.equal(joined, fixed.x)  # every image once, in the fixed order
    again = eval_slices(val, cfg, 3)
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(slices, again))


def test_each_sample_is_scored_on_its_own_slice(setup) -> None:
    space, val, hnet = setup
    cands = space.sample_many(3, seed=1)
    slices = eval_slices(val, ScoreConfig(eval_size=90, eval_batch=32), 3)
    rows = score_hypernet(hnet, cands, slices)
    with torch.no_grad():
        samples = hnet.samples([c.graph for c in cands])
        for cand, heads, row in zip(cands, samples, rows):
            net = meta_network(cand.graph, cand.id)
            want = []
            for weights, part in zip(heads, slices):
                total = sum(float(F.cross_entropy(predicted_logits(net, weights, x), y,
                                                  reduction="sum")) for x, y in part)
                want.append(total / sum(len(y) for _, y in part))
            assert row["losses"] == pytest.approx(want, rel=1e-5)
            assert row["score"] == pytest.approx(-statistics.fmean(want), rel=1e-5)
            assert row["spread"] == pytest.approx(statistics.pstdev(want), rel=1e-4)
            assert 0.0 <= row["acc"] <= 1.0 and row["id"] == cand.id
    # different slices for the samples: the same head on another slice gives another loss
    assert len({round(v, 6) for v in rows[0]["losses"]}) == 3


def test_slice_count_must_match_the_samples(setup) -> None:
    space, val, hnet = setup
    with pytest.raises(HypernasError, match="eval_slices"):
        score_hypernet(hnet, space.sample_many(1), eval_slices(val, ScoreConfig(eval_size=40), 2))
    with pytest.raises(HypernasError, match="fewer samples"):
        eval_slices(val.subset(2), ScoreConfig(), 3)
