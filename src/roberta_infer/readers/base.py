"""What every input format's reader shares: the span of a file it reads, the records it returns, its interface."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..data import BLANK, clean_text
from ..errors import RobertaInferError


@dataclass(frozen=True)
class Span:
    """Records `first` … `first + count - 1` of one input file, as a reader's `plan` cut them.

    `source` is the file as the user named it (ids and messages use it), `path` the same file made absolute (what
    is read, by any process). `kind` is the file's format (a key of `readers.READERS`). `where` is (first byte, end
    byte) of a text file, or (row group, first row within it) of a Parquet file. Plain values only, so a span
    travels as JSON (to Ray actors).
    """

    source: str
    path: str
    kind: str
    first: int
    count: int
    where: tuple[int, int]


@dataclass
class Records:
    """A span's records, all of the same length: ids (`<source>:<line or row>`), texts (None where the record is
    bad), errors (None where it is good; else a message naming file and line or row) and the input fields kept for
    the output (name → Arrow array)."""

    ids: list[str]
    texts: list[str | None]
    errors: list[str | None]
    fields: dict[str, pa.Array]


class Reader:
    """One input format: `plan` cuts a file into spans without holding it in memory, `read` reads one span.

    Both raise RobertaInferError for a file that cannot be read as this format (naming the file and the fix); a bad
    record is no exception but an error in `Records.errors`.
    """

    kind: str
    unit = "line"  # what a record's number counts, in ids and messages

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """The file's spans of at most `shard_size` records, in order; checks it has the text field first."""
        raise NotImplementedError

    def read(self, span: Span, text_field: str) -> Records:
        """The span's records (possibly fewer or more than planned when the file changed: `readers.read` checks)."""
        raise NotImplementedError

    def spans(self, path: Path, pieces: list[tuple[int, int, tuple[int, int]]]) -> list[Span]:
        """`Span`s of `path` from (first, count, where) triples."""
        return [Span(str(path), str(path.resolve()), self.kind, first, count, where) for first, count, where in pieces]

    def where(self, span: Span, number: int) -> str:
        """How messages name record `number` of the span's file: `<source> line 12`, `<source> row 3`."""
        return f"{span.source} {self.unit} {number}"

    def records(self, span: Span, items: Iterable[tuple[int, object]], text_field: str,
                read_item: Callable[[object, str], tuple[str, dict]]) -> Records:
        """The records of numbered `items` (number, raw record) through `read_item` (→ text, fields); its
        UnicodeDecodeError/ValueError, or a blank text, becomes the record's error; a text is kept as
        `data.clean_text` leaves it (its ends stripped; the fields as read). Raises
        RobertaInferError when the records' fields cannot be one Arrow struct (a field's type varies)."""
        ids, texts, errors, kept = [], [], [], []
        last = span.first
        for number, item in items:
            ids.append(f"{span.source}:{number}")
            text, fields, error = None, None, None
            try:
                text, fields = read_item(item, text_field)
                text = clean_text(text)
                if not text:
                    raise ValueError(BLANK)
            except UnicodeDecodeError as e:
                error = f"{self.where(span, number)}: not valid UTF-8 ({e.reason} at byte {e.start})"
            except ValueError as e:
                error = f"{self.where(span, number)}: {e}"
            texts.append(text if error is None else None)
            errors.append(error)
            kept.append(fields)
            last = number
        try:
            struct = pa.array(kept)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise RobertaInferError(f"{self.where(span, span.first)} to {self.unit} {last}: fields "
                                    f"cannot be stored as columns ({e})") from None
        fields = {f.name: struct.field(i) for i, f in enumerate(struct.type)} if pa.types.is_struct(struct.type) else {}
        return Records(ids, texts, errors, fields)

    def changed(self, span: Span, found: int) -> RobertaInferError:
        """The error for a span that no longer holds its planned number of records."""
        return RobertaInferError(f"{span.source} changed while the job ran: expected {span.count} records from "
                                 f"{self.where(span, span.first)}, found {found}")
