"""A run made ready: its config, its space and dataset, and its hypernetwork trained.

A :class:`RunConfig` is everything that makes a run (space, data, resolution, hypernetwork,
its training, scoring) and is saved as ``runs/<name>/config.json``; :func:`start_run` creates or
reopens a run from one, :func:`load_run` reopens it, and both give a :class:`LoadedRun` (the
config with its space and resized dataset made ready), which every later stage takes.
:func:`train_run` trains the run's hypernetwork, resuming from its last checkpoint.

Example:
    >>> import tempfile
    >>> from hypernas.data import DataConfig
    >>> from hypernas.runs import Run
    >>> cfg = RunConfig(space="mlp", data=DataConfig(name="digits"), resolution=None)
    >>> loaded = start_run(Run("demo", root=tempfile.mkdtemp()), cfg)
    >>> loaded.space.name, loaded.data.input_shape
    ('mlp', (1, 8, 8))
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.dataset import DataConfig, Dataset, resize_dataset
from ..data.registry import load_dataset_from_config
from ..hypernet.model import GraphHyperNetwork, HyperNetConfig
from ..hypernet.trainer import HyperTrainConfig, HyperTrainer, load_checkpoint
from ..runs.store import Run, RunError, append_jsonl, read_jsonl, run_lock, write_jsonl
from ..spaces.space import SearchSpace, load_space
from ..spaces.trust import check_space_file, file_sha256, is_space_file, trust
from .scoring import ScoreConfig

__all__ = ["RunConfig", "LoadedRun", "materialise", "start_run", "load_run", "train_run",
           "portable_config"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that makes a run: saved as ``runs/<name>/config.json``."""

    space: str = "nb201"  # search-space name or .py path
    space_settings: dict[str, Any] = field(default_factory=dict)  # overrides of the space config
    data: DataConfig = DataConfig()  # dataset and its split
    resolution: int | None = None  # square image side after area resizing; None = as stored
    hypernet: HyperNetConfig = HyperNetConfig()  # census filled in by start_run
    train: HyperTrainConfig = HyperTrainConfig()  # how the hypernetwork trains
    score: ScoreConfig = ScoreConfig()  # how candidates are scored
    pretrained: str | None = None  # shipped hypernetwork the run starts from instead of
    # training (``ranking.pretrained``); ``train`` is then the config that trained it

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "space_settings": dict(self.space_settings),
                "data": self.data.to_dict(), "resolution": self.resolution,
                "hypernet": self.hypernet.to_dict(), "train": self.train.to_dict(),
                "score": self.score.to_dict(), "pretrained": self.pretrained}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        try:
            return cls(space=d["space"], space_settings=dict(d.get("space_settings", {})),
                       data=DataConfig(**d["data"]), resolution=d.get("resolution"),
                       hypernet=HyperNetConfig.from_dict(d["hypernet"]),
                       train=HyperTrainConfig(**d["train"]), score=ScoreConfig(**d["score"]),
                       pretrained=d.get("pretrained"))
        except (KeyError, TypeError) as err:
            raise RunError(f"run config is incomplete or from another version ({err}); start a "
                           "new run") from None


@dataclass
class LoadedRun:
    """A run's config with the things it names made ready."""

    run: Run
    config: RunConfig
    space: SearchSpace
    data: Dataset


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("hypernas", "torch", "networkx", "optuna"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "?"
    return out


def materialise(cfg: RunConfig) -> tuple[SearchSpace, Dataset]:
    """The search space and the (resized) dataset a run config names."""
    data = resize_dataset(load_dataset_from_config(cfg.data), cfg.resolution)
    settings = {"input_shape": data.input_shape, "num_classes": data.num_classes,
                **cfg.space_settings}
    return load_space(cfg.space, **settings), data


def start_run(run: Run, cfg: RunConfig) -> LoadedRun:
    """Create a run, or reopen it when everything but the training budget matches; the
    hypernetwork's shape census is taken from the space on creation."""
    if is_space_file(cfg.space):  # named by the caller: its code is theirs to run
        trust(cfg.space)
    if run.exists():
        check_space_file(run.read_config(), run.name)
        old = RunConfig.from_dict(run.read_config())
        hnet = dataclasses.replace(cfg.hypernet, space=old.hypernet.space,
                                   census=old.hypernet.census, slots=old.hypernet.slots)
        if dataclasses.replace(cfg, hypernet=hnet, train=old.train) != old:
            raise RunError(f"run {run.name!r} exists with a different setup (space, data, "
                           f"hypernet, scoring or shipped hypernetwork); pick a new --run name "
                           f"or delete {run.path}")
        cfg = dataclasses.replace(old, train=cfg.train)
        space, data = materialise(cfg)
        run.write_config({**run.read_config(), "train": cfg.train.to_dict()})
        return LoadedRun(run, cfg, space, data)
    space, data = materialise(cfg)
    made = HyperNetConfig.for_space(space, positional=cfg.hypernet.positional)
    cfg = dataclasses.replace(cfg, hypernet=dataclasses.replace(
        cfg.hypernet, space=space.name, census=made.census, slots=made.slots))
    hashed = {"space_sha256": file_sha256(cfg.space)} if is_space_file(cfg.space) else {}
    run.create({**cfg.to_dict(), "space_config": space.config.to_dict(),
                "versions": _versions(), **hashed})
    return LoadedRun(run, cfg, space, data)


def load_run(run: Run) -> LoadedRun:
    """Reopen an existing run (a space file it names must be unchanged and trusted:
    :mod:`hypernas.spaces.trust`)."""
    check_space_file(run.read_config(), run.name)
    cfg = RunConfig.from_dict(run.read_config())
    space, data = materialise(cfg)
    return LoadedRun(run, cfg, space, data)


def train_run(lr: LoadedRun, on_log: Callable[[dict[str, Any]], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train (or keep training) the run's hypernetwork; every logged row goes to the log file.
    A run started from a shipped hypernetwork gets its weights as the checkpoint instead (it is
    then trained to the end of its recorded config: nothing is left to do)."""
    with run_lock(lr.run, "train", "trained"):  # a second train would log every step twice
        if lr.config.pretrained:
            from .pretrained import install

            if not lr.run.checkpoint_path.exists():
                install(lr)
            # nothing to train (and an ensemble cannot be): report what the checkpoint holds
            _, _, meta = load_checkpoint(lr.run.checkpoint_path, lr.config.hypernet)
            return {"step": int(meta["step"]), "elapsed": float(meta["elapsed"]),
                    "nan_skipped": int(meta.get("nan_skipped", 0))}
        torch.manual_seed(lr.config.train.seed)
        hnet = GraphHyperNetwork(lr.config.hypernet)

        def log(row: dict[str, Any]) -> None:
            append_jsonl(lr.run.train_log_path, row)
            if on_log is not None:
                on_log(row)

        trainer = HyperTrainer(hnet, lr.space, lr.data.train, lr.config.train,
                               checkpoint=lr.run.checkpoint_path, log=log)
        _trim_log(lr.run, trainer.step)
        return trainer.fit(should_stop)


def _trim_log(run: Run, step: int) -> None:
    """Drop logged rows past the checkpoint's step: a kill since the last checkpoint left rows
    of steps that training now does again (the log would show them twice)."""
    path = run.train_log_path
    if not path.exists():
        return
    rows = list(read_jsonl(path))
    kept = [r for r in rows if r.get("step", 0) <= step]
    if len(kept) < len(rows):
        write_jsonl(path, kept)


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with a ``.py`` space path and an ``npz`` data path made absolute, since the
    workers' working directory is not the driver's (the files must exist on every node)."""
    out = {**config, "data": dict(config["data"])}
    if str(out["space"]).endswith(".py"):
        out["space"] = str(Path(out["space"]).resolve())
    if out["data"].get("path"):
        out["data"]["path"] = str(Path(out["data"]["path"]).resolve())
    return out
