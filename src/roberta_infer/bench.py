"""Throughput and latency of a bundle (either engine, any precision) over a grid of batch sizes × sequence lengths.

A static bundle is timed at its own shape only (one cell). Each cell runs full-length rows (`<s>`, random ids,
`</s>`: the graph computes every position whatever the ids) for `warmup` untimed calls, then until `min_time`
seconds and `min_iterations` calls have passed; throughput is batch size / median latency, so one slow call on a
shared machine does not move it.
"""

from __future__ import annotations

import json
import os
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import RobertaInferError
from .outputs import check_dir, output_dir
from .reference import DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS, cell_sentences_per_s
from .reference import NAME as REFERENCE_NAME
from .reference import cells as reference_cells
from .report import Figure, Report, Table, figure_png, pyplot, write_report
from .runtime import BundleClassifier, machine
from .synthetic import SHAPES, model_label

ENGINE_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def bench(classifier: BundleClassifier, batch_sizes: list[int] | None, seq_lens: list[int] | None, out: Path, *, warmup: int = 3,
          min_time: float = 1.0, min_iterations: int = 5, seed: int = 0, show_progress: bool = True, force: bool = False) -> dict:
    """Time every (batch size, seq len) cell; writes bench.json, bench.md and bench.png to `out` and returns the result.

    `batch_sizes` / `seq_lens` None: DEFAULT_BATCH_SIZES × DEFAULT_SEQ_LENS, or a static bundle's own shape (the only
    one it runs). The reference's Ascend 310P3 figures (`reference.cell_sentences_per_s`: batch 1…64 at seq 70, batch 1
    at 16/32/64/128) are set beside a roberta-base-shaped model's cells only.
    Raises RobertaInferError for sizes < 1, seq lens < 2 or above the model's positions, or another shape than a
    static bundle's, and (through `outputs.output_dir`, before timing) an `out` that is not new or, without `force`,
    earlier bench results. Per cell `sentences_per_s` = batch / median latency; `seq_per_s` is its old name, kept
    for one release.
    """
    static = (classifier.static_batch, classifier.static_seq)
    if None not in static:
        batch_sizes, seq_lens = batch_sizes or [static[0]], seq_lens or [static[1]]
        if (batch_sizes, seq_lens) != ([static[0]], [static[1]]):
            raise RobertaInferError(f"this bundle is fixed at batch {static[0]} × seq {static[1]}: bench runs it at that shape "
                                    "only (omit --batch-sizes/--seq-lens), or export a dynamic bundle for a grid")
    batch_sizes, seq_lens = batch_sizes or DEFAULT_BATCH_SIZES, seq_lens or DEFAULT_SEQ_LENS
    if not batch_sizes or not seq_lens or min(batch_sizes) < 1 or min(seq_lens) < 2:
        raise RobertaInferError(f"batch sizes must be ≥ 1 and seq lens ≥ 2 (got {batch_sizes}, {seq_lens})")
    if max(seq_lens) > classifier.max_tokens:
        raise RobertaInferError(f"seq len {max(seq_lens)} exceeds the model's {classifier.max_tokens} positions")
    if warmup < 0 or min_time < 0 or min_iterations < 1:
        raise RobertaInferError(f"warmup and min time must be ≥ 0, min iterations ≥ 1 (got {warmup}, {min_time}, "
                                f"{min_iterations})")
    check_dir(out, "bench", force=force)
    load_before = os.getloadavg()
    rng = np.random.default_rng(seed)
    vocab = classifier.manifest["architecture"]["vocab"]
    reference = roberta_base_shaped(classifier.manifest["architecture"])
    cells = []
    columns = [TextColumn("bench {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=True, console=Console(stderr=True)) as bar:
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
                cells.append({"batch_size": batch, "seq_len": seq, "iterations": len(ms), "sentences_per_s": batch * 1000 / p50,
                              "latency_ms": {"p50": p50, "p99": float(np.percentile(ms, 99)), "min": float(ms.min())},
                              "reference_fps": cell_sentences_per_s(batch, seq) if reference else None,
                              "seq_per_s": batch * 1000 / p50})  # the old name, for one release
                bar.advance(task)
    result = {"model": model_label(classifier.manifest), "synthetic": bool(classifier.manifest.get("synthetic")),
              "engine": classifier.engine, "engine_version": version(classifier.engine), "precision": classifier.precision,
              "static_shape": None if None in static else list(static),
              "model_sha256": classifier.manifest["model_sha256"], "threads": classifier.threads,
              "provider": classifier.provider, "machine": machine(),
              "load_average": {"before": list(load_before), "after": list(os.getloadavg())}, "warmup": warmup,
              "min_time_s": min_time, "min_iterations": min_iterations, "reference": REFERENCE_NAME if reference else None,
              "cells": cells}
    with output_dir(out, "bench", force=force) as tmp:
        (tmp / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        (tmp / "bench.md").write_text(markdown(result))
        plot(result, tmp / "bench.png")
        write_report(tmp / "report.html", html_report(result), result["machine"])
    return result


def full_rows(classifier: BundleClassifier, batch: int, seq: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """`<s> random ids </s>` rows without padding, ids drawn above the four specials."""
    tokens = rng.integers(4, vocab, size=(batch, seq), dtype=np.int64)
    tokens[:, 0], tokens[:, -1] = classifier.encoder.bos, classifier.encoder.eos
    return tokens


def roberta_base_shaped(architecture: dict) -> bool:
    """Whether a manifest's architecture is roberta-base's (the reference's model): only then do its figures compare."""
    shape = SHAPES["roberta-base"]
    return (architecture["layers"], architecture["hidden"], architecture["heads"], architecture["ffn"]) == (
        shape["num_hidden_layers"], shape["hidden_size"], shape["num_attention_heads"], shape["intermediate_size"])


def label(result: dict) -> str:
    """How tables and plots name what ran: "OpenVINO 2026.4.1 int8"."""
    return f"{ENGINE_NAMES.get(result['engine'], result['engine'])} {result['engine_version']} {result['precision']}"


def markdown(result: dict) -> str:
    """The cells as a table, the reference's figures in their own column (— where it published none) for roberta-base."""
    cpu = result["machine"]
    ref_column = [f"{result['reference']} seq/s"] if result["reference"] else []
    lines = [f"**{result['model']}**, {label(result)}, {result['provider']}, {result['threads']} threads on {cpu['cpu']} "
             f"({cpu['physical_cores']} physical cores, load average {result['load_average']['before'][0]:.2f} at start). "
             f"seq/s = batch size / median latency.", "",
             "| " + " | ".join(["batch", "seq", "seq/s", "p50 ms", "p99 ms", *ref_column]) + " |",
             "|" + "---:|" * (5 + len(ref_column))]
    for cell in result["cells"]:
        ref = [reference_cell(cell["reference_fps"])] if result["reference"] else []
        lines.append("| " + " | ".join([str(cell["batch_size"]), str(cell["seq_len"]), f"{cell['sentences_per_s']:.1f}",
                                        f"{cell['latency_ms']['p50']:.2f}", f"{cell['latency_ms']['p99']:.2f}", *ref]) + " |")
    return "\n".join(lines) + "\n"


def side_by_side(results: list[dict]) -> str:
    """seq/s of several bench results (e.g. fp32, bf16, int8) per batch × seq cell, one column each, then the
    reference's figures where every result is roberta-base-shaped; — where a result has no such cell."""
    cells = [{(c["batch_size"], c["seq_len"]): c for c in result["cells"]} for result in results]
    shapes = sorted(set().union(*cells), key=lambda shape: (shape[1], shape[0]))
    reference = all(result["reference"] for result in results)
    header = ["batch", "seq", *(f"{label(result)} seq/s" for result in results),
              *([f"{REFERENCE_NAME} seq/s"] if reference else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for batch, seq in shapes:
        measured = [f"{by_shape[batch, seq]['sentences_per_s']:.1f}" if (batch, seq) in by_shape else "—" for by_shape in cells]
        ref = [reference_cell(cell_sentences_per_s(batch, seq))] if reference else []
        lines.append("| " + " | ".join([str(batch), str(seq), *measured, *ref]) + " |")
    return "\n".join(lines) + "\n"


def reference_cell(fps: float | None) -> str:
    return "—" if fps is None else f"{fps:g}"


def html_report(result: dict) -> Report:
    """report.html's content: the throughput plot and every cell, with the reference's figures where they apply."""
    ref = [f"{result['reference']} seq/s"] if result["reference"] else []
    cells = [[str(c["batch_size"]), str(c["seq_len"]), f"{c['sentences_per_s']:.1f}", f"{c['latency_ms']['p50']:.2f}",
              f"{c['latency_ms']['p99']:.2f}", *([reference_cell(c["reference_fps"])] if ref else [])] for c in result["cells"]]
    return Report(f"roberta-infer bench — {result['model']}, {label(result)}",
                  f"{len(result['cells'])} batch × sequence cells, {result['threads']} threads; seq/s = batch size / median "
                  f"latency of full-length rows.",
                  [Figure("Throughput against batch size, per sequence length", figure_png(throughput_figure(result)),
                          "sequences per second against batch size, one line per sequence length"),
                   Table("Every cell", ["batch", "seq", "seq/s", "p50 ms", "p99 ms", *ref], cells)])


def plot(result: dict, path: Path) -> None:
    """bench.png: `throughput_figure` as a file."""
    Path(path).write_bytes(figure_png(throughput_figure(result)))


def throughput_figure(result: dict):
    """Throughput against batch size, one line per sequence length (a matplotlib figure)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    published = reference_cells() if result["reference"] else {}
    for seq in sorted({c["seq_len"] for c in result["cells"]}):
        measured = sorted((c for c in result["cells"] if c["seq_len"] == seq), key=lambda c: c["batch_size"])
        (line,) = ax.plot([c["batch_size"] for c in measured], [c["sentences_per_s"] for c in measured], marker="o",
                          label=f"seq {seq}")
        reference = sorted((batch, fps) for (batch, length), fps in published.items() if length == seq)
        if reference:
            ax.plot([batch for batch, _ in reference], [fps for _, fps in reference], linestyle="none", marker="x",
                    color=line.get_color(), zorder=3, label=f"{REFERENCE_NAME}, seq {seq}")
    batches = sorted({c["batch_size"] for c in result["cells"]})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("sequences / s")
    ax.set_title(f"{result['model']}, {label(result)}, {result['threads']} threads", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
