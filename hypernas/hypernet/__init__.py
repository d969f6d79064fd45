"""Graph hypernetworks: read an architecture graph, emit the weights of that candidate."""

from .backbones import BACKBONES, list_hypernets
from .features import PackedGraphs, pack_graphs
from .model import CensusError, GraphHyperNetwork, HyperNetConfig, shape_census

__all__ = ["GraphHyperNetwork", "HyperNetConfig", "CensusError", "PackedGraphs", "pack_graphs",
           "shape_census", "list_hypernets", "BACKBONES"]
