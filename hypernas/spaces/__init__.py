"""Search spaces: one define-by-run definition that samples, replays, mutates and enumerates.

Takes a space name (or a ``.py`` file) and its settings; gives :class:`Candidate` objects, each an
encoding, a canonical id and an architecture graph. The built-in spaces live in the top-level
``search_spaces`` package; a space of your own is one file with a :class:`SearchSpace` subclass.

    space.py   SearchSpace, SpaceConfig, Candidate, and the registry (load_space, list_spaces)
    trials.py  what define(trial) is asked with: random, fixed (replay), mutant, path (enumerate)

Example:
    >>> space = load_space("nb201", N=1)
    >>> cand = space.sample(seed=0)
    >>> space.replay(cand.encoding).id == cand.id
    True
"""

from .space import (
                    Candidate,
                    SearchSpace,
                    SpaceConfig,
                    check_positive_ints,
                    get_space_class,
                    list_spaces,
                    load_space,
                    register_space,
)
from .trials import BaseTrial, FixedTrial, MutantTrial, PathTrial, RandomTrial

__all__ = ["BaseTrial", "Candidate", "FixedTrial", "MutantTrial", "PathTrial", "RandomTrial",
           "SearchSpace", "SpaceConfig", "check_positive_ints", "get_space_class", "list_spaces",
           "load_space", "register_space"]
