"""`roberta-infer infer`: run a prepared dataset through a bundle, timed (the reference's ais_bench step)."""

from __future__ import annotations

import argparse
import sys

from ..errors import RobertaInferError
from ..outputs import check_dir
from ..prepare import load_prepared
from .args import BATCH, COUNT, DEFAULT_BATCH, DIR, SEQ_LEN, TIMES, bundle_dir, force_arg, formatter, output, runtime_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer", formatter_class=formatter,
        help="run a prepared dataset through a bundle, timed (the reference's ais_bench step)",
        description=(
            "Run every prepared sample through a bundle on its engine, batch by batch (a last partial\n"
            "batch is run too), after --warmup untimed batches, each batch timed --loop times. Writes the\n"
            "logits (logits.npy, or src_tokens_{i}_0.bin per sample with --layout per-sample, as ais_bench)\n"
            "and summary.json: throughput, latency min/mean/median/p99, batch size, threads, provider, machine."
        ),
    )
    p.add_argument("--model", type=bundle_dir, required=True, metavar="BUNDLE", help="a bundle written by `roberta-infer export`")
    p.add_argument("--input", type=DIR, required=True, metavar="PREPARED_DIR",
                   help="output of `roberta-infer prepare`, or the reference's batch files folder "
                        "(batch_size_B/roberta_base_bin: src_tokens_{i}.bin, raw int64 [B, L])")
    p.add_argument("--out", type=output("dir", "results"), required=True, metavar="DIR", help="results directory to write")
    force_arg(p, "results directory")
    p.add_argument("--batch-size", type=BATCH, metavar="B",
                   help="samples per model call (default: the reference files' B, else the bundle's fixed batch size, else 32)")
    p.add_argument("--seq-len", type=SEQ_LEN, metavar="L",
                   help="ids per row of the reference's batch files (default: the bundle's fixed length)")
    p.add_argument("--warmup", type=COUNT, default=5, metavar="N", help="untimed batches first (default 5)")
    p.add_argument("--loop", type=TIMES, default=1, metavar="N", help="timed runs of each batch (default 1)")
    p.add_argument("--layout", default="array", choices=["array", "per-sample"], help="how outputs are written (default array)")
    p.add_argument("--length-aware", action=argparse.BooleanOptionalAction, default=None,
                   help="batch samples of similar true length and trim each batch to its longest (same outputs, less "
                        "padding computed); default: on for dynamic bundles, off (fixed padding) for static ones")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..bundle import load_bundle  # deferred: these import onnx and ONNX Runtime
    from ..infer import infer

    check_dir(args.out, "results", force=args.force)
    bundle = load_bundle(args.model, threads=args.threads, provider=args.provider)
    prepared = load_prepared(args.input, seq_len=args.seq_len or bundle.static_seq)
    if args.seq_len is not None and args.seq_len != prepared.meta["seq_len"]:
        raise RobertaInferError(f"--seq-len {args.seq_len} differs from the {prepared.meta['seq_len']} ids per row of "
                                f"{args.input}")
    batch_size = args.batch_size or prepared.meta.get("batch_size") or bundle.static_batch or DEFAULT_BATCH
    summary = infer(bundle, prepared, args.out, batch_size=batch_size,
                    warmup=args.warmup, loop=args.loop, layout=args.layout, length_aware=args.length_aware,
                    show_progress=sys.stderr.isatty(), force=args.force)
    latency = summary["latency_ms"]
    print(f"{summary['samples']} samples, batch {summary['batch_size']}: {summary['sentences_per_s']:.1f} sentences/s, "
          f"latency mean {latency['mean']:.2f} ms, median {latency['median']:.2f} ms, p99 {latency['p99']:.2f} ms "
          f"({summary['threads']} threads, {summary['provider']}, {'length-aware' if summary['length_aware'] else 'fixed'} "
          f"padding) → {args.out}")
