"""Ship a trained run's hypernetwork with the package: ``hypernas/ranking/shipped/NAME.*``.

The run must be trained to a step count (``hypernas train ... --steps N``), so the card's
command trains the same hypernetwork again. The card records five random cells' scores
(``space.sample_many(5, seed=0)``) on the first 500 evaluation images; the test suite scores
them again with the shipped weights.

With ``--member RUN`` (repeatable) more runs of the same setup trained with other seeds join
the first as one ensemble (``hypernas.hypernet.HyperNetEnsemble``); the card's command trains
every member and ships them. The card of a shipped hypernetwork holds its exact command.

Usage (one hypernetwork; about 80 minutes on one core):
    hypernas train nb201 --data fashion-mnist --set N=1 --resolution 16 --steps 10000 --seed 0 \\
        --run ship-nb201-fmnist16
    python scripts/ship_pretrained.py --run ship-nb201-fmnist16 --name nb201-fashion-mnist-16
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hypernas.ranking.pretrained import ship
from hypernas.ranking.run import load_run
from hypernas.runs.store import Run


def train_command(loaded) -> str:
    """The command that trains ``loaded``'s hypernetwork again from scratch."""
    cfg = loaded.config
    settings = " ".join(f"--set {k}={v}" for k, v in cfg.space_settings.items())
    t, h = cfg.train, cfg.hypernet
    data_seed = "" if cfg.data.seed == t.seed else f" --data-seed {cfg.data.seed}"
    return (f"hypernas train {cfg.space} --data {cfg.data.name} {settings} "
            f"--resolution {cfg.resolution} --steps {t.steps} --seed {t.seed}{data_seed} "
            f"--backbone {h.backbone} --dim {h.dim} --samples {h.samples} "
            f"--meta-batch {t.meta_batch} --large-draws {t.large_draws} "
            f"--batch-size {t.batch_size} --lr {t.lr} --run {loaded.run.name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the trained run")
    p.add_argument("--member", action="append", default=[], metavar="RUN",
                   help="another trained run of the same setup (another --seed): ship the runs "
                        "as one ensemble (repeatable)")
    p.add_argument("--name", required=True, help="shipped name, e.g. nb201-fashion-mnist-16")
    p.add_argument("--root", help="runs folder (default runs/)")
    args = p.parse_args(argv)
    loaded = load_run(Run(args.run, root=args.root))
    members = [load_run(Run(name, root=args.root)) for name in args.member]
    trains = " && ".join(train_command(run) for run in [loaded, *members])
    command = f"{trains} && python {' '.join(shlex.quote(a) for a in sys.argv)}"
    cells = [c.encoding for c in loaded.space.sample_many(5, seed=0)]
    print(ship(loaded, args.name, command, cells, members=members))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
