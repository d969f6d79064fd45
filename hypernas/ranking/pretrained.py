"""Hypernetworks trained once, for longer than a search can afford, and shipped with the package.

A search that trains its own hypernetwork spends almost half its budget on it and still ranks
with a weak one (on 2 cores, 15 minutes buy a few hundred steps). For a built-in space and
dataset the package can instead ship a hypernetwork trained once for hours: the weights as
``shipped/NAME.safetensors`` (no pickle, no optimiser state) and a card ``shipped/NAME.json``:

- ``config``: the :class:`~hypernas.ranking.run.RunConfig` that trained it, training included;
- ``command``: the command that trains it again from scratch (seeded, step-counted);
- ``sha256``: the weights file's hash, checked before the weights are used;
- ``trained``: steps, minutes and the last logged loss and accuracy;
- ``reference``: a few cells' scores on the first images of the fixed evaluation set, so a test
  (and :func:`check_reference`) can prove the weights load and score as when they were shipped;
- optionally ``calibration`` (:mod:`~hypernas.ranking.uncertainty`) and ``probe``
  (:mod:`~hypernas.ranking.probe`: its embedding read out toward the search's screens).

A run can start from one when everything but the training matches (space and its effective
settings, data and its split seed, resolution, hypernetwork, scoring): :func:`find_pretrained`
(a search whose split is free takes the shipped one's split: ``any_split``).
The run's config then records the shipped name (``RunConfig.pretrained``) and the shipped
training config, so :func:`~hypernas.ranking.run.train_run` installs the weights as the run's
checkpoint instead of training, and the run is reproducible and resumable like any other.

Example:
    >>> [p.name for p in available()]
    ['macro-fashion-mnist-16', 'nb201-fashion-mnist-16']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import HypernasError
from ..hypernet.ensemble import HyperNetEnsemble
from ..hypernet.trainer import load_checkpoint, save_checkpoint
from ..runs.store import read_jsonl
from ..spaces.space import Candidate, load_space

__all__ = ["Pretrained", "available", "get_pretrained", "find_pretrained", "install",
           "reference_scores", "check_reference", "ship", "run_or_shipped", "SHIPPED"]

SHIPPED = Path(__file__).parent / "shipped"
REFERENCE_IMAGES = 500  # evaluation images the reference scores use (a test repeats them)


@dataclass(frozen=True)
class Pretrained:
    """A shipped hypernetwork: its name, card and weights file."""

    name: str
    card: dict[str, Any]
    weights: Path

    @property
    def config_dict(self) -> dict[str, Any]:
        """The run config (``RunConfig.from_dict`` takes it) of a run started from this one."""
        return {**self.card["config"], "pretrained": self.name}


def available() -> list[Pretrained]:
    """Every shipped hypernetwork, by name."""
    out = []
    for card in sorted(SHIPPED.glob("*.json")):
        out.append(Pretrained(card.stem, json.loads(card.read_text()),
                              card.with_suffix(".safetensors")))
    return out


def run_or_shipped(run: Any, path: Path, key: str, again: str) -> dict[str, Any] | None:
    """A fit a run keeps as JSON at ``path`` (a calibration, a probe), else field ``key`` of the
    card of the shipped hypernetwork the run ranks with, else None; a file that is not JSON is
    refused with ``again``, the way to make it again."""
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise HypernasError(f"{path} is not valid JSON ({e}); delete it and {again}") from e
    shipped = run.read_config().get("pretrained")
    return get_pretrained(shipped).card.get(key) if shipped else None


def get_pretrained(name: str) -> Pretrained:
    """The shipped hypernetwork ``name``; an error lists the ones there are."""
    for pre in available():
        if pre.name == name:
            return pre
    names = ", ".join(p.name for p in available()) or "none"
    raise HypernasError(f"no shipped hypernetwork named {name!r} (shipped: {names})")


def _effective_settings(space: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The space's full config with ``settings`` applied, minus what the data decides (input
    shape, classes), so ``{"N": 1}`` and ``{"C": 16, "N": 1}`` compare equal on NB201."""
    cfg = load_space(space, **settings).config.to_dict()
    return {k: v for k, v in cfg.items() if k not in ("input_shape", "num_classes")}


def _matches(cfg: Any, pre: Pretrained, any_split: bool = False) -> bool:
    """Whether the run config ``cfg`` is ``pre``'s in everything but the training (and, with
    ``any_split``, the seed of the training/validation split)."""
    want, have = cfg.to_dict(), pre.card["config"]
    if any(want[k] != have[k] for k in ("space", "resolution", "score")):
        return False
    if any_split:
        want["data"] = {**want["data"], "seed": have["data"]["seed"]}
    if want["data"] != have["data"]:
        return False
    made_by_space = ("space", "census", "slots")
    if ({k: v for k, v in want["hypernet"].items() if k not in made_by_space}
            != {k: v for k, v in have["hypernet"].items() if k not in made_by_space}):
        return False
    return (_effective_settings(cfg.space, cfg.space_settings)
            == _effective_settings(have["space"], have["space_settings"]))


def find_pretrained(cfg: Any, any_split: bool = False) -> Pretrained | None:
    """The shipped hypernetwork made for the run config ``cfg`` in everything but its training
    (with ``any_split``, trained on any training/validation split of ``cfg``'s data), if any
    (only built-in spaces have one; a space file never matches)."""
    return next((pre for pre in available() if pre.card["config"]["space"] == cfg.space
                 and _matches(cfg, pre, any_split)), None)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(loaded: Any) -> None:
    """Write the shipped hypernetwork the run (a ``LoadedRun``) names as its checkpoint, after
    checking the weights' hash and that they were made for the run's hypernetwork (census
    included)."""
    pre = get_pretrained(loaded.config.pretrained or "")
    if not pre.weights.exists():
        raise HypernasError(f"shipped hypernetwork {pre.name} has no weights file {pre.weights}; "
                            "reinstall hypernas, or train the run without --pretrained")
    if _sha256(pre.weights) != pre.card["sha256"]:
        raise HypernasError(f"shipped hypernetwork {pre.weights} does not match the hash on its "
                            "card (changed or truncated); reinstall hypernas")
    hnet, _, meta = load_checkpoint(pre.weights, loaded.config.hypernet)
    save_checkpoint(loaded.run.checkpoint_path, hnet, None,
                    {"step": meta["step"], "elapsed": meta["elapsed"],
                     "nan_skipped": meta.get("nan_skipped", 0), "train": meta["train"],
                     "pretrained": pre.name})


def reference_scores(loaded: Any, cands: Sequence[Candidate],
                     images: int = REFERENCE_IMAGES, hnet: Any = None) -> dict[str, float]:
    """{encoding: hypernet score} of ``cands`` on the first ``images`` evaluation images with
    ``hnet`` (default: the run's checkpoint): the numbers a shipped card records and a test
    repeats."""
    from .scoring import eval_slices, score_hypernet

    if hnet is None:
        hnet, _, _ = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    score = dataclasses.replace(loaded.config.score, eval_size=images)
    rows = score_hypernet(hnet, cands, eval_slices(loaded.data.val, score, hnet.config.samples))
    return {cand.encoding: row["score"] for cand, row in zip(cands, rows)}


def check_reference(loaded: Any, pre: Pretrained, atol: float = 1e-4) -> dict[str, Any]:
    """Score the card's reference cells again with the run's checkpoint; returns the recorded
    and the new scores and the largest difference; raises when it exceeds ``atol``."""
    ref = pre.card["reference"]
    cands = [loaded.space.replay(code) for code in ref["scores"]]
    again = reference_scores(loaded, cands, ref["images"])
    worst = max(abs(again[c] - s) for c, s in ref["scores"].items())
    if worst > atol:
        raise HypernasError(f"shipped hypernetwork {pre.name} scores its reference cells "
                            f"{worst:.2g} away from its card; the weights or the scoring changed")
    return {"recorded": ref["scores"], "again": again, "max_diff": worst}


def _trained(loaded: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(hypernetwork, checkpoint metadata, the card's ``trained`` entry) of a run trained to
    its step count."""
    hnet, _, meta = load_checkpoint(loaded.run.checkpoint_path, loaded.config.hypernet)
    cfg = loaded.config
    if cfg.train.steps is None or meta["step"] < cfg.train.steps:
        raise HypernasError(f"run {loaded.run.name} is not trained to a step count (train it "
                            "with --steps N to the end first, so the card's command reproduces it)")
    if isinstance(hnet, HyperNetEnsemble):
        raise HypernasError(f"run {loaded.run.name} holds an ensemble already; ship its members' "
                            "own runs (--member RUN each) instead")
    if cfg.pretrained:  # installed from a shipped one: its training is on that card
        return hnet, meta, dict(get_pretrained(cfg.pretrained).card["trained"])
    log = list(read_jsonl(loaded.run.train_log_path))
    return hnet, meta, {"steps": meta["step"], "minutes": round(meta["elapsed"] / 60, 1),
                        "last_loss": log[-1]["loss"] if log else None,
                        "last_acc": log[-1]["acc"] if log else None}


def _same_but_training(first: Any, other: Any) -> None:
    """Refuse an ensemble member trained on another setup than the first member."""
    a, b = ({**{k: v for k, v in x.config.to_dict().items() if k not in ("train", "pretrained")},
             "space_settings": _effective_settings(x.config.space, x.config.space_settings)}
            for x in (first, other))  # {"N": 1} and {"C": 16, "N": 1} are one setup on NB201
    if a != b:
        differ = ", ".join(k for k in a if a[k] != b[k])
        raise HypernasError(f"run {other.run.name} differs from {first.run.name} in {differ}; "
                            "the members of an ensemble differ only in their training (--seed, "
                            "--steps), on the same split (--data-seed)")


def ship(loaded: Any, name: str, command: str, cells: Sequence[str],
         out_dir: Path = SHIPPED, members: Sequence[Any] = ()) -> Path:
    """Write a trained run's hypernetwork (weights only) and its card as ``out_dir/name.*``;
    ``cells`` are the encodings whose scores the card records. With ``members`` (more trained
    runs of the same setup) the weights are those of a
    :class:`~hypernas.hypernet.ensemble.HyperNetEnsemble` of the run and the members, and the
    card lists each member's training. Returns the card's path."""
    hnet, meta, trained = _trained(loaded)
    card_members = []
    if members:
        for other in members:
            _same_but_training(loaded, other)
        made = [(hnet, meta, trained), *(_trained(other) for other in members)]
        card_members = [{"run": run.run.name, "train": run.config.train.to_dict(),
                         "trained": done} for run, (_, _, done) in zip([loaded, *members], made)]
        hnet = HyperNetEnsemble([net for net, _, _ in made])
    reference = reference_scores(loaded, [loaded.space.replay(c) for c in cells], hnet=hnet)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    save_checkpoint(weights, hnet, None, {"step": meta["step"], "elapsed": meta["elapsed"],
                                          "nan_skipped": meta.get("nan_skipped", 0),
                                          "train": meta["train"]})
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "pretrained"}
    card = {"name": name, "config": config, "command": command, "sha256": _sha256(weights),
            "trained": trained, **({"members": card_members} if card_members else {}),
            "reference": {"images": REFERENCE_IMAGES, "scores": reference}}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path
