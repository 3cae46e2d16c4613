"""predict: text file in, JSON lines out, same order; truncation of over-long texts."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest

from roberta_infer.checkpoint import load_classifier
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify, planned_batches, predict
from roberta_infer.readers import read_texts


def test_read_texts_refuses_empty_lines(tmp_path):
    """An empty or blank line has nothing to classify: an error naming it, never a label."""
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\nthird\r\n")
    assert read_texts(path) == ["first", "third"]
    for blank in (b"", b" \t", "\u2003\u2028\u200b".encode()):
        path.write_bytes(b"first\n" + blank + b"\nthird\r\n")
        with pytest.raises(RobertaInferError, match="in.txt line 2: empty text"):
            read_texts(path)
    path.write_bytes(b"ok\n\xc3\x28 broken\n")
    with pytest.raises(RobertaInferError, match="line 2: not valid UTF-8"):
        read_texts(path)


def test_a_text_field_for_plain_text_is_refused_and_a_json_array_is_read_as_one(tmp_path):
    """A .json array is read as an array (never line by line as JSON source); --text-field is refused for plain text."""
    path = tmp_path / "reviews.json"
    path.write_text('[{"review": "great"},\n{"review": "awful"}]\n')
    assert read_texts(path, text_field="review") == ["great", "awful"]
    (tmp_path / "plain.json").write_text('["great",\n "awful"]')
    assert read_texts(tmp_path / "plain.json") == ["great", "awful"]
    (tmp_path / "reviews.txt").write_text('great\n')
    with pytest.raises(RobertaInferError, match="--text-field review names a field .*reviews.txt is read as plain text"):
        read_texts(tmp_path / "reviews.txt", text_field="review")
    (tmp_path / "reviews.jsonl").write_text('{"review": "great"}\n')
    assert read_texts(tmp_path / "reviews.jsonl", text_field="review") == ["great"]


def test_order_and_batching_do_not_change_results(hf_model):
    model = load_classifier(hf_model)
    texts = ["short", "a much longer text with many more words in it than the others", "", "mid length text here"]
    one_by_one = np.concatenate([classify(model, [t], batch_size=1) for t in texts])
    batched = classify(model, texts, batch_size=3)
    assert np.abs(one_by_one - batched).max() < 1e-5
    records = predict(model, texts)
    assert [r["text"] for r in records] == texts
    assert all(r["label"] in ("negative", "positive") and len(r["logits"]) == 2 for r in records)


def test_over_long_text_is_truncated_with_a_warning(hf_model):
    model = load_classifier(hf_model)
    long_text = " ".join(["word"] * (model.max_tokens + 20))
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than 64 tokens"):
        logits = classify(model, [long_text, "ok"])
    ids = model.encoder.encode([long_text])[0]
    cut = np.array([ids[: model.max_tokens - 1] + [2]])
    assert np.abs(logits[0] - model.logits(cut)[0]).max() < 1e-5
    with pytest.raises(RobertaInferError, match="batch size must be positive"):
        classify(model, ["x"], batch_size=0)


def cost(batches: list[np.ndarray], lengths: list[int], call_cost: float) -> float:
    return sum(call_cost + len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("call_cost", [0.0, 3.0, 40.0])
def test_planned_batches_are_the_cheapest_cut_of_the_sorted_rows(call_cost):
    lengths = [9, 2, 30, 3, 2, 28, 8, 4]
    batches = planned_batches(lengths, 3, call_cost)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    ordered = sorted(lengths)  # every way to cut the sorted rows into runs of at most 3: none is cheaper
    cheapest = min(
        sum(call_cost + (b - a) * ordered[b - 1] for a, b in zip((0, *cuts), (*cuts, len(ordered))))
        for k in range(len(ordered)) for cuts in itertools.combinations(range(1, len(ordered)), k)
        if all(b - a <= 3 for a, b in zip((0, *cuts), (*cuts, len(ordered)))))
    assert cost(batches, lengths, call_cost) == pytest.approx(cheapest)


def test_planned_batches_split_at_a_length_jump_only_when_it_pays():
    lengths = [2, 2, 2, 30]
    assert [len(b) for b in planned_batches(lengths, 4, call_cost=1.0)] == [3, 1]
    assert [len(b) for b in planned_batches(lengths, 4, call_cost=1000.0)] == [4]


def test_predict_reads_stdin_jsonl_csv_and_writes_stdout(tmp_path, hf_model):
    """The same texts from standard input, a .jsonl field and a .csv column give the same records, to stdout (a CSV
    field quoted across lines is one text, as in JSON); scores are the softmax probability of the label (as serve
    answers)."""
    import csv
    import json
    import subprocess
    import sys

    texts = ["a gorgeous , witty , seductive movie .", "naïve café, \"quoted\"", "utterly dull", "two\nlines, \"q\""]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "review": t}) + "\n" for i, t in enumerate(texts)))
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "review"], *[[i, t] for i, t in enumerate(texts)]])
    command = [sys.executable, "-m", "roberta_infer.cli", "predict", "--model", str(hf_model), "--output", "-"]
    runs = [subprocess.run([*command, "--input", "-"], input="\n".join(texts[:3]) + "\n", capture_output=True, text=True),
            subprocess.run([*command, "--input", str(tmp_path / "in.jsonl"), "--text-field", "review"],
                           capture_output=True, text=True),
            subprocess.run([*command, "--input", str(tmp_path / "in.csv"), "--text-field", "review"],
                           capture_output=True, text=True)]
    outputs = []
    for run, count in zip(runs, (3, 4, 4)):
        assert run.returncode == 0, run.stderr
        assert f"wrote {count} predictions to standard output" in run.stderr
        assert f"· classifying {count} texts, 32 per batch" in run.stderr  # progress on stderr; stdout is JSON only
        outputs.append([json.loads(line) for line in run.stdout.splitlines()])
    assert outputs[1] == outputs[2]
    for alone, batched in zip(outputs[0], outputs[1]):  # batched with the fourth text: padded differently
        assert alone["text"] == batched["text"] and alone["logits"] == pytest.approx(batched["logits"], abs=1e-5)
    assert [r["text"] for r in outputs[2]] == texts
    for record in outputs[2]:
        logits = np.array(record["logits"])
        assert record["score"] == pytest.approx(np.exp(logits).max() / np.exp(logits).sum())


def test_predict_names_the_missing_field(tmp_path, hf_model, capsys):
    from roberta_infer.cli import main

    (tmp_path / "in.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    assert main(["predict", "--model", str(hf_model), "--input", str(tmp_path / "in.jsonl"), "--output", "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'in.jsonl'} line 2: no field 'text'" in err


@pytest.mark.parametrize("name, content, message", [
    ("in.jsonl", b'{"text": "fine"}\n{"text": " \\u3000 "}\n', "in.jsonl line 2: empty text"),
    ("in.csv", b'text\nfine\n""\n', "in.csv line 3: empty text"),
    ("in.csv", b'text,text\nfine,also\n', "in.csv line 1: column 'text' named more than once"),
    ("in.json", b'{"texts": []}', "in.json holds a JSON object, not an array"),
    ("in.txt.gz", gzip.compress(b"fine\n"), "in.txt.gz is gzip-compressed, not text: decompress it first"),
    ("in.bin", bytes(range(256)) * 4, "in.bin is binary data, not text"),
    ("in.txt", b"fine\nwith a \x00 byte\n", "in.txt line 2 holds a NUL byte"),
])
def test_predict_refuses_bad_input_in_one_line(tmp_path, hf_model, capsys, name, content, message):
    """Each bad input is one `error:` line and exit status 2, before the model loads; never a label, never internal."""
    from roberta_infer.cli import main

    (tmp_path / name).write_bytes(content)
    status = main(["predict", "--model", str(hf_model), "--input", str(tmp_path / name), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()
