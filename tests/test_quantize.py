"""quantize: an int8 bundle that every command accepts, and a gate that refuses (writing nothing) a bundle that loses accuracy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import make_hf_model

from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.data import read_sst2, sha256_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify, predict
from roberta_infer.quantize import quantize_bundle


@pytest.fixture(scope="module")
def fp32_bundle(hf_bundle):
    return hf_bundle


@pytest.fixture(scope="module")
def int8_bundle(fp32_bundle, shared_data, tmp_path_factory):
    # A random model's accuracy is chance: the gate is opened wide here and tested for refusal below.
    out = tmp_path_factory.mktemp("quantize") / "int8"
    quantize_bundle(fp32_bundle, out, data=shared_data, max_accuracy_drop=100, progress=lambda _: None)
    return out


def test_int8_bundle_is_a_normal_bundle(int8_bundle, fp32_bundle, hf_model, shared_data, tmp_path):
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    q = manifest["quantization"]
    assert manifest["model_sha256"] == sha256_file(int8_bundle / "model.onnx") != q["fp32_model_sha256"]
    assert q["fp32_model_sha256"] == json.loads((fp32_bundle / "manifest.json").read_text())["model_sha256"]
    assert {"weight_type", "per_channel", "reduce_range", "op_types"} <= set(q)
    gate = q["gate"]
    assert gate["data"]["samples"] == 872 and 0.5 < gate["label_agreement"] <= 1
    assert gate["accuracy_drop_pp"] == pytest.approx(100 * (gate["accuracy_fp32"] - gate["accuracy_int8"]))
    graph = onnx.load(str(int8_bundle / "model.onnx")).graph
    weights = {t.name for t in graph.initializer}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in graph.node}
    assert not [n for n in graph.node if n.op_type == "MatMul" and set(n.input) & weights], "every weight MatMul is int8"
    assert q["graph"] == "unfused export" and manifest["fused_ops"]["Attention"] == 0
    int8, fp32 = load_bundle(int8_bundle), load_bundle(fp32_bundle)
    texts = read_sst2(shared_data / "SST-2" / "dev.tsv").sentences[:50]
    assert np.abs(classify(int8, texts) - classify(fp32, texts)).max() < 0.5, "close to fp32, not equal"
    assert len(predict(int8, texts)) == 50
    assert main(["prepare", "--data", str(shared_data), "--model", str(hf_model), "--seq-len", "64", "--out",
                 str(tmp_path / "p")]) == 0
    assert main(["infer", "--model", str(int8_bundle), "--input", str(tmp_path / "p"), "--out", str(tmp_path / "r"),
                 "--batch-size", "32"]) == 0


def test_gate_refuses_a_bundle_that_loses_accuracy(fp32_bundle, shared_data, tmp_path, capsys):
    # A dev set labelled with the fp32 model's own predictions: fp32 scores 100 %, so every label int8 flips is lost accuracy.
    sentences = read_sst2(shared_data / "SST-2" / "dev.tsv").sentences
    predicted = classify(load_bundle(fp32_bundle), sentences).argmax(1)  # classes negative, positive = SST-2's 0, 1
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{p}\n" for s, p in zip(sentences, predicted)))
    out = tmp_path / "int8"
    assert main(["quantize", "--model", str(fp32_bundle), "--out", str(out), "--data", str(tmp_path / "data"),
                 "--no-accuracy-aware"]) == 2
    err = capsys.readouterr().err
    assert "accuracy points on SST-2 dev (100.00 % →" in err and "more than --max-accuracy-drop 0.3: nothing written" in err
    assert not out.exists()
    gate = quantize_bundle(fp32_bundle, out, data=tmp_path / "data", max_accuracy_drop=100, accuracy_aware=False,
                           progress=lambda _: None)["quantization"]["gate"]
    assert gate["accuracy_fp32"] == 1 and gate["accuracy_int8"] == gate["label_agreement"] < 0.997, "the refused loss is real"


def test_bad_quantize_requests(fp32_bundle, int8_bundle, hf_model, shared_data, tmp_path, capsys):
    with pytest.raises(RobertaInferError, match="already quantized"):
        quantize_bundle(int8_bundle, tmp_path / "again", data=shared_data, progress=lambda _: None)
    with pytest.raises(RobertaInferError, match="must differ"):
        quantize_bundle(fp32_bundle, fp32_bundle, data=shared_data, progress=lambda _: None)
    # A source checkpoint given must be the bundle's own (it is re-exported unfused).
    moved = tmp_path / "moved"
    shutil.copytree(hf_model, moved / "model")
    build_bundle(load_classifier(moved / "model"), moved / "fp32", progress=lambda _: None)
    shutil.rmtree(moved / "model")
    other = make_hf_model(tmp_path / "other", shared_data, seed=5)
    assert main(["quantize", "--model", str(moved / "fp32"), "--out", str(tmp_path / "q"), "--data", str(shared_data),
                 "--source", str(other)]) == 2
    assert "is not the one" in capsys.readouterr().err
    assert main(["quantize", "--model", str(moved / "fp32"), "--out", str(tmp_path / "q"), "--data", str(shared_data),
                 "--source", str(hf_model), "--max-accuracy-drop", "100"]) == 0, "the same checkpoint, found elsewhere"


def test_without_its_checkpoint_the_fused_graph_is_quantized(hf_model, shared_data, tmp_path, capsys):
    shutil.copytree(hf_model, tmp_path / "model")
    build_bundle(load_classifier(tmp_path / "model"), tmp_path / "fp32", progress=lambda _: None)
    shutil.rmtree(tmp_path / "model")
    assert main(["quantize", "--model", str(tmp_path / "fp32"), "--out", str(tmp_path / "int8"), "--data", str(shared_data),
                 "--max-accuracy-drop", "100"]) == 0
    assert "is not here: quantizing the bundle's fused graph" in capsys.readouterr().err
    manifest = load_bundle(tmp_path / "int8").manifest
    assert manifest["quantization"]["graph"] == "fused bundle"
    ops = manifest["fused_ops"]
    assert ops["QAttention"] == 1 and ops["Attention"] == 0, \
        "every fused Attention was quantized (the cls-only last layer has none)"
