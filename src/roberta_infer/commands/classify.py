"""`roberta-infer classify`: classify big text collections (files, folders, globs) into Parquet/JSONL shards, here or on Ray."""

from __future__ import annotations

import argparse
import sys

from ..outputs import check_location
from .args import BATCH, THREADS, formatter, model_args, output, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify", formatter_class=formatter,
        help="classify big text collections (files, folders, globs) into Parquet/JSONL shards, here or on Ray",
        description=(
            "A batch job: every record of the inputs → one output row (id, the record's other fields, label,\n"
            "score = softmax probability of the label, logits), written as shards under --output, plus\n"
            "_SUCCESS (JSON: counts, model sha256, engine, throughput in sentences/s, wall time, per worker).\n\n"
            "Inputs (files, folders searched recursively, globs; by extension):\n"
            "  .txt          one UTF-8 text per line (a final newline ends the last line)\n"
            "  .jsonl        one JSON object per line, its --text-field the text, every field kept\n"
            "  .json         one JSON array of texts, or of objects as in .jsonl (parsed whole)\n"
            "  .csv / .tsv   RFC 4180: a header record naming each column once, then one record per row (a quoted\n"
            "                field may hold commas/tabs, quotes and newlines); column --text-field\n"
            "  .parquet      column --text-field (string or binary), every column kept\n"
            "A record's id is `<file as given>:<line>` (CSV/TSV: the header is line 1, a record numbered by its\n"
            "first line), `<file>:<row>` (Parquet) or `<file>:<element>` (.json). A folder's other files are named\n"
            "in one warning and not read.\n"
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
            "Bad records (not UTF-8, not JSON, no text field, an empty or blank text, wrong number of CSV fields)\n"
            "stop the job with one line naming file and line (exit 2; it cannot be resumed until the input\n"
            "changes, so a job started afresh removes the shards it wrote, a resumed one keeps its earlier ones), or\n"
            "with --on-error skip are kept with an `error` column and no label. A full disk stops it with one line\n"
            "naming the shard: the shards finished stay, and --resume finishes the job once space is freed.\n"
            "Unreadable files, files that are not text (compressed, binary, UTF-16), unknown extensions, a\n"
            "missing or duplicate column, or an --output inside another output (a bundle, prepared data, results,\n"
            "…) always stop the job before it starts. Default model: the shipped one, as a cached bundle."
        ),
    )
    model_args(p, bundle=True, required=False)
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs (quote globs)")
    p.add_argument("--output", type=output("dir", "classify"), required=True, metavar="DIR",
                   help="folder for the shards and _SUCCESS")
    p.add_argument("--text-field", default="text", metavar="NAME", help="JSONL field / CSV, TSV, Parquet column (default: text)")
    p.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="output shards' format (default parquet)")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="this process, or a Ray cluster (default local)")
    p.add_argument("--ray-address", metavar="ADDR", help="join a running Ray cluster: auto, or ray://HOST:10001 (--engine ray; "
                                                                       "default: a local Ray instance for the job)")
    p.add_argument("--workers", type=THREADS, metavar="N", help="Ray actors (default: the cluster's CPUs / T)")
    p.add_argument("--threads-per-worker", type=THREADS, metavar="T",
                   help="threads per model (local default: all physical cores; ray default 1)")
    p.add_argument("--batch-size", type=BATCH, default=32, metavar="B", help="texts per forward pass, length-sorted (default 32)")
    p.add_argument("--shard-size", type=positive_int, default=10_000, metavar="K",
                   help="records per output shard (default 10000)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run of the same job in --output")
    p.add_argument("--on-error", default="fail", choices=["fail", "skip"],
                   help="bad record: stop with its file and line (fail, default), or keep it with an error (skip)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    from ..classify import classify_collection  # deferred: it imports pyarrow and ONNX Runtime

    check_location(args.output, "--output")
    summary = classify_collection(args.model, args.input, args.output, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir,
                                  text_field=args.text_field, output_format=args.format, engine=args.engine,
                                  ray_address=args.ray_address, workers=args.workers, threads=args.threads_per_worker,
                                  batch_size=args.batch_size, shard_size=args.shard_size, resume=args.resume,
                                  on_error=args.on_error, show_progress=sys.stderr.isatty(),
                                  progress=lambda message: print(f"· {message}", file=sys.stderr))
    if summary.get("already_complete"):
        print(f"{args.output} already holds this job's complete output ({summary['records']} texts): nothing to do")
        return
    print(f"classified {summary['records']} texts ({summary['errors']} errors) in {summary['shards']} shards "
          f"({summary['shards_resumed']} resumed): {summary['records_this_run']} this run in {summary['wall_time_s']:.1f} s, "
          f"{summary['sentences_per_s']:.1f} sentences/s, engine {summary['engine']} "
          f"({summary['workers']} × {summary['threads_per_worker']} threads) → {args.output / '_SUCCESS'}")
