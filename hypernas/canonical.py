"""Canonical architecture ids: one id per function-by-construction.

Two graphs get the same id when they compute the same function with the same parameters up to
renaming nodes, whatever their wiring looks like on the page:

- node names, insertion order, labels and the order of commutative inputs (``add``) do not count;
- branches that never reach the output are dropped;
- ``identity`` nodes are contracted (a skip connection is a wire, not a layer);
- ``zero`` outputs vanish from sums (``x + 0 = x``); a ``zero`` ignores what feeds it.

The id is a Merkle hash over the simplified DAG: each node hashes its op, its resolved
attributes, its input hashes (sorted unless the op is ordered) and, for nodes with parameters,
how many consumers share them. Hashes can in principle collide; :func:`same_architecture`
decides exactly with a graph-isomorphism test.

Example:
    >>> from hypernas.graph import GraphBuilder
    >>> def net(skip):
    ...     b = GraphBuilder(input_shape=(3,), num_outputs=2)
    ...     x = b.add("identity", b.input) if skip else b.input
    ...     b.output(b.add("linear", x, out_features=2))
    ...     return b.build()
    >>> canonical_id(net(True)) == canonical_id(net(False))
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Hashable

import networkx as nx

from .graph import node_attrs, ordered_inputs, output_node, topological_order, validate
from .ops import get_op

__all__ = ["canonical_id", "canonical_graph", "same_architecture"]

ID_LENGTH = 16  # hex characters kept from the SHA-256 digest (64 bits)


def _live(graph: nx.DiGraph) -> nx.DiGraph:
    out = output_node(graph)
    return graph.subgraph(nx.ancestors(graph, out) | {out}).copy()


def canonical_graph(graph: nx.DiGraph) -> nx.MultiDiGraph:
    """The simplified DAG the id is computed on.

    Nodes keep only a ``label`` (op, resolved attributes, input shape where the op has no
    inputs, and parameter sharing); identity, dead and zero-summand nodes are gone. Parallel
    edges appear where a sum reads one tensor twice; ordered ops keep a ``slot`` per edge.
    """
    graph = _live(graph)
    shapes = validate(graph)
    rep: dict[Hashable, Hashable] = {}          # node -> node that computes the same tensor
    zero: set[Hashable] = set()
    keep: dict[Hashable, tuple[str, list[Hashable]]] = {}
    for node in topological_order(graph):
        op = graph.nodes[node]["op"]
        ins = [rep[p] for p in ordered_inputs(graph, node)]
        if op == "identity":
            rep[node] = ins[0]
            continue
        if op == "add":
            ins = [p for p in ins if p not in zero]
            if len(ins) == 1:
                rep[node] = ins[0]
                continue
            if not ins:
                op = "zero"
        if op == "zero":
            ins = []
            zero.add(node)
        rep[node] = node
        keep[node] = (op, ins)

    canon = nx.MultiDiGraph()
    has_params: set[Hashable] = set()
    for node, (op, ins) in keep.items():
        attrs = node_attrs(graph, node) if op == graph.nodes[node]["op"] else {}
        label: dict[str, Any] = {"op": op, "attrs": attrs}
        if op == "input":
            label["shape"] = list(graph.graph["input_shape"])
        if op == "zero":
            label["shape"] = list(shapes[node])
        if op == "output":
            # The input shape too: the input node is dropped when the output ignores it.
            label["num_outputs"] = graph.graph["num_outputs"]
            label["input_shape"] = list(graph.graph["input_shape"])
        if get_op(op).param_shapes(attrs, [shapes[p] for p in ins]):
            has_params.add(node)
        canon.add_node(node, label=label)
        for slot, p in enumerate(ins):
            canon.add_edge(p, node, slot=slot if get_op(op).ordered else 0)
    canon = _live_multi(canon, rep[output_node(graph)])
    for node in canon.nodes & has_params:
        # Shared weights differ from two copies of a layer: count the consumers.
        canon.nodes[node]["label"]["shared_by"] = canon.out_degree(node)
    return canon


def _live_multi(canon: nx.MultiDiGraph, out: Hashable) -> nx.MultiDiGraph:
    return canon.subgraph(nx.ancestors(canon, out) | {out}).copy()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def canonical_id(graph: nx.DiGraph) -> str:
    """A short hex id, equal for graphs that compute the same function by construction."""
    canon = canonical_graph(graph)
    hashes: dict[Hashable, str] = {}
    for node in nx.topological_sort(canon):
        label = canon.nodes[node]["label"]
        ins = [(d["slot"], hashes[u]) for u, _, d in canon.in_edges(node, data=True)]
        hashes[node] = _digest([label, sorted(ins)])
    sink = next(n for n in canon.nodes if canon.out_degree(n) == 0)
    return hashes[sink][:ID_LENGTH]


def same_architecture(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Exact test: do ``a`` and ``b`` compute the same function by construction?"""
    ca, cb = canonical_graph(a), canonical_graph(b)
    return nx.is_isomorphic(ca, cb, node_match=lambda x, y: x["label"] == y["label"],
                            edge_match=_edges_match)


def _edges_match(x: dict, y: dict) -> bool:
    # MultiDiGraph: x and y map edge keys to attribute dicts; compare the multisets of slots.
    return sorted(d["slot"] for d in x.values()) == sorted(d["slot"] for d in y.values())
