"""Several independently trained hypernetworks of one architecture, used as one.

Two trainings of the same hypernetwork that differ only in their seed rank candidates
differently (on the Fashion-MNIST NB201 truth, 0.83 and 0.74 Spearman for two 2,910-step
trainings): which one a user gets is luck. An ensemble removes the luck the way deep ensembles
do for ordinary networks: every member predicts weights, and a candidate's score averages over
all of them. It needs no new scoring code: member ``m``'s ensemble head ``h`` is the ensemble's
weight sample ``m * samples + h``, so the scorer, which already gives every weight sample its
own slice of the evaluation images, scores each candidate once over those images whatever the
number of members (the hypernetworks' own forward passes are the only extra cost), and the
spread over the samples now includes how the trainings disagree.

Example:
    >>> import hypernas as hn
    >>> from hypernas.hypernet import GraphHyperNetwork, HyperNetConfig
    >>> space = hn.load_space("mlp")
    >>> cfg = HyperNetConfig.for_space(space, dim=16, samples=2, census_samples=8)
    >>> ens = HyperNetEnsemble([GraphHyperNetwork(cfg), GraphHyperNetwork(cfg)])
    >>> ens.config.samples, len(ens.samples([space.sample(0).graph])[0])
    (4, 4)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import networkx as nx
from torch import Tensor, nn

from ..errors import HypernasError
from .features import PackedGraphs
from .model import GraphHyperNetwork

__all__ = ["HyperNetEnsemble"]


class HyperNetEnsemble(nn.Module):
    """Members of one :class:`~hypernas.hypernet.model.HyperNetConfig` whose weight samples are
    the members' heads in order.

    Args:
        members: two or more hypernetworks with equal configs (trained with different seeds).

    Shapes:
        like :class:`GraphHyperNetwork`: a list of G graphs -> G dicts of weights; ``config``
        is the members' config with ``samples`` = members x heads; ``member_config`` is theirs.
    """

    def __init__(self, members: Sequence[GraphHyperNetwork]) -> None:
        super().__init__()
        if len(members) < 2:
            raise HypernasError("an ensemble needs at least two hypernetworks; use the one alone")
        first = members[0].config
        if any(m.config != first for m in members[1:]):
            raise HypernasError("the hypernetworks of an ensemble must share one config (same "
                                "space, census, backbone, width and heads); train each member "
                                "with the same settings and a different --seed")
        self.members = nn.ModuleList(members)
        self.member_config = first
        self.config = dataclasses.replace(first, samples=len(members) * first.samples)

    @property
    def embed(self) -> nn.Linear:
        """The first member's input layer (where callers look for the device)."""
        return self.members[0].embed

    def forward(self, graphs: Sequence[nx.DiGraph] | PackedGraphs,
                heads: Sequence[int] | None = None) -> list[dict[str, Tensor]]:
        """Weights for each graph; graph ``g`` uses the ensemble's sample ``heads[g]``
        (default 0: the first member's first head)."""
        batch = graphs if isinstance(graphs, PackedGraphs) else self.pack(graphs)
        heads = list(heads) if heads is not None else [0] * batch.num_graphs
        if any(not 0 <= s < self.config.samples for s in heads):
            raise HypernasError(f"ensemble heads must lie in 0..{self.config.samples - 1}")
        per = self.member_config.samples
        out: list[dict[str, Tensor]] = [{} for _ in range(batch.num_graphs)]
        for m, member in enumerate(self.members):
            mine = [g for g, s in enumerate(heads) if s // per == m]
            if not mine:
                continue
            # a member predicts for the whole batch; the graphs of other members are dropped
            # (packing a sub-batch would cost more than the decoder's extra rows)
            weights = member(batch, [s % per for s in heads])
            for g in mine:
                out[g] = weights[g]
        return out

    def samples(self, graphs: Sequence[nx.DiGraph] | PackedGraphs) -> list[list[dict[str, Tensor]]]:
        """Every weight sample of every graph: ``out[g][m * heads + h]`` is member m's head h."""
        batch = graphs if isinstance(graphs, PackedGraphs) else self.pack(graphs)
        per_member = [member.samples(batch) for member in self.members]
        return [[w for member in per_member for w in member[g]] for g in range(batch.num_graphs)]

    def pack(self, graphs: Sequence[nx.DiGraph]) -> PackedGraphs:
        """Pack graphs onto the ensemble's device, refusing parameters it cannot serve."""
        return self.members[0].pack(graphs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
