"""The main job, `roberta-infer run`: prepare → export (fuse, simplify, check) → infer → evaluate, one table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .bundle import build_bundle, load_bundle
from .checkpoint import load_classifier
from .data import read_sst2, sst2_file
from .errors import RobertaInferError
from .evaluate import accuracy
from .infer import infer, read_outputs
from .prepare import load_prepared, prepare


def run(model: Path, *, data: Path | None, work_dir: Path, fairseq_data: Path | None = None, bpe_dir: Path | None = None,
        head: str | None = None, class_names: list[str] | None = None, seq_len: int = 70, batch_size: int = 32, warmup: int = 5, loop: int = 1, threads: int | None = None, provider: str = "cpu",
        console: Console | None = None) -> dict:
    """Run every stage on SST-2 dev into `work_dir` (prepared/, bundle/, results/, report.json); returns the report."""
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
            class_names=classifier.class_names, vocab={"model": str(model), "model_sha256": classifier.source["sha256"]})
    say(f"prepared {len(split.sentences)} SST-2 dev sentences × {seq_len} ids")
    manifest = build_bundle(classifier, work_dir / "bundle", batch_size=batch_size, seq_len=seq_len, progress=say)
    bundle = load_bundle(work_dir / "bundle", threads=threads, provider=provider)
    prepared = load_prepared(work_dir / "prepared")
    summary = infer(bundle, prepared, work_dir / "results", batch_size=batch_size, warmup=warmup, loop=loop)
    logits, _ = read_outputs(work_dir / "results")
    scores = accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"])
    report = {"model": str(model), "source": classifier.source, "split": "dev", "seq_len": seq_len, "batch_size": batch_size,
              "accuracy": scores, "fused_ops": manifest["fused_ops"], "fidelity_max_abs_diff": manifest["fidelity"]["max_abs_diff"],
              "infer": summary}
    (work_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def report_table(report: dict) -> Table:
    infer_summary = report["infer"]
    latency = infer_summary["latency_ms"]
    table = Table(title=f"roberta-infer run — SST-2 dev, seq {report['seq_len']}, batch {report['batch_size']}, "
                        f"{infer_summary['provider']}, {infer_summary['threads']} threads")
    for column in ("accuracy", "samples", "seq/s", "latency mean ms", "p50 ms", "p99 ms", "max |Δlogit| vs torch"):
        table.add_column(column, justify="right")
    table.add_row(f"{100 * report['accuracy']['accuracy']:.2f} %", str(report["accuracy"]["samples"]),
                  f"{infer_summary['throughput_samples_per_s']:.1f}", f"{latency['mean']:.2f}", f"{latency['median']:.2f}",
                  f"{latency['p99']:.2f}", f"{report['fidelity_max_abs_diff']:.1e}")
    return table
