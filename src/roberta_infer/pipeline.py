"""The main job, `roberta-infer run`: prepare → export (fuse, simplify, check) → infer → evaluate, one table.

Two rows: the reference's way (fp32, static batch × seq on ONNX Runtime) and the fastest gated bundle for this
machine (int8 behind the SST-2 dev accuracy gate, length-aware batches), side by side.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .bench import REFERENCE_NAME, roberta_base_shaped
from .bundle import build_bundle, load_bundle
from .checkpoint import RobertaClassifier, load_classifier
from .data import read_sst2, sst2_file
from .errors import RobertaInferError
from .evaluate import accuracy
from .hardware import candidates
from .infer import infer, read_outputs
from .outputs import write_json
from .prepare import Prepared, load_prepared, prepare
from .quantize import ort_int8_bundle
from .report import Report, latency_histogram, score_tables, write_report
from .report import Table as ReportTable


def run(model: Path, *, data: Path | None, work_dir: Path, fairseq_data: Path | None = None, bpe_dir: Path | None = None,
        head: str | None = None, class_names: list[str] | None = None, seq_len: int = 70, batch_size: int = 32, warmup: int = 5, loop: int = 1, threads: int | None = None, provider: str = "cpu",
        console: Console | None = None) -> dict:
    """Run every stage on SST-2 dev into `work_dir`; returns the report, also written to `work_dir`/report.json.

    fp32 row: prepared/ → bundle/ (static `batch_size` × `seq_len`) → results/; its figures are the report's top-level
    keys. Fast row (`fast_row`): bundle-NAME/ → results-NAME/ per candidate, the fastest under the report's "fast" key,
    or {"error": why} when the accuracy gate refuses every one. Raises RobertaInferError for a `seq_len` beyond the
    model or unusable inputs.
    """
    console = console or Console(stderr=True)

    def say(message: str) -> None:
        console.print(f"· {message}", highlight=False, markup=False, soft_wrap=True)

    work_dir = Path(work_dir)
    classifier = load_classifier(model, fairseq_data=fairseq_data, bpe_dir=bpe_dir, head=head, class_names=class_names)
    say(f"model {model} ({classifier.source['kind']}, {classifier.model.config.num_hidden_layers} layers, "
        f"hidden {classifier.model.config.hidden_size}, classes {classifier.class_names})")
    if seq_len > classifier.max_tokens:
        raise RobertaInferError(f"--seq-len {seq_len} exceeds the model's {classifier.max_tokens} positions")
    split = read_sst2(sst2_file(data, "dev"))
    prepare(split, classifier.encoder, seq_len=seq_len, out=work_dir / "prepared", layout="array",
            class_names=classifier.class_names, vocab={"model": str(model), "model_sha256": classifier.source["sha256"]},
            force=True)
    say(f"prepared {len(split.sentences)} SST-2 dev sentences × {seq_len} ids")
    manifest = build_bundle(classifier, work_dir / "bundle", batch_size=batch_size, seq_len=seq_len, progress=say, force=True)
    bundle = load_bundle(work_dir / "bundle", threads=threads, provider=provider)
    prepared = load_prepared(work_dir / "prepared")
    summary = infer(bundle, prepared, work_dir / "results", batch_size=batch_size, warmup=warmup, loop=loop, force=True)
    logits, _ = read_outputs(work_dir / "results")
    scores = accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"])
    report = {"model": str(model), "source": classifier.source, "split": "dev", "seq_len": seq_len, "batch_size": batch_size,
              "accuracy": scores, "architecture": manifest["architecture"], "fused_ops": manifest["fused_ops"], "fidelity_max_abs_diff": manifest["fidelity"]["max_abs_diff"],
              "infer": summary}
    try:
        report["fast"] = fast_row(classifier, work_dir, prepared, logits, data=data, batch_size=batch_size, warmup=warmup,
                                  loop=loop, threads=threads, provider=provider, say=say)
    except RobertaInferError as e:  # a model whose int8 loses accuracy keeps its fp32 row, and says why there is no other
        say(f"no fast row: {e}")
        report["fast"] = {"error": str(e)}
    write_json(report, work_dir / "report.json", force=True)
    write_report(work_dir / "report.html", html_report(report), summary["machine"], force=True)
    return report


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
    """Candidate `name` (ort-int8 or ov-int8) built behind the accuracy gate, inferred and evaluated."""
    bundle_dir = work_dir / f"bundle-{name}"
    if name == "ort-int8":
        say("ONNX Runtime int8: a dynamic export quantized (dynamic quantization), gated on SST-2 dev")
        manifest = ort_int8_bundle(classifier, work_dir / "bundle-fp32-dynamic", bundle_dir, data=data, threads=threads,
                                   progress=say)
    else:
        say("OpenVINO int8: NNCF static quantization calibrated on SST-2 train, gated on SST-2 dev")
        manifest = build_bundle(classifier, bundle_dir, engine="openvino", precision="int8", data=data, threads=threads,
                                progress=say, force=True)
    bundle = load_bundle(bundle_dir, threads=threads, provider=provider)
    summary = infer(bundle, prepared, work_dir / f"results-{name}", batch_size=batch_size, warmup=warmup, loop=loop,
                    force=True)
    logits, _ = read_outputs(work_dir / f"results-{name}")
    say(f"{name}: {summary['sentences_per_s']:.1f} sentences/s")
    return {"name": name, "bundle": str(bundle_dir), "results": str(work_dir / f"results-{name}"), "engine": bundle.engine,
            "precision": bundle.precision, "gate": manifest["quantization"]["gate"],
            "accuracy": accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"]), "infer": summary}


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
                 f"accuracy {-fast['gate']['accuracy_drop_pp']:+.2f} pp vs fp32"]
    names = ["bundle", "accuracy", "samples", "sentences/s", "latency mean ms", "p50 ms", "p99 ms", "check"]
    return [list(cells) for cells in zip(names, fp32, other)]


def html_report(report: dict) -> Report:
    """report.html's content: the two rows, each one's latency histogram, per-class scores and confusion matrix."""
    sections = [ReportTable("fp32 and the fastest gated bundle", ["", "fp32: the reference's way", "fastest gated"],
                            side_by_side(report))]
    rows = [("fp32", report)] + ([] if "error" in report["fast"] else
                                 [(f"{report['fast']['engine']} {report['fast']['precision']}", report["fast"])])
    for name, row in rows:
        sections.append(latency_histogram(row["infer"]["latencies_ms"], f"{name}: model-call latency"))
        for table in score_tables(row["accuracy"]):
            sections.append(replace(table, title=f"{name}: {table.title[0].lower()}{table.title[1:]}"))
    if report.get("architecture") and roberta_base_shaped(report["architecture"]):
        sections.append(ReportTable(f"The reference: {REFERENCE_NAME}", ["accuracy", "batch 1 seq/s", "batch 32 seq/s"],
                                    [["94.0 % (94.8 % fp32 baseline)", "205", "1473"]]))
    return Report(title(report), f"model {report['model']}; SST-2 dev at {report['seq_len']} ids.", sections)


def row_cells(row: dict) -> list[str]:
    """accuracy, samples, sentences/s, latency mean/p50/p99 ms of a report row."""
    latency = row["infer"]["latency_ms"]
    return [f"{100 * row['accuracy']['accuracy']:.2f} %", str(row["accuracy"]["samples"]),
            f"{row['infer']['sentences_per_s']:.1f}", f"{latency['mean']:.2f}", f"{latency['median']:.2f}",
            f"{latency['p99']:.2f}"]
