"""CSV and TSV: a header line naming the columns, then one record per line; column `text_field` the text.

CSV: comma, double quotes; TSV: tab, no quoting (as GLUE's files and fairseq's `cut -f`). One record per line: an
empty line is a record of empty fields, a quoted value may not span lines. Every column is kept, as text.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import RobertaInferError
from .base import Records, Span
from .lines import LineReader, cannot_read


class CsvReader(LineReader):
    """`kind` "csv" or "tsv": the dialect."""

    def __init__(self, kind: str):
        self.kind = kind

    def header_lines(self, path: Path, text_field: str) -> int:
        columns = self.columns(path)
        if text_field not in columns:
            raise RobertaInferError(f"{path} line 1: no column {text_field!r} (columns: {', '.join(columns)}); "
                                    f"choose one with --text-field")
        return 1

    def columns(self, path: Path) -> list[str]:
        """The header's column names (line 1, a UTF-8 BOM stripped). Raises RobertaInferError for an unreadable
        file, no header, or a header the dialect cannot parse."""
        try:
            with open(path, "rb") as f:
                header = f.readline().removeprefix(codecs.BOM_UTF8).rstrip(b"\r\n")
        except OSError as e:
            raise cannot_read(path, e) from None
        if not header:
            raise RobertaInferError(f"{path} line 1: no header (a {self.kind.upper()} file needs column names on line 1)")
        try:
            return pacsv.read_csv(io.BytesIO(header + b"\n"), parse_options=self.options()).column_names
        except pa.ArrowException as e:
            raise RobertaInferError(f"{path} line 1: unreadable header ({str(e).splitlines()[0]})") from None

    def options(self, invalid_row_handler=None) -> pacsv.ParseOptions:
        tsv = self.kind == "tsv"
        return pacsv.ParseOptions(delimiter="\t" if tsv else ",", quote_char=False if tsv else '"',
                                  newlines_in_values=False, ignore_empty_lines=False,
                                  invalid_row_handler=invalid_row_handler)

    def parse(self, span: Span, data: bytes, text_field: str) -> Records:
        """Parse the span's lines under the file's header with pyarrow.csv, every column as bytes, then decode each
        value so a bad one is reported with its line; a row with the wrong number of fields is an error too."""
        columns = self.columns(Path(span.path))
        bad_rows: dict[int, str] = {}

        def invalid(row) -> str:  # row.number: the line within `data`, from 1
            bad_rows[span.first + row.number - 1] = f"expected {row.expected_columns} fields, found {row.actual_columns}"
            return "skip"

        try:
            table = pacsv.read_csv(
                io.BytesIO(data), read_options=pacsv.ReadOptions(use_threads=False, column_names=columns),
                parse_options=self.options(invalid),
                convert_options=pacsv.ConvertOptions(column_types={name: pa.binary() for name in columns},
                                                     strings_can_be_null=False))
        except pa.ArrowException as e:
            raise RobertaInferError(f"{self.where(span, span.first)}…: unreadable {self.kind.upper()} "
                                    f"({str(e).splitlines()[0]})") from None
        if table.num_rows + len(bad_rows) != span.count:
            raise self.changed(span, table.num_rows + len(bad_rows))
        values = {name: iter(table.column(name).to_pylist()) for name in columns}
        ids, texts, errors, kept = [], [], [], {name: [] for name in columns}
        for number in range(span.first, span.first + span.count):
            ids.append(f"{span.source}:{number}")
            row, error = None, bad_rows.get(number)
            if error is None:
                raw = {name: next(values[name]) for name in columns}
                try:
                    row = {name: value.decode("utf-8") for name, value in raw.items()}
                except UnicodeDecodeError as e:
                    error = f"not valid UTF-8 ({e.reason})"
            texts.append(row[text_field] if row else None)
            errors.append(error and f"{self.where(span, number)}: {error}")
            for name in columns:
                kept[name].append(row[name] if row else None)
        return Records(ids, texts, errors, {name: pa.array(kept[name], pa.string()) for name in columns})
