"""`classify`: a batch job over big text collections, in this process or on a Ray cluster.

The job (`job.classify_collection`), top to bottom:

1. `job.expand_inputs`: files, directories and globs → an ordered list of files of a known format
   (`readers.EXTENSIONS`: `.txt`/`.jsonl`/`.csv`/`.tsv`/`.parquet`).
2. `job.plan_shards`: each file cut into shards of at most `shard_size` records by its reader (`readers.plan`),
   found without holding the file in memory (text files: one pass counting newlines, keeping the byte offset of
   every shard's first line; Parquet: its row groups' metadata). The plan depends on the input only, so both
   engines write the same shards and `--resume` skips the shards already written, whichever engine wrote them.
3. `shard.run_shard`, once per shard: read its records (`readers.read`), classify them with `predict.classify` (the
   project's length-aware batching), and write one output file atomically (`outputs.output_file`). A shard file
   exists only once complete, so an interrupted job loses nothing and a retried shard duplicates nothing.
4. The engine runs the pending shards: `local_engine` in this process with a progress bar (memory: one shard at a
   time), `ray_engine` as Ray Data `from_items(shards) → map_batches(ShardWorker)`: a pool of actors, each loading
   the model once.
5. `_SUCCESS` (JSON): counts, model sha256, engine, throughput in sentences/s, wall time, per-worker figures.

Record ids are `<input path as given>:<number>`: the line number (1-based, a CSV/TSV header is line 1) for text
files, the row number (1-based) for Parquet.
"""

from .job import classify_collection
from .ray_engine import ShardWorker

__all__ = ["ShardWorker", "classify_collection"]
