"""The `local` engine: a job's pending shards one after another in this process (memory: one shard at a time)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..predict import Classifier
from .shard import Job, Shard, run_shard


def run_local(classifier: Classifier, pending: list[Shard], job: Job, *, show_progress: bool) -> list[dict]:
    """Run `pending` with `classifier`, with a progress bar over records (with `show_progress`); returns
    `run_shard`'s result per shard, with `worker` ("local:<pid>") added. Raises what `run_shard` raises."""
    worker = f"local:{os.getpid()}"
    results = []
    columns = (TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TextColumn("texts"), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("classify", total=sum(shard.count for shard in pending))
        for shard in pending:
            results.append(run_shard(classifier, shard, job) | {"worker": worker})
            progress.advance(task, shard.count)
    return results
