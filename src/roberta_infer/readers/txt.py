"""Plain text: one UTF-8 text per line (a `\\r` before the newline dropped), the line as the record's `text` field."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import decode_utf8, read_utf8
from ..outputs import STDIO
from .base import Records, Span
from .lines import LineReader, split_lines


class TxtReader(LineReader):
    kind = "txt"

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        return self.lines_to_records(span, data, text_field, read_line)


def read_line(raw: bytes, text_field: str) -> tuple[str, dict]:
    """(text, {"text": text}) of one line; raises UnicodeDecodeError for bytes that are not UTF-8."""
    text = raw.removesuffix(b"\r").decode("utf-8")
    return text, {"text": text}


def read_lines(path: Path | str) -> list[str]:
    """Every line of a whole text file, or of standard input (`-`), as one text each: an empty line is an (empty)
    text, a final newline is not. Raises RobertaInferError (`data.read_utf8`) for a missing or unreadable file,
    UTF-16, or bytes that are not UTF-8 (naming the first such line)."""
    text = decode_utf8(sys.stdin.buffer.read(), "standard input") if str(path) == STDIO else read_utf8(path)
    return [line.removesuffix("\r") for line in split_lines(text)]
