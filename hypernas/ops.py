"""The op registry: every node of an architecture graph names one of these ops.

An op is a small ``nn.Module`` that knows, from its attributes and input shapes alone, its
output shape and the shapes of its parameters. That is what lets a hypernetwork emit weights
for a network that has never been built. Shapes never include the batch dimension:
``(C, H, W)`` for feature maps, ``(D,)`` for vectors, ``(T, D)`` for token sequences.

Example:
    >>> import hypernas.ops as ops
    >>> conv = ops.get_op("conv")
    >>> conv.infer_shape({"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": -1,
    ...                   "dilation": 1, "groups": 1, "bias": False}, [(3, 32, 32)])
    (8, 16, 16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ShapeError, UnknownOpError

__all__ = ["Attr", "Op", "Shape", "register_op", "get_op", "list_ops", "REQUIRED"]

Shape = tuple[int, ...]
REQUIRED: Any = object()  # sentinel: the attribute has no default


@dataclass(frozen=True)
class Attr:
    """Schema of one node attribute: its type, its default, and the smallest value allowed."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    doc: str = ""
    min: int | None = None
    nullable: bool = False


_REGISTRY: dict[str, type["Op"]] = {}


def register_op(cls: type["Op"]) -> type["Op"]:
    """Class decorator adding an op to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"op {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_op(name: str) -> type["Op"]:
    """The op class registered as ``name``; raises :class:`UnknownOpError` naming the known ops."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownOpError(f"unknown op {name!r}; known ops: {', '.join(list_ops())}") from None


def list_ops() -> list[str]:
    """Names of every registered op, sorted."""
    return sorted(_REGISTRY)


class Op(nn.Module):
    """Base class of graph ops. Subclasses declare ``name``, ``attrs`` and ``arity`` and
    implement ``infer_shape`` (and ``param_shapes`` / ``forward`` where they compute)."""

    name: ClassVar[str]
    attrs: ClassVar[dict[str, Attr]] = {}
    arity: ClassVar[tuple[int, int | None]] = (1, 1)  # (min, max) inputs; None = unbounded
    ordered: ClassVar[bool] = False  # whether the order of inputs changes the result

    def __init__(self, attrs: Mapping[str, Any], in_shapes: Sequence[Shape]) -> None:
        super().__init__()
        self.cfg = dict(attrs)
        for pname, shape in self.param_shapes(self.cfg, in_shapes).items():
            self.register_parameter(pname, nn.Parameter(torch.empty(shape)))
        for bname, shape in self.buffer_shapes(self.cfg, in_shapes).items():
            self.register_buffer(bname, torch.zeros(shape))
        self.reset_parameters()

    @classmethod
    def infer_shape(cls, attrs: Mapping[str, Any], in_shapes: Sequence[Shape]) -> Shape:
        """Output shape for these inputs; raises :class:`ShapeError` when they do not fit."""
        return tuple(in_shapes[0])

    @classmethod
    def param_shapes(cls, attrs: Mapping[str, Any], in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        """Learnable parameter shapes, by parameter name."""
        return {}

    @classmethod
    def buffer_shapes(cls, attrs: Mapping[str, Any], in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        """Non-learnable state (e.g. batch-norm running statistics), by buffer name."""
        return {}

    def reset_parameters(self) -> None:
        """Initialise parameters as a freshly built PyTorch layer would."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.cfg.items())


def _need_rank(in_shape: Shape, ranks: Sequence[int], what: str) -> None:
    if len(in_shape) not in ranks:
        want = " or ".join(f"rank {r}" for r in ranks)
        raise ShapeError(f"{what} needs a {want} input (no batch dim), got shape {tuple(in_shape)}")


def _same_shapes(in_shapes: Sequence[Shape], what: str) -> None:
    if any(tuple(s) != tuple(in_shapes[0]) for s in in_shapes):
        shapes = ", ".join(str(tuple(s)) for s in in_shapes)
        raise ShapeError(f"{what} needs inputs of one shape, got {shapes}; "
                         "insert a conv/linear or pooling to make them match")


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _kaiming_init(weight: Tensor, bias: Tensor | None) -> None:
    # The default init of torch's Conv2d / Linear: kaiming-uniform with a = sqrt(5).
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


# ----- graph boundary -------------------------------------------------------------------------

@register_op
class Input(Op):
    """The network's input; its shape is the graph's ``input_shape`` attribute."""

    name = "input"
    arity = (0, 0)

    def forward(self, x: Tensor) -> Tensor:
        return x


@register_op
class Output(Op):
    """The network's output; its input must have shape ``(num_outputs,)``."""

    name = "output"

    def forward(self, x: Tensor) -> Tensor:
        return x


# ----- convolution and linear -----------------------------------------------------------------

_SPATIAL = {
    "kernel_size": Attr(int, REQUIRED, "square kernel side", min=1),
    "stride": Attr(int, 1, "stride", min=1),
    "padding": Attr(int, -1, "zero padding; -1 means 'same' ((k-1)//2 * dilation)", min=-1),
    "dilation": Attr(int, 1, "dilation", min=1),
}


def _padding(attrs: Mapping[str, Any]) -> int:
    p = attrs["padding"]
    return (attrs["kernel_size"] - 1) // 2 * attrs["dilation"] if p == -1 else p


def _spatial_out(attrs: Mapping[str, Any], in_shape: Shape, channels: int, what: str) -> Shape:
    _need_rank(in_shape, [3], what)
    _, h, w = in_shape
    k, s, d, p = attrs["kernel_size"], attrs["stride"], attrs["dilation"], _padding(attrs)
    ho, wo = _conv_out(h, k, s, p, d), _conv_out(w, k, s, p, d)
    if ho < 1 or wo < 1:
        raise ShapeError(f"{what} with kernel {k}, stride {s}, padding {p} shrinks a {h}x{w} map "
                         "to nothing; use a smaller kernel or stride, or a larger input")
    return (channels, ho, wo)


@register_op
class Conv(Op):
    """2-d convolution: ``y = W * x (+ b)``."""

    name = "conv"
    attrs = {
        "out_channels": Attr(int, REQUIRED, "output channels", min=1),
        **_SPATIAL,
        "groups": Attr(int, 1, "channel groups", min=1),
        "bias": Attr(bool, False, "add a learnable bias"),
    }

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        out = _spatial_out(attrs, in_shapes[0], attrs["out_channels"], "conv")
        c_in, g, c_out = in_shapes[0][0], attrs["groups"], attrs["out_channels"]
        if c_in % g or c_out % g:
            raise ShapeError(f"conv with groups={g} needs in ({c_in}) and out ({c_out}) channels "
                             "divisible by groups; change groups or out_channels")
        return out

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        k, g = attrs["kernel_size"], attrs["groups"]
        shapes = {"weight": (attrs["out_channels"], in_shapes[0][0] // g, k, k)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    def reset_parameters(self) -> None:
        _kaiming_init(self.weight, getattr(self, "bias", None))

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.conv2d(x, self.weight, getattr(self, "bias", None), c["stride"], _padding(c),
                        c["dilation"], c["groups"])


@register_op
class DepthwiseConv(Op):
    """Depthwise 2-d convolution: one ``k x k`` filter per input channel (times ``multiplier``)."""

    name = "dw_conv"
    attrs = {**_SPATIAL,
             "multiplier": Attr(int, 1, "output channels per input channel", min=1),
             "bias": Attr(bool, False, "add a learnable bias")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [3], "dw_conv")
        return _spatial_out(attrs, in_shapes[0], in_shapes[0][0] * attrs["multiplier"], "dw_conv")

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        c_out, k = in_shapes[0][0] * attrs["multiplier"], attrs["kernel_size"]
        shapes = {"weight": (c_out, 1, k, k)}
        if attrs["bias"]:
            shapes["bias"] = (c_out,)
        return shapes

    def reset_parameters(self) -> None:
        _kaiming_init(self.weight, getattr(self, "bias", None))

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.conv2d(x, self.weight, getattr(self, "bias", None), c["stride"], _padding(c),
                        c["dilation"], x.shape[1])


@register_op
class Linear(Op):
    """Affine map over the last dimension: ``y = x W^T + b``."""

    name = "linear"
    attrs = {"out_features": Attr(int, REQUIRED, "output features", min=1),
             "bias": Attr(bool, True, "add a learnable bias")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [1, 2], "linear")
        return (*in_shapes[0][:-1], attrs["out_features"])

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        shapes = {"weight": (attrs["out_features"], in_shapes[0][-1])}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_features"],)
        return shapes

    def reset_parameters(self) -> None:
        _kaiming_init(self.weight, getattr(self, "bias", None))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, getattr(self, "bias", None))


# ----- normalisation --------------------------------------------------------------------------

@register_op
class BatchNorm(Op):
    """Batch normalisation over channels (``(C, H, W)``) or features (``(D,)``)."""

    name = "batch_norm"
    attrs = {"affine": Attr(bool, True, "learnable scale and shift"),
             "eps": Attr(float, 1e-5, "added to the variance"),
             "momentum": Attr(float, 0.1, "running-statistics update rate")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [1, 3], "batch_norm")
        return tuple(in_shapes[0])

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if attrs["affine"] else {}

    @classmethod
    def buffer_shapes(cls, attrs, in_shapes):
        return {"running_mean": (in_shapes[0][0],), "running_var": (in_shapes[0][0],)}

    def reset_parameters(self) -> None:
        self.running_var.fill_(1.0)
        if self.cfg["affine"]:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, batch_stats: bool = False) -> Tensor:
        """``batch_stats=True`` normalises with this batch's statistics and leaves the running
        statistics untouched (how predicted weights are scored)."""
        c = self.cfg
        w, b = getattr(self, "weight", None), getattr(self, "bias", None)
        if batch_stats:
            return F.batch_norm(x, None, None, w, b, True, 0.0, c["eps"])
        return F.batch_norm(x, self.running_mean, self.running_var, w, b, self.training,
                            c["momentum"], c["eps"])


@register_op
class LayerNorm(Op):
    """Layer normalisation over the last dimension."""

    name = "layer_norm"
    attrs = {"eps": Attr(float, 1e-5, "added to the variance")}

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        return {"weight": (in_shapes[0][-1],), "bias": (in_shapes[0][-1],)}

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.cfg["eps"])


# ----- activations ----------------------------------------------------------------------------

def _activation(op_name: str, fn: Callable[[Tensor], Tensor], doc: str) -> type[Op]:
    cls = type(op_name.title().replace("_", ""), (Op,),
               {"name": op_name, "__doc__": doc, "forward": lambda self, x: fn(x)})
    return register_op(cls)


Relu = _activation("relu", F.relu, "max(x, 0)")
Relu6 = _activation("relu6", F.relu6, "min(max(x, 0), 6)")
Gelu = _activation("gelu", F.gelu, "Gaussian error linear unit")
Silu = _activation("silu", F.silu, "x * sigmoid(x)")
Hardswish = _activation("hardswish", F.hardswish, "x * relu6(x + 3) / 6")
Tanh = _activation("tanh", torch.tanh, "hyperbolic tangent")
Sigmoid = _activation("sigmoid", torch.sigmoid, "logistic sigmoid")


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
    return _spatial_out(full, in_shapes[0], in_shapes[0][0], what)


@register_op
class AvgPool(Op):
    """Average pooling over ``k x k`` windows."""

    name = "avg_pool"
    attrs = {**_POOL, "count_include_pad": Attr(bool, True, "count padded zeros in the mean")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        return _pool_out(attrs, in_shapes, "avg_pool")

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.avg_pool2d(x, c["kernel_size"], c["stride"] or c["kernel_size"], c["padding"],
                            count_include_pad=c["count_include_pad"])


@register_op
class MaxPool(Op):
    """Max pooling over ``k x k`` windows."""

    name = "max_pool"
    attrs = dict(_POOL)

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        return _pool_out(attrs, in_shapes, "max_pool")

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.max_pool2d(x, c["kernel_size"], c["stride"] or c["kernel_size"], c["padding"])


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
