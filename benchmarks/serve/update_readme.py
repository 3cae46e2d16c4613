"""Rewrite README's serving sections from the JSON that `run.sh` leaves here, so the figures are never typed by hand.

Reads offline.json (`roberta-infer infer` summary), loadtest.json, loadtest-8.json, ceiling.json, ceiling-8.json
and memory-{1000,10000}.json (`roberta-infer loadtest --json`), and roberta-base/ (`run.sh roberta-base`) when
present, and replaces what lies between `<!-- serving:start ... -->` and `<!-- serving:end -->`; then, from
peers/ (peers.py, soak.py, faults.py: `run.sh peers`), what lies between `<!-- serving-peers:start ... -->` and
`<!-- serving-peers:end -->`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from peers_readme import peers_section

from roberta_infer.loadtest import cpu_text

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"
SECTION = re.compile(r"(<!-- serving:start[^\n]*-->\n).*?(<!-- serving:end -->)", re.S)
PEERS = re.compile(r"(<!-- serving-peers:start[^\n]*-->\n).*?(<!-- serving-peers:end -->)", re.S)


def read(name: str) -> dict:
    path = HERE / name
    if not path.is_file():
        raise SystemExit(f"{path} not found: run benchmarks/serve/run.sh first")
    return json.loads(path.read_text())


def shown(path: str) -> str:
    """A model path as the repository names it, when it lies inside (relative ones are as run.sh gave them)."""
    try:
        return str((README.parent / path).resolve().relative_to(README.parent))
    except ValueError:
        return path


def table(offline: dict, loadtests: list[tuple[str, dict]]) -> list[str]:
    """Offline `infer` first, then one row per (server, load level), each as a share of the offline throughput."""
    base = offline["throughput_samples_per_s"]
    rows = [f"| offline `infer`, batch {offline['batch_size']} | – | – | – | – | {base:.0f} | 100 % | – | – | "
            f"{offline['latency_ms']['p99']:.1f} (per batch) | {offline['batch_size']} | – |"]
    for server, level in ((server, level) for server, loadtest in loadtests for level in loadtest["levels"]):
        latency = level["latency_ms"]
        clients = f"{level['concurrency']} client{'s' if level['concurrency'] > 1 else ''}"
        rows.append(f"| {server}, {clients} | {level['texts_per_request']} | {level['requests']} | {level['errors']} | "
                    f"{level['requests_per_s']:.0f} | {level['texts_per_s']:.0f} | {100 * level['texts_per_s'] / base:.1f} % | "
                    f"{latency['p50']:.1f} | {latency['p95']:.1f} | {latency['p99']:.1f} | {level['mean_batch_size']:.1f} | "
                    f"{cpu_text(level.get('server_cpu_us_per_request'))} / {cpu_text(level.get('client_cpu_us_per_request'))} |")
    return ["| run | texts / request | requests | errors | req/s | texts/s | vs offline | p50 ms | p95 ms | p99 ms | mean batch "
            "| CPU µs / request: server / client |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]



def settings(offline: dict, server: dict) -> str:
    return (f"Server: `roberta-infer serve` (batches ≤ {server['max_batch_size']} texts, wait ≤ {server['max_wait_ms']:g} ms, "
            f"{server.get('parallel_calls', 1)} model call{'s' if server.get('parallel_calls', 1) > 1 else ''} at a time). "
            f"Offline: SST-2 dev prepared at {offline['seq_len']} ids, {'length-aware' if offline.get('length_aware') else 'fixed'} "
            f"padding, {offline['loop']} timed pass{'es' if offline['loop'] > 1 else ''}.")


def section(offline: dict, loadtests: list[dict], ceiling: list[dict], memory: tuple[dict, dict],
            base: tuple[dict, list[dict]] | None) -> str:
    """The default model's table (with the zero-cost ceiling), machine, model, settings and memory lines; then
    roberta-base's table, if measured."""
    machine, server = loadtests[0]["machine"], loadtests[0]["server"]
    arch = server.get("architecture") or {}
    before, after = (m["levels"][-1]["server_rss_mb"] for m in memory)
    first, total = memory[0]["levels"][-1]["requests"], sum(m["levels"][-1]["requests"] for m in memory)
    lines = [
        *table(offline, [*(("`serve`", t) for t in loadtests), *(("zero-cost model (ceiling)", t) for t in ceiling)]),
        "",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs ({machine['physical_cores']} physical cores), "
        f"load average {machine['load_average_before'][0]:.2f} before the load test; ONNX Runtime {machine['onnxruntime']}, "
        f"{server['threads']} intra-op threads. Client and server share the machine.",
        f"Model: {server['source'].get('kind')} `{shown(server['source'].get('path', '?'))}` ({arch.get('layers')} layers, "
        f"hidden {arch.get('hidden')}); texts: {loadtests[0]['texts'].split(' (')[0]}. {settings(offline, server)}",
        f"Memory: server RSS {before:.0f} MB after {first:,} requests, {after:.0f} MB after {total:,} "
        f"({100 * (after - before) / before:+.1f} %).",
        "Ceiling: the same server with `benchmarks/serve/ceiling.py`'s model call that returns zeros at once (HTTP, JSON, "
        "queue, batching and tokenisation still run): what the serving stack and client allow with an infinitely fast model.",
        "Reproduce: `bash benchmarks/serve/run.sh` on a quiet machine.",
        "",
    ]
    if base is not None:
        offline, loadtests = base
        lines += [
            "The same at roberta-base's shape (synthetic weights, speed only), where the model's work dwarfs HTTP, JSON and "
            "tokenisation:",
            "",
            *table(offline, [("`serve`", t) for t in loadtests]),
            "",
            f"{settings(offline, loadtests[0]['server'])} Load average {loadtests[0]['machine']['load_average_before'][0]:.2f} "
            "before the load test. Reproduce: `bash benchmarks/serve/run.sh roberta-base`.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    text = README.read_text()
    if not SECTION.search(text):
        raise SystemExit(f"{README} has no <!-- serving:start --> … <!-- serving:end --> section")
    base = None
    if (HERE / "roberta-base" / "loadtest.json").is_file():
        base = (read("roberta-base/offline.json"), [read("roberta-base/loadtest.json"), read("roberta-base/loadtest-8.json")])
    body = section(read("offline.json"), [read("loadtest.json"), read("loadtest-8.json")],
                   [read("ceiling.json"), read("ceiling-8.json")], (read("memory-1000.json"), read("memory-10000.json")),
                   base)
    text = SECTION.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)
    if PEERS.search(text) and (HERE / "peers" / "default.json").is_file():
        text = PEERS.sub(lambda m: m.group(1) + peers_section() + m.group(2), text, count=1)
    README.write_text(text)
    print(f"updated the serving sections of {README}")


if __name__ == "__main__":
    main()
