"""Loading user checkpoints: Hugging Face parity with transformers, fairseq parity with fairseq's own outputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, make_hf_model
from transformers import AutoTokenizer, RobertaForSequenceClassification

from roberta_infer.checkpoint import load_classifier
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify

TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "great movie 😀",
    "café crème brûlée, naïve",
    "",
    "北京 is lovely",
    "The year 2024 had 365 days; 12 months!",
]


@pytest.mark.parametrize("tokenizer_json", [True, False], ids=["tokenizer.json", "vocab+merges"])
@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_huggingface_matches_transformers(tmp_path, shared_data, tokenizer_json, safetensors):
    model_dir = make_hf_model(tmp_path / "m", shared_data, num_labels=3, tokenizer_json=tokenizer_json, safetensors=safetensors)
    ours = load_classifier(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = RobertaForSequenceClassification.from_pretrained(model_dir).eval()
    assert ours.encoder.encode(TEXTS) == [tok(t)["input_ids"] for t in TEXTS]
    with torch.inference_mode():
        expected = ref(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    got = classify(ours, TEXTS, batch_size=3)
    assert np.abs(got - expected).max() < 1e-4
    assert ours.class_names == ["negative", "positive", "neutral"]
    assert ours.source["kind"] == "huggingface" and len(ours.source["sha256"]) == 64


def test_huggingface_bad_inputs(tmp_path, hf_model):
    with pytest.raises(RobertaInferError, match="not found"):
        load_classifier(tmp_path / "nope")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(RobertaInferError, match="not a RoBERTa"):
        load_classifier(other)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_bytes((hf_model / "config.json").read_bytes())
    with pytest.raises(RobertaInferError, match="no weights"):
        load_classifier(weightless)


class Boom:
    """Unpickling this would call os.system: a malicious checkpoint."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "evil": Boom()}, path)
    with pytest.raises(RobertaInferError, match="refusing to load .*os.system|refusing to load .*posix.system"):
        load_classifier(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(RobertaInferError, match="not a PyTorch checkpoint"):
        load_classifier(path)
    torch.save({"model": {"layer.weight": torch.zeros(2, 2)}, "cfg": {"model": {}}}, path)
    with pytest.raises(RobertaInferError, match="not a RoBERTa checkpoint"):
        load_classifier(path)
    with open(path, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(RobertaInferError):
        load_classifier(path)
