"""predict: text file in, JSON lines out, same order; truncation of over-long texts."""

from __future__ import annotations

import numpy as np
import pytest

from roberta_infer.checkpoint import load_classifier
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify, predict, read_texts


def test_read_texts_keeps_empty_lines(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\n\nthird\r\n")
    assert read_texts(path) == ["first", "", "third"]
    path.write_bytes(b"ok\n\xc3\x28 broken\n")
    with pytest.raises(RobertaInferError, match="line 2: not valid UTF-8"):
        read_texts(path)


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
