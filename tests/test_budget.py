"""Budgets: candidates drawn within parameter and MAC limits, and budgets that cannot be met."""

from __future__ import annotations

import pytest

from hypernas.graphs.network import count_macs, count_params
from hypernas.spaces import load_space
from hypernas.spaces.budget import Budget, BudgetError, cheapest, sample_within

SPACES = {
    "macro": dict(input_shape=(1, 16, 16), num_classes=10),
    "nb201": dict(input_shape=(1, 16, 16), N=1),
    "mlp": dict(input_shape=(1, 8, 8), max_depth=2),
}


def _costs(cands):
    return [(count_params(c.graph), count_macs(c.graph)) for c in cands]


@pytest.mark.parametrize("name, budget", [
    ("macro", Budget(max_params=30_000)),
    ("macro", Budget(max_params=40_000, max_macs=2_000_000)),
    ("nb201", Budget(max_params=90_000)),
    ("nb201", Budget(max_macs=2_000_000)),
    ("mlp", Budget(max_params=3_000)),
])
def test_every_candidate_drawn_fits_the_budget_and_the_draws_spread(name, budget):
    space = load_space(name, **SPACES[name])
    cands = sample_within(space, budget, 12, seed=0)
    assert len({c.id for c in cands}) == 12
    for params, macs in _costs(cands):
        assert params <= (budget.max_params or params) and macs <= (budget.max_macs or macs)
    # not a handful of minimal networks: the draws reach towards the limit
    limit, metric = next(iter(budget.limits.items())), 0 if budget.max_params else 1
    assert max(c[metric] for c in _costs(cands)) > 0.75 * limit[1]
    assert sample_within(space, budget, 12, seed=0) == cands  # seeded
    assert [c.encoding for c in sample_within(space, budget, 12, seed=1)] != [
        c.encoding for c in cands]


def test_a_tight_budget_finds_the_few_that_fit():
    space = load_space("macro", **SPACES["macro"])
    least = count_params(cheapest(space, "params").graph)
    uniform = [count_params(c.graph) for c in space.sample_many(300, seed=0)]
    limit = least + 4_000
    assert sum(p <= limit for p in uniform) <= 3  # rejection would need hundreds of draws
    cands = sample_within(space, Budget(max_params=limit), 5, seed=0)
    assert all(count_params(c.graph) <= limit for c in cands)


def test_a_budget_no_candidate_meets_is_refused_with_the_smallest_value():
    space = load_space("nb201", **SPACES["nb201"])
    least = count_params(cheapest(space, "params").graph)
    assert least <= min(count_params(c.graph) for c in space.sample_many(300, seed=0))
    assert least == count_params(space.replay("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
                                              ).graph)
    with pytest.raises(BudgetError, match=f"raise --max-params to at least {least:,}"):
        sample_within(space, Budget(max_params=least - 1), 3)
    assert len(sample_within(space, Budget(max_params=least), 1)) == 1
    with pytest.raises(BudgetError, match="--max-macs"):
        sample_within(space, Budget(max_macs=10), 3)


@pytest.mark.parametrize("value", [0, -5, 2.5, "many"])
def test_a_budget_must_be_a_positive_whole_number(value):
    with pytest.raises(BudgetError, match="--max-params must be a positive whole number"):
        Budget(max_params=value)


def test_no_budget_is_plain_sampling():
    space = load_space("mlp", **SPACES["mlp"])
    assert not Budget()
    assert sample_within(space, Budget(), 5, seed=3) == space.sample_many(5, seed=3)
    assert Budget(max_params=10, max_macs=20).describe() == "params <= 10, macs <= 20"


# ------------------------------------------------------------------ the commands, on a tiny space

from hypernas.cli import main  # noqa: E402
from hypernas.runs import Run  # noqa: E402

TINY = ["mlp", "--data", "digits", "--set", "max_depth=2"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", *TINY, "--meta-batch", "2", "--batch-size", "8", "--dim", "8",
                 "--samples", "2", "--run", "t", "--steps", "2"]) == 0
    return tmp_path


def test_rank_draws_within_the_budget_and_skips_arch_lines_over_it(runs, capsys):
    import json

    assert main(["rank", "t", "--n", "8", "--max-params", "4000", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8 and all(r["params"] <= 4000 for r in rows)
    space = load_space("mlp", input_shape=(1, 8, 8), num_classes=10, max_depth=2)
    small, large = sorted(space.sample_many(40, seed=5), key=lambda c: count_params(c.graph))[::39]
    archs = runs / "archs.txt"
    archs.write_text(f"{small.encoding}\n{large.encoding}\n")
    limit = count_params(small.graph)
    assert main(["rank", "t", "--archs", str(archs), "--max-params", str(limit), "--json"]) == 1
    out = capsys.readouterr()
    assert [json.loads(line)["id"] for line in out.out.splitlines()] == [small.id]
    assert f"archs.txt:2: skipped: over the budget (params <= {limit:,})" in out.err


@pytest.mark.parametrize("argv, words", [
    (["rank", "t", "--max-params", "0"], "--max-params must be a positive whole number"),
    (["rank", "t", "--max-macs", "-3"], "--max-macs must be a positive whole number"),
    (["rank", "t", "--max-params", "1000"], "raise --max-params to at least 2,"),
    (["refine", "t", "--max-params", "0"], "--max-params must be a positive whole number"),
    (["search", *TINY, "--max-params", "1000", "--run", "s"], "raise --max-params to at least"),
])
def test_a_bad_budget_is_one_line_naming_the_fix(runs, argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (runs / "s" / "checkpoints").exists()  # refused before any training


def test_refine_keeps_to_the_ranked_candidates_within_the_budget(runs, capsys):
    import json

    assert main(["rank", "t", "--n", "10", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    limit = sorted(r["params"] for r in rows)[4]
    assert main(["refine", "t", "--top", "3", "--trials", "4", "--max-epochs", "1",
                 "--mutations", "2", "--max-params", str(limit)]) == 0
    from hypernas.refine.study import open_study

    trials = open_study(Run("t"), create=False).trials
    assert len(trials) >= 4 and all(t.user_attrs["params"] <= limit for t in trials)
    assert main(["refine", "t", "--max-params", "2500"]) == 2
    assert "no ranked candidate of run t fits params <= 2,500" in capsys.readouterr().err


def test_a_search_under_a_budget_exports_a_winner_within_it(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["search", *TINY, "--budget", "0.05", "--n", "6", "--top", "2",
                 "--format", "safetensors", "--run", "s", "--max-params", "4000"]) == 0
    assert "ranking 6 candidates within params <= 4,000 by the hypernet and naswot" in (
        capsys.readouterr().out)
    card = json.loads((Run("s").exports_dir / "best" / "model_card.json").read_text())
    assert card["budget"] == {"max_params": 4000, "max_macs": None}
    pareto = card["pareto"]
    assert pareto["x"] == "params" and pareto["of"] == 6 and 1 <= pareto["front"] <= 6
    assert (pareto["place"] is None) == (pareto["beaten_by"] > 0)
    space = load_space("mlp", input_shape=(1, 8, 8), num_classes=10, max_depth=2)
    assert count_params(space.replay(card["encoding"]).graph) <= 4000
    # show keeps the 2-epoch screens and the finalists' 5-epoch trainings in their own columns
    capsys.readouterr()
    assert main(["show", "s", "--json"]) == 0
    rows = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    winner = rows[card["id"]]
    assert winner["finalist_val_acc"] == card["val_acc"] and winner["finalist_epochs"] == 5
    assert winner["refined_epochs"] == 2 and "refined_val_acc" in winner


# ------------------------------------------------------------------ the Pareto front


def _dominated(row, rows, cost):
    return any(o[cost] <= row[cost] and o["score"] >= row["score"]
               and (o[cost] < row[cost] or o["score"] > row["score"]) for o in rows)


@pytest.mark.parametrize("seed", range(5))
def test_the_pareto_front_is_exactly_the_non_dominated_rows(seed):
    import random

    from hypernas.runs.rankings import pareto_front

    rng = random.Random(seed)
    # few distinct costs and scores, so ties in either are common
    rows = [{"id": f"c{i}", "params": rng.choice([10, 20, 30, 40, 50]),
             "macs": rng.randrange(100), "score": rng.choice([-0.5, -0.4, -0.3, -0.2])}
            for i in range(40)]
    for cost in ("params", "macs"):
        front = pareto_front(rows, cost)
        brute = {r["id"] for r in rows if not _dominated(r, rows, cost)}
        # rows equal in both cost and score: one stands for all of them
        assert {(r[cost], r["score"]) for r in front} == {
            (r[cost], r["score"]) for r in rows if r["id"] in brute}
        assert len(front) == len({(r[cost], r["score"]) for r in front})
        assert [r[cost] for r in front] == sorted(r[cost] for r in front)
        assert [r["score"] for r in front] == sorted(r["score"] for r in front)


def test_show_pareto_prints_the_front_and_a_plot_and_json_marks_it(runs, capsys):
    import json

    assert main(["rank", "t", "--n", "12", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["show", "t", "--pareto", "--json"]) == 0
    front = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"] for r in front} == {r["id"] for r in rows if not _dominated(r, rows, "params")}
    assert [r["pareto"]["place"] for r in front] == list(range(1, len(front) + 1))
    assert all(r["pareto"]["x"] == "params" and r["pareto"]["of"] == len(front) for r in front)
    assert main(["show", "t", "--pareto", "--x", "macs"]) == 0
    out = capsys.readouterr().out
    assert "no other beats on both" in out and "●" in out and "macs" in out
    assert main(["show", "t", "--pareto", "--max-params", "10"]) == 2
    assert "no ranked candidate to put on a Pareto front within the filters" in (
        capsys.readouterr().err)


def test_a_search_can_screen_in_the_combined_order(tmp_path, monkeypatch, capsys):
    from hypernas.refine.study import open_study
    from hypernas.runs.rankings import ranked_rows

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["search", *TINY, "--budget", "0.05", "--n", "6", "--top", "2",
                 "--format", "safetensors", "--run", "c", "--combine", "naswot"]) == 0
    combined = ranked_rows(Run("c"), "combined")
    assert len(combined) == 6 and len(ranked_rows(Run("c"), "naswot")) == 6
    screens = [t for t in open_study(Run("c"), create=False).trials
               if "fit_of" not in t.user_attrs]
    assert screens[0].user_attrs["id"] == combined[0]["id"]  # the first screen: combined's best


# ------------------------------------------------------------------ latency


def test_latency_is_measured_once_per_candidate_and_kept_in_the_file(tmp_path, monkeypatch):
    import json

    from hypernas.graphs import latency

    space = load_space("mlp", **SPACES["mlp"])
    cands = space.sample_many(3, seed=0)
    path = tmp_path / "latency.jsonl"
    meter = latency.LatencyMeter(path=path, repeats=5)
    first = [meter.ms(c.graph) for c in cands]
    assert all(ms > 0 for ms in first)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == [c.id for c in cands]
    assert {(r["runtime"], r["repeats"]) for r in rows} == {("torch", 5)}
    assert all(r["iqr_ms"] >= 0 for r in rows)
    with path.open("a") as fh:
        fh.write('{"id": "torn')  # a process killed mid-write

    def never(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(latency, "measure_latency", never)
    again = latency.LatencyMeter(path=path, repeats=5)  # another process, the same run
    assert [again.ms(c.graph) for c in cands] == first
    monkeypatch.undo()
    new = space.sample_many(4, seed=1)[-1]
    again.ms(new.graph)  # appended on a line of its own, after the torn one
    assert json.loads(path.read_text().splitlines()[-1])["id"] == new.id
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # the application's setting, recorded with each row
    try:
        other = latency.LatencyMeter(path=path, repeats=5)  # another thread count: not reused
    finally:
        torch.set_num_threads(threads)
    assert other._rows == {}


def test_drawing_within_a_latency_limit_yields_only_candidates_measured_within_it():
    from hypernas.graphs.latency import LatencyMeter

    space = load_space("macro", **SPACES["macro"])
    meter = LatencyMeter(repeats=5)
    uniform = sorted(meter.ms(c.graph) for c in space.sample_many(12, seed=3))
    fastest = meter.ms(cheapest(space, "latency", meter).graph)
    # about half the space is over the median; timings on a shared machine swing, so never
    # less than twice the fastest candidate's own measurement
    limit = max(uniform[len(uniform) // 2], 2 * fastest)
    budget = Budget(max_latency_ms=limit)
    cands = sample_within(space, budget, 6, seed=0, meter=meter)
    assert len({c.id for c in cands}) == 6
    assert all(meter.ms(c.graph) <= limit for c in cands)  # as measured, not estimated
    assert budget.fits(cands[0].graph, meter) and "latency <= " in budget.describe()
    with pytest.raises(BudgetError, match=r"fits --max-latency-ms .*: the smallest has .* ms "
                                          r"\(torch, batch 1, on this machine\); raise "
                                          "--max-latency-ms to at least"):
        sample_within(space, Budget(max_latency_ms=fastest / 50), 2, meter=meter)


def test_latency_in_onnxruntime_is_measured_or_refused_with_the_extra_to_install(monkeypatch):
    import importlib.util

    from hypernas.graphs import latency

    graph = load_space("mlp", **SPACES["mlp"]).sample_many(1, seed=0)[0].graph
    if importlib.util.find_spec("onnxruntime") is not None:
        row = latency.measure_latency(graph, "onnxruntime", repeats=5)
        assert row["runtime"] == "onnxruntime" and row["ms"] > 0
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(latency.LatencyError, match=r"pip install 'hypernas\[export\]', or "
                                                   "measure with --latency-runtime torch"):
        Budget(max_latency_ms=1.0, latency_runtime="onnxruntime")
    Budget(max_params=10, latency_runtime="onnxruntime")  # no latency limit: nothing to measure


@pytest.mark.parametrize("argv, words", [
    (["rank", "t", "--max-latency-ms", "0"], "--max-latency-ms must be a positive number"),
    (["rank", "t", "--max-latency-ms", "nan"], "--max-latency-ms must be a positive number"),
    (["rank", "t", "--max-latency-ms", "-2"], "--max-latency-ms must be a positive number"),
    (["rank", "t", "--max-latency-ms", "0.00001"], "raise --max-latency-ms to at least"),
    (["refine", "t", "--max-latency-ms", "inf"], "--max-latency-ms must be a positive number"),
    (["show", "t", "--pareto", "--x", "latency"], "has no ranking yet; make one: hypernas rank t"),
])
def test_a_bad_latency_limit_is_one_line_naming_the_fix(runs, argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_rank_refine_and_show_keep_to_a_latency_limit(runs, capsys):
    import json

    from hypernas.graphs.latency import LatencyMeter

    assert main(["rank", "t", "--n", "10", "--json"]) == 0
    capsys.readouterr()
    assert main(["show", "t", "--pareto", "--x", "latency", "--json"]) == 0
    front = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert front and all(r["pareto"]["x"] == "latency_ms" for r in front)
    assert [r["latency_ms"] for r in front] == sorted(r["latency_ms"] for r in front)
    run = Run("t")
    measured = {json.loads(line)["id"]: json.loads(line)["ms"]
                for line in run.latency_path.read_text().splitlines()}
    assert len(measured) == 10  # every ranked candidate, once, kept in the run
    limit = sorted(measured.values())[7]  # margin for timing noise on a loaded machine
    assert main(["refine", "t", "--top", "2", "--trials", "2", "--max-epochs", "1",
                 "--mutations", "0", "--max-latency-ms", str(limit)]) == 0
    from hypernas.refine.study import open_study

    trials = open_study(run, create=False).trials
    assert trials and all(measured[t.user_attrs["id"]] <= limit for t in trials)
    assert len(run.latency_path.read_text().splitlines()) == 10  # nothing measured twice
    capsys.readouterr()
    assert main(["rank", "t", "--n", "3", "--seed", "7", "--ranking", "fast", "--json",
                 "--max-latency-ms", str(limit)]) == 0
    meter = LatencyMeter(path=run.latency_path)
    assert all(meter._rows[json.loads(line)["id"]]["ms"] <= limit
               for line in capsys.readouterr().out.splitlines())
