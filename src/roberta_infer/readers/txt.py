"""Plain text: one UTF-8 text per line (a `\\r` before the newline dropped), the line as the record's `text` field."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import BLANK, clean_text, decode_utf8, read_utf8
from ..errors import RobertaInferError
from ..outputs import STDIO
from .base import Records, Span
from .lines import LineReader, split_lines


class TxtReader(LineReader):
    kind = "txt"

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        return self.records(span, enumerate(split_lines(data), start=span.first), text_field, read_line)


def read_line(raw: bytes, text_field: str) -> tuple[str, dict]:
    """(text, {"text": text}) of one line; raises UnicodeDecodeError for bytes that are not UTF-8."""
    text = raw.removesuffix(b"\r").decode("utf-8")
    return text, {"text": text}


def read_lines(path: Path | str) -> list[str]:
    """Every line of a whole text file, or of standard input (`-`), as one text each (a final newline ends the last
    line), as `data.clean_text` leaves it. Raises RobertaInferError (`data.read_utf8`) for a missing or unreadable
    file, a file that is not text (compressed, binary, UTF-16), bytes that are not UTF-8 (naming the first such line),
    or an empty or blank line (nothing to classify; naming the first)."""
    name = "standard input" if str(path) == STDIO else str(path)
    text = decode_utf8(sys.stdin.buffer.read(), name) if str(path) == STDIO else read_utf8(path)
    lines = [clean_text(line) for line in split_lines(text)]  # a `\r` before the newline is stripped with the rest
    blank = next((number for number, line in enumerate(lines, start=1) if not line), None)
    if blank is not None:
        raise RobertaInferError(f"{name} line {blank}: {BLANK}")
    return lines
