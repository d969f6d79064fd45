"""A probe: the hypernetwork's graph embedding read out toward what one training recipe reaches.

The hypernet score is how well a candidate's *predicted* weights classify. A short training
recipe can reward something else: on the macro space at 5 epochs, how fast a network fits its
images, which the score does not follow (docs/BENCHMARKS.md, "What does rank the macro
truth"). The hypernetwork's GNN has embedded every candidate's graph on the way to its weights,
and that embedding holds more than the score uses. A probe is a ridge regression from it (the
node embeddings of the trained GNN, mean-pooled per graph; an ensemble's members side by side)
to the accuracies that candidates trained with one recipe reached (a search's screens, or a file
of trained candidates), its penalty chosen by k-fold cross-validation on those candidates alone.
It then ranks any candidate of the space from its graph, in milliseconds, without predicting a
weight. What it predicts is that recipe's accuracy, no other, and it is only as good as the
trainings it was fitted on: their number and spread are kept with it.

Example:
    >>> import torch
    >>> x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    >>> y = 0.8 + 0.01 * x[:, 0] - 0.02 * x[:, 3]
    >>> probe = fit_probe(x, y, recipe="toy")
    >>> probe.labels, probe.predict(x).argmax().item() == y.argmax().item()
    (40, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import torch
from torch import Tensor

from ..errors import HypernasError

__all__ = ["PROBE", "Probe", "fit_probe", "graph_embeddings", "probe_path", "save_probe",
           "load_probe", "MIN_LABELS", "PENALTIES", "WEAK"]

PROBE = "probe"  # the scorer's and its ranking's name
MIN_LABELS = 10  # trained candidates a probe needs (its cross-validation holds out a fifth)
WEAK = 0.2  # a held-out Spearman under this: a ranking by the probe is close to noise
PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge penalties tried, per labelled candidate


@torch.no_grad()
def graph_embeddings(hnet: Any, graphs: Sequence[nx.DiGraph], chunk: int = 16) -> Tensor:
    """``(graphs, dim)``: each graph's node embeddings from the hypernetwork's GNN, mean-pooled;
    for an ensemble, each member's side by side (``members x dim``)."""
    members = list(getattr(hnet, "members", [hnet]))
    out = []
    for start in range(0, len(graphs), chunk):
        part = []
        for member in members:
            was = member.training
            member.eval()
            batch = member.pack(list(graphs[start:start + chunk]))
            h = member.embed_graphs(batch)
            sums = torch.zeros(batch.num_graphs, h.shape[1], device=h.device)
            sums.index_add_(0, batch.graph, h)
            counts = torch.bincount(batch.graph, minlength=batch.num_graphs).clamp(min=1)
            part.append(sums / counts[:, None])
            member.train(was)
        out.append(torch.cat(part, dim=1))
    return torch.cat(out).cpu() if out else torch.empty(0, 0)


def _spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's correlation (ranks by order; ties broken by position)."""
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else 0.0


@dataclass(frozen=True)
class Probe:
    """A fitted read-out: ``predict(embeddings)`` is the accuracy the recipe would reach."""

    mean: tuple[float, ...]  # the features' standardisation, from the labelled candidates
    scale: tuple[float, ...]
    weights: tuple[float, ...]  # on the standardised features
    bias: float  # the labelled candidates' mean accuracy
    penalty: float  # chosen by cross-validation, per labelled candidate
    labels: int  # trained candidates it was fitted on
    label_sd: float  # their accuracies' standard deviation (what there was to tell apart)
    cv_spearman: float  # held-out predictions against those accuracies, at ``penalty``
    recipe: str | None = None  # what the accuracies are (the training that reached them)
    source: str | None = None  # where they came from

    def predict(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != len(self.weights):
            raise HypernasError(f"this probe reads {len(self.weights)} features per candidate, "
                                f"got shape {tuple(features.shape)}: it was fitted on another "
                                "hypernetwork; fit it again with hypernas probe RUN")
        z = (features.double() - torch.tensor(self.mean, dtype=torch.float64)) / torch.tensor(
            self.scale, dtype=torch.float64)
        return (z @ torch.tensor(self.weights, dtype=torch.float64) + self.bias).float()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Probe":
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            probe = cls(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in data.items() if k in fields})
        except TypeError as err:
            raise HypernasError(f"not a probe ({err}); fit it again with hypernas probe RUN") \
                from None
        if not len(probe.mean) == len(probe.scale) == len(probe.weights):
            raise HypernasError("a probe's mean, scale and weights differ in length; fit it "
                                "again with hypernas probe RUN")
        return probe


def _ridge(z: Tensor, y: Tensor, penalty: float) -> Tensor:
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    return torch.linalg.solve(z.T @ z + penalty * len(y) * eye, z.T @ (y - y.mean()))


def fit_probe(features: Tensor, accuracies: Sequence[float] | Tensor, *, recipe: str | None = None,
              source: str | None = None, folds: int = 5, seed: int = 0) -> Probe:
    """Fit a :class:`Probe` from ``(candidates, dim)`` embeddings to the accuracies those
    candidates reached; the penalty is the one of :data:`PENALTIES` whose held-out predictions
    (``folds``-fold, folds drawn with ``seed``) rank the accuracies best."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(accuracies, dtype=torch.float64)
    if x.dim() != 2 or len(x) != len(y):
        raise HypernasError(f"a probe needs one embedding per accuracy, got {tuple(x.shape)} "
                            f"and {len(y)}")
    if len(y) < MIN_LABELS:
        raise HypernasError(f"a probe needs at least {MIN_LABELS} trained candidates, got "
                            f"{len(y)}: screen or refine more, or give --truth FILE")
    if not torch.isfinite(y).all() or y.std() == 0:
        raise HypernasError("the trained candidates' accuracies must be finite and not all "
                            "equal: there is nothing to tell apart")
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-8)
    z = (x - mean) / scale
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    parts = [order[i::folds] for i in range(min(folds, len(y)))]

    def held_out(penalty: float) -> float:
        pred = torch.empty_like(y)
        for part in parts:
            keep = torch.ones(len(y), dtype=torch.bool)
            keep[part] = False
            w = _ridge(z[keep], y[keep], penalty)
            pred[part] = z[part] @ w + y[keep].mean()
        return _spearman(pred, y)

    cv = {p: held_out(p) for p in PENALTIES}
    best = max(PENALTIES, key=lambda p: (cv[p], p))  # ties: the stronger penalty
    w = _ridge(z, y, best)
    return Probe(mean=tuple(mean.tolist()), scale=tuple(scale.tolist()), weights=tuple(w.tolist()),
                 bias=float(y.mean()), penalty=best, labels=len(y), label_sd=float(y.std()),
                 cv_spearman=cv[best], recipe=recipe, source=source)


def probe_path(run: Any) -> Path:
    return run.path / "probe.json"


def save_probe(run: Any, probe: Probe) -> Path:
    """Write ``probe`` as the run's (atomically)."""
    from ..runs.store import write_json

    path = probe_path(run)
    write_json(path, probe.to_dict())
    return path


def load_probe(run: Any) -> Probe:
    """The run's probe (``hypernas probe RUN`` fits it), else the shipped hypernetwork's when
    the run ranks with one that ships a probe."""
    from .pretrained import run_or_shipped

    data = run_or_shipped(run, probe_path(run), "probe",
                          f"fit it again: hypernas probe {run.name}")
    if data is None:
        raise HypernasError(f"run {run.name!r} has no probe; fit one on trained candidates: "
                            f"hypernas probe {run.name} (its screens) or --truth FILE.jsonl")
    return Probe.from_dict(data)
