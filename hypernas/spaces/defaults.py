"""What a space and a dataset get when the command line leaves them out: one place for
``hypernas train``, ``hypernas search`` and the library's :class:`~hypernas.search.SearchConfig`.

The defaults size a space for a CPU: NB201 with one cell per stage at 16 channels, Fashion-MNIST
at 16x16 (the setup of the truth sets in ``benchmarks/``). Every command prints what it picked,
so a user knows which networks the hypernetwork serves.

Example:
    >>> settings, resolution, picked = with_defaults("nb201", "fashion-mnist", {"N": 2}, None)
    >>> settings, resolution, picked
    ({'C': 16, 'N': 2}, 16, {'C': 16, 'resolution': 16})
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPACE_SETTINGS", "RESOLUTION", "with_defaults", "describe_defaults"]

SPACE_SETTINGS: dict[str, dict[str, Any]] = {"nb201": {"C": 16, "N": 1}}
RESOLUTION: dict[str, int] = {"fashion-mnist": 16}


def with_defaults(space: str, data: str, settings: dict[str, Any], resolution: int | None
                  ) -> tuple[dict[str, Any], int | None, dict[str, Any]]:
    """(settings, resolution, picked): the given settings over the space's defaults, the given
    resolution or the dataset's default, and what was filled in (setting -> value, plus
    ``resolution``)."""
    picked = {k: v for k, v in SPACE_SETTINGS.get(space, {}).items() if k not in settings}
    if resolution is None and data in RESOLUTION:
        resolution = picked["resolution"] = RESOLUTION[data]
    return {**SPACE_SETTINGS.get(space, {}), **settings}, resolution, picked


def describe_defaults(space: str, data: str, picked: dict[str, Any]) -> str | None:
    """One line naming what the defaults filled in, or None when nothing was."""
    if not picked:
        return None
    parts = [f"{k}={v}" for k, v in picked.items() if k != "resolution"]
    if "resolution" in picked:
        parts.append(f"{picked['resolution']}x{picked['resolution']} images")
    return (f"defaults for {space} on {data}: {', '.join(parts)} (--set KEY=VALUE and "
            "--resolution change them)")
