"""ONNX Runtime sessions, and an exported bundle as a classifier with the same contract as the PyTorch one."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import RobertaInferError
from .tokenise import TextEncoder


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's units, so more threads than this only slow GEMMs down)."""
    try:
        pairs = set()
        block: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                block[key] = value
            elif block:
                pairs.add((block.get("physical id"), block.get("core id")))
                block = {}
        if None not in {p[1] for p in pairs} and pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def machine() -> dict:
    """What ran the numbers, for every summary."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "platform": platform.platform(),
            "onnxruntime": ort.__version__}


# `--provider` names → ONNX Runtime execution providers, best first; each falls back to the CPU for unsupported ops.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def make_session(path: Path, *, threads: int | None = None, provider: str = "cpu", spin: bool = True) -> ort.InferenceSession:
    """A session with graph optimisations on and `threads` intra-op threads (default: all physical cores).

    `spin=False` lets idle intra-op threads sleep instead of busy-waiting for the next call: back-to-back offline
    batches gain from spinning, but a server's event loop and tokeniser need that CPU between model calls.
    """
    if provider not in PROVIDERS:
        raise RobertaInferError(f"unknown provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    if PROVIDERS[provider][0] not in ort.get_available_providers():
        raise RobertaInferError(
            f"ONNX Runtime provider {PROVIDERS[provider][0]} is not available here (available: "
            f"{', '.join(ort.get_available_providers())}); GPU providers need the onnxruntime-gpu package and a GPU"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=PROVIDERS[provider])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt or invalid models
        raise RobertaInferError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:300]}") from None


class OnnxClassifier:
    """A bundle on ONNX Runtime: same `encoder` / `class_names` / `max_tokens` / `logits` as the PyTorch classifier."""

    def __init__(self, session: ort.InferenceSession, encoder: TextEncoder, class_names: list[str], manifest: dict):
        self.session = session
        self.encoder = encoder
        self.class_names = class_names
        self.manifest = manifest
        batch, seq = manifest["input"]["shape"]
        self.static_batch = batch if isinstance(batch, int) else None
        self.static_seq = seq if isinstance(seq, int) else None
        self.threads = session.get_session_options().intra_op_num_threads
        self.provider = session.get_providers()[0]

    @property
    def source(self) -> dict:
        """The checkpoint the bundle was exported from (kind, path, sha256)."""
        return self.manifest["source"]

    @property
    def max_tokens(self) -> int:
        return min(self.manifest["max_tokens"], self.static_seq or self.manifest["max_tokens"])

    def run(self, src_tokens: np.ndarray) -> np.ndarray:
        """One model call on exactly the shape given (must fit a static model's shape)."""
        return self.session.run(["output"], {"src_tokens": src_tokens})[0]

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        """Any [N, L ≤ max_tokens]: a static model gets its rows padded to its length and split/padded to its batch."""
        src_tokens = np.ascontiguousarray(src_tokens, dtype=np.int64)
        if self.static_seq is not None and src_tokens.shape[1] != self.static_seq:
            if src_tokens.shape[1] > self.static_seq:
                raise RobertaInferError(f"inputs of {src_tokens.shape[1]} ids do not fit this bundle's fixed length {self.static_seq}")
            wide = np.full((src_tokens.shape[0], self.static_seq), self.encoder.pad, dtype=np.int64)
            wide[:, : src_tokens.shape[1]] = src_tokens
            src_tokens = wide
        if self.static_batch is None:
            return self.run(src_tokens)
        n, step = src_tokens.shape[0], self.static_batch
        out = []
        for start in range(0, n, step):
            out.append(self.run(fill_batch(src_tokens[start : start + step], step, self.encoder))[: min(step, n - start)])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


def fill_batch(rows: np.ndarray, batch_size: int, encoder: TextEncoder) -> np.ndarray:
    """A last partial batch padded with `<s></s>` rows to a static batch size (their outputs are dropped)."""
    if rows.shape[0] == batch_size:
        return rows
    filler = np.full((batch_size - rows.shape[0], rows.shape[1]), encoder.pad, dtype=np.int64)
    filler[:, 0], filler[:, 1] = encoder.bos, encoder.eos
    return np.concatenate([rows, filler])
