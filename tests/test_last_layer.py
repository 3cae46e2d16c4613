"""The last layer for `<s>` only ("cls-only"): the same logits as transformers' full model on both engines, static and
dynamic shapes, padded rows included; every other layer's attention still fused; the graph really computes the last
layer at one position; the int8 search still finds the last layer's MatMuls by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_classifier
from transformers import RobertaForSequenceClassification

from roberta_infer.accuracy_aware import matmul_groups
from roberta_infer.bundle import build_bundle, check_build_options
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.engines import make_session, openvino_session
from roberta_infer.errors import RobertaInferError
from roberta_infer.export import ClsOnlyModel, deviation, export_onnx, export_openvino
from roberta_infer.optimize import optimize_onnx

PAD = 1
LAYERS, HEADS, HIDDEN = 3, 4, 32
# Rows of different lengths, padded on the right, one on the left, one with no padding at all.
PADDED = np.array([[0, 5, 6, 7, 8, 9, 10, 11, 2],
                   [0, 12, 13, 2, PAD, PAD, PAD, PAD, PAD],
                   [0, 2, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
                   [PAD, PAD, PAD, 0, 14, 15, 16, 17, 2]])
DYNAMIC_SHAPES = [(1, 2), (1, 9), (3, 17), (5, 40)]


def hf_logits(model: RobertaForSequenceClassification, tokens: np.ndarray) -> np.ndarray:
    """transformers' own forward of the whole model: the reference."""
    ids = torch.from_numpy(tokens)
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=(ids != PAD).long()).logits.numpy()


@pytest.fixture(scope="module")
def model() -> RobertaForSequenceClassification:
    return tiny_classifier(num_labels=2, layers=LAYERS, seed=3)


@pytest.fixture(scope="module")
def raw(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cls_only") / "raw.onnx"
    export_onnx(model, PAD, path, batch_size=None, seq_len=None, last_layer="cls-only")
    return path


@pytest.fixture(scope="module")
def fused(raw) -> tuple[Path, dict[str, int]]:
    path = raw.with_name("fused.onnx")
    return path, optimize_onnx(raw, path, num_heads=HEADS, hidden_size=HIDDEN, num_layers=LAYERS, last_layer="cls-only")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("tokens", [PADDED, PADDED[:1]], ids=["padded", "no padding"])
def test_pytorch_module_gives_transformers_logits(tokens, attn):
    model = tiny_classifier(num_labels=2, layers=LAYERS, seed=3, attn=attn)
    ids = torch.from_numpy(tokens)
    with torch.inference_mode():
        reduced = ClsOnlyModel(model)(ids, (ids != PAD).long()).numpy()
    np.testing.assert_allclose(reduced, hf_logits(model, tokens), atol=1e-5)


def test_fused_graph_gives_transformers_logits(model, fused):
    path, _ = fused
    session = make_session(path, threads=1)
    np.testing.assert_allclose(session.run(PADDED), hf_logits(model, PADDED), atol=1e-4)
    assert deviation(model, PAD, session, DYNAMIC_SHAPES)["max_abs_diff"] <= 1e-4


def test_every_layer_but_the_last_is_fused(fused):
    _, counts = fused
    assert counts["Attention"] + counts["MultiHeadAttention"] == LAYERS - 1
    assert counts["SkipLayerNormalization"] == 2 * LAYERS, "the last layer's residual LayerNorms fuse too"


def test_a_reduced_graph_checked_as_full_is_refused(raw, tmp_path):
    with pytest.raises(RobertaInferError, match=f"only {LAYERS - 1} of {LAYERS} attention layers"):
        optimize_onnx(raw, tmp_path / "out.onnx", num_heads=HEADS, hidden_size=HIDDEN, num_layers=LAYERS)


def test_static_export_gives_transformers_logits(model, tmp_path):
    export_onnx(model, PAD, tmp_path / "raw.onnx", batch_size=4, seq_len=9, last_layer="cls-only")
    optimize_onnx(tmp_path / "raw.onnx", tmp_path / "static.onnx", num_heads=HEADS, hidden_size=HIDDEN, num_layers=LAYERS,
                  last_layer="cls-only")
    np.testing.assert_allclose(make_session(tmp_path / "static.onnx", threads=1).run(PADDED), hf_logits(model, PADDED), atol=1e-4)


def last_layer_widths(path: Path, layers: int) -> dict[str, int]:
    """The sequence size of the last layer's weight MatMul outputs, from ONNX shape inference on a static graph."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    prefix = f"/model/roberta/encoder/layer.{layers - 1}/"
    return {node.name[len(prefix):]: shapes[node.output[0]][1] for node in graph.node
            if node.op_type == "MatMul" and node.name.startswith(prefix) and node.input[1] in {t.name for t in graph.initializer}}


def test_only_keys_and_values_are_computed_at_every_position(model, tmp_path):
    export_onnx(model, PAD, tmp_path / "full.onnx", batch_size=2, seq_len=12)
    export_onnx(model, PAD, tmp_path / "cls.onnx", batch_size=2, seq_len=12, last_layer="cls-only")
    assert set(last_layer_widths(tmp_path / "full.onnx", LAYERS).values()) == {12}
    assert last_layer_widths(tmp_path / "cls.onnx", LAYERS) == {
        "attention/self/query/MatMul": 1, "attention/self/key/MatMul": 12, "attention/self/value/MatMul": 12,
        "attention/output/dense/MatMul": 1, "intermediate/dense/MatMul": 1, "output/dense/MatMul": 1}


def test_int8_search_groups_the_last_layer_as_in_the_full_graph(model, raw, tmp_path):
    export_onnx(model, PAD, tmp_path / "full.onnx", batch_size=None, seq_len=None)
    full, _ = matmul_groups(onnx.load(str(tmp_path / "full.onnx")), ("MatMul",))
    reduced, _ = matmul_groups(onnx.load(str(raw)), ("MatMul",))
    assert reduced == full
    assert len(reduced[f"layer:{LAYERS - 1}"]) == 8  # six weight MatMuls and the two of activations


@pytest.mark.parametrize("batch_size, seq_len, shapes", [(None, None, DYNAMIC_SHAPES), (4, 9, [(4, 9)])],
                         ids=["dynamic", "static"])
def test_openvino_gives_transformers_logits(model, tmp_path, batch_size, seq_len, shapes):
    export_openvino(model, PAD, tmp_path / "model.xml", batch_size=batch_size, seq_len=seq_len, last_layer="cls-only")
    session = openvino_session(tmp_path / "model.xml", threads=1, precision="fp32")
    np.testing.assert_allclose(session.run(PADDED), hf_logits(model, PADDED), atol=1e-4)
    assert deviation(model, PAD, session, shapes)["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("last_layer, attention", [("cls-only", 1), ("full", 2)])
def test_bundle_records_its_last_layer(hf_model, tmp_path, last_layer, attention):
    manifest = build_bundle(load_classifier(hf_model), tmp_path / "b", last_layer=last_layer, progress=lambda _: None)
    assert manifest["last_layer"] == last_layer and manifest["fused_ops"]["Attention"] == attention


def test_unknown_last_layer_is_refused():
    with pytest.raises(RobertaInferError, match="unknown last-layer mode 'cls'"):
        check_build_options(batch_size=None, seq_len=None, engine="onnxruntime", precision="fp32", data=None,
                            max_accuracy_drop=0.3, calibration_size=1, last_layer="cls")


def test_export_flag_turns_it_off(hf_model, tmp_path):
    assert main(["export", "--model", str(hf_model), "--out", str(tmp_path / "full"), "--full-last-layer"]) == 0
    manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert manifest["last_layer"] == "full" and manifest["fused_ops"]["Attention"] == 2
