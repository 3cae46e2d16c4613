"""info and --version: what a bundle or checkpoint is, checked against the files themselves."""

from __future__ import annotations

import hashlib
import json

import pytest

from roberta_infer import __version__
from roberta_infer.cli import main


@pytest.fixture(scope="module")
def bundle(hf_bundle):
    return hf_bundle


def test_info_on_a_bundle_matches_its_files(bundle, hf_model, capsys):
    assert main(["info", str(bundle), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    config = json.loads((hf_model / "config.json").read_text())
    assert info["kind"] == "bundle" and info["engine"] == "onnxruntime" and info["precision"] == "fp32"
    assert info["class_names"] == [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    assert info["architecture"]["layers"] == config["num_hidden_layers"]
    assert info["architecture"]["hidden"] == config["hidden_size"]
    assert info["input"] == {"name": "src_tokens", "dtype": "int64", "shape": ["batch", "sequence"]}
    assert info["model_sha256"] == hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    assert info["source"]["sha256"] == hashlib.sha256((hf_model / "model.safetensors").read_bytes()).hexdigest()
    assert info["last_layer"] == "cls-only"
    assert info["fused_ops"]["Attention"] == config["num_hidden_layers"] - 1  # the last layer runs for <s> only, unfused
    assert main(["info", str(bundle)]) == 0
    text = capsys.readouterr().out
    assert "engine         onnxruntime" in text and "Attention 1" in text and "negative, positive" in text
    assert "last layer     cls-only" in text


def test_info_on_a_checkpoint_counts_its_parameters(hf_model, capsys):
    assert main(["info", str(hf_model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    from safetensors.numpy import load_file

    tensors = load_file(hf_model / "model.safetensors")
    assert info["kind"] == "huggingface" and info["class_names"] == ["negative", "positive"]
    # every stored tensor is a parameter (the position ids are a buffer transformers does not save)
    assert info["parameters"] == sum(t.size for t in tensors.values())


def test_info_on_nothing_is_a_one_line_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    expected = f"error: argument BUNDLE|CHECKPOINT: {tmp_path / 'nope'} not found (see `roberta-infer info --help`)\n"
    assert capsys.readouterr().err == expected


def test_version(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"roberta-infer {__version__}\n"
