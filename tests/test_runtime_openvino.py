"""OpenVINO bundles: fp32 = transformers within 1e-4 (static and dynamic), bf16/int8 through every command, the int8
accuracy gate, and old ONNX Runtime manifests (no "engine") still loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from conftest import make_hf_model
from transformers import RobertaForSequenceClassification

from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.data import read_sst2
from roberta_infer.errors import RobertaInferError
from roberta_infer.gate import accuracy_gate
from roberta_infer.predict import classify

TEXTS = ["a gorgeous , witty , seductive movie .", "", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either ."]
# What a user sends (`predict`, `serve`): an empty text is refused there, one line (the reader's rule); the library
# call above still takes it.
SENT = [text for text in TEXTS if text]
QUIET = {"progress": lambda _: None}


def transformers_logits(model_dir: Path, tokens: np.ndarray) -> np.ndarray:
    """The oracle: transformers' own model on the ids, the attention mask from the pad id (1)."""
    model = RobertaForSequenceClassification.from_pretrained(model_dir).eval()
    ids = torch.from_numpy(tokens)
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=(ids != 1).long()).logits.numpy()


def padded_rows(rng: np.random.Generator, batch: int, seq: int) -> np.ndarray:
    """`<s> random ids </s>` rows of random lengths, right-padded with 1; the first row full."""
    tokens = np.ones((batch, seq), dtype=np.int64)
    for row, length in enumerate([seq, *rng.integers(2, seq + 1, size=batch - 1)]):
        tokens[row, :length] = rng.integers(4, 50000, size=length)
        tokens[row, 0], tokens[row, length - 1] = 0, 2
    return tokens


@pytest.fixture(scope="module")
def ov_bundles(tmp_path_factory, hf_model, shared_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("openvino")
    classifier = load_classifier(hf_model)
    build_bundle(classifier, root / "fp32", engine="openvino", **QUIET)
    build_bundle(classifier, root / "bf16", engine="openvino", precision="bf16", **QUIET)
    # A random model's accuracy is chance: the gate is opened wide here and tested for refusal below.
    build_bundle(classifier, root / "int8", engine="openvino", precision="int8", data=shared_data, max_accuracy_drop=100,
                 calibration_size=64, **QUIET)
    return {name: root / name for name in ("fp32", "bf16", "int8")}


@pytest.mark.openvino
def test_fp32_dynamic_bundle_equals_transformers(ov_bundles, hf_model):
    bundle = load_bundle(ov_bundles["fp32"], threads=1)
    assert (bundle.engine, bundle.precision, bundle.provider) == ("openvino", "fp32", "CPU")
    rng = np.random.default_rng(7)
    for batch, seq in [(1, 2), (1, 9), (3, 17), (8, 64)]:
        tokens = padded_rows(rng, batch, seq)
        assert np.abs(bundle.logits(tokens) - transformers_logits(hf_model, tokens)).max() <= 1e-4, (batch, seq)
    real = classify(load_classifier(hf_model), TEXTS)  # PyTorch on our tokenisation (test_tokenise checks it)
    assert np.abs(classify(bundle, TEXTS) - real).max() <= 1e-4
    manifest = json.loads((ov_bundles["fp32"] / "manifest.json").read_text())
    assert manifest["openvino"]["inference_precision"] == "f32"
    assert len(manifest["fidelity"]["cases"]) >= 4, "several shapes, random and real inputs"


@pytest.mark.openvino
def test_streams_split_a_batch_without_changing_it(ov_bundles, hf_model):
    bundle = load_bundle(ov_bundles["fp32"], threads=2, streams=2)
    assert (bundle.session.streams, bundle.threads) == (2, 2)
    for batch in (1, 2, 5):  # one row runs whole; 2 and 5 are split 1+1 and 3+2 across the streams
        tokens = padded_rows(np.random.default_rng(batch), batch, 12)
        assert np.abs(bundle.run(tokens) - transformers_logits(hf_model, tokens)).max() <= 1e-4, batch
    assert load_bundle(ov_bundles["fp32"], threads=2, streams=1).session.streams == 1


@pytest.mark.openvino
def test_fp32_static_bundle_equals_transformers(tmp_path, hf_model):
    manifest = build_bundle(load_classifier(hf_model), tmp_path / "static", batch_size=4, seq_len=16, engine="openvino", **QUIET)
    assert manifest["input"]["shape"] == [4, 16] and manifest["engine"] == "openvino"
    bundle = load_bundle(tmp_path / "static", threads=1)
    tokens = padded_rows(np.random.default_rng(3), 6, 12)  # two calls (4 + 2 padded rows), each padded to 16 ids
    assert np.abs(bundle.logits(tokens) - transformers_logits(hf_model, tokens)).max() <= 1e-4
    with pytest.raises(RobertaInferError, match="do not fit this bundle's fixed length 16"):
        bundle.logits(padded_rows(np.random.default_rng(3), 2, 20))


@pytest.mark.openvino
def test_bf16_and_int8_manifests(ov_bundles, shared_data):
    bf16 = json.loads((ov_bundles["bf16"] / "manifest.json").read_text())
    assert bf16["precision"] == "bf16" and bf16["bf16"]["rows"] >= 20 and 0 <= bf16["bf16"]["label_agreement"] <= 1
    assert bf16["bf16"]["max_abs_diff"] >= 0 and "version" in bf16["openvino"] and isinstance(bf16["openvino"]["cpu_isa"], list)
    if "BF16" not in bf16["openvino"]["cpu_capabilities"]:
        assert "no bf16" in bf16["bf16"]["note"]
    int8 = json.loads((ov_bundles["int8"] / "manifest.json").read_text())
    q = int8["quantization"]
    assert int8["precision"] == "int8" and q["method"] == "nncf.quantize_with_accuracy_control" and q["nncf"]
    assert q["accuracy_aware"]["max_drop_pp"] == 100 and isinstance(q["float_nodes"], list), "accuracy-aware by default"
    calibration = q["calibration"]
    assert calibration["path"].endswith("train.tsv") and calibration["sentences"] == 64 and calibration["seed"] == 0
    assert q["gate"]["data"]["path"].endswith("dev.tsv") and q["gate"]["data"]["samples"] == 872
    assert q["gate"]["accuracy_drop_pp"] == pytest.approx(100 * (q["gate"]["accuracy_fp32"] - q["gate"]["accuracy_int8"]))
    for name in ("fp32", "bf16", "int8"):
        assert sorted(p.name for p in ov_bundles[name].iterdir() if p.name.startswith("model.")) == ["model.bin", "model.xml"]


@pytest.mark.openvino
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_command_takes_an_openvino_bundle(ov_bundles, precision, hf_model, shared_data, tmp_path, capsys):
    bundle = ov_bundles[precision]
    names = json.loads((bundle / "manifest.json").read_text())["class_names"]
    (tmp_path / "texts.txt").write_text("\n".join(SENT) + "\n")
    assert main(["predict", "--model", str(bundle), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "p.jsonl"),
                 "--threads", "1"]) == 0
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == SENT and all(r["label"] in names and len(r["logits"]) == 2 for r in records)
    assert main(["prepare", "--data", str(shared_data), "--model", str(bundle), "--seq-len", "64", "--out",
                 str(tmp_path / "prep")]) == 0
    for layout_args in ([], ["--no-length-aware"]):
        assert main(["infer", "--model", str(bundle), "--input", str(tmp_path / "prep"), "--out", str(tmp_path / "r"),
                     "--batch-size", "32", "--warmup", "1", "--force", *layout_args]) == 0
        assert main(["evaluate", "--results", str(tmp_path / "r"), "--labels", str(tmp_path / "prep")]) == 0
        assert np.load(tmp_path / "r" / "logits.npy").shape == (872, 2)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["engine"], summary["precision"]) == ("openvino", precision)
    assert main(["bench", "--model", str(bundle), "--batch-sizes", "1,4", "--seq-lens", "8", "--warmup", "0", "--min-time", "0",
                 "--threads", "1", "--out", str(tmp_path / "b")]) == 0
    assert len(json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]) == 2
    capsys.readouterr()
    assert main(["predict", "--model", str(bundle), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "q.jsonl"),
                 "--provider", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --provider cuda is ONNX Runtime's") and err.count("\n") == 1


@pytest.mark.openvino
def test_serve_answers_from_an_openvino_bundle(ov_bundles):
    from test_serve import running, wait_ready

    expected = classify(load_bundle(ov_bundles["int8"], threads=1), SENT)
    with running(lambda: load_bundle(ov_bundles["int8"], threads=1)) as base:
        wait_ready(base)
        results = httpx.post(f"{base}/v1/classify", json={"texts": SENT}, timeout=30).json()["results"]
    assert np.abs(np.array([r["logits"] for r in results]) - expected).max() < 1e-5


def test_gate_refuses_constructed_logits(shared_data, monkeypatch):
    gold = np.array([int(label) for label in read_sst2(shared_data / "SST-2" / "dev.tsv").labels])
    flipped = gold.copy()
    flipped[:5] = 1 - flipped[:5]  # 5 of 872 texts wrong: 0.57 points
    monkeypatch.setattr("roberta_infer.gate.classify", lambda model, texts: np.eye(2, dtype=np.float32)[model.classes])
    perfect, worse = (SimpleNamespace(classes=classes, class_names=["0", "1"]) for classes in (gold, flipped))
    with pytest.raises(RobertaInferError, match=r"int8 loses 0.57 accuracy points .*100.00 % → 99.43 %.*label agreement 99.43 %"):
        accuracy_gate(perfect, worse, data=shared_data, **QUIET)
    gate = accuracy_gate(perfect, worse, data=shared_data, max_accuracy_drop=0.6, **QUIET)
    assert gate["accuracy_drop_pp"] == pytest.approx(500 / 872) and gate["label_agreement"] == pytest.approx(867 / 872)
    with pytest.raises(RobertaInferError, match="must be ≥ 0"):
        accuracy_gate(perfect, perfect, data=shared_data, max_accuracy_drop=-0.1, **QUIET)


@pytest.mark.openvino
def test_int8_export_that_loses_accuracy_writes_nothing(tmp_path, shared_data):
    # The two classes' weight rows differ by 1e-4, far below int8's resolution: int8 cannot tell them apart, so on a
    # dev set labelled with the fp32 model's own predictions it must lose about half the points.
    model_dir = make_hf_model(tmp_path / "model", shared_data, seed=3)
    model = RobertaForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        weight = model.classifier.out_proj.weight
        weight[1] = weight[0] + 1e-4 * torch.randn_like(weight[0])
        model.classifier.out_proj.bias.zero_()
    model.save_pretrained(model_dir)
    classifier = load_classifier(model_dir)
    dev = read_sst2(shared_data / "SST-2" / "dev.tsv").sentences
    predicted = classify(classifier, dev).argmax(1)  # classes negative, positive = SST-2's 0, 1
    (tmp_path / "data").mkdir()
    shutil.copy(shared_data / "SST-2" / "train.tsv", tmp_path / "data" / "train.tsv")
    (tmp_path / "data" / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{p}\n" for s, p in zip(dev, predicted)))
    out = tmp_path / "int8"
    with pytest.raises(RobertaInferError, match="more than --max-accuracy-drop 0.3: nothing written"):
        build_bundle(classifier, out, engine="openvino", precision="int8", data=tmp_path / "data", calibration_size=64,
                     accuracy_aware=False, **QUIET)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]


def test_refused_up_front(tmp_path, hf_model, shared_data, capsys):
    base = ["export", "--model", str(hf_model), "--out", str(tmp_path / "b"), "--data", str(shared_data)]
    assert main([*base, "--engine", "openvino", "--precision", "int8", "--max-accuracy-drop", "-1"]) == 2
    assert "argument --max-accuracy-drop: must be in [0, 100], got -1" in capsys.readouterr().err
    assert main([*base, "--precision", "int8"]) == 2
    assert "roberta-infer quantize" in capsys.readouterr().err
    assert main([*base, "--engine", "openvino", "--precision", "int8", "--data", str(tmp_path)]) == 2
    assert "train.tsv not found" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.openvino
def test_openvino_bundle_checks(ov_bundles, tmp_path, shared_data):
    copy = tmp_path / "copy"
    shutil.copytree(ov_bundles["fp32"], copy)
    with open(copy / "model.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(RobertaInferError, match="model.bin does not match its sha256 in manifest.json: the bundle is damaged"):
        load_bundle(copy)
    (copy / "model.bin").unlink()
    with pytest.raises(RobertaInferError, match="missing model.bin"):
        load_bundle(copy)
    with pytest.raises(RobertaInferError, match="export --engine openvino --precision int8"):
        from roberta_infer.quantize import quantize_bundle

        quantize_bundle(ov_bundles["fp32"], tmp_path / "q", data=shared_data, **QUIET)


def test_old_manifest_without_engine_loads_on_onnxruntime(tmp_path, hf_model):
    build_bundle(load_classifier(hf_model), tmp_path / "old", **QUIET)
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    assert (manifest.pop("engine"), manifest.pop("precision")) == ("onnxruntime", "fp32")
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(tmp_path / "old", threads=1)
    assert (bundle.engine, bundle.precision, bundle.provider) == ("onnxruntime", "fp32", "CPUExecutionProvider")
    tokens = padded_rows(np.random.default_rng(5), 3, 10)
    assert np.abs(bundle.logits(tokens) - transformers_logits(hf_model, tokens)).max() <= 1e-4


def test_openvino_manifest_is_checked_against_its_ir(tmp_path, hf_model):
    """The IR's position table (66 rows: 64 tokens after the pad id) and logits width bound what the manifest may say."""
    build_bundle(load_classifier(hf_model), tmp_path / "b", engine="openvino", **QUIET)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    for edit, expected in (({"max_tokens": 65}, "max_tokens 65 exceeds the model's 64 positions"),
                           ({"class_names": ["only"]}, "names 1 classes but the model's logits are 2 wide")):
        (tmp_path / "b" / "manifest.json").write_text(json.dumps({**manifest, **edit}))
        with pytest.raises(RobertaInferError, match=expected):
            load_bundle(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "b" / "model.bin").write_bytes((tmp_path / "b" / "model.bin").read_bytes()[:-100])
    with pytest.raises(RobertaInferError, match="model.bin does not match its sha256 in manifest.json"):
        load_bundle(tmp_path / "b")


@pytest.mark.openvino
def test_nncf_progress_goes_to_stderr_not_stdout(tmp_path, hf_model, shared_data):
    """An int8 export through the CLI: NNCF's progress bars ("Statistics collection", rich) and its log lines land
    on stderr; stdout, which a user redirects into a table or file, holds none of them."""
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "export", "--model", str(hf_model), "--out",
                           str(tmp_path / "int8"), "--engine", "openvino", "--precision", "int8", "--data",
                           str(shared_data), "--calibration-size", "64", "--max-accuracy-drop", "100"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Statistics collection" in done.stderr, "NNCF showed its progress (on stderr)"
    assert "Statistics collection" not in done.stdout and "INFO:nncf" not in done.stdout
