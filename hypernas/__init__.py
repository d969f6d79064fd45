"""hypernas: hypernetwork-driven neural architecture search.

A graph hypernetwork reads an architecture graph and emits the weights of any candidate in a
search space, so thousands of candidates can be ranked without training each.

Example:
    >>> import hypernas as hn
    >>> space = hn.load_space("nb201", input_shape=(1, 28, 28), N=1)
    >>> cand = space.replay("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    >>> net = hn.Network(cand.graph)
"""

from .errors import (
                     ArityError,
                     CycleError,
                     EncodingError,
                     GraphError,
                     GraphFormatError,
                     HypernasError,
                     InputNodeError,
                     NodeAttributeError,
                     OutputNodeError,
                     ShapeError,
                     SpaceError,
                     UnknownOpError,
                     UnreachableNodeError,
)
from .export.files import load
from .graphs.builder import GraphBuilder
from .graphs.canonical import canonical_id, same_architecture
from .graphs.graph import infer_shapes, validate
from .graphs.network import Network, count_macs, count_params, param_shapes
from .graphs.ops import list_ops
from .graphs.serialize import graph_from_json, graph_to_json, load_graph, save_graph
from .graphs.trace import ModuleImportError, from_module, module_weights
from .spaces.space import (
                     Candidate,
                     SearchSpace,
                     SpaceConfig,
                     list_spaces,
                     load_space,
                     register_space,
)

__version__ = "0.1.0"

__all__ = [
    "Candidate", "GraphBuilder", "Network", "SearchSpace", "SpaceConfig", "canonical_id",
    "count_macs", "count_params", "from_module", "graph_from_json", "graph_to_json",
    "infer_shapes", "list_ops", "list_spaces", "load", "load_graph", "load_space",
    "module_weights", "param_shapes", "register_space", "same_architecture", "save_graph",
    "validate",
    # errors
    "HypernasError", "GraphError", "GraphFormatError", "CycleError", "InputNodeError",
    "OutputNodeError", "UnknownOpError", "NodeAttributeError", "ShapeError", "ArityError",
    "UnreachableNodeError", "SpaceError", "EncodingError", "ModuleImportError",
]
