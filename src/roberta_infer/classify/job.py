"""A `classify` job: its inputs, its shard plan, its output folder's state, and `classify_collection`, which runs it.

The output folder holds `_JOB.json` (the job's identity, written first), the shards `part-<file>-<shard>.<format>`
(each written atomically by `shard.run_shard`) and, once every shard is there, `_SUCCESS` (the manifest, with each
shard's records, bytes and sha256). While a run writes it, `_LOCK` holds its process id and host: a second run on the
same folder is refused, a lock whose process is gone is taken over.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from .. import readers
from ..bundle import open_model
from ..data import sha256_file
from ..default import default_bundle
from ..errors import NoSpaceError, RobertaInferError, check_positive
from ..outputs import check_outside_outputs, remove_leftovers, write_json
from ..predict import Classifier
from .local_engine import run_local
from .ray_engine import ShardWorker, run_ray
from .shard import Job, Shard

FORMAT = "roberta-infer/classify/1"
OUTPUT_FORMATS = ("parquet", "jsonl")
ON_ERROR = ("fail", "skip")
JOB_FILE, SUCCESS_FILE, LOCK_FILE = "_JOB.json", "_SUCCESS", "_LOCK"
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
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    with job_lock(out, progress):
        done = open_output(out, identity, resume, plan=plan, ext=output_format, progress=progress)
        if done is None:  # resumed a job that had already finished, every shard verified: its manifest, marked so
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
        except NoSpaceError as e:  # the disk filled up: the shards written stay, --resume finishes once space is freed
            raise NoSpaceError(f"{e}; the shards finished are kept: free some space, then run the same command with "
                               f"--resume to finish the job in {out}") from e
        except RobertaInferError:  # a bad record or a changed file: this job cannot finish as it is, so --resume cannot help
            if fresh:
                discard_output(out, shard_names, output_format)
            raise
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: the shards written stay, the CLI shows this hint
            e.add_note(f"the shards written are kept: run the same command with --resume to finish the job in {out}")
            raise
        manifest = summarise(plan, pending, results, identity, engine=engine, out=out, output_format=output_format,
                             wall_time_s=time.perf_counter() - began, workers=workers, threads=threads, batch_size=batch_size,
                             model=model)
        write_json(manifest, out / SUCCESS_FILE, force=True, flag="--output", own=out)
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
    """Refuse an `out` this job may not write: a file; a folder inside another output (`outputs.artifact_holding`); a
    non-empty folder without a classify job; another job (one of the keys of `identity` differs: checked first
    without the model's sha256, before the model loads, then with it); any earlier run without `resume`. Returns
    None for a new or empty `out`, else the names of the shards already written and whether the job finished."""
    if out.exists() and not out.is_dir():
        raise RobertaInferError(f"--output {out} is a file: choose a directory")
    check_outside_outputs(out, "--output")
    if not out.exists() or not any(out.iterdir()):
        return None
    check_lock(out)
    if not (out / JOB_FILE).exists() and [p.name for p in out.iterdir()] == [LOCK_FILE]:
        return None  # a run that held the lock died before it wrote anything
    try:
        previous = json.loads((out / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise RobertaInferError(f"--output {out} is not empty and holds no classify job: choose a new or empty "
                                "directory") from None
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


def open_output(out: Path, identity: dict, resume: bool, *, plan: list[Shard], ext: str,
                progress: Callable[[str], None]) -> set[str] | None:
    """The names of the shards already written and verified (empty for a new job), or None when this job already
    finished and every shard `_SUCCESS` lists still verifies.

    `out` is checked by `check_output`. A new or empty `out` gets `_JOB.json` (the job's identity); in a resumed
    one, leftover temporary files of an interrupted run are removed and each shard written is checked
    (`shard_problem`): one that fails is removed, to be redone, with a `progress` line naming it and why (and a
    finished job whose shards fail is finished again).
    """
    found = check_output(out, identity, resume, shard_names=[shard.name for shard in plan], ext=ext)
    if found is None:
        write_json(identity, out / JOB_FILE, force=True, flag="--output", own=out)
        return set()
    done, finished = found
    recorded = recorded_shards(out) if finished else {}
    bad = {}
    for shard in plan:
        problem = shard_problem(out / f"{shard.name}.{ext}", shard.count, recorded.get(shard.name)) \
            if finished or shard.name in done else None
        if problem:
            bad[shard.name] = problem
    if finished and not bad:
        return None
    for name, problem in bad.items():
        progress(f"{name}.{ext} {problem}: redoing it")
        (out / f"{name}.{ext}").unlink(missing_ok=True)
    if finished:
        progress(f"{out / SUCCESS_FILE} no longer describes the shards on disk: finishing the job again")
        (out / SUCCESS_FILE).unlink()
    remove_leftovers(out)
    return done - set(bad)


def recorded_shards(out: Path) -> dict[str, dict]:
    """`_SUCCESS`'s {shard name: {records, bytes, sha256}} ({} for a manifest written before it recorded them, or
    unreadable: its shards are then checked as `shard_problem` checks shards without a record)."""
    try:
        recorded = json.loads((out / SUCCESS_FILE).read_text()).get("shard_files")
    except (OSError, ValueError, AttributeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def shard_problem(path: Path, count: int, record: dict | None) -> str | None:
    """Why the shard file `path` cannot stand as planned (None if it can): missing; against `record` (`_SUCCESS`'s
    {bytes, sha256}), a different size or sha256; without one, unreadable or not holding `count` records."""
    if not path.is_file():
        return "is missing" + (f" (listed in {SUCCESS_FILE})" if record else "")
    if isinstance(record, dict):
        if path.stat().st_size != record.get("bytes"):
            return f"has {path.stat().st_size} bytes, {SUCCESS_FILE} recorded {record.get('bytes')}"
        if sha256_file(path) != record.get("sha256"):
            return f"does not match its sha256 in {SUCCESS_FILE}"
        return None
    try:
        if path.suffix == ".parquet":
            rows = pq.read_table(path).num_rows
        else:
            with open(path, encoding="utf-8") as f:
                rows = sum(1 for line in f if json.loads(line) is not None)
    except Exception as e:  # pyarrow's ArrowInvalid / OSError, json's ValueError, a UnicodeDecodeError: all "damaged"
        return f"is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'unreadable'})"
    return None if rows == count else f"holds {rows} records, not the {count} planned"


def discard_output(out: Path, shard_names: list[str], ext: str) -> None:
    """Remove what a job that started `out` afresh wrote before it failed: its shards, `_JOB.json` and temporary
    files (`job_lock` then removes `out` itself if the job created it). Only the job's own names are removed."""
    remove_leftovers(out)
    for name in [f"{name}.{ext}" for name in shard_names] + [JOB_FILE]:
        (out / name).unlink(missing_ok=True)


@contextmanager
def job_lock(out: Path, progress: Callable[[str], None]):
    """Hold `out`/_LOCK (created with O_EXCL, holding "<pid> <host>") while the block runs; `out` is created if
    needed, and removed again on the way out if it was created here and is left empty. A lock of a live process
    (`check_lock`) is refused with RobertaInferError; one whose process is gone is taken over with a `progress` line."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock, mine = out / LOCK_FILE, f"{os.getpid()} {socket.gethostname()}\n"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            stale = check_lock(out)
            if stale is not None:
                progress(f"taking over {lock}: {stale}")
                lock.unlink(missing_ok=True)
    with os.fdopen(fd, "w") as f:
        f.write(mine)
    try:
        yield
    finally:
        if lock.is_file() and lock.read_text() == mine:
            lock.unlink()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def check_lock(out: Path) -> str | None:
    """Refuse (RobertaInferError) an `out` whose `_LOCK` names another process that may still run: on this host, a
    live pid; on another host, any (it cannot be checked from here). Returns None without a lock, else why the lock
    does not stand in the way (its process is gone, the file names none, or it is this process's own)."""
    lock = out / LOCK_FILE
    try:
        pid_text, _, host = lock.read_text().strip().partition(" ")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        pid_text, host = "", ""
    if not pid_text.isdigit() or int(pid_text) < 1:
        return "it names no process"
    pid = int(pid_text)
    if pid == os.getpid() and host == socket.gethostname():
        return "it is this process's own"
    if host and host != socket.gethostname():
        raise RobertaInferError(f"--output {out} is locked by process {pid} on {host}: wait for that classify run, or "
                                f"remove {lock} if it no longer runs")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} is no longer running"
    except PermissionError:
        pass  # it exists, under another user
    raise RobertaInferError(f"--output {out} is being written by another classify run (process {pid}, {lock}): wait for "
                            "it to finish, or choose another directory")


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
    shard_files = {s.name: {"records": s.count, **({"bytes": by_name[s.name]["bytes"], "sha256": by_name[s.name]["sha256"]}
                                                   if s.name in by_name else file_record(out / f"{s.name}.{output_format}"))}
                   for s in plan}
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
        "shard_files": shard_files,
    }


def file_record(path: Path) -> dict:
    """{bytes, sha256} of a file, as `_SUCCESS` records each shard."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


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
