"""`roberta-infer loadtest`: throughput, latency and the server's batching at several client concurrencies.

Only a server on this machine is ever targeted (loopback addresses), so a typo cannot load someone else's.
Batch sizes, memory and CPU time come from the server's own /metrics, read before and after each level; the client's
CPU time from its own process, so a run on one machine shows where each side's CPU goes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any, Coroutine
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from .errors import RobertaInferError

# Used when the SST-2 dev file is not found: a mix of lengths, punctuation and non-ASCII.
BUILTIN_TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "a crème brûlée of a film : sweet , brittle , and over too soon .",
    "if you 've ever wondered what it would be like to be bored for 120 minutes , here 's your chance !",
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish ,",
    "it 's not a bad film , but it is n't a good one either .",
]
BATCH_METRIC = "roberta_infer_batch_size"
RSS_METRIC = "process_resident_memory_bytes"
CPU_METRIC = "process_cpu_seconds_total"


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, if it is http(s) to 127.0.0.0/8, ::1 or localhost; else a clear refusal."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RobertaInferError(f"--url {url!r} is not an http:// or https:// URL")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RobertaInferError(f"refusing to load-test {host}: only this machine's loopback addresses "
                                f"(127.0.0.0/8, ::1, localhost) may be targeted")
    return url.rstrip("/")


def sample_texts() -> tuple[list[str], str]:
    """SST-2 dev sentences when the data are found, else a few built-in ones; and where they came from."""
    from .data import read_sst2, sst2_file

    try:
        path = sst2_file(None, "dev")
        return read_sst2(path).sentences, f"SST-2 dev ({path})"
    except RobertaInferError:
        return BUILTIN_TEXTS, "built-in sentences"


def server_metrics(text: str) -> dict:
    """Cumulative batch-size bucket counts, batch count/sum, and the server's RSS and CPU time from /metrics text."""
    out: dict = {"buckets": {}, "count": 0.0, "sum": 0.0, "rss_bytes": None, "cpu_seconds": None}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{BATCH_METRIC}_bucket":
                out["buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name == f"{BATCH_METRIC}_count":
                out["count"] = sample.value
            elif sample.name == f"{BATCH_METRIC}_sum":
                out["sum"] = sample.value
            elif sample.name == RSS_METRIC:
                out["rss_bytes"] = sample.value
            elif sample.name == CPU_METRIC:
                out["cpu_seconds"] = sample.value
    return out


def batch_distribution(before: dict, after: dict) -> dict[str, int]:
    """Model calls per batch-size range during one level, e.g. {"1": 3, "2": 0, "3-4": 7, ...}, from bucket deltas."""
    out, below, lower = {}, 0, 0
    for le in sorted(after["buckets"]):
        cumulative = int(after["buckets"][le] - before["buckets"].get(le, 0))
        upper = "+Inf" if le == float("inf") else str(int(le))
        name = upper if str(lower + 1) == upper else f"{lower + 1}-{upper}"
        if cumulative - below:
            out[name] = cumulative - below
        below, lower = cumulative, int(le) if le != float("inf") else lower
    return out


async def run_level(http: aiohttp.ClientSession, url: str, texts: list[str], *, concurrency: int, requests: int,
                    texts_per_request: int, offset: int) -> dict:
    """`requests` requests from `concurrency` clients; each request's texts are distinct and its answer checked.

    The clients share one aiohttp session whose pool keeps a connection per client: the client shares this
    machine's cores with the server, so it must spend as little CPU per request as it can (httpx spends about
    twice aiohttp's). Connections are opened before the clock starts.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_request = iter(range(requests))

    async def client_loop() -> None:
        for i in next_request:
            start = (offset + i) * texts_per_request
            body = {"texts": [texts[(start + j) % len(texts)] for j in range(texts_per_request)]}
            began = time.perf_counter()
            try:
                async with http.post(f"{url}/v1/classify", json=body) as response:
                    answer = await response.read()
                if response.status != 200:
                    problem = f"HTTP {response.status}"
                elif len(json.loads(answer).get("results", [])) != texts_per_request:
                    problem = "wrong number of results"
                else:
                    problem = None
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:  # ValueError: a body that is not JSON
                problem = type(e).__name__
            latencies.append(time.perf_counter() - began)
            if problem:
                errors[problem] = errors.get(problem, 0) + 1

    await asyncio.gather(*(get_text(http, f"{url}/healthz") for _ in range(concurrency)))
    before = server_metrics(await get_text(http, f"{url}/metrics"))
    began, client_cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    seconds, client_cpu = time.perf_counter() - began, time.process_time() - client_cpu
    after = server_metrics(await get_text(http, f"{url}/metrics"))
    server_cpu = None if after["cpu_seconds"] is None else after["cpu_seconds"] - before["cpu_seconds"]
    ok = requests - sum(errors.values())
    batches = after["count"] - before["count"]
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return {
        "concurrency": concurrency, "requests": requests, "texts_per_request": texts_per_request,
        "errors": sum(errors.values()), "error_kinds": errors, "seconds": seconds,
        "requests_per_s": ok / seconds, "texts_per_s": ok * texts_per_request / seconds,
        "latency_ms": {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(np.mean(latencies) * 1000),
                       "max": float(np.max(latencies) * 1000)},
        "batches": int(batches), "mean_batch_size": (after["sum"] - before["sum"]) / batches if batches else 0.0,
        "batch_sizes": batch_distribution(before, after),
        "server_rss_mb": after["rss_bytes"] / 2**20 if after["rss_bytes"] is not None else None,
        # CPU time per request (all threads), where each side's time goes when client and server share a machine
        "server_cpu_us_per_request": None if server_cpu is None else 1e6 * server_cpu / requests,
        "client_cpu_us_per_request": 1e6 * client_cpu / requests,
    }


async def get_text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        return await response.text()


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float) -> dict:
    """The server's /readyz model description, once it answers 200; a clear error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return (await response.json()).get("model")
                status = f"/readyz answers {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            status = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise RobertaInferError(f"{url} is not ready after {timeout:g} s ({status})")
        await asyncio.sleep(0.2)


async def _loadtest(url: str, concurrency: list[int], requests: int, texts_per_request: int, ready_timeout: float) -> dict:
    texts, source = sample_texts()
    connector = aiohttp.TCPConnector(limit=max(concurrency) + 1)  # one connection per client, one for /metrics
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120),
                                     trust_env=False) as http:
        model = await wait_ready(http, url, ready_timeout)
        levels, offset = [], 0
        for c in concurrency:
            levels.append(await run_level(http, url, texts, concurrency=c, requests=requests,
                                          texts_per_request=texts_per_request, offset=offset))
            offset += requests
    return {"url": url, "server": model, "texts": source, "levels": levels}


def loadtest(url: str, *, concurrency: list[int], requests: int, texts_per_request: int = 1,
             json_out: Path | None = None, ready_timeout: float = 30.0) -> dict:
    """Run each concurrency level in turn against a running `roberta-infer serve`; returns (and writes) the summary."""
    from .runtime import machine

    url = check_loopback(url)
    if not concurrency or min(concurrency) <= 0 or requests <= 0 or texts_per_request <= 0:
        raise RobertaInferError("--concurrency levels, --requests and --texts-per-request must be positive")
    load_before = os.getloadavg()
    summary = run_fast(_loadtest(url, concurrency, requests, texts_per_request, ready_timeout))
    summary["machine"] = {**machine(), "load_average_before": list(load_before)}
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_fast(coroutine: Coroutine[Any, Any, dict]) -> dict:
    """On uvloop where it is installed (with uvicorn[standard]): the client then spends ~20 % less CPU per request."""
    try:
        import uvloop
    except ImportError:  # no uvloop build for this platform (Windows)
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def cpu_text(us: float | None) -> str:
    return "?" if us is None else f"{us:.0f}"


def summary_table(summary: dict) -> Table:
    """One row per concurrency level."""
    table = Table(title=f"loadtest {summary['url']} ({summary['texts']})")
    for column in ("clients", "requests", "errors", "req/s", "texts/s", "p50 ms", "p95 ms", "p99 ms", "mean batch",
                   "batch sizes", "server RSS MB", "CPU µs/req server, client"):
        table.add_column(column, justify="left" if column == "batch sizes" else "right")
    for level in summary["levels"]:
        latency = level["latency_ms"]
        table.add_row(str(level["concurrency"]), str(level["requests"]), str(level["errors"]),
                      f"{level['requests_per_s']:.1f}", f"{level['texts_per_s']:.1f}", f"{latency['p50']:.1f}",
                      f"{latency['p95']:.1f}", f"{latency['p99']:.1f}", f"{level['mean_batch_size']:.1f}",
                      " ".join(f"{k}:{v}" for k, v in level["batch_sizes"].items()),
                      "" if level["server_rss_mb"] is None else f"{level['server_rss_mb']:.0f}",
                      f"{cpu_text(level.get('server_cpu_us_per_request'))}, {cpu_text(level.get('client_cpu_us_per_request'))}")
    return table
