"""JSON Lines: one JSON object per line, its `text_field` (a string) the text, every field kept."""

from __future__ import annotations

import json

from .base import Records, Span
from .lines import LineReader, split_lines


class JsonlReader(LineReader):
    kind = "jsonl"

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        return self.records(span, enumerate(split_lines(data), start=span.first), text_field, read_line)


def read_line(raw: bytes, text_field: str) -> tuple[str, dict]:
    """(text, the object) of one line. Raises ValueError (the record's error) for a line that is not a JSON object
    whose `text_field` is a string, UnicodeDecodeError for bytes that are not UTF-8."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    if b"\\u" in raw:  # only an escape makes a lone surrogate
        check_characters(value)
    return read_object(value, text_field)


def check_characters(value: object) -> None:
    """Raise ValueError when a string of a parsed JSON value (keys included) holds a lone surrogate: JSON's
    "\\ud800" escape parses to one, which is no character (no UTF-8, no Arrow string); or when the value is nested
    too deeply to look through."""
    try:
        look_through(value)
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def look_through(value: object) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode (an unpaired surrogate escape)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            look_through(key)
            look_through(item)
    elif isinstance(value, list):
        for item in value:
            look_through(item)


def read_object(value: dict, text_field: str) -> tuple[str, dict]:
    """(text, the object) of a JSON object whose `text_field` is a string, else ValueError naming what is wrong."""
    if text_field not in value:
        raise ValueError(f"no field {text_field!r} (fields: {', '.join(value) or 'none'}); choose one with --text-field")
    if not isinstance(value[text_field], str):
        raise ValueError(f"field {text_field!r} is {type(value[text_field]).__name__}, not a string")
    return value[text_field], value
