"""Bundles: export from both checkpoint kinds, predict via ONNX Runtime = via PyTorch, broken bundles refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from roberta_infer.bundle import build_bundle, load_bundle, open_model
from roberta_infer.checkpoint import load_classifier
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify, predict

TEXTS = ["a gorgeous , witty , seductive movie .", "", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either ."]


@pytest.fixture(scope="module")
def dynamic_bundle(hf_bundle):
    return hf_bundle


def test_manifest_records_fusion_and_fidelity(dynamic_bundle, hf_model):
    manifest = json.loads((dynamic_bundle / "manifest.json").read_text())
    assert manifest["last_layer"] == "cls-only", "the default: the last layer for <s> only"
    assert manifest["fused_ops"]["Attention"] == 1, "every layer's attention is fused but the cls-only last's"
    # (its max_abs_diff ≤ 1e-4 is build_bundle's own refusal threshold; the logits are compared independently below)
    assert len(manifest["fidelity"]["cases"]) >= 4, "several shapes, random and real inputs"
    assert manifest["fidelity"]["max_abs_diff"] == max(manifest["fidelity"]["cases"].values())
    assert manifest["input"] == {"name": "src_tokens", "dtype": "int64", "shape": ["batch", "sequence"]}
    assert manifest["class_names"] == ["negative", "positive"]
    assert manifest["source"]["sha256"] == load_classifier(hf_model).source["sha256"]


def test_predict_via_bundle_equals_pytorch(dynamic_bundle, hf_model):
    torch_model, onnx_model = load_classifier(hf_model), open_model(dynamic_bundle)
    assert np.abs(classify(torch_model, TEXTS) - classify(onnx_model, TEXTS)).max() < 1e-4
    assert [r["label"] for r in predict(torch_model, TEXTS)] == [r["label"] for r in predict(onnx_model, TEXTS)]


def test_static_bundle_from_fairseq_checkpoint(tmp_path):
    fixture = FIXTURES / "fairseq" / "tiny"
    classifier = load_classifier(fixture / "checkpoint.pt")
    manifest = build_bundle(classifier, tmp_path / "static", batch_size=4, seq_len=16, progress=lambda _: None)
    assert manifest["input"]["shape"] == [4, 16]
    assert manifest["fused_ops"]["Attention"] == classifier.model.config.num_hidden_layers - 1
    bundle = load_bundle(tmp_path / "static")
    texts = ["short", "", "a few more words here", "café 😀", "one more", "and another"]  # batches of 4 and 2, all < 16 ids
    assert np.abs(classify(classifier, texts) - classify(bundle, texts)).max() < 1e-4


def test_broken_bundles_are_refused(tmp_path, dynamic_bundle):
    copy = tmp_path / "b"
    shutil.copytree(dynamic_bundle, copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(RobertaInferError, match="missing tokenizer.json"):
        load_bundle(copy)
    shutil.copy(dynamic_bundle / "tokenizer.json", copy / "tokenizer.json")
    (copy / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(RobertaInferError, match="model.onnx does not match its sha256 in manifest.json: the bundle is damaged"):
        load_bundle(copy)
    with pytest.raises(RobertaInferError, match="give both"):
        build_bundle(load_classifier(FIXTURES / "fairseq" / "tiny" / "checkpoint.pt"), tmp_path / "x", batch_size=2)


def test_prepare_with_a_bundle_as_vocabulary(tmp_path, shared_data, dynamic_bundle, hf_model):
    from roberta_infer.cli import main
    from roberta_infer.prepare import load_prepared

    assert main(["prepare", "--data", str(shared_data), "--model", str(dynamic_bundle), "--seq-len", "32", "--out",
                 str(tmp_path / "b")]) == 0
    assert main(["prepare", "--data", str(shared_data), "--model", str(hf_model), "--seq-len", "32", "--out",
                 str(tmp_path / "h")]) == 0
    assert (load_prepared(tmp_path / "b").tokens == load_prepared(tmp_path / "h").tokens).all()


def test_sessions_spin_unless_told_not_to(dynamic_bundle):
    def spinning(spin: bool) -> str:
        options = load_bundle(dynamic_bundle, threads=1, spin=spin).session.session.get_session_options()
        try:
            return options.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default, which spins
            return "default"

    assert spinning(True) == "default" and spinning(False) == "0"


def damaged_copy(source, tmp_path, damage) -> object:
    """A copy of the bundle `source` with `damage(copy)` applied."""
    copy = tmp_path / "damaged"
    shutil.copytree(source, copy)
    damage(copy)
    return copy


def edit_manifest(copy, **fields) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, **fields}))


@pytest.mark.parametrize("damage, expected", [
    (lambda b: (b / "special_ids.json").write_text('{"bos": 0, "pad": 1, "eos": 2, "unk": 2, "split_unknown": false}'),
     "special_ids.json does not match its sha256"),
    (lambda b: (b / "tokenizer.json").write_bytes((b / "tokenizer.json").read_bytes()[:1000]),
     "tokenizer.json does not match its sha256"),
    (lambda b: (b / "special_ids.json").unlink(), "missing special_ids.json"),
    (lambda b: np.save(b / "id_map.npy", np.arange(10)), "id_map.npy is not among the files manifest.json lists"),
    (lambda b: edit_manifest(b, class_names=["a", "b", "c"]), "names 3 classes but the model's logits are 2 wide"),
    (lambda b: edit_manifest(b, max_tokens=500), "max_tokens 500 exceeds the model's 64 positions"),
    (lambda b: edit_manifest(b, max_tokens="many"), "'max_tokens' must be an integer"),
    (lambda b: edit_manifest(b, files={"model.onnx": "0" * 64}), "tokenizer.json is not among the files manifest.json lists"),
], ids=["edited special ids", "truncated tokenizer", "deleted special ids", "added id map", "class names",
        "max_tokens", "max_tokens type", "edited files list"])
def test_every_file_and_the_manifest_are_checked_on_load(tmp_path, dynamic_bundle, damage, expected, capsys):
    from roberta_infer.cli import main

    copy = damaged_copy(dynamic_bundle, tmp_path, damage)
    with pytest.raises(RobertaInferError, match=expected):
        load_bundle(copy)
    (tmp_path / "in.txt").write_text("fine\n")
    out = str(tmp_path / "out.jsonl")
    assert main(["predict", "--model", str(copy), "--input", str(tmp_path / "in.txt"), "--output", out]) == 2
    err = capsys.readouterr().err
    assert expected.split()[0] in err and err.count("\n") == 1 and not (tmp_path / "out.jsonl").exists()


def test_manifest_lists_every_file_and_info_verifies_it(tmp_path, dynamic_bundle, capsys):
    import hashlib

    from roberta_infer.cli import main

    manifest = json.loads((dynamic_bundle / "manifest.json").read_text())
    on_disk = {p.name for p in dynamic_bundle.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk == {"model.onnx", "tokenizer.json", "special_ids.json"}
    assert all(manifest["files"][n] == hashlib.sha256((dynamic_bundle / n).read_bytes()).hexdigest() for n in on_disk)
    assert main(["info", str(dynamic_bundle)]) == 0
    assert "verified       yes: every file's sha256 (3 files)" in capsys.readouterr().out
    copy = damaged_copy(dynamic_bundle, tmp_path, lambda b: (b / "special_ids.json").write_text("{}"))
    assert main(["info", str(copy), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] == "no" and "special_ids.json does not match its sha256" in info["verification"]


def test_older_bundle_without_a_files_list_is_checked_on_what_it_lists(tmp_path, dynamic_bundle, capsys):
    """Bundles exported before `files` existed still load, their model file checked against `model_sha256`."""
    from roberta_infer.cli import main

    def older(b):
        manifest = json.loads((b / "manifest.json").read_text())
        del manifest["files"]
        (b / "manifest.json").write_text(json.dumps(manifest))

    copy = damaged_copy(dynamic_bundle, tmp_path, older)
    assert np.abs(classify(load_bundle(copy), TEXTS) - classify(load_bundle(dynamic_bundle), TEXTS)).max() == 0
    assert main(["info", str(copy)]) == 0
    assert "verified       partly: model files only" in capsys.readouterr().out
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes()[:-10])
    with pytest.raises(RobertaInferError, match="model.onnx does not match the manifest's model_sha256"):
        load_bundle(copy)
