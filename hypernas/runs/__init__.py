"""The run store: everything a run makes lives in ``runs/<name>/``, named in one place.

Takes a run name (and the root, ``$HYPERNAS_RUNS`` or ``runs/``); gives the run's paths and
plain rows read back: its config, its rankings (rows by id, ranked rows), its summary. Each stage
writes its own files here and resumes from what it finds, so ``ls runs/<name>`` shows how far a
run got.

    store.py     Run (the folder and every file's path), JSON-lines reading and appending
    rankings.py  a run's rankings as rows: by id, ranked, filtered, one candidate's scores
    summary.py   a run's stage, size and best score; every run listed
"""

from .rankings import (
                       SORT_KEYS,
                       default_label,
                       find_candidate,
                       ranked_rows,
                       ranking_labels,
                       ranking_rows,
                       scores_of,
                       select_rows,
)
from .store import DEFAULT_ROOT, Run, RunError, append_jsonl, read_jsonl, runs_root
from .summary import list_runs, run_space, run_summary

__all__ = ["DEFAULT_ROOT", "Run", "RunError", "SORT_KEYS", "append_jsonl", "default_label",
           "find_candidate", "list_runs", "ranked_rows", "ranking_labels", "ranking_rows",
           "read_jsonl", "run_space", "run_summary", "runs_root", "scores_of", "select_rows"]
