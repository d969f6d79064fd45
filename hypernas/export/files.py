"""One trained network written as plain files, and loaded back without pickles.

    DIR/
        model.safetensors   parameters and buffers (names as ``Network(graph).state_dict()``)
        graph.json          the architecture as node-link JSON (validated again on load)
        model_card.json     space, encoding, id, scores, recipe, accuracy, the input contract
                            (``input``: how a raw input becomes a model input), each file's SHA-256
        README.md           the same card, for people
        model.onnx          (format "onnx") checked against onnxruntime on real inputs
        model.pt2           (format "pt2") a ``torch.export`` program with a dynamic batch size

:func:`load` rebuilds the ``nn.Module`` from ``graph.json`` + ``model.safetensors`` alone (no code
from the files runs) after checking every file against the checksums in ``model_card.json``;
its ``transform`` applies the card's input contract to raw inputs. With ``raw_input`` the ONNX
and ``.pt2`` files take raw inputs themselves (the contract is inside their graph; the card's
``onnx_input`` says which).
A directory is written next to its destination and moved into place whole, so an export that
fails its checks leaves nothing behind.

Example:
    >>> import tempfile, torch, hypernas as hn
    >>> cand = hn.load_space("mlp", widths=(8,), max_depth=1).sample(0)
    >>> net = hn.Network(cand.graph).eval()
    >>> out = tempfile.mkdtemp() + "/model"
    >>> card = export_model(net, out, {"encoding": cand.encoding})
    >>> x = torch.randn(2, *cand.graph.graph["input_shape"])
    >>> torch.equal(load(out)(x), net(x))
    True
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..data.contract import InputContract, Preprocess
from ..errors import HypernasError
from ..graphs.network import Network, count_params
from ..graphs.serialize import graph_from_json, graph_to_json

__all__ = ["FORMATS", "ONNX_ATOL", "ExportError", "RawInputModel", "export_model", "accuracy_se",
           "load"]

FORMATS = ("safetensors", "onnx", "pt2")
ONNX_ATOL = 1e-4  # onnxruntime vs PyTorch, max absolute difference of logits (float32)
CARD, GRAPH, WEIGHTS = "model_card.json", "graph.json", "model.safetensors"


class ExportError(HypernasError, ValueError):
    """An export cannot be written as asked, or an exported directory does not check out."""


def export_model(net: Network, out: str | Path, card: dict[str, Any],
                 formats: Sequence[str] = ("safetensors",), example: Tensor | None = None,
                 force: bool = False, contract: InputContract | None = None,
                 raw_input: bool = False) -> dict[str, Any]:
    """Write ``net`` (weights in place) to the directory ``out`` in ``formats``.

    Args:
        net: the trained network.
        out: a directory that must not exist yet (or ``force``).
        card: what the model card says besides what is computed here (space, encoding, id,
            scores, training recipe, measured accuracy ...).
        formats: any of :data:`FORMATS`; safetensors + graph JSON are always written.
        example: real inputs ``(B, *input_shape)``, B >= 2, to check ONNX and pt2 against
            PyTorch (random inputs when None).
        force: replace an existing ``out``.
        contract: how a raw input becomes the network's input (recorded as the card's ``input``).
        raw_input: put that preprocessing inside the ONNX and ``.pt2`` graphs, so they take raw
            inputs ``(B, *contract.raw_shape)`` (``example`` is then raw too).

    Returns:
        the model card as written (with ``files``: name -> SHA-256).
    """
    out = Path(out)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if out.exists() or out.is_symlink():
        if not force:
            raise ExportError(f"{out} already exists; choose another --out or pass --force to "
                              "replace it")
        _check_replaceable(out)
    net = net.eval()
    if raw_input and contract is None:
        raise ExportError("raw_input needs the input contract of the model's data, and there is "
                          "none (its dataset records none): export without raw_input "
                          "(--raw-input), or pass contract=")
    if contract is not None and tuple(contract.input_size) != tuple(
            net.graph.graph["input_shape"]):
        raise ExportError(f"the input contract gives inputs of shape {tuple(contract.input_size)} "
                          f"but the network takes {tuple(net.graph.graph['input_shape'])}")
    graph_module = RawInputModel(contract, net).eval() if raw_input else net
    x = example if example is not None else _random_input(net, contract if raw_input else None)
    if x.shape[0] < 2:
        raise ExportError("the example batch needs at least 2 inputs to export a dynamic batch")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        files = _write_all(net, graph_module, work, formats, x)
        card = {**card, "params": count_params(net.graph),
                **({"input": contract.to_dict()} if contract is not None else {}),
                "onnx_input": "raw" if raw_input else "prepared",
                "input_shape": list(net.graph.graph["input_shape"]),
                "num_outputs": net.graph.graph["num_outputs"], "formats": sorted(
                    {"safetensors", *formats}), "onnx_atol": ONNX_ATOL if "onnx" in formats
                else None, "files": files}
        card["card_sha256"] = card_digest(card)
        (work / CARD).write_text(json.dumps(card, indent=1, sort_keys=True))
        (work / "README.md").write_text(_readme(card))
        work.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return card


class RawInputModel(nn.Module):
    """``net`` behind the preprocessing of ``contract``: raw inputs in, logits out (what the
    ONNX and ``.pt2`` files of a ``raw_input`` export hold)."""

    def __init__(self, contract: InputContract, net: nn.Module) -> None:
        super().__init__()
        self.pre, self.net = Preprocess(contract), net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.pre(x))


def card_digest(card: dict[str, Any]) -> str:
    """SHA-256 of a model card's content without its own ``card_sha256`` field (what the card
    records, so a hand-edited card is told from the exported one)."""
    body = {k: v for k, v in card.items() if k != "card_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_replaceable(out: Path) -> None:
    """``--force`` replaces a previous hypernas export and nothing else: a directory (not a
    link) whose model card parses and which holds only the card, its README and the files the
    card lists. Anything else (a typo such as ``--out ~`` or ``--out .``) is refused."""
    def refuse(why: str) -> None:
        raise ExportError(f"--force replaces only a previous hypernas export, and {out} {why}; "
                          "choose another --out, or move it away yourself")

    if out.is_symlink() or not out.is_dir():
        refuse("is not a directory" if not out.is_symlink() else "is a symbolic link")
    try:
        listed = set(json.loads((out / CARD).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        refuse(f"has no readable {CARD}")
    extra = sorted(p.name for p in out.iterdir() if p.name not in listed | {CARD, "README.md"})
    if extra:
        refuse(f"holds what no export wrote ({', '.join(extra[:5])}"
               f"{' ...' if len(extra) > 5 else ''})")


def accuracy_se(acc: float, images: int) -> float:
    """Binomial standard error of an accuracy measured on ``images`` independent images.

    >>> round(accuracy_se(0.88, 5_000), 4)
    0.0046
    """
    return math.sqrt(acc * (1 - acc) / images) if images > 0 else float("nan")


def _random_input(net: Network, raw: InputContract | None = None) -> Tensor:
    g = torch.Generator().manual_seed(0)
    if raw is not None:  # raw values across their range
        lo, hi = raw.raw_range
        return lo + (hi - lo) * torch.rand(4, *raw.raw_shape, generator=g)
    return torch.randn(4, *net.graph.graph["input_shape"], generator=g)


def _write_all(net: Network, module: nn.Module, work: Path, formats: Sequence[str], x: Tensor
               ) -> dict[str, str]:
    """Weights and graph of ``net``; ONNX and pt2 of ``module`` (``net``, or the preprocessing
    then ``net``) checked on ``x``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(work / WEIGHTS))
    (work / GRAPH).write_text(graph_to_json(net.graph))
    with torch.no_grad():
        want = module(x)
    if "onnx" in formats:
        _export_onnx(module, work / "model.onnx", x, want)
    if "pt2" in formats:
        _export_pt2(module, work / "model.pt2", x, want)
    return {p.name: _sha256(p) for p in sorted(work.iterdir())}


def _batch_dim() -> dict[str, Any]:
    return {"x": {0: torch.export.Dim("batch", min=1, max=65536)}}


def _export_onnx(net: nn.Module, path: Path, x: Tensor, want: Tensor) -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(m) is None]
    if missing:  # torch's exporter would fail deep inside with "No module named ..."
        raise ExportError(f"ONNX export needs {', '.join(missing)} (not installed): pip install "
                          "'hypernas[export]', or leave onnx out of --format")
    import onnxruntime
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs every torchvision op it skips
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=_batch_dim(),
                              input_names=["x"], output_names=["logits"], external_data=False,
                              verbose=False)
    finally:
        quiet.setLevel(level)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):  # the example batch, and another batch size
        got = torch.from_numpy(session.run(None, {"x": batch.numpy()})[0])
        ref = want[:len(batch)]
        diff = float((got - ref).abs().max())
        if got.shape != ref.shape or diff > ONNX_ATOL:
            raise ExportError(f"the ONNX model does not match PyTorch (max |diff| {diff:.2e} > "
                              f"{ONNX_ATOL:g} at batch {len(batch)}); not written. Export without "
                              "onnx, or report this architecture")


def _export_pt2(net: nn.Module, path: Path, x: Tensor, want: Tensor) -> None:
    program = torch.export.export(net, (x,), dynamic_shapes=_batch_dim())
    torch.export.save(program, str(path))
    got = torch.export.load(str(path)).module()(x[:1])
    if not torch.allclose(got, want[:1], atol=1e-5):
        raise ExportError("the torch.export program does not match the model; not written")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _readme(card: dict[str, Any]) -> str:
    lines = [f"# {card.get('space', 'hypernas')} candidate {card.get('id', '')}", ""]
    for key in ("space", "encoding", "id", "params", "input_shape", "num_outputs", "accuracy",
                "scores", "recipe", "run", "formats", "onnx_atol", "onnx_input"):
        if card.get(key) is not None:
            lines.append(f"- **{key}**: `{json.dumps(card[key])}`")
    for split in ("val", "test"):
        if card.get(f"{split}_acc") is not None and card.get(f"{split}_images"):
            lines.append(f"- **{split} accuracy**: {card[f'{split}_acc']:.4f} ± "
                         f"{card[f'{split}_acc_se']:.4f} (one standard error, "
                         f"{card[f'{split}_images']:,} images)")
    if card.get("input"):
        c = card["input"]
        size = "x".join(map(str, c["input_size"]))
        resize = (f"resize to {size} by {c['interpolation']} interpolation (each output pixel "
                  "the mean of the input pixels it covers; torch: `interpolate(mode=\"area\")`)"
                  if c.get("interpolation") and c["input_size"] != c["raw_shape"]
                  else "no resize")
        lines += ["", "## Input", "",
                  f"Raw inputs {'x'.join(map(str, c['raw_shape']))} ({c['layout']}, "
                  f"{c['channels']}), values {c['raw_range'][0]:g}..{c['raw_range'][1]:g}:",
                  f"1. multiply by {c['scale']:.6g}; subtract mean {c['mean']}, divide by std "
                  f"{c['std']} (per channel);", f"2. {resize}.",
                  f"Labels: {', '.join(f'{i} {n}' for i, n in enumerate(c['labels']))}.",
                  "`hypernas.load(DIR).transform` does exactly this to raw inputs."
                  + (" The ONNX and .pt2 files take raw inputs (the steps are inside them)."
                     if card.get("onnx_input") == "raw" else
                     " The ONNX and .pt2 files take prepared inputs (after these steps).")]
    lines += ["", "Load it with `hypernas.load(DIR)` (safetensors + graph JSON, no pickles);",
              "`model.onnx` runs in onnxruntime, `model.pt2` with `torch.export.load`.", ""]
    return "\n".join(lines)


def load(path: str | Path) -> Network:
    """The exported network, in eval mode, rebuilt from ``graph.json`` and
    ``model.safetensors`` after checking both against ``model_card.json``.

    Its ``input_contract`` is the card's :class:`~hypernas.data.InputContract` and its
    ``transform`` a :class:`~hypernas.data.Preprocess` that turns raw inputs (e.g. the uint8
    Fashion-MNIST images as stored) into what the network takes: ``net(net.transform(raw))``
    (both None for an export made before cards carried the contract). Neither is a submodule:
    ``net`` itself still takes prepared inputs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        card = json.loads((path / CARD).read_text())
        files = dict(card["files"])
    except FileNotFoundError:
        raise ExportError(f"{path} is not a hypernas export ({CARD} is missing)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ExportError(f"{path / CARD} is corrupt; export the model again") from None
    if "card_sha256" in card and card["card_sha256"] != card_digest(card):
        raise ExportError(f"{path / CARD} was edited after the export (its figures no longer match "
                          "its hash); export the model again")
    for name in (GRAPH, WEIGHTS):
        if name not in files or not (path / name).exists():
            raise ExportError(f"{path} lacks {name}; export the model again")
        if _sha256(path / name) != files[name]:
            raise ExportError(f"{path / name} does not match the checksum in {CARD}: the file was "
                              "changed or damaged; export the model again")
    graph = graph_from_json((path / GRAPH).read_text())
    net = Network(graph)
    try:
        state = load_file(str(path / WEIGHTS))
        net.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as err:
        raise ExportError(f"{path / WEIGHTS} does not fit {GRAPH} ({str(err).splitlines()[0]}); "
                          "export the model again") from None
    contract = InputContract.from_dict(card["input"]) if card.get("input") else None
    object.__setattr__(net, "input_contract", contract)  # plain attributes, not submodules
    object.__setattr__(net, "transform", Preprocess(contract) if contract is not None else None)
    return net.eval()
