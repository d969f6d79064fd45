"""Target networks: names and shapes known before building, functional_call with external
weights, and agreement of each op with the torch.nn layer it stands for."""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import pytest
import torch
from torch import nn
from torch.func import functional_call

from hypernas.errors import GraphError
from hypernas.graphs import GraphBuilder, infer_shapes, resolve_attrs
from hypernas.graphs.network import Network, buffer_shapes, build_network, count_params, param_shapes
from hypernas.graphs.ops import Op, get_op, list_ops

B = 4  # batch size


def maps_graph() -> nx.DiGraph:
    b = GraphBuilder(input_shape=(4, 9, 9), num_outputs=5)
    x = b.add("conv", b.input, out_channels=6, kernel_size=3, stride=2, padding=1, bias=True)
    x = b.add("conv", x, out_channels=6, kernel_size=3, groups=3, dilation=2)    # (6, 5, 5)
    x = b.add("dw_conv", x, kernel_size=5, multiplier=2, bias=True)             # (12, 5, 5)
    x = b.add("relu6", b.add("batch_norm", x, momentum=0.5))
    inc = b.add("avg_pool", x, kernel_size=3, stride=1, padding=1, count_include_pad=True)
    exc = b.add("avg_pool", x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    x = b.add("max_pool", b.add("add", inc, exc, x), kernel_size=2)             # (12, 2, 2)
    side = b.add("conv", b.input, out_channels=4, kernel_size=4, stride=4, padding=0)
    x = b.add("concat", x, side)                                                 # (16, 2, 2)
    x = b.add("self_attention", x, num_heads=4)
    b.output(b.add("linear", b.add("global_avg_pool", x), out_features=5))
    return b.build()


def vectors_graph() -> nx.DiGraph:
    b = GraphBuilder(input_shape=(10,), num_outputs=3)
    h = b.add("linear", b.input, out_features=16)
    n = b.add("batch_norm", h, affine=False)
    acts = [b.add(a, n) for a in ("relu", "gelu", "silu", "hardswish", "tanh", "sigmoid")]
    x = b.add("identity", b.add("layer_norm", b.add("add", *acts), eps=1e-3))
    x = b.add("add", x, b.add("zero", h))
    b.output(b.add("linear", x, out_features=3, bias=False))
    return b.build()


def tokens_graph() -> nx.DiGraph:
    b = GraphBuilder(input_shape=(6, 8), num_outputs=4)
    t = b.add("linear", b.input, out_features=8)                                 # (6, 8)
    a = b.add("self_attention", b.add("layer_norm", t), num_heads=2)
    x = b.add("flatten", b.add("add", t, a))                                     # (48,)
    b.output(b.add("linear", x, out_features=4))
    return b.build()


def flat_map_graph() -> nx.DiGraph:
    b = GraphBuilder(input_shape=(2, 4, 4), num_outputs=2)
    x = b.add("batch_norm", b.add("conv", b.input, out_channels=3, kernel_size=1, bias=True))
    b.output(b.add("linear", b.add("flatten", x), out_features=2))
    return b.build()


def gated_graph() -> nx.DiGraph:
    """The ops imported PyTorch models bring: a squeeze-and-excitation gate, group norm,
    adaptive pooling and dropout (p=0 here, so training-mode runs stay comparable)."""
    b = GraphBuilder(input_shape=(4, 6, 6), num_outputs=3)
    x = b.add("group_norm", b.add("conv", b.input, out_channels=8, kernel_size=3), num_groups=2)
    gate = b.add("adaptive_avg_pool", x, output_size=1)                          # (8, 1, 1)
    gate = b.add("hardsigmoid", b.add("conv", gate, out_channels=8, kernel_size=1, bias=True))
    x = b.add("adaptive_avg_pool", b.add("mul", x, gate), output_size=2)         # (8, 2, 2)
    b.output(b.add("linear", b.add("dropout", b.add("flatten", x), p=0.0), out_features=3))
    return b.build()


def vit_graph() -> nx.DiGraph:
    """The ops of imported transformers and ConvNeXt: a map turned into tokens (reshape,
    permute), a class token and position embedding, layer scale, stochastic depth (p=0 here,
    so training-mode runs stay comparable), slices, the class token selected; and a ceil-mode
    max pool."""
    b = GraphBuilder(input_shape=(4, 7, 7), num_outputs=3)
    x = b.add("max_pool", b.input, kernel_size=3, stride=2, ceil_mode=True)       # (4, 3, 3)
    x = b.add("permute", b.add("reshape", x, shape="4,9"), dims="1,0")            # (9, 4)
    x = b.add("position_embedding", b.add("class_token", x))                      # (10, 4)
    y = b.add("stochastic_depth", b.add("layer_scale", b.add("linear", x, out_features=4)),
              p=0.0)
    x = b.add("add", x, y)
    head = b.add("slice", x, dim=1, start=1, stop=3)                              # (10, 2)
    b.output(b.add("linear", b.add("select", head, dim=0, index=0), out_features=3))
    return b.build()


GRAPHS = {"maps": maps_graph, "vectors": vectors_graph, "tokens": tokens_graph,
          "flat_map": flat_map_graph, "gated": gated_graph, "vit": vit_graph}


@pytest.fixture(params=sorted(GRAPHS))
def graph(request) -> nx.DiGraph:
    return GRAPHS[request.param]()


def batch(graph: nx.DiGraph, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, *graph.graph["input_shape"], generator=gen).to(dtype)


def random_state(graph: nx.DiGraph, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random parameters and buffers (positive running variances) for ``graph``."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=gen) for k, s in param_shapes(graph).items()}
    for k, s in buffer_shapes(graph).items():
        state[k] = torch.rand(s, generator=gen) + 0.5 if k.endswith("var") \
            else torch.randn(s, generator=gen)
    return state


def test_graphs_cover_every_op():
    used = {d["op"] for make in GRAPHS.values() for _, d in make().nodes(data=True)}
    assert used == set(list_ops()), f"not covered: {set(list_ops()) - used}"


def test_param_and_buffer_shapes_are_known_before_building(graph):
    expected_params, expected_buffers = param_shapes(graph), buffer_shapes(graph)
    net = Network(graph)
    assert expected_params == {k: tuple(p.shape) for k, p in net.named_parameters()}
    assert list(expected_params) == [k for k, _ in net.named_parameters()]
    assert expected_buffers == {k: tuple(b.shape) for k, b in net.named_buffers()}
    assert count_params(graph) == sum(p.numel() for p in net.parameters())
    assert all(k.startswith("nodes.") for k in expected_params)


def test_known_param_shapes_of_maps_graph():
    shapes = param_shapes(maps_graph())
    assert shapes["nodes.conv.weight"] == (6, 4, 3, 3) and shapes["nodes.conv.bias"] == (6,)
    assert shapes["nodes.conv_1.weight"] == (6, 2, 3, 3) and "nodes.conv_1.bias" not in shapes
    assert shapes["nodes.dw_conv.weight"] == (12, 1, 5, 5)
    assert shapes["nodes.self_attention.in_weight"] == (48, 16)
    assert buffer_shapes(maps_graph()) == {"nodes.batch_norm.running_mean": (12,),
                                           "nodes.batch_norm.running_var": (12,)}
    assert buffer_shapes(vectors_graph()) == {"nodes.batch_norm.running_mean": (16,),
                                              "nodes.batch_norm.running_var": (16,)}
    assert "nodes.batch_norm.weight" not in param_shapes(vectors_graph())   # affine=False


def test_forward_gives_inferred_shapes(graph):
    shapes = infer_shapes(graph)
    net = Network(graph)
    seen: dict[str, tuple[int, ...]] = {}
    for name, module in net.nodes.items():
        module.register_forward_hook(
            lambda mod, args, out, name=name: seen.__setitem__(name, tuple(out.shape)))
    out = net(batch(graph))
    assert out.shape == (B, graph.graph["num_outputs"])
    assert seen == {str(n): (B, *s) for n, s in shapes.items() if graph.nodes[n]["op"] != "input"}
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("batch_stats", [False, True])
def test_functional_call_equals_loaded_module(graph, batch_stats):
    state, x = random_state(graph), batch(graph)
    net = Network(graph).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = functional_call(net, state, (x,), {"batch_stats": batch_stats})
    loaded = Network(graph).eval()
    loaded.load_state_dict(state)
    assert torch.equal(out, loaded(x, batch_stats=batch_stats))
    # The module that ran functional_call is untouched.
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_functional_call_with_params_only_uses_module_buffers(graph):
    state, x = random_state(graph), batch(graph)
    params = {k: v for k, v in state.items() if k in param_shapes(graph)}
    net = Network(graph).eval()
    loaded = Network(graph).eval()
    missing = loaded.load_state_dict(params, strict=False).missing_keys
    assert sorted(missing) == sorted(buffer_shapes(graph))
    assert torch.equal(functional_call(net, params, (x,)), loaded(x))


def test_functional_call_with_batch_stats_in_train_mode(graph):
    state, x = random_state(graph), batch(graph)
    net = Network(graph).train()
    out = functional_call(net, state, (x,), {"batch_stats": True})
    loaded = Network(graph).eval()
    loaded.load_state_dict(state)
    assert torch.equal(out, loaded(x, batch_stats=True))  # batch stats ignore the mode


def test_gradients_flow_to_supplied_weights():
    graph = tokens_graph()
    state = {k: v.requires_grad_() for k, v in random_state(graph).items()}
    functional_call(Network(graph), state, (batch(graph),)).sum().backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in state.values())


def test_batch_stats_leaves_running_stats_alone():
    graph = maps_graph()
    net, x = Network(graph).train(), batch(graph)
    before = {k: v.clone() for k, v in net.named_buffers()}
    net(x, batch_stats=True)
    assert all(torch.equal(v, before[k]) for k, v in net.named_buffers())
    net(x)
    assert not torch.equal(net.nodes["batch_norm"].running_mean, before["nodes.batch_norm.running_mean"])
    assert not torch.equal(net.nodes["batch_norm"].running_var, before["nodes.batch_norm.running_var"])


def test_eval_mode_uses_running_stats():
    graph = flat_map_graph()
    net, x = Network(graph), batch(graph)
    net.load_state_dict(random_state(graph))
    train_out = net(x, batch_stats=True)
    net.eval()
    assert not torch.allclose(net(x), train_out)
    assert torch.equal(net(x, batch_stats=True), train_out)


def test_double_and_to_cpu():
    graph = maps_graph()
    net = build_network(graph, device="cpu").eval()
    x = batch(graph)
    out32 = net(x)
    net64 = net.double()
    out64 = net64(x.double())
    assert out64.dtype == torch.float64 and all(p.dtype == torch.float64 for p in net64.parameters())
    assert torch.allclose(out64.float(), out32, atol=1e-4)
    moved = Network(graph).eval().to("cpu")
    moved.load_state_dict(net.float().state_dict())
    assert torch.equal(moved(x), out32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(graph):
    state, x = random_state(graph), batch(graph)
    net = Network(graph).eval()
    net.load_state_dict(state)
    cpu = net(x, batch_stats=True)
    gpu = build_network(graph, device="cuda").eval()
    gpu.load_state_dict(state)
    assert next(gpu.parameters()).is_cuda
    out = gpu(x.cuda(), batch_stats=True)
    assert out.is_cuda and torch.allclose(out.cpu(), cpu, atol=1e-3, rtol=1e-3)
    weights = {k: v.cuda() for k, v in state.items()}
    assert torch.allclose(functional_call(gpu, weights, (x.cuda(),)).cpu(), net(x),
                          atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("bad", [
    {"op": "conv5x5"}, {"kernel_size": 0}, {"kernal_size": 3},
])
def test_network_and_param_shapes_reject_bad_graphs(bad):
    graph = flat_map_graph()
    graph.nodes["conv"].update(bad)
    for fn in (Network, param_shapes, buffer_shapes, count_params):
        with pytest.raises(GraphError):
            fn(graph)


# ----- each op against its torch.nn reference -----------------------------------------------

def make_op(op: str, in_shape: tuple[int, ...], seed: int = 0, **attrs: Any) -> Op:
    """An op module with random parameters (and running statistics)."""
    torch.manual_seed(seed)
    mod = get_op(op)(resolve_attrs(op, op, attrs), [in_shape])
    with torch.no_grad():
        for name, p in mod.named_parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        if hasattr(mod, "running_var"):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 1.5)
    return mod


def rand(*shape: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attrs, torch_kw", [
    ({"kernel_size": 3}, {"padding": 1}),
    ({"kernel_size": 3, "stride": 2, "padding": 0, "bias": True}, {"stride": 2, "bias": True}),
    ({"kernel_size": 3, "dilation": 2, "groups": 2}, {"padding": 2, "dilation": 2, "groups": 2}),
    ({"kernel_size": 5, "stride": 2, "padding": 1, "dilation": 1, "groups": 4, "bias": True},
     {"stride": 2, "padding": 1, "groups": 4, "bias": True}),
    ({"kernel_size": 4}, {"padding": 1}),   # even kernel, 'same' padding is (k-1)//2
])
def test_conv_matches_conv2d(attrs, torch_kw):
    op = make_op("conv", (4, 9, 9), out_channels=8, **attrs)
    ref = nn.Conv2d(4, 8, attrs["kernel_size"], **{"bias": False, **torch_kw})
    ref.load_state_dict(op.state_dict())
    x = rand(2, 4, 9, 9)
    out = op(x)
    assert out.shape[1:] == get_op("conv").infer_shape(op.cfg, [(4, 9, 9)])
    assert torch.allclose(out, ref(x), atol=1e-5)


def test_dw_conv_matches_grouped_conv2d():
    op = make_op("dw_conv", (3, 7, 7), kernel_size=3, stride=2, multiplier=2, bias=True)
    ref = nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3, bias=True)
    ref.load_state_dict(op.state_dict())
    x = rand(2, 3, 7, 7)
    assert torch.allclose(op(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("attrs, torch_kw", [
    ({"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False},
     {"stride": 1, "padding": 1, "count_include_pad": False}),
    ({"kernel_size": 3, "stride": 1, "padding": 1}, {"stride": 1, "padding": 1}),
    ({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     {"stride": 2, "padding": 1, "count_include_pad": False}),
    ({"kernel_size": 2}, {}),
])
def test_avg_pool_matches_avg_pool2d_values_and_gradients(attrs, torch_kw):
    op = make_op("avg_pool", (3, 7, 7), **attrs)
    x = rand(2, 3, 7, 7).requires_grad_()
    ref = torch.nn.functional.avg_pool2d(x, attrs["kernel_size"], **torch_kw)
    out = op(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0],
                          atol=1e-6)


@pytest.mark.parametrize("in_shape", [(5,), (3, 5)])
def test_linear_matches_nn_linear(in_shape):
    op = make_op("linear", in_shape, out_features=7)
    ref = nn.Linear(5, 7)
    ref.load_state_dict(op.state_dict())
    x = rand(2, *in_shape)
    assert torch.allclose(op(x), ref(x), atol=1e-6)


@pytest.mark.parametrize("in_shape, ref_cls", [((3, 4, 4), nn.BatchNorm2d), ((6,), nn.BatchNorm1d)])
def test_batch_norm_matches_torch(in_shape, ref_cls):
    op = make_op("batch_norm", in_shape, momentum=0.3, eps=1e-3)
    ref = ref_cls(in_shape[0], momentum=0.3, eps=1e-3)
    ref.load_state_dict(op.state_dict(), strict=False)       # no num_batches_tracked here
    x = rand(8, *in_shape) * 2 + 1
    op.eval(), ref.eval()
    assert torch.allclose(op(x), ref(x), atol=1e-5)
    op.train(), ref.train()
    assert torch.allclose(op(x), ref(x), atol=1e-5)
    assert torch.allclose(op.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(op.running_var, ref.running_var, atol=1e-6)
    # batch_stats=True normalises like train mode without touching the running stats.
    mean = op.running_mean.clone()
    ref_out = ref(x)
    assert torch.allclose(op.eval()(x, batch_stats=True), ref_out, atol=1e-5)
    assert torch.equal(op.running_mean, mean)


def test_layer_norm_matches_torch():
    op = make_op("layer_norm", (3, 6), eps=1e-4)
    ref = nn.LayerNorm(6, eps=1e-4)
    ref.load_state_dict(op.state_dict())
    x = rand(2, 3, 6)
    assert torch.allclose(op(x), ref(x), atol=1e-6)


def _mha(op: Op, dim: int, heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    ref.load_state_dict({"in_proj_weight": op.in_weight, "in_proj_bias": op.in_bias,
                         "out_proj.weight": op.out_weight, "out_proj.bias": op.out_bias})
    return ref.eval()


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_self_attention_on_tokens_matches_multihead_attention(heads):
    op = make_op("self_attention", (5, 8), num_heads=heads)
    ref = _mha(op, 8, heads)
    x = rand(3, 5, 8)
    expected, _ = ref(x, x, x, need_weights=False)
    assert torch.allclose(op(x), expected, atol=1e-5)


def test_self_attention_on_maps_attends_over_positions():
    op = make_op("self_attention", (8, 3, 2), num_heads=2)
    ref = _mha(op, 8, 2)
    x = rand(2, 8, 3, 2)
    tokens = x.flatten(2).transpose(1, 2)                     # (B, H*W, C)
    expected, _ = ref(tokens, tokens, tokens, need_weights=False)
    assert torch.allclose(op(x), expected.transpose(1, 2).reshape(2, 8, 3, 2), atol=1e-5)


@pytest.mark.parametrize("attrs, ref", [
    ({"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False},
     nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    ({"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": True},
     nn.AvgPool2d(3, 1, 1, count_include_pad=True)),
    ({"kernel_size": 2}, nn.AvgPool2d(2)),
])
def test_avg_pool_matches_torch(attrs, ref):
    op = make_op("avg_pool", (3, 5, 5), **attrs)
    x = rand(2, 3, 5, 5)
    assert torch.allclose(op(x), ref(x), atol=1e-6)


def test_avg_pool_padding_modes_differ_at_the_border():
    x = torch.ones(1, 1, 4, 4)
    inc = make_op("avg_pool", (1, 4, 4), kernel_size=3, stride=1, padding=1)(x)
    exc = make_op("avg_pool", (1, 4, 4), kernel_size=3, stride=1, padding=1,
                  count_include_pad=False)(x)
    assert torch.equal(exc, x)
    assert inc[0, 0, 0, 0] == pytest.approx(4 / 9) and inc[0, 0, 1, 1] == 1


def test_max_pool_and_global_pool_match_torch():
    x = rand(2, 3, 6, 6)
    mp = make_op("max_pool", (3, 6, 6), kernel_size=3, stride=2, padding=1)
    assert torch.equal(mp(x), nn.MaxPool2d(3, 2, 1)(x))
    assert torch.allclose(make_op("global_avg_pool", (3, 6, 6))(x),
                          nn.AdaptiveAvgPool2d(1)(x).flatten(1), atol=1e-6)
    assert torch.equal(make_op("flatten", (3, 6, 6))(x), x.reshape(2, -1))


@pytest.mark.parametrize("name, ref", [
    ("relu", nn.ReLU()), ("relu6", nn.ReLU6()), ("gelu", nn.GELU()), ("silu", nn.SiLU()),
    ("hardswish", nn.Hardswish()), ("tanh", nn.Tanh()), ("sigmoid", nn.Sigmoid()),
    ("identity", nn.Identity()),
])
def test_activations_match_torch(name, ref):
    x = rand(4, 5) * 4
    assert torch.equal(make_op(name, (5,))(x), ref(x))


def test_wiring_ops():
    a, b = rand(2, 3, 4, 4, seed=1), rand(2, 5, 4, 4, seed=2)
    assert torch.equal(make_op("concat", (3, 4, 4))(a, b), torch.cat([a, b], 1))
    assert torch.equal(make_op("add", (3, 4, 4))(a, a, a), a + a + a)
    z = make_op("zero", (3, 4, 4))(a)
    assert torch.equal(z, torch.zeros_like(a))


def test_default_init_matches_torch_layers():
    # Kaiming-uniform bounds of Conv2d / Linear: |w| <= 1/sqrt(fan_in).
    torch.manual_seed(0)
    conv = get_op("conv")(resolve_attrs("c", "conv", {"out_channels": 16, "kernel_size": 3,
                                                       "bias": True}), [(8, 5, 5)])
    bound = 1 / math.sqrt(8 * 9)
    assert conv.weight.abs().max() <= bound and conv.bias.abs().max() <= bound
    assert conv.weight.std() > bound / 4
    bn = get_op("batch_norm")(resolve_attrs("b", "batch_norm", {}), [(4, 2, 2)])
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.running_var, torch.ones(4))


def _macs_by_hooks(graph: nx.DiGraph) -> int:
    """MACs measured on a real forward pass: conv and linear modules via forward hooks."""
    net, total = Network(graph), []

    def hook(mod, inputs, out):
        if getattr(mod, "weight", None) is not None and mod.weight.dim() >= 2:
            per_position = mod.weight.numel()
            positions = out[0].shape[1:].numel() if mod.weight.dim() == 4 else out[0].shape[:-1].numel()
            total.append(per_position * positions)

    for mod in net.nodes.values():
        mod.register_forward_hook(hook)
    net.eval()(torch.randn(1, *graph.graph["input_shape"]))
    return sum(total)


@pytest.mark.parametrize("space, settings", [("nb201", {"N": 1}), ("macro", {}), ("mlp", {})])
def test_count_macs_matches_the_shapes_a_forward_pass_produces(space, settings):
    from hypernas.graphs.network import count_macs
    from hypernas.spaces.space import load_space

    for cand in load_space(space, **settings).sample_many(3, seed=1):
        assert count_macs(cand.graph) == _macs_by_hooks(cand.graph) > 0


def test_count_macs_of_a_known_conv():
    from hypernas.graphs.network import count_macs

    b = GraphBuilder((3, 8, 8), num_outputs=5)
    c = b.add("conv", b.input, out_channels=4, kernel_size=3)   # 'same' padding: 8x8 out
    b.output(b.add("linear", b.add("global_avg_pool", c), out_features=5))
    assert count_macs(b.build()) == 4 * 3 * 9 * 64 + 5 * 4
