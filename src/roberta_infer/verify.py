"""What a bundle's manifest records of its files, and what `load_bundle` checks before trusting them: every file's
sha256 (`files`, written by `write_manifest`), the manifest's fields, and the manifest against its graph (classes =
logits width, `max_tokens` within the position table, token ids within the embeddings).
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import sha256_file
from .errors import RobertaInferError
from .runtime import ENGINES, engine_and_precision
from .tokenise import TextEncoder

MODEL_FILES = {"onnxruntime": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
# The tokenizer's files `load_bundle` reads (with the engine's MODEL_FILES): one present but not among the manifest's
# `files` was added after export (an `id_map.npy` would renumber every token).
TOKENIZER_FILES = ("tokenizer.json", "special_ids.json", "id_map.npy")
OLDER_BUNDLE = "model files only: made before bundles listed every file's sha256; re-export it to have them all checked"


def model_sha256(directory: Path, engine: str) -> str:
    """sha256 over the engine's model files in MODEL_FILES order (for ONNX Runtime: model.onnx's own sha256)."""
    return sha256_file(*(directory / name for name in MODEL_FILES[engine]))


def write_manifest(directory: Path, manifest: dict) -> dict:
    """Record the sha256 of every file in `directory` but manifest.json as manifest["files"] ({name: hex sha256}), then
    write `directory`/manifest.json; returns `manifest`. The last step of whatever makes or changes a bundle."""
    manifest["files"] = {path.name: sha256_file(path) for path in sorted(Path(directory).iterdir())
                         if path.is_file() and path.name != "manifest.json"}
    (Path(directory) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_files(directory: Path, manifest: dict) -> str:
    """Check the bundle's files against `manifest`: each file its `files` lists is present with that sha256, and no
    file the loader reads (TOKENIZER_FILES, the engine's MODEL_FILES) is there unlisted. A manifest without `files`
    (an older bundle) has only its model files checked, against `model_sha256`. Returns what was checked, as a
    phrase (`info` shows it); raises RobertaInferError naming the first file that fails."""
    engine, _ = engine_and_precision(manifest)
    if engine not in MODEL_FILES:
        raise RobertaInferError(f"{directory} needs engine {engine!r}, which this roberta-infer does not have "
                                f"({', '.join(ENGINES)})")
    missing = [name for name in MODEL_FILES[engine] if not (directory / name).is_file()]
    if missing:
        raise RobertaInferError(f"bundle {directory} is missing {', '.join(missing)}: re-run `roberta-infer export`")
    damaged = "the bundle is damaged or was modified; rebuild it with `roberta-infer export`"
    listed = manifest.get("files")
    if listed is None:
        if model_sha256(directory, engine) != manifest.get("model_sha256"):
            raise RobertaInferError(f"{' + '.join(str(directory / n) for n in MODEL_FILES[engine])} "
                                    f"{'does' if engine == 'onnxruntime' else 'do'} not match the manifest's "
                                    f"model_sha256: {damaged}")
        return OLDER_BUNDLE
    if not isinstance(listed, dict) or not all(isinstance(v, str) and Path(k).name == k for k, v in listed.items()):
        raise RobertaInferError(f"{directory / 'manifest.json'}: 'files' is not a map of file name → sha256: {damaged}")
    unlisted = [name for name in (*TOKENIZER_FILES, *MODEL_FILES[engine]) if name not in listed and (directory / name).exists()]
    if unlisted:
        raise RobertaInferError(f"{directory / unlisted[0]} is not among the files manifest.json lists: {damaged}")
    for name, digest in listed.items():
        if not (directory / name).is_file():
            raise RobertaInferError(f"bundle {directory} is missing {name}: {damaged}")
        if sha256_file(directory / name) != digest:
            raise RobertaInferError(f"{directory / name} does not match its sha256 in manifest.json: {damaged}")
    return f"every file's sha256 ({len(listed)} files)"


def check_manifest(directory: Path, manifest: dict) -> None:
    """The manifest fields a loaded bundle relies on, of the right types (RobertaInferError naming the field)."""
    names, limit, shape = manifest.get("class_names"), manifest.get("max_tokens"), (manifest.get("input") or {}).get("shape")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise RobertaInferError(f"{directory / 'manifest.json'}: 'class_names' must be a list of names, found {names!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 2:
        raise RobertaInferError(f"{directory / 'manifest.json'}: 'max_tokens' must be an integer ≥ 2, found {limit!r}")
    if not isinstance(shape, list) or len(shape) != 2:
        raise RobertaInferError(f"{directory / 'manifest.json'}: 'input' must give a [batch, sequence] shape, found {shape!r}")


def check_graph(directory: Path, manifest: dict, *, classes, positions: int | None, encoder: TextEncoder) -> None:
    """The manifest against its graph and tokenizer: as many class names as the logits are wide (`classes`, an int
    where the graph fixes it), `max_tokens` within the position table (`positions` rows, where known; RoBERTa's
    positions start after the pad id), and no token id past the embedding table the manifest records. Raises
    RobertaInferError."""
    where = directory / "manifest.json"
    if isinstance(classes, int) and classes != len(manifest["class_names"]):
        raise RobertaInferError(f"{where} names {len(manifest['class_names'])} classes but the model's logits are "
                                f"{classes} wide: the bundle was modified; rebuild it with `roberta-infer export`")
    if positions is not None and manifest["max_tokens"] > positions - encoder.pad - 1:
        raise RobertaInferError(f"{where}: max_tokens {manifest['max_tokens']} exceeds the model's "
                                f"{positions - encoder.pad - 1} positions: the bundle was modified; rebuild it with "
                                "`roberta-infer export`")
    vocab = (manifest.get("architecture") or {}).get("vocab")
    if isinstance(vocab, int) and encoder.vocab_size() > vocab:
        raise RobertaInferError(f"{directory}: its tokenizer emits {encoder.vocab_size()} ids but the model embeds only "
                                f"{vocab}: the bundle was modified; rebuild it with `roberta-infer export`")


def onnx_positions(model) -> int | None:
    """Rows of an ONNX RoBERTa graph's position table (an initializer named `…position_embeddings.weight`, or a
    fused EmbedLayerNormalization's input 3), None where the graph does not show it."""
    initializers = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    named = [dims for name, dims in initializers.items() if name.endswith("position_embeddings.weight")]
    fused = [initializers.get(node.input[3]) for node in model.graph.node
             if node.op_type == "EmbedLayerNormalization" and len(node.input) > 3]
    tables = [dims for dims in named + fused if dims and len(dims) == 2]
    return tables[0][0] if tables else None


def openvino_positions(model) -> int | None:
    """Rows of an OpenVINO RoBERTa model's position table (the Constant named `…position_embeddings.weight`), None
    where the model does not show it."""
    tables = [op.get_output_partial_shape(0) for op in model.get_ops()
              if op.get_type_name() == "Constant" and op.get_friendly_name().endswith("position_embeddings.weight")]
    shapes = [shape for shape in tables if len(shape) == 2 and shape[0].is_static]
    return shapes[0][0].get_length() if shapes else None
