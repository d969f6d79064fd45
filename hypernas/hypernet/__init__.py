"""Graph hypernetworks: read an architecture graph, emit the weights of that candidate.

Takes architecture graphs (a batch of ``networkx.DiGraph``); gives one ``dict[str, Tensor]`` per
graph and weight sample, keyed like ``Network(graph).state_dict()``, to run with
``torch.func.functional_call``. The trainer fits it over a search space on an image dataset.

    features.py   graphs packed into one batch: node features, levels, distances
    backbones.py  the message passing (gated_gnn, graph_transformer, graph_free)
    decoder.py    node embeddings to parameters of the exact shape
    model.py      GraphHyperNetwork and its config (with the space's shape census)
    ensemble.py   HyperNetEnsemble: independent trainings used as one (their heads in turn)
    trainer.py    HyperTrainer: meta-batches of architectures on image batches; checkpoints
"""

from .backbones import BACKBONES, list_hypernets
from .ensemble import HyperNetEnsemble
from .features import PackedGraphs, pack_graphs
from .model import CensusError, GraphHyperNetwork, HyperNetConfig, shape_census

__all__ = ["GraphHyperNetwork", "HyperNetEnsemble", "HyperNetConfig", "CensusError",
           "PackedGraphs", "pack_graphs", "shape_census", "list_hypernets", "BACKBONES"]
