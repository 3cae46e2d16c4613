"""Preprocessing (RoBERTa_preprocess.py): fixed-length ids, both layouts, labels in the model's class order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from roberta_infer.binarised import read_binarised, read_indexed_dataset
from roberta_infer.cli import main
from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.prepare import check_vocabulary, label_indices, load_prepared, prepare
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
    with pytest.raises(RobertaInferError, match="do not name the label '0' exactly once"):
        label_indices(["0"], ["anger", "joy"])
    with pytest.raises(RobertaInferError, match="not a prepared directory"):
        load_prepared(tmp_path)


# ---------------------------------------------------------------- the reference's binarised data (SST-2-bin)

BIN = FIXTURES / "fairseq" / "bin"
BIN_EXPECTED = json.loads((BIN / "expected.json").read_text(encoding="utf-8"))


def test_indexed_dataset_reader_reads_what_fairseq_reads():
    """Our reader against fairseq's own MMapIndexedDataset on fairseq-preprocess output (tools/fairseq_fixtures)."""
    for split, expected in BIN_EXPECTED["input0"].items():
        assert [row.tolist() for row in read_indexed_dataset(BIN / "SST-2-bin" / "input0" / split)] == expected["rows"]
    for split, expected in BIN_EXPECTED["label"].items():
        assert [row.tolist() for row in read_indexed_dataset(BIN / "SST-2-bin" / "label" / split)] == expected
    assert BIN_EXPECTED["input0"]["valid"]["dtype"] == "uint16" and BIN_EXPECTED["label_symbols"][:2] == ["1", "0"]


@pytest.mark.parametrize("split,seq_len", [("dev", 70), ("dev", 16), ("train", 70), ("test", 70)])
def test_binarised_ids_equal_the_tsv_path(tmp_path, shared_data, split, seq_len):
    """`prepare --data SST-2-bin` gives the ids (and labels) `prepare` makes from the same sentences' TSV."""
    dictionary = BIN / "SST-2-bin" / "input0" / "dict.txt"
    common = ["--split", split, "--seq-len", str(seq_len), "--bpe-dir", str(shared_data / "gpt2_bpe")]
    assert main(["prepare", "--data", str(BIN / "SST-2"), "--dict", str(dictionary), "--out", str(tmp_path / "tsv"),
                 *common]) == 0
    assert main(["prepare", "--data", str(BIN / "SST-2-bin"), "--out", str(tmp_path / "bin"), *common]) == 0
    tsv, binarised = load_prepared(tmp_path / "tsv"), load_prepared(tmp_path / "bin")
    assert np.array_equal(tsv.tokens, binarised.tokens)
    fairseq_rows = BIN_EXPECTED["input0"][{"dev": "valid"}.get(split, split)]["rows"]
    first = [0, *fairseq_rows[0]]  # fairseq stores "… </s>"; RoBERTa's input prepends <s> and pads with 1
    assert binarised.tokens[0].tolist() == first + [1] * (seq_len - len(first))
    if split == "test":
        assert tsv.labels is None and binarised.labels is None
    else:
        by_name = [[meta.meta["label_names"][k] for k in meta.labels] for meta in (tsv, binarised)]
        assert by_name[0] == by_name[1]
        assert binarised.meta["label_names"] == ["1", "0"]  # the label dictionary's order: a fairseq model's classes


def test_binarised_data_needs_the_model_that_numbers_it(tmp_path, shared_data, hf_model):
    bpe = shared_data / "gpt2_bpe"
    full = shared_data / "gpt2_bpe" / "dict.txt"
    hf = TextEncoder.huggingface(hf_model, bos=0, pad=1, eos=2)  # roberta-base's vocab.json: the full dict.txt's order
    check_vocabulary(hf, full, bpe)
    check_vocabulary(TextEncoder.gpt2_fairseq(bpe, FairseqDictionary.load(full)), full, bpe)
    with pytest.raises(RobertaInferError, match="numbers \\d+ tokens differently from .*dict.txt"):
        check_vocabulary(hf, BIN / "SST-2-bin" / "input0" / "dict.txt", bpe)
    assert main(["prepare", "--data", str(BIN / "SST-2-bin"), "--model", str(hf_model), "--out", str(tmp_path / "p")]) == 2
    assert not (tmp_path / "p").exists()


def test_broken_binarised_files(tmp_path):
    data = tmp_path / "SST-2-bin"
    shutil.copytree(BIN / "SST-2-bin", data)
    valid = data / "input0" / "valid"
    whole = Path(f"{valid}.bin").read_bytes()
    Path(f"{valid}.bin").write_bytes(whole[:-4])
    with pytest.raises(RobertaInferError, match="valid.bin is shorter than .*valid.idx says"):
        read_binarised(data, "dev")
    Path(f"{valid}.bin").write_bytes(whole)
    index = Path(f"{valid}.idx").read_bytes()
    Path(f"{valid}.idx").write_bytes(b"TNTIDX\x00\x00" + index[9:])
    with pytest.raises(RobertaInferError, match="lazy/cached format .* --dataset-impl mmap"):
        read_binarised(data, "dev")
    Path(f"{valid}.idx").write_bytes(index[:-8])
    with pytest.raises(RobertaInferError, match="bytes do not hold the 7 rows"):
        read_binarised(data, "dev")
    Path(f"{valid}.idx").write_bytes(index)
    shutil.copy(data / "label" / "train.idx", data / "label" / "valid.idx")
    shutil.copy(data / "label" / "train.bin", data / "label" / "valid.bin")
    with pytest.raises(RobertaInferError, match="12 label rows for 7 input rows"):
        read_binarised(data, "dev")
    (data / "label" / "valid.idx").unlink()
    with pytest.raises(RobertaInferError, match="valid.idx not found: the dev split needs its labels"):
        read_binarised(data, "dev")
