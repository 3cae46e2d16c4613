"""infer (ais_bench) → evaluate (postprocess) round trip on prepared SST-2 dev, in both output layouts."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.evaluate import accuracy
from roberta_infer.infer import infer, read_outputs
from roberta_infer.predict import length_batches
from roberta_infer.prepare import load_prepared


@pytest.fixture(scope="module")
def prepared_and_bundle(tmp_path_factory, shared_data, hf_model):
    root = tmp_path_factory.mktemp("infer")
    assert main(["prepare", "--data", str(shared_data), "--model", str(hf_model), "--seq-len", "32",
                 "--out", str(root / "prep"), "--layout", "per-sample"]) == 0
    build_bundle(load_classifier(hf_model), root / "bundle", batch_size=10, seq_len=32, progress=lambda _: None)
    return root / "prep", root / "bundle"


def test_round_trip_per_sample_layout(tmp_path, prepared_and_bundle, hf_model, capsys):
    prep, bundle = prepared_and_bundle
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "res"),
                 "--batch-size", "10", "--warmup", "2", "--layout", "per-sample"]) == 0
    names = sorted(p.name for p in (tmp_path / "res").glob("src_tokens_*_0.bin"))
    assert len(names) == 872 and "src_tokens_871_0.bin" in names, "the last partial batch (2 of 10) is run too"
    logits, summary = read_outputs(tmp_path / "res")
    prepared = load_prepared(prep)
    expected = load_classifier(hf_model).logits(prepared.tokens)
    assert np.abs(logits - expected).max() < 1e-4
    assert summary["batches"] == 88 and summary["batch_size"] == 10 and summary["threads"] >= 1
    assert summary["provider"] == "CPUExecutionProvider" and summary["machine"]["physical_cores"] >= 1
    assert main(["evaluate", "--results", str(tmp_path / "res"), "--labels", str(prep)]) == 0
    result = json.loads((tmp_path / "res" / "evaluation.json").read_text())
    assert result == accuracy(expected, ["negative", "positive"], prepared.labels, prepared.meta["label_names"])
    assert result["samples"] == 872
    assert f"({result['correct']}/872)" in capsys.readouterr().out


def test_summary_figures_are_measured(tmp_path, prepared_and_bundle, monkeypatch):
    prep, bundle_dir = prepared_and_bundle
    bundle = load_bundle(bundle_dir)
    real_run = bundle.run

    def slow_run(tokens):
        time.sleep(0.02)
        return real_run(tokens)

    monkeypatch.setattr(bundle, "run", slow_run)
    prepared = load_prepared(prep)
    small = type(prepared)(prepared.tokens[:25], prepared.labels[:25], prepared.meta)
    summary = infer(bundle, small, tmp_path / "r", batch_size=10, warmup=0, loop=2, show_progress=False)
    assert summary["latency_ms"]["min"] >= 20 and summary["throughput_samples_per_s"] <= 10 / 0.02
    assert summary["batches"] == 3 and summary["samples"] == 25
    assert read_outputs(tmp_path / "r")[0].shape == (25, 2)


def test_bad_inputs(tmp_path, prepared_and_bundle, capsys):
    prep, bundle = prepared_and_bundle
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "r"), "--batch-size", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "r"), "--batch-size", "4"]) == 2
    assert "fixed batch size 10" in capsys.readouterr().err
    with pytest.raises(RobertaInferError, match="not a prepared directory"):
        load_prepared(tmp_path)
    # results and labels of different length
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "r"), "--batch-size", "10"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    np.save(tmp_path / "r" / "logits.npy", np.zeros((871, 2), np.float32))
    summary["samples"] = 871
    (tmp_path / "r" / "summary.json").write_text(json.dumps(summary))
    assert main(["evaluate", "--results", str(tmp_path / "r"), "--labels", str(prep)]) == 2
    assert "871 results but 872 labels" in capsys.readouterr().err


def test_unavailable_provider_is_a_clear_error(prepared_and_bundle, capsys):
    prep, bundle = prepared_and_bundle
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", "unused", "--batch-size", "10",
                 "--provider", "tensorrt"]) == 2
    assert "TensorrtExecutionProvider is not available here" in capsys.readouterr().err


# ---------------------------------------------------------------- length-aware batching


def test_length_batches_cover_every_row_once_shortest_first():
    lengths = [5, 2, 9, 2, 7, 1, 9]
    batches = length_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths) and batches[0].tolist() == [5, 1, 3], "stable: equal lengths keep input order"


def test_length_aware_equals_fixed_padding_in_input_order(tmp_path, prepared_and_bundle, hf_model, monkeypatch):
    prep, _ = prepared_and_bundle
    build_bundle(load_classifier(hf_model), tmp_path / "dyn", progress=lambda _: None)
    bundle = load_bundle(tmp_path / "dyn")
    prepared = load_prepared(prep)
    widths = []
    real_run = bundle.run
    monkeypatch.setattr(bundle, "run", lambda tokens: widths.append(tokens.shape[1]) or real_run(tokens))
    fixed = infer(bundle, prepared, tmp_path / "fixed", batch_size=16, warmup=0, length_aware=False, show_progress=False)
    assert set(widths) == {32} and fixed["length_aware"] is False
    widths.clear()
    aware = infer(bundle, prepared, tmp_path / "aware", batch_size=16, warmup=0, show_progress=False)
    assert aware["length_aware"] is True, "the default for a dynamic bundle"
    assert widths == sorted(widths) and widths[0] < 16 and widths[-1] == 32, "batches trimmed to their longest row"
    assert aware["batches"] == fixed["batches"] == 55 and aware["samples"] == 872
    a, f = read_outputs(tmp_path / "aware")[0], read_outputs(tmp_path / "fixed")[0]
    assert np.abs(a - f).max() < 1e-4 and (a.argmax(1) == f.argmax(1)).all()
    expected = load_classifier(hf_model).logits(prepared.tokens)
    assert np.abs(a - expected).max() < 1e-4, "outputs are back in input order"


def test_length_aware_needs_a_dynamic_bundle(tmp_path, prepared_and_bundle, capsys):
    prep, bundle = prepared_and_bundle
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "r"), "--batch-size", "10",
                 "--length-aware"]) == 2
    assert "needs a dynamic bundle" in capsys.readouterr().err
    assert main(["infer", "--model", str(bundle), "--input", str(prep), "--out", str(tmp_path / "r"), "--batch-size", "10"]) == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["length_aware"] is False, "static: fixed padding"
