"""ONNX Runtime: the session of a bundle's `model.onnx`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import RobertaInferError
from ..hardware import physical_cores
from .names import INPUT_NAME, OUTPUT_NAME, check_names

# `--provider` names → ONNX Runtime execution providers, best first; each falls back to the CPU for unsupported ops.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtSession:
    """An ONNX Runtime session behind the engine-neutral session surface."""

    engine = "onnxruntime"

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_shape = session.get_inputs()[0].shape
        self.output_shape = session.get_outputs()[0].shape
        self.threads = session.get_session_options().intra_op_num_threads
        self.provider = session.get_providers()[0]

    def run(self, src_tokens: np.ndarray) -> np.ndarray:
        """int64 [B, L] → float32 logits [B, classes]."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: src_tokens})[0]


def make_session(path: Path, *, threads: int | None = None, provider: str = "cpu", spin: bool = True) -> OrtSession:
    """The ONNX Runtime session of a `model.onnx`: all graph optimisations, `threads` intra-op threads (default: all
    physical cores), and our input/output names checked.

    `spin=False` lets idle intra-op threads sleep instead of busy-waiting for the next call: back-to-back offline
    batches gain from spinning, but a server's event loop and tokeniser need that CPU between model calls.
    Raises RobertaInferError for an unknown or unavailable provider and for a file ONNX Runtime cannot load.
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
        session = ort.InferenceSession(str(path), options, providers=PROVIDERS[provider])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt or invalid models
        raise RobertaInferError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:300]}") from None
    check_names(path, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    return OrtSession(session)
