"""MLP space: variable depth, and per hidden layer a width and an activation.

For vector inputs (MNIST-1D, tabular data); an input of higher rank (an image) is flattened
first, so the space also runs on images. A candidate is ``depth`` hidden layers, each
``linear -> norm -> activation``, then a linear classifier. The norm (none, batch_norm or
layer_norm) is one choice per candidate, applied after every hidden linear.

Shapes: (D,) -linear-> (width_1,) -> ... -> (width_depth,) -linear-> (num_classes,)

Encoding: the default ``name=value`` pairs, in the order the choices are made, e.g.
``depth=2,norm=layer_norm,l1_width=64,l1_act=relu,l2_width=128,l2_act=gelu``.

Example:
    >>> space = MLPSpace()
    >>> cand = space.replay("depth=1,norm=none,l1_width=32,l1_act=tanh")
    >>> [cand.graph.nodes[n]["op"] for n in ("l1_linear", "l1_act", "classifier")]
    ['linear', 'tanh', 'linear']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from hypernas.errors import SpaceError
from hypernas.spaces.space import SearchSpace, SpaceConfig, check_positive_ints

__all__ = ["MLPConfig", "MLPSpace", "ACTIVATIONS", "NORMS"]

ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "hardswish", "tanh", "sigmoid")  # allowed ops
NORMS = ("none", "batch_norm", "layer_norm")  # "none" leaves the norm out


@dataclass(frozen=True)
class MLPConfig(SpaceConfig):
    """Depth range and the per-layer choices; tuples are choices."""

    input_shape: tuple[int, ...] = (40,)  # MNIST-1D vectors; higher ranks are flattened first
    num_classes: int = 10  # classifier outputs
    min_depth: int = 1  # fewest hidden layers
    max_depth: int = 4  # most hidden layers
    widths: tuple[int, ...] = (32, 64, 128, 256)  # hidden width, per layer
    activations: tuple[str, ...] = ("relu", "gelu", "silu", "tanh")  # per layer, from ACTIVATIONS
    norms: tuple[str, ...] = NORMS  # one per candidate, after every hidden linear


class MLPSpace(SearchSpace):
    """Multilayer perceptrons of 1 to ``max_depth`` hidden layers."""

    name = "mlp"
    description = "MLP with variable depth; per layer width and activation; one norm choice"
    Config = MLPConfig
    config: MLPConfig

    def check_config(self) -> None:
        cfg = self.config
        for key in ("input_shape", "widths", "num_classes", "min_depth", "max_depth"):
            check_positive_ints("mlp", key, getattr(cfg, key), unique=key == "widths")
        if cfg.min_depth > cfg.max_depth:
            raise SpaceError(f"min_depth={cfg.min_depth} exceeds max_depth={cfg.max_depth}; "
                             "lower min_depth or raise max_depth")
        _check_names("activations", cfg.activations, ACTIVATIONS)
        _check_names("norms", cfg.norms, NORMS)

    def size(self) -> int:
        cfg = self.config
        layer = len(cfg.widths) * len(cfg.activations)
        return len(cfg.norms) * sum(layer ** d for d in range(cfg.min_depth, cfg.max_depth + 1))

    def define(self, trial: Any) -> nx.DiGraph:
        cfg, b = self.config, self.builder()
        x = b.input if len(cfg.input_shape) == 1 else b.add("flatten", b.input, name="flatten")
        depth = trial.suggest_int("depth", cfg.min_depth, cfg.max_depth)
        norm = trial.suggest_categorical("norm", cfg.norms)
        for i in range(1, depth + 1):
            width = trial.suggest_categorical(f"l{i}_width", cfg.widths)
            act = trial.suggest_categorical(f"l{i}_act", cfg.activations)
            x = b.add("linear", x, out_features=width, name=f"l{i}_linear")
            if norm != "none":
                x = b.add(norm, x, name=f"l{i}_norm")
            x = b.add(act, x, name=f"l{i}_act")
        b.output(b.add("linear", x, out_features=cfg.num_classes, name="classifier"))
        return b.build()



def _check_names(key: str, names: Any, allowed: tuple[str, ...]) -> None:
    if not (isinstance(names, tuple) and names):
        raise SpaceError(f"mlp setting {key} must be a non-empty tuple of names from "
                         f"{', '.join(allowed)}; got {names!r}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SpaceError(f"mlp setting {key} has unknown choice(s) {unknown}; pick from "
                         f"{', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise SpaceError(f"mlp setting {key} repeats a choice: {names}; list each once")
