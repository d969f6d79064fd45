"""NAS-Bench-201: a 4-node cell with 6 edges, each one of 5 ops, in a fixed ResNet-like skeleton.

Cell (Dong & Yang, ICLR 2020): node 0 is the cell input; node j sums ``op(j<-i)(node i)`` over
``i < j``; node 3 is the cell output. Ops: ``none`` (zero), ``skip_connect``, ``nor_conv_1x1``,
``nor_conv_3x3`` (ReLU-Conv-BN) and ``avg_pool_3x3``. 5^6 = 15,625 cells.

Skeleton: 3x3 stem conv + BN at C channels; three stages of N cells at C, 2C, 4C channels, joined
by residual reduction blocks (ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2 + Conv1x1);
BN + ReLU, global average pooling and a linear classifier.

Encodings: the NB201 arch string ``|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|...~2|``
(the primary encoding) or the 6-digit code in edge order (1<-0),(2<-0),(2<-1),(3<-0),(3<-1),(3<-2)
with ops numbered 0-4 in the order above, e.g. ``"331003"``.

Example:
    >>> space = NB201Space(input_shape=(1, 28, 28), N=1)
    >>> cand = space.replay("331003")
    >>> space.code(cand.params)
    '331003'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import networkx as nx

from hypernas.errors import EncodingError, SpaceError
from hypernas.graphs.builder import GraphBuilder
from hypernas.spaces.space import SearchSpace, SpaceConfig

__all__ = ["NB201Config", "NB201Space", "OPS", "EDGES"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), in NB201's order


def _edge_name(edge: tuple[int, int]) -> str:
    return f"{edge[0]}<-{edge[1]}"


@dataclass(frozen=True)
class NB201Config(SpaceConfig):
    """The NB201 skeleton. Its published benchmark used C=16, N=5, 3x32x32 CIFAR inputs."""

    input_shape: tuple[int, ...] = (3, 32, 32)  # (channels, height, width); H, W divisible by 4
    num_classes: int = 10  # classifier outputs
    C: int = 16  # channels of the first stage (then 2C, 4C)
    N: int = 5  # cells per stage


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell search space in its standard skeleton."""

    name = "nb201"
    description = "NAS-Bench-201 cell: 6 edges x 5 ops in a 3-stage ResNet skeleton"
    Config = NB201Config

    def check_config(self) -> None:
        cfg = self.config
        if len(cfg.input_shape) != 3:
            raise SpaceError(f"nb201 needs image inputs (C, H, W), got input_shape "
                             f"{cfg.input_shape}; use the mlp space for vectors")
        if cfg.input_shape[1] % 4 or cfg.input_shape[2] % 4:
            raise SpaceError(f"nb201 halves the resolution twice, so height and width must be "
                             f"divisible by 4; got {cfg.input_shape[1]}x{cfg.input_shape[2]}: "
                             "pad or crop the inputs")
        if cfg.C < 1 or cfg.N < 1:
            raise SpaceError(f"nb201 needs C >= 1 and N >= 1, got C={cfg.C}, N={cfg.N}")

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    # ----- the definition -----------------------------------------------------------------------

    def define(self, trial: Any) -> nx.DiGraph:
        ops = {e: trial.suggest_categorical(_edge_name(e), OPS) for e in EDGES}
        cfg, b = self.config, self.builder()
        x = b.add("conv", b.input, out_channels=cfg.C, kernel_size=3, name="stem_conv")
        x = b.add("batch_norm", x, name="stem_bn")
        for stage in range(3):
            if stage:
                x = _reduction(b, x, cfg.C * 2 ** stage, f"red{stage}")
            for k in range(cfg.N):
                x = _cell(b, x, ops, f"s{stage}c{k}")
        x = b.add("relu", b.add("batch_norm", x, name="last_bn"), name="last_relu")
        x = b.add("global_avg_pool", x, name="gap")
        b.output(b.add("linear", x, out_features=cfg.num_classes, name="classifier"))
        return b.build()

    # ----- encodings ----------------------------------------------------------------------------

    def encode(self, params: Mapping[str, Any]) -> str:
        """The NB201 arch string."""
        nodes = ["|" + "|".join(f"{params[_edge_name((j, i))]}~{i}" for i in range(j)) + "|"
                 for j in (1, 2, 3)]
        return "+".join(nodes)

    def decode(self, encoding: str) -> dict[str, Any]:
        """Parameters from an arch string or a 6-digit code."""
        text = encoding.strip()
        if len(text) == len(EDGES) and text.isdigit():
            if any(int(c) >= len(OPS) for c in text):
                raise EncodingError(f"nb201 code {text!r} has a digit above {len(OPS) - 1}; ops "
                                    f"are numbered 0-4: {', '.join(OPS)}")
            return {_edge_name(e): OPS[int(c)] for e, c in zip(EDGES, text)}
        return _parse_arch_string(text)

    def code(self, params: Mapping[str, Any]) -> str:
        """The 6-digit code of a candidate's params."""
        return "".join(str(OPS.index(params[_edge_name(e)])) for e in EDGES)


def _parse_arch_string(text: str) -> dict[str, Any]:
    hint = ("expected an NB201 arch string like '|nor_conv_3x3~0|+|none~0|skip_connect~1|+"
            "|avg_pool_3x3~0|nor_conv_1x1~1|none~2|' or a 6-digit code like '331003'")
    nodes = text.split("+")
    if len(nodes) != 3:
        raise EncodingError(f"cannot read nb201 encoding {text!r}: {hint}")
    params: dict[str, Any] = {}
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise EncodingError(f"cannot read node {j} ({node!r}) of {text!r}: {hint}")
        parts = node[1:-1].split("|")
        if len(parts) != j:
            raise EncodingError(f"node {j} of {text!r} needs {j} edges, got {len(parts)}: {hint}")
        for part in parts:
            op, _, src = part.partition("~")
            if op not in OPS:
                raise EncodingError(f"unknown op {op!r} in {text!r}; nb201 ops: {', '.join(OPS)}")
            if not src.isdigit() or int(src) >= j:
                raise EncodingError(f"edge {part!r} of node {j} in {text!r} must come from a node "
                                    f"0..{j - 1}, written op~i")
            params[_edge_name((j, int(src)))] = op
    if len(params) != len(EDGES):
        raise EncodingError(f"nb201 encoding {text!r} repeats an edge: {hint}")
    return params


# ----- skeleton pieces ------------------------------------------------------------------------

def _relu_conv_bn(b: GraphBuilder, x: str, c_out: int, k: int, stride: int, name: str,
                  label: str | None = None) -> str:
    x = b.add("relu", x, name=f"{name}_relu", label=label)
    x = b.add("conv", x, out_channels=c_out, kernel_size=k, stride=stride,
              padding=(k - 1) // 2, name=f"{name}_conv", label=label)
    return b.add("batch_norm", x, name=f"{name}_bn", label=label)


def _edge(b: GraphBuilder, x: str, op: str, name: str, label: str) -> str:
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return b.add("avg_pool", x, kernel_size=3, stride=1, padding=1, count_include_pad=False,
                     name=f"{name}_pool", label=label)
    k = 1 if op == "nor_conv_1x1" else 3
    return _relu_conv_bn(b, x, b.shape(x)[0], k, 1, name, label)


def _cell(b: GraphBuilder, x: str, ops: Mapping[tuple[int, int], str], prefix: str) -> str:
    """One cell; a node whose every incoming edge is ``none`` is zero and drops out of sums."""
    value: dict[int, str | None] = {0: x}
    for j in (1, 2, 3):
        terms = [_edge(b, value[i], ops[(j, i)], f"{prefix}_e{j}{i}",
                       f"{prefix} {j}<-{i} {ops[(j, i)]}")
                 for i in range(j) if ops[(j, i)] != "none" and value[i] is not None]
        value[j] = (None if not terms else terms[0] if len(terms) == 1
                    else b.add("add", *terms, name=f"{prefix}_n{j}", label=f"{prefix} node {j}"))
    if value[3] is None:  # the cell's output is identically zero
        return b.add("zero", x, name=f"{prefix}_zero", label=f"{prefix} all-zero cell")
    return value[3]


def _reduction(b: GraphBuilder, x: str, c_out: int, prefix: str) -> str:
    """NB201's residual reduction block: halves the resolution, sets c_out channels."""
    a = _relu_conv_bn(b, x, c_out, 3, 2, f"{prefix}_a")
    a = _relu_conv_bn(b, a, c_out, 3, 1, f"{prefix}_b")
    s = b.add("avg_pool", x, kernel_size=2, stride=2, name=f"{prefix}_pool")
    s = b.add("conv", s, out_channels=c_out, kernel_size=1, name=f"{prefix}_shortcut")
    return b.add("add", a, s, name=f"{prefix}_add")
