"""`classify`: a batch job over big text collections, in this process or on a Ray cluster.

The job, top to bottom:

1. `expand_inputs`: files, directories and globs → an ordered list of `.txt`/`.jsonl`/`.csv`/`.tsv`/`.parquet` files.
2. `plan_shards`: each file cut into shards of at most `shard_size` records, found without holding the file in memory
   (text files: one pass counting newlines, keeping the byte offset of every shard's first line; Parquet: its row
   groups' metadata). The plan depends on the input only, so both engines write the same shards and `--resume`
   skips the shards already written, whichever engine wrote them.
3. `run_shard`, once per shard: read its records (`read_shard`), classify them with `predict.classify` (the project's
   length-aware batching), and write one output file atomically (temporary sibling, then rename). A shard file exists
   only once complete, so an interrupted job loses nothing and a retried shard duplicates nothing.
4. The engine runs the pending shards: `local` in this process with a progress bar (memory: one shard at a time),
   `ray` as Ray Data `from_items(shards) → map_batches(ShardWorker)`: a pool of actors, each loading the model once.
5. `_SUCCESS` (JSON): counts, model sha256, engine, throughput in sentences/s, wall time, per-worker figures.

Record ids are `<input path as given>:<number>`: the line number (1-based, a CSV/TSV header is line 1) for text
files, the row number (1-based) for Parquet.
"""

from __future__ import annotations

import glob
import io
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .data import refuse_utf16
from .default import default_bundle
from .errors import RobertaInferError, check_positive
from .predict import Classifier, classify, labelled

FORMAT = "roberta-infer/classify/1"
KINDS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
OUTPUT_FORMATS = ("parquet", "jsonl")
ON_ERROR = ("fail", "skip")
RESULT_COLUMNS = ("id", "label", "score", "logits", "error")
JOB_FILE, SUCCESS_FILE = "_JOB.json", "_SUCCESS"
BOM = b"\xef\xbb\xbf"
SCAN_BLOCK = 1 << 22  # bytes read at a time while counting lines


@dataclass(frozen=True)
class Shard:
    """One output file's worth of one input file: `count` records, the first numbered `first`.

    `source` is the file as the user named it (ids and messages use it), `path` the same file made absolute (what
    is read, by any process). `where` is (first byte, end byte) of a text file, or (row group, first row within it)
    of a Parquet file.
    """

    name: str
    source: str
    path: str
    kind: str
    first: int
    count: int
    where: tuple[int, int]


@dataclass(frozen=True)
class Job:
    """What every shard needs to know: where results go and how records are read and written."""

    out: str
    text_field: str
    output_format: str
    on_error: str
    batch_size: int


@dataclass
class Records:
    """A shard's records: ids, texts (None where the record is bad), errors (None where it is good) and the
    input fields kept for the output, as Arrow arrays of the same length."""

    ids: list[str]
    texts: list[str | None]
    errors: list[str | None]
    fields: dict[str, pa.Array]


# ---------------------------------------------------------------- the job


def classify_collection(model: Path | None, inputs: list[str], out: Path, *, fairseq_data: Path | None = None,
                        bpe_dir: Path | None = None, text_field: str = "text", output_format: str = "parquet",
                        engine: str = "local", ray_address: str | None = None, workers: int | None = None,
                        threads: int | None = None, batch_size: int = 32, shard_size: int = 10_000,
                        resume: bool = False, on_error: str = "fail", show_progress: bool = False,
                        progress: Callable[[str], None] = print, worker_class: type | None = None) -> dict:
    """Classify every record of `inputs` into shards under `out`; returns the `_SUCCESS` manifest (a dict; with
    `already_complete: true` added when `resume` found the job finished).

    `model` is a bundle or a checkpoint (`bundle.open_model`), or None for the shipped default model's bundle
    (`default.default_bundle`, exported on first use with `progress` messages), exported and loaded only once the
    options, the inputs and `out` have passed their checks; loaded once per process: here for `local`, once per
    actor for `ray` (`workers` actors of `threads` threads each; default: as many 1-thread actors as the cluster has
    CPUs). `ray_address` joins a running cluster (`auto`, `ray://HOST:PORT`); without it a local Ray instance is
    started for the job and shut down after. `worker_class` replaces `ShardWorker` as the Ray actor (tests use one
    that dies mid-job). Raises RobertaInferError on bad options, unreadable or malformed input (with
    `on_error="fail"`; `"skip"` keeps a bad record with an `error` column and no label), and an `out` that holds
    anything but an unfinished run of this same job (or any run, without `resume`).
    """
    from .bundle import open_model

    began = time.perf_counter()
    check_options(engine=engine, ray_address=ray_address, workers=workers, threads=threads, batch_size=batch_size,
                  shard_size=shard_size, output_format=output_format, on_error=on_error)
    out = Path(out).resolve()
    files = expand_inputs(inputs, exclude=out)
    plan = plan_shards(files, text_field, shard_size)
    shard_names = [s.name for s in plan]
    identity = {
        "format": FORMAT,
        "inputs": [{"path": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files],
        "text_field": text_field, "shard_size": shard_size, "output_format": output_format, "on_error": on_error,
    }
    check_output(out, identity, resume, shard_names=shard_names, ext=output_format)  # all but the model, not loaded yet
    model = default_bundle(progress) if model is None else model
    classifier = open_model(model, fairseq_data=fairseq_data, bpe_dir=bpe_dir, threads=threads)
    identity["model_sha256"] = model_sha256(classifier)
    existed, fresh = out.exists(), not out.exists() or (out.is_dir() and not any(out.iterdir()))
    done = open_output(out, identity, resume, shard_names=shard_names, ext=output_format)
    if done is None:  # resumed a job that had already finished: its manifest, marked so
        return json.loads((out / SUCCESS_FILE).read_text()) | {"already_complete": True}
    pending = [shard for shard in plan if shard.name not in done]
    job = Job(str(out), text_field, output_format, on_error, batch_size)
    try:
        if engine == "local":
            results = run_local(classifier, pending, job, show_progress=show_progress)
            workers, threads = 1, threads or getattr(classifier, "threads", None)
        else:
            del classifier  # the actors load their own
            threads = threads or 1
            loader = {"path": str(Path(model).resolve()), "threads": threads,
                      "fairseq_data": fairseq_data and str(Path(fairseq_data).resolve()),
                      "bpe_dir": bpe_dir and str(Path(bpe_dir).resolve())}
            results, workers = run_ray(pending, job, loader, workers=workers, threads=threads, address=ray_address,
                                       worker_class=worker_class or ShardWorker)
    except RobertaInferError:  # a bad record or a changed file: this job cannot finish as it is, so --resume cannot help
        if fresh:
            discard_output(out, shard_names, output_format, remove_dir=not existed)
        raise
    manifest = summarise(plan, pending, results, identity, engine=engine, out=out, output_format=output_format,
                         wall_time_s=time.perf_counter() - began, workers=workers, threads=threads, batch_size=batch_size,
                         model=model)
    write_atomically(out / SUCCESS_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def check_options(*, engine: str, ray_address: str | None, workers: int | None, threads: int | None, batch_size: int,
                  shard_size: int, output_format: str, on_error: str) -> None:
    if engine not in ("local", "ray"):
        raise RobertaInferError(f"unknown engine {engine!r}: choose local or ray")
    if engine == "local" and (ray_address is not None or (workers or 1) != 1):
        raise RobertaInferError("--ray-address and --workers need --engine ray (the local engine is one process)")
    check_positive({"--workers": workers, "--threads-per-worker": threads, "--batch-size": batch_size,
                    "--shard-size": shard_size})
    if output_format not in OUTPUT_FORMATS:
        raise RobertaInferError(f"unknown output format {output_format!r}: choose parquet or jsonl")
    if on_error not in ON_ERROR:
        raise RobertaInferError(f"unknown --on-error {on_error!r}: choose fail or skip")


def model_sha256(classifier: Classifier) -> str:
    """A bundle's model.onnx sha256 (from its manifest), else the checkpoint's."""
    manifest = getattr(classifier, "manifest", None) or {}
    return manifest.get("model_sha256") or classifier.source["sha256"]


# ---------------------------------------------------------------- inputs and the shard plan


def expand_inputs(patterns: list[str], *, exclude: Path | None = None) -> list[Path]:
    """Each argument in order: a file as is, a directory's known files (recursive, sorted; hidden and `_` names
    skipped), a glob's matches (sorted); files under `exclude` (the job's output folder) are left out.

    Raises RobertaInferError for a missing path, a glob without matches, a file of an unknown extension, or no files.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in KINDS
                           and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
            if not found:
                raise RobertaInferError(f"{path}: no {', '.join(KINDS)} files in this directory")
        elif path.exists():
            found = [path]
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise RobertaInferError(f"{pattern}: no files match")
        else:
            raise RobertaInferError(f"{path} not found")
        for file in found:
            if file.suffix.lower() not in KINDS:
                raise RobertaInferError(f"{file}: unknown extension {file.suffix!r} (expected {', '.join(KINDS)})")
            if file.resolve() not in seen and not (exclude and exclude in file.resolve().parents):
                seen.add(file.resolve())
                files.append(file)
    if not files:
        raise RobertaInferError("no input files")
    return files


def plan_shards(files: list[Path], text_field: str, shard_size: int) -> list[Shard]:
    """Every file's shards, named `part-<file index>-<shard index>`, in input order; checks each file can be read
    and has the text column (CSV/TSV header, Parquet schema) before anything runs."""
    plan = []
    for index, path in enumerate(files):
        kind = KINDS[path.suffix.lower()]
        pieces = parquet_pieces(path, text_field, shard_size) if kind == "parquet" else \
            text_pieces(path, kind, text_field, shard_size)
        plan += [Shard(f"part-{index:05d}-{k:06d}", str(path), str(path.resolve()), kind, first, count, where)
                 for k, (first, count, where) in enumerate(pieces)]
    return plan


def text_pieces(path: Path, kind: str, text_field: str, shard_size: int) -> list[tuple[int, int, tuple[int, int]]]:
    """(first line, lines, (first byte, end byte)) of each shard of a text file, from one pass counting newlines.

    A final newline ends the last line rather than starting an empty one; a CSV/TSV header (line 1) is no record.
    A UTF-16 file (by its first block) is refused as a whole rather than line by line.
    """
    try:
        with open(path, "rb") as f:
            refuse_utf16(f.read(SCAN_BLOCK), str(path))
    except OSError as e:
        raise RobertaInferError(f"{path}: cannot read ({e.strerror})") from None
    first_record = 1
    if kind in ("csv", "tsv"):
        columns = csv_columns(path, kind)
        if text_field not in columns:
            raise RobertaInferError(f"{path} line 1: no column {text_field!r} (columns: {', '.join(columns)}); "
                                    f"choose one with --text-field")
        first_record = 2
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
        raise RobertaInferError(f"{path}: cannot read ({e.strerror})") from None
    records = max(0, lines - first_record + 1)
    ends = starts[1:] + [size]
    return [(first_record + k * shard_size, min(shard_size, records - k * shard_size), (start, end))
            for k, (start, end) in enumerate(zip(starts, ends))]


def parquet_pieces(path: Path, text_field: str, shard_size: int) -> list[tuple[int, int, tuple[int, int]]]:
    """(first row, rows, (row group, first row within it)) of each shard: row groups cut every `shard_size` rows."""
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
        pieces += [(row + offset, min(shard_size, rows - offset), (group, offset)) for offset in range(0, rows, shard_size)]
        row += rows
    return pieces


def parquet_file(path: Path | str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise RobertaInferError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def csv_columns(path: Path, kind: str) -> list[str]:
    """The header's column names (line 1, a UTF-8 BOM stripped)."""
    try:
        with open(path, "rb") as f:
            header = f.readline().removeprefix(BOM).rstrip(b"\r\n")
    except OSError as e:
        raise RobertaInferError(f"{path}: cannot read ({e.strerror})") from None
    if not header:
        raise RobertaInferError(f"{path} line 1: no header (a {kind.upper()} file needs column names on line 1)")
    try:
        return pacsv.read_csv(io.BytesIO(header + b"\n"), parse_options=csv_options(kind)).column_names
    except pa.ArrowException as e:
        raise RobertaInferError(f"{path} line 1: unreadable header ({str(e).splitlines()[0]})") from None


def csv_options(kind: str, invalid_row_handler=None) -> pacsv.ParseOptions:
    """CSV: comma, double quotes; TSV: tab, no quoting (as GLUE's files and fairseq's `cut -f`). One record per line:
    an empty line is a record of empty fields, a quoted value may not span lines."""
    return pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", quote_char=False if kind == "tsv" else '"',
                              newlines_in_values=False, ignore_empty_lines=False, invalid_row_handler=invalid_row_handler)


# ---------------------------------------------------------------- reading one shard


def read_shard(shard: Shard, text_field: str) -> Records:
    """The shard's records; a bad record (not UTF-8, not JSON, no text) gets an error naming its file and line/row.

    Raises RobertaInferError when the file cannot be read or no longer has the planned number of records.
    """
    if shard.kind == "parquet":
        records = read_parquet_shard(shard, text_field)
    else:
        start, end = shard.where
        try:
            with open(shard.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as e:
            raise RobertaInferError(f"{shard.source}: cannot read ({e.strerror})") from None
        if start == 0:
            data = data.removeprefix(BOM)
        if shard.kind in ("csv", "tsv"):
            records = read_csv_shard(shard, data, text_field)
        else:
            lines = data.split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            read_line = read_txt_line if shard.kind == "txt" else read_jsonl_line
            records = lines_to_records(shard, lines, text_field, read_line)
    if len(records.ids) != shard.count:
        raise changed(shard, len(records.ids))
    return records


def file_texts(path: Path, text_field: str) -> list[str]:
    """Every text of one input file, in order, read as a job reads its shards (for `predict`, which holds them all);
    the first bad record raises RobertaInferError naming its file and line or row."""
    texts: list[str] = []
    for shard in plan_shards([path], text_field, shard_size=10_000):
        records = read_shard(shard, text_field)
        bad = next((error for error in records.errors if error), None)
        if bad:
            raise RobertaInferError(bad)
        texts += records.texts
    return texts


def changed(shard: Shard, found: int) -> RobertaInferError:
    return RobertaInferError(f"{shard.source} changed while the job ran: expected {shard.count} records from "
                             f"{where(shard, shard.first)}, found {found}")


def where(shard: Shard, number: int) -> str:
    return f"{shard.source} {'row' if shard.kind == 'parquet' else 'line'} {number}"


def read_txt_line(raw: bytes, text_field: str) -> tuple[str, dict]:
    text = raw.removesuffix(b"\r").decode("utf-8")
    return text, {"text": text}


def read_jsonl_line(raw: bytes, text_field: str) -> tuple[str, dict]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    if text_field not in value:
        raise ValueError(f"no field {text_field!r} (fields: {', '.join(value) or 'none'}); choose one with --text-field")
    if not isinstance(value[text_field], str):
        raise ValueError(f"field {text_field!r} is {type(value[text_field]).__name__}, not a string")
    return value[text_field], value


def lines_to_records(shard: Shard, lines: list[bytes], text_field: str, read_line) -> Records:
    """Each line through `read_line` (→ text, fields); its UnicodeDecodeError/ValueError becomes the record's error."""
    ids, texts, errors, kept = [], [], [], []
    for number, raw in enumerate(lines, start=shard.first):
        ids.append(f"{shard.source}:{number}")
        text, fields, error = None, None, None
        try:
            text, fields = read_line(raw, text_field)
        except UnicodeDecodeError as e:
            error = f"{where(shard, number)}: not valid UTF-8 ({e.reason} at byte {e.start})"
        except ValueError as e:
            error = f"{where(shard, number)}: {e}"
        texts.append(text)
        errors.append(error)
        kept.append(fields)
    try:
        struct = pa.array(kept)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise RobertaInferError(f"{where(shard, shard.first)} to line {shard.first + shard.count - 1}: fields cannot "
                                f"be stored as columns ({e})") from None
    fields = {f.name: struct.field(i) for i, f in enumerate(struct.type)} if pa.types.is_struct(struct.type) else {}
    return Records(ids, texts, errors, fields)


def read_csv_shard(shard: Shard, data: bytes, text_field: str) -> Records:
    """Parse the shard's lines under the file's header with pyarrow.csv, every column as bytes, then decode each
    value so a bad one is reported with its line; a row with the wrong number of fields is an error too."""
    columns = csv_columns(Path(shard.path), shard.kind)
    bad_rows: dict[int, str] = {}

    def invalid(row) -> str:  # row.number: the line within `data`, from 1
        bad_rows[shard.first + row.number - 1] = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data), read_options=pacsv.ReadOptions(use_threads=False, column_names=columns),
            parse_options=csv_options(shard.kind, invalid),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.binary() for name in columns},
                                                 strings_can_be_null=False))
    except pa.ArrowException as e:
        raise RobertaInferError(f"{where(shard, shard.first)}…: unreadable {shard.kind.upper()} ({str(e).splitlines()[0]})") from None
    if table.num_rows + len(bad_rows) != shard.count:
        raise changed(shard, table.num_rows + len(bad_rows))
    values = {name: iter(table.column(name).to_pylist()) for name in columns}
    ids, texts, errors, kept = [], [], [], {name: [] for name in columns}
    for number in range(shard.first, shard.first + shard.count):
        ids.append(f"{shard.source}:{number}")
        row, error = None, bad_rows.get(number)
        if error is None:
            raw = {name: next(values[name]) for name in columns}
            try:
                row = {name: value.decode("utf-8") for name, value in raw.items()}
            except UnicodeDecodeError as e:
                error = f"not valid UTF-8 ({e.reason})"
        texts.append(row[text_field] if row else None)
        errors.append(error and f"{where(shard, number)}: {error}")
        for name in columns:
            kept[name].append(row[name] if row else None)
    return Records(ids, texts, errors, {name: pa.array(kept[name], pa.string()) for name in columns})


def read_parquet_shard(shard: Shard, text_field: str) -> Records:
    """The shard's rows of its row group (streamed in batches), all columns kept."""
    group, offset = shard.where
    batches, seen = [], 0
    try:
        for batch in parquet_file(shard.path).iter_batches(batch_size=shard.count, row_groups=[group]):
            low, high = max(offset - seen, 0), min(offset + shard.count - seen, len(batch))
            if low < high:
                batches.append(batch.slice(low, high - low))
            seen += len(batch)
            if seen >= offset + shard.count:
                break
    except (OSError, pa.ArrowException) as e:
        raise RobertaInferError(f"{where(shard, shard.first)}…: unreadable Parquet ({str(e).splitlines()[0]})") from None
    table = pa.Table.from_batches(batches) if batches else pq.read_schema(shard.path).empty_table()
    ids, texts, errors = [], [], []
    for number, value in enumerate(table.column(text_field).to_pylist(), start=shard.first):
        ids.append(f"{shard.source}:{number}")
        error = None
        if value is None:
            error = f"no text (null {text_field!r})"
        elif isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                error, value = f"not valid UTF-8 ({e.reason} at byte {e.start})", None
        texts.append(value if error is None else None)
        errors.append(error and f"{where(shard, number)}: {error}")
    return Records(ids, texts, errors, {name: table.column(name).combine_chunks() for name in table.column_names})


# ---------------------------------------------------------------- classifying and writing one shard


def run_shard(classifier: Classifier, shard: Shard, job: Job) -> dict:
    """Read, classify and write one shard; returns {shard, records, errors, busy_s}. With `on_error="fail"` the
    first bad record raises RobertaInferError and nothing is written for the shard."""
    began = time.perf_counter()
    records = read_shard(shard, job.text_field)
    bad = [error for error in records.errors if error is not None]
    if bad and job.on_error == "fail":
        raise RobertaInferError(f"{bad[0]} (--on-error skip keeps such records with an error column)")
    good = [i for i, error in enumerate(records.errors) if error is None]
    logits = classify(classifier, [records.texts[i] for i in good], batch_size=job.batch_size) if good else None
    table = output_table(records, good, logits, classifier.class_names, with_error=job.on_error == "skip")
    target = Path(job.out) / f"{shard.name}.{job.output_format}"
    write_atomically(target, table_bytes(table, job.output_format))
    return {"shard": shard.name, "records": len(records.ids), "errors": len(bad), "busy_s": time.perf_counter() - began}


def output_table(records: Records, good: list[int], logits: np.ndarray | None, class_names: list[str], *,
                 with_error: bool) -> pa.Table:
    """id, the kept input fields (renamed `input_<name>` where they clash with ours), label, score (softmax
    probability of the label, float64), logits (float32 list) and, with `with_error`, error (null when fine)."""
    n = len(records.ids)
    label, score, row_logits = [None] * n, [None] * n, [None] * n
    for i, result in zip(good, labelled(logits, class_names) if good else []):
        label[i], score[i], row_logits[i] = result["label"], result["score"], result["logits"]
    columns = {"id": pa.array(records.ids, pa.string())}
    for name, values in records.fields.items():
        while name in RESULT_COLUMNS or name in columns:
            name = f"input_{name}"
        columns[name] = values
    columns.update(label=pa.array(label, pa.string()), score=pa.array(score, pa.float64()),
                   logits=pa.array(row_logits, pa.list_(pa.float32())))
    if with_error:
        columns["error"] = pa.array(records.errors, pa.string())
    return pa.table(columns)


def table_bytes(table: pa.Table, output_format: str) -> bytes:
    """Parquet (zstd), or JSON lines with the columns in order (non-JSON values such as dates as strings)."""
    if output_format == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in table.to_pylist()).encode()


def write_atomically(target: Path, content: bytes) -> None:
    """Write a hidden temporary sibling, then rename it over `target`: readers see the whole file or none."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- the output directory


def check_output(out: Path, identity: dict, resume: bool, *, shard_names: list[str], ext: str) -> tuple[set[str], bool] | None:
    """Refuse an `out` this job may not write: a file; a non-empty folder without a classify job; another job (one
    of the keys of `identity` differs: checked first without the model's sha256, before the model loads, then with
    it); any earlier run without `resume`. Returns None for a new or empty `out`, else the names of the shards
    already written and whether the job finished."""
    if out.exists() and not out.is_dir():
        raise RobertaInferError(f"--output {out} is a file: choose a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        previous = json.loads((out / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise RobertaInferError(f"--output {out} is not empty and holds no classify job: choose a new or empty directory") from None
    differ = [key for key in identity if previous.get(key) != identity[key]]
    if differ:
        raise RobertaInferError(f"--output {out} holds a different classify job ({', '.join(differ)} differ): "
                                f"choose another directory")
    done = {name for name in shard_names if (out / f"{name}.{ext}").is_file()}
    finished = (out / SUCCESS_FILE).is_file()
    if not resume:
        state = "complete" if finished else f"{len(done)} of {len(shard_names)} shards written"
        raise RobertaInferError(f"--output {out} holds a previous run with these inputs and options ({state}): "
                                "pass --resume to finish it, or choose another directory")
    return done, finished


def open_output(out: Path, identity: dict, resume: bool, *, shard_names: list[str], ext: str) -> set[str] | None:
    """The names of the shards already written (empty for a new job), or None when this job already finished.

    `out` is checked by `check_output`. A new or empty `out` gets `_JOB.json` (the job's identity); in a resumed
    one, leftover temporary files of an interrupted run are removed.
    """
    found = check_output(out, identity, resume, shard_names=shard_names, ext=ext)
    if found is None:
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / JOB_FILE, (json.dumps(identity, indent=2) + "\n").encode())
        return set()
    done, finished = found
    if finished:
        return None
    remove_leftovers(out)
    return done


def discard_output(out: Path, shard_names: list[str], ext: str, *, remove_dir: bool) -> None:
    """Remove what a job that started `out` afresh wrote before it failed: its shards, `_JOB.json`, temporary files,
    and `out` itself when the job created it. Only the job's own names are removed, never anything else."""
    remove_leftovers(out)
    for name in [f"{name}.{ext}" for name in shard_names] + [JOB_FILE]:
        (out / name).unlink(missing_ok=True)
    if remove_dir and not any(out.iterdir()):
        out.rmdir()


def remove_leftovers(out: Path) -> None:
    """Temporary files of writers that died (an interrupted job, a killed actor) before renaming them."""
    for leftover in out.glob(".*.tmp"):
        leftover.unlink()


def summarise(plan: list[Shard], pending: list[Shard], results: list[dict], identity: dict, *, engine: str, out: Path,
              output_format: str, wall_time_s: float, workers: int, threads: int | None, batch_size: int,
              model: Path) -> dict:
    """The `_SUCCESS` manifest, after checking every planned shard is on disk. Throughput counts this run's records
    (resumed shards excluded) over this run's wall time, start-up included."""
    missing = [s.name for s in plan if not (out / f"{s.name}.{output_format}").is_file()]
    if missing:
        raise RobertaInferError(f"{len(missing)} shards missing after the job ({missing[0]}, …): run again with --resume")
    remove_leftovers(out)
    by_name = {r["shard"]: r for r in results}
    errors = sum(by_name[s.name]["errors"] if s.name in by_name else count_errors(out / f"{s.name}.{output_format}")
                 for s in plan)
    per_worker: dict[str, dict] = {}
    for r in results:
        figures = per_worker.setdefault(r["worker"], {"worker": r["worker"], "shards": 0, "records": 0, "busy_s": 0.0})
        figures["shards"] += 1
        figures["records"] += r["records"]
        figures["busy_s"] += r["busy_s"]
    for figures in per_worker.values():
        figures["sentences_per_s"] = round(figures["records"] / figures["busy_s"], 1) if figures["busy_s"] else None
        figures["throughput_sentences_per_s"] = figures["sentences_per_s"]  # the old name, for one release
        figures["busy_s"] = round(figures["busy_s"], 3)
    run_records = sum(r["records"] for r in results)
    return {
        "format": FORMAT,
        "job": identity,
        "model": str(model),
        "model_sha256": identity["model_sha256"],
        "engine": engine,
        "workers": workers,
        "threads_per_worker": threads,
        "batch_size": batch_size,
        "files": len(identity["inputs"]),
        "shards": len(plan),
        "shards_resumed": len(plan) - len(pending),
        "records": sum(s.count for s in plan),
        "errors": errors,
        "records_this_run": run_records,
        "wall_time_s": round(wall_time_s, 3),
        "sentences_per_s": round(run_records / wall_time_s, 1),
        "throughput_sentences_per_s": round(run_records / wall_time_s, 1),  # the old name, for one release
        "per_worker": sorted(per_worker.values(), key=lambda figures: figures["worker"]),
    }


def count_errors(path: Path) -> int:
    """Records with an error in a shard written earlier (a resumed job's summary)."""
    if path.suffix == ".parquet":
        schema = pq.read_schema(path)
        if "error" not in schema.names:
            return 0
        column = pq.read_table(path, columns=["error"]).column("error")
        return len(column) - column.null_count
    with open(path, encoding="utf-8") as f:
        return sum(json.loads(line).get("error") is not None for line in f)


# ---------------------------------------------------------------- engines


def run_local(classifier: Classifier, pending: list[Shard], job: Job, *, show_progress: bool) -> list[dict]:
    """The pending shards one after another in this process, with a progress bar over records."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    worker = f"local:{os.getpid()}"
    results = []
    columns = (TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TextColumn("texts"), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=True) as progress:
        task = progress.add_task("classify", total=sum(shard.count for shard in pending))
        for shard in pending:
            results.append(run_shard(classifier, shard, job) | {"worker": worker})
            progress.advance(task, shard.count)
    return results


class ShardWorker:
    """A Ray Data actor: loads the model once (with its share of threads), then runs whole shards.

    A bad record with `on_error="fail"` comes back as the result's `error` (the driver stops the job with it) rather
    than as an exception Ray would wrap in its own traceback.
    """

    def __init__(self, job: dict, loader: dict):
        import ray

        from .bundle import open_model

        self.job = Job(**job)
        self.classifier = open_model(Path(loader["path"]), fairseq_data=loader["fairseq_data"] and Path(loader["fairseq_data"]),
                                     bpe_dir=loader["bpe_dir"] and Path(loader["bpe_dir"]), threads=loader["threads"])
        self.worker = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = []
        for text in batch["shard"]:
            shard = Shard(**json.loads(text))
            try:
                rows.append(self.run(shard) | {"worker": self.worker, "error": ""})
            except RobertaInferError as e:
                rows.append({"shard": shard.name, "records": 0, "errors": 0, "busy_s": 0.0, "worker": self.worker,
                             "error": str(e)})
        return {key: [row[key] for row in rows] for key in rows[0]}

    def run(self, shard: Shard) -> dict:
        return run_shard(self.classifier, shard, self.job)


def run_ray(pending: list[Shard], job: Job, loader: dict, *, workers: int | None, threads: int, address: str | None,
            worker_class: type) -> tuple[list[dict], int]:
    """The pending shards on Ray Data: `from_items` (one row per shard) → `map_batches` over a pool of `workers`
    actors of `threads` CPUs. Ray Data restarts an actor that dies and re-runs its shard (its default for actor
    pools: `max_restarts=-1`, `max_task_retries=-1`). Returns the per-shard results and the pool size."""
    import ray

    from .runtime import physical_cores

    started = not ray.is_initialized()
    quiet = {"log_to_driver": False, "logging_level": "warning"}  # the actors' own output stays in Ray's logs
    if started and address:
        ray.init(address=address, **quiet)
    elif started:
        cpus = (workers or max(1, physical_cores() // threads)) * threads
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers is None:
            workers = max(1, cpus // threads)
        if workers * threads > cpus:  # the pool would wait for CPUs that never come
            raise RobertaInferError(f"the Ray cluster has {cpus} CPUs, fewer than --workers {workers} × "
                                    f"--threads-per-worker {threads}")
        if not pending:
            return [], workers
        items = [{"shard": json.dumps(asdict(shard))} for shard in pending]
        pool = ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1)  # idle actors take the next shard
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            worker_class, fn_constructor_kwargs={"job": asdict(job), "loader": loader}, batch_size=1, compute=pool,
            num_cpus=threads)
        results = []
        for row in dataset.iter_rows():
            if row["error"]:
                raise RobertaInferError(row["error"])
            results.append({key: row[key] for key in ("shard", "records", "errors", "busy_s", "worker")})
        return results, workers
    finally:
        if started:
            ray.shutdown()
