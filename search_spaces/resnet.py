"""ResNet space written in plain PyTorch: three stages of basic blocks of varying depth and width.

An example of a space as ``define(trial, config) -> nn.Module`` (see
``hypernas.spaces.space.module_space``): the network is ordinary PyTorch, and hypernas imports each
candidate with ``torch.fx`` into an architecture graph its hypernetwork serves. Use it by path:
``hypernas sample search_spaces/resnet.py --data fashion-mnist``.

A candidate: a 3x3 stem conv (``stem`` channels), then stages 1-3, each ``sK_depth`` basic blocks
(conv-BN-ReLU-conv-BN plus a shortcut, a 1x1 conv-BN where the shape changes) of ``sK_width``
channels and kernel ``sK_kernel``, the first block of stages 2 and 3 halving the resolution;
global average pooling and a linear classifier.

Encoding: ``stem=16,s1_depth=2,s1_width=16,s1_kernel=3,s2_depth=1,...``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

STEMS = (8, 16, 24)
DEPTHS = (1, 3)  # fewest and most blocks per stage
WIDTHS = ((8, 16, 24), (16, 24, 32), (32, 48, 64))  # per stage
KERNELS = (3, 5)


class BasicBlock(nn.Module):
    """Two convolutions and a shortcut: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
    """A stem, stages of basic blocks, global pooling and a classifier."""

    def __init__(self, in_channels: int, stem: int, stages: list[tuple[int, int, int]],
                 num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU())
        blocks, c = [], stem
        for i, (depth, width, kernel) in enumerate(stages):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(c, width, kernel, stride))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def define(trial: Any, config: Any) -> nn.Module:
    """The candidate ``trial`` chooses, for ``config.input_shape`` and ``config.num_classes``."""
    stem = trial.suggest_categorical("stem", STEMS)
    stages = []
    for k, widths in enumerate(WIDTHS, start=1):
        depth = trial.suggest_int(f"s{k}_depth", *DEPTHS)
        width = trial.suggest_categorical(f"s{k}_width", widths)
        kernel = trial.suggest_categorical(f"s{k}_kernel", KERNELS)
        stages.append((depth, width, kernel))
    return ResNet(config.input_shape[0], stem, stages, config.num_classes)
