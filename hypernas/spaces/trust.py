"""Space files are code: a run folder names one, and loading the run executes it.

A run made from a ``.py`` space records the file's SHA-256 (``space_sha256`` in its config).
Reopening the run checks two things before the file is executed:

- the file is the one the run was made with (same hash); a changed file is refused, since the
  run's candidates, rankings and checkpoints were made with the old one;
- its hash is one this user trusts: files the user named on the command line to create a run,
  or approved with ``--trust-space`` (kept in ``~/.config/hypernas/trusted_spaces``, or the file
  ``$HYPERNAS_TRUSTED_SPACES``). A run folder received from someone else, naming a space file of
  theirs, is refused until the user has read the file and passes ``--trust-space``.

Built-in spaces are names, not files, and are never checked.

Example:
    >>> is_space_file("nb201"), is_space_file("my_space.py")
    (False, True)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import SpaceError

__all__ = ["is_space_file", "file_sha256", "trust_store", "trust", "is_trusted",
           "check_space_file"]


def is_space_file(space: str) -> bool:
    return space.endswith(".py") or "/" in space


def file_sha256(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise SpaceError(f"cannot read search-space file {path}: {err.strerror}") from None


def trust_store() -> Path:
    """Where this user's trusted space hashes are kept."""
    if os.environ.get("HYPERNAS_TRUSTED_SPACES"):
        return Path(os.environ["HYPERNAS_TRUSTED_SPACES"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hypernas" / "trusted_spaces"


def _trusted() -> set[str]:
    try:
        return {line.split()[0] for line in trust_store().read_text().splitlines() if line.strip()}
    except OSError:
        return set()


def is_trusted(digest: str) -> bool:
    return digest in _trusted()


def trust(path: str | Path) -> str:
    """Add the file's hash to this user's trusted spaces; returns the hash."""
    digest = file_sha256(path)
    if digest not in _trusted():
        store = trust_store()
        store.parent.mkdir(parents=True, exist_ok=True)
        with store.open("a") as fh:
            fh.write(f"{digest} {Path(path).resolve()}\n")
    return digest


def check_space_file(config: dict[str, Any], run_name: str) -> None:
    """Refuse to execute a run's space file that changed since the run was made, or that this
    user has not trusted; nothing for a built-in space."""
    space = str(config.get("space", ""))
    if not is_space_file(space):
        return
    recorded = config.get("space_sha256")
    digest = file_sha256(space)
    if recorded is not None and digest != recorded:
        raise SpaceError(f"run {run_name!r} was made with another version of {space} (its hash "
                         "changed); restore the file the run was made with, or start a new run")
    if not is_trusted(digest):
        raise SpaceError(f"run {run_name!r} runs the code in {space}, which you have not used "
                         "before (a run folder from elsewhere?); read it, then pass "
                         "--trust-space to run it")
