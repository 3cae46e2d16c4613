"""Preprocessing (RoBERTa_preprocess.py): fixed-length ids, both layouts, labels in the model's class order."""

from __future__ import annotations

import numpy as np
import pytest

from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.prepare import label_indices, load_prepared, prepare
from roberta_infer.tokenise import FairseqDictionary, TextEncoder, pad_to


@pytest.fixture(scope="module")
def fairseq_encoder(shared_data) -> TextEncoder:
    return TextEncoder.gpt2_fairseq(shared_data / "gpt2_bpe", FairseqDictionary.load(shared_data / "gpt2_bpe" / "dict.txt"))


def test_layouts_hold_the_same_ids(tmp_path, shared_data, fairseq_encoder):
    dev = read_sst2(sst2_file(shared_data, "dev"))
    common = dict(seq_len=70, class_names=["1", "0"], vocab={})
    prepare(dev, fairseq_encoder, out=tmp_path / "a", layout="array", **common)
    prepare(dev, fairseq_encoder, out=tmp_path / "p", layout="per-sample", **common)
    a, p = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "p")
    assert np.array_equal(a.tokens, p.tokens) and a.tokens.shape == (872, 70)
    assert (tmp_path / "p" / "src_tokens" / "src_tokens_871.bin").stat().st_size == 70 * 8
    assert a.tokens[0, :12].tolist() == [0, 405, 128, 29, 10, 18452, 8, 747, 7920, 3251, 479, 2]
    assert (a.tokens[:, 0] == 0).all() and (a.tokens[:, 1:] == 1).sum() > 0
    # fairseq's label dictionary puts "1" first: raw label "1" is class 0.
    assert np.array_equal(a.labels, np.array([0 if label == "1" else 1 for label in dev.labels]))


def test_test_split_has_no_labels_and_short_seq_len_truncates(tmp_path, shared_data, fairseq_encoder):
    test = read_sst2(sst2_file(shared_data, "test"))
    with pytest.warns(UserWarning, match="truncated"):
        meta = prepare(test, fairseq_encoder, seq_len=16, out=tmp_path / "t", layout="array", class_names=["0", "1"], vocab={})
    loaded = load_prepared(tmp_path / "t")
    assert loaded.labels is None and meta["label_names"] is None and meta["truncated"] > 0
    ends = loaded.tokens[loaded.tokens[:, -1] != 1, -1]
    assert (ends == 2).all(), "a truncated row keeps </s> last"


def test_pad_to_limits():
    out, cut = pad_to([[0, 5, 6, 7, 2], [0, 2]], 4, pad=1, eos=2)
    assert out.tolist() == [[0, 5, 6, 2], [0, 2, 1, 1]] and cut == 1
    with pytest.raises(RobertaInferError, match="at least <s> and </s>"):
        pad_to([[0, 2]], 1, pad=1, eos=2)


def test_label_names_must_match(tmp_path):
    assert label_indices(["0", "1"], ["negative", "positive"]).tolist() == [0, 1]
    assert label_indices(["0", "1"], ["LABEL_1", "LABEL_0"]).tolist() == [1, 0]
    with pytest.raises(RobertaInferError, match="do not name SST-2's label"):
        label_indices(["0"], ["anger", "joy"])
    with pytest.raises(RobertaInferError, match="not a prepared directory"):
        load_prepared(tmp_path)
