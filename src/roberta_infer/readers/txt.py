"""Plain text: one UTF-8 text per line (a `\\r` before the newline dropped), the line as the record's `text` field."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import BLANK, decode_utf8, is_blank, read_utf8
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
    line). Raises RobertaInferError (`data.read_utf8`) for a missing or unreadable file, a file that is not text
    (compressed, binary, UTF-16), bytes that are not UTF-8 (naming the first such line), or an empty or blank line
    (`data.is_blank`: nothing to classify; naming the first)."""
    name = "standard input" if str(path) == STDIO else str(path)
    text = decode_utf8(sys.stdin.buffer.read(), name) if str(path) == STDIO else read_utf8(path)
    lines = [line.removesuffix("\r") for line in split_lines(text)]
    blank = next((number for number, line in enumerate(lines, start=1) if is_blank(line)), None)
    if blank is not None:
        raise RobertaInferError(f"{name} line {blank}: {BLANK}")
    return lines
