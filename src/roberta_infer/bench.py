"""Throughput and latency of a dynamic bundle over a grid of batch sizes × sequence lengths.

Each cell runs full-length rows (`<s>`, random ids, `</s>`: the graph computes every position whatever the
ids) for `warmup` untimed calls, then until `min_time` seconds and `min_iterations` calls have passed;
throughput is batch size / median latency, so one slow call on a shared machine does not move it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import RobertaInferError
from .runtime import BundleClassifier, machine
from .synthetic import model_label

# The reference's published figures (Huawei Ascend 310P3, static batch, seq 70): the only two known.
REFERENCE_FPS = {(1, 70): 205.0, (32, 70): 1473.0}
REFERENCE_NAME = "Ascend 310P3 (reference guide)"


def bench(classifier: BundleClassifier, batch_sizes: list[int], seq_lens: list[int], out: Path, *, warmup: int = 3,
          min_time: float = 1.0, min_iterations: int = 5, seed: int = 0, show_progress: bool = True) -> dict:
    """Time every (batch size, seq len) cell; writes bench.json, bench.md and bench.png to `out` and returns the result."""
    if classifier.static_batch is not None or classifier.static_seq is not None:
        raise RobertaInferError("bench needs a dynamic bundle (this one is fixed at "
                                f"{classifier.static_batch}x{classifier.static_seq}): re-export with `roberta-infer export --dynamic`")
    if not batch_sizes or not seq_lens or min(batch_sizes) < 1 or min(seq_lens) < 2:
        raise RobertaInferError(f"batch sizes must be ≥ 1 and seq lens ≥ 2 (got {batch_sizes}, {seq_lens})")
    if max(seq_lens) > classifier.max_tokens:
        raise RobertaInferError(f"seq len {max(seq_lens)} exceeds the model's {classifier.max_tokens} positions")
    if warmup < 0 or min_time < 0 or min_iterations < 1:
        raise RobertaInferError(f"warmup and min time must be ≥ 0, min iterations ≥ 1 (got {warmup}, {min_time}, {min_iterations})")
    load_before = os.getloadavg()
    rng = np.random.default_rng(seed)
    vocab = classifier.manifest["architecture"]["vocab"]
    cells = []
    columns = [TextColumn("bench {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=True) as bar:
        task = bar.add_task("", total=len(batch_sizes) * len(seq_lens))
        for seq in seq_lens:
            for batch in batch_sizes:
                bar.update(task, description=f"batch {batch} × seq {seq}")
                tokens = full_rows(classifier, batch, seq, vocab, rng)
                for _ in range(warmup):
                    classifier.run(tokens)
                latencies: list[float] = []
                started = time.perf_counter()
                while len(latencies) < min_iterations or time.perf_counter() - started < min_time:
                    start = time.perf_counter()
                    classifier.run(tokens)
                    latencies.append(time.perf_counter() - start)
                ms = np.array(latencies) * 1000
                p50 = float(np.median(ms))
                cells.append({"batch_size": batch, "seq_len": seq, "iterations": len(ms), "seq_per_s": batch * 1000 / p50,
                              "latency_ms": {"p50": p50, "p99": float(np.percentile(ms, 99)), "min": float(ms.min())},
                              "reference_fps": REFERENCE_FPS.get((batch, seq))})
                bar.advance(task)
    result = {"model": model_label(classifier.manifest), "synthetic": bool(classifier.manifest.get("synthetic")),
              "engine": classifier.engine, "precision": classifier.precision, "quantization": classifier.precision,
              "model_sha256": classifier.manifest["model_sha256"], "threads": classifier.threads,
              "provider": classifier.provider, "machine": machine(),
              "load_average": {"before": load_before, "after": os.getloadavg()}, "warmup": warmup, "min_time_s": min_time,
              "min_iterations": min_iterations, "reference": REFERENCE_NAME, "cells": cells}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(result))
    plot(result, out / "bench.png")
    return result


def full_rows(classifier: BundleClassifier, batch: int, seq: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """`<s> random ids </s>` rows without padding, ids drawn above the four specials."""
    tokens = rng.integers(4, vocab, size=(batch, seq), dtype=np.int64)
    tokens[:, 0], tokens[:, -1] = classifier.encoder.bos, classifier.encoder.eos
    return tokens


def markdown(result: dict) -> str:
    """The cells as a table, the reference's figures in their own column (— where it published none)."""
    cpu = result["machine"]
    lines = [f"**{result['model']}**, {result['quantization']}, {result.get('engine', 'onnxruntime')} "
             f"{result['provider']}, {result['threads']} threads on {cpu['cpu']} ({cpu['physical_cores']} physical cores, "
             f"load average {result['load_average']['before'][0]:.2f} at start). "
             f"seq/s = batch size / median latency.", "",
             f"| batch | seq | seq/s | p50 ms | p99 ms | {result['reference']} seq/s |", "|---:|---:|---:|---:|---:|---:|"]
    for cell in result["cells"]:
        ref = cell["reference_fps"]
        lines.append(f"| {cell['batch_size']} | {cell['seq_len']} | {cell['seq_per_s']:.1f} | {cell['latency_ms']['p50']:.2f} | "
                     f"{cell['latency_ms']['p99']:.2f} | {'—' if ref is None else f'{ref:g}'} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Throughput against batch size, one line per sequence length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seq in sorted({c["seq_len"] for c in result["cells"]}):
        cells = sorted((c for c in result["cells"] if c["seq_len"] == seq), key=lambda c: c["batch_size"])
        ax.plot([c["batch_size"] for c in cells], [c["seq_per_s"] for c in cells], marker="o", label=f"seq {seq}")
    for (batch, seq), fps in REFERENCE_FPS.items():
        ax.scatter([batch], [fps], marker="x", color="black", zorder=3)
        ax.annotate(f"{REFERENCE_NAME}, seq {seq}", (batch, fps), textcoords="offset points", xytext=(-5, 6), fontsize=7,
                    ha="right" if batch > 1 else "left")
    batches = sorted({c["batch_size"] for c in result["cells"]})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("sequences / s")
    ax.set_title(f"{result['model']}, {result['quantization']}, {result['threads']} threads", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
