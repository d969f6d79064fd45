"""Training a graph hypernetwork over a search space, with checkpoints and resumption.

Each step draws a meta-batch of architectures from the space and one batch of images; the
hypernetwork predicts every architecture's weights (each from a random ensemble head), each
network classifies the same images with its predicted weights, and the mean cross-entropy trains
the hypernetwork. Batch norm uses batch statistics, as it will when candidates are scored.

A checkpoint (safetensors: hypernetwork weights, optimiser state, and the step, elapsed time and
config in its metadata) is written every ``checkpoint_every`` seconds and at the end; training
resumes from it after a kill. Non-finite losses skip their step and are counted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import tempfile
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import networkx as nx
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..data.dataset import Split
from ..errors import HypernasError
from ..graphs.graph import fingerprint
from ..graphs.network import Network, count_params
from ..spaces.space import Candidate, SearchSpace
from .ensemble import HyperNetEnsemble
from .features import OP_INDEX
from .model import GraphHyperNetwork, HyperNetConfig

__all__ = ["HyperTrainConfig", "HyperTrainer", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "checkpoint_metadata", "weight_samples", "checkpoint_from_bytes",
           "meta_network", "predicted_logits"]


class CheckpointError(HypernasError, ValueError):
    """A checkpoint is corrupt or belongs to another hypernetwork."""


@dataclass(frozen=True)
class HyperTrainConfig:
    """How a hypernetwork is trained."""

    steps: int | None = None  # optimisation steps; None = train for budget_minutes
    budget_minutes: float = 30.0  # wall-clock budget when steps is None
    meta_batch: int = 8  # architectures per step (all see the same images)
    large_draws: int = 3  # half of each meta-batch is the largest of this many draws (1: uniform)
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW peak learning rate, cosine-annealed over the steps/budget
    weight_decay: float = 1e-5  # AdamW decoupled weight decay
    grad_clip: float = 5.0  # max global gradient norm
    checkpoint_every: float = 120.0  # seconds between checkpoints
    log_every: int = 10  # steps between log lines
    seed: int = 0  # architecture and image sampling

    def __post_init__(self) -> None:
        for key in ("meta_batch", "large_draws", "batch_size", "log_every"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise HypernasError(f"training setting {key} must be a whole number >= 1, got "
                                    f"{getattr(self, key)!r}")
        if self.steps is not None and self.steps < 1:
            raise HypernasError(f"--steps must be at least 1, got {self.steps}")
        if self.budget_minutes <= 0:
            raise HypernasError(f"--budget must be positive minutes, got {self.budget_minutes}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NETS: "OrderedDict[tuple[str, int], Network]" = OrderedDict()
SIZE_CACHE = 1 << 16  # parameter counts a trainer remembers (an int each)


def meta_network(graph: nx.DiGraph, key: str | None = None) -> Network:
    """A weightless ``Network`` for ``graph`` (parameters on the meta device), cached by ``key``
    and the graph's fingerprint (encodings and canonical ids repeat across space settings and
    node names). Run it with ``torch.func.functional_call`` and batch statistics."""
    slot = None if key is None else (key, fingerprint(graph))
    if slot is not None and slot in _NETS:
        _NETS.move_to_end(slot)
        return _NETS[slot]
    with torch.device("meta"):
        net = Network(graph)
    if slot is not None:
        _NETS[slot] = net
        if len(_NETS) > 1024:
            _NETS.popitem(last=False)
    return net


def predicted_logits(net: Network, weights: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits of ``net`` run on ``x`` with predicted ``weights`` and batch statistics."""
    return torch.func.functional_call(net, weights, (x,), {"batch_stats": True}, strict=False)


def save_checkpoint(path: Path, hnet: GraphHyperNetwork | HyperNetEnsemble,
                    opt: torch.optim.Optimizer | None, meta: dict[str, Any]) -> None:
    """Write weights (+ optimiser state) atomically; ``meta`` goes into the file's metadata.
    An ensemble is written as its members' weights and config with their number."""
    tensors = {f"hnet.{k}": v.detach().cpu().contiguous() for k, v in hnet.state_dict().items()}
    if opt is not None:
        for i, state in opt.state_dict()["state"].items():
            for k, v in state.items():
                tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    if isinstance(hnet, HyperNetEnsemble):
        meta = {**meta, "hypernet": hnet.member_config.to_dict(), "members": len(hnet.members)}
    else:
        meta = {**meta, "hypernet": hnet.config.to_dict()}
        meta.pop("members", None)
    metadata = {"hypernas": json.dumps(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def checkpoint_metadata(path: Path) -> dict[str, Any]:
    """A checkpoint's metadata (step, elapsed, the hypernetwork's config, ``members`` for an
    ensemble) without reading its tensors; KeyError for a file that is not a checkpoint."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return json.loads((fh.metadata() or {})["hypernas"])


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a missing, unreadable or foreign checkpoint file into a CheckpointError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}; train first") from None
    except (SafetensorError, KeyError, ValueError, TypeError, OSError, HypernasError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a hypernas checkpoint ({err}); "
                              "restore it, or delete it to train from scratch") from None


def weight_samples(path: Path) -> int:
    """How many weight samples the checkpoint's hypernetwork gives each candidate: its heads,
    times its members for an ensemble (what the scorer cuts the evaluation images into)."""
    with _reading(path):
        meta = checkpoint_metadata(path)
        return int(meta["hypernet"]["samples"]) * int(meta.get("members", 1))


def load_checkpoint(path: Path, config: HyperNetConfig | None = None
                    ) -> tuple[GraphHyperNetwork | HyperNetEnsemble, dict[str, Tensor],
                               dict[str, Any]]:
    """(hypernetwork, optimiser tensors, metadata) from a checkpoint; with ``config``, refuse a
    checkpoint made for a different hypernetwork. A checkpoint of several members (metadata
    ``members``) gives a :class:`HyperNetEnsemble` whose members have ``config``."""
    with _reading(path):
        tensors = load_file(str(path))
        meta = checkpoint_metadata(path)
        saved = HyperNetConfig.from_dict(meta["hypernet"])
    if config is not None and saved != config:
        diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                if v != getattr(config, k)}
        raise CheckpointError(f"checkpoint {path} was made for another hypernetwork (differs in "
                              f"{', '.join(diff)}); use the run it came from or a new --run name")
    state = {k[5:]: v for k, v in tensors.items() if k.startswith("hnet.")}
    opt_state = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}
    members = int(meta.get("members", 1))
    nets = [GraphHyperNetwork(saved) for _ in range(members)]
    names = [n for n, _ in nets[0].named_parameters()]
    parts = ([state] if members == 1 else
             [{k[len(f"members.{m}."):]: v for k, v in state.items()
               if k.startswith(f"members.{m}.")} for m in range(members)])
    meta["ops_added"] = max(_pad_vocabulary(part, opt_state if members == 1 else {}, names)
                            for part in parts)
    try:
        for net, part in zip(nets, parts):
            net.load_state_dict(part)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit its own config: {err}") from None
    return (nets[0] if members == 1 else HyperNetEnsemble(nets)), opt_state, meta


def _pad_vocabulary(state: dict[str, Tensor], opt_state: dict[str, Tensor],
                    names: list[str]) -> int:
    """Fit a checkpoint made before ops were appended to ``OP_VOCAB``: zero input weights for
    their one-hot columns (inserted before the shape features) and zero embeddings, in the
    weights and in the optimiser's moments; graphs of the old ops get the same weights as
    before. Returns how many ops were added (0 for a checkpoint of this vocabulary)."""
    if "op_embed.weight" not in state:
        return 0
    old, new = state["op_embed.weight"].shape[0], len(OP_INDEX)
    if old >= new:
        return 0

    def columns(t: Tensor) -> Tensor:
        return torch.cat([t[:, :old], t.new_zeros(t.shape[0], new - old), t[:, old:]], dim=1)

    def rows(t: Tensor) -> Tensor:
        return torch.cat([t, t.new_zeros(new - old, t.shape[1])])

    state["embed.weight"] = columns(state["embed.weight"])
    state["op_embed.weight"] = rows(state["op_embed.weight"])
    pad = {str(names.index("embed.weight")): columns, str(names.index("op_embed.weight")): rows}
    for key, value in list(opt_state.items()):
        index = key.partition(".")[0]
        if index in pad and value.dim() == 2:
            opt_state[key] = pad[index](value)
    return new - old



def checkpoint_from_bytes(data: bytes, config: HyperNetConfig | None = None
                          ) -> GraphHyperNetwork | HyperNetEnsemble:
    """The hypernetwork of a checkpoint file's bytes (as shipped to Ray workers once), checked
    against ``config`` like any checkpoint (:func:`load_checkpoint`)."""
    with tempfile.TemporaryDirectory(prefix="hypernas-") as tmp:
        path = Path(tmp) / "last.safetensors"
        path.write_bytes(data)
        hnet, _, _ = load_checkpoint(path, config)
    return hnet

def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


class HyperTrainer:
    """Trains ``hnet`` on ``space`` with images from ``train``; checkpoints to ``checkpoint``."""

    def __init__(self, hnet: GraphHyperNetwork, space: SearchSpace, train: Split,
                 cfg: HyperTrainConfig, checkpoint: Path | None = None,
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.hnet, self.space, self.train, self.cfg = hnet, space, train, cfg
        self.checkpoint, self.log = checkpoint, log
        self.opt = torch.optim.AdamW(hnet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.elapsed, self.nan_skipped = 0, 0.0, 0
        self._sizes: dict[str, int] = {}  # parameter counts by encoding (the large draws')
        if checkpoint is not None and checkpoint.exists():
            self._resume(checkpoint)

    def _resume(self, path: Path) -> None:
        saved, opt_state, meta = load_checkpoint(path, self.hnet.config)
        if isinstance(saved, HyperNetEnsemble):
            raise CheckpointError(f"checkpoint {path} holds an ensemble of {len(saved.members)} "
                                  "trained hypernetworks: it is used as it is and cannot be "
                                  "trained further; train a new --run to change it")
        self.hnet.load_state_dict(saved.state_dict())
        _restore_optimizer(self.opt, opt_state)
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.nan_skipped = int(meta.get("nan_skipped", 0))

    def progress(self) -> float:
        """Fraction of the steps or time budget done."""
        if self.cfg.steps is not None:
            return min(1.0, self.step / max(self.cfg.steps, 1))
        return min(1.0, self.elapsed / (60 * self.cfg.budget_minutes))

    def fit(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Train until the step count or budget is spent; returns a summary."""
        device = self.hnet.embed.weight.device
        last_save, started = time.perf_counter(), time.perf_counter() - self.elapsed
        window: list[tuple[float, float]] = []
        try:
            self._loop(should_stop, device, started, last_save, window)
        except KeyboardInterrupt:  # Ctrl-C or a SIGTERM the CLI turned into one: keep the steps
            if self.checkpoint is not None:
                self.save()
            raise
        if self.checkpoint is not None:
            self.save()
        return {"step": self.step, "elapsed": self.elapsed, "nan_skipped": self.nan_skipped}

    def _loop(self, should_stop: Callable[[], bool] | None, device: torch.device, started: float,
              last_save: float, window: list[tuple[float, float]]) -> None:
        """The steps, with a checkpoint every ``checkpoint_every`` seconds."""
        while self.progress() < 1.0 and not (should_stop and should_stop()):
            rng = random.Random(self.cfg.seed * 1_000_003 + self.step)
            loss, acc = self.train_step(rng, device)
            self.step += 1
            self.elapsed = time.perf_counter() - started
            if loss is None:
                self.nan_skipped += 1
            else:
                window.append((loss, acc))
            if self.step % self.cfg.log_every == 0 and window and self.log is not None:
                self.log(self._row(window))
                window = []
            if self.checkpoint is not None and time.perf_counter() - last_save > self.cfg.checkpoint_every:
                self.save()
                last_save = time.perf_counter()

    def _row(self, window: list[tuple[float, float]]) -> dict[str, Any]:
        return {"step": self.step, "elapsed": round(self.elapsed, 2),
                "loss": sum(l for l, _ in window) / len(window),
                "acc": sum(a for _, a in window) / len(window),
                "lr": self.opt.param_groups[0]["lr"], "nan_skipped": self.nan_skipped}

    def train_step(self, rng: random.Random, device: torch.device) -> tuple[float | None, float]:
        """One meta-batch step; returns (loss, accuracy), loss None when it was not finite."""
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * 0.5 * (1 + math.cos(math.pi * self.progress()))
        cands = [self._draw(rng, self.cfg.large_draws if i % 2 else 1)
                 for i in range(self.cfg.meta_batch)]
        heads = [rng.randrange(self.hnet.config.samples) for _ in cands]
        idx = torch.tensor([rng.randrange(len(self.train)) for _ in range(self.cfg.batch_size)])
        x, y = self.train.x[idx].to(device), self.train.y[idx].to(device)
        weights = self.hnet([c.graph for c in cands], heads)
        losses, correct = [], 0
        for cand, w in zip(cands, weights):
            logits = predicted_logits(meta_network(cand.graph, cand.encoding), w, x)
            losses.append(F.cross_entropy(logits, y))
            correct += int((logits.argmax(1) == y).sum())
        loss = torch.stack(losses).mean()
        self.opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None, 0.0
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.hnet.parameters(), self.cfg.grad_clip)
        if not torch.isfinite(norm):  # finite loss, non-finite gradients: skip the update too
            self.opt.zero_grad(set_to_none=True)
            return None, 0.0
        self.opt.step()
        return loss.item(), correct / (len(cands) * len(y))

    def _draw(self, rng: random.Random, draws: int) -> Candidate:
        """The candidate with the most parameters among ``draws`` random ones: large networks
        have the most weights to predict and get a larger share of training this way."""
        cands = [self.space.sample(rng) for _ in range(draws)]
        return max(cands, key=self._size) if draws > 1 else cands[0]

    def _size(self, cand: Candidate) -> int:
        """``count_params`` of a candidate, remembered by encoding (a draw of the same one
        again, common in a small space, costs nothing)."""
        if cand.encoding not in self._sizes:
            if len(self._sizes) >= SIZE_CACHE:
                self._sizes.clear()
            self._sizes[cand.encoding] = count_params(cand.graph)
        return self._sizes[cand.encoding]

    def save(self) -> None:
        assert self.checkpoint is not None
        save_checkpoint(self.checkpoint, self.hnet, self.opt,
                        {"step": self.step, "elapsed": self.elapsed,
                         "nan_skipped": self.nan_skipped, "train": self.cfg.to_dict()})
