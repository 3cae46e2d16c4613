"""roberta-infer: RoBERTa sentence classification from checkpoint to fused ONNX Runtime, on SST-2.

`roberta_infer.load(path)` returns a model whose `.predict(texts)` labels texts (`api`); importing the package stays
cheap: `load` and `Model` import the engines on first access."""

from __future__ import annotations

from .errors import RobertaInferError
from .version import __version__

__all__ = ["Model", "RobertaInferError", "__version__", "load"]

_API = ("Model", "load")


def __getattr__(name: str):
    """`load` and `Model`, from `api` on first access (PEP 562)."""
    if name in _API:
        from . import api  # deferred: api imports onnx and ONNX Runtime (and torch when a checkpoint is loaded)

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
