"""The fuzz campaign: every target of ``tests/test_fuzz.py`` with many examples, and its figures.

Runs the fuzz tests with ``HYPERNAS_FUZZ_EXAMPLES=N`` (random, not derandomized) and hypothesis's
statistics, and writes per target the inputs tried and the failures that were not a clean
``HypernasError`` (each such failure fails its test) to ``results/fuzz.json``.

Usage:
    python benchmarks/fuzz.py --examples 2000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "fuzz.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=2000)
    args = p.parse_args(argv)
    env = {**os.environ, "HYPERNAS_FUZZ_EXAMPLES": str(args.examples)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_fuzz.py", "--hypothesis-show-statistics", "-rA"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    targets: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"tests/test_fuzz\.py::(\w+):", line.strip())
        if head:
            current = targets.setdefault(head.group(1), {"tried": 0, "failed": 0})
            continue
        counts = re.search(r"(\d+) passing, (\d+) failing, and (\d+) invalid", line)
        if counts and current is not None:
            current["tried"] += sum(int(x) for x in counts.groups())
            current["failed"] += int(counts.group(2))
    for line in text.splitlines():
        failed = re.match(r"FAILED tests/test_fuzz\.py::(\w+)", line)
        if failed:
            targets.setdefault(failed.group(1), {"tried": 0, "failed": 0})["test_failed"] = True
    result = {"command": " ".join(["python", *sys.argv]), "examples": args.examples,
              "exit_status": proc.returncode, "targets": targets}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for name, t in sorted(targets.items()):
        print(f"{name:60s} tried {t['tried']:6d}  unclean failures {t['failed']}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
