"""Run-level stages: train a hypernetwork for a run, then rank candidates with it or a proxy.

Each stage reads what the run folder holds and writes back into it, so any stage can be re-run
or resumed: training continues from the last checkpoint, ranking scores only candidates whose
canonical id has no row yet.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .data import DataConfig, Dataset, load_dataset_from_config
from .errors import HypernasError
from .hypernet.model import GraphHyperNetwork, HyperNetConfig
from .hypernet.trainer import HyperTrainConfig, HyperTrainer, load_checkpoint
from .proxies import list_proxies
from .runs import Run, RunError, append_jsonl, read_jsonl
from .scoring import ScoreConfig, eval_slices, score_hypernet, score_proxies
from .space import Candidate, SearchSpace, load_space
from .train import TrainConfig, prepare_dataset

__all__ = ["RunConfig", "start_run", "load_run", "train_run", "rank_run", "read_archs",
           "ArchLine", "ranking_rows"]


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

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "space_settings": dict(self.space_settings),
                "data": self.data.to_dict(), "resolution": self.resolution,
                "hypernet": self.hypernet.to_dict(), "train": self.train.to_dict(),
                "score": self.score.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        try:
            return cls(space=d["space"], space_settings=dict(d.get("space_settings", {})),
                       data=DataConfig(**d["data"]), resolution=d.get("resolution"),
                       hypernet=HyperNetConfig.from_dict(d["hypernet"]),
                       train=HyperTrainConfig(**d["train"]), score=ScoreConfig(**d["score"]))
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
    data = prepare_dataset(load_dataset_from_config(cfg.data), TrainConfig(resolution=cfg.resolution))
    settings = {"input_shape": data.input_shape, "num_classes": data.num_classes,
                **cfg.space_settings}
    return load_space(cfg.space, **settings), data


def start_run(run: Run, cfg: RunConfig) -> LoadedRun:
    """Create a run, or reopen it when everything but the training budget matches; the
    hypernetwork's shape census is taken from the space on creation."""
    if run.exists():
        old = RunConfig.from_dict(run.read_config())
        hnet = dataclasses.replace(cfg.hypernet, space=old.hypernet.space,
                                   census=old.hypernet.census, slots=old.hypernet.slots)
        if dataclasses.replace(cfg, hypernet=hnet, train=old.train) != old:
            raise RunError(f"run {run.name!r} exists with a different setup (space, data, "
                           f"hypernet or scoring); pick a new --run name or delete {run.path}")
        cfg = dataclasses.replace(old, train=cfg.train)
        space, data = materialise(cfg)
        run.write_config({**run.read_config(), "train": cfg.train.to_dict()})
        return LoadedRun(run, cfg, space, data)
    space, data = materialise(cfg)
    made = HyperNetConfig.for_space(space, positional=cfg.hypernet.positional)
    cfg = dataclasses.replace(cfg, hypernet=dataclasses.replace(
        cfg.hypernet, space=space.name, census=made.census, slots=made.slots))
    run.create({**cfg.to_dict(), "space_config": space.config.to_dict(),
                "versions": _versions()})
    return LoadedRun(run, cfg, space, data)


def load_run(run: Run) -> LoadedRun:
    """Reopen an existing run."""
    cfg = RunConfig.from_dict(run.read_config())
    space, data = materialise(cfg)
    return LoadedRun(run, cfg, space, data)


def train_run(lr: LoadedRun, on_log: Callable[[dict[str, Any]], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train (or keep training) the run's hypernetwork; every logged row goes to the log file."""
    torch.manual_seed(lr.config.train.seed)
    hnet = GraphHyperNetwork(lr.config.hypernet)

    def log(row: dict[str, Any]) -> None:
        append_jsonl(lr.run.train_log_path, row)
        if on_log is not None:
            on_log(row)

    trainer = HyperTrainer(hnet, lr.space, lr.data.train, lr.config.train,
                           checkpoint=lr.run.checkpoint_path, log=log)
    return trainer.fit(should_stop)


@dataclass(frozen=True)
class ArchLine:
    """One line of an architecture file: its number, text, and candidate or error."""

    line: int
    text: str
    candidate: Candidate | None
    error: str | None


def read_archs(space: SearchSpace, path: Path) -> list[ArchLine]:
    """Parse one encoding per line (blank lines and ``#`` comments skipped); bad lines are
    returned with their error, not raised."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise HypernasError(f"cannot read architecture file {path}: {err.strerror}") from None
    out = []
    for i, text in enumerate(lines, start=1):
        text = text.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(ArchLine(i, text, space.replay(text), None))
        except HypernasError as err:
            out.append(ArchLine(i, text, None, str(err)))
    return out


def ranking_rows(run: Run, label: str) -> dict[str, dict[str, Any]]:
    """Rows of a ranking by canonical id (the first row of an id wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(run.ranking_path(label)):
        rows.setdefault(row["id"], row)
    return rows


def missing_candidates(cands: Sequence[Candidate], have: dict[str, Any]) -> list[Candidate]:
    """Candidates whose canonical id is neither in ``have`` nor repeated earlier in ``cands``."""
    todo, seen = [], set(have)
    for cand in cands:
        if cand.id not in seen:
            seen.add(cand.id)
            todo.append(cand)
    return todo


def make_scorer(scorer: str, cfg: RunConfig, data: Dataset,
                hnet: GraphHyperNetwork | None = None, device: str | torch.device = "cpu",
                chunk: int = 16) -> Callable[[Sequence[Candidate]], list[dict[str, Any]]]:
    """A function from candidates to ranking rows (``score``, ``spread``, params, MACs ...) for
    ``scorer``: ``hypernet`` (give ``hnet``) or a proxy, on the run's fixed evaluation images."""
    if scorer == "hypernet":
        if hnet is None:
            raise HypernasError("the hypernet scorer needs a trained hypernetwork")
        hnet = hnet.to(device)
        slices = [[(x.to(device), y.to(device)) for x, y in part]
                  for part in eval_slices(data.val, cfg.score, hnet.config.samples)]

        def score(part: Sequence[Candidate]) -> list[dict[str, Any]]:
            return score_hypernet(hnet, part, slices, chunk)
        return score
    if scorer in list_proxies():
        fixed = data.val.subset(cfg.score.proxy_batch, seed=cfg.score.seed)
        x, y = fixed.x.to(device), fixed.y.to(device)

        def score_proxy(part: Sequence[Candidate]) -> list[dict[str, Any]]:
            rows = score_proxies([scorer], part, x, y, cfg.score.seed)
            return [{**r, "score": r[scorer], "spread": 0.0} for r in rows]
        return score_proxy
    raise HypernasError(f"unknown scorer {scorer!r}; known: hypernet, {', '.join(list_proxies())}")


def rank_run(lr: LoadedRun, cands: Sequence[Candidate], scorer: str = "hypernet",
             label: str | None = None, chunk: int = 16,
             on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> dict[str, dict]:
    """Score the candidates not yet in ranking ``label`` (default: the scorer's name), appending
    rows as they are computed; returns the whole ranking by id."""
    label = label or scorer
    path = lr.run.ranking_path(label)
    have = ranking_rows(lr.run, label)
    todo = missing_candidates(cands, have)
    hnet = None
    if scorer == "hypernet":
        hnet, _, _ = load_checkpoint(lr.run.checkpoint_path, lr.config.hypernet)
    score = make_scorer(scorer, lr.config, lr.data, hnet, chunk=chunk)
    for start in range(0, len(todo), chunk):
        rows = [{**r, "scorer": scorer} for r in score(todo[start:start + chunk])]
        for row in rows:
            append_jsonl(path, row)
            have[row["id"]] = row
        if on_rows is not None:
            on_rows(rows)
    return have
