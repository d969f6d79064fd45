"""A run's refined candidate exported: the best trial of its study, or one chosen by id or trial.

The model card records where the candidate came from (run, space, encoding, id, every ranking's
score, the training recipe), its validation accuracy from the study and its test accuracy,
measured now on the test split that nothing else reads (``hypernas export``, ``hypernas search``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from safetensors.torch import load_file

from ..graphs.network import Network
from ..ranking.run import load_run
from ..refine.study import StudyError, best_refined, open_study, refined_rows, trial_row
from ..refine.train import evaluate
from ..runs.rankings import scores_of
from ..runs.store import Run
from .files import accuracy_se, export_model

__all__ = ["export_run"]


def export_run(run: Run, out: str | Path, arch: str | None = None,
               formats: Sequence[str] = ("safetensors", "onnx", "pt2"),
               force: bool = False, trial: int | None = None,
               extra: dict[str, Any] | None = None, raw_input: bool = False) -> dict[str, Any]:
    """Export the run's best refined candidate (or the refined candidate ``arch``, an id or a
    unique prefix, or the finished trial number ``trial``) with a model card: space, encoding,
    id, every ranking's score, the training recipe, validation accuracy from the study and test
    accuracy measured now, the data's input contract, plus the fields of ``extra`` (a search
    adds its budget); ``raw_input`` puts the preprocessing inside the ONNX and .pt2 files."""
    rows = refined_rows(run)
    if trial is not None:
        chosen = trial_row(run, trial)
    elif arch is None:
        chosen = best_refined(run)
    else:
        ids = [cid for cid in rows if cid.startswith(arch)]
        if len(ids) != 1:
            raise StudyError(f"{arch!r} is not {'a unique prefix of ' if ids else ''}a refined "
                             f"candidate of run {run.name!r}; refined: "
                             f"{', '.join(sorted(rows)) or 'none'}")
        chosen = {**rows[ids[0]], "id": ids[0],
                  "weights": run.refined_weights_path(rows[ids[0]]["trial"])}
    loaded = load_run(run)
    cand = loaded.space.replay(chosen["encoding"])
    net = Network(cand.graph)
    net.load_state_dict(load_file(str(chosen["weights"])))
    net.eval()
    test_acc, test_loss = evaluate(net, loaded.data.test)
    study = open_study(run, create=False)
    trial = study.trials[chosen["trial"]]
    card = {"run": run.name, "space": loaded.config.space,
            "space_config": loaded.space.config.to_dict(), "data": loaded.config.data.name,
            "resolution": loaded.config.resolution, "encoding": cand.encoding, "id": cand.id,
            "scores": scores_of(run, cand.id), "recipe": trial.user_attrs.get("recipe"),
            "warm_start": trial.user_attrs.get("warm_start"), "trial": chosen["trial"],
            "val_acc": chosen["val_acc"], "test_acc": test_acc, "test_loss": test_loss,
            # each accuracy's binomial standard error on the images it was measured on: the
            # evaluation's own noise, not the (larger) difference a second training would make
            "val_images": len(loaded.data.val), "test_images": len(loaded.data.test),
            "val_acc_se": accuracy_se(chosen["val_acc"], len(loaded.data.val)),
            "test_acc_se": accuracy_se(test_acc, len(loaded.data.test)), **(extra or {})}
    # with raw_input the check runs on raw values across the contract's range (seeded)
    example = None if raw_input else loaded.data.test.x[:8]
    return export_model(net, out, card, formats=formats, example=example, force=force,
                        contract=loaded.data.contract, raw_input=raw_input)
