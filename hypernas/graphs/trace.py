"""Any ``nn.Module`` built from the registry's ops as an architecture graph.

:func:`from_module` traces the module with ``torch.fx`` (symbolic tracing: its ``forward`` runs
once on proxies, so the graph is the module's own code path; data-dependent control flow cannot be
traced and is refused), runs the traced program once on a batch of two zeros of ``input_shape``
to learn every tensor's shape, and maps each call to an op of :mod:`hypernas.graphs.ops` with
its attributes (the module's training/eval mode picks the code path traced):

    nn.Conv2d (square kernel, stride, padding and dilation; groups; bias)  -> conv
    nn.Linear                                                              -> linear
    nn.BatchNorm1d/2d (with running statistics)                            -> batch_norm
    nn.LayerNorm (over the last dimension)                                 -> layer_norm
    nn.ReLU/ReLU6/GELU/SiLU/Hardswish/Tanh/Sigmoid and their functions    -> the activation
    nn.MaxPool2d/AvgPool2d and their functions (square windows)            -> max_pool, avg_pool
    nn.AdaptiveAvgPool2d(1) then flatten, x.mean((2, 3))                   -> global_avg_pool
    nn.AdaptiveAvgPool2d(s) otherwise (an SE block's squeeze)              -> adaptive_avg_pool
    nn.GroupNorm, nn.Hardsigmoid                                           -> group_norm, ...
    nn.Flatten, torch.flatten(x, 1), x.flatten(1), x.view(x.size(0), -1)   -> flatten
    x.view/reshape/flatten to other static shapes (batch first)            -> reshape
    x.permute, torch.transpose (batch first)                               -> permute
    x + y, x * y (broadcasting: an SE gate), torch.cat(dim=1)              -> add, mul, concat
    x.chunk/split along a non-batch dim, x[:, a:b]; x[:, i]                -> slice; select
    nn.MultiheadAttention(x, x, x), batch first, no masks                  -> self_attention
    held tensor: cat before tokens; added; multiplied per channel          -> class_token,
                                                       position_embedding, layer_scale
    F.layer_norm with a module's own weight and bias (ConvNeXt's 2-d norm) -> layer_norm
    torchvision.ops.stochastic_depth                                       -> stochastic_depth
    nn.MaxPool2d(ceil_mode=True) (SqueezeNet)                              -> max_pool
    nn.Identity; nn.Dropout, F.dropout                                     -> identity; dropout

A forward torch.fx cannot trace (one that branches on its input's shape, say) is exported with
``torch.export`` instead, at ``input_shape``, and its ATen calls are mapped to the same ops; the
graph's ``traced_by`` attribute says which tracer made it, and why fx did not. Data-dependent
control flow defeats both and is refused; so is a module called twice (its weights would be
shared, and a graph gives each call its own).

These cover torchvision's ResNet, ResNeXt, Wide ResNet, MobileNetV2/V3, EfficientNet (V1, V2),
RegNet, ShuffleNetV2, SqueezeNet, MNASNet, DenseNet, ConvNeXt, ViT, VGG, AlexNet and GoogLeNet
(``benchmarks/torchvision_coverage.py`` measures which import and how exactly).

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
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

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
_ADD = (operator.add, operator.iadd, torch.add, "add", "add_")
_MUL = (operator.mul, operator.imul, torch.mul, "mul", "mul_")
_PERMUTE = (torch.permute, "permute", torch.transpose, "transpose")
# nn.MultiheadAttention's parameters under the self_attention op's names
_ATTENTION_NAMES = {"in_proj_weight": "in_weight", "in_proj_bias": "in_bias",
                    "out_proj.weight": "out_weight", "out_proj.bias": "out_bias"}
# ops whose one parameter is a tensor the module holds itself (label: the tensor's path)
_FREE = ("class_token", "position_embedding", "layer_scale")


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
    if getattr(m, "dilation", 1) not in (1, (1, 1)):
        raise _Unmapped("pooling with dilation has no op; use a dilation of 1")
    if m.ceil_mode and isinstance(m, nn.AvgPool2d):
        raise _Unmapped("average pooling with ceil_mode has no op; use the floor mode")
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        raise _Unmapped("average pooling with a divisor_override has no op")
    k = _square(m.kernel_size, "kernel")
    attrs = {"kernel_size": k, "stride": _square(m.stride or k, "stride"),
             "padding": _square(m.padding, "padding")}
    if isinstance(m, nn.AvgPool2d):
        return "avg_pool", {**attrs, "count_include_pad": m.count_include_pad}
    return "max_pool", {**attrs, "ceil_mode": True} if m.ceil_mode else attrs


def _functional_pool(max_pool: bool, args: Sequence[Any], kwargs: dict[str, Any]
                     ) -> tuple[str, dict[str, Any]]:
    """``F.max_pool2d``/``F.avg_pool2d`` or their ATen ops (the same arguments, in the same
    order) mapped as the module with those arguments would be."""
    names = (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices") if max_pool else
             ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
              "divisor_override"))
    c = {**dict(zip(names, args)), **kwargs}
    c = {k: _pair(v) for k, v in c.items()}  # ATen's lists as the modules' ints and pairs
    stride = c.get("stride") or None  # ATen's [] and F's None both mean the kernel size
    if max_pool:
        if c.get("return_indices"):
            raise _Unmapped("max pooling that returns indices has no op")
        return _pool(nn.MaxPool2d(c["kernel_size"], stride, c.get("padding", 0),
                                  c.get("dilation", 1), ceil_mode=bool(c.get("ceil_mode"))))
    return _pool(nn.AvgPool2d(c["kernel_size"], stride, c.get("padding", 0),
                              bool(c.get("ceil_mode")), bool(c.get("count_include_pad", True)),
                              c.get("divisor_override")))


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
        why = f"{type(err).__name__}: {_first(err)}"
        graph = _from_export(module, input_shape, num_outputs, name, why)
        graph.graph["traced_by"] = f"torch.export (torch.fx could not trace it: {why})"
        return graph
    was_training = module.training
    traced.eval()
    try:
        ShapeProp(traced).propagate(torch.zeros(2, *input_shape))  # 2: the batch dim shows
    except Exception as err:
        raise ModuleImportError(f"{name} rejects inputs of shape {tuple(input_shape)} "
                                f"({type(err).__name__}: {_first(err)}); give the input_shape "
                                "the module expects, without the batch dimension") from None
    finally:
        module.train(was_training)
    out = next(n for n in traced.graph.nodes if n.op == "output")
    builder = _classifier(name, input_shape, num_outputs, _shape(out.args[0]))
    env: dict[Any, _Value] = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if env:
                raise ModuleImportError(f"{name}.forward takes more than one input ({node.name}); "
                                        "a network here takes one tensor")
            env[node] = builder.input
        else:
            try:
                if node.op == "output":
                    builder.output(_tensor(node.args[0], env, "the output"))
                else:
                    env[node] = _add_node(builder, traced, node, env)
            except (_Unmapped, GraphError) as err:
                where = node.target if node.op == "call_module" else node.name
                raise ModuleImportError(f"{name}: {where} ({_describe(node)}) cannot be "
                                        f"imported: {err}") from None
    graph = builder.build()
    graph.graph["traced_by"] = "torch.fx"
    return graph


def _classifier(name: str, input_shape: Sequence[int], num_outputs: int | None,
                out_shape: tuple[int, ...]) -> GraphBuilder:
    """The builder of a module whose output has ``out_shape`` (batch dim included), which must
    be a classifier's ``(batch, classes)``."""
    if len(out_shape) != 2:
        raise ModuleImportError(f"{name} returns a tensor of shape (batch, "
                                f"{', '.join(map(str, out_shape[1:]))}); a classifier's output "
                                "is (batch, classes)")
    return GraphBuilder(input_shape, num_outputs or out_shape[1])


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


@dataclass(frozen=True)
class _Held:
    """A tensor the module holds itself (a ``get_attr``: a free parameter or buffer)."""

    path: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Parts:
    """What ``chunk``/``split`` returned: slices ``bounds`` of ``source`` along ``dim`` (no batch
    dim); each becomes a ``slice`` node when read."""

    source: str
    dim: int
    bounds: tuple[tuple[int, int], ...]

    def read(self, builder: GraphBuilder, index: int, name: str) -> str:
        """The slice node of part ``index``."""
        start, stop = self.bounds[index]
        return builder.add("slice", self.source, name=name, dim=self.dim, start=start, stop=stop)


@dataclass(frozen=True)
class _Attention:
    """What ``nn.MultiheadAttention`` returned: (output, weights); ``name`` is the output's node."""

    name: str


_Value = Union[str, _Held, _Parts, _Attention]  # "" stands for a non-tensor (a size, a shape)


def _tensor(node: Any, env: dict[Any, _Value], what: str = "its input") -> str:
    """The graph node of a traced tensor value; a clear refusal for anything else."""
    value = env.get(node)
    if isinstance(value, _Held):
        raise _Unmapped(f"{what} {value.path} is a tensor the module holds itself; such a tensor "
                        "maps only as a class token (concatenated before the tokens), a position "
                        "embedding (added), a layer scale (multiplied) or a norm's weight and "
                        "bias; compute it with a layer instead")
    if not isinstance(value, str) or not value:
        raise _Unmapped(f"{what} {getattr(node, 'name', node)} is not a network value")
    return value


def _inputs(node: Any, env: dict[Any, _Value]) -> list[str]:
    from torch.fx import Node

    return [_tensor(a, env) for a in node.args if isinstance(a, Node)]


def _held(args: Sequence[Any], env: dict[Any, _Value]) -> tuple[_Held | None, Any]:
    """Of a two-operand call, the held tensor (or None) and the other operand."""
    a, b = (env.get(x) if _is_node(x) else None for x in args[:2])
    if isinstance(a, _Held):
        return a, args[1]
    if isinstance(b, _Held):
        return b, args[0]
    return None, None


def _is_node(value: Any) -> bool:
    from torch.fx import Node

    return isinstance(value, Node)


def _add_node(builder: GraphBuilder, traced: Any, node: Any, env: dict[Any, _Value]) -> _Value:
    """The graph node for one traced call (or the input it passes through unchanged)."""
    args, kwargs, target = node.args, node.kwargs, node.target
    if node.op == "get_attr":
        return _Held(target, tuple(_attribute(traced, target).shape))
    if node.op == "call_module" and isinstance(traced.get_submodule(target),
                                               nn.MultiheadAttention):
        return _Attention(_attention(builder, traced, node, env))
    if target is operator.getitem:
        return _getitem(builder, node, env)
    if target in (torch.chunk, torch.split, "chunk", "split"):
        return _split(node, env)
    if node.op == "call_method" and target == "expand" and isinstance(env.get(args[0]), _Held):
        return env[args[0]]  # a held token broadcast over the batch: cat reads it
    if not hasattr(node.meta.get("tensor_meta"), "shape"):
        return ""  # not a tensor (a size, a shape): only read by the calls that take it
    if node.op == "call_module":
        sub = traced.get_submodule(target)
        mapper = _MODULES.get(type(sub))
        if mapper is None:
            raise _Unmapped(f"{type(sub).__name__} has no op in the registry; build it from "
                            "convs, linears, norms, activations, pooling, add and cat")
        op, attrs = mapper(sub)
        if op == "adaptive_avg_pool" and attrs["output_size"] == 1 and all(
                _flattening(traced, user) for user in node.users):
            op, attrs = "global_avg_pool", {}  # pooled then flattened: as the built-in spaces
        (x,) = _inputs(node, env)
        return builder.add(op, x, name=_node_name(target), label=target, **attrs)
    method = target if node.op == "call_method" else None
    shape_in = _shape(args[0]) if args and hasattr(args[0], "meta") else ()
    name = _node_name(node.name)
    if target in _ADD or target in _MUL:
        held, other = _held(args, env)
        if held is not None:
            return _free(builder, held, _tensor(other, env), _shape(other)[1:],
                         "position_embedding" if target in _ADD else "layer_scale")
        xs = _inputs(node, env)
        if len(xs) != 2 or len(args) != 2 or kwargs:
            raise _Unmapped("add and mul map only x + y and x * y of two network values whose "
                            "shapes broadcast (a constant term or factor has no op)")
        return builder.add("add" if target in _ADD else "mul", *xs, name=name)
    if target is torch.cat:
        tensors, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0)
        held = env.get(tensors[0])
        if isinstance(held, _Held) and len(tensors) == 2 and dim == 1:
            return _free(builder, held, _tensor(tensors[1], env), _shape(tensors[1])[1:],
                         "class_token")
        if len(tensors) == 1:
            return _tensor(tensors[0], env)  # a cat of one tensor (DenseNet's first layer)
        if dim not in (1, -len(_shape(tensors[0]))):
            raise _Unmapped(f"cat along dim {dim}: concat joins dim 1 (channels, or tokens)")
        return builder.add("concat", *[_tensor(t, env) for t in tensors], name=name)
    if target in _ACTIVATIONS:
        if kwargs.get("approximate", "none") != "none":
            raise _Unmapped("GELU's tanh approximation has no op")
        return builder.add(_ACTIVATIONS[target], _inputs(node, env)[0], name=name)
    if target is F.layer_norm:
        return _functional_norm(builder, node, env)
    if target in _PERMUTE:
        return _permute(builder, node, env, shape_in)
    flatten = target is torch.flatten or method == "flatten"
    if flatten or target is torch.reshape or method in ("view", "reshape"):
        return _reshaped(builder, _tensor(args[0], env), shape_in, _shape(node), name)
    global_pool = ((method == "mean"
                    and tuple(args[1:2]) in (((2, 3),), ([2, 3],), ((-2, -1),), ([-2, -1],))
                    and not kwargs.get("keepdim", False))
                   or (target is F.adaptive_avg_pool2d and args[1:2] in ((1,), ((1, 1),))))
    if global_pool:
        return builder.add("global_avg_pool", _tensor(args[0], env), name=name)
    if target in (F.max_pool2d, F.avg_pool2d):
        op, attrs = _functional_pool(target is F.max_pool2d, args, kwargs)
        return builder.add(op, _tensor(args[0], env), name=name, **attrs)
    if target is F.dropout:
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        return builder.add("dropout", _tensor(args[0], env), name=name, p=float(p))
    if getattr(target, "__name__", "") == "stochastic_depth":  # torchvision.ops, fx-wrapped
        call = dict(zip(("input", "p", "mode", "training"), args), **kwargs)
        return builder.add("stochastic_depth", _tensor(call["input"], env), name=name,
                           p=float(call["p"]), mode=str(call["mode"]))
    if method == "contiguous":
        return _tensor(args[0], env)
    for arg in args:
        if _is_node(arg) and isinstance(env.get(arg), _Held):
            _tensor(arg, env, "its operand")  # says what a held tensor can map to
    raise _Unmapped("no op of the registry computes it; express it with convs, linears, norms, "
                    "activations, pooling, add and cat")


def _attribute(traced: Any, path: str) -> Tensor:
    owner, _, attr = path.rpartition(".")
    return getattr(traced.get_submodule(owner) if owner else traced, attr)


def _free(builder: GraphBuilder, held: _Held, x: str, x_shape: tuple[int, ...], op: str) -> str:
    """An op whose one parameter is ``held`` (its label is the tensor's path), applied to ``x``."""
    core = held.shape
    while len(core) > 1 and core[0] == 1 and len(core) > {"class_token": 2}.get(op, 1):
        core = core[1:]  # leading ones: the batch dim a held tensor broadcasts over
    want = {"position_embedding": (tuple(x_shape),),
            "class_token": ((1, x_shape[-1]),) if len(x_shape) == 2 else (),
            "layer_scale": (((x_shape[0], 1, 1), (x_shape[0],)) if len(x_shape) == 3
                            else ((x_shape[-1],),))}[op]
    if core not in want:
        use = {"position_embedding": "added to a tensor of its own shape",
               "class_token": "of shape (1, 1, dim) concatenated before (tokens, dim)",
               "layer_scale": "of one value per channel, multiplied"}[op]
        raise _Unmapped(f"{held.path} of shape {held.shape} meets a value of shape {x_shape}; "
                        f"a tensor the module holds maps to {op} only when {use}")
    return builder.add(op, x, name=_node_name(held.path), label=held.path)


def _functional_norm(builder: GraphBuilder, node: Any, env: dict[Any, _Value]) -> str:
    """``F.layer_norm(x, shape, owner.weight, owner.bias, eps)`` (a LayerNorm subclass such as
    ConvNeXt's LayerNorm2d) as a layer_norm node whose label is the owner's path."""
    call = dict(zip(("input", "normalized_shape", "weight", "bias", "eps"), node.args),
                **node.kwargs)
    weight, bias = env.get(call.get("weight")), env.get(call.get("bias"))
    owners = {h.path.rpartition(".")[0] if isinstance(h, _Held) else None for h in (weight, bias)}
    x = _tensor(call["input"], env)
    if len(owners) != 1 or None in owners or not (
            weight.path.endswith(".weight") and bias.path.endswith(".bias")):
        raise _Unmapped("layer_norm maps with one module's own weight and bias")
    if tuple(call["normalized_shape"]) != _shape(call["input"])[-1:]:
        raise _Unmapped("layer_norm maps over the last dimension only")
    owner = owners.pop()
    return builder.add("layer_norm", x, name=_node_name(owner), label=owner,
                       eps=float(call.get("eps", 1e-5)))


def _permute(builder: GraphBuilder, node: Any, env: dict[Any, _Value],
             shape_in: tuple[int, ...]) -> str:
    rank, args = len(shape_in), node.args
    if node.target in (torch.transpose, "transpose"):
        a, b = (d % rank for d in args[1:3])
        order = list(range(rank))
        order[a], order[b] = order[b], order[a]
    else:
        dims = node.kwargs.get("dims", args[1] if len(args) == 2 and isinstance(
            args[1], (list, tuple)) else args[1:])
        order = [d % rank for d in dims]
    return _ordered(builder, _tensor(args[0], env), order, _node_name(node.name))


def _ordered(builder: GraphBuilder, x: str, order: Sequence[int], name: str) -> str:
    """``x`` permuted to ``order`` (batch dim included, and kept first)."""
    if order[0] != 0:
        raise _Unmapped(f"a permute to {tuple(order)} moves the batch dimension; keep it first")
    if list(order) == sorted(order):
        return x
    return builder.add("permute", x, name=name, dims=",".join(str(d - 1) for d in order[1:]))


def _reshaped(builder: GraphBuilder, x: str, shape_in: tuple[int, ...], out: tuple[int, ...],
              name: str) -> str:
    """``x`` viewed as ``out`` (batch dim included): flatten, reshape, or ``x`` itself."""
    if out[0] != shape_in[0]:
        raise _Unmapped(f"a reshape from {shape_in} to {out} moves the batch dimension; keep it "
                        "first and reshape the rest")
    if out[1:] == shape_in[1:]:
        return x
    if len(out) == 2:
        return builder.add("flatten", x, name=name)
    return builder.add("reshape", x, name=name, shape=",".join(map(str, out[1:])))


def _split(node: Any, env: dict[Any, _Value]) -> _Parts:
    """``x.chunk(n, dim)`` / ``x.split(size, dim)``: slices, made when each part is read."""
    call = dict(zip(("input", "sections", "dim"), node.args), **node.kwargs)
    rank = len(_shape(call["input"]))
    return _parts(_tensor(call["input"], env), call.get("dim", 0) % rank,
                  [tuple(meta.shape) for meta in node.meta.get("tensor_meta")])


def _parts(source: str, dim: int, shapes: Sequence[tuple[int, ...]]) -> _Parts:
    """The parts of a split of ``source`` along ``dim`` (batch dim included) of ``shapes``."""
    if dim == 0:
        raise _Unmapped("splitting the batch dimension has no op; split channels or tokens")
    bounds, start = [], 0
    for shape in shapes:
        bounds.append((start, start + shape[dim]))
        start += shape[dim]
    return _Parts(source, dim - 1, tuple(bounds))


def _getitem(builder: GraphBuilder, node: Any, env: dict[Any, _Value]) -> _Value:
    """``parts[i]`` of a split, ``out[0]`` of attention, or ``x[:, i]`` / ``x[:, a:b]``."""
    source, index = node.args
    value, name = env.get(source), _node_name(node.name)
    if isinstance(value, _Parts):
        return value.read(builder, index, name)
    if isinstance(value, _Attention):
        return value.name if index == 0 else ""  # the weights: refused where they are used
    if not hasattr(node.meta.get("tensor_meta"), "shape"):
        return ""  # a size, a shape: read by the calls that take it
    shape = _shape(source)
    index = index if isinstance(index, tuple) else (index,)
    picks = [(d, i) for d, i in enumerate(index[1:]) if i != slice(None)]
    if index[0] != slice(None) or len(picks) != 1 or Ellipsis in index:
        raise _Unmapped("indexing maps only as x[:, i] or x[:, a:b] (one position or range of "
                        "one dimension after the batch)")
    dim, pick = picks[0]
    if isinstance(pick, int):
        return builder.add("select", _tensor(source, env), name=name, dim=dim,
                           index=pick % shape[dim + 1])
    positions = range(shape[dim + 1])[pick]
    if not isinstance(pick, slice) or pick.step not in (None, 1) or not positions:
        raise _Unmapped("indexing maps only a contiguous range a:b")
    return builder.add("slice", _tensor(source, env), name=name, dim=dim,
                       start=positions.start, stop=positions.stop)


def _attention(builder: GraphBuilder, traced: Any, node: Any, env: dict[Any, _Value]) -> str:
    """``nn.MultiheadAttention(x, x, x)`` (batch first, no masks) as a self_attention node."""
    m = traced.get_submodule(node.target)
    call = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask"),
                    node.args), **node.kwargs)
    if not call["query"] is call["key"] is call["value"]:
        raise _Unmapped("attention maps to self_attention only when query, key and value are "
                        "one tensor")
    if any(call.get(k) is not None for k in ("key_padding_mask", "attn_mask")) \
            or call.get("is_causal"):
        raise _Unmapped("attention masks have no op; attend over every token")
    if not m.batch_first or not m._qkv_same_embed_dim or m.in_proj_bias is None \
            or m.bias_k is not None or m.add_zero_attn:
        raise _Unmapped("self_attention maps nn.MultiheadAttention(dim, heads, batch_first=True) "
                        "with biases, no kdim/vdim, no bias_kv and no zero attention")
    if m.dropout:
        raise _Unmapped(f"attention dropout {m.dropout} has no op; use dropout=0.0")
    return builder.add("self_attention", _tensor(call["query"], env),
                       name=_node_name(node.target), label=node.target, num_heads=m.num_heads)



# ----- torch.export: for modules torch.fx cannot trace -----------------------------------------

def _from_export(module: nn.Module, input_shape: Sequence[int], num_outputs: int | None,
                 name: str, fx_error: str) -> nx.DiGraph:
    """The graph of ``module`` from ``torch.export`` (ATen ops, shapes specialised to
    ``input_shape``): for a forward that branches on shapes or otherwise defeats symbolic
    tracing. Data-dependent control flow defeats both and is refused."""
    was_training = module.training
    module.eval()
    try:
        program = torch.export.export(module, (torch.zeros(2, *input_shape),), strict=False)
    except Exception as err:
        raise ModuleImportError(
            f"{name} cannot be traced by torch.fx ({fx_error}) nor exported by torch.export "
            f"({type(err).__name__}: {_first(err)}); its forward must not branch or loop on "
            "tensor values (data-dependent control flow): move such choices into the "
            "constructor, where a space's define(trial) makes them") from None
    finally:
        module.train(was_training)
    signature = program.graph_signature
    held_paths = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
    nodes = list(program.graph.nodes)
    live, stack = set(), [nodes[-1]]
    while stack:  # what the output reads: dead code is left out
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    builder = _classifier(name, input_shape, num_outputs,
                          tuple(nodes[-1].args[0][0].meta["val"].shape))
    env: dict[Any, _Value] = {}
    owners: set[str] = set()
    for node in nodes:
        if node not in live:
            continue
        try:
            if node.op == "placeholder":
                if node.name in held_paths:
                    env[node] = _Held(held_paths[node.name], tuple(node.meta["val"].shape))
                elif builder.input in env.values():
                    raise _Unmapped("forward takes more than one input; a network here takes "
                                    "one tensor")
                else:
                    env[node] = builder.input
            elif node.op == "output":
                builder.output(_tensor(node.args[0][0], env, "the output"))
            else:
                env[node] = _add_aten(builder, node, env, owners)
        except (_Unmapped, GraphError) as err:
            stack_ = node.meta.get("nn_module_stack") or {}
            where = next(reversed(stack_.values()))[0] if stack_ else node.name
            raise ModuleImportError(f"{name}: {where} (aten {_aten_name(node)}, exported by "
                                    f"torch.export as torch.fx could not trace it: {fx_error}) "
                                    f"cannot be imported: {err}") from None
    return builder.build()


def _aten_name(node: Any) -> str:
    packet = getattr(node.target, "overloadpacket", None)
    return getattr(packet if packet is not None else node.target, "__name__", str(node.target))


_ATEN_ACTIVATIONS = {"relu": "relu", "relu_": "relu", "relu6": "relu6", "gelu": "gelu",
                     "silu": "silu", "silu_": "silu", "hardswish": "hardswish",
                     "hardswish_": "hardswish", "sigmoid": "sigmoid", "tanh": "tanh",
                     "hardsigmoid": "hardsigmoid", "hardsigmoid_": "hardsigmoid"}
_ATEN_PASS = ("clone", "contiguous", "alias", "detach", "lift_fresh_copy")


def _owner(held: Any, owners: set[str], what: str) -> str:
    """The module path a layer's weight belongs to; each module's weights serve one call."""
    if not isinstance(held, _Held):
        raise _Unmapped(f"{what} maps with a module's own weight")
    owner = held.path.rpartition(".")[0]
    if owner in owners:
        raise _Unmapped(f"module {owner} is called more than once; a graph gives every call its "
                        "own weights: build one module per call")
    owners.add(owner)
    return owner


def _add_aten(builder: GraphBuilder, node: Any, env: dict[Any, _Value],
              owners: set[str]) -> _Value:
    """The graph node for one exported ATen call (or the value it passes through)."""
    op, args = _aten_name(node), list(node.args)
    call = lambda *names: dict(zip(names, args), **node.kwargs)  # noqa: E731
    value = node.meta.get("val")
    if op == "getitem":
        source, index = args
        parts = env.get(source)
        if isinstance(parts, _Parts):
            return parts.read(builder, index, _node_name(node.name))
        return parts if index == 0 and isinstance(parts, str) else ""
    if op == "expand" and isinstance(env.get(args[0]), _Held):
        return env[args[0]]
    if op in ("split", "chunk"):
        dim = call("input", "sections", "dim").get("dim", 0) % len(args[0].meta["val"].shape)
        return _parts(_tensor(args[0], env), dim, [tuple(part.shape) for part in value])
    if op == "_native_batch_norm_legit_no_training":  # (out, mean, invstd): getitem 0 reads it
        c = call("input", "weight", "bias", "running_mean", "running_var", "momentum", "eps")
        return _aten_batch_norm(builder, env, owners, c)
    if not hasattr(value, "shape"):
        return ""
    name = _node_name(node.name)
    shape_in = tuple(args[0].meta["val"].shape) if args and hasattr(args[0], "meta") else ()
    out = tuple(value.shape)
    if op in _ATEN_ACTIVATIONS:
        return builder.add(_ATEN_ACTIVATIONS[op], _tensor(args[0], env), name=name)
    if op == "hardtanh" and tuple(args[1:3]) == (0.0, 6.0):
        return builder.add("relu6", _tensor(args[0], env), name=name)
    if op in _ATEN_PASS:
        return _tensor(args[0], env)
    if op == "conv2d":
        c = call("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        if isinstance(c.get("padding", 0), str):
            raise _Unmapped("padding given as a string; give it as an int")
        owner = _owner(env.get(c["weight"]), owners, "conv")
        w = env[c["weight"]].shape
        attrs = {"out_channels": w[0], "kernel_size": _square(tuple(w[2:]), "kernel"),
                 "stride": _square(_pair(c.get("stride", 1)), "stride"),
                 "padding": _square(_pair(c.get("padding", 0)), "padding"),
                 "dilation": _square(_pair(c.get("dilation", 1)), "dilation"),
                 "groups": int(c.get("groups", 1)), "bias": c.get("bias") is not None}
        return builder.add("conv", _tensor(c["input"], env), name=_node_name(owner),
                           label=owner, **attrs)
    if op == "linear":
        c = call("input", "weight", "bias")
        owner = _owner(env.get(c["weight"]), owners, "linear")
        return builder.add("linear", _tensor(c["input"], env), name=_node_name(owner),
                           label=owner, out_features=env[c["weight"]].shape[0],
                           bias=c.get("bias") is not None)
    if op == "batch_norm":
        c = call("input", "weight", "bias", "running_mean", "running_var", "training",
                 "momentum", "eps")
        return _aten_batch_norm(builder, env, owners, c)
    if op in ("layer_norm", "group_norm"):
        keys = (("input", "normalized_shape", "weight", "bias", "eps") if op == "layer_norm"
                else ("input", "num_groups", "weight", "bias", "eps"))
        c = call(*keys)
        if c.get("weight") is None or c.get("bias") is None:
            raise _Unmapped(f"{op} maps with a learnable scale and shift")
        if op == "layer_norm" and tuple(c["normalized_shape"]) != shape_in[-1:]:
            raise _Unmapped("layer_norm maps over the last dimension only")
        owner = _owner(env.get(c["weight"]), owners, op)
        attrs = {"eps": float(c.get("eps", 1e-5))}
        if op == "group_norm":
            attrs["num_groups"] = int(c["num_groups"])
        return builder.add(op, _tensor(c["input"], env), name=_node_name(owner), label=owner,
                           **attrs)
    if op in ("max_pool2d", "avg_pool2d"):
        pool, attrs = _functional_pool(op == "max_pool2d", args, node.kwargs)
        return builder.add(pool, _tensor(args[0], env), name=name, **attrs)
    if op == "adaptive_avg_pool2d":
        size = _square(_pair(args[1]), "output size")
        return builder.add("adaptive_avg_pool", _tensor(args[0], env), name=name,
                           output_size=size)
    if op == "mean" and len(out) == 2 and len(shape_in) == 4 and sorted(
            d % 4 for d in args[1]) == [2, 3]:
        return builder.add("global_avg_pool", _tensor(args[0], env), name=name)
    if op in ("add", "add_", "mul", "mul_"):
        if node.kwargs.get("alpha", 1) != 1:
            raise _Unmapped("add with alpha has no op")
        held, other = _held(args, env)
        if held is not None:
            return _free(builder, held, _tensor(other, env),
                         tuple(other.meta["val"].shape)[1:],
                         "position_embedding" if op.startswith("add") else "layer_scale")
        if not all(_is_node(a) for a in args[:2]):
            raise _Unmapped("add and mul map only x + y and x * y of two network values (a "
                            "constant term or factor has no op)")
        return builder.add(op.rstrip("_"), _tensor(args[0], env), _tensor(args[1], env),
                           name=name)
    if op == "cat":
        tensors, dim = args[0], (args[1] if len(args) > 1 else node.kwargs.get("dim", 0))
        if len(tensors) == 1:
            return _tensor(tensors[0], env)
        held = env.get(tensors[0])
        if isinstance(held, _Held) and len(tensors) == 2 and dim == 1:
            return _free(builder, held, _tensor(tensors[1], env),
                         tuple(tensors[1].meta["val"].shape)[1:], "class_token")
        if dim % len(out) != 1:
            raise _Unmapped(f"cat along dim {dim}: concat joins dim 1 (channels, or tokens)")
        return builder.add("concat", *[_tensor(t, env) for t in tensors], name=name)
    if op in ("view", "reshape", "_unsafe_view", "flatten"):
        return _reshaped(builder, _tensor(args[0], env), shape_in, out, name)
    if op in ("permute", "transpose"):
        rank = len(shape_in)
        order = list(range(rank))
        if op == "transpose":
            a, b = (d % rank for d in args[1:3])
            order[a], order[b] = order[b], order[a]
        else:
            order = [d % rank for d in args[1]]
        return _ordered(builder, _tensor(args[0], env), order, name)
    if op == "dropout":
        return builder.add("dropout", _tensor(args[0], env), name=name, p=float(args[1]))
    if op == "select" and len(shape_in) >= 3 and args[1] % len(shape_in) != 0:
        dim = args[1] % len(shape_in)
        return builder.add("select", _tensor(args[0], env), name=name, dim=dim - 1,
                           index=args[2] % shape_in[dim])
    if op == "slice" and (len(args) < 5 or args[4] == 1) and args[1] % len(shape_in) != 0:
        dim = args[1] % len(shape_in)
        positions = range(shape_in[dim])[slice(*(args[2:4] if len(args) > 2 else (None,)))]
        if len(positions) == shape_in[dim]:
            return _tensor(args[0], env)
        return builder.add("slice", _tensor(args[0], env), name=name, dim=dim - 1,
                           start=positions.start, stop=positions.stop)
    for arg in args:
        if _is_node(arg) and isinstance(env.get(arg), _Held):
            _tensor(arg, env, "its operand")
    raise _Unmapped("no op of the registry computes it; express it with convs, linears, norms, "
                    "activations, pooling, add and cat")


def _aten_batch_norm(builder: GraphBuilder, env: dict[Any, _Value], owners: set[str],
                     c: dict[str, Any]) -> str:
    if c.get("running_mean") is None:
        raise _Unmapped("batch norm without running statistics has no op; use "
                        "track_running_stats=True")
    owner = _owner(env.get(c["running_mean"]), owners, "batch norm")
    return builder.add("batch_norm", _tensor(c["input"], env), name=_node_name(owner),
                       label=owner, affine=c.get("weight") is not None,
                       eps=float(c.get("eps", 1e-5)), momentum=float(c.get("momentum", 0.1)))


def _pair(value: Any) -> Any:
    """An int, or a one- or two-element list/tuple, as an int or a pair."""
    if isinstance(value, (list, tuple)):
        return tuple(value) * 2 if len(value) == 1 else tuple(value)
    return value


def _node_name(path: str) -> str:
    """A graph node name for a module path or traced value (``layer1.0.conv1`` ->
    ``layer1_0_conv1``), clear of the names a network's module dict holds itself."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in path) or "node"
    return f"{name}_" if name in _RESERVED else name


_RESERVED = frozenset(dir(nn.ModuleDict()))


def module_weights(module: nn.Module, graph: nx.DiGraph) -> dict[str, Tensor]:
    """``module``'s parameters and buffers under the names ``Network(graph)`` gives them, for a
    graph :func:`from_module` made from it (each node's ``label`` is its module path, or for a
    class token, position embedding or layer scale the path of the tensor it holds)."""
    state = module.state_dict()
    with torch.device("meta"):  # shapes only
        shapes = {k: v.shape for k, v in Network(graph).state_dict().items()}
    out: dict[str, Tensor] = {}
    for node, data in graph.nodes(data=True):
        path = data.get("label")
        if path is None:
            continue
        if data["op"] in _FREE and path in state:
            target = f"{PREFIX}.{node}.weight"
            if target in shapes:
                out[target] = state[path].reshape(shapes[target])
            continue
        renames = _ATTENTION_NAMES if data["op"] == "self_attention" else {}
        for key, value in state.items():
            if not key.startswith(path + "."):
                continue
            own = key[len(path) + 1:]
            own = renames.get(own, own)
            target = f"{PREFIX}.{node}.{own}"
            if "." not in own and target in shapes:
                out[target] = value
    missing = set(shapes) - set(out)
    if missing:
        raise ModuleImportError(f"no weights of the module for {sorted(missing)[:3]}; was the "
                                "graph made from this module by from_module?")
    return out
