"""Graph boundary, convolution, linear, normalisation and activation ops."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ShapeError
from ._base import (
    REQUIRED,
    Attr,
    Op,
    Shape,
    _kaiming_init,
    _need_rank,
    _padding,
    _spatial_out,
    register_op,
)

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


def _weight_and_bias(weight: Shape, bias: bool) -> dict[str, Shape]:
    """A weight of shape ``weight`` and, with ``bias``, one bias per output (``weight[0]``)."""
    return {"weight": weight, "bias": (weight[0],)} if bias else {"weight": weight}


class _Affine(Op):
    """Ops with a weight (and maybe a bias), initialised as torch's Conv2d / Linear are."""

    def reset_parameters(self) -> None:
        _kaiming_init(self.weight, getattr(self, "bias", None))


@register_op
class Conv(_Affine):
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
        return _weight_and_bias((attrs["out_channels"], in_shapes[0][0] // g, k, k), attrs["bias"])

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.conv2d(x, self.weight, getattr(self, "bias", None), c["stride"], _padding(c),
                        c["dilation"], c["groups"])


@register_op
class DepthwiseConv(_Affine):
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
        return _weight_and_bias((c_out, 1, k, k), attrs["bias"])

    def forward(self, x: Tensor) -> Tensor:
        c = self.cfg
        return F.conv2d(x, self.weight, getattr(self, "bias", None), c["stride"], _padding(c),
                        c["dilation"], x.shape[1])


@register_op
class Linear(_Affine):
    """Affine map over the last dimension: ``y = x W^T + b`` (vectors, tokens, or a
    channels-last ``(H, W, C)`` map)."""

    name = "linear"
    attrs = {"out_features": Attr(int, REQUIRED, "output features", min=1),
             "bias": Attr(bool, True, "add a learnable bias")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [1, 2, 3], "linear")
        return (*in_shapes[0][:-1], attrs["out_features"])

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        return _weight_and_bias((attrs["out_features"], in_shapes[0][-1]), attrs["bias"])

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


Hardsigmoid = _activation("hardsigmoid", F.hardsigmoid, "relu6(x + 3) / 6")


@register_op
class GroupNorm(Op):
    """Group normalisation of a ``(C, H, W)`` map: channels in ``num_groups`` groups."""

    name = "group_norm"
    attrs = {"num_groups": Attr(int, REQUIRED, "channel groups; must divide the channels", min=1),
             "eps": Attr(float, 1e-5, "added to the variance"),
             "affine": Attr(bool, True, "learnable per-channel scale and shift")}

    @classmethod
    def infer_shape(cls, attrs, in_shapes):
        _need_rank(in_shapes[0], [3], "group_norm")
        if in_shapes[0][0] % attrs["num_groups"]:
            raise ShapeError(f"group_norm: {attrs['num_groups']} groups do not divide "
                             f"{in_shapes[0][0]} channels; pick num_groups dividing them")
        return tuple(in_shapes[0])

    @classmethod
    def param_shapes(cls, attrs, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if attrs["affine"] else {}

    def reset_parameters(self) -> None:
        if self.cfg["affine"]:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.cfg["num_groups"], getattr(self, "weight", None),
                            getattr(self, "bias", None), self.cfg["eps"])
