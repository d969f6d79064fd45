"""Ranking a run's candidates: score each with the run's hypernetwork or a proxy, append the rows.

:func:`rank_run` scores, in this process, the candidates whose canonical id has no row yet in
the ranking (``runs/NAME/rankings/LABEL.jsonl``) and appends their rows as they are computed, so
a killed ranking resumes where it stopped; :func:`hypernas.ranking.on_ray.rank_on_ray` writes the
same rows from Ray workers. :func:`read_archs` reads an architecture file to rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..data.dataset import Dataset
from ..errors import HypernasError
from ..graphs.network import count_macs, count_params
from ..hypernet.model import GraphHyperNetwork
from ..hypernet.trainer import load_checkpoint, weight_samples
from ..runs.rankings import ranking_rows
from ..runs.store import append_jsonl, run_lock
from ..spaces.space import Candidate, SearchSpace
from .probe import PROBE, Probe, graph_embeddings, load_probe
from .proxies import list_proxies
from .racing import SCORING_ADAPTIVE, SCORING_FULL, Race, RaceConfig, check_scoring, rungs
from .run import LoadedRun, RunConfig
from .scoring import eval_slices, score_hypernet, score_proxies

__all__ = ["ArchLine", "read_archs", "missing_candidates", "make_scorer", "rank_run",
           "start_race"]


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
                chunk: int = 16, probe: Probe | None = None) -> Callable[..., list[dict[str, Any]]]:
    """A function from candidates (and, for ``hypernet``, an optional
    :class:`~hypernas.ranking.racing.Race`) to ranking rows (``score``, ``spread``, params,
    MACs ...) for ``scorer``: ``hypernet`` (give ``hnet``) or a proxy, on the run's fixed
    evaluation images, or ``probe`` (give ``hnet`` and its ``probe``): the accuracy the probe's
    recipe would reach, read off the graph embedding."""
    if scorer == PROBE:
        if hnet is None or probe is None:
            raise HypernasError("the probe scorer needs the run's hypernetwork and its probe; "
                                "fit one: hypernas probe RUN")
        hnet = hnet.to(device)

        def score_probe(part: Sequence[Candidate], race: Race | None = None
                        ) -> list[dict[str, Any]]:
            pred = probe.predict(graph_embeddings(hnet, [c.graph for c in part], chunk))
            return [{"encoding": c.encoding, "id": c.id, "score": float(p), "spread": 0.0,
                     "params": count_params(c.graph), "macs": count_macs(c.graph)}
                    for c, p in zip(part, pred.tolist())]
        return score_probe
    if scorer == "hypernet":
        if hnet is None:
            raise HypernasError("the hypernet scorer needs a trained hypernetwork")
        hnet = hnet.to(device)
        slices = [[(x.to(device), y.to(device)) for x, y in part]
                  for part in eval_slices(data.val, cfg.score, hnet.config.samples)]

        def score(part: Sequence[Candidate], race: Race | None = None) -> list[dict[str, Any]]:
            return score_hypernet(hnet, part, slices, chunk, race=race)
        return score
    if scorer in list_proxies():
        fixed = data.val.subset(cfg.score.proxy_batch, seed=cfg.score.seed)
        x, y = fixed.x.to(device), fixed.y.to(device)

        def score_proxy(part: Sequence[Candidate], race: Race | None = None
                        ) -> list[dict[str, Any]]:
            rows = score_proxies([scorer], part, x, y, cfg.score.seed)
            return [{**r, "score": r[scorer], "spread": 0.0} for r in rows]
        return score_proxy
    raise HypernasError(f"unknown scorer {scorer!r}; known: hypernet, {PROBE}, "
                        f"{', '.join(list_proxies())}")


def start_race(lr: LoadedRun, scorer: str, label: str, have: dict[str, dict],
               race: RaceConfig | None) -> Race | None:
    """The race a hypernet ranking goes on with (None: every candidate scored in full), from
    the rows ``have`` of ranking ``label``; refuses a ranking made in the other mode."""
    if scorer != "hypernet":
        return None
    check_scoring(list(have.values()), SCORING_ADAPTIVE if race else SCORING_FULL, label)
    if race is None:
        return None
    samples = weight_samples(lr.run.checkpoint_path)  # an ensemble's members x heads
    units = sum(map(len, eval_slices(lr.data.val, lr.config.score, samples)))
    return Race.from_rows(race, len(rungs(samples, units)), have.values())


def rank_run(lr: LoadedRun, cands: Sequence[Candidate], scorer: str = "hypernet",
             label: str | None = None, chunk: int = 16,
             on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
             race: RaceConfig | None = None) -> dict[str, dict]:
    """Score the candidates not yet in ranking ``label`` (default: the scorer's name), appending
    rows as they are computed; returns the whole ranking by id. With ``race`` the hypernet
    scorer races candidates over the images (:mod:`hypernas.ranking.racing`)."""
    label = label or scorer
    with run_lock(lr.run, f"rank-{label}", f"ranked into {label!r}"):
        path = lr.run.ranking_path(label)
        have = ranking_rows(lr.run, label)
        racing = start_race(lr, scorer, label, have, race)
        todo = missing_candidates(cands, have)
        hnet = probe = None
        if scorer == PROBE:
            probe = load_probe(lr.run)
        if scorer in ("hypernet", PROBE):
            hnet, _, _ = load_checkpoint(lr.run.checkpoint_path, lr.config.hypernet)
        score = make_scorer(scorer, lr.config, lr.data, hnet, chunk=chunk, probe=probe)
        for start in range(0, len(todo), chunk):
            rows = [{**r, "scorer": scorer} for r in score(todo[start:start + chunk], racing)]
            for row in rows:
                append_jsonl(path, row)
                have[row["id"]] = row
            if on_rows is not None:
                on_rows(rows)
        return have
