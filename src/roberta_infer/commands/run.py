"""`roberta-infer run`: the main job: prepare → export → optimise → infer → evaluate on SST-2 dev, and the reference's
two tables (by batch size, by sequence length)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs import check_dir
from ..reference import DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS
from .args import (
    BATCH,
    COUNT,
    DIR,
    SEQ_LEN,
    TIMES,
    checkpoint_options,
    console,
    force_arg,
    formatter,
    int_list,
    model_args,
    model_path,
    output,
    runtime_args,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", formatter_class=formatter,
        help="the main job: prepare → export → optimise → infer → evaluate on SST-2 dev, and the reference's tables",
        description=(
            "The whole reference guide in one command on SST-2 dev: tokenise (prepare), export + fuse +\n"
            "simplify + check (export), timed batched inference on ONNX Runtime (infer), accuracy (evaluate).\n"
            "Then the same for the fastest gated bundle of this machine (int8 within 0.3 points of fp32 on SST-2\n"
            "dev, length-aware batches). Prints both rows side by side (accuracy, sentences/s, latency p50/p99).\n"
            "Then the reference guide's two tables, both bundles over --batch-sizes × --seq-lens (SST-2 dev\n"
            "padded or cut to each length), beside its Ascend 310P3 figures: table 1, sentences/s per batch\n"
            "size at --seq-len; table 2, per length, accuracy and sentences/s at the smallest and the best batch.\n"
            "Writes everything under --work-dir: report.json (the fp32 row; the fast one as \"fast\"; the tables\n"
            "as \"by_batch_size\" and \"by_seq_len\"; every cell as \"grid\") and report.html."
        ),
    )
    model_args(p, required=False)
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--work-dir", type=output("dir", "run"), default=Path("runs/latest"), metavar="DIR",
                   help="default runs/latest")
    force_arg(p, "run work directory")
    p.add_argument("--seq-len", type=SEQ_LEN, default=70, metavar="L", help="default 70, as the reference")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="default 32; the tables' accuracy is measured at it")
    p.add_argument("--batch-sizes", type=int_list(BATCH), default=DEFAULT_BATCH_SIZES, metavar="B,B,…",
                   help=f"the tables' batch sizes (default {','.join(map(str, DEFAULT_BATCH_SIZES))}, as the reference)")
    p.add_argument("--seq-lens", type=int_list(SEQ_LEN), default=DEFAULT_SEQ_LENS, metavar="L,L,…",
                   help=f"table 2's sequence lengths, --seq-len among them (default {','.join(map(str, DEFAULT_SEQ_LENS))}, "
                        "as the reference)")
    p.add_argument("--warmup", type=COUNT, default=5, metavar="N", help="untimed batches first (default 5)")
    p.add_argument("--loop", type=TIMES, default=1, metavar="N", help="timed runs of each batch (default 1)")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:

    from ..pipeline import report_tables, run  # deferred: it imports torch, onnx and ONNX Runtime

    check_dir(args.work_dir, "run", force=args.force, flag="--work-dir")
    report = run(model_path(args), data=args.data, work_dir=args.work_dir, **checkpoint_options(args),
                 seq_len=args.seq_len, batch_size=args.batch_size, batch_sizes=args.batch_sizes, seq_lens=args.seq_lens,
                 warmup=args.warmup, loop=args.loop, threads=args.threads, provider=args.provider)
    for table in report_tables(report):
        console().print(table)
    print(f"report: {args.work_dir / 'report.json'}")
