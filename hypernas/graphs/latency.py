"""Latency on this machine: a candidate timed at batch 1, and an additive estimate for drawing.

Measured (:func:`measure_latency`): the network is built with random weights and run on one
random input of batch 1, ``warmup`` times untimed and ``repeats`` times timed; the latency is
the median of the timed runs, with their interquartile range as its spread. The runtime is named
with every figure: ``torch`` (eager, ``torch.inference_mode``) or ``onnxruntime`` (the network
exported with ``torch.onnx.export``, run by onnxruntime's CPU provider; needs the ``export``
extra), each with as many intra-op threads as torch has in this process (the application sets
that: the CLI's ``--threads``, one by default), recorded with the figure.

Estimated (:meth:`LatencyMeter.estimate`): a per-node lookup table in the manner of FBNet's
latency tables: every node's op, at its attributes and input shapes, timed alone in torch (once
per process), summed over the graph, and scaled by a factor that the meter calibrates on whole
networks (the median ratio over the last 50 it measured), since a network costs more than its
ops alone. The sum is
additive over a space's decisions, which is what drawing candidates within a latency limit
needs (:mod:`hypernas.spaces.budget`); every drawn candidate is then measured for real.

:class:`LatencyMeter` keeps what it measured, keyed by canonical id, runtime and threads, in a
JSONL file when given one (a run's ``latency.jsonl``): a candidate is measured once per run.

Example:
    >>> from hypernas.graphs import GraphBuilder
    >>> b = GraphBuilder(input_shape=(4,), num_outputs=3)
    >>> _ = b.output(b.add("linear", b.input, out_features=3))
    >>> row = measure_latency(b.build(), repeats=5)
    >>> row["runtime"], row["ms"] > 0
    ('torch', True)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import networkx as nx
import torch

from ..errors import HypernasError
from .canonical import canonical_id
from .graph import input_node, node_attrs, ordered_inputs, topological_order, validate
from .network import build_network
from .ops import BatchNorm, get_op

__all__ = ["RUNTIMES", "LatencyError", "LatencyMeter", "check_runtime", "measure_latency"]

RUNTIMES = ("torch", "onnxruntime")
REPEATS, WARMUP = 30, 5
NODE_REPEATS = 15
RATIOS = 50  # whole networks whose measured / estimated ratio calibrates the estimate


class LatencyError(HypernasError, ValueError):
    """A latency cannot be measured here: an unknown runtime, or one that is not installed."""


def check_runtime(runtime: str) -> None:
    """Raise :class:`LatencyError` naming the fix when ``runtime`` cannot run here."""
    if runtime not in RUNTIMES:
        raise LatencyError(f"unknown latency runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise LatencyError(f"latency in onnxruntime needs {', '.join(missing)} (not "
                               "installed): pip install 'hypernas[export]', or measure with "
                               "--latency-runtime torch")


def _timed(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - start))
    return out


def _onnx_session(net: torch.nn.Module, x: torch.Tensor, threads: int) -> Any:
    import onnxruntime

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=["x"],
                                        output_names=["logits"], verbose=False)
    finally:
        quiet.setLevel(level)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(program.model_proto.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def measure_latency(graph: nx.DiGraph, runtime: str = "torch", repeats: int = REPEATS,
                    warmup: int = WARMUP) -> dict[str, Any]:
    """``{"ms", "iqr_ms", "repeats", "runtime", "threads"}``: the median and interquartile range
    of ``repeats`` timed forward passes of batch 1 (see the module's docstring)."""
    check_runtime(runtime)
    if repeats < 1:
        raise LatencyError(f"repeats must be at least 1, got {repeats}")
    threads = torch.get_num_threads()
    net = build_network(graph).eval()
    x = torch.randn(1, *graph.graph["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        if runtime == "torch":
            times = _timed(lambda: net(x), repeats, warmup)
        else:
            session, feed = _onnx_session(net, x, threads), {"x": x.numpy()}
            times = _timed(lambda: session.run(None, feed), repeats, warmup)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"ms": statistics.median(times), "iqr_ms": q3 - q1, "repeats": repeats,
            "runtime": runtime, "threads": threads}


def _host() -> str:
    return f"{platform.node()}/{platform.machine()}/{os.cpu_count()}cpu"


class LatencyMeter:
    """Measured latencies of candidates, each measured once (and kept in ``path``, a JSONL file,
    when given), and the additive estimate used to draw within a latency limit.

    Args:
        runtime: ``torch`` or ``onnxruntime``.
        path: where measurements are kept across processes (a run's ``latency.jsonl``); rows of
            another runtime, thread count (torch's in this process) or machine are ignored.
        repeats: timed runs per measurement.
    """

    def __init__(self, runtime: str = "torch", path: str | Path | None = None,
                 repeats: int = REPEATS) -> None:
        check_runtime(runtime)
        self.runtime, self.threads, self.repeats = runtime, torch.get_num_threads(), repeats
        self.path = Path(path) if path is not None else None
        self.host = _host()
        self._rows: dict[str, dict[str, Any]] = {}
        self._nodes: dict[str, float] = {}
        # the last networks measured (id -> graph), whose measured / node-sum ratio scales the
        # estimate; the ratio is worked out only when an estimate is asked for
        self._recent: dict[str, nx.DiGraph] = {}
        self._ratio: dict[str, float] = {}
        self._torn = False  # the file ends in a line a killed process left half-written
        if self.path is not None and self.path.exists():
            text = self.path.read_text()
            self._torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    mine = (row["runtime"], row["threads"], row["host"]) == (
                        runtime, self.threads, self.host)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line of a killed process, or not a row of ours
                if mine:
                    self._rows[row["id"]] = row

    def measure(self, graph: nx.DiGraph) -> dict[str, Any]:
        """The candidate's measured row (``id``, ``ms``, ``iqr_ms``, ...), measured once."""
        cid = canonical_id(graph)
        if cid not in self._rows:
            row = {"id": cid, **measure_latency(graph, self.runtime, self.repeats),
                   "host": self.host}
            self._rows[cid] = row
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as fh:
                    fh.write(("\n" if self._torn else "") + json.dumps(row) + "\n")
                self._torn = False
        row = self._rows[cid]
        if cid not in self._recent:  # every measured network refines the estimate's scale
            self._recent[cid] = graph
            if len(self._recent) > RATIOS:
                del self._recent[next(iter(self._recent))]
        return row

    def ms(self, graph: nx.DiGraph) -> float:
        """Measured latency of ``graph`` in milliseconds (see :meth:`measure`)."""
        return float(self.measure(graph)["ms"])

    def estimate(self, graph: nx.DiGraph) -> float:
        """Estimated milliseconds: the sum of the nodes' own latencies, scaled by the median
        measured over summed ratio of the last ``RATIOS`` networks measured (1 before any)."""
        for cid, measured in self._recent.items():
            if cid not in self._ratio:
                self._ratio[cid] = self._rows[cid]["ms"] / self._node_sum(measured)
        ratio = statistics.median(self._ratio[cid] for cid in self._recent) if self._recent \
            else 1.0
        return ratio * self._node_sum(graph)

    def _node_sum(self, graph: nx.DiGraph) -> float:
        shapes = validate(graph)
        total, inp = 0.0, input_node(graph)
        for node in topological_order(graph):
            if node == inp:
                continue
            name, attrs = graph.nodes[node]["op"], node_attrs(graph, node)
            ins = [shapes[p] for p in ordered_inputs(graph, node)]
            key = json.dumps([name, attrs, ins], sort_keys=True, default=str)
            if key not in self._nodes:
                self._nodes[key] = self._time_node(name, attrs, ins)
            total += self._nodes[key]
        return max(total, 1e-6)

    def _time_node(self, name: str, attrs: dict[str, Any], ins: list[tuple[int, ...]]) -> float:
        op = get_op(name)(attrs, ins).eval()
        xs = [torch.randn(1, *shape) for shape in ins]
        call = (lambda: op(*xs, batch_stats=False)) if isinstance(op, BatchNorm) else \
            (lambda: op(*xs))
        with torch.inference_mode():
            return statistics.median(_timed(call, NODE_REPEATS, 3))
