"""`roberta-infer bench`: throughput and latency of a bundle (either engine, any precision) over batch sizes ×
sequence lengths."""

from __future__ import annotations

import argparse
import sys

from ..outputs import check_dir
from ..reference import DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS
from .args import BATCH, COUNT, SECONDS, SEQ_LEN, bundle_dir, force_arg, formatter, int_list, output, runtime_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", formatter_class=formatter,
        help="throughput and latency of a bundle (either engine, any precision) over batch sizes × sequence lengths",
        description=(
            "Time a bundle at every batch size × sequence length: full-length rows, --warmup untimed calls, then\n"
            "calls until --min-time seconds (at least 5). Throughput = batch / median latency; latency p50 and p99.\n"
            "A static bundle is timed at its own shape only (one cell). Writes bench.json, bench.md and bench.png\n"
            "(throughput vs batch size per seq len), labelled with the bundle's engine and precision; for a\n"
            "roberta-base-shaped model both show the reference's Ascend 310P3 figures (batch 1 to 64 at seq 70,\n"
            "batch 1 at seq 16, 32, 64 and 128)."
        ),
    )
    p.add_argument("--model", type=bundle_dir, required=True, metavar="BUNDLE", help="a bundle written by export or quantize")
    p.add_argument("--batch-sizes", type=int_list(BATCH), metavar="B,B,…",
                   help=f"default {','.join(map(str, DEFAULT_BATCH_SIZES))} (a static bundle: its own batch size)")
    p.add_argument("--seq-lens", type=int_list(SEQ_LEN), metavar="L,L,…",
                   help=f"default {','.join(map(str, DEFAULT_SEQ_LENS))} (a static bundle: its own)")
    p.add_argument("--warmup", type=COUNT, default=3, metavar="N", help="untimed calls per cell (default 3)")
    p.add_argument("--min-time", type=SECONDS, default=1.0, metavar="S", help="timed seconds per cell, at least (default 1)")
    p.add_argument("--out", type=output("dir", "bench"), required=True, metavar="DIR", help="where bench.json/.md/.png go")
    force_arg(p, "bench results folder")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..bench import bench  # deferred (as bundle): they import torch, onnx and ONNX Runtime
    from ..bundle import load_bundle

    check_dir(args.out, "bench", force=args.force)
    result = bench(load_bundle(args.model, threads=args.threads, provider=args.provider), args.batch_sizes, args.seq_lens,
                   args.out, warmup=args.warmup, min_time=args.min_time, show_progress=sys.stderr.isatty(), force=args.force)
    best = max(result["cells"], key=lambda cell: cell["sentences_per_s"])
    print(f"{len(result['cells'])} cells, best {best['sentences_per_s']:.1f} sentences/s (batch {best['batch_size']}, seq "
          f"{best['seq_len']}, {result['threads']} threads) → {args.out}/bench.{{json,md,png}}")
