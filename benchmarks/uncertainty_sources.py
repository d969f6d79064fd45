"""Which uncertainty flags the candidates a hypernetwork misjudges? (issue #18, first measurement)

For each truth set and each hypernetwork training scored on it, the absolute rank error of every
candidate (|rank by the hypernetwork - rank by the truth|) is compared, by Spearman, with
candidate uncertainties that need no truth:

- ``spread``: today's spread, the standard deviation of the loss over the weight samples;
- ``members``: the standard deviation of the candidate's rank under the independent trainings
  scored on the same truth (a deep-ensemble style disagreement; it needs those trainings);
- ``naswot``: |rank by the hypernetwork - rank by naswot| (disagreement with a zero-cost proxy
  computed anyway by the search's combined ranking);
- ``middle``: how far the candidate's rank is from both ends of the ranking (min(rank, n - rank)):
  a candidate in the middle can be misplaced further; any useful uncertainty must add to it;
- ``members+naswot``: the rank average of ``members`` and ``naswot``.

Inputs are the committed score rows (``results/truth_scores/*.jsonl`` for the NB201
Fashion-MNIST truths, ``results/macro_scores/*.jsonl`` for the macro truth); the target of the
issue is a Spearman of at least 0.3 between uncertainty and absolute rank error. Each figure is
given on the whole set and on its design / report halves (even / odd positions in the first
training's score file, the order its candidates were scored in). Output: ``results/uncertainty_sources.json``.

Usage:
    python benchmarks/uncertainty_sources.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from scipy.stats import rankdata, spearmanr

RESULTS = Path(__file__).parent / "results"
SETS = {
    "nb201-short": (["default-seed0", "default-seed1", "shipped-10k"], "truth_scores",
                    ["fmnist_truth.jsonl"]),
    "nb201-long": (["default-seed0", "default-seed1", "shipped-10k"], "truth_scores",
                   ["fmnist_truth_long.jsonl"]),
    "macro": (["macro-s0", "macro-s1"], "macro_scores", ["macro_truth.jsonl"]),
}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truth(files: list[str]) -> dict[str, float]:
    accs: dict[str, list[float]] = {}
    for name in files:
        for row in _jsonl(RESULTS / name):
            accs.setdefault(row["code"], []).append(row["test_acc"])
    return {code: statistics.fmean(v) for code, v in accs.items()}


def ranks(values: list[float]) -> list[float]:
    return list(rankdata([-v for v in values]))


def measure(codes: list[str], members: dict[str, dict], main: str, acc: dict[str, float]
            ) -> dict[str, float]:
    n = len(codes)
    mine = ranks([members[main][c]["scores"]["hypernet"] for c in codes])
    error = [abs(a - b) for a, b in zip(mine, ranks([acc[c] for c in codes]))]
    by_member = [ranks([m[c]["scores"]["hypernet"] for c in codes]) for m in members.values()]
    nas = ranks([members[main][c]["scores"]["naswot"] for c in codes])
    sources = {
        "spread": [members[main][c]["hypernet_spread"] for c in codes],
        "members": [statistics.pstdev(r[i] for r in by_member) for i in range(n)],
        "naswot": [abs(a - b) for a, b in zip(mine, nas)],
        "middle": [min(r, n + 1 - r) for r in mine],
    }
    sources["members+naswot"] = [(a + b) / 2 for a, b in zip(rankdata(sources["members"]),
                                                             rankdata(sources["naswot"]))]
    return {name: spearmanr(u, error).statistic for name, u in sources.items()}


def main() -> int:
    out = {}
    for name, (labels, folder, truth_files) in SETS.items():
        members = {label: {r["code"]: r for r in _jsonl(RESULTS / folder / f"{label}.jsonl")}
                   for label in labels}
        acc = truth(truth_files)
        codes = [c for c in members[labels[0]] if c in acc and all(c in m for m in members.values())]
        out[name] = {}
        for main_label in labels:
            out[name][main_label] = {
                half: measure(part, members, main_label, acc)
                for half, part in (("all", codes), ("design", codes[0::2]), ("report", codes[1::2]))}
            line = "  ".join(f"{k} {v:+.2f}" for k, v in out[name][main_label]["all"].items())
            print(f"{name:12s} {main_label:14s} n={len(codes):3d}  {line}")
    (RESULTS / "uncertainty_sources.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
