"""Pooling, reshaping, wiring (add, concat, identity, zero) and self-attention ops."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ShapeError
from ._base import REQUIRED, Attr, Op, Shape, _need_rank, _same_shapes, _spatial_out, register_op

# ----- pooling and reshaping ------------------------------------------------------------------

_POOL = {"kernel_size": Attr(int, REQUIRED, "square window side", min=1),
         "stride": Attr(int, None, "stride; null means the kernel size", min=1, nullable=True),
         "padding": Attr(int, 0, "zero padding", min=0)}


def _pool_out(attrs: Mapping[str, Any], in_shapes: Sequence[Shape], what: str) -> Shape:
    k, p = attrs["kernel_size"], attrs["padding"]
    if 2 * p > k:
        raise ShapeError(f"{what} padding {p} is more than half its kernel {k}; lower the padding")
    full = {**attrs, "stride": attrs["stride"] or k, "dilation": 1}
    _need_rank(in_shapes[0], [3], what)
    shape = _spatial_out(full, in_shapes[0], in_shapes[0][0], what)
    if not attrs.get("ceil_mode"):
        return shape
    s, (c, h, w) = full["stride"], in_shapes[0]

    def ceil_out(size: int) -> int:  # PyTorch's rule: the last window must start inside
        out = -(-(size + 2 * p - k) // s) + 1
        return out - 1 if (out - 1) * s >= size + p else out
    return (c, ceil_out(h), ceil_out(w))


@register_op
class AvgPool(Op):
    """Average pooling over ``k x k`` windows."""

    name = "avg_pool"
    attrs = {**_POOL, "count_include_pad": Attr(bool, True, "count padded zeros in the mean")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        return _pool_out(attrs, in_shapes, "avg_pool")

    def forward(self, x: Tensor) -> Tensor:
        # A depthwise convolution with a ones kernel, divided by the window sizes: the same
        # numbers as F.avg_pool2d, ~4x faster forward+backward on CPU (avg_pool2d's backward is
        # a slow scalar loop there), which matters when thousands of candidates are trained.
        c = self.cfg
        k, p = c["kernel_size"], c["padding"]
        stride, ch = c["stride"] or k, x.shape[1]
        total = F.conv2d(x, x.new_ones(ch, 1, k, k), stride=stride, padding=p, groups=ch)
        if c["count_include_pad"] or p == 0:
            return total / (k * k)
        counts = F.conv2d(x.new_ones(1, 1, *x.shape[2:]), x.new_ones(1, 1, k, k),
                          stride=stride, padding=p)
        return total / counts


@register_op
class MaxPool(Op):
    """Max pooling over ``k x k`` windows."""

    name = "max_pool"
    attrs = {**_POOL, "ceil_mode": Attr(bool, False, "round the output size up (a last, partial "
                                                     "window), as SqueezeNet pools",
                                         in_id_at_default=False)}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        return _pool_out(attrs, in_shapes, "max_pool")

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.max_pool2d(x, c["kernel_size"], c["stride"] or c["kernel_size"], c["padding"],
                            ceil_mode=c.get("ceil_mode", False))


@register_op
class GlobalAvgPool(Op):
    """Mean over all spatial positions: ``(C, H, W) -> (C,)``."""

    name = "global_avg_pool"

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [3], "global_avg_pool")
        return (in_shapes[0][0],)

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


@register_op
class Flatten(Op):
    """All dimensions into one: ``(C, H, W) -> (C*H*W,)``."""

    name = "flatten"

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        return (math.prod(in_shapes[0]),)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


# ----- wiring ---------------------------------------------------------------------------------

@register_op
class Add(Op):
    """Element-wise sum of two or more inputs of one shape."""

    name = "add"
    arity = (2, None)

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _same_shapes(in_shapes, "add")
        return tuple(in_shapes[0])

    def forward(self, *xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@register_op
class Concat(Op):
    """Concatenation along channels (the first non-batch dim); inputs ordered by edge ``slot``."""

    name = "concat"
    arity = (2, None)
    ordered = True

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        rest = {tuple(s[1:]) for s in in_shapes}
        if len(rest) != 1 or any(len(s) == 0 for s in in_shapes):
            shapes = ", ".join(str(tuple(s)) for s in in_shapes)
            raise ShapeError(f"concat needs inputs that differ only in channels, got {shapes}; "
                             "pool or stride them to one size first")
        return (sum(s[0] for s in in_shapes), *in_shapes[0][1:])

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


@register_op
class Identity(Op):
    """Passes its input through (a skip connection)."""

    name = "identity"

    def forward(self, x: Tensor) -> Tensor:
        return x


@register_op
class Zero(Op):
    """Outputs zeros shaped like its input (NAS-Bench-201's ``none`` op)."""

    name = "zero"

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


# ----- attention ------------------------------------------------------------------------------

@register_op
class SelfAttention(Op):
    """Multi-head self-attention over tokens: ``(T, D)``, or a ``(C, H, W)`` map as H*W tokens."""

    name = "self_attention"
    attrs = {"num_heads": Attr(int, 1, "attention heads; must divide the embedding size", min=1)}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [2, 3], "self_attention")
        d = in_shapes[0][0] if len(in_shapes[0]) == 3 else in_shapes[0][1]
        if d % attrs["num_heads"]:
            raise ShapeError(f"self_attention: {attrs['num_heads']} heads do not divide the "
                             f"embedding size {d}; pick num_heads dividing {d}")
        return tuple(in_shapes[0])

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        d = in_shapes[0][0] if len(in_shapes[0]) == 3 else in_shapes[0][1]
        return {"in_weight": (3 * d, d), "in_bias": (3 * d,),
                "out_weight": (d, d), "out_bias": (d,)}

    @classmethod
    def macs(cls, attrs, in_shapes, out_shape):
        shape = in_shapes[0]
        t, d = (shape[1] * shape[2], shape[0]) if len(shape) == 3 else (shape[0], shape[1])
        return 4 * t * d * d + 2 * t * t * d   # q, k, v, out projections + scores and mixing

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_weight)
        nn.init.xavier_uniform_(self.out_weight)
        nn.init.zeros_(self.in_bias)
        nn.init.zeros_(self.out_bias)

    def forward(self, x: Tensor) -> Tensor:
        spatial = x.dim() == 4
        if spatial:                                            # (B, C, H, W) -> (B, HW, C)
            b, c, h, w = x.shape
            # contiguous: F.linear on a strided 3-d input picks a kernel by whether the weight
            # requires grad, so functional_call and the module would differ in the last bits.
            x = x.flatten(2).transpose(1, 2).contiguous()
        bsz, t, d = x.shape
        heads = self.cfg["num_heads"]
        q, k, v = F.linear(x, self.in_weight, self.in_bias).chunk(3, dim=-1)
        q, k, v = (z.reshape(bsz, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)            # (B, heads, T, D/heads)
        y = F.linear(y.transpose(1, 2).reshape(bsz, t, d), self.out_weight, self.out_bias)
        return y.transpose(1, 2).reshape(b, c, h, w) if spatial else y


# ----- ops for imported PyTorch models (appended to the hypernetwork's vocabulary) ------------

@register_op
class Mul(Op):
    """Element-wise product of two inputs whose shapes broadcast (a squeeze-and-excitation
    gate: ``(C, H, W) * (C, 1, 1)``); the output has the larger shape."""

    name = "mul"
    arity = (2, 2)

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        a, b = (tuple(s) for s in in_shapes)
        if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
            raise ShapeError(f"mul needs shapes that broadcast, got {a} and {b}; gate a map "
                             "with a (C, 1, 1) tensor of its channels")
        return tuple(max(x, y) for x, y in zip(a, b))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


@register_op
class AdaptiveAvgPool(Op):
    """Average pooling to an ``output_size`` x ``output_size`` map, whatever the input size."""

    name = "adaptive_avg_pool"
    attrs = {"output_size": Attr(int, 1, "side of the output map", min=1)}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [3], "adaptive_avg_pool")
        return (in_shapes[0][0], attrs["output_size"], attrs["output_size"])

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.cfg["output_size"])


@register_op
class Dropout(Op):
    """Zeroes each element with probability ``p`` while training (scaled by 1/(1-p)); the
    identity in evaluation and in exported models."""

    name = "dropout"
    attrs = {"p": Attr(float, 0.5, "probability of zeroing an element while training")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        if not 0.0 <= attrs["p"] < 1.0:
            raise ShapeError(f"dropout p must lie in [0, 1), got {attrs['p']}")
        return tuple(in_shapes[0])

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.cfg["p"], self.training)
