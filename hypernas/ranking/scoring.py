"""Scoring candidates: with hypernetwork-predicted weights (mean and spread over weight samples)
or with a zero-cost proxy, on a fixed evaluation set so scores are deterministic.

A hypernetwork score is ``-loss``: the mean cross-entropy on ``eval_size`` fixed, class-balanced
validation images. The images are cut into one slice per weight sample (ensemble head) and each
sample is scored on its own slice, so the score averages over the samples and over all the images
at the cost of one forward pass over them (every sample on every image costs ``samples`` times
that, for a ranking no better: the number of images is what steadies the ranking). The spread is
the standard deviation of the samples' slice losses: how far the score would move with another
weight sample and other images. Batch norm uses the statistics of each fixed evaluation batch.
Higher scores are better for every scorer.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.dataset import Split
from ..errors import HypernasError
from ..graphs.network import count_macs, count_params
from ..hypernet.model import GraphHyperNetwork, unseen_slots
from ..hypernet.trainer import meta_network, predicted_logits
from ..spaces.space import Candidate
from .proxies import list_proxies, score_proxy
from .racing import SCORING_ADAPTIVE, SCORING_FULL, Race, rungs

__all__ = ["ScoreConfig", "eval_slices", "score_hypernet", "score_proxies", "list_scorers",
           "chance_warning", "CHANCE_FACTOR"]


@dataclass(frozen=True)
class ScoreConfig:
    """How candidates are scored."""

    eval_size: int = 2000  # fixed class-balanced validation images every candidate is scored on
    eval_batch: int = 250  # images per forward pass; batch norm normalises with each batch
    proxy_batch: int = 64  # images a zero-cost proxy sees
    seed: int = 0  # which images

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_scorers() -> list[str]:
    """``hypernet`` and every zero-cost proxy."""
    return ["hypernet", *list_proxies()]


def eval_slices(split: Split, cfg: ScoreConfig, samples: int
                ) -> list[list[tuple[Tensor, Tensor]]]:
    """The fixed evaluation images cut into ``samples`` near-equal slices, each a list of
    batches (same images, same order, every time)."""
    fixed = split.subset(cfg.eval_size, seed=cfg.seed)
    if len(fixed) < samples:
        raise HypernasError(f"{len(fixed)} evaluation images cannot give each of {samples} weight "
                            "samples a slice; use a larger validation split or fewer samples")
    bounds = [len(fixed) * i // samples for i in range(samples + 1)]
    return [list(Split(fixed.x[a:b], fixed.y[a:b]).batches(cfg.eval_batch))
            for a, b in zip(bounds, bounds[1:])]


@torch.no_grad()
def score_hypernet(hnet: GraphHyperNetwork, cands: Sequence[Candidate],
                   slices: Sequence[Sequence[tuple[Tensor, Tensor]]], chunk: int = 16,
                   race: Race | None = None) -> list[dict[str, Any]]:
    """One row per candidate: score (= -mean loss), spread, loss/acc mean and std, params.

    ``slices`` holds one list of batches per weight sample (:func:`eval_slices`). With ``race``
    (:mod:`hypernas.ranking.racing`) a candidate that cannot reach the race's top is stopped
    after one of its rungs, and its row says how many images it used; the race observes every
    row. Without it every candidate is scored on every image.
    """
    if len(slices) != hnet.config.samples:
        raise HypernasError(f"{len(slices)} evaluation slices for {hnet.config.samples} weight "
                            "samples; build them with eval_slices(split, cfg, samples)")
    hnet.eval()
    device = hnet.embed.weight.device
    slices = [[(x.to(device), y.to(device)) for x, y in part] for part in slices]
    # units: one batch of one weight sample, batch by batch across the samples
    units = [(s, b) for b in range(max(map(len, slices))) for s in range(len(slices))
             if b < len(slices[s])]
    marks = rungs(len(slices), len(units))
    full_images = sum(len(y) for part in slices for _, y in part)
    rows = []
    for start in range(0, len(cands), chunk):
        part = cands[start:start + chunk]
        for cand, samples in zip(part, hnet.samples([c.graph for c in part])):
            net = meta_network(cand.graph, cand.id)
            loss, correct, n = ([0.0] * len(slices) for _ in range(3))

            def reached() -> list[int]:  # the weight samples scored on some images so far
                return [i for i in range(len(slices)) if n[i]]

            estimates: list[float] = []
            extra: dict[str, Any] = {}
            for done, (s, b) in enumerate(units, start=1):
                x, y = slices[s][b]
                logits = predicted_logits(net, samples[s], x)
                loss[s] += float(F.cross_entropy(logits, y, reduction="sum"))
                correct[s] += int((logits.argmax(1) == y).sum())
                n[s] += len(y)
                if done not in marks:
                    continue
                estimates.append(-statistics.fmean(_finite(loss[i] / n[i]) for i in reached()))
                if race is None or done == len(units):
                    continue
                go_on, adjusted, se = race.judge(len(estimates) - 1, estimates[-1])
                if not go_on:
                    extra = {"score": adjusted, "score_se": se}
                    break
            row = {**_row(cand, [_finite(loss[i] / n[i]) for i in reached()],
                          [correct[i] / n[i] for i in reached()]),
                   # parameters in places training never had (a deeper stage than trained)
                   "unseen_slots": len(unseen_slots(hnet.config, cand.graph))}
            # the rung estimates of a full row are what racing calibrates on (and a record of
            # how the score settles as images are added)
            row.update({"scoring": SCORING_FULL if race is None else SCORING_ADAPTIVE,
                        "images": sum(n), "full_images": full_images, "rung_scores": estimates,
                        "score_se": 0.0, **extra})
            if race is not None:
                race.observe(row)
            rows.append(row)
    return rows


def _finite(loss: float) -> float:
    return loss if loss == loss else float("inf")


def _row(cand: Candidate, losses: list[float], accs: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(losses)
    spread = statistics.pstdev(losses) if len(losses) > 1 else 0.0
    return {"encoding": cand.encoding, "id": cand.id, "score": -mean, "spread": spread,
            "loss": mean, "acc": statistics.fmean(accs),
            "acc_spread": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            "params": count_params(cand.graph), "macs": count_macs(cand.graph),
            "losses": losses, "accs": accs}


CHANCE_FACTOR = 1.5  # a mean accuracy under this many times chance: a ranking of noise


def chance_warning(rows: Sequence[dict[str, Any]], num_classes: int) -> str | None:
    """A warning when the hypernetwork's predicted weights are no better than chance on the
    ranked ``rows`` (their mean accuracy under ``CHANCE_FACTOR`` times 1/classes; the best
    one alone can beat chance by luck): its ranking is then noise, and a user must hear it.
    None when the ranking has signal."""
    accs = [r["acc"] for r in rows if r.get("acc") is not None]
    if not accs or statistics.fmean(accs) >= CHANCE_FACTOR / num_classes:
        return None
    best = min(r["loss"] for r in rows)
    return (f"the hypernetwork is no better than chance on these {len(accs)} candidates (mean "
            f"accuracy {statistics.fmean(accs):.3f}, chance {1 / num_classes:.3f}; best loss "
            f"{best:.3f}, "
            f"ln {num_classes} = {math.log(num_classes):.3f}): this ranking is noise. Train it "
            "longer (hypernas train with the run's name and a larger --budget or --steps)")


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
