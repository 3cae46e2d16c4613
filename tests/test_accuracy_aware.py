"""Accuracy-aware int8: on a model built so that plain int8 breaks one layer's FFN on any CPU, ONNX Runtime leaves
that MatMul fp32 (chosen by measurement on held-out train) and OpenVINO's NNCF accuracy control reverts ops; both
then pass the dev gate, and their manifests record what stayed float."""

from __future__ import annotations

import json

import pytest
from conftest import make_int8_fragile_model, self_labelled_data

from roberta_infer.accuracy_aware import matmul_groups, search_float_nodes
from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify

QUIET = {"progress": lambda _: None}
BROKEN = "/roberta/encoder/layer.1/output/dense/MatMul"


@pytest.fixture(scope="module")
def fragile(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("fragile")
    classifier = load_classifier(make_int8_fragile_model(root / "model", shared_data))
    data = self_labelled_data(root / "data", shared_data, lambda texts: classify(classifier, texts))
    build_bundle(classifier, root / "fp32", **QUIET)
    return root, classifier, data


def test_ort_plain_int8_fails_by_far_and_accuracy_aware_passes(fragile, capsys):
    root, _, data = fragile
    base = ["quantize", "--model", str(root / "fp32"), "--data", str(data), "--max-accuracy-drop", "3"]
    assert main([*base, "--out", str(root / "plain"), "--no-accuracy-aware"]) == 2
    err = capsys.readouterr().err
    assert "more than --max-accuracy-drop 3: nothing written" in err and not (root / "plain").exists()
    assert main([*base, "--out", str(root / "aware")]) == 0
    assert "MatMuls left fp32" in capsys.readouterr().out
    q = load_bundle(root / "aware").manifest["quantization"]
    assert any(name.endswith(BROKEN) for name in q["float_nodes"]), q["float_nodes"]
    assert q["gate"]["accuracy_drop_pp"] <= 3
    search = q["accuracy_aware"]
    assert search["float_nodes"] == q["float_nodes"] and search["heldout_drop_pp"] <= 3 == search["max_drop_pp"]
    plain, *rest = search["steps"]
    assert plain["float_groups"] == [] and plain["lost_pp"] > 10, "plain int8 is broken by a wide margin"
    assert {"lost_pp", "flips", "mean_abs_logit_diff", "float_weight_share"} <= set(plain)
    assert search["heldout"]["path"].endswith("train.tsv") and search["heldout"]["kept"] == 300
    assert 0 < search["float_weight_share"] < 1, "a mixed model, not fp32"


def test_search_picks_the_cheapest_passing_group_then_greedy():
    groups = {"kind:a": ["a0", "a1"], "layer:0": ["a0", "b0"], "kind:b": ["b0", "b1"]}
    sizes = {"a0": 1, "a1": 1, "b0": 4, "b1": 4}
    lost = {(): 5.0, ("a0", "a1"): 2.0, ("a0", "b0"): 0.2, ("b0", "b1"): 0.1, ("a0", "a1", "b0", "b1"): 0.0}

    def measure(nodes):
        return {"lost_pp": lost.get(tuple(sorted(nodes)), 3.0), "flips": 0,
                "mean_abs_logit_diff": lost.get(tuple(sorted(nodes)), 3.0)}

    chosen = search_float_nodes(groups, sizes, measure, max_drop=0.3, **QUIET)
    assert chosen["float_groups"] == ["layer:0"] and chosen["float_nodes"] == ["a0", "b0"], "both pass; layer:0 has fewer weights"
    chosen = search_float_nodes(groups, sizes, measure, max_drop=0.05, **QUIET)
    assert chosen["float_groups"] == ["kind:b", "layer:0", "kind:a"] and chosen["heldout_drop_pp"] == 0.0
    with pytest.raises(RobertaInferError, match="even with every quantizable op left fp32"):
        search_float_nodes(groups, sizes, lambda nodes: {"lost_pp": 1.0, "flips": 1, "mean_abs_logit_diff": 1.0},
                           max_drop=0.3, **QUIET)


def test_groups_follow_op_kinds_and_layers(fragile):
    import onnx

    from roberta_infer.export import export_onnx

    root, classifier, _ = fragile
    export_onnx(classifier.model, classifier.encoder.pad, root / "raw.onnx", batch_size=None, seq_len=None, opset=17)
    groups, sizes = matmul_groups(onnx.load(str(root / "raw.onnx")), ("MatMul",))
    # the classifier head's two Gemms, by the names quantize_dynamic gives them as MatMuls
    head = ["node:/model/classifier/dense/Gemm_MatMul", "node:/model/classifier/out_proj/Gemm_MatMul"]
    assert sorted(groups) == ["kind:attention_output", "kind:attention_qkv", "kind:attention_scores", "kind:ffn_in",
                              "kind:ffn_out", "layer:0", "layer:1", *head]
    # per layer: Q, K, V, attention output, FFN in and out, and the two MatMuls of activations (Q·Kᵀ, scores · V)
    assert len(groups["kind:attention_qkv"]) == 6 and len(groups["kind:attention_scores"]) == 4
    assert len(groups["layer:1"]) == 8 and len(sizes) == 18
    assert {sizes[name] for name in groups["kind:attention_scores"]} == {0}


def test_with_every_group_left_fp32_nothing_is_quantized(fragile, tmp_path):
    """The search's last resort is the fp32 model itself: no node quantize_dynamic would quantize is outside the
    groups (the MatMuls of two activations included), so excluding them all leaves no int8 op in the graph."""
    import onnx

    from roberta_infer.export import export_onnx
    from roberta_infer.quantize import QuantSettings, quantize_onnx

    root, classifier, _ = fragile
    export_onnx(classifier.model, classifier.encoder.pad, tmp_path / "raw.onnx", batch_size=None, seq_len=None, opset=17)
    groups, _ = matmul_groups(onnx.load(str(tmp_path / "raw.onnx")), ("MatMul",))
    every = tuple(sorted({name for nodes in groups.values() for name in nodes}))
    quantize_onnx(tmp_path / "raw.onnx", tmp_path / "plain.onnx", QuantSettings())
    quantize_onnx(tmp_path / "raw.onnx", tmp_path / "none.onnx", QuantSettings(float_nodes=every))
    int8_ops = {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention"}
    assert {n.op_type for n in onnx.load(str(tmp_path / "plain.onnx")).graph.node} & int8_ops  # plain int8 has them
    assert not {n.op_type for n in onnx.load(str(tmp_path / "none.onnx")).graph.node} & int8_ops


def test_accuracy_aware_needs_train_up_front(fragile, tmp_path, capsys):
    root, _, data = fragile
    (tmp_path / "dev-only").mkdir()
    (tmp_path / "dev-only" / "dev.tsv").write_text((data / "dev.tsv").read_text())
    assert main(["quantize", "--model", str(root / "fp32"), "--data", str(tmp_path / "dev-only"), "--out",
                 str(tmp_path / "q")]) == 2
    assert "train.tsv not found" in capsys.readouterr().err and not (tmp_path / "q").exists()


@pytest.mark.openvino
def test_openvino_accuracy_control_passes_and_records_reverted_ops(fragile, tmp_path):
    pytest.importorskip("openvino")
    root, classifier, data = fragile
    # NNCF's int8 also quantizes activations, and SmoothQuant rescales the dead neuron's weights: on this tiny random
    # model plain OpenVINO int8 loses ~20 points, not the FFN's ~90, so the dev gate is opened here and the held-out
    # limit (3 points) is what NNCF must work towards, reverting ops.
    manifest = build_bundle(classifier, tmp_path / "aware", engine="openvino", precision="int8", data=data,
                            max_accuracy_drop=100, heldout_max_drop=3, calibration_size=64, **QUIET)
    q = manifest["quantization"]
    assert q["method"] == "nncf.quantize_with_accuracy_control" and q["accuracy_aware"]["max_drop_pp"] == 3
    assert q["float_nodes"] == q["accuracy_aware"]["float_nodes"] and q["float_nodes"], "NNCF reverted ops, recorded"
    assert q["accuracy_aware"]["nncf_log"] and q["accuracy_aware"]["heldout"]["kept"] > 0
    assert json.loads((tmp_path / "aware" / "manifest.json").read_text())["quantization"]["float_nodes"] == q["float_nodes"]
