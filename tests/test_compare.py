"""compare: every mode end to end on tiny models (the model source injected), bundles cached, the JSON the README is built from."""

from __future__ import annotations

import importlib.util
import json
from functools import partial

import pytest
from conftest import REPO, make_hf_model

import roberta_infer.compare as compare_module
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.compare import compare, forward_flops, gemm_peak_gflops, markdown
from roberta_infer.errors import RobertaInferError
from roberta_infer.synthetic import mark_synthetic, model_label, synthetic_classifier


@pytest.fixture(scope="module")
def model(tmp_path_factory, shared_data):
    return load_classifier(make_hf_model(tmp_path_factory.mktemp("compare") / "hf80", shared_data, max_positions=80))


@pytest.fixture
def small_peak(monkeypatch):
    monkeypatch.setattr(compare_module, "gemm_peak_gflops", partial(gemm_peak_gflops, n=256, repeats=2))


def test_every_mode_on_a_tiny_model(model, shared_data, tmp_path_factory, small_peak):
    work = tmp_path_factory.getbasetemp() / "compare-work"
    result = compare(model, model, work_dir=work, modes=list("fedcb"), data=shared_data, limit=40, threads=1,
                     progress=lambda _: None)
    modes = {m["mode"]: m for m in result["modes"]}
    assert list(modes) == list("abcdef") and result["sentences"] == 40 and result["threads"] == 1
    assert modes["a"]["ratio_to_baseline"] == 1 and result["peak_gflops"] > 0
    for m in modes.values():
        assert m["sentences_per_s"] > 0 and m["gflops"] > 0 and 0 <= m["accuracy"] <= 1
        assert m["ratio_to_baseline"] == pytest.approx(m["sentences_per_s"] / modes["a"]["sentences_per_s"])
    for fp32_mode in "bd":
        assert modes[fp32_mode]["agreement_with_baseline"] == 1 and modes[fp32_mode]["accuracy"] == modes["a"]["accuracy"]
    assert modes["f"]["form"] in ("fp32", "int8") and modes["f"]["name"].endswith(f"({modes['f']['form']})")
    assert modes["d"]["gflops"] * modes["d"]["seconds"] == pytest.approx(
        1e-9 * (forward_flops(json.loads((work / "speed" / "fp32" / "manifest.json").read_text())["architecture"], 32, 70)
                + forward_flops(json.loads((work / "speed" / "fp32" / "manifest.json").read_text())["architecture"], 8, 70)))
    assert "| (a) PyTorch eager, fixed padding 70" in markdown(result)


def test_cli_reuses_bundles_and_writes_json(model, shared_data, tmp_path_factory, tmp_path, monkeypatch, small_peak, capsys):
    work = tmp_path_factory.getbasetemp() / "compare-work"
    compare(model, model, work_dir=work, modes=["e"], data=shared_data, limit=8, threads=1, progress=lambda _: None)
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("speed/*/model.onnx")}
    monkeypatch.setattr(compare_module, "default_models", lambda: (model, None, "no trained default model"))
    assert main(["compare", "--modes", "d,f", "--limit", "20", "--threads", "1", "--repeats", "2", "--data", str(shared_data),
                 "--work-dir", str(work), "--json", str(tmp_path / "c.json")]) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("speed/*/model.onnx")} == stamps and len(stamps) == 2, "bundles reused"
    result = json.loads((tmp_path / "c.json").read_text())
    assert {"machine", "peak_gflops", "modes"} <= set(result) and result["accuracy_note"] == "no trained default model"
    assert [m["mode"] for m in result["modes"]] == ["a", "d", "f"] and result["repeats"] == 2
    for m in result["modes"]:
        assert {"name", "model", "sentences_per_s", "ratio_to_baseline", "accuracy", "gflops"} <= set(m) and m["accuracy"] is None
    assert "sentences/s" in capsys.readouterr().out
    assert main(["compare", "--modes", "x", "--work-dir", str(work), "--data", str(shared_data)]) == 2
    assert "unknown modes ['x']" in capsys.readouterr().err


def test_a_model_shorter_than_the_reference_length_is_refused(hf_model, shared_data, tmp_path):
    short = load_classifier(hf_model)  # 64 positions
    with pytest.raises(RobertaInferError, match="fewer than the reference's fixed length 70"):
        compare(short, None, work_dir=tmp_path, modes=["a"], data=shared_data, progress=lambda _: None)


def test_synthetic_roberta_base_has_its_exact_shape_and_vocabulary(shared_data, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(shared_data))
    classifier = synthetic_classifier("roberta-base")
    cfg = classifier.model.config
    shape = (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size,
             cfg.max_position_embeddings)
    assert shape == (12, 768, 12, 3072, 50265, 514) and classifier.max_tokens == 512
    assert classifier.encoder.encode(["Hello world!"]) == [[0, 31414, 232, 328, 2]], "fairseq roberta-base ids"
    assert classifier.source["kind"] == "synthetic"
    manifest = mark_synthetic({"source": classifier.source}, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["synthetic"] is True
    assert model_label(manifest) == "synthetic roberta-base (random weights)"
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(tmp_path))
    assert main(["export", "--synthetic", "roberta-base", "--out", str(tmp_path / "b")]) == 2
    assert "gpt2_bpe/dict.txt not found" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path), "--synthetic", "roberta-base", "--out", str(tmp_path / "b")]) == 2
    assert "either --model PATH or --synthetic NAME, not both" in capsys.readouterr().err


def test_readme_section_is_generated(model, shared_data, tmp_path, small_peak):
    spec = importlib.util.spec_from_file_location("update_readme", REPO / "benchmarks" / "update_readme.py")
    update_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_readme)
    result = compare(model, model, work_dir=tmp_path / "w", modes=["d"], data=shared_data, limit=8, threads=1,
                     progress=lambda _: None)
    (tmp_path / "compare.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- performance:start (generated) -->\nNot measured yet.\n<!-- performance:end -->\n\nrest\n")
    update_readme.main(["--compare", str(tmp_path / "compare.json"), "--quantize", str(tmp_path / "w" / "speed" / "int8" / "manifest.json"),
                        "--bench", "--readme", str(readme)])
    text = readme.read_text()
    assert "Not measured yet" not in text and "| (d) ours fp32 fused ONNX" in text and "int8 gate (hf80" in text
    assert text.startswith("# x\n\n<!-- performance:start (generated) -->\n") and text.endswith("<!-- performance:end -->\n\nrest\n")
    assert result["machine"]["cpu"] in text
