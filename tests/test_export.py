"""Export and load: safetensors + graph JSON round trip, ONNX and torch.export checked against
PyTorch, refusals for existing directories and for tampered or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import hypernas as hn
import hypernas.export.files as export_module
from hypernas.export import ExportError, export_model, load

CELL = "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def _trained_like(graph) -> hn.Network:
    """A network with non-trivial weights and running statistics (as after training)."""
    torch.manual_seed(0)
    net = hn.Network(graph)
    net.train()
    with torch.no_grad():
        net(torch.randn(16, *graph.graph["input_shape"]))  # moves the batch-norm statistics
    return net.eval()


@pytest.fixture
def cell():
    return hn.load_space("nb201", input_shape=(1, 8, 8), N=1, C=4).replay(CELL)


@pytest.mark.parametrize("space, settings", [("mlp", {"max_depth": 2}), ("macro", {})])
def test_safetensors_round_trip_gives_the_same_outputs(space, settings, tmp_path):
    cand = hn.load_space(space, **settings).sample(3)
    net = _trained_like(cand.graph)
    card = export_model(net, tmp_path / "m", {"space": space, "encoding": cand.encoding})
    assert set(card["files"]) == {"graph.json", "model.safetensors"}
    x = torch.randn(3, *cand.graph.graph["input_shape"])
    again = load(tmp_path / "m")
    assert not again.training and torch.equal(again(x), net(x))
    assert hn.canonical_id(again.graph) == cand.id
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["encoding"] == cand.encoding
    assert cand.encoding in (tmp_path / "m" / "README.md").read_text()


def test_onnx_and_pt2_match_pytorch_at_any_batch_size(cell, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    net = _trained_like(cell.graph)
    x = torch.randn(4, 1, 8, 8)
    card = export_model(net, tmp_path / "m", {"id": cell.id}, formats=["onnx", "pt2"], example=x)
    assert {"model.onnx", "model.pt2"} <= set(card["files"]) and card["onnx_atol"] > 0
    y = torch.randn(7, 1, 8, 8)                     # a batch size never exported
    session = onnxruntime.InferenceSession(str(tmp_path / "m" / "model.onnx"))
    got = torch.from_numpy(session.run(None, {"x": y.numpy()})[0])
    assert torch.allclose(got, net(y), atol=export_module.ONNX_ATOL)
    program = torch.export.load(str(tmp_path / "m" / "model.pt2")).module()
    assert torch.allclose(program(y), net(y), atol=1e-5)


def test_an_onnx_mismatch_is_reported_and_nothing_is_written(cell, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(export_module, "ONNX_ATOL", -1.0)   # nothing can match
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_model(_trained_like(cell.graph), tmp_path / "m", {}, formats=["onnx"])
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_needs_force(cell, tmp_path):
    net = _trained_like(cell.graph)
    export_model(net, tmp_path / "m", {"v": 1})
    with pytest.raises(ExportError, match="--force"):
        export_model(net, tmp_path / "m", {"v": 2})
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["v"] == 1
    export_model(net, tmp_path / "m", {"v": 2}, force=True)
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["v"] == 2
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(net, tmp_path / "n", {}, formats=["tflite"])


@pytest.mark.parametrize("make", ["home", "repo", "file", "link", "edited"])
def test_force_replaces_only_a_previous_export(cell, tmp_path, make):
    net = _trained_like(cell.graph)
    target = tmp_path / "target"
    if make == "home":  # a folder of someone's files, e.g. a typo --out ~
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
        (target / ".bashrc").write_text("keep me")
    elif make == "repo":  # an export with something of the user's added, e.g. --out .
        export_model(net, target, {})
        (target / "train.py").write_text("keep me")
    elif make == "file":
        target.write_text("keep me")
    elif make == "link":
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real")
    else:  # a directory holding a model card that does not parse
        target.mkdir()
        (target / "model_card.json").write_text("{not json")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ExportError, match="--force replaces only a previous hypernas export"):
        export_model(net, target, {"v": 2}, force=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing deleted, nothing left


def _rehash(path: Path, name: str) -> None:
    card = json.loads((path / "model_card.json").read_text())
    card["files"][name] = export_module._sha256(path / name)
    card["card_sha256"] = export_module.card_digest(card)  # a careful forger
    (path / "model_card.json").write_text(json.dumps(card))


def test_tampered_or_mismatched_files_are_refused(cell, tmp_path):
    export_model(_trained_like(cell.graph), tmp_path / "m", {})
    weights = tmp_path / "m" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ExportError, match="checksum"):
        load(tmp_path / "m")

    export_model(_trained_like(cell.graph), tmp_path / "m", {}, force=True)
    other = hn.load_space("nb201", input_shape=(1, 8, 8), N=1, C=8).replay(CELL)
    (tmp_path / "m" / "graph.json").write_text(hn.graph_to_json(other.graph))
    with pytest.raises(ExportError, match="checksum"):
        load(tmp_path / "m")
    _rehash(tmp_path / "m", "graph.json")         # a consistent card, but weights of another shape
    with pytest.raises(ExportError, match="does not fit graph.json"):
        load(tmp_path / "m")

    with pytest.raises(ExportError, match="not a hypernas export"):
        load(tmp_path)
    (tmp_path / "m" / "model_card.json").write_text("{oops")
    with pytest.raises(ExportError, match="corrupt"):
        load(tmp_path / "m")


def test_a_missing_export_extra_is_named_and_nothing_is_written(cell, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match=r"needs onnxscript \(not installed\): pip install "
                                          r"'hypernas\[export\]'"):
        export_model(_trained_like(cell.graph), tmp_path / "m", {}, formats=["onnx"])
    assert list(tmp_path.iterdir()) == []


def test_a_hand_edited_model_card_is_refused(cell, tmp_path):
    export_model(_trained_like(cell.graph), tmp_path / "m", {"val_acc": 0.8})
    path = tmp_path / "m" / "model_card.json"
    card = json.loads(path.read_text())
    load(tmp_path / "m")  # as exported, it loads
    path.write_text(json.dumps({**card, "val_acc": 0.99}))
    with pytest.raises(ExportError, match="was edited after the export"):
        load(tmp_path / "m")


@pytest.fixture(scope="module")
def fashion16():
    """Fashion-MNIST at 16x16 as hypernas prepares it, its raw uint8 test images, and a small
    NB201 cell trained on it for one short epoch (so its predictions depend on the details)."""
    from hypernas.data import load_dataset, resize_dataset
    from hypernas.data.fashion_mnist import _fashion_dir, _read_fashion_mnist
    from hypernas.refine.train import TrainConfig, train_network

    ds = resize_dataset(load_dataset("fashion-mnist"), 16)
    raw = torch.from_numpy(_read_fashion_mnist(str(_fashion_dir(None)[0].resolve()))[2].copy())
    cand = hn.load_space("nb201", input_shape=(1, 16, 16), N=1, C=8).replay(CELL)
    net = hn.Network(cand.graph)
    train_network(net, ds.train, ds.val.subset(500),
                  TrainConfig(epochs=1, train_size=2_000, seed=0))
    return ds, raw, net.eval(), cand


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def test_the_input_contract_turns_raw_images_into_the_prepared_ones(fashion16):
    from hypernas.data import Preprocess

    ds, raw, _, _ = fashion16
    assert ds.contract.input_size == (1, 16, 16) and ds.contract.raw_shape == (1, 28, 28)
    assert ds.contract.labels[9] == "Ankle boot" and ds.contract.interpolation == "area"
    prepared = Preprocess(ds.contract)(raw)  # (N, 28, 28) uint8, as stored
    assert prepared.shape == ds.test.x.shape
    assert float((prepared - ds.test.x).abs().max()) < 1e-5


def test_raw_test_images_through_the_exported_contract_give_the_cards_accuracy(fashion16,
                                                                              tmp_path):
    """The card's test accuracy is reproduced from the raw images with torch, onnxruntime and
    the .pt2 alike; a guessed bilinear resize would not reproduce it."""
    import onnxruntime
    import torch.nn.functional as F

    ds, raw, net, cand = fashion16
    with torch.no_grad():
        card_acc = _accuracy(net(ds.test.x), ds.test.y)
    card = export_model(net, tmp_path / "m", {"test_acc": card_acc}, formats=["onnx", "pt2"],
                        example=ds.test.x[:8], contract=ds.contract)
    assert card["input"]["mean"] == [0.286] and card["onnx_input"] == "prepared"
    assert "Ankle boot" in (tmp_path / "m" / "README.md").read_text()
    model = load(tmp_path / "m")
    x = model.transform(raw)
    with torch.no_grad():
        assert _accuracy(model(x), ds.test.y) == card["test_acc"]
        program = torch.export.load(str(tmp_path / "m" / "model.pt2")).module()
        assert _accuracy(program(x), ds.test.y) == pytest.approx(card["test_acc"], abs=2e-4)
    session = onnxruntime.InferenceSession(str(tmp_path / "m" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert _accuracy(logits, ds.test.y) == pytest.approx(card["test_acc"], abs=2e-4)
    # what a user guessing the resize got: the same standardisation, bilinear instead of area
    guessed = F.interpolate((raw[:, None].float() / 255 - 0.286) / 0.353, size=(16, 16),
                            mode="bilinear")
    with torch.no_grad():
        assert _accuracy(model(guessed), ds.test.y) != card["test_acc"]


def test_an_export_can_take_raw_images_itself(fashion16, tmp_path):
    import onnxruntime

    ds, raw, net, _ = fashion16
    with torch.no_grad():
        want = _accuracy(net(ds.test.x), ds.test.y)
    card = export_model(net, tmp_path / "raw", {}, formats=["onnx", "pt2"],
                        contract=ds.contract, raw_input=True)
    assert card["onnx_input"] == "raw"
    session = onnxruntime.InferenceSession(str(tmp_path / "raw" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    x = raw[:, None].float().numpy()  # (N, 1, 28, 28), values 0..255
    got = torch.from_numpy(session.run(None, {"x": x})[0])
    assert _accuracy(got, ds.test.y) == pytest.approx(want, abs=2e-4)
    program = torch.export.load(str(tmp_path / "raw" / "model.pt2")).module()
    with torch.no_grad():
        assert _accuracy(program(torch.from_numpy(x)), ds.test.y) == pytest.approx(want, abs=2e-4)
    with pytest.raises(ExportError, match=r"raw_input needs the input contract"):
        export_model(net, tmp_path / "no", {}, raw_input=True)
