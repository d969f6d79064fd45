"""Hypernetwork backbones: node embeddings in, node embeddings that know their graph out.

- ``gated_gnn`` (GHN-1/2): GRU updates sweeping the DAG in topological order, forward then
  backward, with messages from parents (children on the way back) plus virtual edges from
  ancestors up to ``MAX_DISTANCE`` hops away, weighted 1/distance.
- ``graph_transformer`` (GHN-3): pre-norm self-attention over each graph's nodes with a learned
  per-head bias for the directed distance in both directions.
- ``graph_free``: a per-node MLP that sees only the node's own features (the ablation).

Every backbone maps ``h: (nodes, dim)`` and a :class:`PackedGraphs` to ``(nodes, dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .features import MAX_DISTANCE, PackedGraphs

__all__ = ["GatedGNN", "GraphTransformer", "GraphFree", "BACKBONES", "list_hypernets"]


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class GatedGNN(nn.Module):
    """Forward-then-backward gated message passing along the DAG (GHN-2 style)."""

    def __init__(self, dim: int, layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.rounds = layers
        self.message = nn.ModuleList([_mlp(dim), _mlp(dim)])     # [forward, backward]
        self.far = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim)])
        self.update = nn.ModuleList([nn.GRUCell(dim, dim), nn.GRUCell(dim, dim)])

    def forward(self, h: Tensor, batch: PackedGraphs) -> Tensor:
        for _ in range(self.rounds):
            h = self.sweep(h, batch, direction=0)
            h = self.sweep(h, batch, direction=1)
        return h

    def sweep(self, h: Tensor, batch: PackedGraphs, direction: int) -> Tensor:
        """One pass in topological order (direction 0) or its reverse (direction 1):
        ``m_v = sum_u MLP(h_u) + sum_far W h_u / d(u, v)``, ``h_v = GRU(m_v, h_v)``."""
        src, dst = batch.edges if direction == 0 else batch.edges.flip(0)
        fsrc, fdst = batch.far[:2] if direction == 0 else batch.far[:2].flip(0)
        fw = 1.0 / batch.far[2].to(h.dtype).unsqueeze(1)              # (V, 1)
        level = batch.level if direction == 0 else batch.rlevel
        for lvl in range(1, int(level.max()) + 1):
            nodes = (level == lvl).nonzero().squeeze(1)
            e, f = level[dst] == lvl, level[fdst] == lvl
            m = torch.zeros_like(h)
            m = m.index_add(0, dst[e], self.message[direction](h[src[e]]))
            m = m.index_add(0, fdst[f], self.far[direction](h[fsrc[f]]) * fw[f])
            h = h.index_copy(0, nodes, self.update[direction](m[nodes], h[nodes]))
        return h


class GraphTransformer(nn.Module):
    """Self-attention over each graph's nodes with distance-aware biases (GHN-3 style)."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        buckets = MAX_DISTANCE + 2                                      # 0..MAX, unreachable
        self.bias_fwd = nn.ModuleList([nn.Embedding(buckets, heads) for _ in range(layers)])
        self.bias_bwd = nn.ModuleList([nn.Embedding(buckets, heads) for _ in range(layers)])
        self.norm1 = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.qkv = nn.ModuleList([nn.Linear(dim, 3 * dim) for _ in range(layers)])
        self.proj = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.norm2 = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.ffn = nn.ModuleList([_mlp(dim) for _ in range(layers)])

    def forward(self, h: Tensor, batch: PackedGraphs) -> Tensor:
        pos = _positions(batch.graph)
        x = h.new_zeros(batch.num_graphs, batch.dist.shape[1], h.shape[1])
        x[batch.graph, pos] = h                                         # (G, n, dim)
        pad = batch.dist < 0                                            # (G, n, n)
        d_fwd = batch.dist.clamp(min=0)
        d_bwd = d_fwd.transpose(1, 2)
        for i in range(len(self.qkv)):
            bias = (self.bias_fwd[i](d_fwd) + self.bias_bwd[i](d_bwd)).permute(0, 3, 1, 2)
            bias = bias.masked_fill(pad.unsqueeze(1), float("-inf"))   # (G, heads, n, n)
            x = x + self.attend(self.norm1[i](x), bias, i)
            x = x + self.ffn[i](self.norm2[i](x))
        return x[batch.graph, pos]

    def attend(self, x: Tensor, bias: Tensor, i: int) -> Tensor:
        g, n, dim = x.shape
        q, k, v = self.qkv[i](x).reshape(g, n, 3, self.heads, dim // self.heads).unbind(2)
        # padded rows attend to nothing real; give them a harmless self-loop to avoid NaNs
        bias = torch.where(torch.isinf(bias).all(-1, keepdim=True), torch.zeros_like(bias), bias)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), attn_mask=bias)
        return self.proj[i](y.transpose(1, 2).reshape(g, n, dim))


class GraphFree(nn.Module):
    """Ablation: each node sees only its own op and shape features."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_mlp(dim) for _ in range(layers)])

    def forward(self, h: Tensor, batch: PackedGraphs) -> Tensor:
        for block in self.blocks:
            h = h + block(h)
        return h


def _positions(graph_index: Tensor) -> Tensor:
    """Position of each node inside its graph (nodes of a graph are contiguous)."""
    counts = torch.bincount(graph_index)
    offsets = torch.cumsum(counts, 0) - counts
    starts = offsets[graph_index]
    return torch.arange(len(graph_index), device=graph_index.device) - starts


BACKBONES: dict[str, type[nn.Module]] = {
    "gated_gnn": GatedGNN,
    "graph_transformer": GraphTransformer,
    "graph_free": GraphFree,
}


def list_hypernets() -> list[str]:
    """Names of the hypernetwork backbones."""
    return list(BACKBONES)
