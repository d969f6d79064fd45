"""Macro CNN space: stages of MobileNetV2 blocks whose depth, kernel, expansion and width vary.

Once-for-All style (Cai et al., ICLR 2020): a fixed 3x3 stem, stages of inverted-residual (MBConv)
blocks, and a fixed head (1x1 conv, global average pooling, linear). Each stage picks its depth;
each block picks its depthwise kernel, its expansion ratio and its output width; every block after
the first of a stage also picks whether to add a residual connection (through a 1x1 conv + BN
projection when its input and output widths differ). The first block of a stage applies the stage
stride and takes no residual. Candidates therefore differ in how many layers they have, not only
in what the layers do.

MBConv block, shapes without the batch dim:
    (C, H, W) -1x1 conv, BN, ReLU6-> (C*e, H, W)      (left out when e == 1)
              -kxk dw_conv/s, BN, ReLU6-> (C*e, H/s, W/s) -1x1 conv, BN-> (width, H/s, W/s)

Encoding: blocks stage by stage as ``k<kernel>e<expand>w<width>``, a trailing ``+`` for a
residual add, blocks separated by ``,`` and stages by ``|``. ``name=value`` pairs
(``s1_depth=1,s1_b1_kernel=3,...``) are read too.

Inputs must be at least as large as the network's total stride (stem_stride times every stage
stride); :meth:`MacroSpace.check_config` refuses smaller ones rather than silently changing the
strides. The defaults take 28x28 to 7x7, 32x32 to 8x8 and 8x8 to 2x2.

Example:
    >>> space = MacroSpace()
    >>> cand = space.replay("k3e1w16|k5e6w24,k3e3w32+|k7e3w64")
    >>> cand.params["s2_depth"], cand.params["s2_b2_residual"]
    (2, True)
    >>> space.replay(cand.params).encoding == cand.encoding
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import networkx as nx

from hypernas.errors import EncodingError, SpaceError
from hypernas.graphs.builder import GraphBuilder
from hypernas.spaces.space import SearchSpace, SpaceConfig, check_positive_ints

__all__ = ["MacroConfig", "MacroSpace"]

_BLOCK = re.compile(r"k(\d+)e(\d+)w(\d+)(\+?)")
_FORMAT = ("macro encodes a block as k<kernel>e<expand>w<width> with a trailing '+' for a "
           "residual add, blocks separated by ',' and stages by '|', e.g. "
           "'k3e1w16|k5e6w24,k3e3w32+|k7e3w64'")


@dataclass(frozen=True)
class MacroConfig(SpaceConfig):
    """The skeleton and the per-block choices. Tuples are choices unless a comment says not."""

    input_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W), Fashion-MNIST-sized
    num_classes: int = 10  # classifier outputs
    stem_channels: int = 16  # width of the fixed 3x3 stem conv
    stem_stride: int = 1  # stem stride; 2 suits inputs of 64x64 and larger
    stage_widths: tuple[int, ...] = (16, 32, 64)  # fixed base width of each stage
    stage_strides: tuple[int, ...] = (1, 2, 2)  # fixed first-block strides: 28->28->14->7
    width_mults: tuple[float, ...] = (0.5, 0.75, 1.0)  # block width = stage width x one of these
    width_divisor: int = 4  # widths round to a multiple of this (8 would merge 0.75 and 1.0 of 16)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)  # depthwise kernels; odd, so stride 1 keeps H x W
    expand_ratios: tuple[int, ...] = (1, 3, 6)  # hidden = input width x this; 1: no expand
    min_depth: int = 1  # fewest blocks in a stage
    max_depth: int = 4  # most blocks in a stage
    head_channels: int = 256  # width of the head's 1x1 conv (4x the last stage's base width)


class MacroSpace(SearchSpace):
    """MobileNetV2 / Once-for-All macro space: depth per stage; kernel, expansion, width and
    residual per block."""

    name = "macro"
    description = ("MobileNetV2 blocks in stages of variable depth; per block kernel, expansion, "
                   "width and residual")
    Config = MacroConfig
    config: MacroConfig

    def check_config(self) -> None:
        cfg = self.config
        for key in ("input_shape", "stage_widths", "stage_strides", "kernel_sizes",
                    "expand_ratios"):
            check_positive_ints("macro", key, getattr(cfg, key),
                                unique=key in ("kernel_sizes", "expand_ratios"))
        for key in ("num_classes", "stem_channels", "stem_stride", "width_divisor", "min_depth",
                    "max_depth", "head_channels"):
            check_positive_ints("macro", key, getattr(cfg, key))
        if len(cfg.input_shape) != 3:
            raise SpaceError(f"macro needs image inputs (C, H, W), got input_shape="
                             f"{cfg.input_shape}; use the mlp space for vectors")
        if len(cfg.stage_strides) != len(cfg.stage_widths):
            raise SpaceError(f"stage_widths {cfg.stage_widths} and stage_strides "
                             f"{cfg.stage_strides} must have one entry per stage; make their "
                             "lengths equal")
        if any(k % 2 == 0 for k in cfg.kernel_sizes):
            raise SpaceError(f"kernel_sizes {cfg.kernel_sizes} must be odd so that a stride-1 "
                             "block keeps its map size for the residual add; drop the even ones")
        if not (cfg.width_mults and all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                        and m > 0 for m in cfg.width_mults)):
            raise SpaceError(f"width_mults must be a non-empty tuple of positive numbers, got "
                             f"{cfg.width_mults!r}")
        if cfg.min_depth > cfg.max_depth:
            raise SpaceError(f"min_depth={cfg.min_depth} exceeds max_depth={cfg.max_depth}; "
                             "lower min_depth or raise max_depth")
        reduction = cfg.stem_stride * math.prod(cfg.stage_strides)
        if min(cfg.input_shape[1:]) < reduction:
            raise SpaceError(f"a {cfg.input_shape[1]}x{cfg.input_shape[2]} input is smaller than "
                             f"the network's total stride {reduction} (stem_stride x "
                             f"stage_strides); use inputs of at least {reduction}x{reduction} or "
                             "set some stage_strides to 1")

    def width_choices(self, stage: int) -> tuple[int, ...]:
        """Widths a block of ``stage`` (0-based) may pick: base width x multiplier, rounded to
        ``width_divisor``; multipliers that round to the same width count once."""
        base, div = self.config.stage_widths[stage], self.config.width_divisor
        return tuple(sorted({max(div, int(base * m / div + 0.5) * div)
                             for m in self.config.width_mults}))

    def size(self) -> int:
        cfg, total = self.config, 1
        for stage in range(len(cfg.stage_widths)):
            block = len(cfg.kernel_sizes) * len(cfg.expand_ratios) * len(self.width_choices(stage))
            # depth d: the first block has `block` options, each later one 2 * block (residual)
            total *= sum(block * (2 * block) ** (d - 1)
                         for d in range(cfg.min_depth, cfg.max_depth + 1))
        return total

    # ----- the definition -----------------------------------------------------------------------

    def define(self, trial: Any) -> nx.DiGraph:
        cfg, b = self.config, self.builder()
        x = _conv_bn(b, b.input, cfg.stem_channels, 3, cfg.stem_stride, "stem", act=True)
        for stage in range(len(cfg.stage_widths)):
            x = self._stage(b, x, trial, stage)
        x = _conv_bn(b, x, cfg.head_channels, 1, 1, "head", act=True)
        x = b.add("global_avg_pool", x, name="pool")
        b.output(b.add("linear", x, out_features=cfg.num_classes, name="classifier"))
        return b.build()

    def _stage(self, b: GraphBuilder, x: str, trial: Any, stage: int) -> str:
        cfg, s = self.config, f"s{stage + 1}"
        depth = trial.suggest_int(f"{s}_depth", cfg.min_depth, cfg.max_depth)
        for i in range(1, depth + 1):
            p = f"{s}_b{i}"
            kernel = trial.suggest_categorical(f"{p}_kernel", cfg.kernel_sizes)
            expand = trial.suggest_categorical(f"{p}_expand", cfg.expand_ratios)
            width = trial.suggest_categorical(f"{p}_width", self.width_choices(stage))
            residual = i > 1 and trial.suggest_categorical(f"{p}_residual", (False, True))
            stride = cfg.stage_strides[stage] if i == 1 else 1
            x = _mbconv(b, x, p, kernel, expand, width, stride, residual)
        return x

    # ----- encodings ----------------------------------------------------------------------------

    def encode(self, params: Mapping[str, Any]) -> str:
        """``k3e6w16,k5e3w16+|...``: one ``k<kernel>e<expand>w<width>[+]`` per block."""
        stages = []
        for stage in range(1, len(self.config.stage_widths) + 1):
            blocks = []
            for i in range(1, int(params[f"s{stage}_depth"]) + 1):
                p = f"s{stage}_b{i}"
                plus = "+" if i > 1 and str(params[f"{p}_residual"]) == "True" else ""
                blocks.append(f"k{params[f'{p}_kernel']}e{params[f'{p}_expand']}"
                              f"w{params[f'{p}_width']}{plus}")
            stages.append(",".join(blocks))
        return "|".join(stages)

    def decode(self, encoding: str) -> dict[str, Any]:
        """Parameters from the compact form (or from ``name=value`` pairs)."""
        if "=" in encoding:
            return super().decode(encoding)
        stages, n = encoding.strip().split("|"), len(self.config.stage_widths)
        if len(stages) != n:
            raise EncodingError(f"encoding {encoding!r} has {len(stages)} stage(s) but this macro "
                                f"space has {n}; {_FORMAT}")
        params: dict[str, Any] = {}
        for stage, text in enumerate(stages, start=1):
            params.update(self._decode_stage(stage, text, encoding))
        return params

    def _decode_stage(self, stage: int, text: str, encoding: str) -> dict[str, Any]:
        cfg, blocks = self.config, [t.strip() for t in text.split(",")]
        if not cfg.min_depth <= len(blocks) <= cfg.max_depth:
            raise EncodingError(f"stage {stage} of {encoding!r} has {len(blocks)} blocks; this "
                                f"space allows {cfg.min_depth} to {cfg.max_depth} per stage")
        params: dict[str, Any] = {f"s{stage}_depth": len(blocks)}
        for i, block in enumerate(blocks, start=1):
            m, p = _BLOCK.fullmatch(block), f"s{stage}_b{i}"
            if m is None:
                raise EncodingError(f"cannot read block {block!r} of stage {stage} in "
                                    f"{encoding!r}; {_FORMAT}")
            if i == 1 and m[4]:
                raise EncodingError(f"block {block!r} opens stage {stage} in {encoding!r} and "
                                    "cannot be residual (it changes resolution or width); drop "
                                    "its '+'")
            params.update({f"{p}_kernel": int(m[1]), f"{p}_expand": int(m[2]),
                           f"{p}_width": int(m[3])})
            if i > 1:
                params[f"{p}_residual"] = bool(m[4])
        return params


# ----- building blocks ------------------------------------------------------------------------

def _conv_bn(b: GraphBuilder, x: str, channels: int, kernel: int, stride: int, name: str,
             act: bool) -> str:
    """Conv, batch norm and (when ``act``) ReLU6, as nodes ``<name>_conv/_bn/_act``."""
    x = b.add("conv", x, out_channels=channels, kernel_size=kernel, stride=stride,
              name=f"{name}_conv")
    x = b.add("batch_norm", x, name=f"{name}_bn")
    return b.add("relu6", x, name=f"{name}_act") if act else x


def _mbconv(b: GraphBuilder, x: str, name: str, kernel: int, expand: int, width: int,
            stride: int, residual: bool) -> str:
    """Inverted residual block: (C, H, W) -> (width, H/stride, W/stride)."""
    c_in = b.shape(x)[0]
    h = _conv_bn(b, x, c_in * expand, 1, 1, f"{name}_expand", act=True) if expand > 1 else x
    h = b.add("dw_conv", h, kernel_size=kernel, stride=stride, name=f"{name}_dw",
              label=f"{name}: k{kernel} e{expand} w{width}" + (f" /{stride}" if stride > 1 else ""))
    h = b.add("relu6", b.add("batch_norm", h, name=f"{name}_dw_bn"), name=f"{name}_dw_act")
    h = _conv_bn(b, h, width, 1, 1, f"{name}_project", act=False)
    if not residual:
        return h
    skip = x if c_in == width else _conv_bn(b, x, width, 1, 1, f"{name}_skip", act=False)
    return b.add("add", h, skip, name=f"{name}_add")

