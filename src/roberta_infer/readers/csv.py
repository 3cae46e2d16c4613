"""CSV and TSV: a header record naming the columns, then one record per row; column `text_field` the text.

Records as RFC 4180 has them (`data.delimited_records`, the stdlib's `csv` module): a quoted field may hold the
delimiter, newlines and doubled quotes, so a record may span lines. CSV: comma; TSV: tab (GLUE's files, which quote
nothing, read as fairseq's `cut -f` reads them). Spans are cut between records, found by one pass over the file in
constant memory (`quoted_record_starts`, else parsing every record); a record is numbered by its first line (the
header being line 1). An empty line is a record of one empty field. Every column is kept, as text.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from ..data import BLANK, DELIMITERS, clean_text, delimited_records
from ..errors import RobertaInferError
from .base import Records, Span
from .lines import SCAN_BLOCK, LineReader, cannot_read, check_text_file


def scan(f: BinaryIO, kind: str, source: str, *, line: int = 1) -> Iterator[tuple[list[str], int, int, int]]:
    """(fields, first line, first byte, end byte) of each record of `f` (binary, read from where it stands: line
    `line`), by `data.delimited_records` (a field that is not UTF-8 holds escapes: `undecodable`). A record of no
    fields (an empty line) is one of one empty field."""
    start = offset = f.tell()
    for fields, first, consumed in delimited_records(f, kind, source, line=line):
        yield fields or [""], first, start, offset + consumed
        start = offset + consumed


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


def parsed_record_starts(records: Iterator[tuple[list[str], int, int, int]], shard_size: int
                         ) -> tuple[list[tuple[int, int]], int]:
    """(first line, first byte) of records 1, 1 + shard_size, … of `scan`'s `records` (after the header), and how
    many there are."""
    starts, count = [], 0
    for count, (_, line, start, _) in enumerate(records, start=1):
        if (count - 1) % shard_size == 0:
            starts.append((line, start))
    return starts, count


def quoted_record_starts(f: BinaryIO, size: int, delimiter: str, shard_size: int, *, block_size: int = SCAN_BLOCK
                         ) -> tuple[list[tuple[int, int]], int] | None:
    """`parsed_record_starts` of a whole file (header excluded) without parsing it, at numpy speed: a newline ends a
    record where an even number of double quotes precede it. That is RFC 4180's grammar, and `csv`'s reading of
    the file whenever every quote opening a quoted field (an even number before it) follows the delimiter, a
    newline, the file's start or a quote closing one ("" doubled), and no bare `\\r` (not before `\\n`) stands
    outside quotes (`csv` ends a record there). For a file where either is not so, None: parse it
    (`parsed_record_starts`). The file is read `block_size` bytes at a time."""
    nl, cr, quote, delim = (ord(c) for c in ("\n", "\r", '"', delimiter))
    f.seek(0)
    offset = len(codecs.BOM_UTF8) if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
    f.seek(offset)
    quotes, lines, records = 0, 0, 1 if size > offset else 0  # before the block: line breaks; records begun (header: 0)
    previous, last_cr = nl, None  # the byte before the block (the file's start counts as a newline); a \r ending it
    starts: list[tuple[int, int]] = []
    while block := f.read(block_size):
        a = np.frombuffer(block, np.uint8)
        if last_cr is not None and a[0] != nl:  # the last block's final \r was bare
            if last_cr:
                return None
            lines += 1
        q = np.flatnonzero(a == quote)
        opening = q[(quotes + np.arange(len(q))) % 2 == 0]
        before = np.where(opening > 0, a[np.maximum(opening - 1, 0)], previous)
        if not np.isin(before, (delim, nl, quote)).all():
            return None
        r = np.flatnonzero(a == cr)
        outside = (quotes + np.searchsorted(q, r)) % 2 == 0
        inner = r + 1 < len(a)
        bare = inner & (a[np.minimum(r + 1, len(a) - 1)] != nl)
        if (bare & outside).any():
            return None
        last_cr = bool(outside[-1]) if len(r) and not inner[-1] else None
        n = np.flatnonzero(a == nl)
        breaks = np.sort(np.concatenate([n, r[bare]]))  # line breaks: csv's (and an editor's) lines, bare \r too
        ends = n[(quotes + np.searchsorted(q, n)) % 2 == 0]  # newlines outside quotes end records
        ends = ends[ends + offset + 1 < size]  # (but one at the file's end)
        chosen = ends[(records + np.arange(len(ends)) - 1) % shard_size == 0]
        starts += zip((lines + np.searchsorted(breaks, chosen, side="right") + 1).tolist(), (chosen + offset + 1).tolist())
        records += len(ends)
        quotes, lines, offset, previous = quotes + len(q), lines + len(breaks), offset + len(a), a[-1]
    return starts, max(0, records - 1)


class CsvReader(LineReader):
    """`kind` "csv" or "tsv": the delimiter."""

    def __init__(self, kind: str):
        self.kind = kind

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of `shard_size` records (the header checked first: column names, each once, one of them
        `text_field`), found by `quoted_record_starts` where it applies, else by one pass parsing every record.
        Raises RobertaInferError for a file that is not text, no header, a duplicate column name or no column
        `text_field`."""
        check_text_file(path)
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                records = file_records(f, self.kind, str(path))
                self.check_header(path, next(records, None), text_field)
                found = quoted_record_starts(f, size, DELIMITERS[self.kind], shard_size)
                if found is None:
                    f.seek(0)
                    records = file_records(f, self.kind, str(path))
                    next(records)
                    found = parsed_record_starts(records, shard_size)
        except OSError as e:
            raise cannot_read(path, e) from None
        starts, count = found
        ends = [start for _, start in starts[1:]] + [size]
        return self.spans(path, [(line, min(shard_size, count - k * shard_size), (start, end))
                                 for k, ((line, start), end) in enumerate(zip(starts, ends))])

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
        UTF-8 or a blank text is the record's error; a text is kept as `data.clean_text` leaves it."""
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
            elif not (text := clean_text(fields[columns.index(text_field)])):
                error = BLANK
            row = dict(zip(columns, fields)) if error in (None, BLANK) else None
            texts.append(text if error is None else None)
            errors.append(error and f"{self.where(span, line)}: {error}")
            for name in columns:
                kept[name].append(row[name] if row else None)
        return Records(ids, texts, errors, {name: pa.array(kept[name], pa.string()) for name in columns})
