"""Canonical architecture ids: one id per function-by-construction.

Two graphs get the same id when they compute the same function with the same parameters up to
renaming nodes, whatever their wiring looks like on the page:

- node names, insertion order, labels and the order of commutative inputs (``add``) do not count;
- branches that never reach the output are dropped;
- ``identity`` nodes are contracted (a skip connection is a wire, not a layer);
- ``zero`` outputs vanish from sums (``x + 0 = x``); a ``zero`` ignores what feeds it;
- a parameter-free op applied twice to the same tensor is one tensor: ``relu(x)`` built twice and
  ``relu(x)`` read twice are the same (common-subexpression elimination). Nodes with parameters
  are never merged: two convs of ``x`` are two layers, and a shared conv is told from copies by
  how many consumers read it;
- sums are flattened: ``(a + b) + c = a + b + c``, since addition is associative and commutative
  (floating-point rounding may differ in the last bit). Only a sum read by nothing but one other
  sum is merged into it; a sum with several consumers stays a node.

The id is a Merkle hash over the simplified DAG: each node hashes its op, its resolved
attributes, its input hashes (sorted unless the op is ordered) and, for nodes with parameters,
how many consumers share them. Equal parameter-free nodes being merged, the hash tells every
node apart unless a layer has copies (equal layers applied to one tensor); in that case each
node's number of readers is hashed too, which separates the wirings met in practice but not
every one. :func:`same_architecture` decides exactly with a graph-isomorphism test.

Example:
    >>> from hypernas.graphs.builder import GraphBuilder
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
from collections import Counter
from typing import Any, Hashable

import networkx as nx

from .graph import node_attrs, ordered_inputs, output_node, topological_order, validate
from .ops import Shape, get_op

__all__ = ["canonical_id", "canonical_graph", "same_architecture"]

ID_LENGTH = 16  # hex characters kept from the SHA-256 digest (64 bits)

Wiring = dict[Hashable, list[Hashable]]  # node -> its inputs in slot order; keys topological
Labels = dict[Hashable, dict[str, Any]]  # node -> op, resolved attributes, shapes where needed


def _live(graph: nx.DiGraph) -> nx.DiGraph:
    out = output_node(graph)
    return graph.subgraph(nx.ancestors(graph, out) | {out}).copy()


def canonical_graph(graph: nx.DiGraph) -> nx.MultiDiGraph:
    """The simplified DAG the id is computed on.

    Nodes keep only a ``label`` (op, resolved attributes, input shape where the op has no
    inputs, and parameter sharing); identity, dead and zero-summand nodes are gone, equal
    parameter-free nodes are one node and a sum read only by another sum is part of it.
    Parallel edges appear where a sum reads one tensor twice; ordered ops keep a ``slot`` per edge.
    """
    graph = _live(graph)
    shapes = validate(graph)
    wiring, labels = _contract(graph, shapes)
    out = output_node(graph)
    wiring = _prune(wiring, out)
    weighted = {n for n in wiring if _has_params(labels[n], [shapes[p] for p in wiring[n]])}
    while True:  # merging can make sums flattenable and flattening can make nodes equal
        wiring = _merge_duplicates(wiring, labels, weighted)
        flat = _flatten_sums(wiring, labels)
        if flat == wiring:
            break
        wiring = flat
    return _to_multigraph(_prune(wiring, out), labels, weighted)


def _contract(graph: nx.DiGraph, shapes: dict[Hashable, Shape]) -> tuple[Wiring, Labels]:
    """Contract identities, drop zero summands and cut what feeds a zero."""
    rep: dict[Hashable, Hashable] = {}          # node -> node that computes the same tensor
    zero: set[Hashable] = set()
    wiring: Wiring = {}
    labels: Labels = {}
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
        wiring[node] = ins
        labels[node] = _label(graph, shapes, node, op)
    return wiring, labels


def _label(graph: nx.DiGraph, shapes: dict[Hashable, Shape], node: Hashable,
           op: str) -> dict[str, Any]:
    attrs = node_attrs(graph, node) if op == graph.nodes[node]["op"] else {}
    specs = get_op(op).attrs
    attrs = {k: v for k, v in attrs.items()
             if specs[k].in_id_at_default or v != specs[k].default}
    label: dict[str, Any] = {"op": op, "attrs": attrs}
    if op == "input":
        label["shape"] = list(graph.graph["input_shape"])
    if op == "zero":
        label["shape"] = list(shapes[node])
    if op == "output":
        # The input shape too: the input node is dropped when the output ignores it.
        label["num_outputs"] = graph.graph["num_outputs"]
        label["input_shape"] = list(graph.graph["input_shape"])
    return label


def _has_params(label: dict[str, Any], in_shapes: list[Shape]) -> bool:
    return bool(get_op(label["op"]).param_shapes(label["attrs"], in_shapes))


def _prune(wiring: Wiring, out: Hashable) -> Wiring:
    """Only the nodes the output reads, directly or not."""
    live = {out}
    for node in reversed(list(wiring)):  # consumers come before their inputs
        if node in live:
            live.update(wiring[node])
    return {n: ins for n, ins in wiring.items() if n in live}


def _merge_duplicates(wiring: Wiring, labels: Labels, weighted: set[Hashable]) -> Wiring:
    """Common-subexpression elimination: parameter-free nodes with the same label and the same
    inputs (in order for ordered ops, as a multiset otherwise) are one tensor."""
    rep: dict[Hashable, Hashable] = {}
    seen: dict[tuple, Hashable] = {}
    merged: Wiring = {}
    for node, ins in wiring.items():
        ins = [rep[p] for p in ins]
        rep[node] = node
        if node not in weighted:
            ordered = get_op(labels[node]["op"]).ordered
            key = (json.dumps(labels[node], sort_keys=True),
                   tuple(ins) if ordered else frozenset(Counter(ins).items()))
            rep[node] = seen.setdefault(key, node)
        if rep[node] == node:
            merged[node] = ins
    return merged


def _flatten_sums(wiring: Wiring, labels: Labels) -> Wiring:
    """Merge each sum whose only reader is another sum into that reader, to a fixed point:
    ``add(add(a, b), c)`` becomes ``add(a, b, c)``. Inlining can leave a tensor with fewer
    readers, so it repeats until no sum qualifies."""
    is_sum = {n: label["op"] == "add" for n, label in labels.items()}
    while True:
        readers = _readers(wiring)
        inner = {n for n, r in readers.items()
                 if is_sum[n] and len(r) == 1 and is_sum[next(iter(r))]}
        if not inner:
            return wiring
        wiring = _inline(wiring, inner)


def _readers(wiring: Wiring) -> dict[Hashable, set[Hashable]]:
    readers: dict[Hashable, set[Hashable]] = {n: set() for n in wiring}
    for node, ins in wiring.items():
        for p in ins:
            readers[p].add(node)
    return readers


def _inline(wiring: Wiring, inner: set[Hashable]) -> Wiring:
    """Replace each read of an ``inner`` sum by its inputs; a sum read twice gives them twice."""
    expanded: Wiring = {}
    flat: Wiring = {}
    for node, ins in wiring.items():  # topological: an inner sum's inputs are expanded already
        ins = [q for p in ins for q in expanded.get(p, [p])]
        (expanded if node in inner else flat)[node] = ins
    return flat


def _to_multigraph(wiring: Wiring, labels: Labels, weighted: set[Hashable]) -> nx.MultiDiGraph:
    canon = nx.MultiDiGraph()
    for node, ins in wiring.items():
        canon.add_node(node, label=dict(labels[node]))
        ordered = get_op(labels[node]["op"]).ordered
        for slot, p in enumerate(ins):
            canon.add_edge(p, node, slot=slot if ordered else 0)
    for node in canon.nodes & weighted:
        # Shared weights differ from two copies of a layer: count the consumers.
        canon.nodes[node]["label"]["shared_by"] = canon.out_degree(node)
    return canon


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def canonical_id(graph: nx.DiGraph) -> str:
    """A short hex id, equal for graphs that compute the same function by construction."""
    canon = canonical_graph(graph)
    hashes = _merkle(canon, count_reads=False)
    if len(set(hashes.values())) < len(canon):
        # Two nodes hash alike only below copies of a layer (equal layers on one tensor). Then
        # the hash cannot see which copy a node reads: f(conv(x)) read twice and
        # f(conv_a(x)) + f(conv_b(x)) unfold alike. Counting each node's reads tells them apart.
        hashes = _merkle(canon, count_reads=True)
    sink = next(n for n in canon.nodes if canon.out_degree(n) == 0)
    return hashes[sink][:ID_LENGTH]


def _merkle(canon: nx.MultiDiGraph, count_reads: bool) -> dict[Hashable, str]:
    """Per node, a hash of its label and its inputs' hashes (and, if asked, its out-degree)."""
    hashes: dict[Hashable, str] = {}
    for node in nx.topological_sort(canon):
        label = canon.nodes[node]["label"]
        ins = [(d["slot"], hashes[u]) for u, _, d in canon.in_edges(node, data=True)]
        extra = [canon.out_degree(node)] if count_reads else []
        hashes[node] = _digest([label, sorted(ins), *extra])
    return hashes


def same_architecture(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Exact test: do ``a`` and ``b`` compute the same function by construction?"""
    ca, cb = canonical_graph(a), canonical_graph(b)
    return nx.is_isomorphic(ca, cb, node_match=lambda x, y: x["label"] == y["label"],
                            edge_match=_edges_match)


def _edges_match(x: dict, y: dict) -> bool:
    # MultiDiGraph: x and y map edge keys to attribute dicts; compare the multisets of slots.
    return sorted(d["slot"] for d in x.values()) == sorted(d["slot"] for d in y.values())
