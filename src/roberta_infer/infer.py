"""The ais_bench step: run a prepared dataset through a bundle in batches, time it, write outputs + summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import RobertaInferError
from .prepare import Prepared
from .runtime import OnnxClassifier, fill_batch, machine

LAYOUTS = ("array", "per-sample")


def infer(classifier: OnnxClassifier, prepared: Prepared, out: Path, *, batch_size: int, warmup: int = 5, loop: int = 1,
          layout: str = "array", show_progress: bool = True) -> dict:
    """Run every sample (a last partial batch included), `loop` timed passes each after `warmup` untimed batches."""
    if batch_size <= 0:
        raise RobertaInferError(f"batch size must be positive, got {batch_size}")
    if warmup < 0 or loop < 1:
        raise RobertaInferError(f"--warmup must be ≥ 0 and --loop ≥ 1 (got {warmup}, {loop})")
    if layout not in LAYOUTS:
        raise RobertaInferError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    tokens = prepared.tokens
    n, seq_len = tokens.shape
    if n == 0:
        raise RobertaInferError("the prepared directory holds no samples")
    if classifier.static_seq is not None and seq_len != classifier.static_seq:
        raise RobertaInferError(f"data was prepared with --seq-len {seq_len} but the bundle is fixed at {classifier.static_seq}")
    if classifier.static_batch is not None and batch_size != classifier.static_batch:
        raise RobertaInferError(f"--batch-size {batch_size} differs from the bundle's fixed batch size {classifier.static_batch}")
    batches = [tokens[i : i + batch_size] for i in range(0, n, batch_size)]
    for i in range(warmup):
        classifier.run(fill_batch(batches[i % len(batches)], batch_size, classifier.encoder) if classifier.static_batch else batches[i % len(batches)])
    outputs, latencies = [], []
    columns = [TextColumn("infer"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=True) as bar:
        task = bar.add_task("infer", total=len(batches) * loop)
        for batch in batches:
            feed = fill_batch(batch, batch_size, classifier.encoder) if classifier.static_batch else batch
            for repeat in range(loop):
                start = time.perf_counter()
                result = classifier.run(feed)
                latencies.append(time.perf_counter() - start)
                bar.advance(task)
            outputs.append(result[: len(batch)])
    logits = np.concatenate(outputs).astype(np.float32)
    write_outputs(logits, Path(out), layout)
    lat_ms = np.array(latencies) * 1000
    summary = {
        "samples": n,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "batches": len(batches),
        "warmup": warmup,
        "loop": loop,
        "throughput_samples_per_s": n * loop / float(np.sum(latencies)),
        "latency_ms": {"min": float(lat_ms.min()), "mean": float(lat_ms.mean()), "median": float(np.median(lat_ms)),
                       "p99": float(np.percentile(lat_ms, 99))},
        "threads": classifier.threads,
        "provider": classifier.provider,
        "machine": machine(),
        "layout": layout,
        "class_names": classifier.class_names,
        "bundle": {"source": classifier.manifest["source"], "model_sha256": classifier.manifest["model_sha256"]},
        "data": prepared.meta["source"],
    }
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_outputs(logits: np.ndarray, out: Path, layout: str) -> None:
    """`logits.npy` [N, C], or one float32 `src_tokens_{i}_0.bin` per sample as ais_bench names them."""
    out.mkdir(parents=True, exist_ok=True)
    if layout == "array":
        np.save(out / "logits.npy", logits)
    else:
        for i, row in enumerate(logits):
            row.tofile(out / f"src_tokens_{i}_0.bin")


def read_outputs(results: Path) -> tuple[np.ndarray, dict]:
    """Logits and summary of an `infer` results directory, in either layout."""
    results = Path(results)
    if not (results / "summary.json").is_file():
        raise RobertaInferError(f"{results} is not an infer results directory (no summary.json)")
    summary = json.loads((results / "summary.json").read_text())
    n, classes = summary["samples"], len(summary["class_names"])
    if summary["layout"] == "array":
        logits = np.load(results / "logits.npy")
    else:
        files = [results / f"src_tokens_{i}_0.bin" for i in range(n)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise RobertaInferError(f"{results} is missing {len(missing)} output files, e.g. {missing[0]}")
        logits = np.stack([np.fromfile(f, dtype=np.float32) for f in files])
    if logits.shape != (n, classes):
        raise RobertaInferError(f"{results}: outputs have shape {logits.shape}, summary.json says ({n}, {classes})")
    return logits, summary
