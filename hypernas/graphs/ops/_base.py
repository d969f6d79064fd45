"""The op base class, attribute schema and registry; shape helpers shared by the ops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...errors import ShapeError, UnknownOpError

__all__ = ["Attr", "Op", "Shape", "register_op", "get_op", "list_ops", "REQUIRED"]

Shape = tuple[int, ...]
REQUIRED: Any = object()  # sentinel: the attribute has no default


@dataclass(frozen=True)
class Attr:
    """Schema of one node attribute: its type, its default, and the smallest value allowed.

    ``in_id_at_default=False`` marks an attribute added to an op after candidate ids were
    published: while it holds its default it is left out of a graph's canonical id, so the ids
    of graphs that do not use it stay what they were."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    doc: str = ""
    min: int | None = None
    nullable: bool = False
    in_id_at_default: bool = True


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
        if not any(p.is_meta for p in self.parameters(recurse=False)):
            self.reset_parameters()  # weightless (meta) networks skip initialisation

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

    @classmethod
    def macs(cls, attrs: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per sample. Default: every element of the ``weight`` parameter
        is used once per output position: H*W of a ``(C, H, W)`` output for a convolution
        weight ``(C_out, C_in/groups, k, k)``, every leading index for a linear ``(out, in)``."""
        weight = cls.param_shapes(attrs, in_shapes).get("weight")
        if weight is None or len(weight) < 2:  # none, or a norm layer's elementwise scale
            return 0
        positions = math.prod(out_shape[:-1]) if len(weight) == 2 else math.prod(out_shape[1:])
        return math.prod(weight) * positions

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


def _kaiming_init(weight: Tensor, bias: Tensor | None) -> None:
    # The default init of torch's Conv2d / Linear: kaiming-uniform with a = sqrt(5).
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


