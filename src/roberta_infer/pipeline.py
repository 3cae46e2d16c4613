"""The main job, `roberta-infer run`: prepare → export (fuse, simplify, check) → infer → evaluate, and the reference's
two tables.

Two rows: the reference's way (fp32, static batch × seq on ONNX Runtime) and the fastest gated bundle for this
machine (int8 behind the SST-2 dev accuracy gate, length-aware batches), side by side. Then both, over a grid of
batch sizes × sequence lengths (`sweep`), as the reference guide's tables: table 1 (`by_batch_size`: sentences/s
per batch size at the reference's length), table 2 (`by_seq_len`: accuracy at each padding/truncation length,
sentences/s at the smallest and at the best batch size), each beside the guide's Ascend 310P3 figures
(`reference.FIGURES`).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .bench import roberta_base_shaped
from .bundle import build_bundle, load_bundle
from .checkpoint import RobertaClassifier, load_classifier
from .data import Sst2Split, read_sst2, sst2_file
from .errors import RobertaInferError
from .evaluate import accuracy
from .hardware import candidates
from .infer import infer, read_outputs
from .outputs import write_json
from .prepare import Prepared, load_prepared, prepare
from .quantize import quantize_bundle
from .reference import DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS, FIGURES, MODEL, cell_sentences_per_s
from .reference import DEVICE as REFERENCE_DEVICE
from .reference import NAME as REFERENCE_NAME
from .report import Report, latency_histogram, score_tables, write_report
from .report import Table as ReportTable

DYNAMIC_BUNDLE = "bundle-fp32-dynamic"  # the fp32 export the grid pads to each length, and ort-int8 quantizes
ROWS = {"fp32": "fp32, the reference's way", "fast": "fastest gated"}
ACCURACY_NOTE = ("fp32 with fixed padding gives the same labels at any batch; where a bundle's labels move with the batch "
                 "(int8 rounds differently with the batch's shape and, quantized dynamically, with its other sentences), "
                 "the range over the batch sizes follows in parentheses.")


def run(model: Path, *, data: Path | None, work_dir: Path, fairseq_data: Path | None = None, bpe_dir: Path | None = None,
        head: str | None = None, class_names: list[str] | None = None, seq_len: int = 70, batch_size: int = 32,
        batch_sizes: list[int] | None = None, seq_lens: list[int] | None = None, warmup: int = 5, loop: int = 1,
        threads: int | None = None, provider: str = "cpu", console: Console | None = None) -> dict:
    """Run every stage on SST-2 dev into `work_dir`; returns the report, also written to `work_dir`/report.json and
    report.html.

    fp32 row: prepared/ → bundle/ (static `batch_size` × `seq_len`) → results/; its figures are the report's top-level
    keys. Fast row (`fast_row`): bundle-NAME/ → results-NAME/ per candidate, the fastest under the report's "fast" key,
    or {"error": why} when the accuracy gate refuses every one. Then `sweep` over `batch_sizes` (default 1,4,…,64)
    × `seq_lens` (default 16,32,64,70,128; `seq_len` is always among them) into grid/, summed up as "by_batch_size"
    (table 1, at `seq_len`) and "by_seq_len" (table 2). Raises RobertaInferError, before any work but loading the
    model, for a `seq_len` or `seq_lens` beyond the model's positions, a sequence length < 2 or a batch size < 1; and
    for unusable inputs.
    """
    console = console or Console(stderr=True)

    def say(message: str) -> None:
        console.print(f"· {message}", highlight=False, markup=False, soft_wrap=True)

    work_dir = Path(work_dir)
    batch_sizes = sorted(set(DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes))
    lengths = sorted({*(DEFAULT_SEQ_LENS if seq_lens is None else seq_lens), seq_len})
    if not batch_sizes or min(batch_sizes) < 1 or batch_size < 1 or min(lengths) < 2:
        raise RobertaInferError(f"batch sizes must be ≥ 1 and sequence lengths ≥ 2 (got {batch_sizes}, {lengths})")
    split = read_sst2(sst2_file(data, "dev"))  # found before the model loads
    classifier = load_classifier(model, fairseq_data=fairseq_data, bpe_dir=bpe_dir, head=head, class_names=class_names)
    if seq_len > classifier.max_tokens:
        raise RobertaInferError(f"--seq-len {seq_len} exceeds the model's {classifier.max_tokens} positions")
    if max(lengths) > classifier.max_tokens:
        raise RobertaInferError(f"--seq-lens {max(lengths)} exceeds the model's {classifier.max_tokens} positions")
    say(f"model {model} ({classifier.source['kind']}, {classifier.model.config.num_hidden_layers} layers, "
        f"hidden {classifier.model.config.hidden_size}, classes {classifier.class_names})")
    prepare(split, classifier.encoder, seq_len=seq_len, out=work_dir / "prepared", layout="array",
            class_names=classifier.class_names, vocab=prepared_vocab(model, classifier), force=True)
    say(f"prepared {len(split.sentences)} SST-2 dev sentences × {seq_len} ids")
    manifest = build_bundle(classifier, work_dir / "bundle", batch_size=batch_size, seq_len=seq_len, progress=say, force=True)
    bundle = load_bundle(work_dir / "bundle", threads=threads, provider=provider)
    prepared = load_prepared(work_dir / "prepared")
    summary = infer(bundle, prepared, work_dir / "results", batch_size=batch_size, warmup=warmup, loop=loop, force=True)
    logits, _ = read_outputs(work_dir / "results")
    scores = accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"])
    report = {"model": str(model), "source": classifier.source, "split": "dev", "seq_len": seq_len, "batch_size": batch_size,
              "accuracy": scores, "architecture": manifest["architecture"], "fused_ops": manifest["fused_ops"],
              "fidelity_max_abs_diff": manifest["fidelity"]["max_abs_diff"],
              "infer": summary}
    say("fp32 with a dynamic shape: padded to each length of the grid, and the source of ONNX Runtime int8")
    build_bundle(classifier, work_dir / DYNAMIC_BUNDLE, threads=threads, progress=say, force=True)
    try:
        report["fast"] = fast_row(classifier, work_dir, prepared, logits, data=data, batch_size=batch_size, warmup=warmup,
                                  loop=loop, threads=threads, provider=provider, say=say)
    except RobertaInferError as e:  # a model whose int8 loses accuracy keeps its fp32 row, and says why there is no other
        say(f"no fast row: {e}")
        report["fast"] = {"error": str(e)}
    bundles = {"fp32": work_dir / DYNAMIC_BUNDLE,
               **({} if "error" in report["fast"] else {"fast": Path(report["fast"]["bundle"])})}
    grid = sweep(classifier, split, work_dir, bundles, vocab=prepared_vocab(model, classifier), batch_sizes=batch_sizes,
                 seq_lens=lengths, accuracy_batch_size=batch_size, warmup=warmup, loop=loop, threads=threads,
                 provider=provider, say=say)
    report["grid"] = grid
    report["by_batch_size"] = by_batch_size(grid, seq_len, batch_sizes)
    report["by_seq_len"] = by_seq_len(grid, batch_sizes)
    report["reference"] = {"name": REFERENCE_NAME, "model": MODEL, "same_shape": roberta_base_shaped(manifest["architecture"])}
    write_json(report, work_dir / "report.json", force=True, own=work_dir)
    write_report(work_dir / "report.html", html_report(report), summary["machine"], force=True, own=work_dir)
    return report


def prepared_vocab(model: Path, classifier: RobertaClassifier) -> dict:
    """What prepared/meta.json records of the model whose tokenizer prepared the data."""
    return {"model": str(model), "model_sha256": classifier.source["sha256"]}


def fast_row(classifier: RobertaClassifier, work_dir: Path, prepared: Prepared, fp32_logits: np.ndarray, *, data: Path | None,
             batch_size: int, warmup: int, loop: int, threads: int | None, provider: str, say) -> dict:
    """The fastest gated bundle for this machine, measured: each of `fast_candidates()` is built into `work_dir`/bundle-NAME
    (refused past 0.3 accuracy points on SST-2 dev), inferred with length-aware batches into results-NAME, evaluated,
    and the one with the highest sentences/s is kept.

    Returns its name, bundle, results, engine, precision, gate, accuracy, infer summary and label agreement with the fp32
    row, with every candidate's sentences/s (or why it was refused) under "candidates"; raises RobertaInferError when
    every candidate's gate refuses it.
    """
    rows, refused = {}, {}
    for name in fast_candidates():
        try:
            rows[name] = gated_row(name, classifier, work_dir, prepared, data=data, batch_size=batch_size, warmup=warmup,
                                   loop=loop, threads=threads, provider=provider, say=say)
        except RobertaInferError as e:
            say(f"{name} refused: {e}")
            refused[name] = str(e)
    if not rows:
        raise RobertaInferError("; ".join(f"{name}: {why}" for name, why in refused.items()))
    best = max(rows, key=lambda name: rows[name]["infer"]["sentences_per_s"])
    logits, _ = read_outputs(Path(rows[best]["results"]))
    return {**rows[best], "agreement_with_fp32": float(np.mean(logits.argmax(1) == fp32_logits.argmax(1))),
            "candidates": {**{name: row["infer"]["sentences_per_s"] for name, row in rows.items()}, **refused}}


def fast_candidates() -> list[str]:
    """`hardware.candidates()`: ONNX Runtime dynamic int8, and OpenVINO + NNCF static int8 where openvino is installed
    and the CPU has int8 dot products (VNNI or AMX)."""
    return candidates()


def gated_row(name: str, classifier: RobertaClassifier, work_dir: Path, prepared: Prepared, *, data: Path | None,
              batch_size: int, warmup: int, loop: int, threads: int | None, provider: str, say) -> dict:
    """Candidate `name` (ort-int8 or ov-int8) built accuracy-aware (the most sensitive ops left in floating point where
    plain int8 loses too much on held-out SST-2 train) behind the SST-2 dev accuracy gate, inferred and evaluated;
    ort-int8 quantizes `work_dir`/bundle-fp32-dynamic, which `run` builds first. The row records the ops left float
    (`float_nodes`) and the held-out search (`accuracy_aware`)."""
    bundle_dir = work_dir / f"bundle-{name}"
    if name == "ort-int8":
        say("ONNX Runtime int8: the dynamic export quantized (dynamic quantization, accuracy-aware), gated on SST-2 dev")
        manifest = quantize_bundle(work_dir / DYNAMIC_BUNDLE, bundle_dir, source=classifier, data=data, threads=threads,
                                   progress=say, force=True)
    else:
        say("OpenVINO int8: NNCF static quantization calibrated on SST-2 train (accuracy-aware), gated on SST-2 dev")
        manifest = build_bundle(classifier, bundle_dir, engine="openvino", precision="int8", data=data, threads=threads,
                                progress=say, force=True)
    bundle = load_bundle(bundle_dir, threads=threads, provider=provider)
    summary = infer(bundle, prepared, work_dir / f"results-{name}", batch_size=batch_size, warmup=warmup, loop=loop,
                    force=True)
    logits, _ = read_outputs(work_dir / f"results-{name}")
    say(f"{name}: {summary['sentences_per_s']:.1f} sentences/s")
    return {"name": name, "bundle": str(bundle_dir), "results": str(work_dir / f"results-{name}"), "engine": bundle.engine,
            "precision": bundle.precision, "gate": manifest["quantization"]["gate"],
            "float_nodes": manifest["quantization"]["float_nodes"], "accuracy_aware": manifest["quantization"]["accuracy_aware"],
            "accuracy": accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"]), "infer": summary}


def sweep(classifier: RobertaClassifier, split: Sst2Split, work_dir: Path, bundles: dict[str, Path], *, vocab: dict,
          batch_sizes: list[int], seq_lens: list[int], accuracy_batch_size: int, warmup: int, loop: int,
          threads: int | None, provider: str, say) -> dict:
    """`bundles` ("fp32": a dynamic fp32 bundle, fed fixed padding as the reference does; "fast": the gated bundle,
    fed length-aware batches as its row is) over SST-2 dev `split` prepared at each of `seq_lens` into
    `work_dir`/prepared-L (longer sentences cut, `</s>` kept last, as `prepare` does), `infer`red at each of
    `batch_sizes` and at `accuracy_batch_size` into `work_dir`/grid/ROW-seqL-batchB, and evaluated.

    Returns {"batch_sizes", "seq_lens", "accuracy_batch_size", "prepared": [{"seq_len", "truncated", "path"}],
    "cells": [{"row", "bundle", "seq_len", "batch_size", "length_aware", "sentences_per_s" (SST-2 dev sentences per
    second of model calls), "latency_ms" (per model call: mean, median, p99), "accuracy" (a fraction), "correct",
    "results"}]}. Raises RobertaInferError as `prepare` and `infer` do.
    """
    loaded = {row: load_bundle(path, threads=threads, provider=provider) for row, path in bundles.items()}
    grid = {"batch_sizes": batch_sizes, "seq_lens": seq_lens, "accuracy_batch_size": accuracy_batch_size, "prepared": [],
            "cells": []}
    for seq_len in seq_lens:
        with warnings.catch_warnings():  # cutting sentences is what this length is measured for: counted, not warned of
            warnings.filterwarnings("ignore", message=r"\d+ of \d+ texts were longer than")
            meta = prepare(split, classifier.encoder, seq_len=seq_len, out=work_dir / f"prepared-{seq_len}", layout="array",
                           class_names=classifier.class_names, vocab=vocab, force=True)
        grid["prepared"].append({"seq_len": seq_len, "truncated": meta["truncated"],
                                 "path": str(work_dir / f"prepared-{seq_len}")})
        prepared = load_prepared(work_dir / f"prepared-{seq_len}")
        for row, bundle in loaded.items():
            cells = []
            for batch_size in sorted({*batch_sizes, accuracy_batch_size}):
                results = work_dir / "grid" / f"{row}-seq{seq_len}-batch{batch_size}"
                summary = infer(bundle, prepared, results, batch_size=batch_size, warmup=warmup, loop=loop,
                                length_aware=row != "fp32", show_progress=False, force=True)
                logits, _ = read_outputs(results)
                scores = accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"])
                cells.append({"row": row, "bundle": bundles[row].name, "seq_len": seq_len, "batch_size": batch_size,
                              "length_aware": summary["length_aware"], "sentences_per_s": summary["sentences_per_s"],
                              "latency_ms": {k: summary["latency_ms"][k] for k in ("mean", "median", "p99")},
                              "accuracy": scores["accuracy"], "correct": scores["correct"], "results": str(results)})
            grid["cells"] += cells
            scored = next(cell for cell in cells if cell["batch_size"] == accuracy_batch_size)
            speeds = ", ".join(f"batch {cell['batch_size']} {cell['sentences_per_s']:.1f}"
                               for cell in cells if cell["batch_size"] in batch_sizes)
            say(f"seq {seq_len} ({meta['truncated']} cut), {row} ({bundles[row].name}): accuracy "
                f"{100 * scored['accuracy']:.2f} %, sentences/s {speeds}")
    return grid


def by_batch_size(grid: dict, seq_len: int, batch_sizes: list[int]) -> list[dict]:
    """Table 1: one row per batch size at `seq_len`: {"batch_size", "seq_len", "fp32", "fast" (each {"bundle",
    "sentences_per_s", "results"}, or None where not measured), "reference_sentences_per_s" (the guide's, or None)}.
    Accuracy is measured once per bundle: by_seq_len's row for `seq_len` (with its range over the batch sizes)."""
    cells = cell_index(grid)
    return [{"batch_size": batch_size, "seq_len": seq_len,
             **{row: speed_of(cells.get((row, seq_len, batch_size))) for row in ROWS},
             "reference_sentences_per_s": cell_sentences_per_s(batch_size, seq_len)} for batch_size in batch_sizes]


def by_seq_len(grid: dict, batch_sizes: list[int]) -> list[dict]:
    """Table 2: one row per sequence length: {"seq_len", "truncated" (sentences cut to it), "accuracy_batch_size",
    "fp32", "fast" (each None where not measured, else {"bundle", "accuracy" (a fraction, at accuracy_batch_size),
    "correct", "accuracy_range" ([lowest, highest] over every batch size measured: equal unless the bundle's labels
    move with the batch, as int8 labels may), "smallest_batch", "best_batch" (each {"batch_size", "sentences_per_s"},
    over `batch_sizes`)}),
    "reference" (the guide's table-2 row: {"accuracy": {"baseline", "npu"}, "batch_1_sentences_per_s",
    "best_sentences_per_s"}, or None where it has none)}."""
    cells, scored_at = cell_index(grid), grid["accuracy_batch_size"]
    rows = []
    for prepared in grid["prepared"]:
        seq_len = prepared["seq_len"]
        row = {"seq_len": seq_len, "truncated": prepared["truncated"], "accuracy_batch_size": scored_at}
        for name in ROWS:
            measured = [cells[name, seq_len, b] for b in batch_sizes if (name, seq_len, b) in cells]
            if not measured:
                row[name] = None
                continue
            scored, best = cells[name, seq_len, scored_at], max(measured, key=lambda cell: cell["sentences_per_s"])
            accuracies = [cell["accuracy"] for cell in (*measured, scored)]
            row[name] = {"bundle": scored["bundle"], "accuracy": scored["accuracy"], "correct": scored["correct"],
                         "accuracy_range": [min(accuracies), max(accuracies)],
                         **{key: {"batch_size": cell["batch_size"], "sentences_per_s": cell["sentences_per_s"]}
                            for key, cell in (("smallest_batch", measured[0]), ("best_batch", best))}}
        published = FIGURES["by_seq_len"].get(seq_len)
        row["reference"] = None if published is None else {**published, "accuracy": dict(published["accuracy"])}
        rows.append(row)
    return rows


def cell_index(grid: dict) -> dict[tuple[str, int, int], dict]:
    """The grid's cells by (row, seq len, batch size)."""
    return {(cell["row"], cell["seq_len"], cell["batch_size"]): cell for cell in grid["cells"]}


def speed_of(cell: dict | None) -> dict | None:
    return None if cell is None else {key: cell[key] for key in ("bundle", "sentences_per_s", "results")}


def reference_accuracy(seq_len: int) -> dict | None:
    """The guide's {"baseline", "npu"} accuracy at `seq_len`: its table 1's at 70, else its table 2's row, else None."""
    if seq_len == FIGURES["by_batch_size"]["seq_len"]:
        return FIGURES["by_batch_size"]["accuracy"]
    return (FIGURES["by_seq_len"].get(seq_len) or {}).get("accuracy")


def batch_size_cells(report: dict) -> tuple[str, list[str], list[list[str]], str]:
    """Table 1 for the terminal and report.html: title, header, rows (one per batch size, then accuracy once), note."""
    seq_len = report["seq_len"]
    length = next(row for row in report["by_seq_len"] if row["seq_len"] == seq_len)
    header = ["batch", f"{ROWS['fp32']}\n(padded to {seq_len})\nsentences/s", f"{fast_label(report)}\nsentences/s",
              f"{REFERENCE_NAME}\nsentences/s"]
    rows = [[str(row["batch_size"]), speed_cell(row["fp32"]), speed_cell(row["fast"]),
             published(row["reference_sentences_per_s"])]
            for row in report["by_batch_size"]]
    rows.append(["accuracy, every batch", accuracy_cell(length["fp32"]), accuracy_cell(length["fast"]),
                 reference_accuracy_cell(reference_accuracy(seq_len))])
    note = (f"Accuracy: one figure per column, measured at batch {length['accuracy_batch_size']}, for every batch size: "
            f"{ACCURACY_NOTE} The reference's: baseline / NPU. {grid_note(report)}")
    return f"Table 1: SST-2 dev at {seq_len} ids, by batch size", header, rows, note


def seq_len_cells(report: dict) -> tuple[str, list[str], list[list[str]], str]:
    """Table 2 for the terminal and report.html: title, header, rows (one per sequence length), note."""
    smallest = report["grid"]["batch_sizes"][0]
    header = ["seq", "cut", "accuracy\nfp32", "accuracy\nfastest gated", f"accuracy {REFERENCE_DEVICE}\nbaseline / NPU",
              f"sentences/s\nbatch {smallest}\nfp32", f"sentences/s\nbatch {smallest}\nfastest gated",
              f"sentences/s\nbatch 1\n{REFERENCE_DEVICE}",
              "sentences/s\nbest batch\nfp32", "sentences/s\nbest batch\nfastest gated",
              f"sentences/s\nbest batch\n{REFERENCE_DEVICE}"]
    rows = []
    for row in report["by_seq_len"]:
        reference = row["reference"] or {}
        rows.append([str(row["seq_len"]), str(row["truncated"]), accuracy_cell(row["fp32"]), accuracy_cell(row["fast"]),
                     reference_accuracy_cell(reference.get("accuracy")),
                     *(speed_cell(row[name] and row[name]["smallest_batch"]) for name in ROWS),
                     published(reference.get("batch_1_sentences_per_s") if smallest == 1 else None),
                     *(best_cell(row[name]) for name in ROWS), published(reference.get("best_sentences_per_s"))])
    note = (f"cut: sentences longer than the length, truncated with </s> kept last. Accuracy at batch "
            f"{report['grid']['accuracy_batch_size']} (the reference's at batch 1): {ACCURACY_NOTE} Best batch: the fastest of "
            f"{', '.join(map(str, report['grid']['batch_sizes']))}, in parentheses. The reference's table 2 has no row for "
            f"{FIGURES['by_batch_size']['seq_len']} (see table 1). {grid_note(report)}")
    return "Table 2: SST-2 dev by sequence length", header, rows, note


def grid_note(report: dict) -> str:
    """What the two tables' figures are, and how far the reference's compare."""
    fast = report["fast"]
    parts = ["sentences/s: SST-2 dev sentences per second of model calls; fp32: the dynamic fp32 bundle fed batches in "
             "order, padded to the length; fastest gated: " + ("none (" + fast["error"] + ")" if "error" in fast else
                                                                 f"{fast['name']}, length-aware batches cut to their longest "
                                                                 "sentence") + "."]
    if not report["reference"]["same_shape"]:
        arch = report["architecture"]
        parts.append(f"{REFERENCE_NAME}: {MODEL} (12 layers, hidden 768) on an NPU; this model has {arch['layers']} layers, "
                     f"hidden {arch['hidden']}: its figures are beside it for scale, not comparison.")
    return " ".join(parts)


def fast_label(report: dict) -> str:
    """The fast column's name: "fastest gated", with its engine and precision where there is one."""
    fast = report["fast"]
    return f"{ROWS['fast']}" + ("" if "error" in fast else f"\n({fast['engine']} {fast['precision']}, length-aware)")


def speed_cell(cell: dict | None) -> str:
    return "—" if cell is None else f"{cell['sentences_per_s']:.1f}"


def best_cell(row: dict | None) -> str:
    return "—" if row is None else f"{row['best_batch']['sentences_per_s']:.1f} (batch {row['best_batch']['batch_size']})"


def accuracy_cell(row: dict | None) -> str:
    """"81.08 %", or "81.08 % (80.96–81.31)" where accuracy moves with the batch size (its range over them)."""
    if row is None:
        return "—"
    low, high = row["accuracy_range"]
    return f"{100 * row['accuracy']:.2f} %" + ("" if low == high else f" ({100 * low:.2f}–{100 * high:.2f})")


def reference_accuracy_cell(published: dict | None) -> str:
    """The guide's accuracy as it prints it, "94.8 / 94.0 %" (baseline / NPU); empty where it has none."""
    return "" if published is None else f"{100 * published['baseline']:.1f} / {100 * published['npu']:.1f} %"


def published(sentences_per_s: float | None) -> str:
    """A figure of the guide's, empty where it has none."""
    return "" if sentences_per_s is None else f"{sentences_per_s:g}"


def rich_table(title: str, header: list[str], rows: list[list[str]], note: str) -> Table:
    """A terminal table: the first column left-aligned, the rest right-aligned, `note` as its caption."""
    table = Table(title=title, caption=note, caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for cells in rows:
        table.add_row(*cells)
    return table


def report_tables(report: dict) -> list[Table]:
    """What `roberta-infer run` prints: the two rows side by side (`report_table`), table 1 and table 2."""
    return [report_table(report), rich_table(*batch_size_cells(report)), rich_table(*seq_len_cells(report))]


def report_table(report: dict) -> Table:
    """The fp32 row (the reference's way) and the fast row side by side, one column each: accuracy, sentences/s,
    latency per batch (ms), and each one's check (fidelity vs PyTorch; label agreement and the gate's loss)."""
    table = Table(title=title(report))
    table.add_column("")
    table.add_column("fp32: the reference's way", justify="right")
    table.add_column("fastest gated", justify="right")
    for cells in side_by_side(report):
        table.add_row(*cells)
    return table


def title(report: dict) -> str:
    infer_summary = report["infer"]
    return (f"roberta-infer run — SST-2 dev, batch {report['batch_size']}, {infer_summary['provider']}, "
            f"{infer_summary['threads']} threads")


def side_by_side(report: dict) -> list[list[str]]:
    """Rows of (what, fp32 row, fast row), for the terminal table and report.html."""
    fast = report["fast"]
    fp32 = [f"onnxruntime fp32, static {report['batch_size']}×{report['seq_len']}",
            *row_cells(report), f"max |Δlogit| vs torch {report['fidelity_max_abs_diff']:.1e}"]
    if "error" in fast:
        other = ["none", *[""] * 6, fast["error"]]
    else:
        other = [f"{fast['engine']} {fast['precision']}, length-aware", *row_cells(fast),
                 f"labels = fp32's {100 * fast['agreement_with_fp32']:.2f} %, "
                 f"accuracy {-fast['gate']['accuracy_drop_pp']:+.2f} pp vs fp32"
                 + (f", {len(fast['float_nodes'])} ops left float" if fast.get("float_nodes") else "")]
    names = ["bundle", "accuracy", "samples", "sentences/s", "latency mean ms", "p50 ms", "p99 ms", "check"]
    return [list(cells) for cells in zip(names, fp32, other)]


def html_report(report: dict) -> Report:
    """report.html's content: the two rows, tables 1 and 2, each row's latency histogram, per-class scores and
    confusion matrix."""
    sections = [ReportTable("fp32 and the fastest gated bundle", ["", "fp32: the reference's way", "fastest gated"],
                            side_by_side(report))]
    for heading, header, cells, note in (batch_size_cells(report), seq_len_cells(report)):
        sections.append(ReportTable(heading, header, cells, note=note))
    rows = [("fp32", report)] + ([] if "error" in report["fast"] else
                                 [(f"{report['fast']['engine']} {report['fast']['precision']}", report["fast"])])
    for name, row in rows:
        sections.append(latency_histogram(row["infer"]["latencies_ms"], f"{name}: model-call latency"))
        for table in score_tables(row["accuracy"]):
            sections.append(replace(table, title=f"{name}: {table.title[0].lower()}{table.title[1:]}"))
    return Report(title(report), f"model {report['model']}; SST-2 dev at {report['seq_len']} ids, and by batch size and "
                                 "sequence length.", sections)


def row_cells(row: dict) -> list[str]:
    """accuracy, samples, sentences/s, latency mean/p50/p99 ms of a report row."""
    latency = row["infer"]["latency_ms"]
    return [f"{100 * row['accuracy']['accuracy']:.2f} %", str(row["accuracy"]["samples"]),
            f"{row['infer']['sentences_per_s']:.1f}", f"{latency['mean']:.2f}", f"{latency['median']:.2f}",
            f"{latency['p99']:.2f}"]
