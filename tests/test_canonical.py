"""Canonical ids: equal exactly for graphs that compute one function by construction, and
same_architecture agrees with them."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

import hypernas
from hypernas.graphs.canonical import canonical_graph, canonical_id, same_architecture
from hypernas.errors import CycleError, GraphError, UnknownOpError, UnreachableNodeError
from hypernas.graphs import GraphBuilder, validate
from hypernas.graphs.serialize import graph_from_json, graph_to_json

Spec = list[tuple[Any, str, list, dict]]  # (name, op, inputs in slot order, attributes)


def make(spec: Spec, input_shape: Any = (3, 8, 8), num_outputs: int = 5,
         **graph_attrs: Any) -> nx.DiGraph:
    g = nx.DiGraph(input_shape=list(input_shape), num_outputs=num_outputs, **graph_attrs)
    for name, op, _, attrs in spec:
        g.add_node(name, op=op, **attrs)
    for name, _, ins, _ in spec:
        for i, p in enumerate(ins):
            g.add_edge(p, name, slot=i)
    return g


def conv(name: str, src: str, ch: int = 4, k: int = 3) -> tuple:
    return (name, "conv", [src], {"out_channels": ch, "kernel_size": k})


def tail(last: str, num_outputs: int = 5) -> Spec:
    return [("gap", "global_avg_pool", [last], {}),
            ("fc", "linear", ["gap"], {"out_features": num_outputs}),
            ("out", "output", ["fc"], {})]


def base_spec(k: int = 3, ch: int = 4, num_outputs: int = 5) -> Spec:
    """x -> c1(kxk) -> relu ; x -> c2(1x1) ; add(relu, c2) ; concat(add, c1) -> head."""
    return [("x", "input", [], {}), conv("c1", "x", ch, k), ("r", "relu", ["c1"], {}),
            conv("c2", "x", ch, 1), ("a", "add", ["r", "c2"], {}),
            ("cat", "concat", ["a", "c1"], {})] + tail("cat", num_outputs)


def base(k: int = 3, ch: int = 4) -> nx.DiGraph:
    return make(base_spec(k, ch))


def renamed() -> nx.DiGraph:
    g = base()
    return nx.relabel_nodes(g, {n: f"node_{i}" for i, n in enumerate(reversed(list(g.nodes)))})


def renamed_to_ints() -> nx.DiGraph:
    g = base()
    return nx.relabel_nodes(g, {n: 100 - i for i, n in enumerate(g.nodes)})


def reinserted() -> nx.DiGraph:
    g = base()
    h = nx.DiGraph(**g.graph)
    h.add_nodes_from(reversed(list(g.nodes(data=True))))
    h.add_edges_from(reversed(list(g.edges(data=True))))
    return h


def add_inputs_swapped() -> nx.DiGraph:
    g = base()
    g.edges["r", "a"]["slot"], g.edges["c2", "a"]["slot"] = 1, 0
    return g


def add_inputs_without_slots() -> nx.DiGraph:
    g = base()
    for u in ("r", "c2"):
        del g.edges[u, "a"]["slot"]
    return g


def relabelled_and_annotated() -> nx.DiGraph:
    g = base()
    g.graph.update(space="toy", encoding="c1=3", name="same thing")
    for n in g.nodes:
        g.nodes[n]["label"] = f"display text {n}"
    g.nodes["c1"]["padding"] = -1              # the default, spelled out
    g.nodes["gap"]["label"] = "pooling"
    return g


def _with_identities() -> nx.DiGraph:
    # identities on the relu input, on c2's input, and in front of the output
    spec = [("x", "input", [], {}), ("i0", "identity", ["x"], {}), conv("c1", "x", 4, 3),
            ("i1", "identity", ["c1"], {}), ("r", "relu", ["i1"], {}), conv("c2", "i0", 4, 1),
            ("a", "add", ["r", "c2"], {}), ("cat", "concat", ["a", "c1"], {}),
            ("gap", "global_avg_pool", ["cat"], {}), ("fc", "linear", ["gap"], {"out_features": 5}),
            ("i2", "identity", ["fc"], {}), ("out", "output", ["i2"], {})]
    return make(spec)


def with_dead_branch() -> nx.DiGraph:
    g = base()
    g.add_node("dead_conv", op="conv", out_channels=9, kernel_size=5)
    g.add_node("dead_act", op="conv5x5")        # even an invalid dead node is dropped
    g.add_edge("c1", "dead_conv")
    g.add_edge("dead_conv", "dead_act")
    return g


def with_zero_summand() -> nx.DiGraph:
    # a = add(r, c2, zero(c3)) where c3 is a whole branch that no longer matters
    spec = base_spec()
    spec[4] = ("a", "add", ["r", "c2", "z"], {})
    return make(spec + [conv("c3", "x", 4, 5), ("z", "zero", ["c3"], {})])


EQUAL = {
    "renamed": renamed,
    "renamed_to_ints": renamed_to_ints,
    "insertion_order": reinserted,
    "add_inputs_swapped": add_inputs_swapped,
    "add_inputs_without_slots": add_inputs_without_slots,
    "labels_and_metadata": relabelled_and_annotated,
    "identity_nodes": _with_identities,
    "dead_branch": with_dead_branch,
    "zero_summand": with_zero_summand,
    "json_round_trip": lambda: graph_from_json(graph_to_json(base())),
}


def concat_swapped() -> nx.DiGraph:
    g = base()
    g.edges["a", "cat"]["slot"], g.edges["c1", "cat"]["slot"] = 1, 0
    return g


def zero_branch_dropped_from_concat() -> nx.DiGraph:
    # zero does not vanish from a concat: it contributes zero channels
    spec = base_spec()
    spec[5] = ("cat", "concat", ["a", "z"], {})
    return make(spec + [("z", "zero", ["c1"], {})])


def relu_replaced_by_identity() -> nx.DiGraph:
    g = base()
    g.nodes["r"]["op"] = "identity"
    return g


def c2_bias() -> nx.DiGraph:
    g = base()
    g.nodes["c2"]["bias"] = True
    return g


DIFFERENT = {
    "kernel_size": lambda: base(k=5),
    "channels": lambda: base(ch=6),
    "concat_order": concat_swapped,
    "concat_zero_input": zero_branch_dropped_from_concat,
    "identity_for_relu": relu_replaced_by_identity,
    "bias": c2_bias,
    "input_shape": lambda: make(base_spec(), input_shape=(3, 16, 16)),
    "input_channels": lambda: make(base_spec(), input_shape=(2, 8, 8)),
    "num_outputs": lambda: make(base_spec(num_outputs=6), num_outputs=6),
}


def check_pair(a: nx.DiGraph, b: nx.DiGraph, same: bool) -> None:
    id_a, id_b = canonical_id(a), canonical_id(b)
    assert (id_a == id_b) is same
    assert same_architecture(a, b) is same
    assert same_architecture(b, a) is same


@pytest.mark.parametrize("variant", sorted(EQUAL))
def test_same_function_same_id(variant):
    check_pair(base(), EQUAL[variant](), True)


@pytest.mark.parametrize("variant", sorted(DIFFERENT))
def test_different_function_different_id(variant):
    g = DIFFERENT[variant]()
    validate(g)
    check_pair(base(), g, False)


def test_every_variant_pairwise():
    # All the "equal" variants form one class; each "different" variant is its own class.
    graphs = [("base", base())] + [(k, f()) for k, f in EQUAL.items()] \
        + [(k, f()) for k, f in DIFFERENT.items()]
    cls = {k: ("base" if k == "base" or k in EQUAL else k) for k, _ in graphs}
    for i, (ka, a) in enumerate(graphs):
        for kb, b in graphs[i + 1:]:
            same = cls[ka] == cls[kb]
            assert (canonical_id(a) == canonical_id(b)) is same, (ka, kb)
            assert same_architecture(a, b) is same, (ka, kb)


def test_dead_branch_is_pruned_before_validation():
    g = with_dead_branch()
    with pytest.raises(GraphError):
        validate(g)                     # validate rejects dead nodes...
    assert canonical_id(g) == canonical_id(base())  # ...canonical_id drops them first
    assert not {"dead_conv", "dead_act"} & set(canonical_graph(g).nodes)


def test_add_of_x_and_zero_is_x():
    # add(x, zero(y)) vs x
    summed = make([("x", "input", [], {}), conv("c", "x"), conv("y", "x", 4, 1),
                   ("z", "zero", ["y"], {}), ("a", "add", ["c", "z"], {})] + tail("a"))
    plain = make([("x", "input", [], {}), conv("c", "x")] + tail("c"))
    check_pair(summed, plain, True)


def test_all_zero_add_is_zero():
    # add(zero(c), zero(c2)) is one zero tensor of that shape, whatever fed the zeros.
    zeros = make([("x", "input", [], {}), conv("c", "x"), conv("c2", "x", 4, 1),
                  ("z1", "zero", ["c"], {}), ("z2", "zero", ["c2"], {}),
                  ("a", "add", ["z1", "z2"], {})] + tail("a"))
    one_zero = make([("x", "input", [], {}), conv("c", "x"), ("z", "zero", ["c"], {})] + tail("z"))
    check_pair(zeros, one_zero, True)
    check_pair(zeros, base(), False)


def test_zero_output_graphs_keep_their_input_shape():
    # The output ignores the input entirely; the domain still tells the functions apart.
    def ignores_input(channels: int) -> nx.DiGraph:
        return make([("x", "input", [], {}), conv("c", "x"), ("z", "zero", ["c"], {})]
                     + tail("z"), input_shape=(channels, 8, 8))
    check_pair(ignores_input(1), ignores_input(1), True)
    check_pair(ignores_input(1), ignores_input(2), False)


def test_shared_conv_differs_from_two_equal_convs():
    shared = make([("x", "input", [], {}), conv("c", "x"), ("r", "relu", ["c"], {}),
                   ("s", "sigmoid", ["c"], {}), ("a", "add", ["r", "s"], {})] + tail("a"))
    separate = make([("x", "input", [], {}), conv("c_a", "x"), conv("c_b", "x"),
                     ("r", "relu", ["c_a"], {}), ("s", "sigmoid", ["c_b"], {}),
                     ("a", "add", ["r", "s"], {})] + tail("a"))
    separate_swapped = make([("x", "input", [], {}), conv("c_b", "x"), conv("c_a", "x"),
                             ("r", "relu", ["c_b"], {}), ("s", "sigmoid", ["c_a"], {}),
                             ("a", "add", ["s", "r"], {})] + tail("a"))
    check_pair(shared, separate, False)
    check_pair(separate, separate_swapped, True)
    sharing = nx.get_node_attributes(canonical_graph(shared), "label")
    assert sharing["c"]["shared_by"] == 2


def test_sum_reading_one_tensor_twice_differs_from_two_tensors():
    b = GraphBuilder(input_shape=(3, 8, 8), num_outputs=5)
    c = b.add("conv", b.input, out_channels=4, kernel_size=3)
    b.output(b.add("linear", b.add("global_avg_pool", b.add("add", c, c)), out_features=5))
    twice = b.build()                       # add(c, identity(c)) = 2c, one weight
    b = GraphBuilder(input_shape=(3, 8, 8), num_outputs=5)
    c1 = b.add("conv", b.input, out_channels=4, kernel_size=3)
    c2 = b.add("conv", b.input, out_channels=4, kernel_size=3)
    b.output(b.add("linear", b.add("global_avg_pool", b.add("add", c1, c2)), out_features=5))
    check_pair(twice, b.build(), False)
    edges = canonical_graph(twice).number_of_edges("conv", "add")
    assert edges == 2                       # parallel edges keep the multiplicity


def test_id_is_short_stable_hex():
    ids = {canonical_id(base()) for _ in range(3)}
    assert len(ids) == 1
    (cid,) = ids
    assert len(cid) == 16 and int(cid, 16) >= 0


def test_invalid_live_graphs_still_raise():
    g = base()
    g.nodes["c2"]["op"] = "conv5x5"
    with pytest.raises(UnknownOpError):
        canonical_id(g)
    g = base()
    g.add_edge("cat", "c1", slot=1)
    with pytest.raises(CycleError):
        canonical_id(g)
    with pytest.raises(GraphError):
        same_architecture(base(), g)


def test_canonical_graph_drops_identities_and_zero_summands():
    canon = canonical_graph(_with_identities())
    assert {d["label"]["op"] for _, d in canon.nodes(data=True)} == {
        "input", "conv", "relu", "add", "concat", "global_avg_pool", "linear", "output"}
    canon = canonical_graph(with_zero_summand())
    assert "z" not in canon and "c3" not in canon
    assert canon.in_degree("a") == 2


def test_unreachable_error_is_what_validate_raises_for_the_dead_variant():
    with pytest.raises(UnreachableNodeError):
        validate(with_dead_branch().subgraph(set(with_dead_branch()) - {"dead_act"}).copy())


# ----- equal parameter-free nodes are one tensor; sums are flat ---------------------------------

def three_convs() -> Spec:
    """x -> a (3x3), b (1x1), c (5x5): three different tensors of one shape."""
    return [("x", "input", [], {}), conv("ca", "x", 4, 3), conv("cb", "x", 4, 1),
            conv("cc", "x", 4, 5)]


def read_again(*names: str) -> Spec:
    """An identity per name: a graph edge joins two nodes once, so a sum reads a tensor a
    second time through a wire (``name_2``)."""
    return [(f"{n}_2", "identity", [n], {}) for n in names]


def test_nb201_duplicate_pool_and_nested_sum_share_an_id():
    space = hypernas.load_space("nb201", input_shape=(1, 28, 28), N=1, C=8)
    for a, b in (("401011", "040401"),    # one avg_pool read twice vs two: 2 * avg_pool(x)
                 ("111011", "101111")):   # (x + x) + x vs x + x + x
        check_pair(space.replay(a).graph, space.replay(b).graph, True)
    for a, b in (("201011", "020201"),    # one conv1x1 read twice vs two conv1x1 of x
                 ("304041", "330044")):   # one conv3x3 pooled twice vs two, each pooled once
        check_pair(space.replay(a).graph, space.replay(b).graph, False)


def test_op_applied_twice_is_one_tensor():
    # relu(x) + relu(x) built as two relus, and as one relu read twice through an identity
    two = make([("x", "input", [], {}), ("r1", "relu", ["x"], {}), ("r2", "relu", ["x"], {}),
                ("a", "add", ["r1", "r2"], {})] + tail("a"))
    once = make([("x", "input", [], {}), ("r", "relu", ["x"], {}), ("i", "identity", ["r"], {}),
                 ("a", "add", ["r", "i"], {})] + tail("a"))
    check_pair(two, once, True)
    canon = canonical_graph(two)
    assert [d["label"]["op"] for _, d in canon.nodes(data=True)].count("relu") == 1
    assert canon.number_of_edges("r1", "a") == 2     # still 2 * relu(x), not relu(x)


def test_equal_nodes_merge_bottom_up():
    # pool(relu(x)) built twice: the relus merge first, then the pools do
    twice = make([("x", "input", [], {}), ("r1", "relu", ["x"], {}), ("r2", "relu", ["x"], {}),
                  ("p1", "max_pool", ["r1"], {"kernel_size": 3, "stride": 1, "padding": 1}),
                  ("p2", "max_pool", ["r2"], {"kernel_size": 3, "stride": 1, "padding": 1}),
                  ("cat", "concat", ["p1", "p2"], {})] + tail("cat"))
    once = make([("x", "input", [], {}), ("r", "relu", ["x"], {}),
                 ("p", "max_pool", ["r"], {"kernel_size": 3, "stride": 1, "padding": 1}),
                 ("cat", "concat", ["p", "p_again"], {}), ("p_again", "identity", ["p"], {})]
                + tail("cat"))
    check_pair(twice, once, True)
    assert len(canonical_graph(twice)) == len(canonical_graph(once)) == 7


def test_different_attributes_are_not_merged():
    def pools(k2: int) -> nx.DiGraph:  # max_pool 3x3 + max_pool k2 x k2, same output shape
        return make([("x", "input", [], {}),
                     ("p1", "max_pool", ["x"], {"kernel_size": 3, "stride": 1, "padding": 1}),
                     ("p2", "max_pool", ["x"], {"kernel_size": k2, "stride": 1,
                                                "padding": k2 // 2}),
                     ("a", "add", ["p1", "p2"], {})] + tail("a"))
    assert len(canonical_graph(pools(3))) == len(canonical_graph(pools(5))) - 1
    check_pair(pools(3), pools(5), False)


def test_layers_with_parameters_are_never_merged():
    # conv_a(x) + conv_b(x) (two layers, equal attributes) vs one conv read twice
    two = make([("x", "input", [], {}), conv("c1", "x"), conv("c2", "x"),
                ("r1", "relu", ["c1"], {}), ("r2", "relu", ["c2"], {}),
                ("a", "add", ["r1", "r2"], {})] + tail("a"))
    one = make([("x", "input", [], {}), conv("c", "x"), ("r", "relu", ["c"], {}),
                ("i", "identity", ["r"], {}), ("a", "add", ["r", "i"], {})] + tail("a"))
    check_pair(two, one, False)
    labels = nx.get_node_attributes(canonical_graph(two), "label")
    assert labels["c1"]["shared_by"] == labels["c2"]["shared_by"] == 1
    assert [lab["op"] for lab in labels.values()].count("relu") == 2
    # a shared conv read by two equal relus: the relus merge, the conv is read once
    shared = make([("x", "input", [], {}), conv("c", "x"), ("r1", "relu", ["c"], {}),
                   ("r2", "relu", ["c"], {}), ("a", "add", ["r1", "r2"], {})] + tail("a"))
    check_pair(shared, one, True)
    assert nx.get_node_attributes(canonical_graph(shared), "label")["c"]["shared_by"] == 1


def test_concat_order_still_counts():
    pool = ("p", "avg_pool", ["x"], {"kernel_size": 3, "stride": 1, "padding": 1})
    first = make([("x", "input", [], {}), pool, ("cat", "concat", ["x", "p"], {})] + tail("cat"))
    second = make([("x", "input", [], {}), pool, ("cat", "concat", ["p", "x"], {})] + tail("cat"))
    check_pair(first, second, False)


def test_equal_concats_merge_only_with_the_same_order():
    pool = ("p", "avg_pool", ["x"], {"kernel_size": 3, "stride": 1, "padding": 1})

    def two_concats(order: list[str]) -> nx.DiGraph:
        return make([("x", "input", [], {}), pool, ("k1", "concat", ["x", "p"], {}),
                     ("k2", "concat", order, {}), ("a", "add", ["k1", "k2"], {})] + tail("a"))
    merged = two_concats(["x", "p"])
    assert [d["label"]["op"] for _, d in canonical_graph(merged).nodes(data=True)].count(
        "concat") == 1
    assert [d["label"]["op"] for _, d in canonical_graph(two_concats(["p", "x"])).nodes(
        data=True)].count("concat") == 2
    check_pair(merged, two_concats(["p", "x"]), False)


def test_nested_sum_is_flat():
    nested = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                   ("abc", "add", ["ab", "cc"], {})] + tail("abc"))
    flat = make(three_convs() + [("abc", "add", ["cc", "ca", "cb"], {})] + tail("abc"))
    check_pair(nested, flat, True)
    canon = canonical_graph(nested)
    assert "ab" not in canon and canon.in_degree("abc") == 3


def test_sum_read_twice_by_a_sum_brings_its_inputs_twice():
    # (a + b) + (a + b) = a + a + b + b, not a + b
    twice = make(three_convs()[:3] + [("ab", "add", ["ca", "cb"], {}),
                                      ("s", "add", ["ab", "ab_copy"], {}),
                                      ("ab_copy", "identity", ["ab"], {})] + tail("s"))
    spelled_out = make(three_convs()[:3] + read_again("ca", "cb")
                       + [("s", "add", ["ca", "cb", "ca_2", "cb_2"], {})] + tail("s"))
    once = make(three_convs()[:3] + [("s", "add", ["ca", "cb"], {})] + tail("s"))
    check_pair(twice, spelled_out, True)
    check_pair(twice, once, False)


def test_sums_flatten_through_chains():
    # ((a + b) + c) + a, a chain of single-consumer sums, is a + a + b + c
    chain = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                  ("abc", "add", ["ab", "cc"], {}),
                                  ("s", "add", ["abc", "ca"], {})] + tail("s"))
    flat = make(three_convs() + read_again("ca")
                + [("s", "add", ["ca", "cb", "cc", "ca_2"], {})] + tail("s"))
    check_pair(chain, flat, True)


def test_sum_with_a_second_consumer_stays():
    # (a + b) + c where a + b is also read by a sigmoid ...
    shared = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                   ("abc", "add", ["ab", "cc"], {}),
                                   ("sg", "sigmoid", ["ab"], {}),
                                   ("cat", "concat", ["abc", "sg"], {})] + tail("cat"))
    # ... vs a + b + c, with the sigmoid fed by a separate a + b: same values, another graph
    separate = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                     ("abc", "add", ["ca", "cb", "cc"], {}),
                                     ("sg", "sigmoid", ["ab"], {}),
                                     ("cat", "concat", ["abc", "sg"], {})] + tail("cat"))
    check_pair(shared, separate, False)
    canon = canonical_graph(shared)
    assert "ab" in canon and canon.in_degree("abc") == 2


def test_a_dead_second_consumer_does_not_keep_a_sum():
    # a + b is also read by a sigmoid that only feeds a zero summand, so the sigmoid is dead
    dead_reader = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                        ("abc", "add", ["ab", "cc"], {}),
                                        ("sg", "sigmoid", ["ab"], {}), ("z", "zero", ["sg"], {}),
                                        ("s", "add", ["abc", "z"], {})] + tail("s"))
    flat = make(three_convs() + [("abc", "add", ["ca", "cb", "cc"], {})] + tail("abc"))
    check_pair(dead_reader, flat, True)


def test_flattening_exposes_equal_sums():
    # (a + b) + c and a + b + c become one sum once flat; concat reads it twice
    nested_and_flat = make(three_convs() + [("ab", "add", ["ca", "cb"], {}),
                                            ("s1", "add", ["ab", "cc"], {}),
                                            ("s2", "add", ["cb", "cc", "ca"], {}),
                                            ("cat", "concat", ["s1", "s2"], {})] + tail("cat"))
    one_sum = make(three_convs() + [("s", "add", ["ca", "cb", "cc"], {}),
                                    ("s_copy", "identity", ["s"], {}),
                                    ("cat", "concat", ["s", "s_copy"], {})] + tail("cat"))
    check_pair(nested_and_flat, one_sum, True)


def test_merging_lets_a_sum_flatten():
    # Two equal sums s1 = s2 = a + b, both read only by t = s1 + s2: once they are one node,
    # t is its only reader, so t = a + a + b + b.
    merged_first = make(three_convs()[:3] + [("s1", "add", ["ca", "cb"], {}),
                                             ("s2", "add", ["cb", "ca"], {}),
                                             ("t", "add", ["s1", "s2"], {})] + tail("t"))
    spelled_out = make(three_convs()[:3] + read_again("ca", "cb")
                       + [("t", "add", ["ca", "ca_2", "cb", "cb_2"], {})] + tail("t"))
    check_pair(merged_first, spelled_out, True)
