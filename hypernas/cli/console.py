"""Rich renderables for the terminal: tables of spaces and candidates, architecture trees.

These functions build ``rich`` objects and never print; the CLI decides where they go.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable

import networkx as nx
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..graphs.graph import node_attrs, ordered_inputs, topological_order, validate
from ..graphs.network import param_shapes
from ..spaces.space import Candidate, SearchSpace

__all__ = ["spaces_table", "candidates_table", "arch_tree", "ranking_table", "runs_table",
           "scores_table", "candidates_screened_table", "format_count", "format_bytes",
           "format_score", "format_interval", "pareto_plot"]


def format_score(score: float, spread: float = 0.0) -> str:
    """``-0.3121 ± 0.0042``; large proxy values in 4 significant digits."""
    if abs(score) >= 1000:
        return f"{score:.4g} ± {spread:.2g}"
    return f"{score:.4f} ± {spread:.4f}"


def format_count(n: int | None) -> str:
    """``15,625``; ``3.1e+12`` for huge numbers; ``?`` when unknown."""
    if n is None:
        return "?"
    return f"{n:,}" if n < 10**9 else f"{n:.2e}"


def spaces_table(spaces: Iterable[SearchSpace]) -> Table:
    """One row per space: name, size, number of choices, description."""
    table = Table(title="search spaces")
    for col in ("space", "candidates", "choices", "description"):
        table.add_column(col, justify="right" if col in ("candidates", "choices") else "left")
    for space in spaces:
        table.add_row(space.name, format_count(space.size()), str(len(space.choices())),
                      space.description)
    return table


def candidates_table(cands: Iterable[Candidate], title: str = "") -> Table:
    """One row per candidate: index, canonical id, params, layers, encoding."""
    table = Table(title=title or None)
    for col, just in (("#", "right"), ("id", "left"), ("params", "right"),
                      ("layers", "right"), ("encoding", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for i, cand in enumerate(cands):
        shapes = param_shapes(cand.graph)
        layers = len({name.rsplit(".", 1)[0] for name in shapes})
        table.add_row(str(i), cand.id, format_count(sum(math.prod(s) for s in shapes.values())),
                      str(layers), cand.encoding)
    return table


def _group(node: Hashable) -> str:
    return str(node).split("_", 1)[0]


def _subgroup(node: Hashable) -> str | None:
    """``s2_b1`` for ``s2_b1_dw``; None for names of fewer than three parts."""
    parts = str(node).split("_")
    return "_".join(parts[:2]) if len(parts) >= 3 else None


def _node_line(graph: nx.DiGraph, node: Hashable, shape: tuple[int, ...], params: int,
               previous: Hashable | None) -> Text:
    data = graph.nodes[node]
    attrs = node_attrs(graph, node)
    shown = ", ".join(f"{k}={v}" for k, v in attrs.items() if k in data)
    line = Text()
    line.append(str(node), style="bold")
    line.append(f"  {data['op']}", style="cyan")
    if shown:
        line.append(f"({shown})", style="cyan")
    ins = ordered_inputs(graph, node)
    if ins and ins != [previous]:  # show wiring only where it is not "the line above"
        line.append(f"  <- {', '.join(map(str, ins))}", style="yellow")
    line.append(f"  {'x'.join(map(str, shape))}")
    if params:
        line.append(f"  {params:,} params", style="green")
    return line


def arch_tree(cand: Candidate, extra: dict[str, Any] | None = None) -> Tree:
    """The architecture as a tree: groups of nodes (by name prefix) in execution order, each
    node with its op, inputs, output shape and parameter count."""
    graph, shapes = cand.graph, validate(cand.graph)
    counts: dict[str, int] = {}
    for name, shape in param_shapes(graph).items():
        node = name.split(".")[1]
        counts[node] = counts.get(node, 0) + math.prod(shape)
    total = sum(counts.values())
    head = Text(f"{cand.space} candidate {cand.id}  ", style="bold")
    head.append(f"{total:,} params, {len(graph)} nodes", style="green")
    for key, value in (extra or {}).items():
        head.append(f"  {key}={value}")
    root = Tree(head)
    root.add(Text(f"encoding: {cand.encoding}", style="dim"))
    groups: dict[str, Tree] = {}
    group_params: dict[str, int] = {}
    order = topological_order(graph)
    for node in order:
        group_params[_group(node)] = group_params.get(_group(node), 0) + counts.get(str(node), 0)
    previous: Hashable | None = None
    last_parent: Tree | None = None
    subgroups: dict[tuple[str, str], Tree] = {}
    for node in order:
        g, label = _group(node), graph.nodes[node].get("label")
        if g not in groups:
            text = Text(g, style="bold magenta")
            if group_params[g]:
                text.append(f"  {group_params[g]:,} params", style="green")
            groups[g] = root.add(text)
        parent = groups[g]
        sub = _subgroup(node)
        if sub:  # nodes of one block / edge share a name prefix; a label titles the block
            if (g, sub) not in subgroups:
                subgroups[g, sub] = parent.add(Text(label or sub, style="magenta"))
            elif label:
                subgroups[g, sub].label = Text(label, style="magenta")
            parent = subgroups[g, sub]
        if parent is not last_parent:  # a new (sub)group: always show where its input comes from
            previous, last_parent = None, parent
        parent.add(_node_line(graph, node, shapes[node], counts.get(str(node), 0), previous))
        previous = node
    return root


def ranking_table(rows: list[dict[str, Any]], extra: dict[str, dict[str, float]] | None = None,
                  title: str = "", calibration: Any = None, pool: int = 0) -> Table:
    """Ranked candidates: rank, id, score +- spread, params, MACs, other scorers, encoding.
    A row's ``rank`` is shown where it has one, else its position; a score marked † was made
    for a candidate with parameters in places no candidate of the training space had. Rows
    with an ``interval`` (a calibrated run) also show the predicted accuracy with it, the places
    it allows, and ≈ beside the rank of those that cannot be told apart from the first."""
    extra = extra or {}
    intervals = any("interval" in row for row in rows)
    table = Table(title=title or None)
    table.add_column("rank", justify="right")
    if rows and "line" in rows[0]:
        table.add_column("line", justify="right")
    latency = bool(rows) and "latency_ms" in rows[0]
    level = next((row["level"] for row in rows if "level" in row), 0.8)
    for col in ("id", "score ± spread",
                *([f"acc % ({100 * level:.0f} % interval)", "places"] if intervals else []),
                "params", "MACs", *(["latency ms"] if latency else []), *extra):
        table.add_column(col, justify="left" if col == "id" else "right", no_wrap=True)
    table.add_column("encoding", overflow="fold", ratio=1)
    for i, row in enumerate(rows, start=1):
        tie = " ≈" if row.get("ties_first") else ""
        cells = [str(row.get("rank", i)) + tie] + ([str(row["line"])] if "line" in row else [])
        unseen = " †" if row.get("unseen_slots") else ""
        if _stopped(row):  # raced: the estimate and its standard error against the full score
            score = format_score(row["score"], row.get("score_se", 0.0)) + " ‡"
        else:
            score = format_score(row["score"], row.get("spread", 0.0))
        cells += [row["id"], score + unseen]
        if intervals:
            cells += [format_interval(row), "{}-{}".format(*row["rank_range"])
                      if "rank_range" in row else "-"]
        cells += [format_count(row.get("params")), format_count(row.get("macs"))]
        cells += [f"{row['latency_ms']:.3f}"] if latency else []
        cells += [f"{extra[p][row['id']]:.4g}" if row["id"] in extra[p] else "-" for p in extra]
        table.add_row(*cells, row["encoding"])
    notes = []
    if any(row.get("unseen_slots") for row in rows):
        notes.append("† has parameters in places no candidate of the hypernetwork's training "
                     "space had (e.g. a deeper stage): its score is an extrapolation")
    stopped = [row for row in rows if _stopped(row)]
    if stopped:
        notes.append(f"‡ stopped early by racing ({len(stopped)} rows: could not reach the top "
                     "k): score estimated from fewer images, ± its standard error against the "
                     "full score; rank with --full to score every image")
    if intervals and calibration is not None:
        recipe = calibration.recipe or "the calibration's recipe"
        notes.append(f"acc %: the accuracy predicted ({recipe}) from "
                     f"{' and '.join(calibration.scorers)}, with its {100 * level:.0f} % "
                     f"interval (calibrated on {calibration.n} trained candidates); places: the "
                     f"ranks that interval allows among the {pool} ranked; ≈ cannot be told apart "
                     "from the candidate predicted best")
    if notes:
        table.caption = "\n".join(notes)
    return table


def candidates_screened_table(rows: list[dict[str, Any]], finalists: dict[str, float],
                              title: str = "") -> Table:
    """Screened candidates outside a ranking (``{trial, id, val_acc, params, macs, encoding}``),
    with the finalist's validation accuracy of those trained again."""
    table = Table(title=title or None)
    for col in ("trial", "id", "params", "MACs", "screened val acc", "finalist val acc"):
        table.add_column(col, justify="left" if col == "id" else "right", no_wrap=True)
    table.add_column("encoding", overflow="fold", ratio=1)
    for row in rows:
        fit = finalists.get(row["id"])
        table.add_row(str(row["trial"]), row["id"], format_count(row.get("params")),
                      format_count(row.get("macs")), f"{row['val_acc']:.4g}",
                      "-" if fit is None else f"{fit:.4g}", row.get("encoding") or "")
    return table


def format_interval(row: dict[str, Any]) -> str:
    """``87.6 [87.1, 88.0]`` (percent) from a row's ``predicted_acc`` and ``interval``.

    >>> format_interval({"predicted_acc": 0.876, "interval": [0.8712, 0.8801]})
    '87.6 [87.1, 88.0]'
    """
    if "interval" not in row:
        return "-"
    lo, hi = row["interval"]
    return f"{100 * row['predicted_acc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _stopped(row: dict[str, Any]) -> bool:
    return row.get("images") is not None and row["images"] < row.get("full_images", 0)


def format_bytes(n: int) -> str:
    """``1.2 MB`` style sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def runs_table(summaries: Iterable[dict[str, Any]]) -> Table:
    """One row per run: name, space, data, hypernet, stage, size, candidates ranked, best."""
    table = Table(title="runs")
    for col in ("run", "space", "data", "hypernet", "stage", "size", "ranked", "best"):
        table.add_column(col, justify="right" if col in ("size", "ranked") else "left")
    for s in summaries:
        best = s.get("best")
        if not best:
            shown = "-"
        elif best.get("kind") == "exported":
            shown = (f"{best['id']} exported: val acc {best['val_acc']:.4f}, test acc "
                     f"{best['test_acc']:.4f}")
        else:
            shown = (f"{best['id']} {format_score(best['score'], best['spread'])} "
                     f"({best['label']} score)")
        stage = s["stage"] + (f", step {s['step']}" if s.get("step") is not None else "")
        table.add_row(s["run"], str(s.get("space") or "?"), str(s.get("data") or "?"),
                      str(s.get("backbone") or "?"), stage, format_bytes(s.get("size_bytes", 0)),
                      format_count(s.get("ranked", 0)), shown)
    return table


def scores_table(scores: dict[str, dict[str, Any]]) -> Table:
    """One candidate's score under every ranking of its run."""
    table = Table(title="scores")
    for col in ("ranking", "score ± spread", "rank"):
        table.add_column(col, justify="left" if col == "ranking" else "right")
    for label, s in scores.items():
        table.add_row(label, format_score(s["score"], s["spread"]), f"{s['rank']} of {s['of']}")
    return table


def pareto_plot(rows: list[dict[str, Any]], front: list[dict[str, Any]], cost: str,
                width: int = 64, height: int = 16) -> Text:
    """Score against ``cost`` as a character plot: ``·`` every row, ``●`` the front (log-scaled
    x when the costs span more than a factor of ten)."""
    usable = [r for r in rows if r.get(cost) is not None and r.get("score") is not None]
    if not usable:
        return Text("(nothing to plot)")
    xs, ys = [r[cost] for r in usable], [r["score"] for r in usable]
    log = min(xs) > 0 and max(xs) / min(xs) > 10
    fx = (lambda v: math.log10(v)) if log else (lambda v: float(v))
    x0, x1 = fx(min(xs)), fx(max(xs))
    y0, y1 = min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]

    def put(row: dict[str, Any], mark: str) -> None:
        col = round((fx(row[cost]) - x0) / ((x1 - x0) or 1) * (width - 1))
        line = round((y1 - row["score"]) / ((y1 - y0) or 1) * (height - 1))
        grid[line][col] = mark

    for row in usable:
        put(row, "·")
    for row in front:
        put(row, "●")
    label_w = max(len(f"{y1:.4g}"), len(f"{y0:.4g}"))
    lines = []
    for i, chars in enumerate(grid):
        label = f"{y1:.4g}" if i == 0 else f"{y0:.4g}" if i == height - 1 else ""
        lines.append(f"{label:>{label_w}} │{''.join(chars)}")
    lines.append(" " * label_w + " └" + "─" * width)
    left, right = format_count(min(xs)), format_count(max(xs))
    axis = f"{cost}{' (log scale)' if log else ''}"
    gap = max(1, width - len(left) - len(right) - len(axis))
    lines.append(" " * (label_w + 2) + left + " " * (gap // 2) + axis
                 + " " * (gap - gap // 2) + right)
    text = Text("\n".join(lines))
    text.highlight_regex("●", "bold green")
    return text
