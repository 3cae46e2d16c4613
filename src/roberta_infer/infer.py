"""The ais_bench step: run a prepared dataset through a bundle in batches, time it, write outputs + summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .data import numbered_files, read_rows
from .errors import RobertaInferError, check_positive
from .hardware import machine
from .outputs import check_dir, output_dir
from .predict import length_batches
from .prepare import Prepared
from .runtime import BundleClassifier, fill_batch

LAYOUTS = ("array", "per-sample")


def infer(classifier: BundleClassifier, prepared: Prepared, out: Path, *, batch_size: int, warmup: int = 5, loop: int = 1,
          layout: str = "array", length_aware: bool | None = None, show_progress: bool = True, force: bool = False) -> dict:
    """Run every sample (a last partial batch included), `loop` timed passes each after `warmup` untimed batches.

    `length_aware` (default: on for dynamic bundles) batches rows of similar true length and trims each batch to its
    longest row instead of running the prepared padding; outputs are written back in the original order. `out` is
    written through `outputs.output_dir` (existing results are replaced only with `force`). Raises RobertaInferError
    for data that does not belong to the bundle (`check_pairing`) or bad arguments, before any model call.
    Summary keys: `sentences_per_s` (throughput, sentences per second of model time); `throughput_samples_per_s` is
    the same figure under its old name, kept for one release.
    """
    check_positive({"batch size": batch_size})
    if warmup < 0 or loop < 1:
        raise RobertaInferError(f"--warmup must be ≥ 0 and --loop ≥ 1 (got {warmup}, {loop})")
    if layout not in LAYOUTS:
        raise RobertaInferError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    check_dir(out, "results", force=force)
    tokens = prepared.tokens
    n, seq_len = tokens.shape
    if n == 0:
        raise RobertaInferError("the prepared directory holds no samples")
    check_pairing(classifier, prepared)
    if classifier.static_seq is not None and seq_len != classifier.static_seq:
        raise RobertaInferError(f"data was prepared with --seq-len {seq_len} but the bundle is fixed at {classifier.static_seq}")
    if classifier.static_batch is not None and batch_size != classifier.static_batch:
        raise RobertaInferError(f"--batch-size {batch_size} differs from the bundle's fixed batch size {classifier.static_batch}")
    if length_aware is None:
        length_aware = classifier.static_seq is None
    if length_aware and classifier.static_seq is not None:
        raise RobertaInferError(f"length-aware batching needs a dynamic bundle, this one is fixed at {classifier.static_seq} "
                                "ids: re-export with `roberta-infer export --dynamic`, or pass --no-length-aware")
    if length_aware:
        lengths = true_lengths(tokens, classifier.encoder.pad)
        batches = [(index, tokens[index, : max(1, int(lengths[index].max()))]) for index in length_batches(lengths, batch_size)]
    else:
        batches = [(np.arange(i, min(i + batch_size, n)), fill_batch(tokens[i : i + batch_size], batch_size, classifier.encoder)
                    if classifier.static_batch else tokens[i : i + batch_size]) for i in range(0, n, batch_size)]
    for i in range(warmup):
        classifier.run(batches[i % len(batches)][1])
    logits = np.zeros((n, len(classifier.class_names)), dtype=np.float32)
    latencies = []
    columns = [TextColumn("infer"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("infer", total=len(batches) * loop)
        for index, feed in batches:
            for repeat in range(loop):
                start = time.perf_counter()
                result = classifier.run(feed)
                latencies.append(time.perf_counter() - start)
                bar.advance(task)
            logits[index] = result[: len(index)]
    lat_ms = np.array(latencies) * 1000
    summary = {
        "samples": n,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "batches": len(batches),
        "length_aware": length_aware,
        "warmup": warmup,
        "loop": loop,
        "sentences_per_s": n * loop / float(np.sum(latencies)),
        "latency_ms": {"min": float(lat_ms.min()), "mean": float(lat_ms.mean()), "median": float(np.median(lat_ms)),
                       "p99": float(np.percentile(lat_ms, 99))},
        "latencies_ms": [round(float(ms), 4) for ms in lat_ms],  # every timed model call, in order
        "engine": classifier.engine,
        "precision": classifier.precision,
        "threads": classifier.threads,
        "provider": classifier.provider,
        "machine": machine(),
        "layout": layout,
        "class_names": classifier.class_names,
        "bundle": {"source": classifier.manifest["source"], "model_sha256": classifier.manifest["model_sha256"]},
        "data": prepared.meta["source"],
    }
    summary["throughput_samples_per_s"] = summary["sentences_per_s"]  # the old name, for one release
    with output_dir(out, "results", force=force) as tmp:
        write_outputs(logits, tmp, layout)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_pairing(classifier: BundleClassifier, prepared: Prepared) -> None:
    """Refuse (RobertaInferError, naming both sides) prepared ids that are not the bundle's: a vocabulary recorded by
    `prepare` (meta.json vocab.vocab_sha256, `TextEncoder.vocab_sha256`) other than the bundle's tokenizer's, a
    different pad id, or any id beyond the model's embedding table (which the engine would fail on, or worse)."""
    vocab = prepared.meta.get("vocab") or {}
    made_for = vocab.get("model") or vocab.get("dict") or "another vocabulary"
    source = classifier.manifest.get("source", {}).get("path") or "its source model"
    size = classifier.manifest.get("architecture", {}).get("vocab")
    if vocab.get("vocab_sha256") and vocab["vocab_sha256"] != classifier.encoder.vocab_sha256():
        raise RobertaInferError(f"the data was prepared with the vocabulary of {made_for}, but the bundle (from {source}) "
                                "numbers tokens differently: prepare it again with --model of this bundle's model")
    pad = prepared.meta.get("pad_id")
    if pad is not None and pad != classifier.encoder.pad:
        raise RobertaInferError(f"the data was prepared with pad id {pad} (for {made_for}), the bundle (from {source}) pads "
                                f"with {classifier.encoder.pad}: prepare it again with --model of this bundle's model")
    highest = int(prepared.tokens.max())
    if size is not None and (highest >= size or int(prepared.tokens.min()) < 0):
        raise RobertaInferError(f"the data holds ids up to {highest}, beyond the {size} tokens of the bundle's model (from "
                                f"{source}): it was prepared for {made_for}; prepare it again with --model of this "
                                "bundle's model")


def true_lengths(tokens: np.ndarray, pad: int) -> np.ndarray:
    """Ids up to each row's last non-pad one: the count of non-pad ids in a right-padded row, and never cuts a real id."""
    real = tokens != pad
    return np.where(real.any(axis=1), tokens.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)


def write_outputs(logits: np.ndarray, out: Path, layout: str) -> None:
    """`logits.npy` [N, C], or one float32 `src_tokens_{i}_0.bin` per sample as ais_bench names them."""
    out.mkdir(parents=True, exist_ok=True)
    if layout == "array":
        np.save(out / "logits.npy", logits)
    else:
        for i, row in enumerate(logits):
            row.tofile(out / f"src_tokens_{i}_0.bin")


# Output files of the NPU tools the reference uses, per input src_tokens_{i}.bin: ais_bench (.bin, or .npy with
# --outfmt NPY) and msame. Each holds float32 logits, [C] per sample or [B, C] per batch.
RAW_OUTPUTS = {"ais_bench": r"src_tokens_(\d+)_0\.(?:bin|npy)", "msame": r"src_tokens_(\d+)_output_0\.bin"}


def read_outputs(results: Path, *, class_names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Logits [N, C] float32 and a summary of a results directory: `infer`'s (with its summary.json), or ais_bench's or
    msame's output folder (no summary.json), whose classes are `class_names` (the model's, in logit order).

    Raw files are read in numeric order of i and their rows concatenated. Raises RobertaInferError when the folder holds
    neither, `class_names` is missing for a raw folder (its class count is not recorded), or sizes do not fit.
    """
    results = Path(results)
    summary = json.loads((results / "summary.json").read_text()) if (results / "summary.json").is_file() else None
    if summary is None or "class_names" not in summary:  # ais_bench may leave a summary of its own
        return read_raw_outputs(results, class_names)
    n, classes = summary["samples"], len(summary["class_names"])
    if summary["layout"] == "array":
        logits = np.load(results / "logits.npy")
    else:
        files = [results / f"src_tokens_{i}_0.bin" for i in range(n)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise RobertaInferError(f"{results} is missing {len(missing)} output files, e.g. {missing[0]}")
        logits = read_rows(files, "float32", classes)
    if logits.shape != (n, classes):
        raise RobertaInferError(f"{results}: outputs have shape {logits.shape}, summary.json says ({n}, {classes})")
    return logits, summary


def read_raw_outputs(results: Path, class_names: list[str] | None) -> tuple[np.ndarray, dict]:
    """ais_bench / msame output files (see `RAW_OUTPUTS`) → logits [N, len(class_names)] and a summary."""
    if not results.is_dir():
        raise RobertaInferError(f"results {results} not found")
    found = {tool: numbered_files(results, pattern) for tool, pattern in RAW_OUTPUTS.items()}
    tools = [tool for tool, files in found.items() if files]
    if len(tools) != 1:
        what = "both ais_bench's and msame's" if tools else "no summary.json nor ais_bench/msame"
        raise RobertaInferError(f"{results} holds {what} output files (src_tokens_{{i}}_0.bin, src_tokens_{{i}}_output_0.bin): "
                                "give an `infer` results directory or one tool's output folder")
    if class_names is None:
        raise RobertaInferError(f"{results} has no summary.json, so its class count is unknown: give --class-names "
                                "(the model's classes in logit order) or --label-dict (the label dictionary it was trained with)")
    classes, rows = len(class_names), []
    for path in found[tools[0]]:
        values = np.load(path) if path.suffix == ".npy" else np.fromfile(path, dtype=np.float32)
        if values.size == 0 or values.size % classes:
            raise RobertaInferError(f"{path} holds {values.size} values, not whole rows of {classes} class logits "
                                    f"({', '.join(class_names)}): wrong --class-names, or float16 outputs")
        rows.append(np.asarray(values, dtype=np.float32).reshape(-1, classes))
    logits = np.concatenate(rows)
    return logits, {"samples": len(logits), "class_names": list(class_names), "layout": tools[0], "files": len(rows)}
