"""Scoring candidates: with hypernetwork-predicted weights (mean and spread over weight samples)
or with a zero-cost proxy, on a fixed evaluation set so scores are deterministic.

A hypernetwork score is ``-loss``: the mean cross-entropy on ``eval_size`` fixed, class-balanced
validation images, averaged over the hypernetwork's weight samples (ensemble heads); its spread is
the standard deviation over those samples. Batch norm uses the statistics of each fixed
evaluation batch. Higher scores are better for every scorer.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import Split
from .errors import HypernasError
from .hypernet.model import GraphHyperNetwork
from .hypernet.trainer import meta_network, predicted_logits
from .network import count_macs, count_params
from .proxies import list_proxies, score_proxy
from .space import Candidate

__all__ = ["ScoreConfig", "eval_batches", "score_hypernet", "score_proxies", "list_scorers"]


@dataclass(frozen=True)
class ScoreConfig:
    """How candidates are scored."""

    eval_size: int = 500  # fixed class-balanced validation images every candidate is scored on
    eval_batch: int = 250  # images per forward pass; batch norm normalises with each batch
    proxy_batch: int = 64  # images a zero-cost proxy sees
    seed: int = 0  # which images

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_scorers() -> list[str]:
    """``hypernet`` and every zero-cost proxy."""
    return ["hypernet", *list_proxies()]


def eval_batches(split: Split, cfg: ScoreConfig) -> list[tuple[Tensor, Tensor]]:
    """The fixed evaluation batches (same images, same order, every time)."""
    fixed = split.subset(cfg.eval_size, seed=cfg.seed)
    return list(fixed.batches(cfg.eval_batch))


@torch.no_grad()
def score_hypernet(hnet: GraphHyperNetwork, cands: Sequence[Candidate],
                   batches: Sequence[tuple[Tensor, Tensor]], chunk: int = 16
                   ) -> list[dict[str, Any]]:
    """One row per candidate: score (= -mean loss), spread, loss/acc mean and std, params."""
    hnet.eval()
    device = hnet.embed.weight.device
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    n = sum(len(y) for _, y in batches)
    rows = []
    for start in range(0, len(cands), chunk):
        part = cands[start:start + chunk]
        for cand, samples in zip(part, hnet.samples([c.graph for c in part])):
            net = meta_network(cand.graph, cand.id)
            losses, accs = [], []
            for weights in samples:
                loss, correct = 0.0, 0
                for x, y in batches:
                    logits = predicted_logits(net, weights, x)
                    loss += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(1) == y).sum())
                losses.append(loss / n if loss == loss else float("inf"))
                accs.append(correct / n)
            rows.append(_row(cand, losses, accs))
    return rows


def _row(cand: Candidate, losses: list[float], accs: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(losses)
    spread = statistics.pstdev(losses) if len(losses) > 1 else 0.0
    return {"encoding": cand.encoding, "id": cand.id, "score": -mean, "spread": spread,
            "loss": mean, "acc": statistics.fmean(accs),
            "acc_spread": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            "params": count_params(cand.graph), "macs": count_macs(cand.graph),
            "losses": losses, "accs": accs}


def score_proxies(names: Sequence[str], cands: Sequence[Candidate], x: Tensor, y: Tensor,
                  seed: int = 0) -> list[dict[str, Any]]:
    """One row per candidate for each proxy: ``{"proxy": score}`` plus encoding/id/params."""
    unknown = [n for n in names if n not in list_proxies()]
    if unknown:
        raise HypernasError(f"unknown scorer(s) {unknown}; known: {', '.join(list_scorers())}")
    rows = []
    for cand in cands:
        row = {"encoding": cand.encoding, "id": cand.id, "params": count_params(cand.graph),
               "macs": count_macs(cand.graph)}
        for name in names:
            row[name] = score_proxy(name, cand.graph, x, y, seed=seed)
        rows.append(row)
    return rows
