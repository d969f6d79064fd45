"""Racing over images (hypernas.ranking.racing): candidates that cannot reach the top k stop
early, the top k is always scored in full, and a stopped row says how sure its score is."""

from __future__ import annotations

import json
import math
import random

import pytest

from hypernas.cli import main
from hypernas.errors import HypernasError
from hypernas.ranking.racing import Race, RaceConfig, check_scoring
from hypernas.runs import Run

TINY = ["mlp", "--data", "digits", "--meta-batch", "2", "--batch-size", "8", "--dim", "8",
        "--samples", "2", "--set", "max_depth=2"]


def _race_synthetic(n: int, k: int, z: float, noise: float, seed: int = 0):
    """Stream ``n`` candidates with known full scores through a race whose two early rungs see
    the full score shifted by a fixed offset plus bounded noise; returns (full scores, rows)."""
    rng = random.Random(seed)
    race = Race(RaceConfig(top_k=k, z=z, min_calibration=20), n_rungs=3)
    fulls, rows = [], []
    for i in range(n):
        full = rng.gauss(0.0, 1.0)
        estimates = [full - 0.3 + rng.uniform(-noise, noise),
                     full - 0.1 + rng.uniform(-noise / 2, noise / 2), full]
        row = {"id": i, "images": 3, "full_images": 3, "rung_scores": [], "score": full}
        for rung in range(2):
            row["rung_scores"].append(estimates[rung])
            go_on, adjusted, se = race.judge(rung, estimates[rung])
            if not go_on:
                row.update(images=rung + 1, score=adjusted, score_se=se)
                break
        else:
            row["rung_scores"].append(full)
        race.observe(row)
        fulls.append(full)
        rows.append(row)
    return fulls, rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_racing_never_stops_a_candidate_whose_full_score_is_in_the_top_k(seed):
    # uniform noise of half-width 0.2 has a standard deviation of 0.115: z = 2.5 covers it
    fulls, rows = _race_synthetic(2000, k=20, z=2.5, noise=0.2, seed=seed)
    top = sorted(range(len(fulls)), key=lambda i: -fulls[i])[:20]
    assert all(rows[i]["images"] == 3 for i in top)
    stopped = [r for r in rows if r["images"] < 3]
    assert len(stopped) > 1500  # and most of the work is saved
    # the ranking's top k is the true top k, in the true order
    ranked = sorted(rows, key=lambda r: -r["score"])[:20]
    assert [r["id"] for r in ranked] == top
    # a stopped row's interval is wider at the first rung than at the second
    se = {rung: {round(r["score_se"], 9) for r in stopped if r["images"] == rung}
          for rung in (1, 2)}
    assert min(se[1]) > max(se[2]) > 0


def test_until_calibrated_every_candidate_is_scored_in_full():
    race = Race(RaceConfig(top_k=1, min_calibration=5), n_rungs=2)
    for i in range(4):
        assert race.judge(0, -100.0) == (True, -100.0, math.inf)
        race.observe({"score": float(i), "images": 2, "full_images": 2,
                      "rung_scores": [i - 1.0, float(i)]})
    race.observe({"score": 9.0, "images": 2, "full_images": 2, "rung_scores": [8.0, 9.0]})
    go_on, adjusted, se = race.judge(0, 0.0)
    assert not go_on and adjusted == 1.0 and se == 0.0     # offset learned: full = rung + 1
    assert race.judge(0, 8.0)[0]                          # 9.0 reaches the best (9.0)
    assert not race.judge(0, float("-inf"))[0]             # an overflowed loss reaches nothing
    again = Race.from_state(json.loads(json.dumps(race.state())))
    assert again.state() == race.state() and again.threshold == race.threshold == 9.0


def test_bad_racing_settings_and_modes_are_refused():
    with pytest.raises(HypernasError, match="--top-k must be at least 1"):
        RaceConfig(top_k=0)
    with pytest.raises(HypernasError, match="finite number"):
        RaceConfig(z=float("nan"))
    rows = [{"scorer": "hypernet", "scoring": "adaptive", "score": 1.0}]
    check_scoring(rows, "adaptive", "hypernet")
    with pytest.raises(HypernasError, match="rank with no --full"):
        check_scoring(rows, "full", "hypernet")
    with pytest.raises(HypernasError, match="rank with --full"):
        check_scoring([{"scorer": "hypernet", "score": 1.0}], "adaptive", "hypernet")


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNAS_RUNS", str(tmp_path))
    assert main(["train", *TINY, "--run", "t", "--steps", "3"]) == 0
    return Run("t", root=tmp_path)


def test_a_raced_ranking_stops_candidates_early_and_says_so(run, capsys):
    from hypernas.ranking.rank import rank_run
    from hypernas.ranking.run import load_run
    from hypernas.runs.rankings import ranking_rows

    loaded = load_run(run)
    cands = loaded.space.sample_many(60, seed=3)
    race = RaceConfig(top_k=3, min_calibration=8)
    raced = rank_run(loaded, cands, race=race)
    full = rank_run(loaded, cands, label="full")
    assert set(raced) == set(full) == {c.id for c in cands}
    rows = list(raced.values())
    assert all(r["scoring"] == "adaptive" for r in rows)
    whole = rows[0]["full_images"]
    stopped = [r for r in rows if r["images"] < whole]
    assert stopped and all(r["score_se"] > 0 for r in stopped)
    assert all(r["score_se"] == 0 and r["score"] == full[r["id"]]["score"]
               for r in rows if r["images"] == whole)   # a full row is the full score, exactly
    by_images = {}
    for r in stopped:
        by_images.setdefault(r["images"], set()).add(r["score_se"])
    widths = [max(by_images[n]) for n in sorted(by_images)]
    assert widths == sorted(widths, reverse=True)   # fewer images, wider
    # the raced top 3 is scored in full (whatever their order among themselves)
    top = sorted(rows, key=lambda r: -r["score"])[:3]
    assert all(r["images"] == whole for r in top)
    assert main(["show", "t", "--top", "60"]) == 0
    out = capsys.readouterr().out
    assert out.count("‡") == len(stopped) + 1 and f"({len(stopped)} rows" in out
    # going on with the other mode is refused, and the ranking is kept
    before = run.ranking_path("hypernet").read_text()
    with pytest.raises(HypernasError, match="was scored adaptive"):
        rank_run(loaded, loaded.space.sample_many(5, seed=9))
    assert run.ranking_path("hypernet").read_text() == before
    assert ranking_rows(run, "hypernet") == raced


def test_rank_top_k_beyond_the_candidates_is_one_line(run, capsys):
    assert main(["rank", "t", "--n", "5", "--top-k", "9"]) == 2
    err = capsys.readouterr().err
    assert "--top-k 9 is more than the 5 distinct candidates" in err and "Traceback" not in err
    assert not run.ranking_path("hypernet").exists()
    assert main(["rank", "t", "--n", "5", "--full", "--top-k", "3"]) == 2
    assert main(["rank", "t", "--n", "5", "--full", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(rows) == 5 and all(r["score_se"] == 0 and r["images"] == rows[0]["images"]
                                  for r in rows)
    assert main(["rank", "t", "--n", "5"]) == 2   # now adaptive into a full ranking
    assert "rank with --full to go on with it" in capsys.readouterr().err
