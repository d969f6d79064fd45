"""Any ``nn.Module`` built from the registry's ops as an architecture graph.

:func:`from_module` traces the module with ``torch.fx`` (symbolic tracing: its ``forward`` runs
once on proxies, so the graph is the module's own code path; data-dependent control flow cannot be
traced and is refused), runs the traced program once on zeros of ``input_shape`` to learn every
tensor's shape, and maps each call to an op of :mod:`hypernas.graphs.ops` with its attributes:

    nn.Conv2d (square kernel, stride, padding and dilation; groups; bias)  -> conv
    nn.Linear                                                              -> linear
    nn.BatchNorm1d/2d (with running statistics)                            -> batch_norm
    nn.LayerNorm (over the last dimension)                                 -> layer_norm
    nn.ReLU/ReLU6/GELU/SiLU/Hardswish/Tanh/Sigmoid and their functions    -> the activation
    nn.MaxPool2d/AvgPool2d (square, floor mode)                            -> max_pool, avg_pool
    nn.AdaptiveAvgPool2d(1) then flatten, x.mean((2, 3))                   -> global_avg_pool
    nn.AdaptiveAvgPool2d(s) otherwise (an SE block's squeeze)              -> adaptive_avg_pool
    nn.GroupNorm, nn.Hardsigmoid                                           -> group_norm, ...
    nn.Flatten, torch.flatten(x, 1), x.flatten(1), x.view(x.size(0), -1)   -> flatten
    x + y, x * y (broadcasting: an SE gate), torch.cat(dim=1)              -> add, mul, concat
    nn.Identity; nn.Dropout, F.dropout                                     -> identity; dropout

Anything else is refused with the module path, the call and what to do, never dropped. Node
names follow module paths (``layer1.0.conv1`` -> ``layer1_0_conv1``) and each node's ``label``
keeps the path, so :func:`module_weights` carries the module's own weights over to
``Network(graph)``: run with them it gives the module's output (the tests check 1e-5).

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                     nn.Flatten(), nn.Linear(4, 10))
    >>> g = from_module(net, (1, 8, 8))
    >>> [g.nodes[n]["op"] for n in ("0", "1", "2", "3", "4")]
    ['conv', 'relu', 'global_avg_pool', 'flatten', 'linear']
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import GraphError, HypernasError
from .builder import GraphBuilder
from .network import PREFIX, Network

__all__ = ["ModuleImportError", "from_module", "module_weights"]


class ModuleImportError(HypernasError, ValueError):
    """A module cannot be traced, or one of its calls has no op in the registry."""


_ACTIVATIONS: dict[Any, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish",
    nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.silu: "silu",
    F.hardswish: "hardswish", torch.tanh: "tanh", F.gelu: "gelu", torch.sigmoid: "sigmoid",
    F.hardsigmoid: "hardsigmoid", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh",
}
_ADD = (operator.add, torch.add, "add")
_MUL = (operator.mul, torch.mul, "mul")


def _square(value: Any, what: str) -> int:
    """One int from an int or a pair of equal ints (the registry's ops are square)."""
    if isinstance(value, int):
        return value
    a, b = value
    if a != b:
        raise _Unmapped(f"{what} {tuple(value)} is not square; the registry's ops take square "
                        "kernels, strides, paddings and dilations")
    return int(a)


class _Unmapped(Exception):
    """Why one call has no op (turned into a ModuleImportError naming where it is)."""


def _conv(m: nn.Conv2d) -> tuple[str, dict[str, Any]]:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise _Unmapped(f"padding {m.padding!r} with mode {m.padding_mode!r}: only explicit zero "
                        "padding maps to conv; give padding as an int")
    return "conv", {"out_channels": m.out_channels,
                    "kernel_size": _square(m.kernel_size, "kernel"),
                    "stride": _square(m.stride, "stride"), "padding": _square(m.padding, "padding"),
                    "dilation": _square(m.dilation, "dilation"), "groups": m.groups,
                    "bias": m.bias is not None}


def _batch_norm(m: nn.modules.batchnorm._BatchNorm) -> tuple[str, dict[str, Any]]:
    if not m.track_running_stats or m.momentum is None:
        raise _Unmapped("batch norm without running statistics (or with a cumulative average) "
                        "has no op; use track_running_stats=True and a float momentum")
    return "batch_norm", {"affine": m.affine, "eps": float(m.eps), "momentum": float(m.momentum)}


def _layer_norm(m: nn.LayerNorm) -> tuple[str, dict[str, Any]]:
    if len(m.normalized_shape) != 1 or not m.elementwise_affine or m.bias is None:
        raise _Unmapped("layer norm maps to layer_norm over the last dimension with a learnable "
                        f"scale and shift; this one normalises {tuple(m.normalized_shape)}")
    return "layer_norm", {"eps": float(m.eps)}


def _pool(m: nn.MaxPool2d | nn.AvgPool2d) -> tuple[str, dict[str, Any]]:
    if m.ceil_mode or getattr(m, "dilation", 1) not in (1, (1, 1)):
        raise _Unmapped("pooling with ceil_mode or dilation has no op; use the floor mode")
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        raise _Unmapped("average pooling with a divisor_override has no op")
    k = _square(m.kernel_size, "kernel")
    attrs = {"kernel_size": k, "stride": _square(m.stride or k, "stride"),
             "padding": _square(m.padding, "padding")}
    if isinstance(m, nn.AvgPool2d):
        return "avg_pool", {**attrs, "count_include_pad": m.count_include_pad}
    return "max_pool", attrs


def _adaptive(m: nn.AdaptiveAvgPool2d) -> tuple[str, dict[str, Any]]:
    return "adaptive_avg_pool", {"output_size": _square(m.output_size, "output size")}


def _group_norm(m: nn.GroupNorm) -> tuple[str, dict[str, Any]]:
    return "group_norm", {"num_groups": m.num_groups, "eps": float(m.eps), "affine": m.affine}


def _gelu(m: nn.GELU) -> tuple[str, dict[str, Any]]:
    if m.approximate != "none":
        raise _Unmapped("GELU's tanh approximation has no op; use nn.GELU()")
    return "gelu", {}


_MODULES: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    nn.Conv2d: _conv, nn.Linear: lambda m: ("linear", {"out_features": m.out_features,
                                                       "bias": m.bias is not None}),
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.LayerNorm: _layer_norm,
    nn.MaxPool2d: _pool, nn.AvgPool2d: _pool, nn.AdaptiveAvgPool2d: _adaptive,
    nn.Flatten: lambda m: ("flatten", {}), nn.Identity: lambda m: ("identity", {}),
    nn.Dropout: lambda m: ("dropout", {"p": float(m.p)}), nn.GELU: _gelu,
    nn.GroupNorm: _group_norm,
    **{cls: (lambda op: lambda m: (op, {}))(op) for cls, op in _ACTIVATIONS.items()
       if isinstance(cls, type)},
}


def _flattening(traced: Any, node: Any) -> bool:
    """Whether a traced call flattens its input (a classifier head after global pooling)."""
    if node.op == "call_module":
        return isinstance(traced.get_submodule(node.target), nn.Flatten)
    return node.target is torch.flatten or (
        node.op == "call_method" and node.target in ("flatten", "view", "reshape"))


def _flattens(shape_in: Sequence[int], args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """Whether a flatten/view/reshape call keeps the batch and flattens the rest."""
    start = kwargs.get("start_dim", args[0] if args else 0)
    end = kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
    return start == 1 and end in (-1, len(shape_in) - 1)


def from_module(module: nn.Module, input_shape: Sequence[int],
                num_outputs: int | None = None) -> nx.DiGraph:
    """The architecture graph of ``module`` for inputs of ``input_shape`` (no batch dim); the
    output must be a ``(batch, classes)`` tensor (``num_outputs`` is read from it when not
    given). Raises :class:`ModuleImportError` naming the call and the fix for anything that has
    no op."""
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    name = type(module).__name__
    try:
        traced = symbolic_trace(module)
    except Exception as err:  # torch.fx raises TraceError, TypeError, ...: all mean "not traceable"
        raise ModuleImportError(
            f"{name} cannot be traced by torch.fx ({type(err).__name__}: {_first(err)}); its "
            "forward must not branch or loop on tensor values (data-dependent control flow): "
            "move such choices into the constructor, where a space's define(trial) makes them"
        ) from None
    was_training = module.training
    traced.eval()
    try:
        ShapeProp(traced).propagate(torch.zeros(1, *input_shape))
    except Exception as err:
        raise ModuleImportError(f"{name} rejects inputs of shape {tuple(input_shape)} "
                                f"({type(err).__name__}: {_first(err)}); give the input_shape "
                                "the module expects, without the batch dimension") from None
    finally:
        module.train(was_training)
    out = next(n for n in traced.graph.nodes if n.op == "output")
    out_shape = _shape(out.args[0])
    if len(out_shape) != 2:
        raise ModuleImportError(f"{name} returns a tensor of shape {tuple(out_shape)}; a "
                                "classifier's output is (batch, classes)")
    builder = GraphBuilder(input_shape, num_outputs or out_shape[1])
    env: dict[Any, str] = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if env:
                raise ModuleImportError(f"{name}.forward takes more than one input ({node.name}); "
                                        "a network here takes one tensor")
            env[node] = builder.input
        elif node.op == "output":
            builder.output(env[node.args[0]])
        else:
            try:
                env[node] = _add_node(builder, traced, node, env)
            except (_Unmapped, GraphError) as err:
                where = node.target if node.op == "call_module" else node.name
                raise ModuleImportError(f"{name}: {where} ({_describe(node)}) cannot be "
                                        f"imported: {err}") from None
    return builder.build()


def _first(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _shape(node: Any) -> tuple[int, ...]:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise _Unmapped("its value is not a single tensor")
    return tuple(meta.shape)


def _describe(node: Any) -> str:
    if node.op == "call_module":
        return "a module call"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__",
                                                                      str(node.target))
    return f"{node.op} {target}"


def _inputs(node: Any, env: dict[Any, str]) -> list[str]:
    from torch.fx import Node

    tensors = [a for a in node.args if isinstance(a, Node)]
    missing = [a for a in tensors if not env.get(a)]
    if missing:
        raise _Unmapped(f"its input {missing[0].name} is not a network value")
    return [env[a] for a in tensors]


def _add_node(builder: GraphBuilder, traced: Any, node: Any, env: dict[Any, str]) -> str:
    """The graph node for one traced call (or the input it passes through unchanged)."""
    args, kwargs = node.args, node.kwargs
    if not hasattr(node.meta.get("tensor_meta"), "shape"):
        return ""  # not a tensor (a size, a shape): only read by the calls that take it
    if node.op == "call_module":
        sub = traced.get_submodule(node.target)
        mapper = _MODULES.get(type(sub))
        if mapper is None:
            raise _Unmapped(f"{type(sub).__name__} has no op in the registry; build it from "
                            "convs, linears, norms, activations, pooling, add and cat")
        op, attrs = mapper(sub)
        if op == "adaptive_avg_pool" and attrs["output_size"] == 1 and all(
                _flattening(traced, user) for user in node.users):
            op, attrs = "global_avg_pool", {}  # pooled then flattened: as the built-in spaces
        (x,) = _inputs(node, env)
        return builder.add(op, x, name=_node_name(node.target), label=node.target, **attrs)
    if node.op == "get_attr":
        raise _Unmapped("a tensor held by the module and used in forward (a free parameter or "
                        "buffer) has no op; compute it with a layer instead")
    target = node.target
    shape_in = _shape(args[0]) if args and hasattr(args[0], "meta") else ()
    if target in _ADD or (node.op == "call_method" and target == "add"):
        xs = _inputs(node, env)
        if len(xs) != 2 or len(args) != 2 or kwargs:
            raise _Unmapped("add maps only x + y of two network values of one shape")
        return builder.add("add", *xs, name=_node_name(node.name))
    if target in _MUL or (node.op == "call_method" and target == "mul"):
        xs = _inputs(node, env)
        if len(xs) != 2 or len(args) != 2 or kwargs:
            raise _Unmapped("mul maps only x * y of two network values whose shapes broadcast "
                            "(a constant factor has no op)")
        return builder.add("mul", *xs, name=_node_name(node.name))
    if target is torch.cat:
        tensors, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0)
        if dim not in (1, -len(_shape(tensors[0]))):
            raise _Unmapped(f"cat along dim {dim}: concat joins channels (dim 1)")
        return builder.add("concat", *[env[t] for t in tensors], name=_node_name(node.name))
    if target in _ACTIVATIONS:
        if kwargs.get("approximate", "none") != "none":
            raise _Unmapped("GELU's tanh approximation has no op")
        return builder.add(_ACTIVATIONS[target], _inputs(node, env)[0],
                           name=_node_name(node.name))
    flatten = (target is torch.flatten or (node.op == "call_method" and target == "flatten"))
    if flatten and _flattens(shape_in, args[1:], kwargs):
        return builder.add("flatten", env[args[0]], name=_node_name(node.name))
    if node.op == "call_method" and target in ("view", "reshape") \
            and _shape(node) == (shape_in[0], int(torch.tensor(shape_in[1:]).prod())):
        return builder.add("flatten", env[args[0]], name=_node_name(node.name))
    global_pool = ((node.op == "call_method" and target == "mean"
                    and tuple(args[1:2]) in (((2, 3),), ([2, 3],), ((-2, -1),), ([-2, -1],))
                    and not kwargs.get("keepdim", False))
                   or (target is F.adaptive_avg_pool2d and args[1:2] in ((1,), ((1, 1),))))
    if global_pool:
        return builder.add("global_avg_pool", env[args[0]], name=_node_name(node.name))
    if target is F.dropout:
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        return builder.add("dropout", env[args[0]], name=_node_name(node.name), p=float(p))
    if node.op == "call_method" and target == "contiguous":
        return env[args[0]]
    raise _Unmapped("no op of the registry computes it; express it with convs, linears, norms, "
                    "activations, pooling, add and cat")


def _node_name(path: str) -> str:
    """A graph node name for a module path or traced value (``layer1.0.conv1`` ->
    ``layer1_0_conv1``), clear of the names a network's module dict holds itself."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in path) or "node"
    return f"{name}_" if name in _RESERVED else name


_RESERVED = frozenset(dir(nn.ModuleDict()))


def module_weights(module: nn.Module, graph: nx.DiGraph) -> dict[str, Tensor]:
    """``module``'s parameters and buffers under the names ``Network(graph)`` gives them, for a
    graph :func:`from_module` made from it (each node's ``label`` is its module path)."""
    state = module.state_dict()
    names = set(Network(graph).state_dict())
    out: dict[str, Tensor] = {}
    for node, data in graph.nodes(data=True):
        path = data.get("label")
        if path is None:
            continue
        for key, value in state.items():
            if key.startswith(path + ".") and "." not in key[len(path) + 1:]:
                target = f"{PREFIX}.{node}.{key[len(path) + 1:]}"
                if target in names:
                    out[target] = value
    missing = names - set(out)
    if missing:
        raise ModuleImportError(f"no weights of the module for {sorted(missing)[:3]}; was the "
                                "graph made from this module by from_module?")
    return out
