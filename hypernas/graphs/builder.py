"""Building an architecture graph node by node, with shapes inferred (and checked) as it goes.

Example:
    >>> b = GraphBuilder(input_shape=(1, 8, 8), num_outputs=10)
    >>> x = b.add("conv", b.input, out_channels=4, kernel_size=3)
    >>> x = b.add("global_avg_pool", b.add("relu", x))
    >>> b.output(b.add("linear", x, out_features=10))
    'output'
    >>> sorted(b.build().nodes)
    ['conv', 'global_avg_pool', 'input', 'linear', 'output', 'relu']
"""

from __future__ import annotations

from typing import Any, Iterable

import networkx as nx

from ..errors import ArityError, GraphError, ShapeError
from .graph import NODE_NAME, check_graph_attrs, output_node, resolve_attrs, validate
from .ops import Shape, get_op

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Builds a valid graph node by node, inferring shapes as it goes.

    Shape errors surface at the ``add`` call that causes them. ``build()`` drops nodes that
    never reach the output, so a search space may build branches it ends up not using.
    """

    def __init__(self, input_shape: Iterable[int], num_outputs: int, **graph_attrs: Any) -> None:
        self.graph = nx.DiGraph(input_shape=list(input_shape), num_outputs=num_outputs,
                                **graph_attrs)
        check_graph_attrs(self.graph)
        self._shapes: dict[str, Shape] = {}
        self._count: dict[str, int] = {}
        self.input = self._new_node("input", "input", [], {}, None)

    def shape(self, node: str) -> Shape:
        """Output shape of ``node`` (no batch dim)."""
        return self._shapes[node]

    def add(self, op: str, *inputs: str, name: str | None = None, label: str | None = None,
            **attrs: Any) -> str:
        """Add a node computing ``op`` on ``inputs``; return its name."""
        return self._new_node(op, name or op, list(inputs), attrs, label)

    def output(self, x: str) -> str:
        """Mark ``x`` as the network's result."""
        return self._new_node("output", "output", [x], {}, None)

    def build(self) -> nx.DiGraph:
        """The finished, validated graph, without nodes that do not reach the output."""
        out = output_node(self.graph)
        live = nx.ancestors(self.graph, out) | {out}
        graph = self.graph.subgraph([n for n in self.graph.nodes if n in live]).copy()
        validate(graph)
        return graph

    def _unique(self, base: str) -> str:
        if not NODE_NAME.match(base):
            raise GraphError(f"node name {base!r} is not allowed; use letters, digits, underscores")
        k = self._count.get(base, 0)
        self._count[base] = k + 1
        name = base if k == 0 and base not in self.graph else f"{base}_{k}"
        while name in self.graph:
            k += 1
            name = f"{base}_{k}"
        return name

    def _new_node(self, op: str, base: str, inputs: list[str], attrs: dict[str, Any],
                  label: str | None) -> str:
        resolved = resolve_attrs(base, op, attrs)
        for x in inputs:
            if x not in self._shapes:
                raise GraphError(f"input {x!r} of new node {base!r} is not in the graph", node=x)
        inputs = self._dedupe(inputs)
        lo, hi = get_op(op).arity
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            raise ArityError(f"{op} takes {lo}..{hi if hi is not None else 'n'} inputs, got "
                             f"{len(inputs)}", node=base)
        if op == "input":
            shape = tuple(self.graph.graph["input_shape"])
        else:
            try:
                shape = tuple(get_op(op).infer_shape(resolved, [self._shapes[x] for x in inputs]))
            except ShapeError as err:
                raise ShapeError(f"new node {base!r} ({op}): {err}", node=base) from None
        name = self._unique(base)
        self.graph.add_node(name, op=op, **attrs, **({"label": label} if label else {}))
        for slot, x in enumerate(inputs):
            self.graph.add_edge(x, name, slot=slot)
        self._shapes[name] = shape
        return name

    def _dedupe(self, inputs: list[str]) -> list[str]:
        # A DiGraph holds one edge per pair: feed a repeated input through an identity node.
        seen: set[str] = set()
        out = []
        for x in inputs:
            if x in seen:
                x = self._new_node("identity", f"{x}_again", [x], {}, None)
            seen.add(x)
            out.append(x)
        return out
