"""The argument parser of every ``hypernas`` command: its flags, help texts and handlers."""

from __future__ import annotations

import argparse

from ._common import _add_budget_args, _add_runtime_arg, _add_space_args, _add_trust_arg
from .calibrate import cmd_calibrate, cmd_probe
from .dashboard import cmd_dashboard
from .rank import cmd_rank, cmd_train
from .search import cmd_export, cmd_refine, cmd_search
from .show import cmd_report, cmd_runs, cmd_show
from .spaces import cmd_datasets, cmd_pretrained, cmd_sample, cmd_show_arch, cmd_spaces

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``hypernas`` command."""
    parser = argparse.ArgumentParser(
        prog="hypernas", description="Hypernetwork-driven neural architecture search.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("spaces", help="list search spaces and their sizes",
                       description="List the search spaces and their sizes.")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="sample random candidates of a space",
                       description="Sample random candidates of a search space.")
    _add_space_args(p)
    p.add_argument("--n", type=int, default=10, help="number of candidates (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: {"encoding", "id", "graph"}')
    p.add_argument("--allow-duplicates", action="store_true",
                   help="keep candidates whose canonical id was already drawn")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("show-arch", help="show one architecture as a tree",
                       description="Show the architecture an encoding describes, as a tree with "
                                   "shapes and parameter counts.")
    _add_space_args(p)
    p.add_argument("encoding", help="the candidate's encoding (NB201: arch string or 6-digit code)")
    p.add_argument("--json", action="store_true", help="print the candidate as one JSON object")
    p.add_argument("--save", metavar="FILE", help="also write the graph as node-link JSON")
    p.set_defaults(func=cmd_show_arch)

    p = sub.add_parser("train", help="train a hypernetwork over a search space",
                       description="Train a graph hypernetwork over a search space; resumes "
                                   "from runs/RUN's last checkpoint when re-run.")
    p.add_argument("space", help="search space name or path to a .py file")
    p.add_argument("--run", required=True, help="run name: everything goes to runs/RUN/")
    p.add_argument("--data", default="fashion-mnist",
                   help="dataset name, or the path of your own .npz file (default fashion-mnist)")
    p.add_argument("--budget", type=float, help="wall-clock minutes (default 30)")
    p.add_argument("--steps", type=int, help="optimisation steps instead of a time budget")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="space setting (repeatable)")
    p.add_argument("--resolution", type=int, help="resize square images to this side")
    p.add_argument("--backbone", default="gated_gnn",
                   help="gated_gnn | graph_transformer | graph_free (default gated_gnn)")
    p.add_argument("--dim", type=int, default=64, help="node embedding width (default 64)")
    p.add_argument("--samples", type=int, default=4, help="weight samples (ensemble heads) (4)")
    p.add_argument("--meta-batch", type=int, default=8, help="architectures per step (8)")
    p.add_argument("--large-draws", type=int, default=3,
                   help="half of each meta-batch is the largest of this many random draws, so "
                        "large candidates get their share of training (3; 1 = uniform)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--data-seed", type=int,
                   help="seed of the training/validation split (default: --seed); hold it while "
                        "changing --seed to train another member of an ensemble on the same images")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small ops run steadier single-threaded)")
    p.add_argument("--pretrained", action="store_true",
                   help="start the run from the hypernetwork shipped for this space, settings, "
                        "data and resolution instead of training (see `hypernas pretrained`)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("rank", help="score candidates with a run's hypernetwork or a proxy",
                       description="Score random candidates (--n) or those listed in a file "
                                   "(--archs, one encoding per line) and print the ranking.")
    p.add_argument("run", help="run name (runs/RUN/)")
    _add_trust_arg(p)
    p.add_argument("--n", type=int, default=100, help="random candidates (default 100)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--archs", metavar="FILE", help="file with one encoding per line")
    _add_budget_args(p, "candidates (random ones are drawn within it; --archs lines over it "
                        "are skipped)")
    p.add_argument("--combine", metavar="A,B",
                   help="also score with these proxies and rank by the average of the ranks "
                        "(written as the run's 'combined' ranking), e.g. --combine naswot")
    p.add_argument("--skip-bad", action="store_true",
                   help="exit 0 when --archs lines were skipped (default: exit 1, after ranking "
                        "the rest)")
    p.add_argument("--scorer", default="hypernet",
                   help="hypernet | probe (after hypernas probe RUN) | params | synflow | "
                        "naswot | jacob_cov | snip | grad_norm")
    p.add_argument("--proxies", default="", metavar="A,B",
                   help="proxies to compute and show side by side, e.g. params,naswot")
    p.add_argument("--ranking", metavar="LABEL",
                   help="name of the ranking to write (default: the scorer's name)")
    p.add_argument("--workers", type=int, metavar="K",
                   help="score on Ray with K actors (a private local Ray unless --address)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join a running Ray cluster (as `ray start --head` printed it); "
                        "needs --workers")
    p.add_argument("--top", type=int, help="show only the best N")
    p.add_argument("--top-k", type=int, metavar="K",
                   help="hypernet scoring races candidates over the images: one that cannot "
                        "reach the best K (default 50, or all when fewer) stops early with a "
                        "wider interval; the best K are always scored on every image")
    p.add_argument("--full", action="store_true",
                   help="score every candidate on every evaluation image (no racing)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small ops run steadier single-threaded)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("calibrate", help="map a run's scores to accuracy intervals",
                       description="Fit how a run's hypernet (and naswot) scores map to trained "
                                   "accuracy, with calibrated intervals, from candidates trained "
                                   "for real: the run's screening / refinement trials, or a "
                                   "--truth file. `show` then prints each candidate's predicted "
                                   "accuracy with its interval; the search screens by it.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--truth", metavar="FILE.jsonl",
                   help='trained candidates, one per line: {"id": ..., "accuracy": 0.87} (or '
                        "encoding / test_acc / val_acc); default: the run's own trials")
    p.add_argument("--recipe", help="what those accuracies are (printed with the intervals)")
    p.add_argument("--level", type=float, default=0.8,
                   help="the interval level reported (0.8; strictly between 0 and 1)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("probe", help="read a run's graph embedding out toward a recipe's accuracy",
                       description="Fit a ridge read-out from the hypernetwork's graph embedding "
                                   "to the accuracies trained candidates reached (the run's "
                                   "screens of one recipe, or --truth FILE), so that hypernas "
                                   "rank RUN --scorer probe ranks by what that recipe rewards.")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--truth", metavar="FILE.jsonl",
                   help='trained candidates, one per line: {"encoding": ..., "accuracy": 0.87} '
                        "(or id / test_acc / val_acc); default: the run's own screens")
    p.add_argument("--recipe", help="what those accuracies are (kept with the probe)")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("show", help="show a run's ranking, or one architecture with its scores",
                       description="Print a run's ranked candidates (filter, sort, --json), or "
                                   "with --arch ID one candidate drawn as a tree with its score "
                                   "under every ranking of the run.")
    p.add_argument("run", help="run name (runs/RUN/)")
    _add_trust_arg(p)
    p.add_argument("--ranking", metavar="LABEL",
                   help="which ranking (default: hypernet, else the run's first)")
    p.add_argument("--arch", metavar="ID", help="one candidate by canonical id (or a prefix)")
    p.add_argument("--top", type=int, help="show the first N rows (after filters and sorting)")
    p.add_argument("--sort", default="rank",
                   help="rank | score | spread | params | macs | id | encoding (default rank)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--max-params", type=int, metavar="N", help="only candidates with <= N params")
    p.add_argument("--min-params", type=int, metavar="N", help="only candidates with >= N params")
    p.add_argument("--max-macs", type=int, metavar="N", help="only candidates with <= N MACs")
    p.add_argument("--pareto", action="store_true",
                   help="only the non-dominated candidates: the best score each cost buys "
                        "(table and plot; --json adds a pareto field)")
    p.add_argument("--x", default="params", choices=("params", "macs", "latency"),
                   help="the cost on the Pareto front's x axis (params; latency is measured "
                        "on this machine once per candidate, then kept in the run)")
    _add_runtime_arg(p)
    p.add_argument("--level", type=float, default=0.8,
                   help="the nominal coverage of the accuracy intervals, strictly between 0 "
                        "and 1 (0.8), where the run has a calibration")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("refine", help="refine the top of a ranking with real training (Optuna)",
                       description="An Optuna study in runs/RUN/study.db seeded with the top-K "
                                   "candidates: short real training warm-started from predicted "
                                   "weights, with the recipe and local mutations as parameters; "
                                   "pruned per epoch; resumable.")
    p.add_argument("run", help="run name (runs/RUN/)")
    _add_trust_arg(p)
    p.add_argument("--top", type=int, default=8, help="ranked candidates to start from (8)")
    p.add_argument("--trials", type=int, default=16, help="finished trials to reach (16)")
    p.add_argument("--max-epochs", type=int, default=4, help="most epochs per trial (4)")
    p.add_argument("--budget", type=float, metavar="MINUTES",
                   help="start no trial after this many minutes (running ones finish)")
    p.add_argument("--mutations", type=int, default=4,
                   help="neighbours of each candidate Optuna may try instead (4; 0 = none)")
    p.add_argument("--explore", action="store_true",
                   help="after the top, let TPE pick candidates of the whole space (within the "
                        "budget) at the top's recipe, instead of mutations and recipes")
    p.add_argument("--random-init", action="store_true",
                   help="start trials from random weights instead of predicted ones")
    p.add_argument("--ranking", metavar="LABEL", help="which ranking (default: hypernet)")
    _add_budget_args(p, "ranked candidates and mutants")
    p.add_argument("--workers", type=int, metavar="W",
                   help="train W trials at once as a Ray Tune experiment in runs/RUN/tune/ "
                        "(a private local Ray unless --address)")
    p.add_argument("--address", metavar="HOST:PORT", help="a running Ray cluster (with --workers)")
    p.add_argument("--scheduler", choices=("median", "asha"),
                   help="with --workers: Tune's early stopping, the median stopping rule "
                        "(default) or ASHA")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("export", help="export the refined winner (or --arch ID) to a directory",
                       description="Write safetensors weights, graph JSON and a model card, plus "
                                   "ONNX (checked against onnxruntime) and a torch.export .pt2.")
    p.add_argument("run", help="run name (runs/RUN/)")
    _add_trust_arg(p)
    p.add_argument("--out", required=True, help="directory to create")
    p.add_argument("--arch", metavar="ID", help="a refined candidate (default: the best)")
    p.add_argument("--format", default="safetensors,onnx,pt2",
                   help="comma-separated: safetensors,onnx,pt2 (default all)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--raw-input", action="store_true",
                   help="put the data's preprocessing (scaling, standardisation, area resize) "
                        "inside the ONNX and .pt2 files, so they take raw images; without it "
                        "they take prepared inputs and the card says how to prepare them")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("search", help="train -> rank -> refine -> export in one command",
                       description="The whole search in one resumable command. With no "
                                   "arguments: NB201 (C=16, N=1) on Fashion-MNIST at 16x16, "
                                   "about 15 minutes on 2 CPU cores.")
    p.add_argument("space", nargs="?", default="nb201", help="search space (default nb201)")
    p.add_argument("--data", default="fashion-mnist",
                   help="dataset name, or the path of your own .npz file (default fashion-mnist)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="space setting (repeatable)")
    p.add_argument("--budget", type=float, default=15.0,
                   help="minutes for the whole search (default 15; 45%% trains the hypernet)")
    p.add_argument("--resolution", type=int,
                   help="resize square images to this side (default: 16 for fashion-mnist)")
    p.add_argument("--n", type=int, default=200, help="candidates to rank (default 200)")
    p.add_argument("--top", type=int,
                   help="ranked candidates to screen with short real training, in rank order "
                        "(default: as far down the ranking as the budget goes)")
    p.add_argument("--trials", type=int,
                   help="screening trials at most (default: --top; more lets Optuna try "
                        "mutations and recipes once the top is screened)")
    p.add_argument("--finalists", type=int, default=3,
                   help="best screens trained for 5 epochs, the best of them exported (3; the "
                        "first always, the others while the budget lasts)")
    p.add_argument("--workers", type=int, metavar="K",
                   help="rank, screen and train the finalists on Ray with K workers")
    p.add_argument("--address", metavar="HOST:PORT", help="a running Ray cluster (with --workers)")
    p.add_argument("--format", default="safetensors,onnx,pt2", help="export formats")
    _add_budget_args(p, "candidates (drawn within it, and their mutants)")
    p.add_argument("--combine", metavar="A,B", default="naswot",
                   help="screen in the order of the average of the hypernet's and these "
                        "proxies' ranks (default naswot; none: the hypernet's order alone)")
    p.add_argument("--explore-after", type=int, metavar="K",
                   help="screen the ranking's K best, then let Optuna's TPE pick candidates of "
                        "the whole space within the budget from the screens' accuracies for "
                        "the rest of the screening time (default: screen down the ranking)")
    p.add_argument("--screen-by", choices=("ucb", "rank", "probe"), default="ucb",
                   help="screening order: ucb (default) screens by the upper end of each "
                        "candidate's calibrated 80 %% accuracy interval where the run has a "
                        "calibration (the shipped hypernetwork has one), so a candidate that "
                        "may be the best goes before a confident loser; rank: by the ranking; "
                        "probe: rank every candidate by the probe's predicted screen accuracy "
                        "(the shipped macro hypernetwork has one; hypernas probe fits one)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="train the search's own hypernetwork even where one is shipped for the "
                        "space and data (the default NB201 / Fashion-MNIST search ranks with "
                        "the shipped one and gives the whole budget to real training)")
    p.add_argument("--run", help="run name (default search-SPACE-DATA)")
    p.add_argument("--show", type=int, default=10, help="rows of the final table (10)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the candidates drawn, the screening and the trainings (0)")
    p.add_argument("--data-seed", type=int,
                   help="seed of the training/validation split (default: the split of the "
                        "shipped hypernetwork where one matches, so every --seed ranks with it; "
                        "else --seed)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: one per core this process may use; on 2 "
                        "cores, 2 threads ran training steps 1.6x and screens 1.8x faster)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="one self-contained HTML page of a run, with figures",
                       description="Write one HTML page that opens offline: predicted score vs "
                                   "trained accuracy, score vs parameters and MACs with the "
                                   "Pareto front, the hypernetwork's training curve, the "
                                   "refinement trials over time and the winner's architecture.")
    p.add_argument("run", help="run name (runs/RUN/)")
    _add_trust_arg(p)
    p.add_argument("--out", metavar="FILE.html", help="where (default runs/RUN/report.html)")
    p.add_argument("--png", metavar="DIR", help="also write each figure as DIR/NAME.png")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is an earlier hypernas report (nothing else)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="optuna-dashboard on a run's study",
                       description="Serve optuna-dashboard on the run's study (runs/RUN/study.db: "
                                   "every refinement and screening trial with its candidate's "
                                   "encoding, id, hypernet score, parameters, MACs and recipe).")
    p.add_argument("run", help="run name (runs/RUN/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (8080)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("runs", help="list runs with their stage, size and best score",
                       description="List the runs under runs/ (or $HYPERNAS_RUNS).")
    p.add_argument("--root", help="runs folder (default $HYPERNAS_RUNS or runs/)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("datasets", help="list datasets and whether they are installed",
                       description="List the datasets hypernas reads, and how to install them.")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("pretrained", help="list the hypernetworks shipped with hypernas",
                       description="List the hypernetworks shipped for built-in spaces: the "
                                   "setup each serves, its training and the command that "
                                   "trains it again.")
    p.set_defaults(func=cmd_pretrained)
    return parser
