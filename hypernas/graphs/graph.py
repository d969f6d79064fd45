"""Architecture graphs: validation, shape inference, and the helpers every stage reads them with.

A candidate architecture is a ``networkx.DiGraph``. Each node has an ``op`` from
:mod:`hypernas.graphs.ops` plus that op's attributes (``out_channels``, ``kernel_size``, ...) and may
carry a free-form ``label`` for display. Edges carry data; an edge's optional ``slot`` orders
a node's inputs (needed where order matters, as for ``concat``). Graph attributes:
``input_shape`` (list of ints, no batch dim) and ``num_outputs`` (classes); ``space`` and
``encoding`` record where a candidate came from. Graphs are built node by node with
:class:`~hypernas.graphs.builder.GraphBuilder`; reading and writing them as JSON lives in
:mod:`hypernas.graphs.serialize`.

Example:
    >>> from hypernas.graphs.builder import GraphBuilder
    >>> b = GraphBuilder(input_shape=(1, 8, 8), num_outputs=10)
    >>> x = b.add("conv", b.input, out_channels=4, kernel_size=3)
    >>> x = b.add("global_avg_pool", b.add("relu", x))
    >>> b.output(b.add("linear", x, out_features=10))
    'output'
    >>> g = b.build()
    >>> infer_shapes(g)["conv"]
    (4, 8, 8)
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Hashable, Mapping

import networkx as nx
from torch import nn

from ..errors import (
    ArityError,
    CycleError,
    GraphError,
    InputNodeError,
    NodeAttributeError,
    OutputNodeError,
    ShapeError,
    UnknownOpError,
    UnreachableNodeError,
)
from .ops import REQUIRED, Attr, Shape, get_op, list_ops

__all__ = [
    "validate", "infer_shapes", "resolve_attrs", "node_attrs", "ordered_inputs", "input_node",
    "output_node", "topological_order", "fingerprint", "check_graph_attrs", "NODE_NAME",
]

META_NODE_ATTRS = frozenset({"op", "label"})  # not op attributes: the op name and display text
META_GRAPH_ATTRS = frozenset({"space", "encoding", "name", "hypernas_format"})
NODE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Names the target network's nn.ModuleDict already uses ('keys', 'update', 'training', ...):
# a node so named could not be registered as a submodule.
_RESERVED_NAMES = frozenset(dir(nn.ModuleDict()))


# ----- attributes -----------------------------------------------------------------------------

def _check_value(node: Hashable, op: str, key: str, spec: Attr, value: Any) -> Any:
    if value is None and spec.nullable:
        return None
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        want = " or ".join(t.__name__ for t in types)
        raise NodeAttributeError(f"node {node!r} ({op}): attribute {key!r} must be {want}, got "
                                 f"{value!r} ({type(value).__name__}); {spec.doc}", node=node)
    if spec.min is not None and value < spec.min:
        raise NodeAttributeError(f"node {node!r} ({op}): attribute {key!r} must be >= {spec.min}, "
                                 f"got {value}; {spec.doc}", node=node)
    return value


def resolve_attrs(node: Hashable, op: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The op's attributes with defaults filled in, type-checked against the op's schema."""
    cls = get_op(op)
    unknown = sorted(set(given) - set(cls.attrs) - META_NODE_ATTRS)
    if unknown:
        allowed = ", ".join(sorted(cls.attrs)) or "none"
        raise NodeAttributeError(f"node {node!r} ({op}): unknown attribute(s) {', '.join(unknown)}; "
                                 f"{op} takes: {allowed} (plus an optional 'label')", node=node)
    out = {}
    for key, spec in cls.attrs.items():
        if key not in given:
            if spec.default is REQUIRED:
                raise NodeAttributeError(f"node {node!r} ({op}): missing required attribute "
                                         f"{key!r} ({spec.doc}); add it to the node", node=node)
            out[key] = spec.default
        else:
            out[key] = _check_value(node, op, key, spec, given[key])
    return out


def node_attrs(graph: nx.DiGraph, node: Hashable) -> dict[str, Any]:
    """Resolved op attributes of ``node`` (defaults filled in, ``op``/``label`` left out)."""
    data = graph.nodes[node]
    return resolve_attrs(node, data["op"], data)


# ----- structure ------------------------------------------------------------------------------

def ordered_inputs(graph: nx.DiGraph, node: Hashable) -> list[Hashable]:
    """Predecessors of ``node`` in input order: by edge ``slot``, then by insertion order."""
    preds = list(graph.predecessors(node))

    def slot(p: Hashable) -> int:
        s = graph.edges[p, node].get("slot")
        return 0 if s is None else s

    return sorted(preds, key=lambda p: (slot(p), preds.index(p)))


def topological_order(graph: nx.DiGraph) -> list[Hashable]:
    """A deterministic topological order (ties broken by node name)."""
    return list(nx.lexicographical_topological_sort(graph, key=str))


def _single(graph: nx.DiGraph, op: str, error: type[GraphError]) -> Hashable:
    found = [n for n, d in graph.nodes(data=True) if d.get("op") == op]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(map(repr, found))})"
        raise error(f"the graph has {what} {op!r} nodes; it needs exactly one"
                    + (": merge them into one" if found else f": add a node with op={op!r}"))
    return found[0]


def input_node(graph: nx.DiGraph) -> Hashable:
    """The graph's single ``input`` node."""
    return _single(graph, "input", InputNodeError)


def output_node(graph: nx.DiGraph) -> Hashable:
    """The graph's single ``output`` node."""
    return _single(graph, "output", OutputNodeError)


def check_graph_attrs(graph: nx.DiGraph) -> None:
    shape = graph.graph.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and shape
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise GraphError(f"graph attribute 'input_shape' must be a non-empty list of positive "
                         f"ints without the batch dim (e.g. [1, 28, 28]), got {shape!r}")
    n = graph.graph.get("num_outputs")
    if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        raise GraphError(f"graph attribute 'num_outputs' must be a positive int (number of "
                         f"classes), got {n!r}")


def _check_nodes(graph: nx.DiGraph) -> None:
    seen: dict[str, Hashable] = {}
    for node, data in graph.nodes(data=True):
        if isinstance(node, bool) or not isinstance(node, (str, int)) \
                or not NODE_NAME.match(str(node)):
            raise GraphError(f"node name {node!r} is not allowed; use letters, digits and "
                             "underscores (or a non-negative int)", node=node)
        if str(node) in _RESERVED_NAMES:
            raise GraphError(f"node name {node!r} is reserved (an attribute of the nn.ModuleDict "
                             "that holds the network's layers); rename it, e.g. "
                             f"'{node}_1'", node=node)
        if str(node) in seen:
            raise GraphError(f"nodes {seen[str(node)]!r} and {node!r} have the same name once "
                             "written as text; rename one", node=node)
        seen[str(node)] = node
        if "op" not in data:
            raise NodeAttributeError(f"node {node!r} has no 'op' attribute; set op to one of: "
                                     f"{', '.join(list_ops())}", node=node)
        try:
            get_op(data["op"])
        except UnknownOpError:
            raise UnknownOpError(f"node {node!r} has op {data['op']!r}; known ops: "
                                 f"{', '.join(list_ops())}", node=node) from None
        resolve_attrs(node, data["op"], data)


def _check_wiring(graph: nx.DiGraph, inp: Hashable, out: Hashable) -> None:
    if graph.out_degree(out):
        raise OutputNodeError(f"output node {out!r} feeds {list(graph.successors(out))}; the "
                              "output must be the last node", node=out)
    for node, data in graph.nodes(data=True):
        lo, hi = get_op(data["op"]).arity
        k = graph.in_degree(node)
        if k < lo or (hi is not None and k > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"{lo} or more"
            raise ArityError(f"node {node!r} ({data['op']}) has {k} input(s) but takes {want}; "
                             "fix its incoming edges", node=node)
        slots = [graph.edges[p, node].get("slot") for p in graph.predecessors(node)]
        if any(s is not None and (not isinstance(s, int) or isinstance(s, bool)) for s in slots):
            raise GraphError(f"node {node!r}: edge 'slot' values must be ints, got {slots}", node)
        if get_op(data["op"]).ordered and k > 1 and (None in slots or len(set(slots)) != k):
            raise GraphError(f"node {node!r} ({data['op']}) depends on input order: give each "
                             f"incoming edge a distinct int 'slot' (got {slots})", node=node)
    live = nx.ancestors(graph, out) | {out}
    dead = [n for n in graph.nodes if n not in live]
    if dead:
        raise UnreachableNodeError(f"node {dead[0]!r} never reaches the output {out!r} (dead "
                                   f"nodes: {dead}); connect it or remove it", node=dead[0])


def _infer(graph: nx.DiGraph, inp: Hashable, out: Hashable) -> dict[Hashable, Shape]:
    shapes: dict[Hashable, Shape] = {}
    for node in topological_order(graph):
        op = graph.nodes[node]["op"]
        if node == inp:
            shapes[node] = tuple(graph.graph["input_shape"])
            continue
        ins = [shapes[p] for p in ordered_inputs(graph, node)]
        try:
            shapes[node] = tuple(get_op(op).infer_shape(node_attrs(graph, node), ins))
        except ShapeError as err:
            raise ShapeError(f"node {node!r} ({op}): {err}", node=node) from None
    want = (graph.graph["num_outputs"],)
    if shapes[out] != want:
        raise ShapeError(f"output node {out!r} receives shape {shapes[out]} but num_outputs="
                         f"{want[0]} needs {want}; end with global_avg_pool/flatten and a "
                         f"linear with out_features={want[0]}", node=out)
    return shapes


def fingerprint(graph: nx.DiGraph) -> int:
    """A hash of everything in ``graph`` (attributes, nodes with data, edges with data)."""
    def freeze(d: dict) -> tuple:
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))
    return hash((freeze(graph.graph), tuple((n, freeze(d)) for n, d in graph.nodes(data=True)),
                 tuple((u, v, freeze(d)) for u, v, d in graph.edges(data=True))))


_VALID: "weakref.WeakKeyDictionary[nx.DiGraph, tuple[int, dict]]" = weakref.WeakKeyDictionary()


def validate(graph: nx.DiGraph) -> dict[Hashable, Shape]:
    """Check that ``graph`` is a well-formed architecture; return every node's output shape.

    Raises a :class:`~hypernas.errors.GraphError` subclass naming the node and the fix for: a
    cycle, no input or several, no output or several, an unknown op, a missing or ill-typed
    attribute, a wrong number of inputs, a shape or channel mismatch, a dead node. A graph that
    passed and has not changed since is not checked again.
    """
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise GraphError(f"an architecture must be a networkx.DiGraph, got {type(graph).__name__}")
    try:
        key = fingerprint(graph)
    except TypeError:  # unhashable attribute values: the checks below will name them
        key = None
    cached = _VALID.get(graph)
    if key is not None and cached is not None and cached[0] == key:
        return dict(cached[1])
    shapes = _validate(graph)
    if key is not None:
        _VALID[graph] = (key, shapes)
    return dict(shapes)


def _validate(graph: nx.DiGraph) -> dict[Hashable, Shape]:
    check_graph_attrs(graph)
    _check_nodes(graph)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [u for u, _ in nx.find_cycle(graph)]
        raise CycleError(f"the graph has a cycle through nodes {cycle}; architectures must be "
                         "acyclic: remove one of these edges", node=cycle[0])
    inp, out = input_node(graph), output_node(graph)
    _check_wiring(graph, inp, out)
    return _infer(graph, inp, out)


def infer_shapes(graph: nx.DiGraph) -> dict[Hashable, Shape]:
    """Output shape of every node (no batch dim), validating the graph on the way."""
    return validate(graph)
