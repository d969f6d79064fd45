"""Ops that common PyTorch models need beyond layers and wiring: static reshapes, slices and
selections, the free parameters of transformers and ConvNeXt (class token, position embedding,
layer scale) and stochastic depth. :func:`hypernas.graphs.trace.from_module` maps torchvision's
ViT, ConvNeXt, ShuffleNet and EfficientNet calls onto them.

Shapes never include the batch dimension, and neither do the ``dims``, ``shape`` and ``dim``
attributes: ``permute`` with ``dims="1,2,0"`` turns a ``(C, H, W)`` map into ``(H, W, C)``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...errors import ShapeError
from ._base import REQUIRED, Attr, Op, Shape, register_op


def _ints(text: str, what: str) -> tuple[int, ...]:
    """``"2,0,1"`` -> ``(2, 0, 1)``; a clear error for anything else."""
    try:
        out = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ShapeError(f"{what} must be comma-separated integers such as '1,2,0', got "
                         f"{text!r}") from None
    return out


def _need_dim(attrs: Mapping[str, Any], in_shape: Shape, what: str) -> int:
    dim = attrs["dim"]
    if dim >= len(in_shape):
        raise ShapeError(f"{what}: dim {dim} is past the input's {len(in_shape)} dimensions "
                         f"(shape {tuple(in_shape)}, no batch dim); pick a dim below "
                         f"{len(in_shape)}")
    return dim


# ----- reshaping ------------------------------------------------------------------------------

@register_op
class Permute(Op):
    """The input's dimensions in a new order (the batch dimension stays first)."""

    name = "permute"
    attrs = {"dims": Attr(str, REQUIRED, "new order of the non-batch dimensions, comma-separated: "
                                         "'1,2,0' turns (C, H, W) into (H, W, C)")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        order, shape = _ints(attrs["dims"], "permute dims"), tuple(in_shapes[0])
        if sorted(order) != list(range(len(shape))):
            raise ShapeError(f"permute dims {attrs['dims']!r} is not an order of the "
                             f"{len(shape)} dimensions of {shape}; name each of "
                             f"{', '.join(map(str, range(len(shape))))} once")
        return tuple(shape[d] for d in order)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *(d + 1 for d in _ints(self.cfg["dims"], "permute dims")))


@register_op
class Reshape(Op):
    """The input's elements in a new static shape (the batch dimension stays first)."""

    name = "reshape"
    attrs = {"shape": Attr(str, REQUIRED, "the output shape without the batch dim, "
                                          "comma-separated; it must hold as many elements")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        shape = _ints(attrs["shape"], "reshape shape")
        if min(shape) < 1 or math.prod(shape) != math.prod(in_shapes[0]):
            raise ShapeError(f"reshape to {shape} cannot hold the {math.prod(in_shapes[0])} "
                             f"elements of {tuple(in_shapes[0])}; give a shape of positive sides "
                             "with the same product")
        return shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *_ints(self.cfg["shape"], "reshape shape"))


@register_op
class Slice(Op):
    """Positions ``start`` to ``stop`` (exclusive) along one dimension: ShuffleNet's channel
    split is two slices of the channels."""

    name = "slice"
    attrs = {"dim": Attr(int, 0, "the dimension, without the batch dim", min=0),
             "start": Attr(int, REQUIRED, "first position kept", min=0),
             "stop": Attr(int, REQUIRED, "position after the last kept", min=1)}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        dim, shape = _need_dim(attrs, in_shapes[0], "slice"), list(in_shapes[0])
        if not attrs["start"] < attrs["stop"] <= shape[dim]:
            raise ShapeError(f"slice {attrs['start']}:{attrs['stop']} of dim {dim} does not fit "
                             f"its {shape[dim]} positions; keep 0 <= start < stop <= {shape[dim]}")
        shape[dim] = attrs["stop"] - attrs["start"]
        return tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return x.narrow(c["dim"] + 1, c["start"], c["stop"] - c["start"])


@register_op
class Select(Op):
    """One position of one dimension, which disappears: ViT's class token is ``select`` of
    token 0, ``(T, D) -> (D,)``."""

    name = "select"
    attrs = {"dim": Attr(int, 0, "the dimension, without the batch dim", min=0),
             "index": Attr(int, 0, "the position kept", min=0)}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        dim, shape = _need_dim(attrs, in_shapes[0], "select"), list(in_shapes[0])
        if len(shape) < 2 or attrs["index"] >= shape[dim]:
            raise ShapeError(f"select of position {attrs['index']} of dim {dim} needs a tensor "
                             f"of two or more dimensions with more positions, got {tuple(shape)}")
        del shape[dim]
        return tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.select(self.cfg["dim"] + 1, self.cfg["index"])


# ----- free parameters ------------------------------------------------------------------------

@register_op
class LayerScale(Op):
    """A learnable scale per channel (ConvNeXt's layer scale): along the first dimension of a
    ``(C, H, W)`` map, along the last dimension of tokens and vectors."""

    name = "layer_scale"

    @staticmethod
    def _channels(shape: Shape) -> int:
        return shape[0] if len(shape) == 3 else shape[-1]

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        return {"weight": (cls._channels(in_shapes[0]),)}

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x * (self.weight.view(-1, 1, 1) if x.dim() == 4 else self.weight)


@register_op
class ClassToken(Op):
    """A learnable token put before a ``(T, D)`` sequence: ``(T, D) -> (T + 1, D)`` (ViT)."""

    name = "class_token"

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        if len(in_shapes[0]) != 2:
            raise ShapeError(f"class_token needs a (tokens, dim) input, got {tuple(in_shapes[0])};"
                             " turn a map into tokens with reshape and permute first")
        t, d = in_shapes[0]
        return (t + 1, d)

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        return {"weight": (1, in_shapes[0][-1])}

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)


@register_op
class PositionEmbedding(Op):
    """Adds a learnable tensor of the input's shape (ViT's position embedding)."""

    name = "position_embedding"

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        return {"weight": tuple(in_shapes[0])}

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight


# ----- regularisation -------------------------------------------------------------------------

@register_op
class StochasticDepth(Op):
    """Drops its input (a residual branch) with probability ``p`` while training, scaling what
    it keeps by ``1 / (1 - p)``; the identity in evaluation and in exported models."""

    name = "stochastic_depth"
    attrs = {"p": Attr(float, 0.0, "probability of dropping the branch while training"),
             "mode": Attr(str, "row", "'row': each sample independently; 'batch': all at once")}

    @classmethod
    def infer_shape(cls, attrs: Mapping[str, Any], in_shapes: Sequence[Shape]) -> Shape:
        if not 0.0 <= attrs["p"] < 1.0 or attrs["mode"] not in ("row", "batch"):
            raise ShapeError(f"stochastic_depth needs 0 <= p < 1 and mode 'row' or 'batch', got "
                             f"p={attrs['p']}, mode={attrs['mode']!r}")
        return tuple(in_shapes[0])

    def forward(self, x: Tensor) -> Tensor:
        p = self.cfg["p"]
        if not self.training or p == 0.0:
            return x
        rows = x.shape[0] if self.cfg["mode"] == "row" else 1
        keep = x.new_empty((rows,) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
        return x * keep / (1.0 - p)
