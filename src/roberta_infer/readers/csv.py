"""CSV and TSV: a header record naming the columns, then one record per row; column `text_field` the text.

Records as RFC 4180 has them (`data.delimited_records`, the stdlib's `csv` module): a quoted field may hold the
delimiter, newlines and doubled quotes, so a record may span lines. CSV: comma; TSV: tab (GLUE's files, which quote
nothing, read as fairseq's `cut -f` reads them). Spans are cut between records, found by one pass parsing the whole
file (constant memory); a record is numbered by its first line (the header being line 1). An empty line is a record
of one empty field. Every column is kept, as text.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from ..data import BLANK, delimited_records, is_blank
from ..errors import RobertaInferError
from .base import Records, Span
from .lines import LineReader, cannot_read, check_text_file


def scan(f: BinaryIO, kind: str, source: str, *, line: int = 1) -> Iterator[tuple[list[str], int, int, int]]:
    """(fields, first line, first byte, end byte) of each record of `f` (binary, read from where it stands: line
    `line`). Bytes are decoded with `surrogateescape`, so a field that is not UTF-8 holds escapes (`undecodable`)
    rather than stopping the scan. A record of no fields (an empty line) is one of one empty field."""
    position = f.tell()

    def lines() -> Iterator[str]:
        nonlocal position
        for raw in f:
            position += len(raw)
            yield raw.decode("utf-8", "surrogateescape")

    start = position
    for fields, first in delimited_records(lines(), kind, source, line=line):
        yield fields or [""], first, start, position
        start = position


def file_records(f: BinaryIO, kind: str, source: str) -> Iterator[tuple[list[str], int, int, int]]:
    """`scan` of a whole file from its start, a UTF-8 BOM skipped."""
    f.seek(len(codecs.BOM_UTF8) if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0)
    return scan(f, kind, source)


def undecodable(fields: list[str]) -> str | None:
    """The reason the first field holding `surrogateescape` escapes was not UTF-8, or None when all were."""
    for field in fields:
        try:
            field.encode("utf-8")
        except UnicodeEncodeError:
            try:
                field.encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeDecodeError as e:
                return e.reason
            return "an unpaired surrogate"
    return None


class CsvReader(LineReader):
    """`kind` "csv" or "tsv": the delimiter."""

    def __init__(self, kind: str):
        self.kind = kind

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of `shard_size` records from one pass over the file's records (the header checked first: column
        names, each once, one of them `text_field`). Raises RobertaInferError for a file that is not text, no
        header, a duplicate column name or no column `text_field`."""
        check_text_file(path)
        pieces: list[list] = []
        try:
            with open(path, "rb") as f:
                records = file_records(f, self.kind, str(path))
                self.check_header(path, next(records, None), text_field)
                for k, (_, line, start, end) in enumerate(records):
                    if k % shard_size == 0:
                        pieces.append([line, 0, start, end])
                    pieces[-1][1:] = [pieces[-1][1] + 1, pieces[-1][2], end]
        except OSError as e:
            raise cannot_read(path, e) from None
        return self.spans(path, [(line, count, (start, end)) for line, count, start, end in pieces])

    def check_header(self, path: Path | str, header: tuple | None, text_field: str) -> list[str]:
        """The header record's column names, refused (RobertaInferError) when absent, not UTF-8, or naming a column
        twice, or when `text_field` is none of them."""
        if header is None or header[0] == [""]:
            raise RobertaInferError(f"{path} line 1: no header (a {self.kind.upper()} file needs column names on line 1)")
        columns = header[0]
        reason = undecodable(columns)
        if reason:
            raise RobertaInferError(f"{path} line 1: header not valid UTF-8 ({reason})")
        twice = sorted({name for name in columns if columns.count(name) > 1})
        if twice:
            raise RobertaInferError(f"{path} line 1: column {', '.join(map(repr, twice))} named more than once "
                                    f"(columns: {', '.join(columns)}); give each column its own name")
        if text_field not in columns:
            raise RobertaInferError(f"{path} line 1: no column {text_field!r} (columns: {', '.join(columns)}); "
                                    f"choose one with --text-field")
        return columns

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        """The span's records (its bytes: whole records): a record with the wrong number of fields, a field not
        UTF-8 or a blank text is the record's error."""
        try:
            with open(span.path, "rb") as f:
                columns = self.check_header(span.source, next(file_records(f, self.kind, span.source), None), text_field)
        except OSError as e:
            raise cannot_read(span.source, e) from None
        ids, texts, errors, kept = [], [], [], {name: [] for name in columns}
        for fields, line, _, _ in scan(io.BytesIO(data), self.kind, span.source, line=span.first):
            ids.append(f"{span.source}:{line}")
            error = None
            if len(fields) != len(columns):
                error = f"expected {len(columns)} fields, found {len(fields)}"
            elif reason := undecodable(fields):
                error = f"not valid UTF-8 ({reason})"
            elif is_blank(fields[columns.index(text_field)]):
                error = BLANK
            row = dict(zip(columns, fields)) if error in (None, BLANK) else None
            texts.append(row[text_field] if error is None else None)
            errors.append(error and f"{self.where(span, line)}: {error}")
            for name in columns:
                kept[name].append(row[name] if row else None)
        return Records(ids, texts, errors, {name: pa.array(kept[name], pa.string()) for name in columns})
