"""The shipped default model takes the reference's own ids: fairseq's roberta dictionary, the guide's batch files."""

from __future__ import annotations

import json

import numpy as np
from test_tokenise import ORACLE, ids_digest

from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.default import default_bundle, default_model_dir
from roberta_infer.infer import read_outputs
from roberta_infer.prepare import load_prepared


def test_default_model_numbers_sst2_as_fairseq_does(shared_data):
    classifier = load_classifier(default_model_dir())
    assert classifier.model.config.vocab_size == 50265  # fairseq's roberta dictionary, <mask> last
    for split in ("dev", "test"):
        sentences = read_sst2(sst2_file(shared_data, split)).sentences
        assert ids_digest(classifier.encoder.encode(sentences)) == ORACLE[split]["sha256"]


def test_reference_batch_files_give_the_tsv_paths_labels(tmp_path, shared_data):
    """The guide's RoBERTa_preprocess.py layout (batch_size_8/roberta_base_bin/src_tokens_{i}.bin, raw int64 [8, 70])
    through `infer` on the default bundle gives every sentence the logits `predict` gives the TSV's text."""
    assert main(["prepare", "--data", str(shared_data), "--out", str(tmp_path / "prepared")]) == 0
    prepared = load_prepared(tmp_path / "prepared")
    batches = tmp_path / "batch_size_8" / "roberta_base_bin"
    batches.mkdir(parents=True)
    count = 96
    for i in range(count // 8):
        prepared.tokens[8 * i : 8 * (i + 1)].astype("<i8").tofile(batches / f"src_tokens_{i}.bin")
    bundle = default_bundle(progress=lambda message: None)
    assert main(["infer", "--model", str(bundle), "--input", str(batches), "--out", str(tmp_path / "results"),
                 "--seq-len", "70", "--warmup", "0"]) == 0
    logits, _ = read_outputs(tmp_path / "results")
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(s + "\n" for s in read_sst2(sst2_file(shared_data, "dev")).sentences[:count]))
    assert main(["predict", "--input", str(texts), "--output", str(tmp_path / "labels.jsonl")]) == 0
    predicted = np.array([json.loads(line)["logits"] for line in (tmp_path / "labels.jsonl").read_text().splitlines()])
    assert logits.shape == (count, 2)
    np.testing.assert_allclose(logits, predicted, atol=1e-4)  # padded to 70 there, to each batch's longest here
