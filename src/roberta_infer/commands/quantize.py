"""`roberta-infer quantize`: fp32 bundle → int8 bundle (ONNX Runtime dynamic quantization), refused if SST-2 dev
accuracy drops."""

from __future__ import annotations

import argparse
import sys

from ..outputs import check_dir
from .args import DIR, DROP_PP, PATH, THREADS, bundle_dir, force_arg, formatter, output


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", formatter_class=formatter,
        help="fp32 bundle → int8 bundle (ONNX Runtime dynamic quantization), refused if SST-2 dev accuracy drops",
        description=(
            "Quantize a bundle's model with ONNX Runtime dynamic quantization: MatMul weights int8, activations\n"
            "quantized per call (no calibration data). Where the checkpoint the bundle was made from is at the\n"
            "path its manifest records, or given with --source (checked by sha256), the model is re-exported\n"
            "unfused and that is quantized (its int8 form runs ~20 % faster); otherwise the bundle's fused graph\n"
            "is. The result is a normal bundle that predict, infer, bench and serve accept; its manifest.json\n"
            "gains a `quantization` section.\n\n"
            "Gate: SST-2 dev (tokenised by the bundle) runs on fp32 and int8; label agreement and both accuracies\n"
            "are reported, and if int8 loses more than --max-accuracy-drop points nothing is written (exit 2).\n"
            "Default weights: int8, per channel, 7-bit range (--reduce-range). On the AVX-512 VNNI CPU measured,\n"
            "every int8 setting kept accuracy at the same speed; the 7-bit range also avoids the u8s8 overflow\n"
            "that AVX2 CPUs without VNNI can suffer. uint8 weights (u8u8) measured 3x slower.\n\n"
            "--accuracy-aware (default): before the gate, each group of MatMuls (one op kind across the layers, or\n"
            "one layer) is left fp32 in turn and measured on 1000 held-out SST-2 train sentences; the cheapest\n"
            "group that keeps the loss there within --max-accuracy-drop stays fp32 (else the most sensitive\n"
            "ones, added until it does). The manifest records them (quantization.float_nodes) and every step."
        ),
    )
    p.add_argument("--model", type=bundle_dir, required=True, metavar="BUNDLE",
                   help="an fp32 bundle written by `roberta-infer export`")
    p.add_argument("--out", type=output("dir", "bundle"), required=True, metavar="BUNDLE_INT8",
                   help="int8 bundle directory to write")
    force_arg(p, "int8 bundle")
    p.add_argument("--source", type=PATH, metavar="PATH", help="the checkpoint the bundle was exported from, if not where "
                                                              "its manifest says (default: that path; synthetic bundles are "
                                                              "rebuilt)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="with a fairseq --source: its input0/ label/ folder (default: beside it)")
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv, and train.tsv for --accuracy-aware "
                                                         "(default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--max-accuracy-drop", type=DROP_PP, default=0.3, metavar="PP",
                   help="largest accepted SST-2 dev accuracy loss, in percentage points (default 0.3)")
    p.add_argument("--accuracy-aware", action=argparse.BooleanOptionalAction, default=True,
                   help="leave the most sensitive MatMuls fp32 where plain int8 loses more than --max-accuracy-drop points on "
                        "held-out SST-2 train (needs train.tsv in --data; default on)")
    p.add_argument("--weight-type", choices=["int8", "uint8"], help="weight type (default int8; uint8 = u8u8 kernels)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="one scale per output channel instead of per tensor (default on)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights, safe from AVX2 u8s8 saturation (default on)")
    p.add_argument("--threads", type=THREADS, metavar="N",
                   help="ONNX Runtime intra-op threads for the gate (default: all physical cores)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    import dataclasses

    from ..quantize import QuantSettings, quantize_bundle  # deferred: it imports torch, onnx and ONNX Runtime

    check_dir(args.out, "bundle", force=args.force)
    chosen = {"weight_type": args.weight_type, "per_channel": args.per_channel, "reduce_range": args.reduce_range}
    settings = dataclasses.replace(QuantSettings(), **{k: v for k, v in chosen.items() if v is not None})
    manifest = quantize_bundle(args.model, args.out, source=args.source, fairseq_data=args.fairseq_data, data=args.data,
                               max_accuracy_drop=args.max_accuracy_drop, settings=settings, threads=args.threads,
                               accuracy_aware=args.accuracy_aware,
                               progress=lambda message: print(f"· {message}", file=sys.stderr), force=args.force)
    gate, kept = manifest["quantization"]["gate"], manifest["quantization"]["float_nodes"]
    print(f"wrote int8 bundle {args.out}: SST-2 dev accuracy {100 * gate['accuracy_fp32']:.2f} % → "
          f"{100 * gate['accuracy_int8']:.2f} %, "
          f"label agreement {100 * gate['label_agreement']:.2f} %" + (f", {len(kept)} MatMuls left fp32" if kept else ""))
