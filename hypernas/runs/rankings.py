"""A run's rankings, read back: rows by id, ranked rows, filtered and sorted rows, one candidate.

Each ranking is ``runs/NAME/rankings/LABEL.jsonl``, one scored candidate per line, appended as
candidates are scored (the first row of an id wins). Everything here reads; the ranking stage
(:mod:`hypernas.ranking`) writes.

Example:
    >>> import tempfile
    >>> from hypernas.runs.store import append_jsonl
    >>> run = Run("demo", root=tempfile.mkdtemp())
    >>> append_jsonl(run.ranking_path("hypernet"), {"id": "b", "encoding": "x", "score": -1.0})
    >>> append_jsonl(run.ranking_path("hypernet"), {"id": "a", "encoding": "y", "score": -0.5})
    >>> ranking_labels(run), list(ranking_rows(run, "hypernet"))
    (['hypernet'], ['b', 'a'])
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping, Sequence

from .store import Run, RunError, read_jsonl, write_jsonl

__all__ = ["SORT_KEYS", "ranking_labels", "default_label", "ranking_rows", "ranked_rows",
           "select_rows", "find_candidate", "scores_of", "pareto_front", "PARETO_COSTS", "combine_rankings", "write_combined", "COMBINED"]

SORT_KEYS = ("rank", "score", "spread", "params", "macs", "id", "encoding")


ROW_FIELDS = {"id": str, "encoding": str, "score": (int, float)}  # what every ranking row has


def ranking_rows(run: Run, label: str) -> dict[str, dict[str, Any]]:
    """Rows of a ranking by canonical id (the first row of an id wins). A row that is not a
    hypernas ranking row (pasted from elsewhere, hand-edited) is refused with its line, never
    half-read; a line cut short by a kill is skipped (``read_jsonl``)."""
    rows: dict[str, dict[str, Any]] = {}
    path = run.ranking_path(label)
    for i, row in enumerate(read_jsonl(path), start=1):
        bad = [k for k, kind in ROW_FIELDS.items()
               if not isinstance(row, dict) or not isinstance(row.get(k), kind)
               or isinstance(row.get(k), bool)]
        if bad:
            raise RunError(f"{path}, row {i}: not a hypernas ranking row (no valid "
                           f"{', '.join(bad)}); remove that row, or delete the file to rank "
                           "again")
        rows.setdefault(row["id"], row)
    return rows


def ranking_labels(run: Run) -> list[str]:
    """Labels of the rankings a run holds (``runs/NAME/rankings/LABEL.jsonl``), sorted."""
    return sorted(p.stem for p in run.rankings_dir.glob("*.jsonl")) if run.rankings_dir.is_dir() else []


def default_label(run: Run) -> str:
    """``hypernet`` when the run has that ranking, else its only (or first) ranking."""
    labels = ranking_labels(run)
    if not labels:
        raise RunError(f"run {run.name!r} has no ranking yet; make one: hypernas rank {run.name}")
    return "hypernet" if "hypernet" in labels else labels[0]


COMBINED = "combined"  # the label of a run's rank-averaged ranking


def combine_rankings(rankings: Mapping[str, Mapping[str, dict[str, Any]]]
                     ) -> dict[str, dict[str, Any]]:
    """Rank average of several rankings (``{label: {id: row}}``), over the ids every one of
    them ranks: a row's ``score`` is the mean over the labels of its percentile (1 the best of
    the pool, 0 the worst; ties share one). Scale-free, so a loss and a log-determinant weigh
    the same; it depends on the pool, so it is recomputed from its parts whenever they grow.
    Each row keeps the first label's fields and its parts' scores in ``parts``."""
    labels = list(rankings)
    common = set.intersection(*(set(r) for r in rankings.values())) if labels else set()
    ids = sorted(common)
    percentile: dict[str, dict[str, float]] = {}
    for label in labels:
        scores = sorted(rankings[label][i]["score"] for i in ids)
        for i in ids:
            s = rankings[label][i]["score"]
            below = bisect.bisect_left(scores, s)
            ties = bisect.bisect_right(scores, s) - below
            rank = below + (ties - 1) / 2  # 0-based, ties share the mean place
            percentile.setdefault(i, {})[label] = rank / max(len(ids) - 1, 1)
    first = rankings[labels[0]] if labels else {}
    return {i: {**first[i], "score": sum(percentile[i].values()) / len(labels), "spread": 0.0,
                "scorer": COMBINED, "parts": {l: rankings[l][i]["score"] for l in labels}}
            for i in ids}


def write_combined(run: Run, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Rewrite the run's ``combined`` ranking from the rankings ``labels`` (atomically: a kill
    leaves the old file or the new one); returns its rows by id."""
    rows = combine_rankings({label: ranking_rows(run, label) for label in labels})
    write_jsonl(run.ranking_path(COMBINED), rows.values())
    return rows


def ranked_rows(run: Run, label: str | None = None) -> list[dict[str, Any]]:
    """A ranking's rows, best score first, each with its 1-based ``rank`` (one row per id)."""
    run.read_config()  # a clear error for an unknown run
    label = label or default_label(run)
    path = run.ranking_path(label)
    if not path.exists():
        raise RunError(f"run {run.name!r} has no ranking {label!r}; it has: "
                       f"{', '.join(ranking_labels(run)) or 'none'}")
    rows: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(path):
        if "id" in row and isinstance(row.get("score"), (int, float)):
            rows.setdefault(row["id"], row)
    if not rows:
        raise RunError(f"ranking {label!r} of run {run.name!r} is empty ({path}); re-run "
                       f"hypernas rank {run.name}")
    ordered = sorted(rows.values(), key=lambda r: (-r["score"], r["id"]))
    return [{**row, "rank": i} for i, row in enumerate(ordered, start=1)]


def select_rows(rows: Sequence[dict[str, Any]], *, sort: str = "rank", descending: bool = False,
                top: int | None = None, max_params: int | None = None,
                min_params: int | None = None, max_macs: int | None = None
                ) -> list[dict[str, Any]]:
    """Filter ranked rows by size, sort by any column, keep the first ``top``."""
    if sort not in SORT_KEYS:
        raise RunError(f"cannot sort by {sort!r}; use one of {', '.join(SORT_KEYS)}")
    kept = [r for r in rows
            if (max_params is None or r.get("params", 0) <= max_params)
            and (min_params is None or r.get("params", 0) >= min_params)
            and (max_macs is None or r.get("macs") is None or r["macs"] <= max_macs)]
    numeric = sort not in ("id", "encoding")
    kept.sort(key=lambda r: (r.get(sort) is None, r.get(sort) if r.get(sort) is not None
                             else (0 if numeric else "")), reverse=descending)
    return kept[:top] if top is not None else kept


PARETO_COSTS = ("params", "macs", "latency_ms")  # what a Pareto front may put on its x axis


def pareto_front(rows: Sequence[dict[str, Any]], cost: str = "params") -> list[dict[str, Any]]:
    """The rows no other row dominates (one costing no more with a score at least as high,
    better in one of the two), cheapest first: the best score each cost can buy. Of rows equal
    in both, the first by id stands for them."""
    if cost not in PARETO_COSTS:
        raise RunError(f"cannot put {cost!r} on a Pareto front's x axis; use one of "
                       f"{', '.join(PARETO_COSTS)}")
    usable = [r for r in rows if r.get(cost) is not None and r.get("score") is not None]
    front: list[dict[str, Any]] = []
    for row in sorted(usable, key=lambda r: (r[cost], -r["score"], r["id"])):
        if not front or row["score"] > front[-1]["score"]:
            front.append(row)
    return front


def find_candidate(run: Run, arch: str) -> tuple[str, str]:
    """``(id, encoding)`` of the candidate whose id is ``arch`` or starts with it, in any of the
    run's rankings."""
    matches: dict[str, str] = {}
    for label in ranking_labels(run):
        for row in read_jsonl(run.ranking_path(label)):
            if str(row.get("id", "")).startswith(arch) and "encoding" in row:
                matches.setdefault(row["id"], row["encoding"])
    if arch in matches:
        return arch, matches[arch]
    if len(matches) == 1:
        return next(iter(matches.items()))
    if not matches:
        raise RunError(f"no candidate with id {arch!r} in run {run.name!r}; list the ids with "
                       f"hypernas show {run.name}")
    raise RunError(f"id prefix {arch!r} matches {len(matches)} candidates "
                   f"({', '.join(sorted(matches)[:5])}...); give more characters")


def scores_of(run: Run, cand_id: str) -> dict[str, dict[str, Any]]:
    """``{label: {score, spread, rank, of}}`` for every ranking that scored ``cand_id``."""
    out = {}
    for label in ranking_labels(run):
        try:
            rows = ranked_rows(run, label)
        except RunError:
            continue
        for row in rows:
            if row["id"] == cand_id:
                out[label] = {"score": row["score"], "spread": row.get("spread", 0.0),
                              "rank": row["rank"], "of": len(rows), "scorer": row.get("scorer")}
    return out
