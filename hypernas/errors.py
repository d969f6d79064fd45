"""Exceptions raised by hypernas. Each message names what is wrong and how to fix it."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HypernasError",
    "GraphError",
    "GraphFormatError",
    "CycleError",
    "InputNodeError",
    "OutputNodeError",
    "UnknownOpError",
    "NodeAttributeError",
    "ShapeError",
    "ArityError",
    "UnreachableNodeError",
    "SpaceError",
    "EncodingError",
]


class HypernasError(Exception):
    """Base class of every error hypernas raises on purpose."""


class GraphError(HypernasError, ValueError):
    """An architecture graph is invalid. ``node`` names the offending node, when there is one."""

    def __init__(self, message: str, node: Any = None) -> None:
        super().__init__(message)
        self.node = node


class GraphFormatError(GraphError):
    """A serialised graph (JSON) does not have the node-link layout hypernas writes."""


class CycleError(GraphError):
    """The graph has a cycle; architectures must be DAGs."""


class InputNodeError(GraphError):
    """The graph has no ``input`` node, or more than one."""


class OutputNodeError(GraphError):
    """The graph has no ``output`` node, or more than one."""


class UnknownOpError(GraphError):
    """A node's ``op`` is not in the op registry."""


class NodeAttributeError(GraphError):
    """A node attribute is missing, unknown, or of the wrong type."""


class ShapeError(GraphError):
    """Tensor shapes do not fit together at a node (channels, spatial size, rank)."""


class ArityError(GraphError):
    """A node has the wrong number of inputs for its op."""


class UnreachableNodeError(GraphError):
    """A node's output never reaches the graph's output (a dead branch)."""


class SpaceError(HypernasError, ValueError):
    """A search space is unknown, misconfigured, or cannot serve the request."""


class EncodingError(SpaceError):
    """An architecture encoding does not parse, or names choices the space does not have."""
