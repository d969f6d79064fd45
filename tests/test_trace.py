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


def _randomise_norms(module: nn.Module) -> None:
    """Non-trivial running statistics and affine weights, so a wrong mapping shows."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


@pytest.mark.parametrize("make, shape", [(SmallResNet, (1, 28, 28)), (MobileNetish, (3, 16, 16)),
                                         (GroupNormSENet, (3, 12, 12))])
def test_an_imported_module_with_its_own_weights_gives_its_output(make, shape):
    torch.manual_seed(0)
    module = make()
    _randomise_norms(module)
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


def test_what_cannot_be_imported_is_refused_with_where_and_why():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.fc(x)
            return self.fc(-x)

    with pytest.raises(ModuleImportError, match="data-dependent control flow"):
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
            self.scale = nn.Parameter(torch.ones(4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x * self.scale)

    with pytest.raises(ModuleImportError, match="free parameter"):
        from_module(FreeParameter(), (4,))
    with pytest.raises(ModuleImportError, match=r"returns a tensor of shape \(1, 4, 6, 6\)"):
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
