"""Line-oriented formats (txt, jsonl, csv, tsv): one record per line, cut into spans by byte offsets.

A plan is one pass counting newlines, keeping the byte offset of every span's first line, so a file of any size is
planned in constant memory; a span is read by seeking to its first byte. A final newline ends the last line rather
than starting an empty one; a UTF-8 BOM at the start of the file is dropped.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..data import refuse_utf16
from ..errors import RobertaInferError
from .base import Reader, Records, Span

SCAN_BLOCK = 1 << 22  # bytes read at a time while counting lines


def split_lines(data: bytes | str) -> list:
    """`data` split at newlines, a final newline ending the last line (not starting an empty one)."""
    lines = data.split(b"\n" if isinstance(data, bytes) else "\n")
    if lines[-1] in (b"", ""):
        lines.pop()
    return lines


def cannot_read(path: Path | str, error: OSError) -> RobertaInferError:
    return RobertaInferError(f"{path}: cannot read ({error.strerror})")


class LineReader(Reader):
    """A format of one record per line; subclasses parse a span's bytes (`parse`) and may have a header line."""

    def header_lines(self, path: Path, text_field: str) -> int:
        """Lines before the first record (0, or 1 for a header, which this also checks names `text_field`)."""
        return 0

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        """The span's records from its bytes (whole lines, a BOM already dropped)."""
        raise NotImplementedError

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of `shard_size` lines from one pass counting newlines. A UTF-16 file (by its first block) is refused
        as a whole rather than line by line."""
        try:
            with open(path, "rb") as f:
                refuse_utf16(f.read(SCAN_BLOCK), str(path))
        except OSError as e:
            raise cannot_read(path, e) from None
        first_record = 1 + self.header_lines(path, text_field)
        size = path.stat().st_size
        starts = [0] if size and first_record == 1 else []  # byte offsets of lines first_record, +shard_size, ...
        lines = 1 if size else 0
        try:
            with open(path, "rb") as f:
                offset = 0
                while block := f.read(SCAN_BLOCK):
                    following = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n")) + offset + 1
                    following = following[following < size]  # a line starts after every newline but a final one
                    numbers = lines + 1 + np.arange(len(following))
                    keep = (numbers >= first_record) & ((numbers - first_record) % shard_size == 0)
                    starts += following[keep].tolist()
                    lines += len(following)
                    offset += len(block)
        except OSError as e:
            raise cannot_read(path, e) from None
        records = max(0, lines - first_record + 1)
        ends = starts[1:] + [size]
        return self.spans(path, [(first_record + k * shard_size, min(shard_size, records - k * shard_size), (start, end))
                                 for k, (start, end) in enumerate(zip(starts, ends))])

    def read(self, span: Span, text_field: str) -> Records:
        start, end = span.where
        try:
            with open(span.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as e:
            raise cannot_read(span.source, e) from None
        if start == 0:
            data = data.removeprefix(codecs.BOM_UTF8)
        return self.parse(span, data, text_field)

    def lines_to_records(self, span: Span, data: bytes, text_field: str,
                         read_line: Callable[[bytes, str], tuple[str, dict]]) -> Records:
        """Each line through `read_line` (→ text, fields); its UnicodeDecodeError/ValueError becomes the record's
        error. Raises RobertaInferError when the lines' fields cannot be one Arrow struct (a field's type varies)."""
        ids, texts, errors, kept = [], [], [], []
        for number, raw in enumerate(split_lines(data), start=span.first):
            ids.append(f"{span.source}:{number}")
            text, fields, error = None, None, None
            try:
                text, fields = read_line(raw, text_field)
            except UnicodeDecodeError as e:
                error = f"{self.where(span, number)}: not valid UTF-8 ({e.reason} at byte {e.start})"
            except ValueError as e:
                error = f"{self.where(span, number)}: {e}"
            texts.append(text)
            errors.append(error)
            kept.append(fields)
        try:
            struct = pa.array(kept)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise RobertaInferError(f"{self.where(span, span.first)} to line {span.first + span.count - 1}: fields "
                                    f"cannot be stored as columns ({e})") from None
        fields = {f.name: struct.field(i) for i, f in enumerate(struct.type)} if pa.types.is_struct(struct.type) else {}
        return Records(ids, texts, errors, fields)
