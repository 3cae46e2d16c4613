"""`roberta-infer predict`: classify texts (a file or standard input) to JSON lines."""

from __future__ import annotations

import argparse
import sys

from ..outputs import STDIO, check_file
from ..predict import predict, write_jsonl
from .args import BATCH, existing, force_arg, formatter, load_model, model_args, output, runtime_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", formatter_class=formatter,
        help="classify texts (a file or standard input) to JSON lines",
        description=(
            "Classify the texts of --input: one UTF-8 text per line (a .txt or any other file, or - for\n"
            "standard input), or the --text-field of a .jsonl, .json (an array), .csv, .tsv or .parquet file\n"
            "(CSV/TSV by RFC 4180: a quoted field may span lines). Texts are stripped of whitespace at their ends\n"
            "(Unicode separators such as U+2028 and zero-width characters included); an empty or blank text is an\n"
            "error. Writes one JSON object per text, same order, to --output (- for standard output):\n"
            '  {"text": ..., "label": "<class name>", "score": softmax prob of the label, "logits": [float, ...]}\n'
            "Texts longer than the model's positions are truncated (</s> kept last) with a warning.\n"
            "For collections too big to hold in memory, use `classify`."
        ),
    )
    model_args(p, bundle=True, required=False)
    p.add_argument("--input", type=existing("file", stdio=True), required=True, metavar="FILE|-",
                   help="texts: one per line, or a .jsonl/.json/.csv/.tsv/.parquet file")
    p.add_argument("--output", type=output("file", stdio=True), required=True, metavar="OUT.jsonl|-",
                   help="JSON lines to write (- : standard output)")
    p.add_argument("--text-field", metavar="NAME",
                   help="the field (.jsonl/.json) or column (.csv/.tsv/.parquet) holding the text; refused for plain text "
                        "(default: text)")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="texts per forward pass (default 32)")
    force_arg(p, "--output file")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..readers import read_texts  # deferred: readers import pyarrow

    if args.output != STDIO:
        check_file(args.output, force=args.force, flag="--output", inputs=[args.input])
    texts = read_texts(args.input, text_field=args.text_field)
    classifier = load_model(args, threads=args.threads, provider=args.provider)
    print(f"· classifying {len(texts)} texts, {args.batch_size} per batch", file=sys.stderr)
    records = predict(classifier, texts, batch_size=args.batch_size)
    write_jsonl(records, args.output, force=args.force)
    print(f"wrote {len(records)} predictions to {'standard output' if args.output == '-' else args.output}", file=sys.stderr)
