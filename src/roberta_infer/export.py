"""Export a RoBERTa classifier to ONNX or OpenVINO IR and prove the export computes the same logits as PyTorch.

Three separate concerns, as in Optimum's exporter: WHAT the graph looks like (`OnnxSpec`: names, dtypes, dynamic
axes), HOW it is produced (`export_onnx`, `export_openvino`: one entry point per engine, both from the same
`TokensToLogits` module) and CHECK that it is right (`check_fidelity`, on any engine's session).

The TorchScript exporter (`dynamo=False`) is used on purpose: with eager attention it emits the plain
MatMul/Softmax attention pattern that ONNX Runtime's transformer optimizer fuses into `Attention`;
SDPA attention (the transformers default) exports a pattern it cannot fuse. PyTorch has deprecated that exporter.
Its successor (`dynamo=True`, with onnxscript 0.7.2, torch 2.13), given the same eager-attention module, gave a
graph in which ONNX Runtime 1.32's fusion found no `Attention` in either layer of a 2-layer model (the layer norms
and GELU still fused: 99 nodes against 61), so `optimize_onnx` would refuse it. A test
(`test_the_torchscript_exporter_still_gives_the_attention_onnx_runtime_fuses`) says when an upgrade changes this.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from transformers import RobertaForSequenceClassification
from transformers.masking_utils import create_bidirectional_mask

from .checkpoint import max_tokens
from .engines import INPUT_NAME, OUTPUT_NAME, OpenVinoSession, OrtSession
from .errors import RobertaInferError, check_positive
from .runtime import LAST_LAYERS

BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"
# Warnings the TorchScript exporter always raises on this model (besides DeprecationWarnings about the exporter
# itself, silenced as a category): they are expected and say nothing to a user.
_EXPECTED_WARNINGS = (
    "Converting a tensor to a Python boolean might cause the trace to be incorrect",  # a shape check in masking_utils
    "Exporting aten::index operator of advanced indexing",  # padding-mask lookup with non-negative aranges
    "`is_gradient_checkpointing` is deprecated",  # transformers, read by openvino.convert_model's tracer
)


@dataclass(frozen=True)
class OnnxSpec:
    """WHAT is exported: `src_tokens` int64 [batch, seq] → `output` float32 [batch, classes]; a None size is dynamic."""

    batch_size: int | None
    seq_len: int | None
    opset: int = 17

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        token_axes = {axis: name for axis, name, size in
                      ((0, BATCH_AXIS, self.batch_size), (1, SEQUENCE_AXIS, self.seq_len)) if size is None}
        output_axes = {0: BATCH_AXIS} if self.batch_size is None else {}
        return {INPUT_NAME: token_axes, OUTPUT_NAME: output_axes}

    def input_shape(self) -> list[int]:
        """`src_tokens`' shape with -1 for a dynamic axis (OpenVINO's convention)."""
        return [self.batch_size or -1, self.seq_len or -1]

    def trace_shape(self) -> tuple[int, int]:
        """Sizes to trace with: dynamic axes get sizes above 1 so the tracer cannot specialise them."""
        return (self.batch_size or 2, self.seq_len or 8)


class TokensToLogits(torch.nn.Module):
    """`src_tokens` int64 [batch, seq] in, logits float32 [batch, classes] out: the padding mask is computed inside
    the graph, as fairseq does.

    `last_layer` (runtime.LAST_LAYERS): "full" runs the Hugging Face model as it is; "cls-only" runs `ClsOnlyModel`,
    the same logits with the last layer computed for `<s>` only. Raises RobertaInferError for another `last_layer`.
    """

    def __init__(self, model: RobertaForSequenceClassification, pad_id: int, last_layer: str = "full") -> None:
        super().__init__()
        if last_layer not in LAST_LAYERS:
            raise RobertaInferError(f"unknown last-layer mode {last_layer!r}: choose one of {', '.join(LAST_LAYERS)}")
        self.model = model if last_layer == "full" else ClsOnlyModel(model)
        self.pad_id = pad_id
        self.last_layer = last_layer

    def forward(self, src_tokens: torch.Tensor) -> torch.Tensor:
        # Position ids are derived by RoBERTa itself from the pad id, so only the attention mask is passed.
        padding = (src_tokens != self.pad_id).long()
        if self.last_layer == "full":
            return self.model(input_ids=src_tokens, attention_mask=padding).logits
        return self.model(src_tokens, padding)


class ClsOnlyModel(torch.nn.Module):
    """A RobertaForSequenceClassification (inference only: no dropout) whose last layer runs for `<s>` alone.

    The classification head reads only `<s>` (position 0) of the last layer's output, and in a post-LN transformer
    layer (Vaswani et al. 2017; RoBERTa's) position 0's output depends on the other positions only through the
    attention's keys and values. So layers 0..L-2 are the Hugging Face layers themselves (with eager attention: the
    pattern ONNX Runtime fuses), and the last layer computes keys and values at every position but its query,
    attention, attention output, FFN and LayerNorms at position 0 only, which saves about 10/12 of one layer's
    per-token work (≈14 % of a 6-layer encoder's). These wrappers share the model's weights and mirror its module tree
    (roberta.encoder.layer.N.attention.self.query, …), so exported node names are the full model's.
    forward: src_tokens int64 [batch, seq] and the padding mask (1 = token) int64 [batch, seq] → logits [batch, classes].
    """

    def __init__(self, model: RobertaForSequenceClassification) -> None:
        super().__init__()
        self.roberta = _Roberta(model.roberta)
        self.classifier = model.classifier

    def forward(self, src_tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.roberta(src_tokens, padding))


class _Roberta(torch.nn.Module):
    """RobertaModel's embeddings and attention mask (made as RobertaModel.forward makes them, for the layers it runs
    as they are), then `_Encoder`."""

    def __init__(self, roberta: torch.nn.Module) -> None:
        super().__init__()
        self.config = roberta.config
        self.embeddings = roberta.embeddings
        self.encoder = _Encoder(roberta.encoder)

    def forward(self, src_tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids=src_tokens)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=padding)
        # The last layer's own additive mask [batch, 1, 1, seq] (0 at tokens, the dtype's minimum at padding), whatever
        # form the attention implementation's mask takes.
        additive = (1 - padding[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        return self.encoder(hidden, mask, additive)


class _Encoder(torch.nn.Module):
    """Layers 0..L-2 as they are (with `mask`, their attention implementation's), then the last as `_ClsOnlyLayer`
    (with the `additive` mask [batch, 1, 1, seq]): hidden [batch, seq, hidden] → position 0's output [batch, 1, hidden]."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        *layers, last = encoder.layer
        self.layer = torch.nn.ModuleList([*layers, _ClsOnlyLayer(last)])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, additive: torch.Tensor) -> torch.Tensor:
        *layers, last = self.layer
        for layer in layers:
            hidden = layer(hidden, mask)
        return last(hidden, additive)


class _ClsOnlyLayer(torch.nn.Module):
    """RobertaLayer.forward for position 0 only: attention (`_ClsOnlyAttention`), then the layer's own FFN."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.attention = _ClsOnlyAttention(layer.attention)
        self.intermediate = layer.intermediate
        self.output = layer.output

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class _ClsOnlyAttention(torch.nn.Module):
    """RobertaAttention for position 0: self-attention of its query over every key, then the layer's own output
    projection + residual + LayerNorm (RobertaSelfOutput)."""

    def __init__(self, attention: torch.nn.Module) -> None:
        super().__init__()
        self.self = _ClsOnlySelfAttention(attention.self)
        self.output = attention.output

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        first = hidden[:, :1]
        return self.output(self.self(first, hidden, mask), first)


class _ClsOnlySelfAttention(torch.nn.Module):
    """Eager scaled dot-product attention (transformers' eager_attention_forward) of one query position over all:
    query from `first` [batch, 1, hidden], keys and values from `hidden` [batch, seq, hidden], the additive `mask`
    [batch, 1, 1, seq] → [batch, 1, hidden]."""

    def __init__(self, attention: torch.nn.Module) -> None:
        super().__init__()
        self.query, self.key, self.value = attention.query, attention.key, attention.value
        self.heads, self.head_size = attention.num_attention_heads, attention.attention_head_size
        self.scaling = attention.scaling

    def forward(self, first: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = hidden.shape[0]
        query = self.query(first).view(batch, 1, self.heads, self.head_size).transpose(1, 2)
        key = self.key(hidden).view(batch, -1, self.heads, self.head_size).transpose(1, 2)
        value = self.value(hidden).view(batch, -1, self.heads, self.head_size).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), value)
        return context.transpose(1, 2).reshape(batch, 1, self.heads * self.head_size)


# RoBERTa numbers positions with a cumulative sum over the mask: ONNX CumSum exists from opset 11 (ONNX Operators.md).
MIN_OPSET = 11


def supported_opsets() -> range:
    """Opsets `export_onnx` can write here: from MIN_OPSET to the highest both the installed PyTorch TorchScript
    exporter (torch.onnx._constants) and the installed onnx package (onnx.defs.onnx_opset_version) know."""
    import onnx.defs
    from torch.onnx import _constants

    exporter = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    return range(MIN_OPSET, min(exporter, onnx.defs.onnx_opset_version()) + 1)


def export_onnx(model: RobertaForSequenceClassification, pad_id: int, path: Path, *,
                batch_size: int | None, seq_len: int | None, opset: int = 17, last_layer: str = "full") -> None:
    """Write `model` as a self-contained .onnx (weights inside); batch_size/seq_len None make that axis dynamic;
    `last_layer` as `TokensToLogits`'."""
    spec = OnnxSpec(batch_size, seq_len, opset)
    with tracing(model, pad_id, spec, last_layer) as (module, tokens):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            module, (tokens,), str(path), dynamo=False, opset_version=spec.opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=spec.dynamic_axes(),
            do_constant_folding=True,
        )


def export_openvino(model: RobertaForSequenceClassification, pad_id: int, path: Path, *,
                    batch_size: int | None, seq_len: int | None, last_layer: str = "full") -> None:
    """Write `model` as OpenVINO IR (`path` = model.xml, weights beside it in model.bin, fp32 kept: no fp16
    compression) with `openvino.convert_model`; batch_size/seq_len None make that axis dynamic; `last_layer` as
    `TokensToLogits`'."""
    import openvino as ov

    spec = OnnxSpec(batch_size, seq_len)
    with tracing(model, pad_id, spec, last_layer) as (module, tokens):
        converted = ov.convert_model(module, example_input=(tokens,), input=[ov.PartialShape(spec.input_shape())])
    converted.inputs[0].get_tensor().set_names({INPUT_NAME})
    converted.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(path), compress_to_fp16=False)


@contextmanager
def tracing(model: RobertaForSequenceClassification, pad_id: int, spec: OnnxSpec,
            last_layer: str = "full") -> Iterator[tuple[torch.nn.Module, torch.Tensor]]:
    """The module every exporter traces (`TokensToLogits` with `last_layer`, eager attention, no grad, the exporters'
    expected warnings silenced) and a random batch of `spec`'s trace shape; refuses sizes the model cannot take."""
    check_positive({"batch size": spec.batch_size, "sequence length": spec.seq_len})
    if spec.seq_len is not None and spec.seq_len > max_tokens(model):
        raise RobertaInferError(f"sequence length {spec.seq_len} exceeds the model's {max_tokens(model)} positions")
    tokens = torch.from_numpy(random_tokens(model, pad_id, spec.trace_shape(), np.random.default_rng(0)))
    with eager_attention(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield TokensToLogits(model, pad_id, last_layer).eval(), tokens


@contextmanager
def eager_attention(model: RobertaForSequenceClassification) -> Iterator[None]:
    """Trace with eager attention (the only fusable pattern), then give the caller back its own setting."""
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(original)


def random_tokens(model: RobertaForSequenceClassification, pad_id: int, shape: tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """`<s> … </s>` rows with random right padding; the first row is full, the last (if several) only `<s></s>`."""
    batch, seq = shape
    cfg = model.config
    specials = np.array([cfg.bos_token_id, cfg.eos_token_id, pad_id])
    words = np.setdiff1d(np.arange(cfg.vocab_size), specials)
    tokens = np.full(shape, pad_id, dtype=np.int64)
    lengths = rng.integers(min(2, seq), seq + 1, size=batch)
    lengths[0] = seq
    if batch > 1:
        lengths[-1] = min(2, seq)
    for row, length in enumerate(lengths):
        tokens[row, :length] = rng.choice(words, size=length)
        tokens[row, 0], tokens[row, length - 1] = cfg.bos_token_id, cfg.eos_token_id
    return tokens


def check_fidelity(model: RobertaForSequenceClassification, pad_id: int, session: OrtSession | OpenVinoSession,
                   shapes: list[tuple[int, int]], *, real_inputs: np.ndarray | None = None,
                   tol: float = 1e-4, seed: int = 0) -> dict:
    """`deviation` of any engine's session from PyTorch; raises RobertaInferError when max |Δlogit| is above `tol`."""
    result = deviation(model, pad_id, session, shapes, real_inputs=real_inputs, seed=seed)
    worst = max(result["cases"], key=result["cases"].get)
    if result["max_abs_diff"] > tol:
        raise RobertaInferError(f"{session.engine} logits differ from PyTorch by {result['max_abs_diff']:.2e} "
                                f"on {worst} (tolerance {tol:.0e})")
    return result


def deviation(model: RobertaForSequenceClassification, pad_id: int, session: OrtSession | OpenVinoSession,
              shapes: list[tuple[int, int]], *, real_inputs: np.ndarray | None = None, seed: int = 0) -> dict:
    """Max |Δlogit| between PyTorch fp32 and an engine's session (`engines.make_session` / `openvino_session`),
    overall and per case.

    Returns {"max_abs_diff": worst, "cases": {"random 4x16": …, "real 8x64": …}, "label_agreement": fraction of rows
    whose argmax agrees, "rows": how many}: random padded batches at each shape plus the caller's real inputs.
    A static export only accepts its own shape (RobertaInferError otherwise).
    """
    rng = np.random.default_rng(seed)
    cases = {f"random {b}x{s}": random_tokens(model, pad_id, (b, s), rng) for b, s in shapes}
    if real_inputs is not None:
        cases[f"real {real_inputs.shape[0]}x{real_inputs.shape[1]}"] = real_inputs.astype(np.int64)
    if not cases:
        raise RobertaInferError("fidelity check needs at least one shape or real inputs")
    deltas, agree, rows = {}, 0, 0
    for name, tokens in cases.items():
        check_shape(session.input_shape, tokens.shape, max_tokens(model), name)
        expected = torch_logits(model, pad_id, tokens)
        actual = session.run(tokens)
        deltas[name] = float(np.max(np.abs(actual - expected)))
        agree += int((actual.argmax(1) == expected.argmax(1)).sum())
        rows += len(tokens)
    return {"max_abs_diff": max(deltas.values()), "cases": deltas, "label_agreement": agree / rows, "rows": rows}


def check_shape(expected: list[int | str], shape: tuple[int, ...], limit: int, case: str) -> None:
    """Refuse inputs the graph was not exported for (a static shape) or the position table cannot hold."""
    if any(isinstance(want, int) and want != got for want, got in zip(expected, shape)):
        raise RobertaInferError(f"{case}: the model was exported for shape {expected}, got {list(shape)}")
    if shape[1] > limit:
        raise RobertaInferError(f"{case}: sequence length {shape[1]} exceeds the model's {limit} positions")


@torch.inference_mode()
def torch_logits(model: RobertaForSequenceClassification, pad_id: int, tokens: np.ndarray) -> np.ndarray:
    return TokensToLogits(model, pad_id)(torch.from_numpy(tokens)).float().numpy()
