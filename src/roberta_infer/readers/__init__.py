"""Input files → texts and records: one reader per format (as Ray Data has one datasource per format), one table.

A file's format is its extension (any case): `READERS` maps each to its reader (`.txt`, `.jsonl`, `.json` (an
array), `.csv`, `.tsv`, `.parquet`). The front doors:
- `plan(path, text_field, shard_size)` → the file's `Span`s, at most `shard_size` records each (planned without
  holding the file in memory, but for `.json`; the file's header or schema checked for the text field first);
- `read(span, text_field)` → that span's `Records`: ids `<file as given>:<number>` (the line, 1-based, a CSV/TSV
  header being line 1 and a CSV/TSV record spanning lines numbered by its first; the row, 1-based, for Parquet; the
  element, 1-based, for `.json`), texts, per-record errors (an empty or blank text among them) and the fields kept;
- `read_texts(path, text_field=None)` → every text of one file or of standard input (`predict`, `loadtest`).
`classify` plans and reads span by span; `predict` reads whole files through `read_texts`, the same readers.
"""

from __future__ import annotations

from pathlib import Path

from ..data import compressed_by_name
from ..errors import RobertaInferError
from ..outputs import STDIO
from .base import Reader, Records, Span
from .csv import CsvReader
from .json_array import JsonArrayReader
from .jsonl import JsonlReader
from .parquet import ParquetReader
from .txt import TxtReader, read_lines

# format (a file's extension without the dot) → its reader
READERS: dict[str, Reader] = {"txt": TxtReader(), "jsonl": JsonlReader(), "json": JsonArrayReader(),
                              "csv": CsvReader("csv"), "tsv": CsvReader("tsv"), "parquet": ParquetReader()}
EXTENSIONS = tuple(f".{kind}" for kind in READERS)
PLAN_SIZE = 10_000  # records per span when `read_texts` reads a whole file span by span

__all__ = ["EXTENSIONS", "READERS", "Records", "Span", "format_of", "plan", "read", "read_texts", "unknown_kind"]


def format_of(path: Path | str) -> str | None:
    """The format (a key of READERS) of `path` by its extension; None for any other name (standard input's `-`)."""
    suffix = Path(path).suffix.lower()
    return suffix[1:] if suffix in EXTENSIONS else None


def unknown_kind(path: Path | str) -> str:
    """Why `path` (whose `format_of` is None) has no reader, in a few words: the compression its name says
    (`.gz`, …: decompress it first), or its unknown extension."""
    compression = compressed_by_name(path)
    if compression:
        return f"{compression}-compressed: decompress it first"
    return f"unknown extension {Path(path).suffix!r}" if Path(path).suffix else "no extension"


def plan(path: Path, text_field: str, shard_size: int) -> list[Span]:
    """The `Span`s of `path`, a file of a known format (`format_of`), in order. Raises RobertaInferError for an
    unreadable file, one that is not text (compressed, binary, UTF-16; `data.refuse_non_text`), no text field
    `text_field` (CSV/TSV header, Parquet schema), a CSV/TSV column named twice, or a `.json` file that is not an
    array."""
    return READERS[format_of(path)].plan(Path(path), text_field, shard_size)


def read(span: Span, text_field: str) -> Records:
    """The span's records; a bad record (not UTF-8, not JSON, no text, a blank text) gets an error naming its file
    and line/row/element.

    Raises RobertaInferError when the file cannot be read or no longer has the planned number of records.
    """
    reader = READERS[span.kind]
    records = reader.read(span, text_field)
    if len(records.ids) != span.count:
        raise reader.changed(span, len(records.ids))
    return records


def read_texts(path: Path | str, *, text_field: str | None = None) -> list[str]:
    """The texts of `path`: one per line for a plain text file (`.txt` or any other extension) or standard input
    (`-`); a `.jsonl`, `.json`, `.csv`, `.tsv` or `.parquet` file's `text_field` (default `text`; a `.json` array's
    string elements are texts themselves), read as `classify` reads it.

    A final newline ends the last line. Raises RobertaInferError for a missing or unreadable file, a file that is
    not text (compressed, binary, UTF-16), text that is not UTF-8, a record without the field or with an empty or
    blank text (the first bad record, naming its file and line, row or element), or a `text_field` for plain text.
    """
    structured = format_of(path) not in (None, "txt")
    if text_field is not None and not structured:
        raise RobertaInferError(f"--text-field {text_field} names a field of .jsonl/.json/.csv/.tsv/.parquet records, but "
                                f"{'standard input' if str(path) == STDIO else path} is read as plain text, one text per "
                                "line: name a JSON Lines file .jsonl, or leave --text-field out")
    if not structured:
        return read_lines(path)
    texts: list[str] = []
    for span in plan(Path(path), text_field or "text", PLAN_SIZE):
        records = read(span, text_field or "text")
        bad = next((error for error in records.errors if error), None)
        if bad:
            raise RobertaInferError(bad)
        texts += records.texts
    return texts
