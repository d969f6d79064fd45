"""Canonical ids: equal exactly for graphs that compute one function by construction, and
same_architecture agrees with them."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

from hypernas.canonical import canonical_graph, canonical_id, same_architecture
from hypernas.errors import CycleError, GraphError, UnknownOpError, UnreachableNodeError
from hypernas.graph import GraphBuilder, graph_from_json, graph_to_json, validate

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
