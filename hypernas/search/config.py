"""A whole search's settings: one frozen config, shared out between the stages.

Example:
    >>> cfg = SearchConfig(budget_minutes=15)
    >>> round(cfg.train_minutes, 2), cfg.run
    (6.75, 'search-nb201-fashion-mnist')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.registry import data_config
from ..errors import HypernasError
from ..hypernet.model import HyperNetConfig
from ..hypernet.trainer import HyperTrainConfig
from ..ranking.run import RunConfig
from ..refine.plan import RefineConfig
from ..refine.train import TrainConfig
from ..runs.rankings import COMBINED
from ..spaces.budget import Budget
from ..spaces.defaults import with_defaults

__all__ = ["SearchConfig", "TRAIN_SHARE", "SCREEN_RULES"]

SCREEN_RULES = ("ucb", "rank", "probe")  # screen by the interval's upper end, by the ranking,
# or by the probe's predicted accuracy (ranking.probe: the run's own, or the shipped one's)
TRAIN_SHARE = 0.45  # of the budget: hypernetwork training (ranking, screening, fit: the rest)
MAX_EXPLORED = 10_000  # screening trials of an exploring search (its budget stops it first)


@dataclass(frozen=True)
class SearchConfig:
    """A whole search; ``budget_minutes`` is shared out between the stages."""

    space: str = "nb201"  # search space name or .py path
    data: str = "fashion-mnist"  # dataset name (see `hypernas datasets`)
    space_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"N": 1}
    resolution: int | None = None  # square image side after resizing (None: the dataset's
    # default, 16 for Fashion-MNIST as in the truth set, else as stored)
    budget_minutes: float = 15.0  # the whole search, on the machine it runs on
    candidates: int = 200  # random candidates drawn for ranking (ranked: as many as fit in
    # RANK_SHARE of the time left after training, in their drawn order)
    top: int | None = None  # ranked candidates screened, in rank order (None: as far down the
    # ranking as the budget goes; a 30-minute search on one core screened all of a top of 32)
    trials: int | None = None  # screening trials at most (None: top; more lets Optuna pick
    # mutations and recipes after the top is screened)
    explore_after: int | None = None  # screen this many of the ranking's top, then let Optuna's
    # TPE pick candidates of the whole space (within the budget) from the screens' accuracies
    # for the rest of the screening time (None: screen down the ranking only)
    screen_epochs: int = 2  # epochs of a screening trial, from random weights
    screen_train_size: int = 5_000  # training images of a screening trial
    finalists: int = 3  # best-screened candidates trained with the longer recipe (the first
    # always; the others while the budget lasts); the best of them by validation is exported
    fit_epochs: int = 5  # epochs of a finalist's training
    fit_train_size: int | None = 10_000  # its training images (None: the whole training split)
    fit_lr: float = 0.1  # its peak learning rate (cosine-annealed)
    fit_warm_start: bool = False  # start it from predicted weights instead of random ones
    workers: int | None = None  # Ray workers for ranking and screening (None: in this process)
    address: str | None = None  # a running Ray cluster (with workers)
    formats: tuple[str, ...] = ("safetensors", "onnx", "pt2")  # export formats
    name: str | None = None  # run name (default search-SPACE-DATA)
    seed: int = 0  # candidates drawn, screening and the finalists' trainings
    data_seed: int | None = None  # the training/validation split (None: the split of the
    # hypernetwork shipped for this search where one is, so any --seed ranks with it; else seed)
    combine: tuple[str, ...] = ("naswot",)  # proxies whose ranks are averaged with the
    # hypernet's to order the screening (the run's "combined" ranking; chosen on the design
    # halves of both Fashion-MNIST truths, docs/BENCHMARKS.md); () screens in hypernet order
    max_params: int | None = None  # only candidates within these limits are ranked, screened,
    max_macs: int | None = None  # mutated and exported (multiply-accumulates per image)
    max_latency_ms: float | None = None  # batch 1 on this machine, in latency_runtime
    latency_runtime: str = "torch"
    screen_rule: str = "ucb"  # the screening order: "ucb" screens by the upper end of the
    # calibrated 80 % interval where the run has a calibration (the shipped hypernetworks
    # have one), else like "rank": the combined ranking (docs/BENCHMARKS.md, "Uncertainty");
    # "probe" ranks every drawn candidate by the run's probe (or the shipped hypernetwork's;
    # milliseconds each, no hypernet score) and screens in its order
    pretrained: bool = True  # rank with the hypernetwork shipped for this space and data (if
    # one matches: ranking.pretrained) and give its training share to screening and finalists

    def __post_init__(self) -> None:
        if self.budget_minutes <= 0:
            raise HypernasError(f"--budget must be positive minutes, got {self.budget_minutes}")
        if self.candidates < 1:
            raise HypernasError(f"--n must be at least 1, got {self.candidates}")
        for key in ("top", "finalists", "screen_epochs", "screen_train_size", "fit_epochs"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                flag = f"--{key}" if key in ("top", "finalists") else key
                raise HypernasError(f"{flag} must be at least 1, got {getattr(self, key)}")
        if self.screen_rule not in SCREEN_RULES:
            raise HypernasError(f"--screen-by must be one of {', '.join(SCREEN_RULES)}, got "
                                f"{self.screen_rule!r}")
        if self.trials is not None and self.trials < 1:
            raise HypernasError(f"--trials must be at least 1, got {self.trials}")
        if self.explore_after is not None and self.explore_after < 1:
            raise HypernasError(f"--explore-after must be at least 1, got {self.explore_after}")
        if self.explore_after is not None and self.top is not None:
            raise HypernasError("give --top (screen down the ranking) or --explore-after (then "
                                "let TPE explore the space), not both")
        self.budget  # refuses a limit that is not a positive number

    @property
    def run(self) -> str:
        data = Path(self.data).stem if self.data.lower().endswith(".npz") else self.data
        return self.name or f"search-{Path(self.space).stem}-{data}"

    @property
    def screen_top(self) -> int:
        """Ranked candidates the screening may reach (``top``, else all that are ranked)."""
        return self.top or self.candidates

    @property
    def _split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def train_minutes(self) -> float:
        return TRAIN_SHARE * self.budget_minutes

    def run_config(self) -> RunConfig:
        """The run a search trains its own hypernetwork in (see :meth:`shipped_config`)."""
        settings, resolution, _ = with_defaults(self.space, self.data, self.space_settings,
                                                self.resolution)
        return RunConfig(space=self.space, space_settings=settings,
                         data=data_config(self.data, self._split_seed),
                         resolution=resolution,
                         hypernet=HyperNetConfig(),
                         train=HyperTrainConfig(budget_minutes=self.train_minutes, seed=self.seed))

    def shipped_config(self) -> RunConfig | None:
        """With ``pretrained``, the run config of the shipped hypernetwork made for this search's
        space, settings, data and resolution (its training included), else None."""
        if not self.pretrained:
            return None
        from ..ranking.pretrained import find_pretrained

        pre = find_pretrained(self.run_config(), any_split=self.data_seed is None)
        return RunConfig.from_dict(pre.config_dict) if pre is not None else None

    @property
    def budget(self) -> Budget:
        return Budget(self.max_params, self.max_macs, self.max_latency_ms, self.latency_runtime)

    def screen_config(self, budget_minutes: float | None = None, ranking: str | None = None
                      ) -> RefineConfig:
        """The screening study: the top of ``ranking`` (default: the combined ranking), each
        trained from random weights for ``screen_epochs`` on ``screen_train_size`` images at
        NB201's learning rate, every one to its last epoch (the winner is chosen on final
        accuracies)."""
        explore = self.explore_after is not None
        return RefineConfig(top=self.explore_after or self.screen_top,
                            trials=self.trials or (MAX_EXPLORED if explore else self.screen_top),
                            explore=explore,
                            max_epochs=self.screen_epochs, train_size=self.screen_train_size,
                            warm_start=False, prune=False, budget_minutes=budget_minutes,
                            seed=self.seed, max_params=self.max_params, max_macs=self.max_macs,
                            max_latency_ms=self.max_latency_ms,
                            latency_runtime=self.latency_runtime,
                            ranking=ranking or (COMBINED if self.combine else None))

    def fit_recipe(self, resolution: int | None) -> TrainConfig:
        return TrainConfig(epochs=self.fit_epochs, lr=self.fit_lr, train_size=self.fit_train_size,
                           resolution=resolution, seed=self.seed)
