"""Optimise stage: every layer's attention fused, logits unchanged, and unusable ONNX files refused cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxslim
import pytest
from conftest import tiny_classifier
from onnx import TensorProto, helper
from transformers import RobertaForSequenceClassification

from roberta_infer.engines import make_session
from roberta_infer.errors import RobertaInferError
from roberta_infer.export import deviation, export_onnx
from roberta_infer.optimize import inspect_onnx, optimize_onnx

PAD = 1
HEADS, HIDDEN = 4, 32


def optimize(src: Path, dst: Path, layers: int) -> dict[str, int]:
    return optimize_onnx(src, dst, num_heads=HEADS, hidden_size=HIDDEN, num_layers=layers)


def save_graph(path: Path, inputs: list, outputs: list, nodes: list) -> Path:
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, outputs)), str(path))
    return path


@pytest.fixture(scope="module")
def three_layers() -> RobertaForSequenceClassification:
    return tiny_classifier(num_labels=2, layers=3, seed=0)


@pytest.fixture(scope="module")
def exported(three_layers, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("optimize") / "model.onnx"
    export_onnx(three_layers, PAD, path, batch_size=None, seq_len=None)
    return path


@pytest.fixture(scope="module")
def optimized(exported) -> tuple[Path, dict[str, int]]:
    path = exported.with_name("model.opt.onnx")
    return path, optimize(exported, path, 3)


def test_every_layer_is_fused(exported, optimized):
    _, counts = optimized
    assert counts["Attention"] == 3
    assert counts["SkipLayerNormalization"] == 6 and counts["BiasGelu"] == 3
    assert counts["nodes"] < len(onnx.load(str(exported)).graph.node) / 4


def test_optimized_model_keeps_logits_and_interface(three_layers, optimized):
    path, _ = optimized
    left_padded = np.array([[PAD, PAD, 0, 5, 6, 2], [0, 7, 8, 9, 10, 2]])  # exact only with the raw 0/1 mask format
    fidelity = deviation(three_layers, PAD, make_session(path, threads=1), [(1, 3), (3, 16), (4, 40)], real_inputs=left_padded)
    assert len(fidelity["cases"]) == 4 and fidelity["max_abs_diff"] <= 1e-4
    output = inspect_onnx(path).graph.output[0]
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", 2]


def test_static_three_class_model_is_fused(tmp_path):
    model = tiny_classifier(num_labels=3, layers=2, seed=1)
    export_onnx(model, PAD, tmp_path / "static.onnx", batch_size=2, seq_len=12)
    assert optimize(tmp_path / "static.onnx", tmp_path / "static.opt.onnx", 2)["Attention"] == 2
    assert deviation(model, PAD, make_session(tmp_path / "static.opt.onnx", threads=1), [(2, 12)])["max_abs_diff"] <= 1e-4


def test_sdpa_model_is_exported_fusable(tmp_path):
    model = tiny_classifier(num_labels=2, layers=2, seed=2, attn="sdpa")
    export_onnx(model, PAD, tmp_path / "sdpa.onnx", batch_size=None, seq_len=None)
    assert optimize(tmp_path / "sdpa.onnx", tmp_path / "sdpa.opt.onnx", 2)["Attention"] == 2


def test_simplifying_before_fusion_would_lose_attention(exported, tmp_path):
    """The pitfall optimize_onnx avoids by fusing first: the same export, slimmed first, fuses nothing."""
    onnx.save(onnxslim.slim(onnx.load(str(exported))), str(tmp_path / "slim_first.onnx"))
    with pytest.raises(RobertaInferError, match="only 0 of 3 attention layers"):
        optimize(tmp_path / "slim_first.onnx", tmp_path / "out.onnx", 3)
    assert not (tmp_path / "out.onnx").exists()


def test_missing_attention_layers_are_reported(exported, tmp_path):
    with pytest.raises(RobertaInferError, match="only 3 of 4 attention layers"):
        optimize(exported, tmp_path / "out.onnx", 4)


def test_heads_must_divide_hidden_size(exported, tmp_path):
    with pytest.raises(RobertaInferError, match="not divisible"):
        optimize_onnx(exported, tmp_path / "out.onnx", num_heads=5, hidden_size=HIDDEN, num_layers=3)


def corrupt(tmp: Path) -> Path:
    (tmp / "corrupt.onnx").write_bytes(b"\x00garbage\xff" * 16)
    return tmp / "corrupt.onnx"


def add_model(tmp: Path) -> Path:
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
    return save_graph(tmp / "add.onnx", [x], [y], [helper.make_node("Add", ["x", "x"], ["y"])])


def float_tokens(tmp: Path) -> Path:
    tokens = helper.make_tensor_value_info("src_tokens", TensorProto.FLOAT, ["batch", "sequence"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])
    return save_graph(tmp / "float.onnx", [tokens], [output], [helper.make_node("Identity", ["src_tokens"], ["output"])])


def no_class_dim(tmp: Path) -> Path:
    tokens = helper.make_tensor_value_info("src_tokens", TensorProto.INT64, ["batch", "sequence"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"])
    return save_graph(tmp / "flat.onnx", [tokens], [output], [helper.make_node("Identity", ["src_tokens"], ["output"])])


@pytest.mark.parametrize("make, message", [
    (corrupt, "not a readable ONNX model"),
    (lambda tmp: tmp / "missing.onnx", "not a readable ONNX model"),
    (add_model, "needs input 'src_tokens'"),
    (float_tokens, "needs input 'src_tokens' int64"),
    (no_class_dim, "float \\[batch, classes\\]"),
])
def test_unusable_onnx_is_refused_in_one_line(make, message, tmp_path):
    path = make(tmp_path)
    with pytest.raises(RobertaInferError, match=message) as error:
        inspect_onnx(path)
    assert "\n" not in str(error.value)
    with pytest.raises(RobertaInferError, match=message):
        optimize(path, tmp_path / "out.onnx", 1)
