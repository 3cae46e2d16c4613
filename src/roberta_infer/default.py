"""The model shipped with the package, and its bundle, exported once and cached so later starts skip PyTorch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from .bundle import build_bundle
from .data import sha256_file
from .errors import RobertaInferError
from .outputs import HF_WEIGHTS

DEFAULT_MODEL = Path(__file__).parent / "default_model"


def default_model_dir() -> Path:
    """The shipped Hugging Face folder (trained by `roberta-infer train`), used when no --model is given."""
    if not (DEFAULT_MODEL / "config.json").is_file() or not any((DEFAULT_MODEL / name).is_file() for name in HF_WEIGHTS):
        raise RobertaInferError(
            f"the default model is missing ({DEFAULT_MODEL} has no config.json + weights): "
            f"reinstall roberta-infer, or pass --model PATH"
        )
    return DEFAULT_MODEL


def cache_root() -> Path:
    """$ROBERTA_INFER_CACHE, else ~/.cache/roberta-infer."""
    return Path(os.environ.get("ROBERTA_INFER_CACHE") or Path.home() / ".cache" / "roberta-infer")


# what a cached bundle's manifest must hold to be this version's export (older exports lack them: every file's sha256,
# the cls-only last layer); one that lacks any is exported again
CURRENT_EXPORT = ("files", "last_layer")


def default_bundle(progress: Callable[[str], None] = print) -> Path:
    """The default model as a dynamic-shape bundle under `cache_root()/<sha256 of its weights>`, exported on first use
    (and again over one an older roberta-infer exported there, see CURRENT_EXPORT)."""
    from .checkpoint import load_classifier  # deferred: torch, needed only on first use

    model = default_model_dir()
    weights = next(model / name for name in HF_WEIGHTS if (model / name).is_file())
    target = cache_root() / sha256_file(weights)
    manifest = target / "manifest.json"
    older = manifest.is_file() and not current_export(manifest)
    if older or not manifest.is_file():
        progress(f"exporting the default model to {target} ({'replacing an older export' if older else 'first use only'})")
        target.parent.mkdir(parents=True, exist_ok=True)
        build_bundle(load_classifier(model), target, progress=progress, force=older)
    return target


def current_export(manifest: Path) -> bool:
    """Whether a cached bundle's manifest.json is this version's export: a JSON object with every CURRENT_EXPORT field
    (an unreadable one is not, and is exported again rather than failing with an internal error)."""
    try:
        fields = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(fields, dict) and set(CURRENT_EXPORT) <= set(fields)
