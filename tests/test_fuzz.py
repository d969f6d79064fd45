"""Fuzzing every input hypernas reads: each target either works or raises a HypernasError (the
clean, one-line error the CLI prints), never anything else. A few examples per target here;
``benchmarks/fuzz.py`` runs the long campaign and records its figures."""

from __future__ import annotations

import io
import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hypernas as hn
from hypernas.errors import HypernasError
from hypernas.runs import Run

# the default run tries a few examples; benchmarks/fuzz.py sets HYPERNAS_FUZZ_EXAMPLES high
FAST = settings(max_examples=int(os.environ.get("HYPERNAS_FUZZ_EXAMPLES", 40)), deadline=None,
                derandomize=not os.environ.get("HYPERNAS_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SPACES = {"nb201": dict(input_shape=(1, 8, 8), N=1, C=4),
          "macro": dict(input_shape=(1, 8, 8)),
          "mlp": dict(input_shape=(1, 8, 8), max_depth=2)}


def _valid_graph_json() -> str:
    return hn.graph_to_json(hn.load_space("nb201", **SPACES["nb201"]).sample(0).graph)


def _json_values():
    leaves = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(
        max_size=12)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@FAST
@given(st.data())
def test_graph_json_from_anywhere_is_read_or_refused(data):
    base = json.loads(_valid_graph_json())
    kind = data.draw(st.sampled_from(["text", "value", "mutated"]))
    if kind == "text":
        text = data.draw(st.text(max_size=200))
    elif kind == "value":
        text = json.dumps(data.draw(_json_values()))
    else:  # a valid graph with one field replaced by anything
        section = data.draw(st.sampled_from(["nodes", "edges", "graph"]))
        target = base[section]
        if isinstance(target, list) and target:
            item = target[data.draw(st.integers(0, len(target) - 1))]
            key = data.draw(st.sampled_from(sorted(item)))
            item[key] = data.draw(_json_values())
        elif isinstance(target, dict) and target:
            target[data.draw(st.sampled_from(sorted(target)))] = data.draw(_json_values())
        text = json.dumps(base)
    try:
        graph = hn.graph_from_json(text)
    except HypernasError:
        return
    hn.validate(graph)  # what is read is a valid graph


@FAST
@given(name=st.sampled_from(sorted(SPACES)), text=st.text(
    alphabet=string.printable, max_size=80))
def test_any_encoding_is_replayed_or_refused(name, text):
    space = hn.load_space(name, **SPACES[name])
    try:
        cand = space.replay(text)
    except HypernasError:
        return
    assert space.replay(cand.encoding).id == cand.id


@FAST
@given(name=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 10**6), cut=st.integers(0, 60),
       junk=st.text(alphabet="|,+~kew0123456789_=", max_size=6))
def test_a_damaged_encoding_is_replayed_or_refused(name, seed, cut, junk):
    space = hn.load_space(name, **SPACES[name])
    text = space.sample(seed).encoding
    text = text[:cut] + junk + text[cut + len(junk):]
    try:
        space.replay(text)
    except HypernasError:
        pass


@FAST
@given(st.text(max_size=40))
def test_any_run_name_stays_inside_the_runs_folder(tmp_path, name):
    try:
        run = Run(name, root=tmp_path)
    except HypernasError:
        return
    assert run.path.resolve().parent == tmp_path.resolve()


@FAST
@given(st.text(max_size=40))
def test_any_set_value_is_parsed_or_refused(text):
    from hypernas.cli._common import _parse_setting

    try:
        key, _ = _parse_setting(text)
    except HypernasError:
        return
    assert key and "=" in text


@FAST
@given(blob=st.binary(max_size=400), keep=st.integers(0, 4000))
def test_any_checkpoint_bytes_load_or_are_refused(blob, keep):
    from hypernas.hypernet.trainer import checkpoint_from_bytes

    good = _checkpoint_bytes()
    for data in (blob, good[:keep] + blob, blob + good[keep:]):
        try:
            checkpoint_from_bytes(data)
        except HypernasError:
            pass


_CACHE: dict[str, bytes] = {}


def _checkpoint_bytes() -> bytes:
    if "ckpt" not in _CACHE:
        import tempfile

        from hypernas.hypernet.model import GraphHyperNetwork, HyperNetConfig
        from hypernas.hypernet.trainer import save_checkpoint

        space = hn.load_space("mlp", **SPACES["mlp"])
        hnet = GraphHyperNetwork(HyperNetConfig.for_space(space, dim=8, samples=1))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.safetensors"
            save_checkpoint(path, hnet, None, {"step": 0, "elapsed": 0.0})
            _CACHE["ckpt"] = path.read_bytes()
    return _CACHE["ckpt"]


@FAST
@given(card=_json_values(), field=st.sampled_from(["files", "id", "val_acc", "card_sha256"]))
def test_any_model_card_loads_or_is_refused(tmp_path_factory, card, field):
    from hypernas.export import export_model

    out = tmp_path_factory.mktemp("export") / "m"
    if not _CACHE.get("exported"):
        net = hn.Network(hn.load_space("mlp", **SPACES["mlp"]).sample(0).graph)
        export_model(net, out, {"id": "x", "val_acc": 0.5})
        _CACHE["exported"] = (out / "model_card.json").read_bytes()
        _CACHE["export_dir"] = str(out)
    src = Path(_CACHE["export_dir"])
    real = json.loads(_CACHE["exported"])
    for text in (json.dumps(card), json.dumps({**real, field: card})):
        (src / "model_card.json").write_text(text)
        try:
            hn.load(src)
        except HypernasError:
            pass
    (src / "model_card.json").write_bytes(_CACHE["exported"])


@FAST
@given(arrays=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x",
                                                "labels"]),
                              st.lists(st.integers(-3, 300), max_size=30), max_size=4),
       raw=st.binary(max_size=120))
def test_any_npz_file_loads_or_is_refused(tmp_path_factory, arrays, raw):
    from hypernas.data import DataConfig
    from hypernas.data.registry import load_dataset_from_config

    folder = tmp_path_factory.mktemp("npz")
    good = folder / "a.npz"
    buf = io.BytesIO()
    np.savez(buf, **{k: np.array(v) for k, v in arrays.items()})
    good.write_bytes(buf.getvalue())
    junk = folder / "b.npz"
    junk.write_bytes(raw)
    for path in (good, junk):
        try:
            load_dataset_from_config(DataConfig(name="npz", path=str(path)))
        except HypernasError:
            pass


def test_the_fuzz_targets_do_read_good_input():
    # the targets are not vacuous: good input of each kind goes through
    hn.validate(hn.graph_from_json(_valid_graph_json()))
    from hypernas.hypernet.trainer import checkpoint_from_bytes

    assert checkpoint_from_bytes(_checkpoint_bytes()) is not None
    with pytest.raises(HypernasError):
        hn.graph_from_json("{")
