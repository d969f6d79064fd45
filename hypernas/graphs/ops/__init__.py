"""The op registry: every node of an architecture graph names one of these ops.

An op is a small ``nn.Module`` that knows, from its attributes and input shapes alone, its
output shape and the shapes of its parameters. That is what lets a hypernetwork emit weights
for a network that has never been built. Shapes never include the batch dimension:
``(C, H, W)`` for feature maps, ``(D,)`` for vectors, ``(T, D)`` for token sequences.

Example:
    >>> import hypernas.graphs.ops as ops
    >>> conv = ops.get_op("conv")
    >>> conv.infer_shape({"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": -1,
    ...                   "dilation": 1, "groups": 1, "bias": False}, [(3, 32, 32)])
    (8, 16, 16)
"""

from . import layers, structure, tensors  # noqa: F401  (importing them registers every shipped op)
from ._base import REQUIRED, Attr, Op, Shape, get_op, list_ops, register_op
from .layers import BatchNorm

__all__ = ["Attr", "Op", "Shape", "register_op", "get_op", "list_ops", "REQUIRED", "BatchNorm"]
