"""Plain PyTorch modules as architecture graphs (``from_module``) and spaces written in PyTorch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypernas as hn
from hypernas.cli import main
from hypernas.errors import SpaceError
from hypernas.graphs.trace import ModuleImportError, from_module, module_weights
from hypernas.testing import SpaceContract

RESNET = str(Path(__file__).parent.parent / "search_spaces" / "resnet.py")


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                   nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3, project 1x1, residual when shapes match."""

    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        hidden = c * expand
        self.body = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(), nn.Conv2d(hidden, c, 1, bias=False),
            nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class MobileNetish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16),
                                      nn.Hardswish(), InvertedResidual(16, 4),
                                      InvertedResidual(16, 2), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(16 * 4 * 4, 32), nn.GELU(),
                                  nn.LayerNorm(32), nn.Linear(32, 5))

    def forward(self, x):
        x = self.features(x)
        return self.head(x.view(x.size(0), -1))


class SqueezeExcite(nn.Module):
    """MobileNetV3's gate: pool, 1x1 conv down, ReLU, 1x1 conv up, hard sigmoid, multiply."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class GroupNormSENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.SiLU())
        self.se = SqueezeExcite(16)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.pool(self.se(self.stem(x))))


@torch.fx.wrap
def stochastic_depth(x, p, mode, training):
    """torchvision.ops.stochastic_depth's signature (fx-wrapped, as there): drops rows."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class TinyViT(nn.Module):
    """Patches as tokens, a class token, a position embedding, one pre-norm encoder block."""

    def __init__(self, dim: int = 16, patch: int = 4, size: int = 8) -> None:
        super().__init__()
        self.dim, tokens = dim, (size // patch) ** 2
        self.patchify = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.ln1, self.ln2, self.ln = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        n = x.shape[0]
        x = self.patchify(x).reshape(n, self.dim, -1).permute(0, 2, 1)
        x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1) + self.pos
        y = self.ln1(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        x = x + y
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln(x)[:, 0])


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """ConvNeXt's LayerNorm2d: a layer norm over the channels of a (C, H, W) map."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """A patchify stem, one ConvNeXt block (depthwise 7x7, channels-last MLP, layer scale,
    stochastic depth), a channel-first norm and a head."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 2, 2), ChannelsFirstLayerNorm(c, eps=1e-6))
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c, 1, 1), 1e-2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), ChannelsFirstLayerNorm(c),
                                  nn.Flatten(1), nn.Linear(c, 10))

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        y = stochastic_depth(self.gamma * y, 0.1, "row", self.training)
        y += x
        return self.head(y)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: split the channels, transform one half, join, shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(nn.Conv2d(half, half, 1), nn.BatchNorm2d(half), nn.ReLU(),
                                    nn.Conv2d(half, half, 3, 1, 1, groups=half))

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = torch.transpose(x.view(n, 2, c // 2, h, w), 1, 2).contiguous()
        return x.view(n, -1, h, w)


class SqueezeShuffleNet(nn.Module):
    """SqueezeNet's ceil-mode pooling and fire module (two expansions concatenated), a dense
    layer's cat of a single tensor, then a shuffle unit."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, ceil_mode=True))
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.e1, self.e3 = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.shuffle = ShuffleUnit(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.cat([self.stem(x)], 1)
        s = F.relu(self.squeeze(x))
        x = torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)
        x = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)  # functional, as Inception
        return self.fc(self.shuffle(x).mean([2, 3]))


def _randomise_norms(module: nn.Module) -> None:
    """Non-trivial running statistics and affine weights, so a wrong mapping shows."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


@pytest.mark.parametrize("make, shape", [(SmallResNet, (1, 28, 28)), (MobileNetish, (3, 16, 16)),
                                         (GroupNormSENet, (3, 12, 12)), (TinyViT, (3, 8, 8)),
                                         (TinyConvNeXt, (3, 8, 8)),
                                         (SqueezeShuffleNet, (1, 15, 15))])
def test_an_imported_module_with_its_own_weights_gives_its_output(make, shape):
    torch.manual_seed(0)
    module = make()
    _randomise_norms(module)
    with torch.no_grad():  # no parameter left at a trivial init (a zero class token)
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module.eval()
    graph = from_module(module, shape)
    assert hn.count_params(graph) == sum(p.numel() for p in module.parameters())
    net = hn.Network(graph)
    net.load_state_dict(module_weights(module, graph))
    net.eval()
    x = torch.randn(4, *shape)
    assert torch.allclose(net(x), module(x), atol=1e-5)
    assert module.training is False  # from_module leaves the module's mode as it found it


def test_node_names_and_labels_follow_the_module_paths():
    assert hn.from_module is from_module and hn.module_weights is module_weights  # public API
    graph = from_module(SmallResNet().train(), (1, 28, 28))
    assert graph.nodes["layer1_1_down_0"]["op"] == "conv"
    assert graph.nodes["layer1_1_down_0"]["label"] == "layer1.1.down.0"
    assert graph.nodes["layer1_1_down_0"]["stride"] == 2
    assert graph.nodes["stem_0"]["kernel_size"] == 7 and graph.nodes["stem_0"]["padding"] == 3
    ops = {graph.nodes[n]["op"] for n in graph}
    assert {"add", "max_pool", "global_avg_pool", "flatten", "relu"} <= ops
    se = from_module(GroupNormSENet(), (3, 12, 12))  # pooled for a gate, not flattened
    assert se.nodes["se_pool"]["op"] == "adaptive_avg_pool" and se.nodes["pool"]["output_size"] == 2
    assert {se.nodes[n]["op"] for n in se} >= {"mul", "hardsigmoid", "group_norm", "dropout"}


def test_transformer_convnext_and_shuffle_patterns_map_to_their_ops():
    vit = from_module(TinyViT(), (3, 8, 8))
    ops = {n: d["op"] for n, d in vit.nodes(data=True)}
    assert ops["cls"] == "class_token" and vit.nodes["cls"]["label"] == "cls"
    assert ops["pos"] == "position_embedding" and ops["attn"] == "self_attention"
    assert vit.nodes["attn"]["num_heads"] == 2
    assert {"reshape", "permute", "select"} <= set(ops.values())
    convnext = from_module(TinyConvNeXt(), (3, 8, 8))
    ops = {n: d["op"] for n, d in convnext.nodes(data=True)}
    assert ops["gamma"] == "layer_scale" and ops["stem_1"] == "layer_norm"
    assert convnext.nodes["stem_1"]["eps"] == 1e-6
    (sd,) = [n for n, op in ops.items() if op == "stochastic_depth"]
    assert convnext.nodes[sd]["p"] == 0.1 and convnext.nodes[sd]["mode"] == "row"
    shuffle = from_module(SqueezeShuffleNet(), (1, 15, 15))
    ops = {n: d["op"] for n, d in shuffle.nodes(data=True)}
    assert shuffle.nodes["stem_2"]["ceil_mode"] is True
    assert shuffle.nodes["avg_pool2d"]["op"] == "avg_pool"
    assert shuffle.nodes["avg_pool2d"]["padding"] == 1
    slices = sorted((shuffle.nodes[n]["start"], shuffle.nodes[n]["stop"])
                    for n, op in ops.items() if op == "slice")
    assert slices == [(0, 4), (4, 8)]
    assert [shuffle.nodes[n]["dims"] for n, op in ops.items() if op == "permute"] == ["1,0,2,3"]


def test_stochastic_depth_drops_whole_rows_while_training_only():
    from hypernas.graphs.ops import get_op

    torch.manual_seed(0)
    layer = get_op("stochastic_depth")({"p": 0.5, "mode": "row"}, [(4, 3, 3)])
    x = torch.ones(64, 4, 3, 3)
    layer.train()
    y = layer(x)
    rows = y.flatten(1)
    assert set(rows.unique().tolist()) <= {0.0, 2.0}      # kept rows scaled by 1 / (1 - p)
    assert all(len(r.unique()) == 1 for r in rows)       # a row is dropped whole
    assert 0 < (rows[:, 0] == 0).sum() < 64
    layer.eval()
    assert torch.equal(layer(x), x)


def test_an_attribute_added_later_leaves_ids_of_graphs_that_do_not_use_it():
    def net(**pool):
        b = hn.GraphBuilder((1, 9, 9), 10)
        x = b.add("max_pool", b.input, kernel_size=2, **pool)
        b.output(b.add("linear", b.add("flatten", x), out_features=10))
        return b.build()

    from hypernas.graphs.canonical import canonical_graph
    from hypernas.graphs.graph import output_node

    labels = [d for _, d in canonical_graph(net()).nodes(data=True)]
    assert any(d["label"]["op"] == "max_pool" for d in labels)
    assert all("ceil_mode" not in d["label"]["attrs"] for d in labels)
    assert hn.canonical_id(net()) == hn.canonical_id(net(ceil_mode=False))
    assert hn.canonical_id(net()) != hn.canonical_id(net(ceil_mode=True))
    assert hn.infer_shapes(net(ceil_mode=True))[output_node(net())] == (10,)


def test_the_new_ops_refuse_bad_attributes_with_the_fix():
    from hypernas.errors import GraphError

    b = hn.GraphBuilder((4, 3, 3), 10)
    with pytest.raises(GraphError, match="not an order of the 3 dimensions"):
        b.add("permute", b.input, dims="0,1,1")
    with pytest.raises(GraphError, match="comma-separated integers"):
        b.add("permute", b.input, dims="c,h,w")
    with pytest.raises(GraphError, match="cannot hold the 36 elements"):
        b.add("reshape", b.input, shape="5,7")
    with pytest.raises(GraphError, match="does not fit its 4 positions"):
        b.add("slice", b.input, start=2, stop=6)
    with pytest.raises(GraphError, match="class_token needs a \\(tokens, dim\\) input"):
        b.add("class_token", b.input)


class ShapeBranching(nn.Module):
    """A forward that branches on its input's size: torch.fx cannot trace it, torch.export
    specialises it to the shape given."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv, self.gate = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.bn, self.gn = nn.BatchNorm2d(4), nn.GroupNorm(2, 4)
        self.ln, self.drop, self.fc = nn.LayerNorm(16), nn.Dropout(0.2), nn.Linear(16, 10)

    def forward(self, x):
        if x.shape[-1] > 8:
            x = self.pool(x)
        y = F.relu6(self.gn(self.bn(self.conv(x))))
        y = F.hardswish(y) * torch.sigmoid(self.gate(y)) + y
        a, b = y.chunk(2, dim=1)
        y = torch.cat([b, a], 1)
        unused = torch.cat([y, y], 1).mean((2, 3))  # dead code: left out  # noqa: F841
        return self.fc(self.drop(self.ln(torch.flatten(F.adaptive_avg_pool2d(y, 2), 1))))


def test_a_module_torch_fx_cannot_trace_is_imported_through_torch_export():
    torch.manual_seed(0)
    module = ShapeBranching()
    _randomise_norms(module)
    module.eval()
    graph = from_module(module, (1, 16, 16))
    assert graph.graph["traced_by"].startswith("torch.export (torch.fx could not trace it: ")
    ops = {n: d["op"] for n, d in graph.nodes(data=True)}
    assert ops["conv"] == "conv" and graph.nodes["conv"]["label"] == "conv"
    assert {"max_pool", "batch_norm", "group_norm", "layer_norm", "mul", "slice", "concat",
            "adaptive_avg_pool", "dropout", "relu6", "hardswish"} <= set(ops.values())
    assert sum(op == "concat" for op in ops.values()) == 1  # the dead cat is not there
    net = hn.Network(graph)
    net.load_state_dict(module_weights(module, graph))
    net.eval()
    x = torch.randn(3, 1, 16, 16)
    assert torch.allclose(net(x), module(x), atol=1e-5)
    assert from_module(SmallResNet(), (1, 28, 28)).graph["traced_by"] == "torch.fx"

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            if x.shape[1] == 4:
                x = self.fc(self.fc(x))
            return self.out(x)

    with pytest.raises(ModuleImportError, match="module fc is called more than once.*one module "
                                                "per call"):
        from_module(Shared(), (4,))


def test_what_cannot_be_imported_is_refused_with_where_and_why():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.fc(x)
            return self.fc(-x)

    with pytest.raises(ModuleImportError, match="torch.fx .* nor exported by torch.export .*"
                                                "data-dependent control flow"):
        from_module(Branchy(), (4,))
    with pytest.raises(ModuleImportError, match=r"rejects inputs of shape \(5,\).*input_shape"):
        from_module(nn.Sequential(nn.Linear(4, 2)), (5,))
    lstm = nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=-1), nn.Linear(4, 2))
    with pytest.raises(ModuleImportError, match=r"Sequential: 1 \(a module call\).*Softmax "
                                                r"has no op"):
        from_module(lstm, (4,))
    with pytest.raises(ModuleImportError, match=r"not square"):
        from_module(nn.Sequential(nn.Conv2d(1, 2, (3, 1)), nn.Flatten(), nn.Linear(4, 2)),
                    (1, 3, 2))

    class FreeParameter(nn.Module):
        def __init__(self):
            super().__init__()
            self.mat = nn.Parameter(torch.ones(4, 4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.nn.functional.linear(x, self.mat))

    with pytest.raises(ModuleImportError, match="mat is a tensor the module holds itself.*"
                                                "layer scale"):
        from_module(FreeParameter(), (4,))
    with pytest.raises(ModuleImportError, match=r"returns a tensor of shape \(batch, 4, 6, 6\)"):
        from_module(nn.Conv2d(1, 4, 3), (1, 8, 8))


class TestResNetSpace(SpaceContract):
    @pytest.fixture
    def space(self):
        return hn.load_space(RESNET, input_shape=(1, 16, 16))


def test_resnet_space_candidates_are_the_modules_define_returns():
    import importlib.util

    spec = importlib.util.spec_from_file_location("resnet_example", RESNET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = hn.load_space(RESNET, input_shape=(1, 16, 16))
    cand = space.sample(3)
    net = module.define(hn.spaces.trials.FixedTrial(cand.params), space.config)
    assert hn.count_params(cand.graph) == sum(p.numel() for p in net.parameters())
    convs = {d["label"]: d for _, d in cand.graph.nodes(data=True) if d["op"] == "conv"}
    modules = {path: m for path, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs.keys() == modules.keys()
    assert all(convs[p]["kernel_size"] == m.kernel_size[0] and convs[p]["stride"] == m.stride[0]
               for p, m in modules.items())
    blocks = sum(cand.params[f"s{k}_depth"] for k in (1, 2, 3))
    assert len([p for p in modules if p.endswith("conv1")]) == blocks


def test_a_pytorch_space_trains_ranks_and_refines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", RESNET, "--data", "digits", "--run", "r", "--steps", "2",
                 "--meta-batch", "2", "--batch-size", "8", "--dim", "8", "--samples", "2"]) == 0
    assert main(["rank", "r", "--n", "4", "--json"]) == 0
    assert main(["refine", "r", "--top", "1", "--trials", "1", "--max-epochs", "1"]) == 0
    onnxruntime = pytest.importorskip("onnxruntime")
    assert main(["export", "r", "--out", str(tmp_path / "x"),
                 "--format", "safetensors,onnx,pt2"]) == 0
    model = hn.load(tmp_path / "x")
    x = torch.randn(3, 1, 8, 8)
    session = onnxruntime.InferenceSession(str(tmp_path / "x" / "model.onnx"))
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        assert got.shape == (3, 10) and torch.allclose(got, model(x), atol=1e-4)
        program = torch.export.load(str(tmp_path / "x" / "model.pt2")).module()
        assert torch.allclose(program(x), model(x), atol=1e-5)


def _space_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "my_space.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_space_file_that_fails_is_refused_with_its_file_and_line(tmp_path):
    path = _space_file(tmp_path, """
        from torch import nn

        WIDTHS = [4, 8]
        raise RuntimeError("half-written")
        """)
    with pytest.raises(SpaceError, match=r"my_space.py, line 5 raised RuntimeError: "
                                         r"half-written; fix the file"):
        hn.load_space(path)
    path = _space_file(tmp_path, """
        def define(trial):
            return trial.suggest_categorical("width", [4, 8])
        """)
    with pytest.raises(SpaceError, match=r"define\(\) in .*my_space.py:2 returned int, not an "
                                         r"nn.Module"):
        hn.load_space(path, input_shape=(4,)).sample(0)
    path = _space_file(tmp_path, """
        from torch import nn

        def define(trial):
            width = trial.suggest_categorical("w", [4, 8])
            return nn.Sequential(nn.Linear(4, width), nn.Softmax(dim=-1),
                                 nn.Linear(width, 10))
        """)
    with pytest.raises(SpaceError, match=r"my_space.py:4 returned for \{'w': .*Softmax has no "
                                         r"op"):
        hn.load_space(path, input_shape=(4,)).sample(0)
