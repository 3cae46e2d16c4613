"""One shard of a `classify` job: read its records, classify them, write one output file atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import readers
from ..data import sha256_file
from ..errors import RobertaInferError
from ..outputs import jsonl_line, output_file
from ..predict import Classifier, classify, labelled

RESULT_COLUMNS = ("id", "label", "score", "logits", "error")


@dataclass(frozen=True)
class Shard(readers.Span):
    """One output file's worth of one input file: the span it reads, and `name`, its output file's name less the
    extension (`part-<file index>-<shard index>`)."""

    name: str


@dataclass(frozen=True)
class Job:
    """What every shard needs to know: where results go (`out`, a folder) and how records are read and written
    (`output_format` "parquet" or "jsonl", `on_error` "fail" or "skip", texts per forward pass)."""

    out: str
    text_field: str
    output_format: str
    on_error: str
    batch_size: int


def run_shard(classifier: Classifier, shard: Shard, job: Job) -> dict:
    """Read, classify and write one shard; returns {shard, records, errors, busy_s, bytes, sha256} (the last two: the
    written file's, which `_SUCCESS` records for `--resume` to check). With `on_error="fail"` the
    first bad record raises RobertaInferError and nothing is written for the shard."""
    began = time.perf_counter()
    records = readers.read(shard, job.text_field)
    bad = [error for error in records.errors if error is not None]
    if bad and job.on_error == "fail":
        raise RobertaInferError(f"{bad[0]} (--on-error skip keeps such records with an error column)")
    good = [i for i, error in enumerate(records.errors) if error is None]
    logits = classify(classifier, [records.texts[i] for i in good], batch_size=job.batch_size) if good else None
    table = output_table(records, good, logits, classifier.class_names, with_error=job.on_error == "skip")
    path = Path(job.out) / f"{shard.name}.{job.output_format}"
    with output_file(path, force=True, flag="--output", own=Path(job.out)) as tmp:
        write_table(table, tmp, job.output_format)
    return {"shard": shard.name, "records": len(records.ids), "errors": len(bad), "busy_s": time.perf_counter() - began,
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def output_table(records: readers.Records, good: list[int], logits: np.ndarray | None, class_names: list[str], *,
                 with_error: bool) -> pa.Table:
    """id, the kept input fields (renamed `input_<name>` where they clash with ours), label, score (softmax
    probability of the label, float64), logits (float32 list) and, with `with_error`, error (null when fine).
    `logits` [len(good), classes] are those of the records at indices `good`; the others get null results."""
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


def write_table(table: pa.Table, path: Path, output_format: str) -> None:
    """Parquet (zstd), or JSON lines with the columns in order (non-JSON values such as dates as strings)."""
    if output_format == "parquet":
        pq.write_table(table, path, compression="zstd")
        return
    with open(path, "w", encoding="utf-8") as f:
        for row in table.to_pylist():
            f.write(jsonl_line(row, default=str))
