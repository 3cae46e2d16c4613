"""Tokenisation: our ids for every SST-2 dev and test sentence equal fairseq's (only their sha256 is committed)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import FIXTURES

from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.tokenise import FairseqDictionary, TextEncoder, bpe_tokenizer

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


def small_vocabulary_encoder(shared_data, *, split: bool) -> tuple[TextEncoder, dict[int, str]]:
    """GPT-2 BPE over a vocabulary of its ASCII tokens of at most 3 characters: long words must be split to fit it."""
    tokenizer = bpe_tokenizer(shared_data / "gpt2_bpe" / "encoder.json", shared_data / "gpt2_bpe" / "vocab.bpe")
    bare = {i: t.removeprefix("Ġ") for t, i in tokenizer.get_vocab().items()}
    known = sorted(i for i, t in bare.items() if len(t) <= 3 and t.isascii())
    id_map = np.full(tokenizer.get_vocab_size(), 3, dtype=np.int64)
    id_map[known] = np.arange(5, 5 + len(known))
    names = {5 + n: tokenizer.id_to_token(i) for n, i in enumerate(known)}
    return TextEncoder(tokenizer, id_map, bos=0, pad=1, eos=2, unk=3, split_unknown=split), names


def test_unknown_tokens_split_into_known_pieces(shared_data):
    encoder, names = small_vocabulary_encoder(shared_data, split=True)
    plain, _ = small_vocabulary_encoder(shared_data, split=False)
    text = "an unwatchable , overproduced mess"
    assert plain.encode([text])[0].count(3) >= 2, "the long words are outside the vocabulary"
    (row,) = encoder.encode([text])
    assert row[0] == 0 and row[-1] == 2 and 3 not in row and len(row) > len(plain.encode([text])[0])
    # The pieces spell the text again: every byte is kept, in order, by vocabulary tokens.
    assert "".join(names[i] for i in row[1:-1]).replace("Ġ", " ") == text
    # Tokens the vocabulary knows are left whole, as without splitting.
    assert encoder.encode(["it is a gem"]) == plain.encode(["it is a gem"])


def test_split_is_deterministic_and_unknown_bytes_are_one_unk(shared_data):
    first, _ = small_vocabulary_encoder(shared_data, split=True)
    again, _ = small_vocabulary_encoder(shared_data, split=True)
    texts = ["an unwatchable , overproduced mess", "a crème brûlée 😀 of a film"]
    assert first.encode(texts) == again.encode(texts) == first.encode(texts)
    # "é" is one GPT-2 token of two bytes, neither in the vocabulary: one <unk>, as without splitting.
    plain, _ = small_vocabulary_encoder(shared_data, split=False)
    assert first.encode(["é"]) == plain.encode(["é"]) == [[0, 3, 2]]
    assert first.encode(["it 😀"])[0].count(3) <= plain.encode(["it 😀"])[0].count(3)


def test_split_flag_survives_save_and_load(shared_data, tmp_path):
    encoder, _ = small_vocabulary_encoder(shared_data, split=True)
    texts = ["an unwatchable , overproduced mess", "naïve café — 北京"]
    (tmp_path / "ids").mkdir()
    (tmp_path / "bpe").mkdir()
    encoder.save(tmp_path / "ids", include_bpe=False)  # a trained model: GPT-2 BPE from --bpe-dir at load
    encoder.save(tmp_path / "bpe")  # a bundle: its own tokenizer.json
    for directory in ("ids", "bpe"):
        loaded = TextEncoder.load(tmp_path / directory, bpe_dir=shared_data / "gpt2_bpe")
        assert loaded.split_unknown and loaded.encode(texts) == encoder.encode(texts)
    with pytest.raises(RobertaInferError, match="needs a GPT-2 id map"):
        TextEncoder(encoder.tokenizer, None, bos=0, pad=1, eos=2, unk=3, split_unknown=True)
