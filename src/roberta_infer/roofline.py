"""The work a forward pass does and what this machine's GEMMs reach: `compare` sets each mode's GOP/s against the
fp32 or int8 GEMM peak measured here.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .hardware import physical_cores
from .timing import best_seconds


def forward_flops(arch: dict, batch: int, seq: int, classes: int = 2) -> float:
    """Multiply-adds ×2 of the matmuls of one forward pass of `batch` rows of `seq` tokens: per layer the Q, K, V and
    output projections (4 × 2·h² per token), the FFN (2 × 2·h·f per token), attention scores QKᵀ and their mix with V
    (2 × 2·seq·h per token); then the head's dense and output layers on the first token. Softmax, layer norms, GELU,
    embeddings and (de)quantisation are not counted. The counting follows Kaplan et al. 2020, "Scaling Laws for
    Neural Language Models", Table 1 (2 operations per multiply-add; there the attention term counts QKᵀ only, here
    QKᵀ and the mix with V); it is the same for fp32, bf16 and int8 runs, as operations, not by data type.
    """
    h, f, tokens = arch["hidden"], arch["ffn"], batch * seq
    per_layer = 8 * tokens * h * h + 4 * tokens * h * f + 4 * batch * seq * seq * h
    return arch["layers"] * per_layer + 2 * batch * (h * h + h * classes)


def gemm_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    """Best of `repeats` n×n fp32 matmuls (PyTorch's BLAS, its current threads): what this CPU's GEMM reaches, in
    GFLOP/s (2·n³ operations per matmul)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def int8_gemm_peak_gops(n: int = 4096, repeats: int = 5, threads: int | None = None) -> float:
    """Best of `repeats` n×n int8 matmuls, uint8 activations × int8 weights → int32 (ONNX Runtime's MatMulInteger on
    the CPU, the weights a constant as in a quantised model, `threads` intra-op threads, default all physical cores):
    what this CPU's int8 GEMM reaches through MLAS's kernels (AVX-512 VNNI, AVX-VNNI or AMX, whichever the CPU has),
    in GOP/s (2·n³ operations per matmul, as `forward_flops` counts).

    A bare GEMM graph built with onnx.helper, not a bundle, so its session is made here rather than by `engines`.
    """
    rng = np.random.default_rng(0)
    weights = onnx.numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_gemm",
                                   [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, [n, n])],
                                   [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.INT32, [n, n])], [weights])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    session = ort.InferenceSession(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    return 2 * n**3 / best_seconds(lambda: session.run(None, feed), repeats) / 1e9


def peak_kind(precision: str) -> str | None:
    """Which measured GEMM peak a mode of `precision` (e.g. "int8", "fp32", "f32 (default hint)") is set against:
    "fp32", "int8", or None (bf16: no bf16 peak is measured)."""
    kind = precision.split()[0]
    return {"fp32": "fp32", "f32": "fp32", "int8": "int8"}.get(kind)
