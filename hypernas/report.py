"""A run as one self-contained HTML page: how its search went, in figures (``hypernas report``).

Reads ``runs/<name>/`` (config, rankings, training log, the Optuna study, the export) and draws,
with matplotlib:

- ``score-vs-accuracy``: the hypernetwork's score against the trained accuracy of every
  candidate that was trained (screens and refinements; finalists marked), with their rank
  correlation: does the ranking agree with real training?
- ``score-vs-params`` / ``score-vs-macs``: every ranked candidate's score against its cost, the
  Pareto front (the best score each cost buys) drawn through it;
- ``hypernet-training``: the hypernetwork's training loss and accuracy by step;
- ``trials-over-time``: every refinement trial's validation accuracy by the minute it finished,
  and the best so far;
- ``winner``: the exported (else the best refined) candidate's architecture as a graph, one
  layer per topological generation.

The page embeds each figure as inline SVG (text drawn as paths), so it opens offline and fetches
nothing; a figure without data says why in its place. ``png_dir`` writes the same figures as
PNG files. The only script on the page marks each figure rendered (``data-rendered``), which
the tests read back from a headless browser.

Example:
    >>> FIGURES[0]
    'score-vs-accuracy'
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

from .errors import HypernasError
from .runs.rankings import pareto_front, ranked_rows, ranking_labels
from .runs.store import Run, read_jsonl, write_text

__all__ = ["FIGURES", "ReportError", "collect", "write_report", "rank_correlation"]


class ReportError(HypernasError, ValueError):
    """A report cannot be written where asked; the message names the fix."""

FIGURES = ("score-vs-accuracy", "score-vs-params", "score-vs-macs", "hypernet-training",
           "trials-over-time", "winner")
TITLES = {
    "score-vs-accuracy": "Predicted score vs trained accuracy",
    "score-vs-params": "Score vs parameters, with the Pareto front",
    "score-vs-macs": "Score vs multiply-accumulates, with the Pareto front",
    "hypernet-training": "Hypernetwork training",
    "trials-over-time": "Refinement trials over time",
    "winner": "The winner's architecture",
}


def rank_correlation(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (ties share their mean rank); None under 3 points or when
    one side is constant.

    >>> rank_correlation([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    """
    if len(xs) < 3:
        return None

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(list(xs)), ranks(list(ys))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def collect(run: Run) -> dict[str, Any]:
    """Everything the report draws, as plain data."""
    config = run.read_config()
    labels = ranking_labels(run)
    label = "hypernet" if "hypernet" in labels else (labels[0] if labels else None)
    rows = ranked_rows(run, label) if label else []
    trials: list[dict[str, Any]] = []
    if run.study_path.exists():
        from .refine.study import open_study

        study = open_study(run, create=False)
        for t in study.get_trials(deepcopy=False):
            if t.value is None or t.datetime_complete is None:
                continue
            trials.append({"number": t.number, "value": t.value, "id": t.user_attrs.get("id"),
                           "encoding": t.user_attrs.get("encoding"),
                           "fit": "fit_of" in t.user_attrs,
                           "complete": t.datetime_complete.timestamp()})
    card_path = run.exports_dir / "best" / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else None
    winner = card["encoding"] if card else None
    if winner is None and trials:
        best = max((t for t in trials if t["encoding"]), key=lambda t: t["value"], default=None)
        winner = best["encoding"] if best else None
    return {"run": run.name, "config": config, "label": label, "rows": rows,
            "train_log": list(read_jsonl(run.train_log_path)), "trials": trials,
            "card": card, "winner": winner}


STYLE = {"svg.fonttype": "path", "figure.dpi": 100, "font.size": 9}  # within a report only


def _subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes drawn without pyplot: no backend chosen and no global state
    touched in the process that asked for a report (a notebook keeps its own)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _figures(data: dict[str, Any], run: Run) -> dict[str, Any]:
    """``{name: matplotlib Figure or str}``: a figure, or why there is none."""
    out: dict[str, Any] = {}
    by_id = {r["id"]: r for r in data["rows"]}
    screens = [t for t in data["trials"] if not t["fit"] and t["id"] in by_id]
    fits = [t for t in data["trials"] if t["fit"] and t["id"] in by_id]
    if screens or fits:
        fig, ax = _subplots((6, 4))
        for group, marker, name in ((screens, "o", "screened / refined"),
                                    (fits, "*", "finalists (longer training)")):
            if group:
                ax.scatter([by_id[t["id"]]["score"] for t in group], [t["value"] for t in group],
                           marker=marker, s=40 if marker == "o" else 120, label=name)
        rho = rank_correlation([by_id[t["id"]]["score"] for t in screens],
                               [t["value"] for t in screens])
        ax.set_xlabel(f"{data['label']} score (higher is better)")
        ax.set_ylabel("validation accuracy after training")
        ax.set_title("Spearman " + (f"{rho:.2f}" if rho is not None else "n/a (under 3 points)")
                     + f" over {len(screens)} trained candidates")
        ax.legend(loc="lower right")
        out["score-vs-accuracy"] = fig
    else:
        out["score-vs-accuracy"] = ("no candidate of the ranking was trained yet: run "
                                    f"hypernas refine {data['run']}")
    for cost, name in (("params", "score-vs-params"), ("macs", "score-vs-macs")):
        rows = [r for r in data["rows"] if r.get(cost)]
        if not rows:
            out[name] = f"no ranked candidate with {cost} yet: run hypernas rank {data['run']}"
            continue
        front = pareto_front(rows, cost)
        fig, ax = _subplots((6, 4))
        ax.scatter([r[cost] for r in rows], [r["score"] for r in rows], s=10, alpha=0.5,
                   color="grey", label=f"{len(rows)} ranked")
        ax.plot([r[cost] for r in front], [r["score"] for r in front], "-o", color="C3",
                markersize=4, label=f"Pareto front ({len(front)})")
        ax.set_xscale("log")
        ax.set_xlabel(cost)
        ax.set_ylabel(f"{data['label']} score")
        scores = sorted(r["score"] for r in rows)
        low = scores[len(scores) // 50]  # a few collapsed cells (a zero-output cell scores far
        span = scores[-1] - low          # below the rest) would flatten the front: clip them
        if len(scores) >= 50 and span > 0 and scores[0] < low - span:
            ax.set_ylim(low - 0.1 * span, scores[-1] + 0.1 * span)
            ax.set_title(f"{sum(v < low - 0.1 * span for v in scores)} far lower scores off "
                         "the bottom", fontsize=8)
        ax.legend(loc="lower right")
        out[name] = fig
    log = [r for r in data["train_log"] if "step" in r and r.get("loss") is not None]
    if log:
        fig, ax = _subplots((6, 4))
        ax.plot([r["step"] for r in log], [r["loss"] for r in log], color="C0", label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss", color="C0")
        acc = ax.twinx()
        acc.plot([r["step"] for r in log], [r.get("acc", math.nan) for r in log], color="C1")
        acc.set_ylabel("training accuracy", color="C1")
        out["hypernet-training"] = fig
    else:
        shipped = data["config"].get("pretrained")
        out["hypernet-training"] = (f"ranked with the shipped hypernetwork {shipped} (trained "
                                    "once, outside this run: hypernas pretrained)" if shipped
                                    else "the hypernetwork has no training log yet")
    if data["trials"]:
        t0 = min(t["complete"] for t in data["trials"])
        fig, ax = _subplots((6, 4))
        for fit, marker, name in ((False, "o", "screen / refinement"), (True, "*", "finalist")):
            group = [t for t in data["trials"] if t["fit"] == fit]
            if group:
                ax.scatter([(t["complete"] - t0) / 60 for t in group],
                           [t["value"] for t in group], marker=marker, label=name)
        ordered = sorted(data["trials"], key=lambda t: t["complete"])
        best, xs, ys = -math.inf, [], []
        for t in ordered:
            best = max(best, t["value"])
            xs.append((t["complete"] - t0) / 60)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C2", label="best so far")
        ax.set_xlabel("minutes since the first trial finished")
        ax.set_ylabel("validation accuracy")
        ax.legend(loc="lower right")
        out["trials-over-time"] = fig
    else:
        out["trials-over-time"] = f"no refinement trial yet: run hypernas refine {data['run']}"
    out["winner"] = _winner_figure(data, run)
    return out


def _winner_figure(data: dict[str, Any], run: Run) -> Any:
    if not data["winner"]:
        return "no winner yet: refine and export first (hypernas search does both)"
    import networkx as nx

    from .runs.summary import run_space

    graph = run_space(run).replay(data["winner"]).graph
    layers = [sorted(g, key=str) for g in nx.topological_generations(graph)]
    pos = {n: (i - (len(nodes) - 1) / 2, -depth)  # one row per generation, input at the top
           for depth, nodes in enumerate(layers) for i, n in enumerate(nodes)}
    width = max(4.0, min(14.0, 1.6 * max(len(g) for g in layers)))
    depth = len(layers)
    fig, ax = _subplots((width, max(3.0, min(24.0, 0.45 * depth))))
    level = {n: d for d, nodes in enumerate(layers) for n in nodes}
    near = [(u, v) for u, v in graph.edges if level[v] - level[u] == 1]
    far = [(u, v) for u, v in graph.edges if level[v] - level[u] > 1]  # skips: drawn as arcs
    nx.draw_networkx_edges(graph, pos, edgelist=near, ax=ax, arrows=True, arrowsize=8,
                           edge_color="#888", node_size=300)
    nx.draw_networkx_edges(graph, pos, edgelist=far, ax=ax, arrows=True, arrowsize=8,
                           edge_color="C1", node_size=300, connectionstyle="arc3,rad=0.5")
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=300, node_color="#cde")
    nx.draw_networkx_labels(graph, pos, {n: d["op"] for n, d in graph.nodes(data=True)}, ax=ax,
                            font_size=6)
    ax.set_title(data["winner"], fontsize=7)
    ax.axis("off")
    return fig


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


GENERATOR = '<meta name="generator" content="hypernas report">'  # marks a page as a report


def _check_out(out: Path, force: bool, default: bool) -> None:
    """A page is written over nothing, or over an earlier report (with ``force``, or at the
    run's own default path, which the search rewrites); never over anything else."""
    if not out.exists() and not out.is_symlink():
        return
    try:
        ours = out.is_file() and GENERATOR in out.read_text(errors="replace")[:2000]
    except OSError:
        ours = False
    if not ours:
        raise ReportError(f"{out} exists and is not a hypernas report; choose another --out")
    if not (force or default):
        raise ReportError(f"{out} exists (an earlier report); pass --force to replace it")


def write_report(run: Run, out: str | Path | None = None, png_dir: str | Path | None = None,
                 force: bool = False) -> Path:
    """Write the run's report (default ``runs/<name>/report.html``) and, with ``png_dir``, each
    figure as ``<name>.png``; returns the page's path. An existing ``out`` is replaced only if
    it is an earlier report and ``force`` is given (the default path: always, if a report)."""
    import matplotlib

    default = out is None
    out = Path(out) if out is not None else run.path / "report.html"
    _check_out(out, force, default)
    data = collect(run)
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    parts = []
    with matplotlib.rc_context(STYLE):  # drawn and saved in the report's style
        figures = _figures(data, run)
        for name in FIGURES:
            fig = figures[name]
            if isinstance(fig, str):
                body = f'<p class="empty">{html.escape(fig)}</p>'
            else:
                body = _svg(fig)
                if png_dir is not None:
                    fig.savefig(Path(png_dir) / f"{name}.png", bbox_inches="tight", dpi=120)
            parts.append(f'<figure class="plot" id="{name}" data-has-plot="'
                         f'{"no" if isinstance(fig, str) else "yes"}"><figcaption>'
                         f"{html.escape(TITLES[name])}</figcaption>{body}</figure>")
    cfg, card = data["config"], data["card"]
    hypernet = cfg.get("pretrained") or (cfg.get("hypernet") or {}).get("backbone")
    facts = [("space", cfg.get("space")), ("data", (cfg.get("data") or {}).get("name")),
             ("resolution", cfg.get("resolution")), ("hypernetwork", hypernet),
             ("ranked", len(data["rows"])), ("trials", len(data["trials"]))]
    if card:
        facts += [("winner", f"{card['id']} {card['encoding']}"),
                  ("test accuracy", f"{card['test_acc']:.4f} ± {card.get('test_acc_se', 0):.4f}"),
                  ("parameters", f"{card.get('params', 0):,}")]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts if v is not None)
    page = _PAGE.format(title=html.escape(f"hypernas run {run.name}"), facts=rows,
                        figures="\n".join(parts))
    write_text(out, page)
    return out


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="hypernas report"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 72rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; padding: .2rem .8rem; border-bottom: 1px solid #ddd; }}
figure.plot {{ display: inline-block; vertical-align: top; margin: 0 1rem 1.5rem 0; }}
figcaption {{ font-weight: bold; margin-bottom: .3rem; }}
figure.plot svg {{ max-width: 100%; height: auto; }}
p.empty {{ color: #777; font-style: italic; max-width: 30rem; }}
</style></head>
<body><h1>{title}</h1><table>{facts}</table>
{figures}
<script>
window.addEventListener("load", function () {{
  var figs = document.querySelectorAll("figure.plot");
  for (var i = 0; i < figs.length; i++) {{
    var svg = figs[i].querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : null;
    figs[i].setAttribute("data-rendered", box && box.width > 0 && box.height > 0 ? "yes" : "no");
  }}
  document.body.setAttribute("data-checked", String(figs.length));
}});
</script></body></html>
"""
