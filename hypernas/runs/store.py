"""The run store: one folder per run under ``runs/``, every file named in one place.

    runs/<name>/
        config.json                  how the run was made (space, data, hypernet, training)
        checkpoints/last.safetensors hypernetwork weights + optimiser state, step in metadata
        train_log.jsonl              one line per logged training step
        rankings/<label>.jsonl       scored candidates, one JSON object per line
        study.db                     the Optuna refinement study (refine.lock while it runs)
        refined/trial_<n>.safetensors weights of each finished refinement trial
        exports/                     exported models

Readers tolerate a truncated last line (a kill mid-write); writers append and flush.

Example:
    >>> import tempfile
    >>> run = Run("demo", root=tempfile.mkdtemp())
    >>> run.path.name, run.config_path.name
    ('demo', 'config.json')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import HypernasError

__all__ = ["Run", "RunError", "DEFAULT_ROOT", "runs_root", "read_jsonl", "append_jsonl",
           "write_jsonl", "write_json", "write_text", "run_lock", "lock_holder"]

DEFAULT_ROOT = Path("runs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class RunError(HypernasError, ValueError):
    """A run name is unsafe, or a run lacks what a command needs."""


class Run:
    """Paths of one run; creating the object touches nothing on disk."""

    def __init__(self, name: str, root: str | Path | None = None) -> None:
        if not _NAME.match(name or "") or ".." in name:
            raise RunError(f"run name {name!r} is not allowed: use letters, digits, '_', '-' and "
                           "'.', starting with a letter or digit (no paths)")
        self.name = name
        self.root = runs_root(root)
        self.path = self.root / name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.safetensors"

    @property
    def train_log_path(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def rankings_dir(self) -> Path:
        return self.path / "rankings"

    def ranking_path(self, label: str) -> Path:
        if not _NAME.match(label or "") or ".." in label:
            raise RunError(f"ranking label {label!r} is not allowed: letters, digits, '_-.' only")
        return self.rankings_dir / f"{label}.jsonl"

    @property
    def latency_path(self) -> Path:
        """Measured latencies of candidates (``hypernas.graphs.latency.LatencyMeter``)."""
        return self.path / "latency.jsonl"

    @property
    def study_path(self) -> Path:
        return self.path / "study.db"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    @property
    def refine_lock_path(self) -> Path:
        return self.path / "refine.lock"

    @property
    def tune_dir(self) -> Path:
        """Ray Tune's experiment folders of refinements run on workers."""
        return self.path / "tune"

    def refined_weights_path(self, trial: int) -> Path:
        """Weights of finished refinement trial ``trial``."""
        return self.path / "refined" / f"trial_{trial}.safetensors"

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, config: dict[str, Any]) -> None:
        """Write ``config.json`` (refusing to overwrite a different config)."""
        if self.exists():
            old = self.read_config()
            if old != json.loads(json.dumps(config)):
                raise RunError(f"run {self.name!r} already exists with another config "
                               f"({self.config_path}); pick a new --run name or delete it")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.config_path, json.dumps(config, indent=1, sort_keys=True))

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace ``config.json`` atomically (a kill leaves the old or the new file)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.config_path, json.dumps(config, indent=1, sort_keys=True))

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise RunError(f"run {self.name!r} not found ({self.config_path} is missing); "
                           f"train it first: hypernas train SPACE --run {self.name}")
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as err:
            raise RunError(f"{self.config_path} is not valid JSON ({err}); restore it or start "
                           "a new run") from None


def runs_root(root: str | Path | None = None) -> Path:
    """Where runs live: ``root`` if given, else ``$HYPERNAS_RUNS``, else ``runs/``."""
    return Path(root if root is not None else os.environ.get("HYPERNAS_RUNS", DEFAULT_ROOT))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Replace a file with ``text`` atomically (a kill leaves the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, text)


def write_json(path: Path, obj: Any) -> None:
    """Replace a JSON file with ``obj`` atomically."""
    write_text(path, json.dumps(obj, indent=1) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace a JSONL file with ``rows`` atomically."""
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (on a line of its own, even after a torn one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row) + "\n").encode()
    with path.open("a+b") as fh:
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":  # a kill mid-write left a torn line: end it first
                line = b"\n" + line
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a truncated or corrupt line (a kill mid-write) is skipped."""
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row


_HELD: dict[Path, list[int]] = {}  # lock file -> [fd, depth] held by this process


@contextlib.contextmanager
def run_lock(run: Run, part: str, doing: str) -> Iterator[None]:
    """Hold ``runs/<name>/<part>.lock`` while a command writes that part of the run (``train``,
    ``rank-<label>``, ``refine``). It is an OS lock (``flock``): a second command on the same
    part is refused at once, naming the process that holds it, and the lock of a process that
    died is released by the OS, so there is never a stale one to take over. Re-entrant within a
    process."""
    path = run.path / f"{part}.lock"
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield
        finally:
            _HELD[path][1] -= 1
        return
    run.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunError(f"run {run.name!r} is being {doing} by process {holder}; wait for it to "
                       "finish or stop it, then run this again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[path] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[path]
        os.ftruncate(fd, 0)  # released: lock_holder reads no holder
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)  # the file stays: unlinking it would race with a process about to lock it


def lock_holder(run: Run, part: str) -> str | None:
    """The id of the live process holding ``part`` of the run (see :func:`run_lock`), or None.
    Reads the lock file without locking it, so it can never make a starting command fail."""
    try:
        pid = int((run.path / f"{part}.lock").read_text().strip())
    except (OSError, ValueError):  # no lock file, or released (emptied on release)
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # killed without releasing: the OS dropped its lock
        return None
    except PermissionError:  # alive, another user's
        pass
    return str(pid)
