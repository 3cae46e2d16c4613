"""OpenVINO on the CPU: the compiled model of a bundle's `model.xml` + `model.bin` (imported only when one is compiled)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import RobertaInferError
from ..hardware import physical_cores
from .names import INPUT_NAME, check_names

if TYPE_CHECKING:  # importing OpenVINO costs a second: only a command that compiles a model pays it
    import openvino

# OpenVINO's INFERENCE_PRECISION_HINT per bundle precision (its CPU default is bf16 wherever the CPU has bf16). int8
# leaves the ops NNCF does not quantize (attention's matmuls, softmax, layer norms) to bf16 where the CPU has it: a
# median 1.07x sentences/s over f32 on an AVX-512 BF16 CPU without AMX (6 interleaved pairs); the accuracy gate
# measures int8 with this hint. A CPU without bf16 runs f32.
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


class OpenVinoSession:
    """An OpenVINO compiled model behind the engine-neutral session surface, with `streams` CPU streams.

    Each stream runs one call at a time on its share of the threads. `run` splits a batch's rows across the streams
    and runs the parts at once, so one call still uses every core. An infer request serves one call at a time, so
    each calling thread gets its own set (a server runs calls from several threads).
    """

    engine = "openvino"
    provider = "CPU"

    def __init__(self, compiled: openvino.CompiledModel) -> None:
        self.compiled = compiled
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        self.input_shape = [dim.get_length() if dim.is_static else name
                            for dim, name in zip(compiled.input(0).get_partial_shape(), ("batch", "sequence"))]
        self.output_shape = [dim.get_length() if dim.is_static else name
                             for dim, name in zip(compiled.output(0).get_partial_shape(), ("batch", "classes"))]
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


def compile_openvino(model: Path | openvino.Model, config: dict) -> openvino.CompiledModel:
    """`model` (a `model.xml` path or an `openvino.Model`) compiled for OpenVINO's CPU plugin with `config` (its
    properties, e.g. {"INFERENCE_NUM_THREADS": 2}; {} for OpenVINO's defaults), our input/output names checked.

    Raises RobertaInferError for a file OpenVINO cannot compile or a graph whose names are not ours.
    """
    import openvino

    try:
        compiled = openvino.Core().compile_model(model if isinstance(model, openvino.Model) else str(model), "CPU", config)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise RobertaInferError(f"OpenVINO cannot load {model}: {str(e).strip().splitlines()[0][:300]}") from None
    check_names(model, [i.get_any_name() for i in compiled.inputs], [o.get_any_name() for o in compiled.outputs])
    return compiled


def openvino_session(model: Path | openvino.Model, *, threads: int | None = None, precision: str = "fp32",
                     streams: int | None = None) -> OpenVinoSession:
    """An OpenVINO CPU compiled model of `model` (a `model.xml` path or an `openvino.Model`) with our names checked.

    `precision` (a bundle precision, see OPENVINO_HINTS) sets INFERENCE_PRECISION_HINT explicitly: OpenVINO's own
    default is bf16 on any CPU with bf16 instructions, which is not fp32's result. `threads` (default: all physical
    cores) are shared by `streams` streams (default: one per thread). Measured on a shared 2-core machine (int8
    roberta-base shape, all SST-2 dev in length-sorted batches of 32, 8 interleaved pairs): 2 streams × 1 thread
    ran a median 1.35× (at worst 1.03×) the sentences/s of 1 stream × 2 threads; an AsyncInferQueue pipelining whole
    batches gained nothing over these split calls (0.96×), nor on one stream (0.93×), so it is not used. One row
    alone cannot be split and takes ~1.3× as long on one thread: a caller of single rows asks for `streams=1`.
    Raises RobertaInferError for an unknown precision or a file OpenVINO cannot compile.
    """
    if precision not in OPENVINO_HINTS:
        raise RobertaInferError(f"unknown precision {precision!r}: choose one of {', '.join(OPENVINO_HINTS)}")
    threads = threads or physical_cores()
    streams = max(1, min(streams or threads, threads))
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision], "INFERENCE_NUM_THREADS": threads,
              "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
    if streams > 1:
        config["NUM_STREAMS"] = streams
    return OpenVinoSession(compile_openvino(model, config))
