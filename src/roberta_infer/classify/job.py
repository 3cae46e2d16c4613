"""A `classify` job: its inputs, its shard plan, its output folder's state, and `classify_collection`, which runs it.

The output folder holds `_JOB.json` (the job's identity, written first), the shards `part-<file>-<shard>.<format>`
(each written atomically by `shard.run_shard`) and, once every shard is there, `_SUCCESS` (the manifest).
"""

from __future__ import annotations

import glob
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from .. import readers
from ..bundle import open_model
from ..default import default_bundle
from ..errors import RobertaInferError, check_positive
from ..outputs import remove_leftovers, write_json
from ..predict import Classifier
from .local_engine import run_local
from .ray_engine import ShardWorker, run_ray
from .shard import Job, Shard

FORMAT = "roberta-infer/classify/1"
OUTPUT_FORMATS = ("parquet", "jsonl")
ON_ERROR = ("fail", "skip")
JOB_FILE, SUCCESS_FILE = "_JOB.json", "_SUCCESS"
SKIPPED_SHOWN = 20  # files the warning about a folder's unreadable files names; it counts the rest


def classify_collection(model: Path | None, inputs: list[str], out: Path, *, fairseq_data: Path | None = None,
                        bpe_dir: Path | None = None, text_field: str = "text", output_format: str = "parquet",
                        engine: str = "local", ray_address: str | None = None, workers: int | None = None,
                        threads: int | None = None, batch_size: int = 32, shard_size: int = 10_000,
                        resume: bool = False, on_error: str = "fail", show_progress: bool = False,
                        progress: Callable[[str], None] = print, worker_class: type | None = None) -> dict:
    """Classify every record of `inputs` into shards under `out`; returns the `_SUCCESS` manifest (a dict; with
    `already_complete: true` added when `resume` found the job finished).

    `model` is a bundle or a checkpoint (`bundle.open_model`), or None for the shipped default model's bundle
    (`default.default_bundle`, exported on first use with `progress` messages), exported and loaded only once the
    options, the inputs and `out` have passed their checks; loaded once per process: here for `local`, once per
    actor for `ray` (`workers` actors of `threads` threads each; default: as many 1-thread actors as the cluster has
    CPUs). `ray_address` joins a running cluster (`auto`, `ray://HOST:PORT`); without it a local Ray instance is
    started for the job and shut down after. `worker_class` replaces `ShardWorker` as the Ray actor (tests use one
    that dies mid-job). Raises RobertaInferError on bad options, unreadable or malformed input (with
    `on_error="fail"`; `"skip"` keeps a bad record with an `error` column and no label), and an `out` that holds
    anything but an unfinished run of this same job (or any run, without `resume`).
    """
    began = time.perf_counter()
    check_options(engine=engine, ray_address=ray_address, workers=workers, threads=threads, batch_size=batch_size,
                  shard_size=shard_size, output_format=output_format, on_error=on_error)
    out = Path(out).resolve()
    files = expand_inputs(inputs, exclude=out)
    plan = plan_shards(files, text_field, shard_size)
    shard_names = [s.name for s in plan]
    identity = {
        "format": FORMAT,
        "inputs": [{"path": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files],
        "text_field": text_field, "shard_size": shard_size, "output_format": output_format, "on_error": on_error,
    }
    check_output(out, identity, resume, shard_names=shard_names, ext=output_format)  # all but the model, not loaded yet
    model = default_bundle(progress) if model is None else model
    classifier = open_model(model, fairseq_data=fairseq_data, bpe_dir=bpe_dir, threads=threads)
    identity["model_sha256"] = model_sha256(classifier)
    existed, fresh = out.exists(), not out.exists() or (out.is_dir() and not any(out.iterdir()))
    done = open_output(out, identity, resume, shard_names=shard_names, ext=output_format)
    if done is None:  # resumed a job that had already finished: its manifest, marked so
        return json.loads((out / SUCCESS_FILE).read_text()) | {"already_complete": True}
    pending = [shard for shard in plan if shard.name not in done]
    job = Job(str(out), text_field, output_format, on_error, batch_size)
    try:
        if engine == "local":
            results = run_local(classifier, pending, job, show_progress=show_progress)
            workers, threads = 1, threads or getattr(classifier, "threads", None)
        else:
            del classifier  # the actors load their own
            threads = threads or 1
            loader = {"path": str(Path(model).resolve()), "threads": threads,
                      "fairseq_data": fairseq_data and str(Path(fairseq_data).resolve()),
                      "bpe_dir": bpe_dir and str(Path(bpe_dir).resolve())}
            results, workers = run_ray(pending, job, loader, workers=workers, threads=threads, address=ray_address,
                                       worker_class=worker_class or ShardWorker)
    except RobertaInferError:  # a bad record or a changed file: this job cannot finish as it is, so --resume cannot help
        if fresh:
            discard_output(out, shard_names, output_format, remove_dir=not existed)
        raise
    manifest = summarise(plan, pending, results, identity, engine=engine, out=out, output_format=output_format,
                         wall_time_s=time.perf_counter() - began, workers=workers, threads=threads, batch_size=batch_size,
                         model=model)
    write_json(manifest, out / SUCCESS_FILE, force=True, flag="--output")
    return manifest


def check_options(*, engine: str, ray_address: str | None, workers: int | None, threads: int | None, batch_size: int,
                  shard_size: int, output_format: str, on_error: str) -> None:
    """Refuse (RobertaInferError) an unknown engine, format or error mode, Ray options without the Ray engine, or a
    count that is not positive."""
    if engine not in ("local", "ray"):
        raise RobertaInferError(f"unknown engine {engine!r}: choose local or ray")
    if engine == "local" and (ray_address is not None or (workers or 1) != 1):
        raise RobertaInferError("--ray-address and --workers need --engine ray (the local engine is one process)")
    check_positive({"--workers": workers, "--threads-per-worker": threads, "--batch-size": batch_size,
                    "--shard-size": shard_size})
    if output_format not in OUTPUT_FORMATS:
        raise RobertaInferError(f"unknown output format {output_format!r}: choose parquet or jsonl")
    if on_error not in ON_ERROR:
        raise RobertaInferError(f"unknown --on-error {on_error!r}: choose fail or skip")


def model_sha256(classifier: Classifier) -> str:
    """A bundle's model.onnx sha256 (from its manifest), else the checkpoint's."""
    manifest = getattr(classifier, "manifest", None) or {}
    return manifest.get("model_sha256") or classifier.source["sha256"]


# ---------------------------------------------------------------- inputs and the shard plan


def expand_inputs(patterns: list[str], *, exclude: Path | None = None) -> list[Path]:
    """Each argument in order: a file as is, a directory's files of a known format (`readers.EXTENSIONS`; recursive,
    sorted; hidden and `_` names skipped), a glob's matches (sorted); files under `exclude` (the job's output
    folder) are left out. A directory's other files are not read: one warning lists them (with why: compressed,
    unknown extension).

    Raises RobertaInferError for a missing path, a glob without matches, a file named directly or by a glob of no
    known format (a compressed one named so), or no files.
    """
    extensions = ", ".join(readers.EXTENSIONS)
    files: list[Path] = []
    seen: set[Path] = set()
    skipped: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            every = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
                           and not (exclude and exclude in p.resolve().parents))
            found = [p for p in every if readers.format_of(p)]
            skipped += [p for p in every if not readers.format_of(p)]
            if not found:
                raise RobertaInferError(f"{path}: no {extensions} files in this directory")
        elif path.exists():
            found = [path]
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise RobertaInferError(f"{pattern}: no files match")
        else:
            raise RobertaInferError(f"{path} not found")
        for file in found:
            if readers.format_of(file) is None:
                raise RobertaInferError(f"{file}: {readers.unknown_kind(file)} (expected {extensions})")
            if file.resolve() not in seen and not (exclude and exclude in file.resolve().parents):
                seen.add(file.resolve())
                files.append(file)
    if skipped:
        shown = ", ".join(f"{p} ({readers.unknown_kind(p)})" for p in skipped[:SKIPPED_SHOWN])
        more = f" and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
        warnings.warn(f"{len(skipped)} files in the input folders are not read, of no known format ({extensions}): "
                      f"{shown}{more}")
    if not files:
        raise RobertaInferError("no input files")
    return files


def plan_shards(files: list[Path], text_field: str, shard_size: int) -> list[Shard]:
    """Every file's shards (`readers.plan`), named `part-<file index>-<shard index>`, in input order; checks each
    file can be read and has the text column (CSV/TSV header, Parquet schema) before anything runs. The plan
    depends on the input only, so both engines write the same shards and `--resume` skips those already written."""
    return [Shard(**vars(span), name=f"part-{index:05d}-{k:06d}")
            for index, path in enumerate(files)
            for k, span in enumerate(readers.plan(path, text_field, shard_size))]


# ---------------------------------------------------------------- the output folder


def check_output(out: Path, identity: dict, resume: bool, *, shard_names: list[str], ext: str) -> tuple[set[str], bool] | None:
    """Refuse an `out` this job may not write: a file; a non-empty folder without a classify job; another job (one
    of the keys of `identity` differs: checked first without the model's sha256, before the model loads, then with
    it); any earlier run without `resume`. Returns None for a new or empty `out`, else the names of the shards
    already written and whether the job finished."""
    if out.exists() and not out.is_dir():
        raise RobertaInferError(f"--output {out} is a file: choose a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        previous = json.loads((out / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise RobertaInferError(f"--output {out} is not empty and holds no classify job: choose a new or empty directory") from None
    differ = [key for key in identity if previous.get(key) != identity[key]]
    if differ:
        raise RobertaInferError(f"--output {out} holds a different classify job ({', '.join(differ)} differ): "
                                f"choose another directory")
    done = {name for name in shard_names if (out / f"{name}.{ext}").is_file()}
    finished = (out / SUCCESS_FILE).is_file()
    if not resume:
        state = "complete" if finished else f"{len(done)} of {len(shard_names)} shards written"
        raise RobertaInferError(f"--output {out} holds a previous run with these inputs and options ({state}): "
                                "pass --resume to finish it, or choose another directory")
    return done, finished


def open_output(out: Path, identity: dict, resume: bool, *, shard_names: list[str], ext: str) -> set[str] | None:
    """The names of the shards already written (empty for a new job), or None when this job already finished.

    `out` is checked by `check_output`. A new or empty `out` gets `_JOB.json` (the job's identity); in a resumed
    one, leftover temporary files of an interrupted run are removed.
    """
    found = check_output(out, identity, resume, shard_names=shard_names, ext=ext)
    if found is None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(identity, out / JOB_FILE, force=True, flag="--output")
        return set()
    done, finished = found
    if finished:
        return None
    remove_leftovers(out)
    return done


def discard_output(out: Path, shard_names: list[str], ext: str, *, remove_dir: bool) -> None:
    """Remove what a job that started `out` afresh wrote before it failed: its shards, `_JOB.json`, temporary files,
    and `out` itself when the job created it. Only the job's own names are removed, never anything else."""
    remove_leftovers(out)
    for name in [f"{name}.{ext}" for name in shard_names] + [JOB_FILE]:
        (out / name).unlink(missing_ok=True)
    if remove_dir and not any(out.iterdir()):
        out.rmdir()


def summarise(plan: list[Shard], pending: list[Shard], results: list[dict], identity: dict, *, engine: str, out: Path,
              output_format: str, wall_time_s: float, workers: int, threads: int | None, batch_size: int,
              model: Path) -> dict:
    """The `_SUCCESS` manifest, after checking every planned shard is on disk. Throughput counts this run's records
    (resumed shards excluded) over this run's wall time, start-up included."""
    missing = [s.name for s in plan if not (out / f"{s.name}.{output_format}").is_file()]
    if missing:
        raise RobertaInferError(f"{len(missing)} shards missing after the job ({missing[0]}, …): run again with --resume")
    remove_leftovers(out)
    by_name = {r["shard"]: r for r in results}
    errors = sum(by_name[s.name]["errors"] if s.name in by_name else count_errors(out / f"{s.name}.{output_format}")
                 for s in plan)
    per_worker: dict[str, dict] = {}
    for r in results:
        figures = per_worker.setdefault(r["worker"], {"worker": r["worker"], "shards": 0, "records": 0, "busy_s": 0.0})
        figures["shards"] += 1
        figures["records"] += r["records"]
        figures["busy_s"] += r["busy_s"]
    for figures in per_worker.values():
        figures["sentences_per_s"] = round(figures["records"] / figures["busy_s"], 1) if figures["busy_s"] else None
        figures["throughput_sentences_per_s"] = figures["sentences_per_s"]  # the old name, for one release
        figures["busy_s"] = round(figures["busy_s"], 3)
    run_records = sum(r["records"] for r in results)
    return {
        "format": FORMAT,
        "job": identity,
        "model": str(model),
        "model_sha256": identity["model_sha256"],
        "engine": engine,
        "workers": workers,
        "threads_per_worker": threads,
        "batch_size": batch_size,
        "files": len(identity["inputs"]),
        "shards": len(plan),
        "shards_resumed": len(plan) - len(pending),
        "records": sum(s.count for s in plan),
        "errors": errors,
        "records_this_run": run_records,
        "wall_time_s": round(wall_time_s, 3),
        "sentences_per_s": round(run_records / wall_time_s, 1),
        "throughput_sentences_per_s": round(run_records / wall_time_s, 1),  # the old name, for one release
        "per_worker": sorted(per_worker.values(), key=lambda figures: figures["worker"]),
    }


def count_errors(path: Path) -> int:
    """Records with an error in a shard written earlier (a resumed job's summary)."""
    if path.suffix == ".parquet":
        schema = pq.read_schema(path)
        if "error" not in schema.names:
            return 0
        column = pq.read_table(path, columns=["error"]).column("error")
        return len(column) - column.null_count
    with open(path, encoding="utf-8") as f:
        return sum(json.loads(line).get("error") is not None for line in f)
