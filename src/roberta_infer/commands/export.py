"""`roberta-infer export`: checkpoint → fused, simplified, checked ONNX bundle (pth2onnx + onnxsim + opt_onnx)."""

from __future__ import annotations

import argparse
import sys

from ..errors import RobertaInferError
from ..outputs import check_dir
from .args import (
    BATCH,
    DIR,
    DROP_PP,
    SEQ_LEN,
    THREADS,
    checkpoint_options,
    force_arg,
    formatter,
    model_args,
    model_path,
    opset,
    output,
    ranged,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", formatter_class=formatter,
        help="checkpoint → fused, simplified, checked ONNX bundle (pth2onnx + onnxsim + opt_onnx)",
        description=(
            "Export a RoBERTa classifier to ONNX: one input src_tokens int64 [batch, seq] → output float32\n"
            "[batch, classes], the padding mask computed in the graph from the pad id. Then ONNX Runtime's\n"
            "transformer fusion (Attention fused in every layer but a <s>-only last one, or the export fails),\n"
            "then onnxslim.\n"
            "The last layer is computed for <s> alone, the only position the classifier reads (its keys and\n"
            "values at every position; that layer's attention stays unfused): --full-last-layer computes it whole.\n"
            "The bundle (model.onnx, tokenizer, class names, manifest.json) is checked against PyTorch on\n"
            "real and random inputs at several shapes: export fails if any logit differs by more than 1e-4.\n\n"
            "--engine openvino writes OpenVINO IR (model.xml + model.bin, fp32 weights) from the same model,\n"
            "checked the same way. --precision bf16 runs it with OpenVINO's bf16 hint (AMX / AVX-512 BF16;\n"
            "its deviation from PyTorch is recorded); --precision int8 quantizes it with NNCF (static int8,\n"
            "calibrated on --calibration-size SST-2 train sentences) and refuses, writing nothing, unless\n"
            "SST-2 dev accuracy stays within --max-accuracy-drop points of fp32. With --accuracy-aware (default)\n"
            "NNCF's quantize_with_accuracy_control first reverts the most sensitive ops to floating point until\n"
            "held-out SST-2 train loses at most that many points. ONNX Runtime int8: `quantize`."
        ),
    )
    model_args(p, required=False)
    p.add_argument("--synthetic", choices=["roberta-base"], metavar="NAME",
                   help="instead of --model: random weights with exactly NAME's shape and fairseq vocabulary (roberta-base), "
                        "for speed measurements; the bundle is marked synthetic (default: none)")
    p.add_argument("--out", type=output("dir", "bundle"), required=True, metavar="BUNDLE_DIR", help="bundle directory to write")
    force_arg(p, "bundle")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--dynamic", action="store_true", help="dynamic batch and sequence axes (the default)")
    shape.add_argument("--batch-size", type=BATCH, metavar="B", help="static batch size (with --seq-len), as the reference "
                                                                   "(default: dynamic)")
    p.add_argument("--seq-len", type=SEQ_LEN, metavar="L", help="static sequence length (with --batch-size; default: dynamic)")
    p.add_argument("--opset", type=opset, default=17, metavar="N",
                   help="ONNX opset (default 17; 11 up to what the installed PyTorch exporter and onnx support)")
    p.add_argument("--engine", default="onnxruntime", choices=["onnxruntime", "openvino"],
                   help="onnxruntime (default; portable: any CPU, NVIDIA GPUs) or openvino (Intel/x86 CPUs)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"],
                   help="fp32 (default); bf16 and int8 with --engine openvino")
    p.add_argument("--data", type=DIR, metavar="DIR", help="int8: folder with SST-2 train.tsv (calibration) and dev.tsv (gate); "
                                                         "default: $ROBERTA_INFER_DATA or ./data")
    p.add_argument("--max-accuracy-drop", type=DROP_PP, default=0.3, metavar="PP",
                   help="int8: most SST-2 dev accuracy points it may lose against fp32 (default 0.3)")
    p.add_argument("--accuracy-aware", action=argparse.BooleanOptionalAction, default=True,
                   help="int8: NNCF's quantize_with_accuracy_control reverts the most sensitive ops to floating point until "
                        "at most --max-accuracy-drop points are lost on held-out SST-2 train (default on)")
    p.add_argument("--calibration-size", type=ranged(int, 1, 1_000_000), default=300, metavar="N",
                   help="int8: SST-2 train sentences NNCF calibrates on (default 300, seeded sample)")
    p.add_argument("--full-last-layer", action="store_true",
                   help="compute the last encoder layer at every position, as the PyTorch model does (default: its keys and "
                        "values at every position, the rest for <s> alone, the only position the classifier reads: the same "
                        "logits, less work; recorded as the manifest's last_layer)")
    p.add_argument("--threads", type=THREADS, metavar="N",
                   help="threads for the checks and the int8 gate (default: all physical cores)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..bundle import build_bundle, check_build_options  # deferred: these import torch, onnx and ONNX Runtime
    from ..checkpoint import load_classifier

    if args.model is not None and args.synthetic is not None:
        raise RobertaInferError("give either --model PATH or --synthetic NAME, not both")
    check_dir(args.out, "bundle", force=args.force)
    check_build_options(batch_size=args.batch_size, seq_len=args.seq_len, engine=args.engine, precision=args.precision,
                        data=args.data, max_accuracy_drop=args.max_accuracy_drop, calibration_size=args.calibration_size)
    options = dict(force=args.force, batch_size=args.batch_size, seq_len=args.seq_len, opset=args.opset, engine=args.engine,
                   precision=args.precision, data=args.data, max_accuracy_drop=args.max_accuracy_drop,
                   calibration_size=args.calibration_size, threads=args.threads, accuracy_aware=args.accuracy_aware,
                   last_layer="full" if args.full_last_layer else "cls-only",
                   progress=lambda message: print(f"· {message}", file=sys.stderr))
    if args.synthetic:
        from ..synthetic import export_synthetic  # deferred: torch

        manifest = export_synthetic(args.synthetic, args.out, **options)
    else:
        manifest = build_bundle(load_classifier(model_path(args), **checkpoint_options(args)),
                                args.out, **options)
    gate = manifest.get("quantization", {}).get("gate")
    figures = f", SST-2 dev accuracy {100 * gate['accuracy_fp32']:.2f} % → {100 * gate['accuracy_int8']:.2f} %" if gate else ""
    print(f"wrote {'synthetic ' if args.synthetic else ''}{args.engine} {args.precision} bundle {args.out} "
          f"(fp32 max |Δlogit| vs PyTorch {manifest['fidelity']['max_abs_diff']:.1e}{figures})")
