"""Real training of one candidate: the recipe behind truth sets, refinement and warm starts.

A :class:`TrainConfig` is the whole recipe (optimiser, schedule, data budget, input resolution,
seed); save it with every result so the number can be re-made.

Example:
    >>> import hypernas as hn
    >>> from hypernas.data import load_dataset
    >>> ds = prepare_dataset(load_dataset("digits"), TrainConfig(resolution=None))
    >>> space = hn.load_space("mlp", input_shape=ds.input_shape)
    >>> net = hn.Network(space.sample(0).graph)
    >>> result = train_network(net, ds.train, ds.val, TrainConfig(epochs=1, resolution=None))
    >>> 0.0 <= result.val_acc <= 1.0
    True
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.dataset import Dataset, Split, resize_dataset
from ..errors import HypernasError

__all__ = ["TrainConfig", "TrainResult", "prepare_dataset", "evaluate", "train_network"]


@dataclass(frozen=True)
class TrainConfig:
    """SGD with Nesterov momentum and a cosine schedule, as NAS-Bench-201 trains its cells."""

    epochs: int = 6  # passes over the training subset
    batch_size: int = 128  # images per step
    lr: float = 0.1  # peak learning rate (cosine-annealed to 0)
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 on every parameter
    train_size: int | None = 20_000  # class-balanced training subset; None = the whole split
    resolution: int | None = 16  # square input side after area resizing; None = as stored
    seed: int = 0  # weight init, subset and batch order
    grad_clip: float = 5.0  # max global gradient norm

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a training run ended with, plus its per-epoch curve."""

    val_acc: float
    val_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prepare_dataset(ds: Dataset, cfg: TrainConfig) -> Dataset:
    """``ds`` at the recipe's resolution (the training subset is taken in :func:`train_network`)."""
    return resize_dataset(ds, cfg.resolution)


@torch.no_grad()
def evaluate(net: nn.Module, split: Split, batch_size: int = 500,
             weights: Mapping[str, Tensor] | None = None, batch_stats: bool = False
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``net`` on ``split``; with ``weights``, through
    ``torch.func.functional_call``; ``batch_stats`` normalises with each batch's statistics."""
    was_training = net.training
    net.eval()
    device = next(iter(net.parameters()), torch.empty(0)).device
    correct, loss = 0, 0.0
    for x, y in split.batches(batch_size):
        x, y = x.to(device), y.to(device)
        if weights is None:
            logits = net(x, batch_stats=batch_stats)
        else:
            logits = torch.func.functional_call(net, dict(weights), (x,), {"batch_stats": batch_stats})
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
    net.train(was_training)
    return correct / len(split), loss / len(split)


def train_network(net: nn.Module, train: Split, val: Split, cfg: TrainConfig,
                  on_epoch: Callable[[dict[str, float]], None] | None = None,
                  state: Mapping[str, Any] | None = None,
                  on_state: Callable[[dict[str, Any]], None] | None = None,
                  on_step: Callable[[float], None] | None = None) -> TrainResult:
    """Train ``net`` in place on ``train`` with the recipe ``cfg``; evaluate on ``val`` each epoch.

    ``on_epoch`` receives each epoch's row (epoch, train_loss, val_acc, val_loss); an exception
    it raises (e.g. a pruner's) stops training and propagates. Non-finite losses skip the step.

    ``on_state``, called after each epoch before ``on_epoch``, receives what resumes the training
    from that point: ``{"epoch", "optimizer", "scheduler", "history"}`` (the weights are
    ``net``'s own). Given back as ``state`` with ``net`` holding those weights, training goes on
    from the next epoch with the same batches and schedule as if it had never stopped.

    ``on_step`` receives each step's training loss (before that step's update; a non-finite one
    too), e.g. for the sum of training losses that estimates how fast a network fits.
    """
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise HypernasError(f"epochs and batch_size must be >= 1, got {cfg.epochs}, {cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    device = next(iter(net.parameters())).device
    subset = train.subset(cfg.train_size, seed=cfg.seed) if cfg.train_size else train
    steps = cfg.epochs * math.ceil(len(subset) / cfg.batch_size)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    start, history, first = time.perf_counter(), [], 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, first = [dict(row) for row in state["history"]], int(state["epoch"])
        if not 0 < first <= cfg.epochs or len(history) != first:
            raise HypernasError(f"a training state at epoch {first} with {len(history)} rows "
                                f"does not resume a {cfg.epochs}-epoch recipe")
        start -= history[-1]["seconds"]
    for epoch in range(first, cfg.epochs):
        net.train()
        total, count = 0.0, 0
        for x, y in subset.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(net(x), y)
            if on_step is not None:
                on_step(loss.item())
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                total, count = total + loss.item() * len(y), count + len(y)
            sched.step()
        evaluating = time.perf_counter()
        val_acc, val_loss = evaluate(net, val)
        now = time.perf_counter()
        row = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_acc": val_acc,
               "val_loss": val_loss, "seconds": now - start, "eval_seconds": now - evaluating}
        history.append(row)
        if on_state is not None:
            on_state({"epoch": epoch + 1, "optimizer": opt.state_dict(),
                      "scheduler": sched.state_dict(), "history": [dict(r) for r in history]})
        if on_epoch is not None:
            on_epoch(row)
    last = history[-1]
    return TrainResult(last["val_acc"], last["val_loss"], time.perf_counter() - start, history)
