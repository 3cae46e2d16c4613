"""Fuse an exported RoBERTa classifier with ONNX Runtime's transformer optimizer, then simplify it.

The order matters: onnxslim (like onnxsim) folds and rewrites the attention subgraph into a form
the fusion rules no longer recognise — slimming first leaves no `Attention` fused at all — so the
optimizer runs on the raw export and onnxslim only tidies what is left afterwards.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from .engines import INPUT_NAME, OUTPUT_NAME
from .errors import RobertaInferError

REPORTED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
                "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "MatMul", "Gemm",
                "QAttention", "MatMulInteger", "DynamicQuantizeLinear")  # the last three: int8 bundles


def optimize_onnx(src: Path, dst: Path, *, num_heads: int, hidden_size: int, num_layers: int,
                  last_layer: str = "full") -> dict[str, int]:
    """Fuse then slim `src` into `dst`; returns op counts and refuses a result with unfused attention layers.

    `last_layer` is the export's (`export.TokensToLogits`): a "cls-only" graph's last layer attends from `<s>`
    alone, a form ONNX Runtime's fusion does not match (it stays MatMul/Softmax), so there every layer but the last
    must be fused."""
    if num_heads < 1 or hidden_size % num_heads:
        raise RobertaInferError(f"hidden size {hidden_size} is not divisible into {num_heads} attention heads")
    import onnxslim  # deferred (as `fuse`'s optimizer, ~0.4 s): building a bundle needs them, loading one does not

    model = onnxslim.slim(fuse(inspect_onnx(src), num_heads, hidden_size))
    counts = op_counts(model)
    fused = counts["Attention"] + counts["MultiHeadAttention"]
    expected = fusable_layers(num_layers, last_layer)
    if fused < expected:
        raise RobertaInferError(f"{src}: only {fused} of {expected} attention layers were fused by ONNX Runtime "
                                "(export with eager attention and the TorchScript exporter, and do not simplify before)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return counts


def fusable_layers(num_layers: int, last_layer: str) -> int:
    """How many of `num_layers` layers' attention the fusion must find: all, or all but a "cls-only" last layer."""
    return num_layers - (last_layer == "cls-only")


def fuse(model: onnx.ModelProto, num_heads: int, hidden_size: int) -> onnx.ModelProto:
    """ONNX Runtime's Python BERT fusions only (opt_level 0), fp32, no device-specific kernels.

    opt_level 1 would first run ONNX Runtime's own basic passes, whose constant folding and MatMul+Add→Gemm
    rewrite of a static-shape export hide the attention pattern too (0 of 3 layers fused on a tiny model).
    """
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions  # deferred: ~0.4 s
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # Keep the raw 0/1 padding mask: the default 1-D "mask index" is only exact when padding is on the right.
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    optimized = optimize_model(model, model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=0, use_gpu=False)
    return optimized.model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many of each fused (and main unfused) op the graph holds, plus its total node count."""
    ops = Counter(node.op_type for node in model.graph.node)
    return {op: ops[op] for op in REPORTED_OPS} | {"nodes": len(model.graph.node)}


def inspect_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file and make sure it is a classifier of our form, with a one-line error if not."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, OSError, onnx's own errors: all mean "unusable file"
        raise RobertaInferError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from exc
    check_interface(model, path)
    return model


def check_interface(model: onnx.ModelProto, path: Path) -> None:
    """`src_tokens` int64 [batch, seq] in and `output` float32 [batch, classes] out, as `export_onnx` writes."""
    inputs = {i.name: i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}}
    outputs = {o.name: o for o in model.graph.output}
    expected = f"a RoBERTa classifier needs input {INPUT_NAME!r} int64 [batch, seq] and output {OUTPUT_NAME!r} " \
               f"float [batch, classes]; found inputs {sorted(inputs)} and outputs {sorted(outputs)}"
    if set(inputs) != {INPUT_NAME} or OUTPUT_NAME not in outputs:
        raise RobertaInferError(f"{path}: {expected}")
    tokens, logits = inputs[INPUT_NAME].type.tensor_type, outputs[OUTPUT_NAME].type.tensor_type
    classes = logits.shape.dim[-1].dim_value if len(logits.shape.dim) == 2 else 0
    if (tokens.elem_type != onnx.TensorProto.INT64 or len(tokens.shape.dim) != 2
            or logits.elem_type != onnx.TensorProto.FLOAT or classes < 1):
        raise RobertaInferError(f"{path}: {expected}")
