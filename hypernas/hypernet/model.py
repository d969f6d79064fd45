"""The graph hypernetwork: architecture graphs in, the weights of each candidate out.

    node features --embed--> h0 --backbone (graph-aware)--> h --decoder(head s)--> {name: W}

A hypernetwork is made for one search space: :func:`shape_census` walks the space once to find
the largest shape of every kind of parameter, which fixes the decoder's bases. The census is part
of :class:`HyperNetConfig`, so a checkpoint says which shapes it can serve.

Example:
    >>> import hypernas as hn
    >>> space = hn.load_space("mlp")
    >>> hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, dim=16, census_samples=8))
    >>> cand = space.sample(0)
    >>> weights = hnet([cand.graph])[0]
    >>> sorted(weights) == sorted(hn.param_shapes(cand.graph))
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
from torch import Tensor, nn

from ..errors import HypernasError
from ..graphs.network import param_shapes
from ..spaces.space import SearchSpace
from ..spaces.trials import BaseTrial, PathTrial
from .backbones import BACKBONES
from .decoder import WeightDecoder, param_kind, slot_key
from .features import NUM_FEATURES, OP_INDEX, PackedGraphs, pack_graphs

__all__ = ["HyperNetConfig", "GraphHyperNetwork", "shape_census", "CensusError", "unseen_slots"]


class CensusError(HypernasError, ValueError):
    """A candidate needs a kind of parameter the hypernetwork has no bases for."""


def _kinds(graph: nx.DiGraph) -> dict[str, tuple[int, ...]]:
    """Largest shape per parameter kind in one graph."""
    found: dict[str, tuple[int, ...]] = {}
    for name, shape in param_shapes(graph).items():
        _grow(found, _kind_of(graph, name, shape), shape)
    return found


def _grow(table: dict[str, tuple[int, ...]], key: str, shape: Sequence[int]) -> None:
    old = table.get(key, (0,) * len(shape))
    table[key] = tuple(max(a, b) for a, b in zip(old, shape))


def shape_census(space: SearchSpace, samples: int = 256, seed: int = 0
                 ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Largest shape of each parameter kind, and of each positional slot (parameter name and
    kind), over the space, taken from the space's definition: the first and the last choice at
    every decision, then every option of every decision on each of those two (so each kernel,
    width or op meets the largest shapes of everything else; exact where a decision's shapes do
    not depend on another's option, as in the built-in spaces), then ``samples`` random
    candidates for spaces whose decisions interact."""
    graphs = [space.define(PathTrial()), space.define(PathTrial(last=True))]
    for last in (False, True):
        base = PathTrial(last=last)
        space.define(base)
        for name, options in {**space.choices(), **base.choices}.items():
            for option in options:
                graphs.append(space.define(_Swept(base.params, name, option, last)))
    graphs += [c.graph for c in space.sample_many(samples, seed=seed, unique=False)]
    kinds: dict[str, tuple[int, ...]] = {}
    slots: dict[str, tuple[int, ...]] = {}
    for graph in graphs:
        for kind, shape in _kinds(graph).items():
            _grow(kinds, kind, shape)
        for name, shape in param_shapes(graph).items():
            _grow(slots, slot_key(name, _kind_of(graph, name, shape)), shape)
    return dict(sorted(kinds.items())), dict(sorted(slots.items()))


class _Swept(BaseTrial):
    """``base``'s choices with ``name`` set to ``option``; a decision ``base`` never made takes
    its first (or, with ``last``, its last) option."""

    def __init__(self, base: dict[str, Any], name: str, option: Any, last: bool) -> None:
        super().__init__()
        self.base, self.name, self.option, self.last = base, name, option, last

    def _pick(self, name: str, options: tuple[Any, ...]) -> Any:
        if name == self.name and self.option in options:
            return self.option
        if name in self.base and self.base[name] in options:
            return self.base[name]
        return options[-1] if self.last else options[0]


def _kind_of(graph: nx.DiGraph, name: str, shape: Sequence[int]) -> str:
    node = name.split(".")[1]
    op = graph.nodes[node if node in graph else int(node)]["op"]
    return param_kind(op, name.rsplit(".", 1)[1], shape)


@dataclass(frozen=True)
class HyperNetConfig:
    """Everything that fixes a hypernetwork's architecture (saved with every checkpoint)."""

    space: str = "nb201"  # the search space it was made for
    backbone: str = "gated_gnn"  # gated_gnn | graph_transformer | graph_free
    dim: int = 64  # node embedding width
    layers: int = 1  # message-passing rounds (gated_gnn) or attention layers
    heads: int = 4  # attention heads (graph_transformer)
    samples: int = 4  # ensemble heads = weight samples per candidate (the score's spread)
    bases: int = 8  # base tensors per parameter kind
    census: tuple[tuple[str, tuple[int, ...]], ...] = ()  # largest shape per parameter kind
    positional: bool = True  # add a learned anchor per parameter slot (node name + kind)
    slots: tuple[tuple[str, tuple[int, ...]], ...] = ()  # largest shape per positional slot

    @classmethod
    def for_space(cls, space: SearchSpace, census_samples: int = 256, **kwargs: Any
                  ) -> "HyperNetConfig":
        """A config whose census covers ``space``."""
        census, slots = shape_census(space, census_samples)
        if not kwargs.get("positional", True):
            slots = {}
        return cls(space=space.name, census=tuple(census.items()), slots=tuple(slots.items()),
                   **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["census"] = {k: list(v) for k, v in self.census}
        out["slots"] = {k: list(v) for k, v in self.slots}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HyperNetConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise HypernasError(f"hypernet config has unknown fields {sorted(unknown)}; it was "
                                "written by another version of hypernas")
        data = dict(data)
        for key in ("census", "slots"):
            data[key] = tuple((k, tuple(v)) for k, v in dict(data.get(key, {})).items())
        return cls(**data)


class GraphHyperNetwork(nn.Module):
    """Predicts the parameters of any candidate graph of its search space.

    Args:
        config: the architecture; ``config.census`` must cover the candidates it will see.

    Shapes:
        a list of G graphs -> G dicts ``{param name: tensor}`` (names as in
        :func:`hypernas.param_shapes`), one weight sample (ensemble head) per graph.
    """

    def __init__(self, config: HyperNetConfig) -> None:
        super().__init__()
        if config.backbone not in BACKBONES:
            raise HypernasError(f"unknown hypernet backbone {config.backbone!r}; known: "
                                f"{', '.join(BACKBONES)}")
        if not config.census:
            raise HypernasError("HyperNetConfig has an empty census; make it with "
                                "HyperNetConfig.for_space(space)")
        self.config = config
        d = config.dim
        self.embed = nn.Linear(NUM_FEATURES, d)
        self.op_embed = nn.Embedding(len(OP_INDEX), d)
        self.backbone = BACKBONES[config.backbone](d, config.layers, config.heads)
        self.norm = nn.LayerNorm(d)
        self.decoder = WeightDecoder(d, dict(config.census), config.bases, config.samples,
                                     dict(config.slots) if config.positional else None)

    def embed_graphs(self, batch: PackedGraphs) -> Tensor:
        """Graph-aware node embeddings ``(nodes, dim)``."""
        h = self.embed(batch.x) + self.op_embed(batch.op)
        return self.norm(self.backbone(h, batch))

    def forward(self, graphs: Sequence[nx.DiGraph] | PackedGraphs,
                heads: Sequence[int] | None = None) -> list[dict[str, Tensor]]:
        """Weights for each graph; graph ``g`` uses ensemble head ``heads[g]`` (default 0)."""
        batch = graphs if isinstance(graphs, PackedGraphs) else self.pack(graphs)
        heads = list(heads) if heads is not None else [0] * batch.num_graphs
        if any(not 0 <= s < self.config.samples for s in heads):
            raise HypernasError(f"ensemble heads must lie in 0..{self.config.samples - 1}")
        h = self.embed_graphs(batch)
        return self.decoder(h, batch, heads, self._kinds(batch))

    def samples(self, graphs: Sequence[nx.DiGraph] | PackedGraphs) -> list[list[dict[str, Tensor]]]:
        """Every weight sample of every graph: ``out[g][s]`` is graph g's weights from head s."""
        batch = graphs if isinstance(graphs, PackedGraphs) else self.pack(graphs)
        h = self.embed_graphs(batch)
        kinds = self._kinds(batch)
        per_head = [self.decoder(h, batch, [s] * batch.num_graphs, kinds)
                    for s in range(self.config.samples)]
        return [[per_head[s][g] for s in range(self.config.samples)]
                for g in range(batch.num_graphs)]

    def pack(self, graphs: Sequence[nx.DiGraph]) -> PackedGraphs:
        """Pack graphs onto this hypernetwork's device, refusing parameters it cannot serve."""
        batch = pack_graphs(graphs)
        self._kinds(batch)
        return batch.to(self.embed.weight.device)

    def _kinds(self, batch: PackedGraphs) -> list[list[str]]:
        census = dict(self.config.census)
        out = []
        for g, params in enumerate(batch.params):
            kinds = []
            for node, name, shape in params:
                op = _op_name(int(batch.op[node]))
                kind = param_kind(op, name.rsplit(".", 1)[1], shape)
                if kind not in census or len(census[kind]) != len(shape):
                    raise CensusError(
                        f"parameter {name} ({kind}, shape {shape}) is not one this hypernetwork "
                        f"was made for (space {self.config.space!r}; it knows "
                        f"{', '.join(census)}); train a hypernetwork on this space")
                if any(want > have for want, have in zip(shape, census[kind])):
                    raise CensusError(
                        f"parameter {name} ({kind}) has shape {tuple(shape)}, larger than any "
                        f"{kind} of space {self.config.space!r} (at most {census[kind]}): the "
                        "hypernetwork cannot make it without repeating channels; train a "
                        "hypernetwork on a space that includes this candidate")
                kinds.append(kind)
            out.append(kinds)
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_OP_NAMES = {i: name for name, i in OP_INDEX.items()}


def _op_name(index: int) -> str:
    return _OP_NAMES[index]


def unseen_slots(config: HyperNetConfig, graph: nx.DiGraph) -> list[str]:
    """The parameters of ``graph`` without a positional anchor: (node, kind) places no
    candidate of the training space had, so nothing of them was learned (e.g. a 4th block for
    a hypernetwork trained with at most 3). Empty for a graph inside the space."""
    if not config.positional:
        return []
    slots = dict(config.slots)
    return [name for name, shape in param_shapes(graph).items()
            if slot_key(name, _kind_of(graph, name, shape)) not in slots]
