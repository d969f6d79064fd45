"""What is specific to the macro and mlp spaces: depth varies, size() is exact, the macro
encoding round-trips, mutation changes one choice, and bad settings are refused.

The generic contract (validity, JSON, replay, forward pass, mutation) is in test_space_contract.
"""

from __future__ import annotations

import pytest
import torch

import hypernas as hn
from hypernas.graphs.network import count_params

# Tiny configurations that still exercise every kind of choice, small enough to enumerate.
TINY = {
    "macro_one_stage": ("macro", dict(input_shape=(1, 8, 8), stem_channels=4, stage_widths=(8,),
                                      stage_strides=(1,), width_mults=(0.5, 1.0),
                                      kernel_sizes=(3, 5), expand_ratios=(1, 3), max_depth=2,
                                      head_channels=8)),
    "macro_two_stages": ("macro", dict(input_shape=(1, 8, 8), stem_channels=4,
                                       stage_widths=(8, 16), stage_strides=(1, 2),
                                       width_mults=(1.0,), kernel_sizes=(3,),
                                       expand_ratios=(1, 3), max_depth=2, head_channels=8)),
    "mlp": ("mlp", dict(input_shape=(5,), num_classes=3, max_depth=2, widths=(4, 8),
                        activations=("relu", "tanh"), norms=("none", "layer_norm"))),
    "mlp_min_depth": ("mlp", dict(input_shape=(5,), num_classes=3, min_depth=2, max_depth=3,
                                  widths=(4,), activations=("relu", "tanh"), norms=("none",))),
}


def _depth(cand: hn.Candidate) -> int:
    """Total number of hidden layers / blocks a candidate chose."""
    return sum(v for k, v in cand.params.items() if k.endswith("depth"))


# ----- depth really varies -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["macro", "mlp"])
def test_samples_differ_in_depth_and_size(name):
    space = hn.load_space(name)
    cands = [space.sample(seed) for seed in range(12)]
    assert len({_depth(c) for c in cands}) > 2
    assert len({c.graph.number_of_nodes() for c in cands}) > 2
    assert len({count_params(c.graph) for c in cands}) == len(cands)


def test_macro_layer_count_follows_the_choices():
    space = hn.load_space("macro")
    shallow = space.replay("k3e1w8|k3e1w16|k3e1w32")
    deep = space.replay("k3e6w16,k3e6w16+,k3e6w16+,k3e6w16+|k3e6w32,k3e6w24+,k3e6w32+,k3e6w32+"
                        "|k3e6w64,k3e6w64+,k3e6w64+,k3e6w64+")
    ops = lambda c, op: sum(d["op"] == op for _, d in c.graph.nodes(data=True))  # noqa: E731
    assert ops(shallow, "dw_conv") == 3 and ops(deep, "dw_conv") == 12
    assert ops(shallow, "add") == 0 and ops(deep, "add") == 9
    # stem + head + project convs; expand convs where e > 1; skip projections 32->24 and 24->32
    assert ops(shallow, "conv") == 2 + 3
    assert ops(deep, "conv") == 2 + 12 + 12 + 2
    assert "s2_b3_skip_conv" in deep.graph and "s2_b2_skip_conv" in deep.graph
    assert "s2_b4_skip_conv" not in deep.graph  # 32 -> 32 adds the input itself
    assert count_params(deep.graph) > 5 * count_params(shallow.graph)


def test_mlp_layers_and_norm_follow_the_choices():
    space = hn.load_space("mlp")
    cand = space.replay("depth=3,norm=batch_norm,l1_width=32,l1_act=relu,l2_width=64,"
                        "l2_act=gelu,l3_width=256,l3_act=tanh")
    ops = [cand.graph.nodes[n]["op"] for n in ("l1_norm", "l2_act", "l3_linear", "classifier")]
    assert ops == ["batch_norm", "gelu", "linear", "linear"]
    assert hn.infer_shapes(cand.graph)["l3_linear"] == (256,)
    plain = space.replay("depth=1,norm=none,l1_width=32,l1_act=relu")
    assert not any(d["op"] in ("batch_norm", "layer_norm") for _, d in plain.graph.nodes(data=True))
    assert count_params(plain.graph) == 40 * 32 + 32 + 32 * 10 + 10


# ----- size() is exact -----------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(TINY))
def test_size_matches_enumeration(key):
    name, config = TINY[key]
    space = hn.load_space(name, **config)
    cands = list(space.enumerate())
    assert len(cands) == space.size()
    assert len({c.encoding for c in cands}) == space.size()
    assert len({c.id for c in cands}) == space.size()  # every encoding is a different network


def test_default_sizes():
    per_stage = sum(27 * 54 ** (d - 1) for d in range(1, 5))  # 27 (k, e, w) per block, x2 residual
    assert hn.load_space("macro").size() == per_stage ** 3
    assert hn.load_space("mlp").size() == 3 * sum(16 ** d for d in range(1, 5))


def test_macro_widths_are_rounded_and_distinct():
    space = hn.load_space("macro")
    assert [space.width_choices(s) for s in range(3)] == [(8, 12, 16), (16, 24, 32), (32, 48, 64)]
    merged = hn.load_space("macro", width_divisor=8)  # 0.75 x 16 = 12 rounds up to 16
    assert merged.width_choices(0) == (8, 16)


# ----- encodings -----------------------------------------------------------------------------

def test_macro_encoding_round_trip():
    space = hn.load_space("macro")
    for seed in range(10):
        cand = space.sample(seed)
        assert space.decode(cand.encoding) == cand.params
        assert space.encode(space.decode(cand.encoding)) == cand.encoding
        pairs = ",".join(f"{k}={v}" for k, v in cand.params.items())
        assert space.replay(pairs).encoding == cand.encoding  # name=value pairs are read too
        assert cand.encoding.count("|") == 2
        assert cand.encoding.count("k") == _depth(cand)


@pytest.mark.parametrize("bad, match", [
    ("k3e1w16|k3e1w32", "2 stage"),
    ("k3e1w16|k3x1w32|k3e1w64", "cannot read block 'k3x1w32'"),
    ("k3e1w16|k3e1w32,|k3e1w64", "cannot read block ''"),
    ("k3e1w16||k3e1w64", "cannot read block '' of stage 2"),  # a stage of 0 blocks
    ("k3e2w16|k3e1w32|k3e1w64", "2 is not a choice for 's1_b1_expand'"),
    ("k3e1w16+|k3e1w32|k3e1w64", "cannot be residual"),
    ("k3e1w16,k3e1w16,k3e1w16,k3e1w16,k3e1w16|k3e1w32|k3e1w64", "5 blocks"),
    ("k4e1w16|k3e1w32|k3e1w64", "4 is not a choice for 's1_b1_kernel'"),
    ("k3e1w20|k3e1w32|k3e1w64", "20 is not a choice for 's1_b1_width'"),
])
def test_macro_bad_encoding(bad, match):
    with pytest.raises(hn.EncodingError, match=match):
        hn.load_space("macro").replay(bad)


def test_mlp_encoding_refuses_unused_layers():
    space = hn.load_space("mlp")
    with pytest.raises(hn.EncodingError, match="l2_width"):
        space.replay("depth=1,norm=none,l1_width=32,l1_act=relu,l2_width=64,l2_act=relu")
    with pytest.raises(hn.EncodingError, match="l2_width"):
        space.replay("depth=2,norm=none,l1_width=32,l1_act=relu")


# ----- mutation --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["macro", "mlp"])
def test_mutation_changes_one_choice(name):
    space = hn.load_space(name)
    depth_changes = 0
    for seed in range(300):  # until a depth change has been seen too
        if seed >= 20 and depth_changes:
            break
        parent = space.sample(seed)
        child = space.mutate(parent, seed=seed)
        a, b = parent.params, child.params
        changed = [k for k in a.keys() & b.keys() if a[k] != b[k]]
        assert len(changed) == 1, (parent.encoding, child.encoding)
        if a.keys() != b.keys():  # only a depth change adds or drops (conditional) choices
            assert changed[0].endswith("depth")
            depth_changes += 1
        assert space.replay(child.encoding).id == child.id
    assert depth_changes > 0


# ----- input shapes and forward passes -------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("macro", (1, 28, 28)), ("macro", (3, 32, 32)),
                                         ("macro", (1, 8, 8)), ("mlp", (40,)),
                                         ("mlp", (1, 28, 28))])
def test_forward_on_input_shapes(name, shape):
    space = hn.load_space(name, input_shape=shape, num_classes=7)
    torch.manual_seed(0)
    for seed in range(2):
        net = hn.Network(space.sample(seed).graph)
        assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_macro_resolution_per_stage():
    space = hn.load_space("macro", input_shape=(1, 8, 8))
    shapes = hn.infer_shapes(space.replay("k7e6w16|k7e6w32|k7e6w64").graph)
    assert [shapes[f"s{s}_b1_project_bn"] for s in (1, 2, 3)] == [(16, 8, 8), (32, 4, 4),
                                                                  (64, 2, 2)]


def test_mlp_flattens_images():
    space = hn.load_space("mlp", input_shape=(1, 28, 28))
    graph = space.sample(0).graph
    assert graph.nodes["flatten"]["op"] == "flatten"
    assert hn.infer_shapes(graph)["flatten"] == (784,)
    assert "flatten" not in hn.load_space("mlp").sample(0).graph


# ----- bad settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("settings, match", [
    (dict(input_shape=(40,)), "mlp space"),
    (dict(input_shape=(1, 3, 3)), "at least 4x4"),
    (dict(input_shape=(1, 6, 6), stem_stride=2), "at least 8x8"),
    (dict(stage_strides=(1, 2)), "one entry per stage"),
    (dict(kernel_sizes=(3, 4)), "odd"),
    (dict(kernel_sizes=(3, 3)), "repeats"),
    (dict(expand_ratios=()), "expand_ratios"),
    (dict(width_mults=(0.5, -1.0)), "width_mults"),
    (dict(min_depth=3, max_depth=2), "min_depth"),
    (dict(head_channels=0), "head_channels"),
])
def test_macro_bad_config(settings, match):
    with pytest.raises(hn.SpaceError, match=match):
        hn.load_space("macro", **settings)


def test_macro_small_input_limit_is_exact():
    hn.load_space("macro", input_shape=(1, 4, 4))  # total stride 4: a 4x4 input just fits
    with pytest.raises(hn.SpaceError, match="at least 4x4"):
        hn.load_space("macro", input_shape=(1, 3, 8))


@pytest.mark.parametrize("settings, match", [
    (dict(input_shape=()), "input_shape"),
    (dict(widths=(32, 0)), "widths"),
    (dict(widths=(32, 32)), "repeats"),
    (dict(activations=("relu", "swish")), "swish.*pick from"),
    (dict(norms=("group_norm",)), "group_norm"),
    (dict(norms=()), "norms"),
    (dict(max_depth=0), "max_depth"),
    (dict(min_depth=3, max_depth=2), "min_depth"),
])
def test_mlp_bad_config(settings, match):
    with pytest.raises(hn.SpaceError, match=match):
        hn.load_space("mlp", **settings)
