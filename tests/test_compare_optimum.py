"""compare's Hugging Face Optimum rows: run from the venvs benchmarks/optimum/setup.sh makes (given by
$ROBERTA_INFER_OPTIMUM_VENVS), skipped with the reason where they are not; without them the modes are skipped, never
an error. Batch shapes are checked against transformers' own tokenisation of the same texts."""

from __future__ import annotations

import json

import pytest
from conftest import make_hf_model
from transformers import AutoTokenizer

import roberta_infer.compare as compare_module
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.compare import BASELINE
from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.optimum_peers import OPTIMUM, VENVS_VARIABLE, unavailable, venvs_folder

LIMIT = 64
MODES = ["peer:optimum-ov-int8", "peer:optimum-ort-int8", "engine:optimum-ov-fp32", "engine:optimum-ort-fp32"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    return make_hf_model(tmp_path_factory.mktemp("optimum") / "hf80", shared_data, max_positions=80)


@pytest.fixture
def tiny_default(model_dir, monkeypatch):
    """`compare`'s CLI on the tiny model for speed and accuracy, and a small fp32 GEMM peak (int8 peak stubbed)."""
    model = load_classifier(model_dir)
    monkeypatch.setattr(compare_module, "default_models", lambda: (model, model, None))
    monkeypatch.setattr(compare_module, "gemm_peak_gflops", lambda: 100.0)
    monkeypatch.setattr(compare_module, "int8_gemm_peak_gops", lambda threads=None: 400.0)


def run_cli(shared_data, tmp_path, modes: list[str], *extra: str) -> dict:
    out = tmp_path / "c.json"
    assert main(["compare", "--modes", ",".join(modes), "--ours-from", "ort-int8", "--limit", str(LIMIT), "--threads", "1",
                 "--repeats", "2", "--data", str(shared_data), "--work-dir", str(tmp_path / "work"), "--json", str(out),
                 *extra]) == 0
    return json.loads(out.read_text())


def test_without_venvs_the_optimum_modes_are_skipped_with_the_reason(shared_data, tmp_path, tiny_default, monkeypatch,
                                                                       capsys):
    monkeypatch.delenv(VENVS_VARIABLE, raising=False)
    result = run_cli(shared_data, tmp_path, ["peer:optimum-ort-fp32", "engine:optimum-ov-int8"])
    assert [m["mode"] for m in result["modes"]] == [BASELINE]
    assert set(result["skipped"]) == {"peer:optimum-ort-fp32", "engine:optimum-ov-int8"}
    assert all("benchmarks/optimum/setup.sh" in why for why in result["skipped"].values())
    captured = capsys.readouterr()
    assert "peer:optimum-ort-fp32 skipped: no Optimum venvs given" in captured.err
    assert "Not run: engine:optimum-ov-int8 (no Optimum venvs given" in captured.out
    result = run_cli(shared_data, tmp_path, ["peer:optimum-ort-fp32"], "--optimum-venvs", str(tmp_path), "--force")
    assert "optimum-onnx/bin/python not found" in result["skipped"]["peer:optimum-ort-fp32"]


def test_optimum_rows_in_both_groups(shared_data, tmp_path, tiny_default, model_dir):
    venvs = venvs_folder(None)
    missing = {why for key in OPTIMUM if (why := unavailable(key, venvs))}
    if missing:
        pytest.skip(f"Optimum venvs not present: {'; '.join(sorted(missing))}")
    result = run_cli(shared_data, tmp_path, MODES, "--optimum-venvs", str(venvs))
    assert [m["mode"] for m in result["modes"]] == [BASELINE, *MODES] and result["skipped"] == {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = read_sst2(sst2_file(shared_data, "dev")).sentences[:LIMIT]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    arrival = [[len(chunk), max(chunk)] for chunk in (lengths[i : i + 32] for i in range(0, LIMIT, 32))]
    ordered = sorted(lengths)
    sorted_batches = [[len(chunk), max(chunk)] for chunk in (ordered[i : i + 32] for i in range(0, LIMIT, 32))]
    rows = {m["mode"]: m for m in result["modes"]}
    for mode in MODES:
        row = rows[mode]
        assert row["batch_shapes"] == (arrival if mode.startswith("peer:") else sorted_batches), mode
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["agreement_with_baseline"] <= 1.0
        assert row["spread"]["passes"] == 2 and row["spread"]["min"] <= row["sentences_per_s"] <= row["spread"]["max"]
        assert row["engine"] == ("openvino" if "-ov-" in mode else "onnxruntime") and row["precision"] in mode
    assert result["ratios"]["fastest_peer"] in rows
