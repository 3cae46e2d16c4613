"""Export stage: the ONNX graph's interface, and PyTorch-vs-ONNX Runtime fidelity on padded inputs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_classifier
from transformers import RobertaForSequenceClassification

from roberta_infer.engines import make_session
from roberta_infer.errors import RobertaInferError
from roberta_infer.export import check_fidelity, deviation, export_onnx

PAD = 1


def ort_logits(path: Path, tokens: np.ndarray) -> np.ndarray:
    return make_session(path, threads=1).run(tokens)


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def binary() -> RobertaForSequenceClassification:
    return tiny_classifier(num_labels=2, layers=2, seed=0)


@pytest.fixture(scope="module")
def dynamic_onnx(binary, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "dynamic.onnx"
    export_onnx(binary, PAD, path, batch_size=None, seq_len=None)
    return path


def test_dynamic_export_matches_pytorch_at_several_shapes(binary, dynamic_onnx):
    fidelity = deviation(binary, PAD, make_session(dynamic_onnx, threads=1), [(1, 2), (1, 9), (3, 16), (5, 40)])
    assert list(fidelity["cases"]) == ["random 1x2", "random 1x9", "random 3x16", "random 5x40"]
    assert fidelity["max_abs_diff"] == max(fidelity["cases"].values()) <= 1e-4


def test_dynamic_graph_interface(dynamic_onnx):
    graph = onnx.load(str(dynamic_onnx)).graph
    assert [i.name for i in graph.input] == ["src_tokens"] and [o.name for o in graph.output] == ["output"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(graph.input[0]) == ["batch", "sequence"] and dims(graph.output[0]) == ["batch", 2]
    assert not dynamic_onnx.with_suffix(".onnx.data").exists()  # weights live inside the .onnx


def test_padding_is_masked_inside_the_graph(dynamic_onnx):
    short = np.array([[0, 17, 42, 99, 2]])
    padded = np.pad(short, ((0, 0), (0, 20)), constant_values=PAD)
    np.testing.assert_allclose(ort_logits(dynamic_onnx, padded), ort_logits(dynamic_onnx, short), atol=1e-5)


def test_real_inputs_with_left_padding_are_checked(binary, dynamic_onnx):
    real = np.array([[PAD, PAD, 0, 5, 6, 2], [0, 7, 8, 9, 10, 2]])
    fidelity = deviation(binary, PAD, make_session(dynamic_onnx, threads=1), [], real_inputs=real)
    assert list(fidelity["cases"]) == ["real 2x6"] and fidelity["max_abs_diff"] <= 1e-4


def test_static_export_three_classes(tmp_path):
    model = tiny_classifier(num_labels=3, layers=3, seed=1)
    path = tmp_path / "static.onnx"
    export_onnx(model, PAD, path, batch_size=2, seq_len=12)
    graph = onnx.load(str(path)).graph
    assert dims(graph.input[0]) == [2, 12] and dims(graph.output[0]) == [2, 3]
    assert deviation(model, PAD, make_session(path, threads=1), [(2, 12)])["max_abs_diff"] <= 1e-4
    with pytest.raises(RobertaInferError, match="exported for shape"):
        check_fidelity(model, PAD, make_session(path, threads=1), [(3, 12)])


def test_fidelity_failure_raises(binary, dynamic_onnx):
    changed = copy.deepcopy(binary)
    with torch.no_grad():
        changed.classifier.out_proj.bias += 0.01
    with pytest.raises(RobertaInferError, match="differ from PyTorch"):
        check_fidelity(changed, PAD, make_session(dynamic_onnx, threads=1), [(2, 8)])


def test_sequences_beyond_the_position_table_are_refused(binary, dynamic_onnx, tmp_path):
    with pytest.raises(RobertaInferError, match="exceeds the model's 40 positions"):
        export_onnx(binary, PAD, tmp_path / "long.onnx", batch_size=1, seq_len=41)
    with pytest.raises(RobertaInferError, match="exceeds the model's 40 positions"):
        check_fidelity(binary, PAD, make_session(dynamic_onnx, threads=1), [(1, 41)])


def test_sdpa_model_keeps_its_attention_setting(tmp_path):
    model = tiny_classifier(num_labels=2, layers=1, seed=2, attn="sdpa")
    export_onnx(model, PAD, tmp_path / "sdpa.onnx", batch_size=None, seq_len=None)
    assert model.config._attn_implementation == "sdpa"  # traced eager (see test_optimize), then restored
    assert deviation(model, PAD, make_session(tmp_path / "sdpa.onnx", threads=1), [(2, 10)])["max_abs_diff"] <= 1e-4


def test_unloadable_onnx_is_a_clean_error(binary, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00not an onnx model\xff" * 8)
    with pytest.raises(RobertaInferError, match="cannot load"):
        check_fidelity(binary, PAD, make_session(corrupt, threads=1), [(1, 4)])


def test_the_torchscript_exporter_still_gives_the_attention_onnx_runtime_fuses(tmp_path):
    """export_onnx relies on torch.onnx.export(dynamo=False), which PyTorch has deprecated; the dynamo exporter's
    graph does not fuse (export.py's note). When an upgrade drops or changes the TorchScript exporter, this says so."""
    from roberta_infer.optimize import fuse, inspect_onnx, op_counts

    model = tiny_classifier(num_labels=2, layers=2, seed=0)
    try:
        export_onnx(model, 1, tmp_path / "m.onnx", batch_size=None, seq_len=None)
    except Exception as e:  # noqa: BLE001 - any failure here is the news this test exists for
        pytest.fail(f"the TorchScript ONNX exporter failed in torch {torch.__version__}: {e}; see export.py's note")
    counts = op_counts(fuse(inspect_onnx(tmp_path / "m.onnx"), num_heads=4, hidden_size=32))
    assert counts["Attention"] == 2, f"torch {torch.__version__}'s TorchScript export no longer fuses: {counts}"
