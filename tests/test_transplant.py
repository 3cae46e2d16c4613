"""The BERT → RoBERTa transplant (`train --init minilm`'s first step) on a tiny random BERT written at test time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import BertConfig, BertModel

from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.transplant import greedy_wordpiece, transplant

WORDPIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "##s", "good", "##ing", "it", "'", "s",
              "bad", "!", "hello", "world", "charm", "##ing"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A random 2-layer, 16-wide BertModel with a 18-piece uncased WordPiece tokenizer, saved as Hugging Face does."""
    directory = tmp_path_factory.mktemp("bert")
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(WORDPIECES))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, type_vocab_size=2, initializer_range=0.2)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def transplanted(bert_dir, shared_data):
    return transplant(bert_dir, shared_data / "gpt2_bpe", ["negative", "positive"], texts=["it 's good", "it works"])


def bert_row(bert, piece: str) -> torch.Tensor:
    return bert.embeddings.word_embeddings.weight[WORDPIECES.index(piece)]


def test_encoder_returns_berts_hidden_states(bert_dir, transplanted):
    bert = BertModel.from_pretrained(bert_dir, attn_implementation="eager").eval()
    torch.manual_seed(1)
    embeds = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        got = transplanted.model.roberta(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert torch.allclose(got[mask.bool()], expected[mask.bool()], atol=1e-5)


def test_bpe_rows_are_means_of_wordpiece_rows(bert_dir, shared_data, transplanted):
    bert = BertModel.from_pretrained(bert_dir).eval()
    encoder = json.loads((shared_data / "gpt2_bpe" / "encoder.json").read_text())
    symbols = [line.split()[0] for line in (shared_data / "gpt2_bpe" / "dict.txt").read_text().splitlines()]
    dict_ids = {int(symbol): n + 4 for n, symbol in enumerate(symbols) if symbol.isdigit()}
    table = transplanted.model.roberta.embeddings.word_embeddings.weight.detach()

    def row(gpt2_token: str) -> torch.Tensor:
        return table[dict_ids[encoder[gpt2_token]]]

    torch.testing.assert_close(row("Ġmovies"), (bert_row(bert, "movie") + bert_row(bert, "##s")) / 2)
    torch.testing.assert_close(row("Ġgood"), bert_row(bert, "good"))
    torch.testing.assert_close(row("ĠGood"), bert_row(bert, "good"))  # uncased
    torch.testing.assert_close(row("ing"), bert_row(bert, "##ing"))  # inside a word: a continuation piece
    torch.testing.assert_close(row("it"), bert_row(bert, "it"))  # begins the texts more often than it continues words
    torch.testing.assert_close(row("Ġhello"), bert_row(bert, "hello"))
    torch.testing.assert_close(row("Ġcomputer"), bert_row(bert, "[UNK]"))
    for special, piece in (("<s>", "[CLS]"), ("<pad>", "[PAD]"), ("</s>", "[SEP]"), ("<unk>", "[UNK]")):
        torch.testing.assert_close(table[["<s>", "<pad>", "</s>", "<unk>"].index(special)], bert_row(bert, piece))
    torch.testing.assert_close(table[-1], bert_row(bert, "[MASK]"))  # <mask> is the dictionary's last id


def test_positions_and_token_type_move_past_the_pad_offset(bert_dir, transplanted):
    bert = BertModel.from_pretrained(bert_dir).eval()
    positions = transplanted.model.roberta.embeddings.position_embeddings.weight.detach()
    torch.testing.assert_close(positions[2:], bert.embeddings.position_embeddings.weight)
    assert transplanted.max_tokens == 40
    torch.testing.assert_close(transplanted.model.roberta.embeddings.token_type_embeddings.weight[0],
                               bert.embeddings.token_type_embeddings.weight[0])


def test_greedy_wordpiece():
    vocab = {"un": 0, "##want": 1, "##ed": 2, "want": 3, "##un": 4}
    assert greedy_wordpiece("unwanted", vocab, continues=False) == [0, 1, 2]
    assert greedy_wordpiece("unwanted", vocab, continues=True) == [4, 1, 2]
    assert greedy_wordpiece("wantx", vocab, continues=False) is None


def test_train_init_bert_writes_a_roberta_over_fairseq_ids(bert_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(shared_data))
    out = tmp_path / "model"
    main(["train", "--init", str(bert_dir), "--out", str(out), "--max-train-rows", "64", "--epochs", "1",
          "--batch-size", "16", "--lr", "1e-4", "--holdout", "0.2", "--freeze-embeddings", "--save-dtype", "float16"])
    classifier = load_classifier(out)
    # fairseq's own encoding of this text with roberta's dictionary (shared/data/README.md)
    assert classifier.encoder.encode(["Hello world!"]) == [[0, 31414, 232, 328, 2]]
    assert classifier.model.config.vocab_size == 50265
    assert classifier.model.dtype == torch.float32  # stored as float16, run in float32
    record = json.loads((out / "training.json").read_text())
    assert record["args"]["freeze_embeddings"] and record["args"]["init"] == str(bert_dir)
    assert np.isfinite(classifier.logits(np.array([[0, 31414, 232, 328, 2]]))).all()
