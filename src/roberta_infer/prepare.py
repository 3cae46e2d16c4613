"""The reference's RoBERTa_preprocess.py: an SST-2 split → fixed-length `<s> … </s> <pad>…` id rows + labels.

The split is GLUE's TSV (tokenised here) or, as the reference reads it, fairseq-preprocess's binarised output
(`SST-2-bin`, already ids: see `binarised.read_binarised`).

A prepared directory holds `meta.json`, `labels.npy` (class indices, absent for the unlabelled test
split) and the ids, either as one `src_tokens.npy` [N, L] (`array`) or one raw int64 file per sample,
`src_tokens/src_tokens_{i}.bin` (`per-sample`, what ais_bench reads).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .binarised import BinarisedSplit
from .data import SST2_LABEL_ALIASES, Sst2Split, numbered_files, read_rows, sha256_file
from .errors import RobertaInferError
from .outputs import output_dir
from .tokenise import FairseqDictionary, TextEncoder, label_symbols, pad_to, warn_truncated

FORMAT = "roberta-infer/prepared/1"
LAYOUTS = ("array", "per-sample")


def label_indices(raw_labels: list[str], class_names: list[str]) -> np.ndarray:
    """Label symbols → the model's class indices (int64 [N]), matched by name (fairseq's SST-2 label dict puts "1" first).

    SST-2's "0"/"1" also match their common names (negative/positive, LABEL_0/LABEL_1); other labels must be a class name.
    """
    lookup = {}
    for raw in sorted(set(raw_labels)):
        aliases = SST2_LABEL_ALIASES.get(raw, (raw,))
        matches = [i for i, name in enumerate(class_names) if name.lower() in aliases or name == raw]
        if len(matches) != 1:
            raise RobertaInferError(f"the model's classes {class_names} do not name the label {raw!r} exactly once")
        lookup[raw] = matches[0]
    return np.array([lookup[r] for r in raw_labels], dtype=np.int64)


def read_reference_labels(path: Path, label_dict: Path) -> list[str]:
    """The reference's `roberta_base.label` → one label symbol per row.

    The file is raw int64 (native order, as numpy's `tofile` wrote it), one class index per row: the label's row in the label
    dictionary minus its 4 specials (fairseq's sentence-prediction target), so k names line k of `label_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise RobertaInferError(f"label file {path} not found")
    if path.stat().st_size % 8:
        raise RobertaInferError(f"{path} is {path.stat().st_size} bytes, not whole int64 labels (8 bytes each)")
    indices = np.fromfile(path, dtype=np.int64)
    symbols = label_symbols(label_dict)
    bad = indices[(indices < 0) | (indices >= len(symbols))]
    if len(bad):
        raise RobertaInferError(f"{path} holds label index {int(bad[0])}, but {label_dict} lists {len(symbols)} labels")
    return [symbols[k] for k in indices]


def check_vocabulary(encoder: TextEncoder, dictionary: Path, bpe_dir: Path) -> None:
    """Refuse a model that numbers GPT-2 tokens differently from `dictionary` (the binarised data's input0/dict.txt).

    Binarised ids are already numbered by that dictionary; a model with another vocabulary would read wrong tokens.
    """
    data = TextEncoder.gpt2_fairseq(bpe_dir, FairseqDictionary.load(dictionary))
    model = encoder.gpt2_to_model(data.tokenizer)
    differ = (data.id_map != data.unk) & (model != data.id_map)
    if differ.any():
        raise RobertaInferError(f"the model's vocabulary numbers {int(differ.sum())} tokens differently from {dictionary}: the "
                                "binarised ids are not this model's; give the model trained on this data (or the TSVs)")


def prepare(split: Sst2Split | BinarisedSplit, encoder: TextEncoder, *, seq_len: int, out: Path, layout: str,
            class_names: list[str], vocab: dict, force: bool = False) -> dict:
    """Encode (a binarised split is ids already), pad/truncate to `seq_len`, write the prepared directory; returns its meta.

    `out` is written through `outputs.output_dir` (an existing prepared directory is replaced only with `force`)."""
    if layout not in LAYOUTS:
        raise RobertaInferError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    rows = split.rows if isinstance(split, BinarisedSplit) else encoder.encode(split.sentences)
    tokens, truncated = pad_to(rows, seq_len, pad=encoder.pad, eos=encoder.eos)
    warn_truncated(truncated, len(rows), seq_len)
    labels = label_indices(split.labels, class_names) if split.labels is not None else None
    with output_dir(out, "prepared", force=force) as tmp:
        if layout == "array":
            np.save(tmp / "src_tokens.npy", tokens)
        else:
            (tmp / "src_tokens").mkdir()
            for i, row in enumerate(tokens):
                row.tofile(tmp / "src_tokens" / f"src_tokens_{i}.bin")
        if labels is not None:
            np.save(tmp / "labels.npy", labels)
        meta = {
            "format": FORMAT,
            "source": {"path": str(split.path), "sha256": sha256_file(split.path)},
            "n": len(rows),
            "seq_len": seq_len,
            "layout": layout,
            "pad_id": encoder.pad,
            "truncated": truncated,
            "label_names": class_names if labels is not None else None,
            "vocab": {**vocab, "vocab_sha256": encoder.vocab_sha256(), "vocab_size": encoder.vocab_size()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass(frozen=True)
class Prepared:
    tokens: np.ndarray
    labels: np.ndarray | None
    meta: dict


def load_prepared(directory: Path, *, seq_len: int | None = None) -> Prepared:
    """Read a prepared directory in either layout, or a folder of the reference's batch files, checking it is complete.

    The reference's `RoBERTa_preprocess.py` writes `src_tokens_{i}.bin`: raw int64 [B, L] per batch, its last partial
    batch dropped; L is `seq_len` (its pad length), B follows from the file size. Its rows are used in file order.
    """
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file() and directory.is_dir() and (files := numbered_files(directory, r"src_tokens_(\d+)\.bin")):
        return reference_batches(directory, files, seq_len)
    if not meta_path.is_file():
        raise RobertaInferError(f"{directory} is not a prepared directory (no meta.json) nor the reference's batch files "
                                "(src_tokens_{i}.bin): run `roberta-infer prepare` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise RobertaInferError(f"{meta_path} is not a roberta-infer prepared directory ({meta.get('format')!r})")
    n, seq_len = meta["n"], meta["seq_len"]
    if meta["layout"] == "array":
        tokens = np.load(directory / "src_tokens.npy")
    else:
        files = [directory / "src_tokens" / f"src_tokens_{i}.bin" for i in range(n)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise RobertaInferError(f"{directory} is missing {len(missing)} sample files, e.g. {missing[0]}")
        tokens = read_rows(files, "int64", seq_len)
    if tokens.shape != (n, seq_len) or tokens.dtype != np.int64:
        raise RobertaInferError(f"{directory}: ids have shape {tokens.shape} {tokens.dtype}, meta.json says ({n}, {seq_len}) "
                                "int64")
    labels = np.load(directory / "labels.npy") if (directory / "labels.npy").is_file() else None
    if labels is not None and labels.shape != (n,):
        raise RobertaInferError(f"{directory}: {labels.shape[0]} labels for {n} samples")
    return Prepared(tokens, labels, meta)


def reference_batches(directory: Path, files: list[Path], seq_len: int | None) -> Prepared:
    """The reference's `src_tokens_{i}.bin` batch files (see `load_prepared`) as one [N, seq_len] int64 array."""
    if seq_len is None:
        raise RobertaInferError(f"{directory} holds the reference's batch files, whose length is not recorded: give --seq-len "
                                "(the pad length they were made with, 70 in the guide) or use a bundle of fixed shape")
    sizes = {f.stat().st_size for f in files}
    row_bytes = 8 * seq_len
    if len(sizes) != 1 or next(iter(sizes)) % row_bytes or not next(iter(sizes)):
        raise RobertaInferError(f"{directory}: batch files of {sorted(sizes)[:3]} bytes are not whole rows of {seq_len} int64 "
                                f"ids ({row_bytes} bytes) all of one batch size: wrong --seq-len, or not the reference's files")
    batch_size = next(iter(sizes)) // row_bytes
    raw = b"".join(f.read_bytes() for f in files)
    tokens = np.frombuffer(raw, dtype=np.int64).reshape(-1, seq_len).copy()
    meta = {"format": "reference RoBERTa_preprocess.py batches",
            "source": {"path": str(directory), "sha256": hashlib.sha256(raw).hexdigest()},
            "n": len(tokens), "seq_len": seq_len, "batch_size": batch_size, "layout": "reference", "pad_id": 1}
    return Prepared(tokens, None, meta)
