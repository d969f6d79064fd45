"""Every shipped space, and a user space loaded from a file, passes the space contract."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import hypernas as hn
from hypernas.testing import SpaceContract

# Small but complete configurations keep the suite fast; each still exercises every choice.
CONFIGS = {
    "nb201": {"input_shape": (1, 28, 28), "N": 1, "C": 8},
    "macro": {"input_shape": (1, 28, 28)},
    "mlp": {"input_shape": (40,)},
}

USER_SPACE = textwrap.dedent('''
    from dataclasses import dataclass

    from hypernas.spaces.space import SearchSpace, SpaceConfig


    @dataclass(frozen=True)
    class TinyConfig(SpaceConfig):
        input_shape: tuple = (6,)  # vectors of 6 features
        num_classes: int = 3


    class TinySpace(SearchSpace):
        name = "tiny"
        description = "one or two hidden layers"
        Config = TinyConfig

        def size(self):
            return 2 + 4

        def define(self, trial):
            b = self.builder()
            x = b.input
            for i in range(trial.suggest_int("depth", 1, 2)):
                width = trial.suggest_categorical(f"width{i}", [4, 8])
                x = b.add("relu", b.add("linear", x, out_features=width))
            b.output(b.add("linear", x, out_features=self.config.num_classes))
            return b.build()
''')


def test_every_shipped_space_is_covered():
    assert set(CONFIGS) == set(hn.list_spaces())


class TestShippedSpaces(SpaceContract):
    @pytest.fixture(params=sorted(CONFIGS))
    def space(self, request):
        return hn.load_space(request.param, **CONFIGS[request.param])


class TestUserSpaceFile(SpaceContract):
    @pytest.fixture
    def space(self, tmp_path: Path):
        path = tmp_path / "tiny_space.py"
        path.write_text(USER_SPACE)
        return hn.load_space(str(path))


def test_user_space_enumerates_exactly(tmp_path: Path):
    path = tmp_path / "tiny_space.py"
    path.write_text(USER_SPACE)
    space = hn.load_space(str(path))
    encodings = [c.encoding for c in space.enumerate()]
    assert len(encodings) == len(set(encodings)) == space.size() == 6


def test_unknown_space_and_bad_file(tmp_path: Path):
    with pytest.raises(hn.SpaceError, match="known: .*nb201"):
        hn.load_space("nb301")
    with pytest.raises(hn.SpaceError, match="does not exist"):
        hn.load_space(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(hn.SpaceError, match="exactly one SearchSpace"):
        hn.load_space(str(empty))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_optuna_trial_drives_the_same_definition(name):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = hn.load_space(name, **CONFIGS[name])
    cand = space.sample(11)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(dict(cand.params))
    replayed = space.from_trial(study.ask())           # the enqueued candidate comes back
    assert replayed.encoding == cand.encoding and replayed.id == cand.id
    fresh = space.from_trial(study.ask())               # and Optuna's own sampling builds valid ones
    hn.validate(fresh.graph)
    assert space.replay(fresh.encoding).id == fresh.id
