"""Tokenisation: our ids for every SST-2 dev and test sentence equal fairseq's (only their sha256 is committed)."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import FIXTURES

from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.tokenise import FairseqDictionary, TextEncoder

ORACLE = json.loads((FIXTURES / "fairseq" / "sst2_ids_sha256.json").read_text())


def ids_digest(rows: list[list[int]]) -> str:
    """The oracle's digest: one line of space-separated ids per sentence, each ending in a newline."""
    return hashlib.sha256("".join(" ".join(map(str, row)) + "\n" for row in rows).encode()).hexdigest()


@pytest.mark.parametrize("split", ["dev", "test"])
def test_sst2_ids_equal_fairseq(split, shared_data):
    encoder = TextEncoder.gpt2_fairseq(shared_data / "gpt2_bpe", FairseqDictionary.load(shared_data / "gpt2_bpe" / "dict.txt"))
    sentences = read_sst2(sst2_file(shared_data, split)).sentences
    assert len(sentences) == ORACLE[split]["n"]
    assert ids_digest(encoder.encode(sentences)) == ORACLE[split]["sha256"]


def test_dictionary_layout_and_errors(shared_data, tmp_path):
    dictionary = FairseqDictionary.load(shared_data / "gpt2_bpe" / "dict.txt")
    assert len(dictionary) == 50265 and dictionary.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert dictionary.symbols[-1] == "<mask>"
    bad = tmp_path / "dict.txt"
    bad.write_text("13 850314647\nnocount\n")
    with pytest.raises(RobertaInferError, match="line 2"):
        FairseqDictionary.load(bad)
    with pytest.raises(RobertaInferError, match="not found"):
        FairseqDictionary.load(tmp_path / "none.txt")


def test_unknown_gpt2_tokens_map_to_unk(shared_data, tmp_path):
    small = tmp_path / "dict.txt"
    small.write_text("270 10\n")  # only GPT-2 token 270 ("it") is known
    encoder = TextEncoder.gpt2_fairseq(shared_data / "gpt2_bpe", FairseqDictionary.load(small))
    assert encoder.encode(["it works"]) == [[0, 4, 3, 2]]
