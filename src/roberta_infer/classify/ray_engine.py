"""The `ray` engine: a job's pending shards on Ray Data, `from_items(shards) → map_batches(ShardWorker)` over a pool
of actors, each loading the model once. `ray` is imported only when this engine runs (it is slow to import)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..bundle import open_model
from ..errors import NoSpaceError, RobertaInferError
from ..runtime import physical_cores
from .shard import Job, Shard, run_shard

RESULT_KEYS = ("shard", "records", "errors", "busy_s", "bytes", "sha256", "worker")


class ShardWorker:
    """A Ray Data actor: loads the model once (with its share of threads), then runs whole shards.

    `job` is a `Job` as a dict; `loader` holds the model's absolute `path`, `threads`, and `fairseq_data`/`bpe_dir`
    (absolute paths or None), as `bundle.open_model` takes them. A bad record with `on_error="fail"` comes back as
    the result's `error` (the driver stops the job with it) rather than as an exception Ray would wrap in its own
    traceback.
    """

    def __init__(self, job: dict, loader: dict):
        import ray

        self.job = Job(**job)
        self.classifier = open_model(Path(loader["path"]), fairseq_data=loader["fairseq_data"] and Path(loader["fairseq_data"]),
                                     bpe_dir=loader["bpe_dir"] and Path(loader["bpe_dir"]), threads=loader["threads"])
        self.worker = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """`batch["shard"]`: shards as JSON → one result row per shard (`RESULT_KEYS`, `error`: "" or a
        message, and `no_space`: whether that error is a full disk, which `--resume` can finish after)."""
        rows = []
        for text in batch["shard"]:
            shard = Shard(**json.loads(text))
            try:
                rows.append(self.run(shard) | {"worker": self.worker, "error": "", "no_space": False})
            except RobertaInferError as e:
                rows.append({"shard": shard.name, "records": 0, "errors": 0, "busy_s": 0.0, "bytes": 0, "sha256": "",
                             "worker": self.worker, "error": str(e), "no_space": isinstance(e, NoSpaceError)})
        return {key: [row[key] for row in rows] for key in rows[0]}

    def run(self, shard: Shard) -> dict:
        return run_shard(self.classifier, shard, self.job)


def run_ray(pending: list[Shard], job: Job, loader: dict, *, workers: int | None, threads: int, address: str | None,
            worker_class: type) -> tuple[list[dict], int]:
    """The pending shards on Ray Data: `from_items` (one row per shard) → `map_batches` over a pool of `workers`
    actors of `threads` CPUs (default: as many as the cluster's CPUs allow). `address` joins a running cluster;
    without it a local Ray instance is started and shut down after. Ray Data restarts an actor that dies and re-runs
    its shard (its default for actor pools: `max_restarts=-1`, `max_task_retries=-1`). Returns the per-shard results
    (`RESULT_KEYS`) and the pool size. Raises RobertaInferError for a pool larger than the cluster, or a shard's
    error."""
    import ray

    started = not ray.is_initialized()
    quiet = {"log_to_driver": False, "logging_level": "warning"}  # the actors' own output stays in Ray's logs
    if started and address:
        ray.init(address=address, **quiet)
    elif started:
        cpus = (workers or max(1, physical_cores() // threads)) * threads
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers is None:
            workers = max(1, cpus // threads)
        if workers * threads > cpus:  # the pool would wait for CPUs that never come
            raise RobertaInferError(f"the Ray cluster has {cpus} CPUs, fewer than --workers {workers} × "
                                    f"--threads-per-worker {threads}")
        if not pending:
            return [], workers
        items = [{"shard": json.dumps(asdict(shard))} for shard in pending]
        pool = ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1)  # idle actors take the next shard
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            worker_class, fn_constructor_kwargs={"job": asdict(job), "loader": loader}, batch_size=1, compute=pool,
            num_cpus=threads)
        results = []
        for row in dataset.iter_rows():
            if row["error"]:
                raise (NoSpaceError if row["no_space"] else RobertaInferError)(row["error"])
            results.append({key: row[key] for key in RESULT_KEYS})
        return results, workers
    finally:
        if started:
            ray.shutdown()
