"""Parquet: column `text_field` (string or binary, decoded as UTF-8) the text, every column kept; cut into spans
within its row groups, from the file's metadata alone."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..data import BLANK, clean_text
from ..errors import RobertaInferError
from .base import Reader, Records, Span


class ParquetReader(Reader):
    kind = "parquet"
    unit = "row"

    def plan(self, path: Path, text_field: str, shard_size: int) -> list[Span]:
        """Spans of (row group, first row within it): row groups cut every `shard_size` rows. Raises
        RobertaInferError for a file that is not Parquet, or no text column `text_field`."""
        metadata = parquet_file(path).metadata
        schema = metadata.schema.to_arrow_schema()
        if text_field not in schema.names:
            raise RobertaInferError(f"{path}: no column {text_field!r} (columns: {', '.join(schema.names)}); "
                                    f"choose one with --text-field")
        kind = schema.field(text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind)):
            raise RobertaInferError(f"{path}: column {text_field!r} holds {kind}, not text")
        pieces, row = [], 1
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            pieces += [(row + offset, min(shard_size, rows - offset), (group, offset))
                       for offset in range(0, rows, shard_size)]
            row += rows
        return self.spans(path, pieces)

    def read(self, span: Span, text_field: str) -> Records:
        """The span's rows of its row group (streamed in batches), all columns kept; a null, non-UTF-8 or blank
        text is the row's error; a text is kept as `data.clean_text` leaves it."""
        group, offset = span.where
        batches, seen = [], 0
        try:
            for batch in parquet_file(span.path).iter_batches(batch_size=span.count, row_groups=[group]):
                low, high = max(offset - seen, 0), min(offset + span.count - seen, len(batch))
                if low < high:
                    batches.append(batch.slice(low, high - low))
                seen += len(batch)
                if seen >= offset + span.count:
                    break
        except (OSError, pa.ArrowException) as e:
            raise RobertaInferError(f"{self.where(span, span.first)}…: unreadable Parquet "
                                    f"({str(e).splitlines()[0]})") from None
        table = pa.Table.from_batches(batches) if batches else pq.read_schema(span.path).empty_table()
        ids, texts, errors = [], [], []
        for number, value in enumerate(table.column(text_field).to_pylist(), start=span.first):
            ids.append(f"{span.source}:{number}")
            error = None
            if value is None:
                error = f"no text (null {text_field!r})"
            elif isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as e:
                    error, value = f"not valid UTF-8 ({e.reason} at byte {e.start})", None
            if error is None and not (value := clean_text(value)):
                error = BLANK
            texts.append(value if error is None else None)
            errors.append(error and f"{self.where(span, number)}: {error}")
        return Records(ids, texts, errors, {name: table.column(name).combine_chunks() for name in table.column_names})


def parquet_file(path: Path | str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise RobertaInferError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
