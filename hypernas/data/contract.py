"""What a raw input goes through before a model sees it: the input contract of a dataset.

A model trained by hypernas never saw raw pixels: Fashion-MNIST images are scaled to [0, 1],
standardised with the training pixels' mean and standard deviation and area-resized (28 -> 16
for the default search). A user who feeds an exported model the raw test images must do the
same, exactly: a guessed resize costs points (bilinear instead of area interpolation took one
user's ONNX model from 0.874 to 0.780 test accuracy). :class:`InputContract` records the whole
contract (as timm's ``pretrained_cfg`` does for its models) and :class:`Preprocess` applies it
as an ``nn.Module``, built only from multiplications and matrix products so that it exports to
ONNX and ``torch.export`` unchanged (the model card carries the contract; an export can put the
preprocessing inside its ONNX / ``.pt2`` graph).

Example:
    >>> c = InputContract(raw_shape=(1, 4, 4), scale=1 / 255, mean=(0.5,), std=(0.25,),
    ...                   input_size=(1, 2, 2))
    >>> Preprocess(c)(torch.full((1, 4, 4), 255.0)).tolist()
    [[[[2.0, 2.0], [2.0, 2.0]]]]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import HypernasError

__all__ = ["InputContract", "Preprocess", "area_matrix"]


@dataclass(frozen=True)
class InputContract:
    """Raw input -> model input: ``((raw * scale) - mean) / std`` per channel, then resized
    to ``input_size`` by ``interpolation`` (``"area"``: each output pixel the mean of the input
    pixels it covers, as ``torch.nn.functional.interpolate(mode="area")``)."""

    raw_shape: tuple[int, ...]  # one raw input, channels first: (1, 28, 28)
    scale: float = 1.0  # raw values times this lie in [0, 1] (1/255 for 8-bit images)
    mean: tuple[float, ...] = (0.0,)  # per channel (or one for all), after scaling
    std: tuple[float, ...] = (1.0,)
    input_size: tuple[int, ...] = ()  # what the model takes, e.g. (1, 16, 16); () = raw_shape
    interpolation: str | None = "area"  # how images are resized to input_size (None: never)
    raw_range: tuple[float, float] = (0.0, 255.0)  # the raw values' range
    layout: str = "NCHW"  # batch, channels, height, width (a grey image may omit C)
    channels: str = "grayscale"  # what the channels are, in order
    labels: tuple[str, ...] = ()  # class names, by label index

    def __post_init__(self) -> None:
        if not self.input_size:
            object.__setattr__(self, "input_size", tuple(self.raw_shape))
        if any(s <= 0 for s in self.std) or self.scale <= 0:
            raise HypernasError(f"an input contract needs positive std and scale, got std "
                                f"{self.std} and scale {self.scale}")
        if self.interpolation not in (None, "area"):
            raise HypernasError(f"interpolation {self.interpolation!r} is not supported; "
                                "hypernas resizes by area")

    def resized(self, input_size: tuple[int, ...]) -> "InputContract":
        """The same contract for a model taking ``input_size`` inputs."""
        return dataclasses.replace(self, input_size=tuple(input_size))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputContract":
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
                          if k in known})
        except TypeError as e:
            raise HypernasError(f"not an input contract ({e}); export the model again") from e


def area_matrix(n_in: int, n_out: int) -> Tensor:
    """``(n_out, n_in)`` weights of area interpolation along one axis: row i averages the input
    positions ``floor(i * n_in / n_out)`` to ``ceil((i + 1) * n_in / n_out) - 1`` (what
    ``interpolate(mode="area")``, i.e. adaptive average pooling, does).

    >>> area_matrix(4, 2).tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    """
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class Preprocess(nn.Module):
    """Raw inputs ``(N, *raw_shape)`` (or ``(N, H, W)`` for one channel; any dtype, e.g. the
    uint8 images as stored) -> the model's inputs ``(N, *input_size)``, float32."""

    def __init__(self, contract: InputContract) -> None:
        super().__init__()
        self.contract = contract
        channels = contract.raw_shape[0] if len(contract.raw_shape) == 3 else 1
        shape = (1, channels, 1, 1) if len(contract.raw_shape) == 3 else (1,)
        mean = torch.tensor(contract.mean, dtype=torch.float32).expand(channels).reshape(shape)
        std = torch.tensor(contract.std, dtype=torch.float32).expand(channels).reshape(shape)
        self.register_buffer("shift", (mean / std).clone(), persistent=False)
        self.register_buffer("gain", (contract.scale / std).clone(), persistent=False)
        self.resize = (len(contract.raw_shape) == 3 and contract.interpolation is not None
                       and tuple(contract.raw_shape[1:]) != tuple(contract.input_size[1:]))
        if self.resize:
            (h, w), (oh, ow) = contract.raw_shape[1:], contract.input_size[1:]
            self.register_buffer("rows", area_matrix(h, oh), persistent=False)
            self.register_buffer("cols", area_matrix(w, ow).T.contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.float32)
        if len(self.contract.raw_shape) == 3 and x.dim() == 3:  # (N, H, W) grey images
            x = x.unsqueeze(1)
        x = x * self.gain - self.shift
        if self.resize:
            x = self.rows @ x @ self.cols  # area interpolation as two matrix products
        return x
