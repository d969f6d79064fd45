"""How many different NAS-Bench-201 architectures are there? Canonical ids over all 15,625 cells.

Computes the hypernas canonical id of every NB201 cell (in the ``nb201`` skeleton), verifies the
ids exactly with graph isomorphism, and compares the count with the published 6,466 "unique
structures" by re-deriving several cell-level notions of sameness from scratch:

- ``structural``: the cell as an op-labelled DAG over nodes 0..3 (skip_connect is an edge label,
  ``none`` edges and nodes off every 0->3 path are dropped), up to isomorphism fixing 0 and 3;
- ``recursive``: each node described by the sorted multiset of (op, description of its source),
  zero-valued nodes removed, skip_connect an op like any other;
- ``nb201_string``: NAS-Bench-201's own unique string (``Structure.to_unique_str`` with
  ``consider_zero=True`` in the NB201 API), re-implemented from its definition: a skip_connect
  term is its source's string, a ``none`` term or a term read from a node whose string is ``#``
  is ``#``, any other term is ``(source)@op``, and a node is its sorted terms joined by ``+``;
- ``copies_contracted``, ``skips_contracted``, ``with_cse``, ``hypernas_semantics``,
  ``with_flat_sums``, ``unfolded``: progressively coarser cell graphs, used to give each
  difference between counts one reason; ``hypernas_semantics`` applies hypernas's rules to the
  cell (skips are wires, equal parameter-free nodes merge, a sum read only by a sum is flattened
  into it) and must split the cells exactly as the ids do;
- ``nb201_string_zero_fixed``, ``nb201_string_sorted``: the NB201 string with one fix each
  (zeros dropped; then each flattened sum sorted as a whole), to explain the rest.

Run: ``python benchmarks/nb201_unique_ids.py``; writes ``benchmarks/results/nb201_unique_ids.json``.
It costs about 300 CPU-seconds, most of it hypernas building and canonicalising 15,625 networks;
measured: 5.3 minutes on 2 cores shared with other jobs (``timing`` in the output says more).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing as mp
import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx

import hypernas
from hypernas.graphs.canonical import canonical_graph

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), the order of the code digits
PUBLISHED = 6466  # Dong & Yang, NAS-Bench-201 (ICLR 2020)
Cell = dict[tuple[int, int], str]
Edge = tuple[int, int, str]  # (from, to, label)
Form = Hashable


# ----- hypernas ids (in worker processes) -----------------------------------------------------

_SPACE: Any = None


def _init_worker(C: int, N: int) -> None:
    global _SPACE
    _SPACE = hypernas.load_space("nb201", input_shape=(1, 28, 28), C=C, N=N)


def _hypernas_row(code: str) -> tuple[str, str, nx.MultiDiGraph]:
    cand = _SPACE.replay(code)
    assert _SPACE.code(cand.params) == code
    return code, cand.id, canonical_graph(cand.graph)


def hypernas_ids(codes: list[str], C: int, N: int, workers: int) -> tuple[dict, dict]:
    """``{code: id}`` and ``{code: canonical graph}`` for every code, over ``workers`` processes."""
    with mp.Pool(workers, initializer=_init_worker, initargs=(C, N)) as pool:
        rows = pool.map(_hypernas_row, codes, chunksize=64)
        pool.close()
        pool.join()
    return {c: i for c, i, _ in rows}, {c: g for c, _, g in rows}


# ----- exact verification of the ids ----------------------------------------------------------

def _same(a: nx.MultiDiGraph, b: nx.MultiDiGraph) -> bool:
    # The test of hypernas.same_architecture, on canonical graphs computed once.
    return nx.is_isomorphic(a, b, node_match=lambda x, y: x["label"] == y["label"],
                            edge_match=lambda x, y: sorted(d["slot"] for d in x.values())
                            == sorted(d["slot"] for d in y.values()))


def _invariant(g: nx.MultiDiGraph) -> tuple:
    # Kept by every isomorphism: edge count and, per node, its label, out-degree and the
    # multiset of its inputs' labels. Graphs with different invariants need no test.
    lab = {n: json.dumps(d["label"], sort_keys=True) for n, d in g.nodes(data=True)}
    nodes = sorted(json.dumps([lab[n], g.out_degree(n), sorted(lab[u] for u, _ in g.in_edges(n))])
                   for n in g)
    return g.number_of_edges(), tuple(nodes)


_CANON: Mapping[str, nx.MultiDiGraph] = {}  # read by forked verification workers


def _pair_same(pair: tuple[str, str]) -> bool:
    return _same(_CANON[pair[0]], _CANON[pair[1]])


def verify(groups: Mapping[str, list[str]], canon: Mapping[str, nx.MultiDiGraph],
           workers: int) -> dict:
    """Members of a group isomorphic to its first member; first members of groups pairwise not."""
    global _CANON
    within = [(codes[0], c) for codes in groups.values() for c in codes[1:]]
    buckets: dict[tuple, list[str]] = defaultdict(list)
    for codes in groups.values():
        buckets[_invariant(canon[codes[0]])].append(codes[0])
    across = [p for b in buckets.values() for p in itertools.combinations(b, 2)]
    _CANON = canon
    with mp.get_context("fork").Pool(workers) as pool:  # fork: workers share ``canon``
        same = pool.map(_pair_same, within + across, chunksize=256)
        pool.close()
        pool.join()
    return {"within_group_tests": len(within),
            "within_group_violations": len(within) - sum(same[:len(within)]),
            "invariant_buckets": len(buckets), "across_group_tests": len(across),
            "across_group_violations": sum(same[len(within):])}


# ----- cells and their live part --------------------------------------------------------------

def cell_of(code: str) -> Cell:
    return {e: OPS[int(d)] for e, d in zip(EDGES, code)}


def live_edges(cell: Cell) -> list[Edge] | None:
    """Non-``none`` edges between nodes on some 0->3 path; None when node 3 is identically zero."""
    nonzero = {0}
    for j in (1, 2, 3):
        if any(cell[j, i] != "none" and i in nonzero for i in range(j)):
            nonzero.add(j)
    if 3 not in nonzero:
        return None
    useful = {3}
    for i in (2, 1, 0):
        if any(cell[j, i] != "none" and j in useful for j in range(i + 1, 4)):
            useful.add(i)
    keep = nonzero & useful
    return [(i, j, op) for (j, i), op in cell.items() if i in keep and j in keep and op != "none"]


def canonical_form(labels: Mapping[Hashable, str], edges: Iterable[Edge]) -> Form:
    """Exact canonical form of a small labelled DAG (parallel edges allowed) up to isomorphism.

    Nodes are first told apart by their unfolded in-trees (an isomorphism invariant); only nodes
    with equal unfoldings are permuted, and the smallest edge list over those orders is the form.
    """
    edges = list(edges)
    preds: dict[Hashable, list[tuple[str, Hashable]]] = defaultdict(list)
    for u, v, lab in edges:
        preds[v].append((lab, u))
    memo: dict[Hashable, str] = {}

    def unfold(n: Hashable) -> str:
        if n not in memo:
            ins = sorted(f"{lab}:{unfold(u)}" for lab, u in preds[n])
            memo[n] = f"{labels[n]}({','.join(ins)})"
        return memo[n]

    classes: dict[str, list[Hashable]] = defaultdict(list)
    for n in labels:
        classes[unfold(n)].append(n)
    keys = sorted(classes)
    best = None
    for perm in itertools.product(*(itertools.permutations(classes[k]) for k in keys)):
        index = {n: i for i, n in enumerate(itertools.chain(*perm))}
        form = tuple(sorted((index[u], index[v], lab) for u, v, lab in edges))
        best = form if best is None or form < best else best
    return tuple(keys), best


# ----- notions of "the same cell" -------------------------------------------------------------

def structural(cell: Cell) -> Form:
    """Op-labelled DAG on the live nodes, up to isomorphism fixing nodes 0 and 3."""
    edges = live_edges(cell)
    if edges is None:
        return "zero"
    nodes = {n for u, v, _ in edges for n in (u, v)}
    return canonical_form({n: {0: "in", 3: "out"}.get(n, "mid") for n in nodes}, edges)


def recursive(cell: Cell) -> Form:
    """Sorted multisets of (op, source description), zero nodes removed, skip an op."""
    desc: dict[int, str | None] = {0: "x"}
    for j in (1, 2, 3):
        terms = sorted(f"{cell[j, i]}[{desc[i]}]" for i in range(j)
                       if cell[j, i] != "none" and desc[i] is not None)
        desc[j] = "{" + ",".join(terms) + "}" if terms else None
    return desc[3] or "zero"


def nb201_string(cell: Cell) -> Form:
    """NAS-Bench-201's ``to_unique_str(consider_zero=True)``, re-implemented from its definition."""
    desc = {0: "0"}
    for j in (1, 2, 3):
        terms = []
        for i in range(j):
            op = cell[j, i]
            if op == "none" or desc[i] == "#":
                terms.append("#")
            else:
                terms.append(desc[i] if op == "skip_connect" else f"({desc[i]})@{op}")
        desc[j] = "+".join(sorted(terms))
    return desc[3]


def nb201_string_zero_fixed(cell: Cell) -> Form:
    """``nb201_string`` with zeros handled like hypernas: zero terms dropped, zero nodes found."""
    desc: dict[int, str | None] = {0: "0"}
    for j in (1, 2, 3):
        terms = sorted(desc[i] if cell[j, i] == "skip_connect" else f"({desc[i]})@{cell[j, i]}"
                       for i in range(j) if cell[j, i] != "none" and desc[i] is not None)
        desc[j] = "+".join(terms) or None
    return desc[3] or "zero"


def nb201_string_sorted(cell: Cell) -> Form:
    """``nb201_string_zero_fixed`` with each flattened sum sorted as a whole: the string inserts
    a summed node's terms in place (``a+c`` read by skip next to ``b`` gives ``a+c+b``), so the
    same multiset of terms can be written in more than one order."""
    terms: dict[int, list[str] | None] = {0: ["0"]}
    for j in (1, 2, 3):
        found = [t for i in range(j) if cell[j, i] != "none" and terms[i] is not None
                 for t in (terms[i] if cell[j, i] == "skip_connect"
                           else [f"({'+'.join(terms[i])})@{cell[j, i]}"])]
        terms[j] = sorted(found) or None
    return "+".join(terms[3] or ["zero"])


def _contract_copies(edges: list[Edge]) -> tuple[list[Edge], int]:
    """Remove every node whose only input is a skip_connect; its readers read its source."""
    out = 3
    while True:
        ins = defaultdict(list)
        for e in edges:
            ins[e[1]].append(e)
        copy = next((n for n, es in ins.items() if len(es) == 1 and es[0][2] == "skip_connect"),
                    None)
        if copy is None:
            return edges, out
        src = ins[copy][0][0]
        edges = [(src if u == copy else u, v, lab) for u, v, lab in edges if v != copy]
        out = src if out == copy else out


def copies_contracted(cell: Cell) -> Form:
    """``structural`` after removing copy nodes (a node fed by one skip_connect only)."""
    edges = live_edges(cell)
    if edges is None:
        return "zero"
    edges, out = _contract_copies(edges)
    nodes = {0, out} | {n for u, v, _ in edges for n in (u, v)}
    return canonical_form({n: ("in" if n == 0 else "") + ("*" if n == out else "") for n in nodes},
                          edges)


Wire = tuple[Hashable, Hashable]


def op_graph(cell: Cell) -> tuple[dict[Hashable, str], list[Wire], Hashable] | None:
    """The cell as hypernas computes it: one node per op instance, ``add`` nodes for sums,
    skip_connect as a plain wire. Returns (labels, edges, output node); None for a zero cell."""
    edges = live_edges(cell)
    if edges is None:
        return None
    edges, out = _contract_copies(edges)
    labels: dict[Hashable, str] = {0: "in"}
    wires: list[tuple[Hashable, Hashable]] = []
    value: dict[int, Hashable] = {0: 0}  # cell node -> graph node holding its tensor
    for j in (1, 2, 3):
        terms = []
        for k, (u, v, op) in enumerate(edges):
            if v != j:
                continue
            if op == "skip_connect":
                terms.append(value[u])
            else:  # one op instance per edge, even where two edges now join the same nodes
                labels["op", k] = op
                wires.append((value[u], ("op", k)))
                terms.append(("op", k))
        if len(terms) == 1:
            value[j] = terms[0]
        elif terms:
            labels[j] = "add"
            wires += [(t, j) for t in terms]
            value[j] = j
    return labels, wires, value[out]


def _form(labels: Mapping[Hashable, str], wires: Iterable[tuple[Hashable, Hashable]],
          out: Hashable) -> Form:
    marked = {n: lab + ("*" if n == out else "") for n, lab in labels.items()}
    return canonical_form(marked, [(u, v, "") for u, v in wires])


def skips_contracted(cell: Cell) -> Form:
    """The op graph up to isomorphism: skip connections are wires, nothing else is merged."""
    g = op_graph(cell)
    return "zero" if g is None else _form(*g)


Inputs = dict[Hashable, list[Hashable]]  # node -> the nodes it reads; keys in topological order
PARAMETER_FREE = ("avg_pool_3x3", "add")  # a nor_conv holds weights: two are two layers


def _inputs(wires: list[Wire], out: Hashable) -> Inputs:
    inputs: Inputs = defaultdict(list)
    for u, v in wires:
        inputs[v].append(u)
    order = nx.DiGraph(wires)
    order.add_node(out)
    return {n: inputs[n] for n in nx.topological_sort(order)}


def _merge_equal(labels: Mapping[Hashable, str], inputs: Inputs,
                 out: Hashable) -> tuple[Inputs, Hashable]:
    """One node per parameter-free op and multiset of inputs, bottom-up (bit-identical tensors)."""
    rep: dict[Hashable, Hashable] = {}
    seen: dict[tuple, Hashable] = {}
    kept: Inputs = {}
    for n, ins in inputs.items():
        ins = [rep[u] for u in ins]
        key = (labels[n], tuple(sorted(map(repr, ins))))
        rep[n] = seen.setdefault(key, n) if labels[n] in PARAMETER_FREE else n
        if rep[n] == n:
            kept[n] = ins
    return kept, rep[out]


def _inline_sums(labels: Mapping[Hashable, str], inputs: Inputs, out: Hashable,
                 every_sum: bool) -> Inputs:
    """A sum's terms replace its reads by other sums: for ``every_sum``, always (the sum stays for
    its other readers); otherwise only for a sum whose sole reader is another sum."""
    readers = _readers(inputs, out)

    def inlined(u: Hashable) -> bool:
        sole = len(readers[u]) == 1 and labels.get(next(iter(readers[u]))) == "add"
        return labels[u] == "add" and (every_sum or sole)

    terms: Inputs = {}
    for n, ins in inputs.items():
        if labels[n] == "add":
            ins = [t for u in ins for t in (terms[u] if inlined(u) else [u])]
        terms[n] = ins
    return _prune(terms, out)


def _readers(inputs: Inputs, out: Hashable) -> dict[Hashable, set[Hashable]]:
    readers: dict[Hashable, set[Hashable]] = defaultdict(set)
    readers[out].add("next block")  # the cell output is read outside the cell
    for v, ins in inputs.items():
        for u in ins:
            readers[u].add(v)
    return readers


def _prune(inputs: Inputs, out: Hashable) -> Inputs:
    live = {out}
    for n in reversed(list(inputs)):  # readers come after what they read
        if n in live:
            live.update(inputs[n])
    return {n: ins for n, ins in inputs.items() if n in live}


def _rewrite(cell: Cell, flatten: str | None) -> Form:
    """The op graph with equal parameter-free nodes merged and sums flattened (``flatten``:
    None, ``"single_reader"`` or ``"every_sum"``), repeated until nothing changes."""
    g = op_graph(cell)
    if g is None:
        return "zero"
    labels, wires, out = g
    inputs = _inputs(wires, out)
    while True:
        inputs, out = _merge_equal(labels, inputs, out)
        flat = inputs if flatten is None else \
            _inline_sums(labels, inputs, out, every_sum=flatten == "every_sum")
        if flat == inputs:
            break
        inputs = flat
    return _form({n: labels[n] for n in inputs}, [(u, v) for v, us in inputs.items() for u in us],
                 out)


def with_cse(cell: Cell) -> Form:
    """``skips_contracted`` with equal avg_pool / add nodes merged (bit-identical tensors)."""
    return _rewrite(cell, flatten=None)


def hypernas_semantics(cell: Cell) -> Form:
    """hypernas's rules on the cell: ``with_cse``, and a sum whose sole reader is a sum inlined
    into it, both until nothing changes. Should partition the cells exactly as the ids do."""
    return _rewrite(cell, flatten="single_reader")


def with_flat_sums(cell: Cell) -> Form:
    """Every sum flattened into the sums that read it, even one with other readers
    ((a+b)+c = a+b+c in exact arithmetic)."""
    return _rewrite(cell, flatten="every_sum")


def unfolded(cell: Cell) -> Form:
    """``with_flat_sums`` without sharing: the output as a flat sum of op-application trees
    (an op applied once and read twice looks like two applications)."""
    terms: dict[int, list[str] | None] = {0: ["x"]}
    for j in (1, 2, 3):
        found: list[str] = []
        for i in range(j):
            if cell[j, i] != "none" and terms[i] is not None:
                inner = terms[i]
                skip = cell[j, i] == "skip_connect"
                found += inner if skip else [f"{cell[j, i]}({'+'.join(inner)})"]
        terms[j] = sorted(found) or None
    return "+".join(terms[3] or ["0"])


def formula(cell: Cell) -> str:
    """Readable value of the cell output: skip is a wire, zero terms dropped."""
    desc: dict[int, str | None] = {0: "x"}
    for j in (1, 2, 3):
        terms = sorted(desc[i] if cell[j, i] == "skip_connect" else f"{cell[j, i]}({desc[i]})"
                       for i in range(j) if cell[j, i] != "none" and desc[i] is not None)
        desc[j] = (None if not terms else terms[0] if len(terms) == 1
                   else "(" + " + ".join(terms) + ")")
    return desc[3] or "0"


NOTIONS: dict[str, Callable[[Cell], Form]] = {
    "structural": structural, "recursive": recursive, "nb201_string": nb201_string,
    "nb201_string_zero_fixed": nb201_string_zero_fixed,
    "nb201_string_sorted": nb201_string_sorted, "copies_contracted": copies_contracted,
    "skips_contracted": skips_contracted, "with_cse": with_cse,
    "hypernas_semantics": hypernas_semantics, "with_flat_sums": with_flat_sums,
    "unfolded": unfolded,
}


# ----- comparing partitions -------------------------------------------------------------------

Partition = Mapping[str, Hashable]  # code -> class key


def n_classes(*parts: Partition) -> int:
    """Number of classes of the common refinement of ``parts``."""
    codes = next(iter(parts))
    return len({tuple(p[c] for p in parts) for c in codes})


def refines(fine: Partition, coarse: Partition) -> bool:
    return n_classes(fine, coarse) == n_classes(fine)


def example_pairs(same: list[Partition], differ: Partition,
                  limit: int = 3) -> list[tuple[str, str]]:
    """Up to ``limit`` code pairs equal under every ``same`` partition but not under ``differ``;
    the simplest first (fewest non-``none`` edges), one pair per ``same`` class."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for code in same[0]:
        groups[tuple(p[code] for p in same)].append(code)
    pairs = []
    for codes in groups.values():
        a = min(codes, key=_size)
        others = [c for c in codes if differ[c] != differ[a]]
        if others:
            pairs.append((a, min(others, key=_size)))
    return sorted(pairs, key=lambda p: (_size(p[0]) + _size(p[1]), p))[:limit]


def _size(code: str) -> tuple[int, str]:
    return sum(d != "0" for d in code), code


def op_instances(code: str) -> int:
    """Op nodes (conv / pool instances) in the cell as hypernas computes it."""
    g = op_graph(cell_of(code))
    return 0 if g is None else sum(lab not in ("in", "add") for lab in g[0].values())


def describe(codes: Iterable[str], space: Any) -> list[dict]:
    return [{"code": c, "arch": space.encode(space.decode(c)), "computes": formula(cell_of(c)),
             "op_instances": op_instances(c),
             "network_params": hypernas.count_params(space.replay(c).graph)} for c in codes]


NAMED_PAIRS = (  # (what the pair shows, code, code)
    ("skip chain vs direct conv: both conv3x3(x)", "103001", "030001"),
    ("x + x drawn two ways", "010101", "101011"),
    ("conv3x3(x) vs conv3x3(x) + skip(zero node)", "000300", "000301"),
    ("one avg_pool read twice vs two avg_pools of x", "401011", "040401"),
    ("(x + x) + x vs x + x + x", "111011", "101111"),
    ("one conv1x1 read twice vs two conv1x1 of x", "201011", "020201"),
    ("one conv3x3 pooled twice vs two conv3x3 pooled once each", "304041", "330044"),
    ("(conv1x1(x) + x) + conv3x3(x) vs conv1x1(x) + conv3x3(x) + x", "112031", "101123"),
)


def named_pairs(h: Partition, f: Mapping[str, Partition], space: Any) -> list[dict]:
    """Hand-picked pairs: equal or not under hypernas, the DAG count and the NB201 string."""
    return [{"shows": what, "cells": describe((a, b), space), "same_hypernas_id": h[a] == h[b],
             "same_structural": f["structural"][a] == f["structural"][b],
             "same_nb201_string": f["nb201_string"][a] == f["nb201_string"][b]}
            for what, a, b in NAMED_PAIRS]


def reason(name: str, merges: int, pairs: list[tuple[str, str]], space: Any, why: str) -> dict:
    return {"reason": name, "merges": merges, "why": why,
            "examples": [describe(p, space) for p in pairs]}


def gap_vs_structural(h: Partition, f: Mapping[str, Partition], space: Any) -> dict:
    """hypernas vs the op-labelled-DAG count: identity contraction in two steps, then equal
    parameter-free nodes merged, then nested sums flattened."""
    a, c1, sc, cse = (f[k] for k in ("structural", "copies_contracted", "skips_contracted",
                                     "with_cse"))
    repeated = {code for code in h if _reads_twice(cell_of(code))}
    in_repeated = _merges_where(a, h, repeated)
    return {
        "structural_refines_hypernas": refines(a, h), "structural": n_classes(a),
        "hypernas": n_classes(h), "merges": n_classes(a) - n_classes(h),
        "by_reason": [
            reason("copy nodes", n_classes(a) - n_classes(c1), example_pairs([c1], a), space,
                   "a node fed by a single skip_connect is a copy of its source; hypernas reads "
                   "the source directly, the DAG count keeps the copy node (skip chains)"),
            reason("skip edges into sums", n_classes(c1) - n_classes(sc),
                   example_pairs([sc], c1), space,
                   "a skip_connect into a sum adds the source tensor itself; which cell node "
                   "carries that wire does not change the function"),
            reason("duplicate parameter-free nodes", n_classes(sc) - n_classes(cse),
                   example_pairs([cse], sc), space,
                   "the same avg_pool (or sum) of the same tensor built twice vs built once and "
                   "read twice: one tensor, bit for bit"),
            reason("nested sums", n_classes(cse) - n_classes(h), example_pairs([h], cse), space,
                   "(a + b) + c vs a + b + c where a + b has no other reader: equal in exact "
                   "arithmetic (floating-point rounding may differ in the last bit)"),
        ],
        "merges_in_groups_with_a_repeated_summand": in_repeated,
        "repeated_summand_examples": [describe(p, space) for p in
                                      example_pairs([{c: h[c] for c in repeated}], a)],
    }


def _reads_twice(cell: Cell) -> bool:
    g = op_graph(cell)
    return g is not None and len(g[1]) != len(set(g[1]))


def _merges_where(fine: Partition, coarse: Partition, codes: set[str]) -> int:
    sub_f = {c: fine[c] for c in codes}
    sub_c = {c: coarse[c] for c in codes}
    return n_classes(sub_f) - n_classes(sub_c) if codes else 0


def gap_vs_nb201(h: Partition, f: Mapping[str, Partition], space: Any) -> dict:
    """hypernas vs NB201's unique string: each side merges some pairs the other keeps apart."""
    s, s0, s1 = f["nb201_string"], f["nb201_string_zero_fixed"], f["nb201_string_sorted"]
    flat, tree = f["with_flat_sums"], f["unfolded"]
    both = n_classes(h, s)
    return {
        "nb201_string": n_classes(s), "hypernas": n_classes(h), "common_refinement": both,
        "hypernas_merges_nb201_keeps_apart": {
            "merges": both - n_classes(h),
            "by_reason": [
                reason("zero placeholders", both - n_classes(h, s0), example_pairs([h, s0], s),
                       space, "the NB201 string keeps a '#' for every zero term and does not see "
                       "that a node whose inputs are all zero ('#+#') is zero, so x and x + 0, "
                       "or conv(x) and conv(x) + conv(0), get different strings"),
                reason("term order in flattened sums", n_classes(h, s0) - n_classes(h, s1),
                       example_pairs([h, s1], s0), space,
                       "the string inserts a summed node's terms where the node is read and sorts "
                       "only the outer terms, so a + b + c can be written 'a+c+b'; hypernas sees "
                       "one flat sum"),
                reason("other", n_classes(h, s1) - n_classes(h), example_pairs([h], s1), space,
                       "anything the two fixes do not explain"),
            ]},
        "nb201_merges_hypernas_keeps_apart": {
            "merges": both - n_classes(s),
            "by_reason": [
                reason("sums with several readers", both - n_classes(s, flat),
                       example_pairs([s, flat], h), space,
                       "(a + b) + c vs a + b + c where a + b is also read elsewhere: hypernas "
                       "keeps a sum that has several readers as one node"),
                reason("weight sharing dropped", n_classes(s, flat) - n_classes(s, tree),
                       example_pairs([s, tree], flat), space,
                       "one conv whose output is summed twice (2*conv(x)) vs two convs "
                       "(conv_a(x) + conv_b(x)): different functions and parameter counts; the "
                       "NB201 string writes both as (0)@conv+(0)@conv"),
                reason("other", n_classes(s, tree) - n_classes(s), example_pairs([s], tree),
                       space, "anything the two reasons above do not explain"),
            ]},
    }


def refinement_checks(h: Partition, f: Mapping[str, Partition]) -> dict[str, bool]:
    """The steps the gap analyses subtract along: each refines the next (expected True)."""
    parts = {"hypernas_ids": h, **f}
    chain = [("structural", "copies_contracted"), ("copies_contracted", "skips_contracted"),
             ("skips_contracted", "with_cse"), ("with_cse", "hypernas_ids"),
             ("hypernas_ids", "with_flat_sums"), ("with_flat_sums", "unfolded"),
             ("nb201_string", "nb201_string_zero_fixed"),
             ("nb201_string_zero_fixed", "nb201_string_sorted"),
             ("hypernas_ids", "nb201_string_sorted")]
    return {f"{a} refines {b}": refines(parts[a], parts[b]) for a, b in chain}


# ----- the run --------------------------------------------------------------------------------

def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished workers."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _timing(clock: list[tuple[float, float]]) -> dict:
    """Wall and CPU seconds (this process and its workers) per phase, and the machine's load."""
    phases = ("ids", "verification", "cell_notions", "analysis")
    wall = {p: round(b[0] - a[0], 1) for p, a, b in zip(phases, clock, clock[1:])}
    cpu = {p: round(b[1] - a[1], 1) for p, a, b in zip(phases, clock, clock[1:])}
    return {"wall_s": {**wall, "total": round(clock[-1][0] - clock[0][0], 1)},
            "cpu_s": {**cpu, "total": round(clock[-1][1] - clock[0][1], 1)},
            "load_average_1min_at_end": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}


def all_codes() -> list[str]:
    return ["".join(map(str, d)) for d in itertools.product(range(len(OPS)), repeat=len(EDGES))]


def run(C: int, N: int, workers: int) -> dict:
    space = hypernas.load_space("nb201", input_shape=(1, 28, 28), C=C, N=N)
    codes, clock = all_codes(), [(time.perf_counter(), _cpu_seconds())]
    ids, canon = hypernas_ids(codes, C, N, workers)
    gc.freeze()  # 15k graphs stay alive: keep them out of GC passes and forked workers' pages
    groups: dict[str, list[str]] = defaultdict(list)
    for code in codes:
        groups[ids[code]].append(code)
    clock.append((time.perf_counter(), _cpu_seconds()))
    check = verify(groups, canon, workers)
    clock.append((time.perf_counter(), _cpu_seconds()))
    forms = {name: {c: fn(cell_of(c)) for c in codes} for name, fn in NOTIONS.items()}
    clock.append((time.perf_counter(), _cpu_seconds()))
    zero = [c for c in codes if live_edges(cell_of(c)) is None]
    counts = {k: len(set(v.values())) for k, v in forms.items()}
    published = {k: counts[k] for k in ("structural", "recursive", "nb201_string")}
    closest = min(published, key=lambda k: (abs(published[k] - PUBLISHED), k))
    return {
        "config": {"space": "nb201", "input_shape": [1, 28, 28], "C": C, "N": N,
                   "workers": workers, "cells": len(codes)},
        "unique_ids": len(groups),
        "all_zero_cells": len(zero),
        "all_zero_cells_share_one_id": len({ids[c] for c in zero}) == 1
        and len(groups[ids[zero[0]]]) == len(zero),
        "connected_cells": len(codes) - len(zero),
        "largest_groups": sorted(([len(v), v[0]] for v in groups.values()), reverse=True)[:5],
        "verification": check,
        "cross_check": {
            "published": PUBLISHED, "counts": published, "closest": closest,
            "difference": published[closest] - PUBLISHED,
            "other_counts": {k: n for k, n in counts.items() if k not in published},
            "hypernas_semantics_matches_ids": n_classes(ids, forms["hypernas_semantics"])
            == len(groups) == n_classes(forms["hypernas_semantics"]),
        },
        "refinements": refinement_checks(ids, forms),
        "gap_vs_structural": gap_vs_structural(ids, forms, space),
        "gap_vs_nb201_string": gap_vs_nb201(ids, forms, space),
        "named_pairs": named_pairs(ids, forms, space),
        "timing": _timing(clock + [(time.perf_counter(), _cpu_seconds())]),
    }


def summary(r: dict) -> str:
    x, v, t = r["cross_check"], r["verification"], r["timing"]
    ns, st = r["gap_vs_nb201_string"], r["gap_vs_structural"]
    ours, theirs = (ns[k] for k in ("hypernas_merges_nb201_keeps_apart",
                                    "nb201_merges_hypernas_keeps_apart"))
    counts = ", ".join(f"{k} {n}" for k, n in x["counts"].items())

    def reasons(gap: dict) -> str:
        return " + ".join(f"{b['merges']} {b['reason']}" for b in gap["by_reason"])
    return "\n".join([
        f"NB201 cells: {r['config']['cells']}  unique hypernas ids: {r['unique_ids']}",
        f"all-zero cells: {r['all_zero_cells']} (one id: {r['all_zero_cells_share_one_id']})  "
        + f"connected cells: {r['connected_cells']}",
        f"exact check: {v['within_group_violations']}/{v['within_group_tests']} within-group, "
        + f"{v['across_group_violations']}/{v['across_group_tests']} across-group violations",
        f"published-style counts: {counts}",
        f"closest to {x['published']}: {x['closest']} = {x['counts'][x['closest']]} "
        + f"(difference {x['difference']:+d})",
        f"vs structural DAGs: {st['merges']} merges = {reasons(st)}",
        f"vs the NB201 string: hypernas merges {ours['merges']} pairs it keeps apart "
        + f"({reasons(ours)}); it merges {theirs['merges']} that hypernas keeps apart "
        + f"({reasons(theirs)})",
        f"wall time: {t['wall_s']['total']} s, {t['cpu_s']['total']} CPU-seconds, "
        + f"{r['config']['workers']} workers, load average {t['load_average_1min_at_end']} "
        + f"on {t['cores']} cores",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--C", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--N", type=int, default=1, help="cells per stage")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes computing ids (default: all cores)")
    parser.add_argument("--out", type=Path, help="where the JSON report goes",
                        default=Path("benchmarks/results/nb201_unique_ids.json"))
    args = parser.parse_args(argv)
    result = run(args.C, args.N, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(summary(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
