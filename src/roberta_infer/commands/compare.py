"""`roberta-infer compare`: end-to-end SST-2 dev: peers as their users run them vs the same engines with our batching vs ours."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..compare_report import caption, html_report, rows, summary
from ..errors import RobertaInferError
from ..outputs import check_file, check_location, describe, kind_of, write_json
from ..report import write_report
from .args import DIR, DROP_PP, OUT_FILE, THREADS, TIMES, console, force_arg, formatter, output, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", formatter_class=formatter,
        help="end-to-end SST-2 dev: peers as their users run them vs the same engines with our batching vs ours",
        description=(
            "Classify SST-2 dev (text → label, tokenisation included) in each mode, one after the other, batches of 32.\n"
            "Speed on a synthetic roberta-base (random weights, roberta-base's shape and vocabulary); accuracy with\n"
            "the trained default model run the same way. Modes (--modes, comma-separated):\n"
            "  peer:hf-fp32-fixed70  transformers eager fp32, arrival order, fixed padding 70: the baseline (always run)\n"
            "  peer:ENGINE           ENGINE as its users run it: arrival order, each batch padded to its longest\n"
            "  engine:ENGINE         ENGINE fed our length-aware batches (predict.length_batches)\n"
            "  ours                  our pipeline (predict.classify) on the fastest of our gated bundles here\n"
            "  peer, engine, all     every mode of that group / every mode (default all)\n"
            "ENGINE: hf-fp32 (transformers eager), torch-bf16 (torch.autocast bf16), torch-int8 (torch.ao dynamic\n"
            "Linear), ort-int8 (ONNX Runtime dynamic int8), ov-default (OpenVINO fp32 IR, no hint: bf16 on AMX),\n"
            "ov-int8 (OpenVINO + NNCF static int8); with --optimum-venvs, Hugging Face Optimum's pipelines:\n"
            "optimum-ov-fp32, optimum-ov-int8 (Optimum-Intel, OVQuantizer static int8), optimum-ort-fp32,\n"
            "optimum-ort-int8 (Optimum-ONNX, ORTQuantizer dynamic int8), skipped with the reason without them.\n"
            "Ours tries each OpenVINO bundle with our settings and with\n"
            "OpenVINO's defaults and keeps the faster. Prints sentences/s (fastest of --repeats passes) and its\n"
            "slowest–fastest spread, ratio to the baseline, accuracy, label agreement with the baseline, p99 model-call\n"
            "latency, GOP/s and its fraction of this machine's measured fp32 GEMM peak (fp32 modes) or int8 GEMM peak\n"
            "(int8 modes); then ours against the fastest peer and against each engine row, each saying whether the\n"
            "ratio lies outside the two rows' spreads or within the noise. The machine and its ISA flags are recorded.\n"
            "Bundles are cached in --work-dir."
        ),
    )
    p.add_argument("--modes", default="all", metavar="M,M,…", help="modes to run (default all; see above)")
    p.add_argument("--ours-from", default=None, metavar="B,B,…",
                   help="our bundles ours is chosen from: ort-int8, ov-int8, ov-bf16 (default: those this machine runs)")
    p.add_argument("--max-accuracy-drop", type=DROP_PP, default=0.3, metavar="PP",
                   help="ours only from bundles losing at most PP SST-2 dev points to fp32 on the default model (default 0.3)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N dev sentences (default all 872)")
    p.add_argument("--repeats", type=TIMES, default=3, metavar="N",
                   help="timed passes per mode: the fastest reported, with the slowest–fastest spread (default 3)")
    p.add_argument("--json", type=OUT_FILE, metavar="FILE", help="write the results as JSON (default: none)")
    force_arg(p, "--json file")
    p.add_argument("--threads", type=THREADS, metavar="N", help="threads for every engine (default: all physical cores)")
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--work-dir", type=output("dir"), default=Path("runs/compare"), metavar="DIR",
                   help="bundle cache, reused across runs (default runs/compare)")
    p.add_argument("--optimum-venvs", type=DIR, metavar="DIR",
                   help="folder of the optimum-intel and optimum-onnx venvs made by benchmarks/optimum/setup.sh, for the "
                        "Optimum modes (default: $ROBERTA_INFER_OPTIMUM_VENVS; without it they are skipped)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from rich.table import Table

    from ..compare import check_settings, compare, default_models, parse_modes  # deferred: it imports torch
    from ..optimum_peers import venvs_folder  # deferred: it imports transformers

    # the HTML report: beside --json (replaced only with --force, as the JSON is), else in the work dir, compare's own cache
    report, replace_report = ((args.json.with_suffix(".html"), args.force) if args.json
                              else (args.work_dir / "report.html", True))
    if args.json is not None:
        check_file(args.json, force=args.force, flag="--json")
        if report.absolute() == args.json.absolute():
            raise RobertaInferError(f"--json {args.json}: the HTML report is written beside the JSON as {report}; "
                                    "give the JSON file another suffix (.json)")
    check_location(args.work_dir, "--work-dir")
    kind = kind_of(args.work_dir)
    if kind is not None or args.work_dir.is_file():
        raise RobertaInferError(f"--work-dir {args.work_dir} is {describe(kind) if kind else 'a file'}, "
                                "not compare's bundle cache: give another folder")
    check_file(report, force=replace_report, flag="--json" if args.json else "--work-dir")
    modes = parse_modes(args.modes)
    ours_from = None if args.ours_from is None else tuple(filter(None, args.ours_from.split(",")))
    check_settings(modes, data=args.data, limit=args.limit, repeats=args.repeats, ours_from=ours_from,
                   max_accuracy_drop=args.max_accuracy_drop)
    speed, trained, note = default_models()
    result = compare(speed, trained, work_dir=args.work_dir, modes=modes, data=args.data, limit=args.limit, threads=args.threads,
                     repeats=args.repeats, ours_from=ours_from, max_accuracy_drop=args.max_accuracy_drop, accuracy_note=note,
                     optimum_venvs=venvs_folder(args.optimum_venvs),
                     progress=lambda message: print(f"· {message}", file=sys.stderr))
    header, body = rows(result, described=False)
    table = Table(*header, caption=caption(result))
    for cells in body:
        table.add_row(*cells)
    console().print(table)
    print(summary(result))
    if args.json:
        write_json(result, args.json, force=args.force)
    write_report(report, html_report(result), result["machine"], force=replace_report)
    print(f"report: {report}", file=sys.stderr)
