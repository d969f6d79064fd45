"""Export: one trained candidate as files anyone can load, and loading them back.

Takes a trained ``Network`` (or a run's refined trial) and a directory; gives safetensors weights,
the graph as JSON, a model card with checksums, and optionally ONNX (checked against
onnxruntime) and a ``torch.export`` program. :func:`load` gives the ``nn.Module`` back with no
unpickling.

    files.py     export_model, load: the files, their checks, the model card
    from_run.py  export_run: a run's best (or chosen) refined trial, with its test accuracy

``export_run`` reads the run's Optuna study, so it is imported on first use: ``import hypernas``
(which gives ``hypernas.load``) does not import Optuna.
"""

from typing import Any

from .files import FORMATS, ONNX_ATOL, ExportError, accuracy_se, export_model, load

__all__ = ["FORMATS", "ONNX_ATOL", "ExportError", "accuracy_se", "export_model", "export_run",
           "load"]


def __getattr__(name: str) -> Any:
    if name == "export_run":
        from .from_run import export_run

        return export_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
