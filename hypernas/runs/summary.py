"""What a run holds, at a glance: its stage, size on disk, best score; every run listed.

Everything here reads ``runs/<name>/`` and nothing writes; the CLI turns the results into tables.

Example:
    >>> import tempfile
    >>> list_runs(tempfile.mkdtemp())
    []
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..spaces.space import SearchSpace, load_space
from ..spaces.trust import check_space_file
from .rankings import default_label, ranked_rows, ranking_labels
from .store import Run, RunError, lock_holder, runs_root

__all__ = ["run_space", "run_summary", "list_runs"]


def run_space(run: Run) -> SearchSpace:
    """The run's search space, rebuilt from its config (no dataset needed); a space file must
    be unchanged and trusted (:mod:`hypernas.spaces.trust`)."""
    config = run.read_config()
    check_space_file(config, run.name)
    return load_space(config["space"], **config.get("space_config", {}))


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
            holder = lock_holder(run, "train")
            out["stage"] = ("trained" if done else f"training (process {holder})" if holder
                            else "training (stopped)")
    unreadable = out["stage"] == "checkpoint unreadable"
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
            out["best"] = {"kind": "score", "label": label, "id": best["id"],
                           "score": best["score"], "spread": best.get("spread", 0.0)}
    refined = sorted((run.path / "refined").glob("trial_*.safetensors"))
    if refined:
        out["stage"] = f"refined ({len(refined)} trained)"
    card = _exported_card(run)
    if card is not None:  # the trained winner, not the hypernet's favourite
        out["stage"] = "exported"
        out["best"] = {"kind": "exported", "id": card.get("id"), "val_acc": card.get("val_acc"),
                       "test_acc": card.get("test_acc")}
    if unreadable and out["stage"] != "checkpoint unreadable":
        out["stage"] += ", checkpoint unreadable"
    return out


def _exported_card(run: Run) -> dict[str, Any] | None:
    """The model card of the run's most recent export, if it has one that parses."""
    cards = sorted(run.exports_dir.glob("*/model_card.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(cards):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


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
