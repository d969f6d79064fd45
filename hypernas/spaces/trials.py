"""Trials: the objects a define-by-run search space asks for its choices.

A space's ``define(trial)`` calls ``trial.suggest_categorical(name, choices)`` and
``trial.suggest_int(name, low, high)``, exactly as it would on an ``optuna.Trial``. Which
trial it gets decides what happens: :class:`RandomTrial` samples, :class:`FixedTrial` replays a
stored encoding, :class:`MutantTrial` changes one choice of a parent, :class:`PathTrial` walks the
tree of choices (enumeration), and an Optuna trial refines.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping, Sequence

from ..errors import EncodingError

__all__ = ["BaseTrial", "RandomTrial", "FixedTrial", "MutantTrial", "PathTrial"]


class BaseTrial:
    """Records every choice made: ``params`` (name -> value) and ``choices`` (name -> options)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.choices: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Iterable[Any]) -> Any:
        """One of ``choices`` for the parameter ``name`` (asking twice gives the same answer)."""
        options = tuple(choices)
        if not options:
            raise ValueError(f"parameter {name!r} has no choices")
        if name in self.params:
            if self.choices[name] != options:
                raise ValueError(f"parameter {name!r} is suggested twice with different choices "
                                 f"{self.choices[name]} and {options}; give each a unique name")
            return self.params[name]
        value = self._pick(name, options)
        self.params[name], self.choices[name] = value, options
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        """An int in ``[low, high]`` on the grid ``low + k * step``."""
        return self.suggest_categorical(name, range(low, high + 1, step))

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        raise NotImplementedError


class RandomTrial(BaseTrial):
    """Uniform random choices from a seeded generator."""

    def __init__(self, seed: int | random.Random) -> None:
        super().__init__()
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        return options[self.rng.randrange(len(options))]


def match_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """``value`` as one of ``options``; text from an encoding matches an option's ``str``."""
    for option in options:
        if type(option) is type(value) and option == value:
            return option
    for option in options:
        if str(option) == str(value):
            return option
    raise EncodingError(f"{value!r} is not a choice for {name!r}; choices: "
                        f"{', '.join(map(str, options))}")


class FixedTrial(BaseTrial):
    """Replays given values; missing or foreign values raise :class:`EncodingError`.

    Call :meth:`check_all_used` after ``define`` to refuse values the space never asked for.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__()
        self.values = dict(values)

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        if name not in self.values:
            raise EncodingError(f"the encoding has no value for {name!r} (choices: "
                                f"{', '.join(map(str, options))}); add {name}=<choice>")
        return match_choice(name, self.values[name], options)

    def check_all_used(self, space: str) -> None:
        unused = sorted(set(self.values) - set(self.params))
        if unused:
            raise EncodingError(f"the encoding sets {', '.join(unused)}, which space {space!r} "
                                f"does not use here; its parameters: {', '.join(self.params)}")


class MutantTrial(BaseTrial):
    """A parent's choices with ``name`` changed to ``value``; new parameters are sampled."""

    def __init__(self, parent: Mapping[str, Any], name: str, value: Any, seed: int) -> None:
        super().__init__()
        self.parent, self.name, self.value = dict(parent), name, value
        self.rng = random.Random(seed)

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        if name == self.name:
            return self.value
        if name in self.parent and self.parent[name] in options:
            return self.parent[name]
        return options[self.rng.randrange(len(options))]


class PathTrial(BaseTrial):
    """Takes the choice indices in ``path``, then the first option of every later parameter.

    ``sizes`` records how many options each decision had, which is what a depth-first walk over
    all candidates of a space needs.
    """

    def __init__(self, path: Sequence[int] = (), last: bool = False) -> None:
        super().__init__()
        self.path, self.last = list(path), last
        self.indices: list[int] = []
        self.sizes: list[int] = []

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        k = len(self.indices)
        i = self.path[k] if k < len(self.path) else (len(options) - 1 if self.last else 0)
        self.indices.append(i)
        self.sizes.append(len(options))
        return options[i]
