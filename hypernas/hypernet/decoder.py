"""Shape-agnostic weight decoding: node embedding in, one tensor per target parameter out.

Each kind of parameter (``conv.weight.k3``, ``batch_norm.weight``, ``linear.bias`` ...) owns R
learned base tensors of the largest shape the search space needs. A node's embedding picks a
mixture of the bases, a gain per output channel and an overall scale; the mixture is sliced
(kernels from the centre, channels from the front) to the parameter's exact shape; a parameter
larger than every one of its kind in the space is refused, never tiled. Candidates that share a layer shape thus share bases
(soft weight sharing), and the graph decides how each uses them.

Scale normalisation: a mixture is rescaled to unit variance, then weights get He fan-in scaling
``sqrt(2 / fan_in)``; norm-layer scales are ``1 + 0.2 tanh(.)`` and biases ``0.1 tanh(.)``, so
predicted networks start in a sane range whatever the embedding says.

Ensemble heads: ``samples`` independent sets of mixture, gain and scale heads over the same
bases and backbone. Each head gives one weight sample of a candidate; their disagreement is the
spread of its score.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .features import PackedGraphs

__all__ = ["WeightDecoder", "param_kind", "slot_key"]

NORM_OPS = ("batch_norm", "layer_norm", "group_norm")
# Bases and anchors are stored at this scale and divided by it when used: with Adam, whose steps
# have a fixed absolute size, a small stored scale is a large relative learning rate, as for the
# weights of an ordinary network (stored at unit scale they learned ~20x slower).
BASE_STD = 0.05


def param_kind(op: str, pname: str, shape: Sequence[int]) -> str:
    """The base family a parameter draws from; convolutions are split by kernel size."""
    if op == "conv" and pname == "weight":
        return f"conv.weight.k{shape[-1]}"
    return f"{op}.{pname}"


def slot_key(name: str, kind: str) -> str:
    """Key of a positional weight: the parameter's name in the network plus its kind."""
    return f"{name}@{kind}"


def _key(kind: str) -> str:
    return kind.replace(".", "__")  # module-dict keys cannot hold dots


def _fit(base: Tensor, shape: Sequence[int]) -> Tensor:
    """Slice ``base: (R, *max_shape)`` to ``(R, *shape)``; kernel dimensions (3rd and 4th of a
    conv weight) are cut from the centre. A shape larger than the base is refused before it
    gets here (``GraphHyperNetwork.pack``): tiling would repeat channels."""
    out = base
    for dim, want in enumerate(shape, start=1):
        have = out.shape[dim]
        if want > have:
            raise ValueError(f"shape {tuple(shape)} exceeds the base's {tuple(base.shape[1:])}")
        start = (have - want) // 2 if dim >= 3 else 0
        out = out.narrow(dim, start, want)
    return out


class WeightDecoder(nn.Module):
    """Node embeddings ``(nodes, dim)`` -> ``{param name: tensor}`` per graph, for one head."""

    def __init__(self, dim: int, max_shapes: dict[str, tuple[int, ...]], bases: int,
                 samples: int, slots: dict[str, tuple[int, ...]] | None = None) -> None:
        super().__init__()
        self.samples, self.num_bases = samples, bases
        self.max_shapes = dict(max_shapes)
        # Positional weights: one tensor per (node name, parameter, kind) seen in the space, a
        # supernet-like anchor the graph embedding then modulates.
        self.own = nn.ParameterDict({_key(k): nn.Parameter(BASE_STD * torch.randn(*s))
                                     for k, s in (slots or {}).items()})
        self.bases = nn.ParameterDict({_key(k): nn.Parameter(BASE_STD * torch.randn(bases, *s))
                                       for k, s in self.max_shapes.items()})
        self.mix = nn.ModuleDict({_key(k): nn.Linear(dim, samples * bases) for k in max_shapes})
        self.gain = nn.ModuleDict({_key(k): nn.Linear(dim, samples * s[0])
                                   for k, s in self.max_shapes.items() if len(s) >= 2})
        self.scale = nn.ModuleDict({_key(k): nn.Linear(dim, samples)
                                    for k, s in self.max_shapes.items() if len(s) >= 2})
        for heads in (self.gain, self.scale):
            for lin in heads.values():
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, h: Tensor, batch: PackedGraphs, heads: Sequence[int],
                kinds: list[list[str]]) -> list[dict[str, Tensor]]:
        """Weights of every graph in ``batch``; graph ``g`` uses ensemble head ``heads[g]``.

        Parameters of one kind and shape are decoded together, so each base is sliced once.

        Shapes:
            h: (nodes, dim) -> per graph {name: tensor of that parameter's shape}
        """
        groups: dict[tuple[str, tuple[int, ...]], list[tuple[int, int, str]]] = {}
        for g, params in enumerate(batch.params):
            for (node, name, shape), kind in zip(params, kinds[g]):
                groups.setdefault((kind, shape), []).append((g, node, name))
        out: list[dict[str, Tensor]] = [{} for _ in batch.params]
        for (kind, shape), items in groups.items():
            nodes = torch.tensor([node for _, node, _ in items], device=h.device)
            head = torch.tensor([heads[g] for g, _, _ in items], device=h.device)
            own = [self.own[k] if k in self.own else None
                   for k in (_key(slot_key(name, kind)) for _, _, name in items)]
            weights = self.assemble(kind, shape, h[nodes], head, own)     # (n, *shape)
            for (g, _, name), w in zip(items, weights.unbind(0)):
                out[g][name] = w
        return out

    def assemble(self, kind: str, shape: tuple[int, ...], h: Tensor, head: Tensor,
                 own: Sequence[Tensor | None] = ()) -> Tensor:
        """Parameters of one kind and shape for n nodes: ``h: (n, dim)`` embeddings, ``head:
        (n,)`` ensemble heads, ``own`` each node's positional tensor (or None) -> ``(n, *shape)``."""
        key, n, rows = _key(kind), h.shape[0], torch.arange(h.shape[0], device=h.device)
        coef = self.mix[key](h).view(n, self.samples, -1)[rows, head]      # (n, R)
        base = _fit(self.bases[key], shape)                                 # (R, *shape)
        mixed = torch.tensordot(coef, base, dims=1)                         # (n, *shape)
        view = (n,) + (1,) * len(shape)
        mixed = mixed / (BASE_STD * coef.norm(dim=1).view(view) + 1e-6)     # ~unit variance
        if any(o is not None for o in own):                                 # + positional anchor
            anchor = torch.stack([_fit(o.unsqueeze(0), shape)[0] / BASE_STD if o is not None
                                  else torch.zeros(shape, device=h.device) for o in own])
            has = torch.tensor([o is not None for o in own], device=h.device).view(view)
            mixed = torch.where(has, (mixed + anchor) / math.sqrt(2), mixed)
        if key not in self.gain:                                            # vectors
            if kind.split(".")[0] in NORM_OPS and kind.endswith(".weight"):
                return 1 + 0.2 * torch.tanh(mixed)
            return 0.1 * torch.tanh(mixed)
        gain = self.gain[key](h).view(n, self.samples, -1)[rows, head]      # (n, C_max)
        gain = _fit(gain, shape[:1])                                        # (n, C_out)
        scale = self.scale[key](h).view(n, self.samples)[rows, head]        # (n,)
        fan_in = math.prod(shape[1:])
        return (mixed * (math.sqrt(2 / fan_in) * scale.clamp(-3, 3).exp()).view(view)
                * (1 + torch.tanh(gain)).view(n, -1, *(1,) * (len(shape) - 1)))
