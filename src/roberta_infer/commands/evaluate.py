"""`roberta-infer evaluate`: accuracy of infer results against prepared labels (the reference's postprocess)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import read_sst2, sha256_file
from ..errors import RobertaInferError
from ..evaluate import accuracy, misclassified
from ..outputs import check_file, write_json
from ..predict import write_jsonl
from ..prepare import label_indices, load_prepared, read_reference_labels
from ..tokenise import label_symbols
from .args import DIR, FILE, OUT_FILE, PATH, console, force_arg, formatter, parse_class_names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=formatter,
        help="accuracy of infer results against prepared labels (the reference's postprocess)",
        description="Accuracy over all N samples (the reference divides by N-1; we do not), macro-F1, MCC, per-class\n"
                    "precision/recall/F1 and the confusion matrix: printed as tables, written as JSON to --json\n"
                    "(default: evaluation.json in the results directory).\n\n"
                    "Also scores the reference's own files: NPU outputs of ais_bench or msame and its roberta_base.label\n"
                    "(raw int64 label-dictionary indices, with --label-dict SST-2-bin/label/dict.txt), matched by name.",
    )
    p.add_argument("--results", type=DIR, required=True, metavar="DIR",
                   help="output of `roberta-infer infer`, or an ais_bench (src_tokens_{i}_0.bin) / msame "
                        "(src_tokens_{i}_output_0.bin) output folder: float32 logits per sample or per batch")
    p.add_argument("--labels", type=PATH, required=True, metavar="PATH",
                   help="output of `roberta-infer prepare`, or the reference's roberta_base.label (raw int64, with --label-dict)")
    p.add_argument("--label-dict", type=FILE, metavar="DICT.txt",
                   help="the label dictionary (SST-2-bin/label/dict.txt) the label file's indices and a tool's logits follow "
                        "(default: none; needed with a label file)")
    p.add_argument("--class-names", metavar="A,B,…",
                   help="classes of an ais_bench/msame folder's logits, in order (default: the label dictionary's)")
    p.add_argument("--json", type=OUT_FILE, metavar="FILE",
                   help="where to write the JSON result (default: evaluation.json in --results, replaced on each run)")
    force_arg(p, "--json / --errors file")
    p.add_argument("--errors", type=OUT_FILE, metavar="FILE.jsonl",
                   help="also write each misclassified sample (index, text, gold, predicted, score) as JSON lines; "
                        "needs --labels to be a prepared directory whose SST-2 TSV is still where prepare read it "
                        "(default: none)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..infer import read_outputs  # deferred: infer imports ONNX Runtime

    for target in (args.json, args.errors):
        if target is not None:
            check_file(target, force=args.force, flag="--json" if target is args.json else "--errors",
                       inputs=[args.results, args.labels, *([args.label_dict] if args.label_dict else [])])
    if args.json is not None and args.errors is not None and args.json.absolute() == args.errors.absolute():
        raise RobertaInferError("--json and --errors name the same file")
    label_names = label_symbols(args.label_dict) if args.label_dict is not None else None
    given = parse_class_names(args.class_names)
    logits, summary = read_outputs(args.results, class_names=given or label_names)
    class_names = summary["class_names"]
    if given and given != class_names:  # infer's results record their classes; --class-names is for raw outputs
        raise RobertaInferError(f"--class-names {','.join(given)} differ from the classes {args.results} records "
                                f"({', '.join(class_names)}, from its summary.json): leave --class-names out")
    if args.labels.is_dir():
        if args.label_dict is not None:
            raise RobertaInferError(f"--label-dict goes with the reference's label file; {args.labels} is a prepared directory")
        prepared = load_prepared(args.labels)
        if prepared.labels is None:
            raise RobertaInferError(f"{args.labels} has no labels (the SST-2 test split is unlabelled)")
        gold, gold_names = prepared.labels, prepared.meta["label_names"]
        inferred_on = summary.get("data") or {}
        if inferred_on.get("sha256") and inferred_on.get("sha256") != prepared.meta["source"].get("sha256"):
            raise RobertaInferError(f"the results in {args.results} were inferred on {inferred_on.get('path')}, but the labels "
                                    f"in {args.labels} come from {prepared.meta['source'].get('path')} (sha256 differs)")
    elif args.label_dict is None:
        raise RobertaInferError(f"{args.labels} is a file: the reference's label file needs --label-dict (its label/dict.txt)")
    else:
        gold, gold_names = label_indices(read_reference_labels(args.labels, args.label_dict), class_names), class_names
    result = accuracy(logits, class_names, gold, gold_names)
    if args.errors is not None:
        if not args.labels.is_dir():
            raise RobertaInferError("--errors needs the texts: give --labels a prepared directory (the reference's label "
                                    "file holds shuffled rows without them)")
        wrong = misclassified(logits, class_names, gold, gold_names, prepared_texts(prepared))
        write_jsonl(wrong, args.errors, force=args.force, flag="--errors")
    if args.json is not None:
        write_json(result, args.json, force=args.force)
    else:  # derived from the results folder, so rewritten with it
        write_json(result, args.results / "evaluation.json", force=True, own=args.results)
    print_scores(result)
    if args.errors is not None:
        print(f"{len(wrong)} misclassified samples → {args.errors}")


def prepared_texts(prepared) -> list[str]:
    """The sentences a prepared directory was made from, if its SST-2 TSV is still there unchanged."""
    source = Path(prepared.meta["source"]["path"])
    if source.is_dir():
        raise RobertaInferError(f"--errors needs the texts, but {source} holds fairseq's binarised ids, not texts")
    if not source.is_file() or sha256_file(source) != prepared.meta["source"]["sha256"]:
        raise RobertaInferError(f"--errors needs the texts, but {source} (which prepare read) is gone or changed")
    return read_sst2(source).sentences


def print_scores(result: dict) -> None:
    """Accuracy, macro-F1 and MCC on a line, then per-class scores and the confusion matrix as tables."""
    from rich.table import Table

    out = console()
    out.print(f"accuracy {100 * result['accuracy']:.2f} % ({result['correct']}/{result['samples']}), "
                  f"macro-F1 {result['macro_f1']:.4f}, MCC {result['mcc']:.4f}", highlight=False)
    per_class = Table("class", "precision", "recall", "F1", "support")
    for name, v in result["per_class"].items():
        per_class.add_row(name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"]))
    confusion = Table("gold \\ predicted", *result["class_names"], title="confusion matrix")
    for name, row in zip(result["class_names"], result["confusion"]):
        confusion.add_row(name, *map(str, row))
    out.print(per_class, confusion)
