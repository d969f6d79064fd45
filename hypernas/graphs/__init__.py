"""Architecture graphs: the op registry, validation, JSON, canonical ids and the target network.

Takes a ``networkx.DiGraph`` whose nodes name an op of the registry; gives its shapes
(:func:`infer_shapes`), its JSON (:func:`graph_to_json`), its canonical id
(:func:`canonical_id`), and an ``nn.Module`` (:class:`Network`) whose parameter names and shapes
(:func:`param_shapes`) are known before any weights exist, so weights made elsewhere run through
``torch.func.functional_call``.

    ops/          the op registry: each op's attributes, output shape, parameter shapes, module
    graph.py      validate, infer_shapes and the node helpers
    builder.py    GraphBuilder: a graph built node by node, shapes checked as it goes
    serialize.py  node-link JSON, validated on the way in
    canonical.py  one id per function-by-construction
    network.py    Network(graph), param_shapes, count_params, count_macs
    latency.py    latency at batch 1 on this machine (torch or onnxruntime), and its estimate

Example:
    >>> b = GraphBuilder(input_shape=(4,), num_outputs=3)
    >>> b.output(b.add("linear", b.input, out_features=3))
    'output'
    >>> g = b.build()
    >>> infer_shapes(g)["linear"], count_params(g), len(canonical_id(g))
    ((3,), 15, 16)
"""

from .builder import GraphBuilder
from .canonical import canonical_graph, canonical_id, same_architecture
from .graph import (
                    infer_shapes,
                    input_node,
                    node_attrs,
                    ordered_inputs,
                    output_node,
                    resolve_attrs,
                    topological_order,
                    validate,
)
from .network import Network, buffer_shapes, build_network, count_macs, count_params, param_shapes
from .ops import get_op, list_ops, register_op
from .serialize import (
                    graph_from_dict,
                    graph_from_json,
                    graph_to_dict,
                    graph_to_json,
                    graphs_equal,
                    load_graph,
                    save_graph,
)

__all__ = [
    "GraphBuilder", "Network", "buffer_shapes", "build_network", "canonical_graph", "canonical_id",
    "count_macs", "count_params", "get_op", "graph_from_dict", "graph_from_json", "graph_to_dict",
    "graph_to_json", "graphs_equal", "infer_shapes", "input_node", "list_ops", "load_graph",
    "node_attrs", "ordered_inputs", "output_node", "param_shapes", "register_op", "resolve_attrs",
    "same_architecture", "save_graph", "topological_order", "validate",
]
