"""The `classify` benchmark, for a quiet machine: the default model's bundle on SST-2 train sentences (repeated).

1. engines: the same --size texts with the local engine (1 process × 2 threads) and the ray engine (a local Ray
   instance, 2 actors × 1 thread): the distributed path's cost at the same total threads.
2. nodes: a multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head without CPUs for work,
   then 1 or 2 worker nodes of 1 CPU, each its own raylet) running the same job: scaling from 1 to 2 nodes.
3. memory: the local engine's peak RSS (the process's ru_maxrss, from wait4) at each of --memory-sizes texts.

Every run is a fresh `roberta-infer classify` (its `_SUCCESS` manifest gives wall time, throughput in sentences/s
start-up included, and per-worker busy time); nothing here is a pass/fail assertion. Writes --out (JSON) and prints
a table.
    python benchmarks/classify/run.py                      # 100k texts; memory at 100k and 1M (about 15 min, 2 cores)
    python benchmarks/classify/run.py --size 5000 --memory-sizes 5000,20000    # a quick check that it all runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roberta_infer.data import read_sst2
from roberta_infer.default import default_bundle

HERE = Path(__file__).resolve().parent


def write_texts(path: Path, sentences: list[str], n: int) -> Path:
    """`n` texts, one per line: the sentences repeated in order (streamed, so 1M texts cost no memory here)."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(sentences[i % len(sentences)] + "\n")
    return path


def classify(bundle: Path, texts: Path, out: Path, *options: str) -> dict:
    """One `roberta-infer classify` in a child process: its manifest plus the child's peak RSS in MiB."""
    command = [sys.executable, "-m", "roberta_infer.cli", "classify", "--model", str(bundle), "--input", str(texts),
               "--output", str(out), *options]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    manifest = json.loads((out / "_SUCCESS").read_text())
    return summary(manifest) | {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def summary(manifest: dict) -> dict:
    """The manifest's figures, and the part of the wall time no worker spent classifying (start-up, scheduling)."""
    busiest = max(worker["busy_s"] for worker in manifest["per_worker"])
    return {key: manifest[key] for key in ("engine", "workers", "threads_per_worker", "records", "wall_time_s",
                                           "throughput_sentences_per_s", "per_worker")} | {
        "busiest_worker_s": busiest, "not_classifying_s": round(manifest["wall_time_s"] - busiest, 3)}


def on_cluster(bundle: Path, texts: Path, out: Path, nodes: int, shard_size: int) -> dict:
    """The ray engine joining a fresh head + `nodes` worker nodes (1 CPU each) started in this process."""
    from ray.cluster_utils import Cluster

    from roberta_infer.classify import classify_collection

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        began = time.perf_counter()
        manifest = classify_collection(bundle, [str(texts)], out, engine="ray", ray_address=cluster.address, threads=1,
                                       shard_size=shard_size)
        return summary(manifest) | {"nodes": nodes, "job_s": round(time.perf_counter() - began, 3)}
    finally:
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="texts for the engine and node runs")
    parser.add_argument("--memory-sizes", default="100000,1000000", help="texts for the local engine's peak RSS")
    parser.add_argument("--shard-size", type=int, help="records per shard (default: --size / 20, so every worker gets several)")
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data" / "SST-2",
                        help="SST-2 folder (its train.tsv); default ../shared/data/SST-2 beside the checkout")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    shard = ["--shard-size", str(args.shard_size or max(1, args.size // 20))]

    sentences = read_sst2(args.data / "train.tsv").sentences
    bundle = default_bundle(progress=lambda message: print(f"· {message}", file=sys.stderr))
    result: dict = {"size": args.size, "shard_size": int(shard[1]), "bundle": str(bundle), "cpus": os.cpu_count(),
                    "engines": {}, "nodes": {}, "memory": {}}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        texts = write_texts(work / "texts.txt", sentences, args.size)
        print(f"· local engine, 1 × 2 threads, {args.size} texts", file=sys.stderr)
        result["engines"]["local"] = classify(bundle, texts, work / "local", "--threads-per-worker", "2", *shard)
        print("· ray engine (local instance), 2 actors × 1 thread", file=sys.stderr)
        result["engines"]["ray"] = classify(bundle, texts, work / "ray", "--engine", "ray", "--workers", "2",
                                            "--threads-per-worker", "1", *shard)
        engines = result["engines"]
        result["ray_vs_local"] = round(engines["ray"]["throughput_sentences_per_s"]
                                       / engines["local"]["throughput_sentences_per_s"], 3)
        for nodes in (1, 2):
            print(f"· multi-node cluster: head + {nodes} worker node(s) of 1 CPU", file=sys.stderr)
            result["nodes"][str(nodes)] = on_cluster(bundle, texts, work / f"nodes-{nodes}", nodes, int(shard[1]))
        result["two_vs_one_node"] = round(result["nodes"]["2"]["throughput_sentences_per_s"]
                                          / result["nodes"]["1"]["throughput_sentences_per_s"], 3)
        for size in (int(s) for s in args.memory_sizes.split(",")):
            print(f"· local engine peak RSS, {size} texts", file=sys.stderr)
            big = write_texts(work / f"memory-{size}.txt", sentences, size)
            result["memory"][str(size)] = classify(bundle, big, work / f"memory-{size}", "--threads-per-worker", "2")
            big.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [("local, 1 × 2 threads", engines["local"]), ("ray, 2 actors × 1 thread", engines["ray"])]
    rows += [(f"ray cluster, {n} node(s) × 1 CPU", result["nodes"][n]) for n in ("1", "2")]
    rows += [(f"local, {n} texts", result["memory"][n]) for n in result["memory"]]
    print("| run | texts | wall s | sentences/s | busiest worker s | not classifying s | peak RSS MiB |\n|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['records']} | {r['wall_time_s']:.1f} | {r['throughput_sentences_per_s']:.0f} | "
              f"{r['busiest_worker_s']:.1f} | {r['not_classifying_s']:.1f} | {r.get('peak_rss_mib', '')} |")
    print(f"ray / local throughput {result['ray_vs_local']:.2f}; 2 / 1 nodes {result['two_vs_one_node']:.2f}; "
          f"→ {args.out}")


if __name__ == "__main__":
    main()
