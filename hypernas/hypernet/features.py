"""Graph packing: a batch of architecture graphs as the plain tensors a hypernetwork reads.

Each node becomes a feature vector encoding its op (one-hot over the op registry) and the shape of
the tensors around it (channels, resolution, kernel, stride, parameter count): node-local facts
only. Edges become index tensors grouped by topological level, so message passing can
sweep the DAG forward and backward one level at a time for all graphs at once. Shortest-path
distances (capped) give virtual edges and attention biases that carry information across long
paths.

Example:
    >>> import hypernas as hn
    >>> g = hn.load_space("mlp").sample(0).graph
    >>> batch = pack_graphs([g, g])
    >>> batch.x.shape[0] == 2 * len(g), batch.x.shape[1] == NUM_FEATURES
    (True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Sequence

import networkx as nx
import torch
from torch import Tensor

from ..graphs.graph import fingerprint, node_attrs, ordered_inputs, topological_order, validate
from ..graphs.network import PREFIX
from ..graphs.ops import get_op, list_ops

__all__ = ["PackedGraphs", "pack_graphs", "NUM_FEATURES", "MAX_DISTANCE", "OP_INDEX", "OP_VOCAB"]

# The ops a hypernetwork's one-hot features and op embedding index, in a fixed order. Append-only:
# an op added to the registry goes at the end, so checkpoints made before it keep their meaning
# (``hypernas.hypernet.trainer.load_checkpoint`` gives them zero weights for the new ops).
OP_VOCAB = ("add", "avg_pool", "batch_norm", "concat", "conv", "dw_conv", "flatten", "gelu",
            "global_avg_pool", "hardswish", "identity", "input", "layer_norm", "linear",
            "max_pool", "output", "relu", "relu6", "self_attention", "sigmoid", "silu", "tanh",
            "zero",
            # added for imported PyTorch models (hypernas.graphs.trace)
            "mul", "adaptive_avg_pool", "dropout", "hardsigmoid", "group_norm",
            # ... and for torchvision's ViT, ConvNeXt, ShuffleNet, EfficientNet, SqueezeNet
            "permute", "reshape", "slice", "select", "layer_scale", "class_token",
            "position_embedding", "stochastic_depth")
# ops registered outside the vocabulary (a user's own) follow it, sorted
OP_INDEX = {name: i for i, name in enumerate(
    OP_VOCAB + tuple(sorted(set(list_ops()) - set(OP_VOCAB))))}
MAX_DISTANCE = 8  # shortest-path distances are capped here (virtual edges, attention buckets)
_SHAPE_FEATURES = 9
NUM_FEATURES = len(OP_INDEX) + _SHAPE_FEATURES


@dataclass
class PackedGraphs:
    """A batch of graphs as tensors; node ``i`` of the batch belongs to graph ``graph[i]``.

    Shapes:
        x: (nodes, NUM_FEATURES); op, graph, level, rlevel: (nodes,);
        edges: (2, E) as (source, target) batch-node indices;
        far: (3, V) virtual edges (source, target, distance) for 2 <= distance <= MAX_DISTANCE;
        dist: (graphs, n_max, n_max) directed distances, MAX_DISTANCE + 1 = unreachable,
        -1 = padding.
    """

    x: Tensor
    op: Tensor
    graph: Tensor
    level: Tensor
    rlevel: Tensor
    edges: Tensor
    far: Tensor
    dist: Tensor
    names: list[list[str]]  # per graph, node names in batch order
    params: list[list[tuple[int, str, tuple[int, ...]]]]  # per graph: (batch node, name, shape)

    @property
    def num_graphs(self) -> int:
        return len(self.names)

    def to(self, device: torch.device | str) -> "PackedGraphs":
        moved = {k: getattr(self, k).to(device) for k in
                 ("x", "op", "graph", "level", "rlevel", "edges", "far", "dist")}
        return PackedGraphs(**moved, names=self.names, params=self.params)


def _log(v: float) -> float:
    return math.log2(1 + v) / 10


def _node_features(graph: nx.DiGraph, node: Hashable, out_shape: tuple[int, ...],
                   in_shapes: list[tuple[int, ...]]) -> list[float]:
    """Node-local features only: where a node sits in the graph is the backbone's job (so the
    graph-free ablation really sees nothing of the graph)."""
    op = graph.nodes[node]["op"]
    attrs = node_attrs(graph, node)
    one_hot = [0.0] * len(OP_INDEX)
    one_hot[OP_INDEX[op]] = 1.0
    c_out = out_shape[0] if len(out_shape) != 2 else out_shape[1]
    c_in = sum(s[0] if len(s) != 2 else s[1] for s in in_shapes) if in_shapes else 0
    area = math.prod(out_shape[1:]) if len(out_shape) == 3 else 1
    n_params = sum(math.prod(s) for s in get_op(op).param_shapes(attrs, in_shapes).values()) \
        if in_shapes else 0
    return one_hot + [
        _log(c_out), _log(c_in), _log(area), attrs.get("kernel_size", 0) / 7,
        (attrs.get("stride") or 1) / 2, float(attrs.get("groups", 1) > 1 or op == "dw_conv"),
        _log(n_params), len(out_shape) / 3, len(in_shapes) / 4,
    ]


def _levels(graph: nx.DiGraph, order: list[Hashable]) -> tuple[dict, dict]:
    level: dict[Hashable, int] = {}
    for n in order:
        level[n] = max((level[p] + 1 for p in graph.predecessors(n)), default=0)
    rlevel: dict[Hashable, int] = {}
    for n in reversed(order):
        rlevel[n] = max((rlevel[s] + 1 for s in graph.successors(n)), default=0)
    return level, rlevel


@dataclass
class _Piece:
    """One graph's share of a batch, with node indices local to the graph."""

    x: Tensor
    op: Tensor
    level: Tensor
    rlevel: Tensor
    edges: Tensor  # (2, E)
    far: Tensor  # (3, V)
    dist: Tensor  # (n, n)
    names: list[str]
    params: list[tuple[int, str, tuple[int, ...]]]


_PIECES: "OrderedDict[int, _Piece]" = OrderedDict()
_CACHE_SIZE = 8192  # graphs whose packed form is kept (a few KB each)


def _piece(graph: nx.DiGraph) -> _Piece:
    key = fingerprint(graph)
    if key in _PIECES:
        _PIECES.move_to_end(key)
        return _PIECES[key]
    shapes = validate(graph)
    order = topological_order(graph)
    index = {n: i for i, n in enumerate(order)}
    level, rlevel = _levels(graph, order)
    feats, params, edges, far = [], [], [], []
    for n in order:
        ins = [shapes[p] for p in ordered_inputs(graph, n)]
        feats.append(_node_features(graph, n, shapes[n], ins))
        if ins:
            attrs = node_attrs(graph, n)
            for pname, shape in get_op(graph.nodes[n]["op"]).param_shapes(attrs, ins).items():
                params.append((index[n], f"{PREFIX}.{n}.{pname}", tuple(shape)))
        edges.extend((index[p], index[n]) for p in graph.predecessors(n))
    dist = [[MAX_DISTANCE + 1] * len(order) for _ in order]  # filled in Python, then one tensor
    for n, reach in nx.all_pairs_shortest_path_length(graph, cutoff=MAX_DISTANCE):
        row = dist[index[n]]
        for m, d in reach.items():
            row[index[m]] = d
            if d >= 2:
                far.append((index[n], index[m], d))
    piece = _Piece(
        x=torch.tensor(feats, dtype=torch.float32),
        op=torch.tensor([OP_INDEX[graph.nodes[n]["op"]] for n in order]),
        level=torch.tensor([level[n] for n in order]),
        rlevel=torch.tensor([rlevel[n] for n in order]),
        edges=torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T.contiguous(),
        far=torch.tensor(far, dtype=torch.long).reshape(-1, 3).T.contiguous(),
        dist=torch.tensor(dist, dtype=torch.long), names=[str(n) for n in order], params=params)
    _PIECES[key] = piece
    if len(_PIECES) > _CACHE_SIZE:
        _PIECES.popitem(last=False)
    return piece


def pack_graphs(graphs: Sequence[nx.DiGraph]) -> PackedGraphs:
    """Pack validated architecture graphs into one :class:`PackedGraphs` (CPU tensors)."""
    pieces = [_piece(g) for g in graphs]
    sizes = [len(p.names) for p in pieces]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    n_max = max(sizes)
    dist = torch.full((len(pieces), n_max, n_max), -1, dtype=torch.long)
    for i, p in enumerate(pieces):
        dist[i, :sizes[i], :sizes[i]] = p.dist
    shift = torch.tensor([[1], [1], [0]])
    return PackedGraphs(
        x=torch.cat([p.x for p in pieces]), op=torch.cat([p.op for p in pieces]),
        graph=torch.repeat_interleave(torch.arange(len(pieces)), torch.tensor(sizes)),
        level=torch.cat([p.level for p in pieces]), rlevel=torch.cat([p.rlevel for p in pieces]),
        edges=torch.cat([p.edges + o for p, o in zip(pieces, offsets)], dim=1),
        far=torch.cat([p.far + shift * o for p, o in zip(pieces, offsets)], dim=1),
        dist=dist, names=[p.names for p in pieces],
        params=[[(node + o, name, shape) for node, name, shape in p.params]
                for p, o in zip(pieces, offsets)])
