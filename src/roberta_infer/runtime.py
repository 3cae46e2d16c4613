"""A bundle as a classifier with the same contract as the PyTorch one, on a session of its engine (`engines`).

`BundleClassifier` holds the engine-neutral part: static-shape padding and splitting; `load_bundle` (in `bundle`)
makes one from a bundle directory through `engines`' session factories.
"""

from __future__ import annotations

import numpy as np

from .engines import OpenVinoSession, OrtSession
from .errors import RobertaInferError
from .hardware import machine, physical_cores
from .tokenise import TextEncoder

# machine and physical_cores live in `hardware`; bench and collection still import them from here.
__all__ = ["ENGINES", "LAST_LAYERS", "PRECISIONS", "BundleClassifier", "engine_and_precision", "fill_batch", "machine",
           "physical_cores"]
ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
# How a bundle's graph runs the last encoder layer (manifest "last_layer"; `export.TokensToLogits`): "cls-only" computes
# its keys and values at every position but the rest at `<s>` only, the one position the classifier reads; "full" at
# every position, as the PyTorch model does. A manifest without it is "full".
LAST_LAYERS = ("cls-only", "full")


def engine_and_precision(manifest: dict) -> tuple[str, str]:
    """A bundle manifest's engine ("onnxruntime" | "openvino") and precision ("fp32" | "bf16" | "int8"): a manifest
    written before they were recorded is an ONNX Runtime bundle, int8 if `quantize` made it."""
    return manifest.get("engine", "onnxruntime"), manifest.get("precision", "int8" if "quantization" in manifest else "fp32")


class BundleClassifier:
    """A bundle on its engine: same `encoder` / `class_names` / `max_tokens` / `logits` as the PyTorch classifier.

    `session` is an engine's session (`engines.make_session` or `engines.openvino_session`); everything else here is
    engine-neutral. `engine` is "onnxruntime" or "openvino", `precision` "fp32", "bf16" or "int8" (from the manifest; a manifest
    without them is an ONNX Runtime bundle, int8 if `quantize` made it).
    """

    def __init__(self, session: OrtSession | OpenVinoSession, encoder: TextEncoder, class_names: list[str], manifest: dict):
        self.session = session
        self.encoder = encoder
        self.class_names = class_names
        self.manifest = manifest
        self.engine, self.precision = engine_and_precision(manifest)
        batch, seq = manifest["input"]["shape"]
        self.static_batch = batch if isinstance(batch, int) else None
        self.static_seq = seq if isinstance(seq, int) else None
        self.threads = session.threads
        self.provider = session.provider

    @property
    def source(self) -> dict:
        """The checkpoint the bundle was exported from (kind, path, sha256)."""
        return self.manifest["source"]

    @property
    def max_tokens(self) -> int:
        return min(self.manifest["max_tokens"], self.static_seq or self.manifest["max_tokens"])

    def run(self, src_tokens: np.ndarray) -> np.ndarray:
        """One model call on exactly the shape given (int64 [B, L], must fit a static model's shape) → float32 [B, C]."""
        return self.session.run(src_tokens)

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        """Any [N, L ≤ max_tokens]: a static model gets its rows padded to its length and split/padded to its batch."""
        src_tokens = self._fit_length(src_tokens)
        if self.static_batch is None:
            return self.run(src_tokens)
        n, step = src_tokens.shape[0], self.static_batch
        out = []
        for start in range(0, n, step):
            out.append(self.run(fill_batch(src_tokens[start : start + step], step, self.encoder))[: min(step, n - start)])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _fit_length(self, src_tokens: np.ndarray) -> np.ndarray:
        """int64, contiguous, and right-padded to a static model's length (refused if longer)."""
        src_tokens = np.ascontiguousarray(src_tokens, dtype=np.int64)
        if self.static_seq is not None and src_tokens.shape[1] != self.static_seq:
            if src_tokens.shape[1] > self.static_seq:
                raise RobertaInferError(f"inputs of {src_tokens.shape[1]} ids do not fit this bundle's fixed length "
                                        f"{self.static_seq}")
            wide = np.full((src_tokens.shape[0], self.static_seq), self.encoder.pad, dtype=np.int64)
            wide[:, : src_tokens.shape[1]] = src_tokens
            src_tokens = wide
        return src_tokens


def fill_batch(rows: np.ndarray, batch_size: int, encoder: TextEncoder) -> np.ndarray:
    """A last partial batch padded with `<s></s>` rows to a static batch size (their outputs are dropped)."""
    if rows.shape[0] == batch_size:
        return rows
    filler = np.full((batch_size - rows.shape[0], rows.shape[1]), encoder.pad, dtype=np.int64)
    filler[:, 0], filler[:, 1] = encoder.bos, encoder.eos
    return np.concatenate([rows, filler])
