"""Architecture graphs as JSON: networkx node-link data, validated on the way in.

A hand-written or tampered file gets a :class:`~hypernas.errors.GraphFormatError` naming the entry
at fault, and a well-formed one is then checked like any graph (:func:`hypernas.graphs.graph.validate`).

Example:
    >>> from hypernas.graphs.builder import GraphBuilder
    >>> b = GraphBuilder(input_shape=(1, 8, 8), num_outputs=10)
    >>> b.output(b.add("linear", b.add("flatten", b.input), out_features=10))
    'output'
    >>> g = b.build()
    >>> graphs_equal(graph_from_json(graph_to_json(g)), g)
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import GraphError, GraphFormatError
from .graph import validate

__all__ = ["graph_to_dict", "graph_from_dict", "graph_to_json", "graph_from_json", "save_graph",
           "load_graph", "graphs_equal", "FORMAT_VERSION"]

FORMAT_VERSION = 1  # written as the graph attribute hypernas_format


def graph_to_dict(graph: nx.DiGraph) -> dict[str, Any]:
    """Plain, JSON-ready node-link data of ``graph``."""
    data = nx.node_link_data(graph, edges="edges")
    data["graph"] = dict(data["graph"], hypernas_format=FORMAT_VERSION)
    return data


def graph_from_dict(data: Any, *, check: bool = True) -> nx.DiGraph:
    """Rebuild a graph from node-link data; malformed data raises :class:`GraphFormatError`."""
    if not isinstance(data, dict):
        raise GraphFormatError(f"graph data must be a JSON object (networkx node-link data), got "
                               f"{type(data).__name__}")
    edges_key = "links" if "links" in data and "edges" not in data else "edges"
    for key in ("nodes", edges_key):
        if not isinstance(data.get(key), list):
            raise GraphFormatError(f"graph data has no {key!r} list; expected networkx node-link "
                                   "data as written by hypernas.graph_to_json")
    if not data.get("directed", True) or data.get("multigraph", False):
        raise GraphFormatError("graph data must be directed and not a multigraph "
                               "(set 'directed': true, 'multigraph': false)")
    ids = set()
    for i, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or "id" not in node:
            raise GraphFormatError(f"node entry #{i} has no 'id': {node!r}")
        if not isinstance(node["id"], (str, int)):
            raise GraphFormatError(f"node entry #{i} has id {node['id']!r}; use a string or int")
        if node["id"] in ids:
            raise GraphFormatError(f"node entry #{i} repeats id {node['id']!r}; give each node "
                                   "its own id")
        ids.add(node["id"])
    pairs = set()
    for i, edge in enumerate(data[edges_key]):
        if not isinstance(edge, dict) or "source" not in edge or "target" not in edge:
            raise GraphFormatError(f"edge entry #{i} needs 'source' and 'target': {edge!r}")
        for end in ("source", "target"):
            if isinstance(edge[end], (list, dict)) or edge[end] not in ids:
                raise GraphFormatError(f"edge entry #{i} names {end} {edge[end]!r}, which is "
                                       "not a node id; add the node or fix the edge")
        pair = (edge["source"], edge["target"])
        if pair in pairs:
            raise GraphFormatError(f"edge entry #{i} repeats the edge {pair[0]!r} -> {pair[1]!r}; "
                                   "a graph holds one edge per pair: feed a repeated input "
                                   "through an 'identity' node")
        pairs.add(pair)
    payload = dict(data, directed=True, multigraph=False)
    graph = nx.node_link_graph(payload, directed=True, multigraph=False, edges=edges_key)
    graph.graph.pop("hypernas_format", None)
    if check:
        validate(graph)
    return graph


def graph_to_json(graph: nx.DiGraph, indent: int | None = None) -> str:
    """``graph`` as node-link JSON text."""
    return json.dumps(graph_to_dict(graph), indent=indent, sort_keys=False)


def graph_from_json(text: str, *, check: bool = True) -> nx.DiGraph:
    """Parse node-link JSON text (as written by :func:`graph_to_json`) and validate it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GraphFormatError(f"graph JSON does not parse: {err}") from None
    return graph_from_dict(data, check=check)


def save_graph(graph: nx.DiGraph, path: str | Path) -> None:
    """Write ``graph`` as node-link JSON to ``path``."""
    Path(path).write_text(graph_to_json(graph, indent=1))


def load_graph(path: str | Path) -> nx.DiGraph:
    """Read and validate a graph written by :func:`save_graph` (or by hand in that layout)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise GraphFormatError(f"cannot read graph file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise GraphFormatError(f"graph file {path} is not UTF-8 text; expected node-link JSON "
                               "as written by hypernas.save_graph") from None
    try:
        return graph_from_json(text)
    except GraphError as err:
        raise type(err)(f"{path}: {err}", node=err.node) from None


def graphs_equal(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Same graph attributes, nodes with the same data, edges with the same data."""
    return (a.graph == b.graph and dict(a.nodes(data=True)) == dict(b.nodes(data=True))
            and {(u, v): d for u, v, d in a.edges(data=True)}
            == {(u, v): d for u, v, d in b.edges(data=True)})
