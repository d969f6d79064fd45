"""Reading a run back: its rankings as ranked rows, what stage it reached, one candidate's scores.

Everything here reads ``runs/<name>/`` and nothing writes; the CLI turns the results into tables.

Example:
    >>> import tempfile
    >>> from hypernas.runs import Run
    >>> list_runs(tempfile.mkdtemp())
    []
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .runs import Run, RunError, read_jsonl, runs_root
from .space import SearchSpace, load_space

__all__ = ["SORT_KEYS", "ranking_labels", "default_label", "ranked_rows", "select_rows",
           "run_summary", "list_runs", "run_space", "find_candidate", "scores_of"]

SORT_KEYS = ("rank", "score", "spread", "params", "macs", "id", "encoding")


def ranking_labels(run: Run) -> list[str]:
    """Labels of the rankings a run holds (``runs/NAME/rankings/LABEL.jsonl``), sorted."""
    return sorted(p.stem for p in run.rankings_dir.glob("*.jsonl")) if run.rankings_dir.is_dir() else []


def default_label(run: Run) -> str:
    """``hypernet`` when the run has that ranking, else its only (or first) ranking."""
    labels = ranking_labels(run)
    if not labels:
        raise RunError(f"run {run.name!r} has no ranking yet; make one: hypernas rank {run.name}")
    return "hypernet" if "hypernet" in labels else labels[0]


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


def run_space(run: Run) -> SearchSpace:
    """The run's search space, rebuilt from its config (no dataset needed)."""
    config = run.read_config()
    return load_space(config["space"], **config.get("space_config", {}))


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


def _checkpoint_meta(path: Path) -> dict[str, Any] | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["hypernas"])
    except Exception:  # a torn or foreign file: the summary just says so
        return None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_summary(run: Run) -> dict[str, Any]:
    """Name, space, data, stage, size on disk and best score of one run."""
    config = run.read_config()
    out: dict[str, Any] = {"run": run.name, "space": config.get("space"),
                           "data": (config.get("data") or {}).get("name"),
                           "backbone": (config.get("hypernet") or {}).get("backbone"),
                           "size_bytes": _size(run.path), "stage": "created", "step": None,
                           "ranked": 0, "best": None}
    if run.checkpoint_path.exists():
        meta = _checkpoint_meta(run.checkpoint_path)
        if meta is None:
            out["stage"] = "checkpoint unreadable"
        else:
            train = config.get("train") or {}
            done = (meta["step"] >= train["steps"] if train.get("steps")
                    else meta["elapsed"] >= 60 * train.get("budget_minutes", 0) - 1)
            out["step"] = meta["step"]
            out["stage"] = "trained" if done else "training (stopped)"
    if ranking_labels(run):
        label = default_label(run)
        try:
            rows = ranked_rows(run, label)
        except RunError:
            rows = []
        if rows:
            out["stage"] = "ranked"
            out["ranked"] = len(rows)
            best = rows[0]
            out["best"] = {"label": label, "id": best["id"], "score": best["score"],
                           "spread": best.get("spread", 0.0)}
    return out


def list_runs(root: str | Path | None = None) -> list[dict[str, Any]]:
    """A summary of every run under ``root`` (default: ``$HYPERNAS_RUNS`` or ``runs/``)."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.iterdir()):
        if (path / "config.json").exists():
            try:
                out.append(run_summary(Run(path.name, root=base)))
            except RunError as err:
                out.append({"run": path.name, "stage": f"unreadable: {err}", "size_bytes": 0})
    return out
