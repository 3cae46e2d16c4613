"""The reference's fairseq-preprocess output (`SST-2-bin`): fairseq's mmap indexed datasets of model ids, and the
split they make with their dictionaries."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RobertaInferError
from .tokenise import FAIRSEQ_SPECIALS, FairseqDictionary, label_symbols

# fairseq's MMapIndexedDataset (`--dataset-impl mmap`, fairseq-preprocess's default), as fairseq 0.12's
# fairseq/data/indexed_dataset.py writes it. PREFIX.idx: magic, version <Q (1), dtype code <B, row count <Q,
# sizes int32[rows], pointers int64[rows] (byte offsets into PREFIX.bin); no document index (Megatron-LM's copy of
# the format adds one). PREFIX.bin: the rows' ids back to back, in that dtype, little-endian.
MMAP_MAGIC = b"MMIDIDX\x00\x00"
MMAP_DTYPES = {1: "u1", 2: "i1", 3: "i2", 4: "i4", 5: "i8", 8: "u2", 9: "u4", 10: "u8"}  # 6, 7: floats, never token ids
BINARISED_SPLITS = {"train": "train", "dev": "valid", "test": "test"}  # our split name → fairseq's file prefix


def read_indexed_dataset(prefix: Path) -> list[np.ndarray]:
    """The rows of a fairseq mmap indexed dataset `prefix`.{idx,bin}, as int64 arrays (fairseq's own reader: none needed).

    Raises RobertaInferError for a missing file, another format (fairseq's older `lazy`/`cached` TNTIDX one) or a
    truncated/inconsistent file.
    """
    index, data = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for path in (index, data):
        if not path.is_file():
            raise RobertaInferError(f"{path} not found (fairseq-preprocess writes PREFIX.idx and PREFIX.bin)")
    raw = index.read_bytes()
    if not raw.startswith(MMAP_MAGIC):
        kind = "fairseq's lazy/cached format (TNTIDX)" if raw.startswith(b"TNTIDX") else "not a fairseq indexed dataset"
        raise RobertaInferError(f"{index}: {kind}; re-run fairseq-preprocess with --dataset-impl mmap (its default)")
    header = len(MMAP_MAGIC) + 8 + 1 + 8
    if len(raw) < header:
        raise RobertaInferError(f"{index} is truncated")
    version, code, rows = struct.unpack_from("<QBQ", raw, len(MMAP_MAGIC))
    if version != 1 or code not in MMAP_DTYPES:
        raise RobertaInferError(f"{index}: unsupported version {version} / dtype code {code} (expected 1 / an integer type)")
    if len(raw) != header + 12 * rows:
        raise RobertaInferError(f"{index}: {len(raw)} bytes do not hold the {rows} rows its header announces "
                                "(truncated, or another tool's variant of the format)")
    sizes = np.frombuffer(raw, dtype="<i4", count=rows, offset=header).astype(np.int64)
    pointers = np.frombuffer(raw, dtype="<i8", count=rows, offset=header + 4 * rows)
    dtype = np.dtype(MMAP_DTYPES[code]).newbyteorder("<")
    ids = np.fromfile(data, dtype=dtype)
    starts = pointers // dtype.itemsize
    if rows and ((pointers % dtype.itemsize).any() or (starts + sizes > len(ids)).any() or (sizes < 0).any()):
        raise RobertaInferError(f"{data} is shorter than {index} says ({len(ids)} ids): the pair is truncated or mismatched")
    return [ids[start : start + size].astype(np.int64) for start, size in zip(starts, sizes)]


@dataclass(frozen=True)
class BinarisedSplit:
    """One split of the reference's fairseq-preprocess output (`SST-2-bin`): model ids instead of texts.

    `rows` are `<s> … </s>` in the numbering of `dictionary` (input0/dict.txt): fairseq stores `… </s>` and its
    sentence-prediction task prepends `<s>` (0), as RoBERTa_preprocess.py does. `labels` are the label dictionary's
    symbols ("0"/"1" for SST-2), None for the unlabelled test split.
    """

    path: Path
    rows: list[list[int]]
    labels: list[str] | None
    dictionary: Path
    label_names: list[str] | None  # the label dictionary's symbols in class order (fairseq's padding dropped)


def is_binarised(directory: Path | None) -> bool:
    """Whether `directory` is fairseq-preprocess output (input0/dict.txt with .idx files beside it)."""
    if directory is None:
        return False
    input0 = Path(directory) / "input0"
    return (input0 / "dict.txt").is_file() and any(input0.glob("*.idx"))


def read_binarised(directory: Path, split: str) -> BinarisedSplit:
    """`split` (train/dev/test; dev is fairseq's `valid`) of `directory`/input0 and /label, as fairseq-preprocess wrote them.

    Raises RobertaInferError for missing files, a label row that is not one known label + `</s>`, or row counts that differ.
    """
    if split not in BINARISED_SPLITS:
        raise RobertaInferError(f"unknown split {split!r}: choose one of {', '.join(BINARISED_SPLITS)}")
    directory, prefix = Path(directory), BINARISED_SPLITS[split]
    eos = FAIRSEQ_SPECIALS.index("</s>")
    rows = read_indexed_dataset(directory / "input0" / prefix)
    bad = next((i for i, row in enumerate(rows) if not len(row) or row[-1] != eos), None)
    if bad is not None:
        raise RobertaInferError(f"{directory / 'input0' / prefix}.bin row {bad} does not end with </s> ({eos}): not "
                                "fairseq-preprocess output")
    labels = names = None
    if (directory / "label" / f"{prefix}.idx").is_file():
        symbols = FairseqDictionary.load(directory / "label" / "dict.txt", add_mask=False).symbols
        names = label_symbols(directory / "label" / "dict.txt")
        label_rows = read_indexed_dataset(directory / "label" / prefix)
        if len(label_rows) != len(rows):
            raise RobertaInferError(f"{directory}: {len(label_rows)} label rows for {len(rows)} input rows in split {prefix}")
        labels = []
        for i, row in enumerate(label_rows):
            if len(row) != 2 or row[1] != eos or not len(FAIRSEQ_SPECIALS) <= row[0] < len(symbols):
                raise RobertaInferError(f"{directory / 'label' / prefix}.bin row {i} is {row.tolist()}, not one label + </s>")
            labels.append(symbols[row[0]])
    elif split != "test":
        raise RobertaInferError(f"{directory / 'label' / prefix}.idx not found: the {split} split needs its labels")
    bos = FAIRSEQ_SPECIALS.index("<s>")
    return BinarisedSplit(directory / "input0" / f"{prefix}.bin", [[bos, *row.tolist()] for row in rows], labels,
                          directory / "input0" / "dict.txt", names)
