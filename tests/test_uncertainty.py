"""Calibrated accuracy intervals and rank uncertainty (hypernas.ranking.uncertainty)."""

from __future__ import annotations

import json
import random
import re
import statistics
from pathlib import Path

import pytest

from hypernas.errors import HypernasError
from hypernas.ranking.uncertainty import (
    Calibration,
    annotate,
    check_level,
    expected_rank_error,
    fit_calibration,
)

RESULTS = Path(__file__).parent.parent / "benchmarks" / "results"


def synthetic(n: int, seed: int) -> tuple[list[dict[str, float]], list[float]]:
    """Candidates whose accuracy is a line in a hidden quality plus noise; the hypernet and a
    proxy each see the quality with their own noise (so they disagree where they misjudge)."""
    rng = random.Random(seed)
    scores, accs = [], []
    for _ in range(n):
        q = rng.gauss(0, 1)
        h, p = q + rng.gauss(0, 0.5), q + rng.gauss(0, 0.5)
        scores.append({"hypernet": -1 + 0.1 * h, "naswot": 500 + 20 * p})
        accs.append(0.85 + 0.01 * q + rng.gauss(0, 0.002))
    return scores, accs


def test_fresh_candidates_fall_inside_their_interval_at_about_the_nominal_rate():
    fit_scores, fit_accs = synthetic(200, seed=0)
    cal = fit_calibration(fit_scores, fit_accs)
    assert cal.lines["hypernet"][1] > 0 and cal.lines["naswot"][1] > 0  # higher score, better
    scores, accs = synthetic(2000, seed=1)
    for level in (0.5, 0.8, 0.95):
        inside = [lo <= a <= hi for s, a in zip(scores, accs)
                  for _, lo, hi in [cal.interval(s, level)]]
        assert abs(statistics.fmean(inside) - level) < 0.05, level


def test_candidates_the_scorers_disagree_on_get_wider_intervals():
    scores, accs = synthetic(100, seed=2)
    cal = fit_calibration(scores, accs)
    agree = {"hypernet": -1.0, "naswot": 500.0}  # both say: the average candidate
    disagree = {"hypernet": -0.9, "naswot": 480.0}  # one says +1 sd, the other -1 sd
    width = [hi - lo for _, lo, hi in (cal.interval(agree), cal.interval(disagree))]
    assert width[1] > 1.5 * width[0]
    # without the proxy, the width is the constant floor's, from its own residuals
    mean, u, used = cal.predict({"hypernet": -0.9})
    assert used == "hypernet" and u == pytest.approx(cal.floor)


def test_the_places_an_interval_allows_and_the_ties_with_the_first():
    cal = Calibration(scorers=("hypernet",), lines={"hypernet": (0.0, 1.0)}, floor=0.01,
                      residuals={"hypernet": (1.0,) * 9})  # every interval: mean +- 0.01
    ann = annotate({"a": {"hypernet": 0.900}, "b": {"hypernet": 0.895},
                    "c": {"hypernet": 0.886}, "d": {"hypernet": 0.850}}, cal, 0.8)
    assert ann["a"]["rank_range"] == [1, 2]  # b is inside a's interval, c is below it
    assert ann["b"]["rank_range"] == [1, 3]
    assert ann["c"]["rank_range"] == [2, 3]  # a is above its upper end (0.896)
    assert ann["d"]["rank_range"] == [4, 4]
    # c's upper end reaches a's lower end (0.89): not told apart from the first; d's does not
    assert [ann[i]["ties_first"] for i in "abcd"] == [True, True, True, False]
    assert ann["a"]["interval"] == pytest.approx([0.89, 0.91])
    assert ann["a"]["uncertainty"] == 1 and ann["d"]["uncertainty"] == 0


def test_expected_rank_error_follows_where_a_ranking_can_go_wrong():
    means = {str(i): 0.8 + i / 100 for i in range(21)}
    sharp = expected_rank_error(means, {i: 1e-6 for i in means})
    assert max(sharp.values()) == 0  # predictions far apart: nothing can swap
    flat = expected_rank_error(means, {i: 1.0 for i in means})  # the ranking knows nothing
    # uniform true ranks: about n/2 places off at either end, n/4 in the middle
    assert flat["0"] > 1.6 * flat["10"] and flat["20"] > 1.6 * flat["10"]
    dense = {**means, **{f"m{i}": 0.9 + i / 1e4 for i in range(5)}}  # a crowd at one point
    middle = expected_rank_error(dense, {i: 0.002 for i in dense})
    assert middle["m2"] > 1 and middle["0"] < 0.1  # inside the crowd, not far from it
    assert expected_rank_error(means, {i: 1.0 for i in means}) == flat  # seeded


@pytest.mark.parametrize("level", [0, 1, -0.2, 1.5, True, "0.8"])
def test_an_interval_level_outside_zero_one_is_refused(level):
    with pytest.raises(HypernasError, match=r"strictly between 0 and 1"):
        check_level(level)


def test_a_calibration_refuses_too_few_candidates_and_percentages():
    scores, accs = synthetic(20, seed=3)
    with pytest.raises(HypernasError, match=r"at least 10 trained candidates.*got 9"):
        fit_calibration(scores[:9], accs[:9])
    with pytest.raises(HypernasError, match=r"divide percentages by 100"):
        fit_calibration(scores, [100 * a for a in accs])
    with pytest.raises(HypernasError, match=r"20 score rows but 19"):
        fit_calibration(scores, accs[:19])


def test_a_calibration_round_trips_and_refuses_what_is_not_one():
    cal = fit_calibration(*synthetic(30, seed=4), recipe="r", source="s")
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    with pytest.raises(HypernasError, match=r"not a hypernas calibration"):
        Calibration.from_dict({"scorers": ["hypernet"]})


def test_the_shipped_calibration_is_refit_exactly_from_the_committed_rows():
    """The figures in the shipped card come from the design half of the first truth and the
    shipped hypernetwork's committed scores (benchmarks/uncertainty_calibration.py --ship)."""
    from hypernas.ranking.pretrained import get_pretrained

    card = get_pretrained("nb201-fashion-mnist-16").card["calibration"]
    cells = json.loads((RESULTS / "fmnist_truth_cells.json").read_text())
    accs: dict[str, list[float]] = {}
    for line in (RESULTS / "fmnist_truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["seed"] in (0, 1, 2):
            accs.setdefault(row["code"], []).append(row["test_acc"])
    label = re.search(r"truth_scores/([\w-]+)\.jsonl", card["source"]).group(1)
    assert label == "shipped-ensemble"  # the rows the shipped ensemble scored
    scores = {r["code"]: r["scores"] for r in map(json.loads, (
        RESULTS / "truth_scores" / f"{label}.jsonl").read_text().splitlines())}
    design = [c for c in cells if c in accs][0::2]
    cal = fit_calibration([scores[c] for c in design], [statistics.fmean(accs[c]) for c in design])
    assert cal.n == card["n"] == 50
    assert cal.lines["hypernet"] == pytest.approx(card["lines"]["hypernet"])
    assert cal.residuals["hypernet+naswot"] == pytest.approx(card["residuals"]["hypernet+naswot"])


@pytest.fixture
def ranked_run(tmp_path, monkeypatch, capsys):
    """A tiny run ranked by the hypernet and naswot, and a truth file for its candidates whose
    accuracy follows the hypernet's score."""
    from hypernas.cli import main
    from hypernas.runs.rankings import ranking_rows
    from hypernas.runs.store import Run

    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", "mlp", "--data", "digits", "--set", "max_depth=2", "--steps", "2",
                 "--dim", "8", "--samples", "2", "--run", "t"]) == 0
    assert main(["rank", "t", "--n", "16", "--combine", "naswot"]) == 0
    capsys.readouterr()
    rows = ranking_rows(Run("t"), "hypernet")
    rng = random.Random(0)
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"id": i, "accuracy": 0.9 + 0.05 * r["score"]
                                         + rng.gauss(0, 0.003)}) + "\n"
                             for i, r in rows.items()))
    return tmp_path, truth


def test_calibrate_then_show_prints_intervals_and_json_carries_them(ranked_run, capsys):
    from hypernas.cli import main

    root, truth = ranked_run
    assert main(["calibrate", "t", "--truth", str(truth), "--recipe", "a made-up recipe"]) == 0
    out = capsys.readouterr().out
    assert "calibrated run t on 16 trained candidates, from hypernet and naswot" in out
    assert (root / "t" / "calibration.json").exists()
    assert main(["show", "t", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "80 % interval" in out and "a made-up recipe" in out and "≈" in out
    assert main(["show", "t", "--json", "--level", "0.5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 16 and all(r["level"] == 0.5 for r in rows)
    for r in rows:
        lo, hi = r["interval"]
        assert lo <= r["predicted_acc"] <= hi and 1 <= r["rank_range"][0] <= r["rank_range"][1]
    assert main(["show", "t", "--level", "1.5"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_calibrate_without_enough_trained_candidates_names_the_fix(ranked_run, capsys):
    from hypernas.cli import main

    root, truth = ranked_run
    assert main(["calibrate", "t"]) == 2
    assert "refine more (hypernas refine t --trials 10) or give --truth FILE" in \
        capsys.readouterr().err
    few = root / "few.jsonl"
    few.write_text("".join(truth.read_text().splitlines(keepends=True)[:5]))
    assert main(["calibrate", "t", "--truth", str(few)]) == 2
    assert "at least 10 trained candidates" in capsys.readouterr().err
    assert main(["calibrate", "t", "--truth", str(root / "nope.jsonl")]) == 2
    assert "no truth file" in capsys.readouterr().err


def test_the_search_screens_by_the_upper_end_where_the_run_is_calibrated(ranked_run):
    from hypernas.ranking.uncertainty import UCB, save_calibration, write_ucb
    from hypernas.runs.rankings import ranked_rows, ranking_rows
    from hypernas.runs.store import Run
    from hypernas.search.config import SearchConfig
    from hypernas.search.pipeline import screen_label

    root, truth = ranked_run
    run = Run("t")
    assert write_ucb(run) is None and not run.ranking_path(UCB).exists()  # not calibrated
    assert screen_label(run, SearchConfig()) == "combined"
    rows = ranking_rows(run, "hypernet")
    accs = {json.loads(line)["id"]: json.loads(line)["accuracy"]
            for line in truth.read_text().splitlines()}
    save_calibration(run, fit_calibration([{"hypernet": rows[i]["score"]} for i in accs],
                                          list(accs.values()), scorers=("hypernet",)))
    ucb = write_ucb(run)
    assert set(ucb) == set(rows)
    assert [r["id"] for r in ranked_rows(run, UCB)] == sorted(
        ucb, key=lambda i: (-ucb[i]["interval"][1], i))
    assert screen_label(run, SearchConfig()) == UCB
    assert screen_label(run, SearchConfig(screen_rule="rank")) == "combined"
    with pytest.raises(HypernasError, match=r"--screen-by must be one of ucb, rank"):
        SearchConfig(screen_rule="best")


def test_an_estimate_from_fewer_images_gets_a_wider_interval():
    """A raced candidate's score is an estimate with a standard error (larger after fewer
    images): its interval widens by what that error moves the prediction."""
    cal = fit_calibration(*synthetic(100, seed=5))
    scores = {"hypernet": -1.0, "naswot": 500.0}
    widths = [hi - lo for se in (0.0, 0.01, 0.05)
              for _, lo, hi in [cal.interval(scores, 0.8, {"hypernet": se})]]
    assert widths[0] < widths[1] < widths[2]
    ann = annotate({"full": scores, "raced": scores}, cal, 0.8, {"raced": {"hypernet": 0.05}})
    assert ann["raced"]["predicted_acc"] == ann["full"]["predicted_acc"]
    assert ann["raced"]["interval"][0] < ann["full"]["interval"][0]


def test_show_marks_follow_the_intervals_in_the_table_and_on_the_pareto_front(ranked_run,
                                                                              capsys):
    from hypernas.cli import main
    from hypernas.ranking.uncertainty import run_uncertainty
    from hypernas.runs.store import Run

    root, truth = ranked_run
    assert main(["calibrate", "t", "--truth", str(truth)]) == 0
    capsys.readouterr()
    _, ann = run_uncertainty(Run("t"))
    assert main(["show", "t", "--json"]) == 0
    shown = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {i: r["ties_first"] for i, r in shown.items()} == \
        {i: a["ties_first"] for i, a in ann.items()}
    assert main(["show", "t", "--pareto"]) == 0
    out = capsys.readouterr().out
    assert "80 % interval" in out and "cannot be told apart" in out
