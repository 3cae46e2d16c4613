"""Line-oriented formats (txt, jsonl): one record per line, cut into spans by byte offsets.

A plan is one pass counting newlines, keeping the byte offset of every span's first line, so a file of any size is
planned in constant memory; a span is read by seeking to its first byte. A final newline ends the last line rather
than starting an empty one; a UTF-8 BOM at the start of the file is dropped.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np

from ..data import refuse_non_text
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


def check_text_file(path: Path) -> None:
    """Refuse (RobertaInferError) a file that cannot be read or, by its first block, is not UTF-8 text
    (`data.refuse_non_text`: compressed, binary, UTF-16) as a whole rather than line by line."""
    try:
        with open(path, "rb") as f:
            refuse_non_text(f.read(SCAN_BLOCK), str(path))
    except OSError as e:
        raise cannot_read(path, e) from None


class LineReader(Reader):
    """A format of one record per line; subclasses parse a span's bytes (`parse`)."""

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        """The span's records from its bytes (whole lines; a file's BOM is before its first span)."""
        raise NotImplementedError

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of `shard_size` lines from one pass counting newlines (`check_text_file` first)."""
        check_text_file(path)
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                head = len(codecs.BOM_UTF8) if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
                starts = [head] if size > head else []  # byte offsets of lines 1, 1 + shard_size, ...
                lines = len(starts)
                f.seek(0)
                offset = 0
                while block := f.read(SCAN_BLOCK):
                    following = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n")) + offset + 1
                    following = following[following < size]  # a line starts after every newline but a final one
                    numbers = lines + 1 + np.arange(len(following))
                    starts += following[(numbers - 1) % shard_size == 0].tolist()
                    lines += len(following)
                    offset += len(block)
        except OSError as e:
            raise cannot_read(path, e) from None
        ends = starts[1:] + [size]
        return self.spans(path, [(1 + k * shard_size, min(shard_size, lines - k * shard_size), (start, end))
                                 for k, (start, end) in enumerate(zip(starts, ends))])

    def read(self, span: Span, text_field: str) -> Records:
        start, end = span.where
        try:
            with open(span.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as e:
            raise cannot_read(span.source, e) from None
        return self.parse(span, data, text_field)
