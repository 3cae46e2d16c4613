"""JSON: a `.json` file holding one array, each element a record: a string (the text) or an object whose
`text_field` is a string (every field kept). The file is parsed whole (a plan and each span's read parse it again):
for collections too big for memory, write JSON Lines (`.jsonl`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..data import decode_utf8
from ..errors import RobertaInferError
from .base import Reader, Records, Span
from .jsonl import check_characters, read_object
from .lines import cannot_read


class JsonArrayReader(Reader):
    kind = "json"
    unit = "element"

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of (first element, end element) `shard_size` elements each (numbered from 1)."""
        count = len(load(path, str(path)))
        return self.spans(path, [(1 + start, min(shard_size, count - start), (start, min(start + shard_size, count)))
                                 for start in range(0, count, shard_size)])

    def read(self, span: Span, text_field: str) -> Records:
        start, end = span.where
        elements = load(Path(span.path), span.source)[start:end]
        return self.records(span, enumerate(elements, start=span.first), text_field, read_element)


def load(path: Path, source: str) -> list:
    """The array a `.json` file holds. Raises RobertaInferError for a file that cannot be read, is not text or not
    UTF-8 (`data.decode_utf8`), is not JSON, or holds anything but an array."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise cannot_read(source, e) from None
    try:
        value = json.loads(decode_utf8(raw, source))
    except json.JSONDecodeError as e:
        raise RobertaInferError(f"{source} line {e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise RobertaInferError(f"{source}: not valid JSON (nested too deeply)") from None
    if not isinstance(value, list):
        raise RobertaInferError(f"{source} holds {json_kind(value)}, not an array: a .json file is read as an "
                                "array of texts, or of objects with the text in --text-field (one object per line is "
                                "JSON Lines: name it .jsonl)")
    return value


def read_element(value: object, text_field: str) -> tuple[str, dict]:
    """(text, fields) of one element: a string is the text (kept as field `text_field`), an object is read as a JSON
    Lines record is (`jsonl.read_object`); ValueError for anything else, or a lone surrogate (`check_characters`)."""
    check_characters(value)
    if isinstance(value, str):
        return value, {text_field: value}
    if not isinstance(value, dict):
        raise ValueError(f"{json_kind(value)}, not a string or an object")
    return read_object(value, text_field)


def json_kind(value: object) -> str:
    """How messages name a parsed JSON value's type: "a JSON object", "a JSON number", …"""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "JSON null" if value is None else f"a JSON {names.get(type(value), type(value).__name__)}"
