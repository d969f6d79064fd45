"""Search spaces: one define-by-run definition that samples, replays, mutates and enumerates.

A space is a :class:`SearchSpace` subclass with a frozen ``Config`` dataclass and a
``define(trial)`` method that asks the trial for its choices and builds the graph with
:meth:`SearchSpace.builder`. Everything else (random sampling with a seed, replay of a stored
encoding, mutation to a neighbour, enumeration, the list of choices) follows from that one method,
and so does Optuna refinement later, since an ``optuna.Trial`` answers the same calls.

Example (a whole space; save it as ``my_space.py`` and use ``load_space("my_space.py")``):
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class TinyConfig(SpaceConfig):
    ...     input_shape: tuple[int, ...] = (8,)
    >>> class Tiny(SearchSpace):
    ...     name = "tiny"
    ...     Config = TinyConfig
    ...     def define(self, trial):
    ...         b = self.builder()
    ...         x = b.add("linear", b.input, out_features=trial.suggest_categorical("width", [4, 8]))
    ...         b.output(b.add("linear", b.add("relu", x), out_features=self.config.num_classes))
    ...         return b.build()
    >>> Tiny().sample(seed=0).encoding
    'width=8'
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import importlib.util
import inspect
import random
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

import networkx as nx

from ..errors import EncodingError, SpaceError
from ..graphs.builder import GraphBuilder
from ..graphs.canonical import canonical_id
from ..graphs.serialize import graph_to_dict
from .trials import BaseTrial, FixedTrial, MutantTrial, PathTrial, RandomTrial

__all__ = ["SpaceConfig", "SearchSpace", "Candidate", "register_space", "list_spaces",
           "load_space", "get_space_class", "module_space"]


@dataclass(frozen=True)
class SpaceConfig:
    """What every space needs to know about the data it will see."""

    input_shape: tuple[int, ...] = (3, 32, 32)  # one input without the batch dim
    num_classes: int = 10  # size of the network's output

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Candidate:
    """One architecture of a space: its choices, their text encoding, and its graph."""

    space: str
    encoding: str
    params: Mapping[str, Any]
    graph: nx.DiGraph = dataclasses.field(repr=False, compare=False)

    @cached_property
    def id(self) -> str:
        """Canonical id: equal for candidates that compute the same function by construction."""
        return canonical_id(self.graph)

    def to_dict(self) -> dict[str, Any]:
        """``{"encoding", "id", "graph"}`` as plain JSON-ready data."""
        return {"encoding": self.encoding, "id": self.id, "graph": graph_to_dict(self.graph)}


class SearchSpace(abc.ABC):
    """Base class of search spaces; subclasses set ``name`` and implement :meth:`define`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[SpaceConfig]] = SpaceConfig

    def __init__(self, config: SpaceConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.Config()
        fields = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise SpaceError(f"space {self.name!r} has no setting {', '.join(unknown)}; its "
                             f"settings: {', '.join(sorted(fields))}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        self.config = dataclasses.replace(config, **overrides)
        self.check_config()

    # ----- what a space writes ------------------------------------------------------------------

    @abc.abstractmethod
    def define(self, trial: Any) -> nx.DiGraph:
        """Ask ``trial`` for every choice and return the candidate's graph (from ``builder()``)."""

    def check_config(self) -> None:
        """Raise :class:`SpaceError` naming the fix when ``self.config`` cannot work."""

    def size(self) -> int | None:
        """Number of candidates (encodings), or None when the space does not know it."""
        return None

    def encode(self, params: Mapping[str, Any]) -> str:
        """Text form of a candidate's choices; default ``name=value`` pairs joined by commas."""
        return ",".join(f"{k}={v}" for k, v in params.items())

    def decode(self, encoding: str) -> dict[str, Any]:
        """Inverse of :meth:`encode`: parameter values (text is fine; replay matches choices)."""
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in encoding.strip().split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise EncodingError(f"cannot read {part!r} in encoding {encoding!r}: space "
                                    f"{self.name!r} encodes candidates as name=value pairs "
                                    "separated by commas")
            values[key.strip()] = value.strip()
        if not values:
            raise EncodingError(f"empty encoding for space {self.name!r}")
        return values

    # ----- what every space gets --------------------------------------------------------------

    def builder(self) -> GraphBuilder:
        """A graph builder for this space's input shape and number of classes."""
        return GraphBuilder(self.config.input_shape, self.config.num_classes, space=self.name)

    def sample(self, seed: int | random.Random) -> Candidate:
        """A uniformly random choice at every decision, from ``seed``."""
        return self.from_trial(RandomTrial(seed))

    def sample_many(self, n: int, seed: int = 0, *, unique: bool = True) -> list[Candidate]:
        """``n`` random candidates; with ``unique`` no two share a canonical id.

        Raises :class:`SpaceError` when the space runs out of distinct candidates.
        """
        rng, out, seen = random.Random(seed), [], set()
        attempts = 0
        while len(out) < n:
            cand = self.sample(rng)
            attempts += 1
            if not unique or cand.id not in seen:
                seen.add(cand.id)
                out.append(cand)
            elif attempts > 50 * n + 1000:
                raise SpaceError(f"space {self.name!r} gave only {len(out)} distinct candidates in "
                                 f"{attempts} draws; ask for fewer")
        return out

    def replay(self, encoding: str | Mapping[str, Any]) -> Candidate:
        """The candidate an encoding (text or a params mapping) describes."""
        values = self.decode(encoding) if isinstance(encoding, str) else dict(encoding)
        trial = FixedTrial(values)
        cand = self.from_trial(trial)
        trial.check_all_used(self.name)
        return cand

    def mutate(self, candidate: Candidate, seed: int) -> Candidate:
        """A neighbour: one choice of ``candidate`` changed at random (new choices sampled)."""
        rng = random.Random(seed)
        trial = FixedTrial(candidate.params)
        self.define(trial)
        names = [k for k, opts in trial.choices.items() if len(opts) > 1]
        if not names:
            raise SpaceError(f"candidate {candidate.encoding!r} has no choice to mutate")
        name = rng.choice(names)
        value = rng.choice([v for v in trial.choices[name] if v != trial.params[name]])
        return self.from_trial(MutantTrial(trial.params, name, value, rng.randrange(2**31)))

    def choices(self, samples: int = 64) -> dict[str, tuple[Any, ...]]:
        """Every parameter and its options, found by walking the definition (first options,
        last options, then ``samples`` random draws for parameters that appear conditionally)."""
        found: dict[str, tuple[Any, ...]] = {}
        trials: list[BaseTrial] = [PathTrial(), PathTrial(last=True)]
        trials += [RandomTrial(s) for s in range(samples)]
        for trial in trials:
            self.define(trial)
            for k, v in trial.choices.items():
                found.setdefault(k, v)
        return found

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Candidate]:
        """Every candidate, depth first over the choices in the order ``define`` asks them."""
        if self.size() is None or self.size() > limit:
            raise SpaceError(f"space {self.name!r} has {self.size() or 'an unknown number of'} "
                             f"candidates, more than limit={limit}; sample it instead")
        stack: list[tuple[int, ...]] = [()]
        while stack:
            path = stack.pop()
            trial = PathTrial(path)
            cand = self.from_trial(trial)
            for i in range(len(path), len(trial.indices)):  # deepest alternatives pop first
                for j in range(trial.sizes[i] - 1, 0, -1):
                    stack.append((*trial.indices[:i], j))
            yield cand

    def from_trial(self, trial: Any) -> Candidate:
        """The candidate whose choices ``trial`` makes: any object with ``suggest_categorical``,
        ``suggest_int`` and a ``params`` dict, an ``optuna.Trial`` included."""
        graph = self.define(trial)
        params = {k: trial.params[k] for k in trial.params}
        encoding = self.encode(params)
        graph.graph["encoding"] = encoding
        return Candidate(self.name, encoding, params, graph)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def check_positive_ints(space: str, key: str, value: Any, unique: bool = False) -> None:
    """For spaces' ``check_config``: ``value`` must be a positive int, or a non-empty tuple of
    them (distinct when ``unique``); raises :class:`SpaceError` naming the setting."""
    values = value if isinstance(value, tuple) else (value,)
    if not (values and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                           for v in values)):
        raise SpaceError(f"{space} setting {key} must be positive int(s), got {value!r}")
    if unique and len(set(values)) != len(values):
        raise SpaceError(f"{space} setting {key} repeats a choice: {value}; list each once")


# ----- registry -------------------------------------------------------------------------------

_BUILTIN = {  # name -> "module:class"; imported only when asked for
    "nb201": "search_spaces.nb201:NB201Space",
    "macro": "search_spaces.macro:MacroSpace",
    "mlp": "search_spaces.mlp:MLPSpace",
}
_REGISTERED: dict[str, type[SearchSpace]] = {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Make a space class loadable by its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise SpaceError(f"{cls!r} is not a SearchSpace subclass")
    _REGISTERED[cls.name] = cls
    return cls


def list_spaces() -> list[str]:
    """Names of the shipped and registered spaces."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _from_file(path: Path) -> type[SearchSpace]:
    if not path.is_file():
        raise SpaceError(f"search-space file {path} does not exist")
    module_name = f"hypernas_user_space_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as err:  # the user's code: name the file, the line and the error
        import traceback

        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise SpaceError(f"the space file {path}{line} raised {type(err).__name__}: {err}; fix "
                         "the file and run the command again") from None
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, SearchSpace)
             and v.__module__ == module_name and not getattr(v, "__abstractmethods__", None)]
    define = getattr(module, "define", None)
    if not found and callable(define):  # a space written in plain PyTorch
        return module_space(define, path.stem, path)
    if len(found) != 1:
        raise SpaceError(f"{path} must define exactly one SearchSpace subclass (or a function "
                         "define(trial) returning an nn.Module), found "
                         f"{[c.__name__ for c in found] or 'none'}")
    return found[0]


# ----- spaces written in plain PyTorch ---------------------------------------------------------
#
# A ``.py`` space file may define, instead of a SearchSpace subclass, one function
# ``define(trial)`` (or ``define(trial, config)``, ``config`` being the space's SpaceConfig: its
# ``input_shape`` and ``num_classes``) that asks the trial for its choices and returns the network
# as an ``nn.Module``. Every candidate is then that module imported by
# :func:`hypernas.graphs.trace.from_module`, so sampling, replay, mutation, ranking, refinement
# and export work on it unchanged; ``search_spaces/resnet.py`` is an example.

def module_space(define: Callable[..., Any], name: str, path: Path | None = None,
                 config: type[SpaceConfig] = SpaceConfig) -> type[SearchSpace]:
    """The search-space class of a ``define(trial[, config]) -> nn.Module`` function."""
    from torch import nn

    from ..graphs.trace import ModuleImportError, from_module

    takes_config = len(inspect.signature(define).parameters) >= 2
    where = f"{path}:{define.__code__.co_firstlineno}" if path else define.__qualname__
    doc = (inspect.getmodule(define).__doc__ or "") if inspect.getmodule(define) else ""

    class ModuleSpace(SearchSpace):
        __doc__ = f"The nn.Modules ``{where}`` defines."
        Config = config
        description = doc.strip().splitlines()[0] if doc.strip() else f"nn.Modules of {where}"

        def define(self, trial: Any) -> nx.DiGraph:
            module = define(trial, self.config) if takes_config else define(trial)
            if not isinstance(module, nn.Module):
                raise SpaceError(f"define() in {where} returned {type(module).__name__}, not an "
                                 "nn.Module; return the network built from the trial's choices")
            try:
                graph = from_module(module, self.config.input_shape, self.config.num_classes)
            except ModuleImportError as err:
                raise SpaceError(f"the module define() in {where} returned for "
                                 f"{dict(trial.params)}: {err}") from None
            graph.graph["space"] = self.name
            return graph

    ModuleSpace.name = name
    ModuleSpace.__name__ = ModuleSpace.__qualname__ = f"ModuleSpace_{name}"
    return ModuleSpace


def get_space_class(name: str) -> type[SearchSpace]:
    """The class of a space given by name, or by the path of a ``.py`` file defining one."""
    if name.endswith(".py") or "/" in name:
        return _from_file(Path(name))
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module, _, cls = _BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), cls)
    raise SpaceError(f"unknown search space {name!r}; known: {', '.join(list_spaces())} "
                     "(or give the path of a .py file defining a SearchSpace)")


def load_space(name: str, config: SpaceConfig | None = None, **overrides: Any) -> SearchSpace:
    """A ready space: ``load_space("nb201", input_shape=(1, 28, 28), N=1)``."""
    return get_space_class(name)(config, **overrides)
