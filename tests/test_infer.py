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
    assert "argument --batch-size: must be in [1, 65536], got 0" in capsys.readouterr().err
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


def test_length_aware_equals_fixed_padding_in_input_order(tmp_path, prepared_and_bundle, hf_model, hf_bundle, monkeypatch):
    prep, _ = prepared_and_bundle
    bundle = load_bundle(hf_bundle)
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


# ---------------------------------------------------------------- the reference's batch files


# Rows as RoBERTa_preprocess.py writes them: <s> … </s>, padded with 1 to the pad length (8 here); ids of roberta-base's
# vocabulary (the test model's), e.g. 0 713 16 10 205 1569 2 = "<s>This is a good movie</s>".
REFERENCE_ROWS = [
    [0, 713, 16, 10, 205, 1569, 2, 1], [0, 24, 21, 6587, 2, 1, 1, 1], [0, 2, 1, 1, 1, 1, 1, 1],
    [0, 38, 657, 24, 328, 2, 1, 1], [0, 20, 2335, 21, 1099, 8, 17445, 2], [0, 13724, 2, 1, 1, 1, 1, 1],
]


def _reference_batches(directory, rows, batch):
    directory.mkdir(parents=True)
    tokens = np.array(rows, dtype=np.int64)
    for i in range(len(rows) // batch):  # the reference drops a last partial batch
        tokens[i * batch : (i + 1) * batch].tofile(directory / f"src_tokens_{i}.bin")
    return directory


def test_reference_batch_files(tmp_path, hf_model, hf_bundle, capsys):
    """infer reads batch_size_B/roberta_base_bin/src_tokens_{i}.bin; evaluate scores it with roberta_base.label."""
    src = _reference_batches(tmp_path / "batch_size_2" / "roberta_base_bin", REFERENCE_ROWS, batch=2)
    assert main(["infer", "--model", str(hf_bundle), "--input", str(src), "--out", str(tmp_path / "res"),
                 "--seq-len", "8", "--warmup", "0"]) == 0
    logits, summary = read_outputs(tmp_path / "res")
    expected = load_classifier(hf_model).logits(np.array(REFERENCE_ROWS))  # transformers on the same rows
    assert np.abs(logits - expected).max() < 1e-4
    assert summary["batch_size"] == 2 and summary["samples"] == 6, "B comes from the file size"
    # roberta_base.label: label-dictionary lines (fairseq's SST-2 order: "1" first), one per row.
    gold = np.array([0, 1, 1, 0, 1, 0], dtype=np.int64)
    gold.tofile(tmp_path / "batch_size_2" / "roberta_base.label")
    (tmp_path / "dict.txt").write_text("1 36\n0 28\n")
    assert main(["evaluate", "--results", str(tmp_path / "res"), "--labels",
                 str(tmp_path / "batch_size_2" / "roberta_base.label"),
                 "--label-dict", str(tmp_path / "dict.txt")]) == 0
    positive = expected.argmax(1) == 1  # the test model's classes are negative, positive
    assert json.loads((tmp_path / "res" / "evaluation.json").read_text())["correct"] == int((positive == (gold == 0)).sum())


def test_reference_batch_files_bad_inputs(tmp_path, prepared_and_bundle, capsys):
    _, static = prepared_and_bundle  # fixed at batch 10 × 32 ids
    src = _reference_batches(tmp_path / "bin", REFERENCE_ROWS, batch=3)
    dynamic_error = ["infer", "--model", str(static), "--input", str(src), "--out", str(tmp_path / "r")]
    assert main(dynamic_error) == 2
    assert "are not whole rows of 32 int64 ids" in capsys.readouterr().err  # the bundle's length, not the files'
    assert main([*dynamic_error, "--seq-len", "7"]) == 2
    assert "not whole rows of 7 int64 ids" in capsys.readouterr().err
    (src / "src_tokens_0.bin").unlink()
    assert main([*dynamic_error, "--seq-len", "8"]) == 2
    assert "has 1 numbered files but no src_tokens_0.bin" in capsys.readouterr().err
    with pytest.raises(RobertaInferError, match="give --seq-len"):
        load_prepared(_reference_batches(tmp_path / "other", REFERENCE_ROWS, batch=3))


def test_a_truncated_sample_file_is_named_in_one_line(tmp_path, prepared_and_bundle, capsys):
    """A per-sample `src_tokens_5.bin` cut short (a copy interrupted): one line naming the file, its size and the
    size one row of 32 int64 ids takes (256 bytes), exit 2, no results written — not numpy's shape complaint."""
    prep, bundle = prepared_and_bundle
    copy = tmp_path / "prep"
    copy.mkdir()
    (copy / "meta.json").write_bytes((prep / "meta.json").read_bytes())
    (copy / "src_tokens").mkdir()
    for sample in (prep / "src_tokens").iterdir():
        (copy / "src_tokens" / sample.name).write_bytes(sample.read_bytes())
    cut = copy / "src_tokens" / "src_tokens_5.bin"
    cut.write_bytes(cut.read_bytes()[:100])
    capsys.readouterr()
    assert main(["infer", "--model", str(bundle), "--input", str(copy), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {cut} holds 100 bytes, not one row of 32 int64 values (256 bytes): truncated, or written " \
                  "with another length\n"
    assert not (tmp_path / "res").exists()
