"""The deployable bundle: export → fuse + simplify → fidelity check → a self-contained directory.

A bundle holds `model.onnx` (optimised), what the tokeniser needs (`tokenizer.json`, `special_ids.json`,
`id_map.npy` for fairseq vocabularies) and `manifest.json` (source sha256, shapes, opset, fused-op
counts, and the measured max |Δlogit| against PyTorch). It runs without PyTorch or the original checkpoint.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .checkpoint import RobertaClassifier
from .data import sha256_file
from .errors import RobertaInferError
from .export import check_fidelity, export_onnx
from .optimize import inspect_onnx, optimize_onnx
from .runtime import OnnxClassifier, make_session
from .tokenise import TextEncoder, pad_to

FORMAT = "roberta-infer/bundle/1"
REQUIRED = ("model.onnx", "manifest.json", "tokenizer.json", "special_ids.json")
TOLERANCE = 1e-4
# Real sentences for the fidelity check (besides random ids): plain, negated, punctuation-heavy, emoji, accents.
CHECK_TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "this is n't a movie , it 's a hostage situation 😀",
    "a crème brûlée of a film : sweet , brittle , and over too soon .",
    "",
    "if you 've ever wondered what it would be like to be bored for 120 minutes , here 's your chance !",
    "Hé, naïve café — 北京",
]


def build_bundle(classifier: RobertaClassifier, out: Path, *, batch_size: int | None = None, seq_len: int | None = None,
                 opset: int = 17, progress=print) -> dict:
    """Export `classifier` to `out`; fails (and writes nothing) if fusion is incomplete or logits drift above 1e-4."""
    if (batch_size is None) != (seq_len is None):
        raise RobertaInferError("give both --batch-size and --seq-len for a static model, or neither (--dynamic)")
    if batch_size is not None and (batch_size <= 0 or seq_len < 2):
        raise RobertaInferError(f"batch size must be positive and seq-len at least 2 (got {batch_size}, {seq_len})")
    if seq_len is not None and seq_len > classifier.max_tokens:
        raise RobertaInferError(f"--seq-len {seq_len} exceeds the model's {classifier.max_tokens} positions")
    config = classifier.model.config
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise RobertaInferError(f"{out} exists and is not a bundle: choose an empty or new --out")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        tmp = Path(tmp)
        progress(f"exporting to ONNX (opset {opset}, {'static ' + str((batch_size, seq_len)) if batch_size else 'dynamic'} shape)")
        export_onnx(classifier.model, classifier.encoder.pad, tmp / "raw.onnx", batch_size=batch_size, seq_len=seq_len, opset=opset)
        progress("fusing with ONNX Runtime's transformer optimizer, then simplifying")
        fused = optimize_onnx(tmp / "raw.onnx", tmp / "model.onnx", num_heads=config.num_attention_heads,
                              hidden_size=config.hidden_size, num_layers=config.num_hidden_layers)
        progress("fused ops: " + ", ".join(f"{k} {v}" for k, v in fused.items() if v))
        shapes = [(batch_size, seq_len)] if batch_size else [(1, 8), (3, 17), (8, min(64, classifier.max_tokens))]
        real = real_inputs(classifier.encoder, batch_size, seq_len or min(64, classifier.max_tokens))
        fidelity = check_fidelity(classifier.model, classifier.encoder.pad, tmp / "model.onnx", shapes, real_inputs=real, tol=TOLERANCE)
        progress(f"fidelity vs PyTorch: max |Δlogit| = {fidelity['max_abs_diff']:.2e} (limit {TOLERANCE:g})")
        classifier.encoder.save(tmp)
        manifest = {
            "format": FORMAT,
            "roberta_infer": __version__,
            "source": classifier.source,
            "class_names": classifier.class_names,
            "max_tokens": classifier.max_tokens,
            "architecture": {"layers": config.num_hidden_layers, "hidden": config.hidden_size,
                             "heads": config.num_attention_heads, "ffn": config.intermediate_size,
                             "vocab": config.vocab_size, "positions": config.max_position_embeddings},
            "input": {"name": "src_tokens", "dtype": "int64", "shape": [batch_size or "batch", seq_len or "sequence"]},
            "output": {"name": "output", "dtype": "float32", "shape": [batch_size or "batch", len(classifier.class_names)]},
            "opset": opset,
            "fused_ops": fused,
            "fidelity": fidelity,
            "model_sha256": sha256_file(tmp / "model.onnx"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "raw.onnx").unlink()
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    return manifest


def real_inputs(encoder: TextEncoder, batch_size: int | None, seq_len: int) -> np.ndarray:
    """The check sentences as model input, cut/padded to the export's shape."""
    rows = encoder.encode(CHECK_TEXTS)
    tokens, _ = pad_to(rows, seq_len, pad=encoder.pad, eos=encoder.eos)
    if batch_size is not None:
        tokens = np.resize(tokens, (batch_size, seq_len))
    return tokens


def load_bundle(directory: Path, *, threads: int | None = None, provider: str = "cpu", spin: bool = True) -> OnnxClassifier:
    """Open a bundle on ONNX Runtime after checking it is complete and is a RoBERTa classifier of our form."""
    directory = Path(directory)
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise RobertaInferError(f"bundle {directory} is missing {', '.join(missing)}: re-run `roberta-infer export`")
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except json.JSONDecodeError as e:
        raise RobertaInferError(f"{directory / 'manifest.json'} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise RobertaInferError(f"{directory} is not a roberta-infer bundle (format {manifest.get('format')!r})")
    if sha256_file(directory / "model.onnx") != manifest.get("model_sha256"):
        raise RobertaInferError(f"{directory / 'model.onnx'} does not match its manifest's sha256: the bundle was modified or is corrupt")
    inspect_onnx(directory / "model.onnx")
    encoder = TextEncoder.load(directory)
    return OnnxClassifier(make_session(directory / "model.onnx", threads=threads, provider=provider, spin=spin), encoder,
                          manifest["class_names"], manifest)


def open_model(path: Path, *, threads: int | None = None, provider: str = "cpu", **checkpoint_options):
    """Any model `--model` may name: an exported bundle (ONNX Runtime) or a checkpoint (PyTorch).

    `checkpoint_options` (fairseq_data, bpe_dir, head, class_names) go to `checkpoint.load_classifier`.
    """
    from .checkpoint import load_classifier

    if (Path(path) / "manifest.json").is_file():
        return load_bundle(path, threads=threads, provider=provider)
    return load_classifier(path, **checkpoint_options)
