"""The Python API (`roberta_infer.load(...).predict(texts)`) against references from outside it: transformers' own
forward pass on a Hugging Face folder and on its bundle, fairseq's own logits for a fairseq checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from transformers import AutoTokenizer, RobertaForSequenceClassification

import roberta_infer
from roberta_infer import RobertaInferError

TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés 😴", "",
         "it 's not a bad film , but it is n't a good one either .", "ok"]
FAIRSEQ = FIXTURES / "fairseq" / "tiny"


def transformers_reference(folder, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Logits [N, classes] from transformers' own tokenizer and forward pass, one text at a time (no padding), and
    the id2label names of their argmax."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = RobertaForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = np.concatenate([model(**tokenizer(text, return_tensors="pt")).logits.numpy() for text in texts])
    return logits, [model.config.id2label[int(k)] for k in logits.argmax(1)]


def check_records(records: list[dict], logits: np.ndarray, labels: list[str], *, atol: float) -> None:
    assert [r["label"] for r in records] == labels
    np.testing.assert_allclose(np.array([r["logits"] for r in records]), logits, atol=atol)
    for record, row in zip(records, logits.astype(np.float64)):
        expected = np.exp(row - row.max()).max() / np.exp(row - row.max()).sum()  # softmax probability of the argmax
        assert record["score"] == pytest.approx(expected, abs=1e-5)
        assert set(record) == {"label", "score", "logits"}


def test_a_hugging_face_folder_predicts_as_transformers(hf_model):
    logits, labels = transformers_reference(hf_model, TEXTS)
    check_records(roberta_infer.load(hf_model).predict(TEXTS, batch_size=2), logits, labels, atol=1e-5)


def test_a_bundle_predicts_as_transformers(hf_bundle, hf_model):
    logits, labels = transformers_reference(hf_model, TEXTS)
    model = roberta_infer.load(str(hf_bundle), threads=1)
    assert model.class_names == ["negative", "positive"]
    check_records(model.predict(TEXTS, batch_size=3), logits, labels, atol=1e-4)


def test_a_fairseq_checkpoint_predicts_as_fairseq(shared_data):
    expected = json.loads((FAIRSEQ / "expected.json").read_text())["texts"]
    model = roberta_infer.load(FAIRSEQ / "checkpoint.pt", fairseq_data=FAIRSEQ / "data", bpe_dir=shared_data / "gpt2_bpe")
    texts = [case["text"] for case in expected]
    assert any(case["truncated"] for case in expected)  # fairseq's cut of a text past the positions is compared too
    with pytest.warns(UserWarning, match="truncated"):
        records = model.predict(texts)
    assert [r["label"] for r in records] == [case["label"] for case in expected]
    np.testing.assert_allclose([r["logits"] for r in records], [case["logits"] for case in expected], atol=1e-4)


def test_no_path_loads_the_default_bundle(monkeypatch, hf_bundle):
    """None: the bundle `default.default_bundle` gives (classify's and serve's default model)."""
    monkeypatch.setattr("roberta_infer.api.default_bundle", lambda progress: hf_bundle)
    assert roberta_infer.load().path == hf_bundle


@pytest.mark.parametrize("name", ["missing", "empty-folder"])
def test_a_bad_path_is_refused_naming_it(tmp_path, name):
    path = tmp_path / name
    if name == "empty-folder":
        path.mkdir()
    with pytest.raises(RobertaInferError, match=str(path)):
        roberta_infer.load(path)


def test_one_string_is_refused_not_split_into_characters(hf_bundle):
    model = roberta_infer.load(hf_bundle, threads=1)
    with pytest.raises(RobertaInferError, match="not one string"):
        model.predict("a gorgeous movie")
    with pytest.raises(RobertaInferError, match=r"texts\[1\] is int"):
        model.predict(["fine", 3])
    assert model.predict([]) == []


def test_importing_the_package_loads_no_engine():
    code = ("import sys, roberta_infer; roberta_infer.RobertaInferError; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
