"""Bundles' engines and a bundle as a classifier with the same contract as the PyTorch one.

One session factory per engine: `make_session` (ONNX Runtime, `model.onnx`) and `openvino_session` (OpenVINO,
`model.xml` + `model.bin`). Both return a small session object with the same surface: `run(src_tokens)`,
`input_shape`, `threads`, `provider`. `BundleClassifier` holds the engine-neutral part:
static-shape padding and splitting. OpenVINO is imported only when an OpenVINO bundle is opened.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import RobertaInferError
from .hardware import machine, physical_cores
from .tokenise import TextEncoder

# The bundle's interface, defined once: `src_tokens` int64 [batch, seq] in, `output` float32 [batch, classes] out.
INPUT_NAME = "src_tokens"
OUTPUT_NAME = "output"
ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
# machine lives in `hardware`; bench still imports it from here, as collection does physical_cores.
__all__ = ["ENGINES", "INPUT_NAME", "OPENVINO_HINTS", "OUTPUT_NAME", "PRECISIONS", "PROVIDERS", "BundleClassifier", "OpenVinoSession",
           "OrtSession", "check_names", "engine_and_precision", "fill_batch", "machine", "make_session", "openvino_session",
           "physical_cores"]
# OpenVINO's INFERENCE_PRECISION_HINT per bundle precision (its CPU default is bf16 wherever the CPU has bf16). int8
# leaves the ops NNCF does not quantize (attention's matmuls, softmax, layer norms) to bf16 where the CPU has it: a
# median 1.07x sentences/s over f32 on an AVX-512 BF16 CPU without AMX (6 interleaved pairs); the accuracy gate
# measures int8 with this hint. A CPU without bf16 runs f32.
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


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


class OpenVinoSession:
    """An OpenVINO compiled model behind the engine-neutral session surface, with `streams` CPU streams.

    Each stream runs one call at a time on its share of the threads. `run` splits a batch's rows across the streams
    and runs the parts at once, so one call still uses every core. An infer request serves one call at a time, so
    each calling thread gets its own set (a server runs calls from several threads).
    """

    engine = "openvino"
    provider = "CPU"

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        self.input_shape = [dim.get_length() if dim.is_static else name
                            for dim, name in zip(compiled.input(0).get_partial_shape(), ("batch", "sequence"))]
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.inference_precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16"
        self._local = threading.local()

    def run(self, src_tokens: np.ndarray) -> np.ndarray:
        """int64 [B, L] → float32 logits [B, classes] (copies: the requests' output buffers are reused)."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        if self.streams == 1 or len(src_tokens) < 2 or isinstance(self.input_shape[0], int):
            return requests[0].infer({INPUT_NAME: src_tokens})[0]
        parts = np.array_split(src_tokens, min(self.streams, len(src_tokens)))
        for request, part in zip(requests, parts):
            request.start_async({INPUT_NAME: part})
        for request in requests[: len(parts)]:
            request.wait()
        return np.concatenate([request.get_output_tensor(0).data for request in requests[: len(parts)]])


def openvino_session(model, *, threads: int | None = None, precision: str = "fp32", streams: int | None = None) -> OpenVinoSession:
    """An OpenVINO CPU compiled model of `model` (a `model.xml` path or an `openvino.Model`) with our names checked.

    `precision` (a bundle precision, see OPENVINO_HINTS) sets INFERENCE_PRECISION_HINT explicitly: OpenVINO's own
    default is bf16 on any CPU with bf16 instructions, which is not fp32's result. `threads` (default: all physical
    cores) are shared by `streams` streams (default: one per thread). Measured on a shared 2-core machine (int8
    roberta-base shape, all SST-2 dev in length-sorted batches of 32, 8 interleaved pairs): 2 streams × 1 thread
    ran a median 1.35× (at worst 1.03×) the sentences/s of 1 stream × 2 threads; an AsyncInferQueue pipelining whole
    batches gained nothing over these split calls (0.96×), nor on one stream (0.93×), so it is not used. One row
    alone cannot be split and takes ~1.3× as long on one thread: a caller of single rows asks for `streams=1`.
    Raises RobertaInferError for a file OpenVINO cannot compile.
    """
    import openvino as ov

    if precision not in OPENVINO_HINTS:
        raise RobertaInferError(f"unknown precision {precision!r}: choose one of {', '.join(OPENVINO_HINTS)}")
    threads = threads or physical_cores()
    streams = max(1, min(streams or threads, threads))
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision], "INFERENCE_NUM_THREADS": threads,
              "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
    if streams > 1:
        config["NUM_STREAMS"] = streams
    try:
        compiled = ov.Core().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU", config)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise RobertaInferError(f"OpenVINO cannot load {model}: {str(e).strip().splitlines()[0][:300]}") from None
    check_names(model, [i.get_any_name() for i in compiled.inputs], [o.get_any_name() for o in compiled.outputs])
    return OpenVinoSession(compiled)


def check_names(model, inputs: list[str], outputs: list[str]) -> None:
    """Refuse a graph whose inputs/outputs are not ours: `src_tokens` in, `output` out."""
    if (inputs, outputs) != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RobertaInferError(f"{model}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {(inputs, outputs)}")


def engine_and_precision(manifest: dict) -> tuple[str, str]:
    """A bundle manifest's engine ("onnxruntime" | "openvino") and precision ("fp32" | "bf16" | "int8"): a manifest
    written before they were recorded is an ONNX Runtime bundle, int8 if `quantize` made it."""
    return manifest.get("engine", "onnxruntime"), manifest.get("precision", "int8" if "quantization" in manifest else "fp32")


class BundleClassifier:
    """A bundle on its engine: same `encoder` / `class_names` / `max_tokens` / `logits` as the PyTorch classifier.

    `session` is an engine's session (`make_session` or `openvino_session`); everything else here is engine-neutral.
    `engine` is "onnxruntime" or "openvino", `precision` "fp32", "bf16" or "int8" (from the manifest; a manifest
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
                raise RobertaInferError(f"inputs of {src_tokens.shape[1]} ids do not fit this bundle's fixed length {self.static_seq}")
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
