"""Soak `roberta-infer serve`: open loop at a share of its measured capacity for many minutes, minute by minute.

Measures the capacity first (64 clients, closed loop, drive.py's v2 client) unless --rate is given, then sends
requests at --fraction of it for --minutes, and records per minute: requests, errors by kind, p50/p99 (from when
each request was due), the server's RSS at the minute's end, its mean model-call time (its own /metrics histogram)
and the share of CPU time the hypervisor took from this machine (steal, /proc/stat), so that a slow minute reads as
the server's or the machine's; the JSON also holds the RSS growth from the second minute to the last. A server that
leaks, slows or starts failing under steady load shows it here.
    python benchmarks/serve/soak.py --model BUNDLE [--minutes 20] [--fraction 0.8] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.request import urlopen

import psutil
from drive import Server, closed_loop, open_loop, ours_server
from prometheus_client.parser import text_string_to_metric_families

from roberta_infer.hardware import machine, physical_cores
from roberta_infer.loadtest import run_fast, sample_texts

HERE = Path(__file__).resolve().parent


class Probe:
    """At each minute's end: the server's RSS (MB), the load average, the mean model-call time (ms) since the last
    probe (the server's roberta_infer_model_call_duration_seconds) and the CPU time stolen by the hypervisor (%)."""

    def __init__(self, server: Server):
        self.server, self.metrics = server, server.url.split("/v2/")[0] + "/metrics"
        self.calls, self.cpu = self.model_calls(), psutil.cpu_times()

    def model_calls(self) -> tuple[float, float]:
        """(count, sum in seconds) of the server's model calls so far."""
        with urlopen(self.metrics, timeout=10) as response:
            text = response.read().decode()
        found = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                 if sample.name.startswith("roberta_infer_model_call_duration_seconds_")}
        return found["roberta_infer_model_call_duration_seconds_count"], found["roberta_infer_model_call_duration_seconds_sum"]

    def __call__(self) -> dict:
        calls, cpu = self.model_calls(), psutil.cpu_times()
        n, seconds = calls[0] - self.calls[0], calls[1] - self.calls[1]
        elapsed = sum(cpu) - sum(self.cpu)
        steal = 100 * (cpu.steal - self.cpu.steal) / elapsed if elapsed > 0 else 0.0
        self.calls, self.cpu = calls, cpu
        return {"server_rss_mb": self.server.rss_mb(), "load_average": os.getloadavg()[0], "model_calls": int(n),
                "model_call_ms_mean": 1000 * seconds / n if n else None, "steal_percent": steal}


async def soak(args, server, texts: list[str]) -> dict:
    server.start()
    await server.wait_ready()
    capacity = None
    if args.rate is None:
        capacity = await closed_loop(server.url, texts, 64, args.capacity_seconds)
        rate = args.fraction * capacity["sentences_per_s"]
    else:
        rate = args.rate
    print(f"soak at {rate:.0f} requests/s for {args.minutes:g} min", file=sys.stderr)
    run = await open_loop(server.url, texts, rate, args.minutes * 60, windows=60, probe=Probe(server))
    for w in run["windows"]:
        print(f"minute {w['window'] + 1}: {w['requests']} requests, {w['errors']} errors, p99 {w['latency_ms']['p99']:.1f} ms, "
              f"RSS {w['server_rss_mb']:.0f} MB, model call {w['model_call_ms_mean'] or 0:.1f} ms, "
              f"steal {w['steal_percent']:.1f} %", file=sys.stderr)
    # from the second minute on (the first one warms the allocator up), as the soak's target reads
    first, last = run["windows"][min(1, len(run["windows"]) - 1)]["server_rss_mb"], run["windows"][-1]["server_rss_mb"]
    return {"capacity": capacity, "fraction": args.fraction if args.rate is None else None, "rate": rate,
            "minutes": args.minutes, "rss_growth_from_minute": min(2, len(run["windows"])), "rss_growth_mb": last - first,
            "rss_growth_percent": 100 * (last - first) / first, "run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a bundle from `roberta-infer export`")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--fraction", type=float, default=0.8, help="of the capacity measured first")
    parser.add_argument("--rate", type=float, help="requests/s (default: --fraction of the measured capacity)")
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--port", type=int, default=18750)
    parser.add_argument("--out", type=Path, default=HERE / "peers" / "soak.json")
    args = parser.parse_args()
    texts, source = sample_texts()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        server = ours_server(args.model, args.port, Path(work) / "serve.log", threads=args.threads)
        try:
            result = run_fast(soak(args, server, texts))
        finally:
            server.stop()
    summary = {"server": "roberta-infer serve", "texts": source, "threads": args.threads, **result,
               "machine": {**machine(), "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
