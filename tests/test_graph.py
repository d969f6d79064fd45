"""Architecture graphs: every error validate() promises, the JSON round trip, GraphBuilder."""

from __future__ import annotations

import json
from typing import Any, Callable

import networkx as nx
import pytest
import torch

from hypernas.errors import (ArityError, CycleError, GraphError, GraphFormatError, InputNodeError,
                             NodeAttributeError, OutputNodeError, ShapeError, UnknownOpError,
                             UnreachableNodeError)
from hypernas.graphs import GraphBuilder, infer_shapes, ordered_inputs, validate
from hypernas.graphs.serialize import (graph_from_dict, graph_from_json, graph_to_json, graphs_equal,
                                 load_graph, save_graph)
from hypernas.graphs.network import Network
from hypernas.graphs.ops import list_ops

Spec = list[tuple[Any, str, list, dict]]  # (name, op, inputs in slot order, attributes)


def make(spec: Spec, input_shape: Any = (2, 8, 8), num_outputs: Any = 3,
         slots: bool = True) -> nx.DiGraph:
    """A graph from ``spec``; edges get ``slot`` = input position unless ``slots`` is False."""
    g = nx.DiGraph(input_shape=list(input_shape), num_outputs=num_outputs)
    for name, op, _, attrs in spec:
        g.add_node(name, op=op, **attrs)
    for name, _, ins, _ in spec:
        for i, p in enumerate(ins):
            g.add_edge(p, name, **({"slot": i} if slots else {}))
    return g


def head(out_channels: int = 4) -> Spec:
    return [("x", "input", [], {}), ("c", "conv", ["x"], {"out_channels": out_channels,
                                                          "kernel_size": 3})]


def tail(last: str) -> Spec:
    """Map -> logits: global_avg_pool, linear(3), output."""
    return [("p", "global_avg_pool", [last], {}), ("l", "linear", ["p"], {"out_features": 3}),
            ("out", "output", ["l"], {})]


def good() -> nx.DiGraph:
    return make(head() + [("r", "relu", ["c"], {})] + tail("r"))


DELETE = object()  # with_node(..., key=DELETE) removes the attribute


def with_node(name: str, **changes: Any) -> Callable[[], nx.DiGraph]:
    """The good graph with node ``name``'s attributes updated (``DELETE`` removes one)."""
    def build() -> nx.DiGraph:
        g = good()
        for k, v in changes.items():
            if v is DELETE:
                del g.nodes[name][k]
            else:
                g.nodes[name][k] = v
        return g
    return build


def edited(fn: Callable[[nx.DiGraph], None]) -> Callable[[], nx.DiGraph]:
    def build() -> nx.DiGraph:
        g = good()
        fn(g)
        return g
    return build


def spec_graph(spec: Spec, **kw: Any) -> Callable[[], nx.DiGraph]:
    return lambda: make(spec, **kw)


def _two_inputs(g: nx.DiGraph) -> None:
    g.add_node("x2", op="input")
    g.add_edge("x2", "c")


# (id, graph factory, error class, node named in err.node, substrings the message must hold)
CASES = [
    ("cycle", edited(lambda g: g.add_edge("r", "c", slot=1)), CycleError, None,
     ["cycle", "'c'", "'r'", "remove one of these edges"]),
    ("no_input", edited(lambda g: g.remove_node("x")), InputNodeError, None,
     ["no 'input'", "add a node with op='input'"]),
    ("two_inputs", edited(_two_inputs), InputNodeError, None,
     ["'x'", "'x2'", "merge them"]),
    ("no_output", edited(lambda g: g.remove_node("out")), OutputNodeError, None,
     ["no 'output'", "add a node with op='output'"]),
    ("two_outputs", edited(lambda g: (g.add_node("out2", op="output"), g.add_edge("l", "out2"))),
     OutputNodeError, None, ["'out'", "'out2'", "merge them"]),
    ("output_feeds", edited(lambda g: (g.add_node("after", op="relu"), g.add_edge("out", "after"))),
     OutputNodeError, "out", ["'out'", "'after'", "must be the last node"]),
    ("unknown_op", with_node("c", op="conv5x5"), UnknownOpError, "c",
     ["'c'", "'conv5x5'", "known ops:", "conv, dropout, dw_conv"]),
    ("no_op", with_node("r", op=DELETE), NodeAttributeError, "r",
     ["'r'", "no 'op'", "set op to one of", "relu"]),
    ("missing_attr", with_node("c", out_channels=DELETE), NodeAttributeError, "c",
     ["'c'", "missing required attribute 'out_channels'", "add it"]),
    ("str_attr", with_node("c", kernel_size="3"), NodeAttributeError, "c",
     ["'c'", "'kernel_size' must be int", "'3' (str)"]),
    ("bool_attr", with_node("c", kernel_size=True), NodeAttributeError, "c",
     ["'c'", "'kernel_size' must be int", "True (bool)"]),
    ("zero_attr", with_node("c", out_channels=0), NodeAttributeError, "c",
     ["'c'", "'out_channels' must be >= 1", "got 0"]),
    ("typo_attr", with_node("c", kernal_size=3), NodeAttributeError, "c",
     ["'c'", "unknown attribute(s) kernal_size", "conv takes:", "kernel_size"]),
    ("add_one_input", spec_graph(head() + [("a", "add", ["c"], {})] + tail("a")), ArityError, "a",
     ["'a'", "1 input(s)", "takes 2 or more", "fix its incoming edges"]),
    ("relu_two_inputs", spec_graph(head() + [("m", "max_pool", ["x"], {"kernel_size": 1}),
                                             ("r", "relu", ["c", "m"], {})] + tail("r")),
     ArityError, "r", ["'r'", "2 input(s)", "takes 1", "fix its incoming edges"]),
    ("channel_mismatch", spec_graph(head(4) + [
        ("c8", "conv", ["x"], {"out_channels": 8, "kernel_size": 1}),
        ("a", "add", ["c", "c8"], {})] + tail("a")), ShapeError, "a",
     ["'a'", "(4, 8, 8), (8, 8, 8)", "insert a conv/linear"]),
    ("spatial_mismatch", spec_graph(head() + [
        ("m", "max_pool", ["x"], {"kernel_size": 2}),
        ("cat", "concat", ["c", "m"], {})] + tail("cat")), ShapeError, "cat",
     ["'cat'", "(4, 8, 8), (2, 4, 4)", "pool or stride them"]),
    ("kernel_too_big", spec_graph([("x", "input", [], {}),
                                   ("c", "conv", ["x"], {"out_channels": 4, "kernel_size": 5,
                                                         "padding": 0})] + tail("c"),
                                  input_shape=(2, 3, 3)), ShapeError, "c",
     ["'c'", "kernel 5", "3x3 map to nothing", "use a smaller kernel"]),
    ("groups", with_node("c", groups=3, out_channels=6), ShapeError, "c",
     ["'c'", "groups=3", "in (2)", "change groups or out_channels"]),
    ("heads", spec_graph(head(6) + [("sa", "self_attention", ["c"], {"num_heads": 4})]
                         + tail("sa")), ShapeError, "sa",
     ["'sa'", "4 heads", "embedding size 6", "pick num_heads dividing 6"]),
    ("final_shape", spec_graph(head() + [("out", "output", ["c"], {})]), ShapeError, "out",
     ["'out'", "(4, 8, 8)", "num_outputs=3", "end with global_avg_pool"]),
    ("dead_node", edited(lambda g: (g.add_node("d", op="relu"), g.add_edge("c", "d"))),
     UnreachableNodeError, "d", ["'d'", "never reaches the output", "connect it or remove it"]),
    ("concat_no_slots", spec_graph(head() + [("c2", "conv", ["x"], {"out_channels": 4,
                                                                     "kernel_size": 1}),
                                             ("cat", "concat", ["c", "c2"], {})] + tail("cat"),
                                   slots=False), GraphError, "cat",
     ["'cat'", "depends on input order", "distinct int 'slot'"]),
]


@pytest.mark.parametrize("build, error, node, phrases", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_validate_names_node_and_fix(build, error, node, phrases):
    g = build()
    with pytest.raises(GraphError) as info:
        validate(g)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    msg = str(info.value)
    for phrase in phrases:
        assert phrase in msg, f"{phrase!r} not in {msg!r}"
    if node is not None:
        assert info.value.node == node


def test_concat_with_equal_slots_is_rejected():
    g = make(head() + [("c2", "conv", ["x"], {"out_channels": 4, "kernel_size": 1}),
                       ("cat", "concat", ["c", "c2"], {})] + tail("cat"))
    g.edges["c2", "cat"]["slot"] = 0
    with pytest.raises(GraphError, match="distinct int 'slot'") as info:
        validate(g)
    assert info.value.node == "cat"


@pytest.mark.parametrize("attrs, phrase", [
    ({"num_outputs": 3}, "'input_shape'"),
    ({"input_shape": [-1, 8, 8], "num_outputs": 3}, "'input_shape'"),
    ({"input_shape": [], "num_outputs": 3}, "'input_shape'"),
    ({"input_shape": [2, 8, 8]}, "'num_outputs'"),
    ({"input_shape": [2, 8, 8], "num_outputs": 0}, "'num_outputs'"),
])
def test_bad_graph_attributes(attrs, phrase):
    g = good()
    g.graph.clear()
    g.graph.update(attrs)
    with pytest.raises(GraphError, match=phrase) as info:
        validate(g)
    assert "e.g." in str(info.value) or "number of classes" in str(info.value)


@pytest.mark.parametrize("name", ["conv-1", "a.b", "", -1, True, 1.5, ("a", "b"), "keys",
                                  "training"])
def test_bad_node_names(name):
    g = nx.relabel_nodes(good(), {"r": name})
    with pytest.raises(GraphError) as info:
        validate(g)
    assert repr(name) in str(info.value)
    assert "rename" in str(info.value) or "use letters, digits" in str(info.value)
    assert info.value.node == name


def test_names_equal_as_text_are_rejected():
    g = nx.relabel_nodes(good(), {"r": 1, "p": "1"})
    with pytest.raises(GraphError, match="same name once written as text; rename one"):
        validate(g)


def test_int_node_names_are_valid():
    g = nx.relabel_nodes(good(), {n: i for i, n in enumerate(good().nodes)})
    assert validate(g)[5] == (3,)


MALFORMED = [c[1] for c in CASES] + [
    with_node("c", op=["conv"]),
    with_node("c", op=None),
    with_node("c", op=3),
    with_node("c", kernel_size=[3]),
    with_node("c", stride=None),
    with_node("c", kernel_size=3.0),
    with_node("c", padding=-2),
    with_node("c", bias="yes"),
    with_node("c", dilation=5, padding=0),
    with_node("r", op="batch_norm", eps="small"),
    with_node("r", op="max_pool", kernel_size=2, padding=2),
    with_node("r", op="linear", out_features=0),                 # linear with no outputs
    with_node("p", op="conv", out_channels=3, kernel_size=1),     # final shape is a map
    edited(lambda g: g.edges["c", "r"].update(slot="a")),
    edited(lambda g: g.edges["c", "r"].update(slot=True)),
    edited(lambda g: g.add_edge("x", "x")),
    edited(lambda g: g.add_edge("out", "x")),
    edited(lambda g: g.graph.update(input_shape="abc")),
    edited(lambda g: g.graph.update(input_shape=5)),
    edited(lambda g: g.graph.update(input_shape=[2.0, 8, 8])),
    edited(lambda g: g.graph.update(input_shape=(8,))),           # conv on a vector
    edited(lambda g: g.graph.update(num_outputs="3")),
    edited(lambda g: g.graph.update(num_outputs=True)),
    edited(lambda g: g.graph.clear()),
    edited(lambda g: g.clear()),
    lambda: nx.MultiDiGraph(good()),
    lambda: nx.Graph(good()),
    lambda: {"nodes": []},
    lambda: None,
    lambda: make([("x", "input", [], {}), ("b", "batch_norm", ["x"], {}),
                  ("f", "flatten", ["b"], {}), ("l", "linear", ["f"], {"out_features": 3}),
                  ("out", "output", ["l"], {})], input_shape=(4, 8)),  # batch_norm on tokens
]


@pytest.mark.parametrize("build", MALFORMED)
def test_every_malformed_graph_raises_a_graph_error(build):
    g = build()
    with pytest.raises(GraphError):
        validate(g)


def test_malformed_graphs_never_build_a_network():
    for build in MALFORMED:
        with pytest.raises(GraphError):
            Network(build())


def test_add_with_a_null_slot_is_ordered_like_slot_zero():
    g = make(head() + [("r", "relu", ["c"], {}), ("a", "add", ["c", "r"], {})] + tail("a"))
    g.edges["c", "a"]["slot"] = None
    assert validate(g)["a"] == (4, 8, 8)
    assert ordered_inputs(g, "a") == ["c", "r"]


def test_validate_returns_every_shape():
    shapes = validate(good())
    assert shapes == {"x": (2, 8, 8), "c": (4, 8, 8), "r": (4, 8, 8), "p": (4,), "l": (3,),
                      "out": (3,)}
    assert infer_shapes(good()) == shapes


# ----- JSON ------------------------------------------------------------------------------------

def builder_graph() -> nx.DiGraph:
    b = GraphBuilder(input_shape=(2, 8, 8), num_outputs=3, space="toy", encoding="a|b", name="g1")
    c1 = b.add("conv", b.input, out_channels=4, kernel_size=3, label="3x3 conv")
    c2 = b.add("conv", b.input, out_channels=2, kernel_size=1, bias=True)
    cat = b.add("concat", c2, c1, label="merge")
    x = b.add("batch_norm", cat, eps=1e-3)
    b.output(b.add("linear", b.add("global_avg_pool", x), out_features=3))
    return b.build()


def test_json_round_trip_is_exact():
    g = builder_graph()
    back = graph_from_json(graph_to_json(g))
    assert graphs_equal(g, back)
    assert back.graph["space"] == "toy" and back.graph["encoding"] == "a|b"
    assert "hypernas_format" not in back.graph
    assert back.nodes["conv"]["label"] == "3x3 conv"
    assert ordered_inputs(back, "concat") == ["conv_1", "conv"]
    assert list(back.nodes) == list(g.nodes)


def test_json_round_trip_keeps_int_ids():
    g = nx.relabel_nodes(good(), {n: i for i, n in enumerate(good().nodes)})
    back = graph_from_json(graph_to_json(g, indent=2))
    assert graphs_equal(g, back) and all(isinstance(n, int) for n in back.nodes)


def test_json_is_plain_node_link_data():
    data = json.loads(graph_to_json(builder_graph()))
    assert {"nodes", "edges", "graph", "directed", "multigraph"} <= set(data)
    assert data["graph"]["hypernas_format"] == 1
    assert {"source": "conv", "target": "concat", "slot": 1} in data["edges"]


def test_graphs_equal_notices_differences():
    a, b = builder_graph(), builder_graph()
    assert graphs_equal(a, b)
    b.edges["conv", "concat"]["slot"] = 5
    assert not graphs_equal(a, b)
    c = builder_graph()
    c.nodes["conv"]["kernel_size"] = 5
    assert not graphs_equal(a, c)


def test_save_and_load(tmp_path):
    g = builder_graph()
    path = tmp_path / "g.json"
    save_graph(g, path)
    assert graphs_equal(load_graph(path), g)
    assert graphs_equal(load_graph(str(path)), g)


def _good_data() -> dict:
    return json.loads(graph_to_json(good()))


def _edit(fn: Callable[[dict], Any]) -> str:
    data = _good_data()
    fn(data)
    return json.dumps(data)


BAD_FILES = [
    ("not_json", "this is not JSON {", "does not parse"),
    ("list", "[1, 2]", "must be a JSON object"),
    ("no_nodes", _edit(lambda d: d.pop("nodes")), "no 'nodes' list"),
    ("no_edges", _edit(lambda d: d.pop("edges")), "no 'edges' list"),
    ("edge_to_missing", _edit(lambda d: d["edges"].append({"source": "r", "target": "ghost"})),
     "names target 'ghost', which is not a node id; add the node or fix the edge"),
    ("edge_without_target", _edit(lambda d: d["edges"].append({"source": "r"})),
     "needs 'source' and 'target'"),
    ("node_without_id", _edit(lambda d: d["nodes"][1].pop("id")), "node entry #1 has no 'id'"),
    ("null_id", _edit(lambda d: d["nodes"].append({"id": None, "op": "relu"})),
     "has id None; use a string or int"),
    ("list_id", _edit(lambda d: d["nodes"].append({"id": [1], "op": "relu"})),
     "use a string or int"),
    ("duplicate_id", _edit(lambda d: d["nodes"].append(dict(d["nodes"][2]))),
     "repeats id 'r'; give each node its own id"),
    ("duplicate_edge", _edit(lambda d: d["edges"].append(dict(d["edges"][0]))),
     "repeats the edge 'x' -> 'c'"),
    ("multigraph", _edit(lambda d: d.update(multigraph=True)), "not a multigraph"),
    ("undirected", _edit(lambda d: d.update(directed=False)), "must be directed"),
]


@pytest.mark.parametrize("text, phrase", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_malformed_json_raises_format_error(tmp_path, text, phrase):
    with pytest.raises(GraphFormatError) as info:
        graph_from_json(text)
    assert phrase in str(info.value)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    assert str(path) in str(info.value) and phrase in str(info.value)


def test_unreadable_files_raise_format_error(tmp_path):
    with pytest.raises(GraphFormatError, match="cannot read graph file"):
        load_graph(tmp_path / "missing.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(GraphFormatError, match="not UTF-8 text"):
        load_graph(binary)


LINKS_JSON = """{
  "directed": true, "multigraph": false,
  "graph": {"input_shape": [4], "num_outputs": 2},
  "nodes": [{"id": "in", "op": "input"}, {"id": "fc", "op": "linear", "out_features": 2},
            {"id": "out", "op": "output"}],
  "links": [{"source": "in", "target": "fc"}, {"source": "fc", "target": "out"}]
}"""


def test_older_links_key_loads(tmp_path):
    path = tmp_path / "links.json"
    path.write_text(LINKS_JSON)
    g = load_graph(path)
    assert list(g.edges) == [("in", "fc"), ("fc", "out")]
    assert validate(g)["fc"] == (2,)


def test_load_graph_names_file_on_shape_error(tmp_path):
    path = tmp_path / "shape.json"
    path.write_text(LINKS_JSON.replace('"num_outputs": 2', '"num_outputs": 3'))
    with pytest.raises(ShapeError) as info:
        load_graph(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "out" in str(info.value) and info.value.node == "out"


def test_graph_from_dict_can_skip_validation():
    data = _good_data()
    data["nodes"].append({"id": "d", "op": "relu"})
    data["edges"].append({"source": "c", "target": "d"})
    g = graph_from_dict(data, check=False)
    assert "d" in g
    with pytest.raises(UnreachableNodeError):
        graph_from_dict(data)


# ----- GraphBuilder ----------------------------------------------------------------------------

def test_builder_repeated_input_becomes_identity_and_doubles():
    b = GraphBuilder(input_shape=(5,), num_outputs=5)
    s = b.add("add", b.input, b.input)
    b.output(s)
    g = b.build()
    assert validate(g)[s] == (5,)
    assert [g.nodes[p]["op"] for p in ordered_inputs(g, s)] == ["input", "identity"]
    x = torch.randn(3, 5)
    assert torch.equal(Network(g)(x), 2 * x)


def test_builder_names_nodes_uniquely():
    b = GraphBuilder(input_shape=(4,), num_outputs=4)
    names = [b.add("relu", b.input), b.add("relu", b.input), b.add("relu", b.input, name="act")]
    assert names == ["relu", "relu_1", "act"]
    assert b.shape("act") == (4,)


def test_builder_prunes_unused_branches():
    b = GraphBuilder(input_shape=(2, 8, 8), num_outputs=3)
    unused = b.add("conv", b.input, out_channels=8, kernel_size=3)
    b.add("relu", unused)
    x = b.add("global_avg_pool", b.input)
    b.output(b.add("linear", x, out_features=3))
    g = b.build()
    assert set(g.nodes) == {"input", "global_avg_pool", "linear", "output"}
    assert unused in b.graph                 # the working graph still has it
    validate(g)


def test_builder_shape_error_names_new_node():
    b = GraphBuilder(input_shape=(2, 8, 8), num_outputs=3)
    c4 = b.add("conv", b.input, out_channels=4, kernel_size=3)
    c8 = b.add("conv", b.input, out_channels=8, kernel_size=3)
    with pytest.raises(ShapeError) as info:
        b.add("add", c4, c8, name="merge")
    assert info.value.node == "merge"
    assert "new node 'merge' (add)" in str(info.value)
    assert "merge" not in b.graph            # nothing half-added
    with pytest.raises(ShapeError, match="new node 'global_avg_pool'"):
        b.add("global_avg_pool", b.add("flatten", c4, name="f"))


def test_builder_rejects_bad_attributes_and_arity():
    b = GraphBuilder(input_shape=(4,), num_outputs=4)
    with pytest.raises(NodeAttributeError, match="missing required attribute 'out_features'"):
        b.add("linear", b.input)
    with pytest.raises(ArityError):
        b.add("relu")
    with pytest.raises(UnknownOpError, match="known ops"):
        b.add("conv5x5", b.input)
    with pytest.raises(GraphError, match="not in the graph"):
        b.add("relu", "nowhere")
    with pytest.raises(GraphError, match="input_shape"):
        GraphBuilder(input_shape=(), num_outputs=3)


def test_every_op_has_a_schema_the_validator_accepts():
    # Each registered op's declared attribute defaults must pass its own type checks.
    from hypernas.graphs.graph import resolve_attrs
    from hypernas.graphs.ops import REQUIRED, get_op
    for name in list_ops():
        attrs = get_op(name).attrs
        given = {k: "1" if a.type is str else 1 for k, a in attrs.items()
                 if a.default is REQUIRED}
        assert set(resolve_attrs("n", name, given)) == set(attrs)
