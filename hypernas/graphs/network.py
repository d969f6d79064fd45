"""Target networks: an ``nn.Module`` built from an architecture graph.

Parameter names and shapes follow from the graph alone (:func:`param_shapes`), so weights can be
made elsewhere (by a hypernetwork) and supplied with ``torch.func.functional_call``; the module is
never mutated to receive them.

Example:
    >>> import torch
    >>> from hypernas.graphs.builder import GraphBuilder
    >>> b = GraphBuilder(input_shape=(4,), num_outputs=3)
    >>> b.output(b.add("linear", b.input, out_features=3))
    'output'
    >>> net = Network(b.build())
    >>> sorted(param_shapes(net.graph))
    ['nodes.linear.bias', 'nodes.linear.weight']
    >>> weights = {k: torch.zeros(s) for k, s in param_shapes(net.graph).items()}
    >>> torch.func.functional_call(net, weights, (torch.ones(2, 4),)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math
from typing import Hashable

import networkx as nx
import torch
from torch import Tensor, nn

from .graph import input_node, node_attrs, ordered_inputs, output_node, topological_order, validate
from .ops import BatchNorm, Shape, get_op

__all__ = ["Network", "build_network", "param_shapes", "buffer_shapes", "count_params",
           "count_macs"]

PREFIX = "nodes"  # parameter names are "nodes.<node>.<param>"


def _node_specs(graph: nx.DiGraph) -> list[tuple[Hashable, type, dict, list[Shape]]]:
    """(node, op class, resolved attributes, input shapes) for each node, in execution order."""
    shapes = validate(graph)
    return [(n, get_op(graph.nodes[n]["op"]), node_attrs(graph, n),
             [shapes[p] for p in ordered_inputs(graph, n)]) for n in topological_order(graph)]


def param_shapes(graph: nx.DiGraph) -> dict[str, Shape]:
    """Name and shape of every learnable parameter of the network ``graph`` describes.

    Names match ``Network(graph).named_parameters()``; nothing is built or allocated.
    """
    out: dict[str, Shape] = {}
    for node, op, attrs, ins in _node_specs(graph):
        if node == input_node(graph):
            continue
        for pname, shape in op.param_shapes(attrs, ins).items():
            out[f"{PREFIX}.{node}.{pname}"] = tuple(shape)
    return out


def buffer_shapes(graph: nx.DiGraph) -> dict[str, Shape]:
    """Name and shape of every buffer (e.g. batch-norm running statistics)."""
    out: dict[str, Shape] = {}
    for node, op, attrs, ins in _node_specs(graph):
        if node != input_node(graph):
            for bname, shape in op.buffer_shapes(attrs, ins).items():
                out[f"{PREFIX}.{node}.{bname}"] = tuple(shape)
    return out


def count_params(graph: nx.DiGraph) -> int:
    """Number of learnable scalars in the network ``graph`` describes."""
    return sum(math.prod(s) for s in param_shapes(graph).values())


def count_macs(graph: nx.DiGraph) -> int:
    """Multiply-accumulates of one forward pass on one sample (convolutions, linear layers and
    attention; the elementwise work of norms, activations and pooling is not counted)."""
    shapes = validate(graph)
    return sum(op.macs(attrs, ins, shapes[node]) for node, op, attrs, ins in _node_specs(graph)
               if node != input_node(graph))


class Network(nn.Module):
    """The network an architecture graph describes.

    Args:
        graph: a valid architecture graph (see :func:`hypernas.graphs.graph.validate`).

    Shapes:
        input ``(B, *graph.graph["input_shape"])`` -> output ``(B, num_outputs)`` logits.
    """

    def __init__(self, graph: nx.DiGraph) -> None:
        super().__init__()
        specs = _node_specs(graph)
        self.graph = graph.copy()
        inp = input_node(graph)
        self._order = [str(n) for n, *_ in specs if n != inp]
        self._inputs = {str(n): [str(p) for p in ordered_inputs(graph, n)] for n in graph.nodes}
        self._input, self._output = str(inp), str(output_node(graph))
        self.nodes = nn.ModuleDict({str(n): op(attrs, ins) for n, op, attrs, ins in specs
                                    if n != inp})
        # Free each intermediate tensor right after its last consumer has run.
        last_use: dict[str, int] = {}
        for i, n in enumerate(self._order):
            for p in self._inputs[n]:
                last_use[p] = i
        self._release = {i: [p for p, j in last_use.items() if j == i] for i in range(len(self._order))}

    def forward(self, x: Tensor, batch_stats: bool = False) -> Tensor:
        """Run the network. ``batch_stats=True`` makes every batch norm use the statistics of
        this batch and leave its running statistics alone (how predicted weights are scored)."""
        values: dict[str, Tensor] = {self._input: x}
        for i, name in enumerate(self._order):
            op = self.nodes[name]
            args = [values[p] for p in self._inputs[name]]
            values[name] = op(*args, batch_stats=batch_stats) if isinstance(op, BatchNorm) else op(*args)
            for p in self._release[i]:
                if p != self._output:
                    del values[p]
        return values[self._output]


def build_network(graph: nx.DiGraph, device: torch.device | str | None = None) -> Network:
    """``Network(graph)``, moved to ``device`` when one is given."""
    net = Network(graph)
    return net.to(device) if device is not None else net
