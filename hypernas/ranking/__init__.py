"""Ranking: a run's hypernetwork trained, then candidates scored without training each.

Takes a run config (space, data, hypernetwork, scoring) and candidates; gives ranking rows
(``id``, ``encoding``, ``score``, ``spread``, params, MACs), appended to
``runs/<name>/rankings/<label>.jsonl`` as they are computed. A score is minus the loss of the
candidate's predicted weights on fixed validation images (mean over weight samples, with their
spread), or a zero-cost proxy.

    run.py      RunConfig, LoadedRun: a run made ready; train_run trains its hypernetwork
    scoring.py  the hypernet score and the proxies' rows on fixed evaluation images
    proxies.py  zero-cost proxies (params, synflow, naswot, jacob_cov, snip, grad_norm)
    rank.py     rank_run: score what the ranking lacks, in this process; architecture files
    on_ray.py   rank_on_ray: the same rows from a pool of Ray actors (imported on demand)
"""

from .proxies import list_proxies, score_all, score_proxy
from .rank import ArchLine, make_scorer, missing_candidates, rank_run, read_archs
from .run import LoadedRun, RunConfig, load_run, materialise, start_run, train_run
from .scoring import ScoreConfig, eval_slices, list_scorers, score_hypernet, score_proxies

__all__ = ["ArchLine", "LoadedRun", "RunConfig", "ScoreConfig", "eval_slices", "list_proxies",
           "list_scorers", "load_run", "make_scorer", "materialise", "missing_candidates",
           "rank_run", "read_archs", "score_all", "score_hypernet", "score_proxies", "score_proxy",
           "start_run", "train_run"]
