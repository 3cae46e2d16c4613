"""`roberta-infer loadtest`: throughput, latency and the server's batching, closed or open loop.

Closed loop (`--concurrency`): each of C clients sends its next request as soon as its last one is answered, which
finds the most a server sustains. Open loop (`--rate R --duration S`): requests leave at a fixed rate whatever the
answers, and each latency counts from the moment its request was due, so a server that falls behind shows it in
the percentiles (no coordinated omission) — the way servers are sized for a given load. Latency percentiles are
over the requests answered correctly; failures are counted by kind, and a level where every request failed is an
error (exit status 2).

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
from typing import Any, Awaitable, Callable, Coroutine
from urllib.parse import quote, urlsplit

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from .data import read_sst2, sst2_file
from .errors import RobertaInferError
from .hardware import machine
from .outputs import check_file, write_json
from .readers import read_texts

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
# Open loop: at most this many requests in flight (a loopback test must stay bounded), and these limits.
OPEN_LOOP_CONNECTIONS = 256
MAX_RATE, MAX_DURATION_S = 100_000, 3600
# routes of `serve` a --url may name (the README's curl URL is /v1/classify): the server's base URL is taken from it
SERVER_ROUTES = ("/v1/classify", "/healthz", "/readyz", "/metrics", "/v2", "/v2/health/ready", "/v2/health/live")
BATCH_METRIC = "roberta_infer_batch_size"
RSS_METRIC = "process_resident_memory_bytes"
CPU_METRIC = "process_cpu_seconds_total"


def check_loopback(url: str) -> str:
    """The server's base URL (no trailing slash; from a route of it such as /v1/classify too), if it is http(s) to
    127.0.0.0/8, ::1 or localhost; else a clear refusal, also for a URL with any other path."""
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
    base, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    # a route of the server (the README's curl URL is /v1/classify) means its base; any other path is a mistake
    if path not in SERVER_ROUTES and (path or parts.query or parts.fragment):
        raise RobertaInferError(f"--url {url!r}: give the server's base URL ({base}), not a path in it; "
                                f"loadtest posts to /v1/classify itself")
    return base


def sample_texts() -> tuple[list[str], str]:
    """SST-2 dev sentences when the data are found, else a few built-in ones; and where they came from."""
    try:
        path = sst2_file(None, "dev")
        return read_sst2(path).sentences, f"SST-2 dev ({path})"
    except RobertaInferError:
        return BUILTIN_TEXTS, "built-in sentences"


def server_metrics(text: str, model: str | None = None) -> dict:
    """Cumulative batch-size bucket counts, batch count/sum (of `model`, else summed over the models served), and the
    server's RSS and CPU time from /metrics text."""
    out: dict = {"buckets": {}, "count": 0.0, "sum": 0.0, "rss_bytes": None, "cpu_seconds": None}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(BATCH_METRIC) and model is not None and sample.labels.get("model") != model:
                continue
            if sample.name == f"{BATCH_METRIC}_bucket":
                le = float(sample.labels["le"])
                out["buckets"][le] = out["buckets"].get(le, 0.0) + sample.value
            elif sample.name == f"{BATCH_METRIC}_count":
                out["count"] += sample.value
            elif sample.name == f"{BATCH_METRIC}_sum":
                out["sum"] += sample.value
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


class Level:
    """One level's requests: their texts, how each went, and the server's and client's figures around them."""

    def __init__(self, http: aiohttp.ClientSession, url: str, texts: list[str], texts_per_request: int, offset: int,
                 model: str | None = None):
        self.http, self.url, self.texts, self.texts_per_request, self.offset = http, url, texts, texts_per_request, offset
        self.model = model  # the model named in each request (None: the server's only one)
        self.latencies: list[float] = []  # seconds, of the requests answered correctly
        self.errors: dict[str, int] = {}
        self.sent = 0

    async def send(self, due: float | None = None) -> None:
        """One request of distinct texts, its answer checked; its latency counts from `due` (default: now)."""
        start = (self.offset + self.sent) * self.texts_per_request
        self.sent += 1
        body: dict = {"texts": [self.texts[(start + j) % len(self.texts)] for j in range(self.texts_per_request)]}
        if self.model is not None:
            body["model"] = self.model
        began = time.perf_counter() if due is None else due
        try:
            async with self.http.post(f"{self.url}/v1/classify", json=body) as response:
                answer = await response.read()
            if response.status != 200:
                problem = f"HTTP {response.status}"
            elif len(json.loads(answer).get("results", [])) != self.texts_per_request:
                problem = "wrong number of results"
            else:
                problem = None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:  # ValueError: a body that is not JSON
            problem = type(e).__name__
        if problem:
            self.errors[problem] = self.errors.get(problem, 0) + 1
        else:
            self.latencies.append(time.perf_counter() - began)

    async def measure(self, load: Callable[[], Awaitable[Any]], connections: int) -> dict:
        """Run `load()` between two reads of the server's /metrics, connections opened before the clock starts."""
        await asyncio.gather(*(get_text(self.http, f"{self.url}/healthz") for _ in range(connections)))
        before = server_metrics(await get_text(self.http, f"{self.url}/metrics"), self.model)
        began, client_cpu = time.perf_counter(), time.process_time()
        await load()
        seconds, client_cpu = time.perf_counter() - began, time.process_time() - client_cpu
        after = server_metrics(await get_text(self.http, f"{self.url}/metrics"), self.model)
        if not self.latencies:
            raise RobertaInferError(f"every one of the {self.sent} requests to {self.url}/v1/classify failed "
                                    f"({', '.join(f'{n} × {kind}' for kind, n in self.errors.items())})")
        server_cpu = None if after["cpu_seconds"] is None else after["cpu_seconds"] - before["cpu_seconds"]
        ok, batches = len(self.latencies), after["count"] - before["count"]
        ms = np.array(self.latencies) * 1000
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return {
            "requests": self.sent, "texts_per_request": self.texts_per_request,
            "errors": sum(self.errors.values()), "error_kinds": self.errors, "seconds": seconds,
            "requests_per_s": ok / seconds, "sentences_per_s": ok * self.texts_per_request / seconds,
            "texts_per_s": ok * self.texts_per_request / seconds,  # the old name of sentences_per_s, for one release
            "latency_ms": {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(ms.mean()),
                           "max": float(ms.max())},
            "batches": int(batches), "mean_batch_size": (after["sum"] - before["sum"]) / batches if batches else 0.0,
            "batch_sizes": batch_distribution(before, after),
            "server_rss_mb": after["rss_bytes"] / 2**20 if after["rss_bytes"] is not None else None,
            # CPU time per request (all threads), where each side's time goes when client and server share a machine
            "server_cpu_us_per_request": None if server_cpu is None else 1e6 * server_cpu / self.sent,
            "client_cpu_us_per_request": 1e6 * client_cpu / self.sent,
        }


async def closed_loop(level: Level, *, concurrency: int, requests: int) -> dict:
    """`requests` requests from `concurrency` clients, each sending its next once its last is answered.

    The clients share one aiohttp session whose pool keeps a connection per client: the client shares this
    machine's cores with the server, so it must spend as little CPU per request as it can (httpx spends about
    twice aiohttp's).
    """
    async def client_loop() -> None:
        while level.sent < requests:
            await level.send()

    result = await level.measure(lambda: asyncio.gather(*(client_loop() for _ in range(concurrency))), concurrency)
    return {"mode": "closed", "concurrency": concurrency, **result}


async def open_loop(level: Level, *, rate: float, duration: float, connections: int) -> dict:
    """Requests due every 1/`rate` s for `duration` s, each sent at its time whether or not earlier ones are answered.

    A request that finds all `connections` busy waits for one, and that wait is part of its latency, as it is of
    a real client's. `achieved_rate` is the requests sent per second of the sending phase.
    """
    async def send_all() -> None:
        loop_start, pending = time.perf_counter(), []
        for i in range(max(1, round(rate * duration))):
            due = loop_start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(level.send(due)))
        send_seconds.append(time.perf_counter() - loop_start)
        await asyncio.gather(*pending)

    send_seconds: list[float] = []
    result = await level.measure(send_all, min(connections, max(1, round(rate))))
    return {"mode": "open", "rate": rate, "duration_s": duration, "connections": connections,
            "achieved_rate": level.sent / max(send_seconds[0], 1 / rate), **result}


async def get_text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        return await response.text()


async def json_object(response: aiohttp.ClientResponse) -> dict:
    """The response's JSON object; {} for a body that is not one."""
    try:
        document = await response.json(content_type=None)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float, model: str | None = None) -> dict:
    """The served model's description from /readyz (`model`'s, where several are served), once it is ready; a clear
    error at once when nothing listens there or the server serves no `model`, after `timeout` seconds while it
    answers but is not ready (a model still loading)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if model is not None:
                async with http.get(f"{url}/v2/models/{quote(model, safe='')}/ready") as response:
                    if response.status == 404:
                        raise RobertaInferError(f"{url} serves no model named {model!r}: "
                                                f"{(await json_object(response)).get('error', '')}")
            async with http.get(f"{url}/readyz") as response:
                report = await json_object(response)
                described = report.get("models", {}).get(model, {}) if model is not None and "models" in report else report
                if described.get("status") == "ready":
                    return described.get("model")
                status = f"/readyz answers {response.status}"
        except aiohttp.ClientConnectorError as e:
            raise RobertaInferError(f"no server at {url} ({e.strerror or e}): start one with `roberta-infer serve`") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            status = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise RobertaInferError(f"{url} is not ready after {timeout:g} s ({status})")
        await asyncio.sleep(0.2)


async def _loadtest(url: str, texts: list[str], concurrency: list[int], requests: int, texts_per_request: int,
                    rate: float | None, duration: float, ready_timeout: float, model: str | None
                    ) -> tuple[dict, list[dict]]:
    # one connection per client (open loop: up to OPEN_LOOP_CONNECTIONS), one for /metrics
    connector = aiohttp.TCPConnector(limit=(OPEN_LOOP_CONNECTIONS if rate else max(concurrency)) + 1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120),
                                     trust_env=False) as http:
        described = await wait_ready(http, url, ready_timeout, model)
        if rate:
            return described, [await open_loop(Level(http, url, texts, texts_per_request, 0, model), rate=rate,
                                               duration=duration, connections=OPEN_LOOP_CONNECTIONS)]
        levels = []
        for c in concurrency:
            levels.append(await closed_loop(Level(http, url, texts, texts_per_request, len(levels) * requests, model),
                                            concurrency=c, requests=requests))
    return described, levels


def loadtest(url: str, *, concurrency: list[int] = (1, 8, 64), requests: int = 1000, texts_per_request: int = 1,
             rate: float | None = None, duration: float = 10.0, texts_file: Path | None = None,
             json_out: Path | None = None, ready_timeout: float = 30.0, force: bool = False,
             model: str | None = None) -> dict:
    """Load a running `roberta-infer serve`: each closed-loop concurrency level in turn, or one open-loop level at
    `rate` requests/s for `duration` s; returns (and writes) the summary. With `model`, every request names it
    (`"model"` in the body: a server of several models), and the batch figures are that model's.

    Texts come from `texts_file` (one per line), else SST-2 dev, else built-in sentences. Raises RobertaInferError
    for bad settings, a URL off this machine, no server there (or no `model` there), or a level where every request
    failed.
    """
    url = check_loopback(url)
    if not concurrency or min(concurrency) <= 0 or requests <= 0 or texts_per_request <= 0:
        raise RobertaInferError("--concurrency levels, --requests and --texts-per-request must be positive")
    if rate is not None and not (0 < rate <= MAX_RATE and 0 < duration <= MAX_DURATION_S):
        raise RobertaInferError(f"--rate must be in (0, {MAX_RATE}] requests/s and --duration in (0, {MAX_DURATION_S}] s "
                                f"(got {rate:g}, {duration:g})")
    if json_out is not None:
        check_file(json_out, force=force, flag="--json")
    texts, source = (read_texts(texts_file), str(texts_file)) if texts_file is not None else sample_texts()
    if not texts:
        raise RobertaInferError(f"{texts_file} holds no texts")
    load_before = os.getloadavg()
    described, levels = run_fast(_loadtest(url, texts, list(concurrency), requests, texts_per_request, rate, duration,
                                           ready_timeout, model))
    summary = {"url": url, "model_name": model, "server": described, "texts": source, "levels": levels}
    summary["machine"] = {**machine(), "load_average_before": list(load_before)}
    if json_out is not None:
        write_json(summary, json_out, force=force)
    return summary


def run_fast(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """On uvloop where it is installed (with uvicorn[standard]): the client then spends ~20 % less CPU per request."""
    try:
        import uvloop
    except ImportError:  # no uvloop build for this platform (Windows)
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def cpu_text(us: float | None) -> str:
    return "?" if us is None else f"{us:.0f}"


def summary_table(summary: dict) -> Table:
    """One row per level; latencies are of the requests answered correctly, errors counted by kind."""
    table = Table(title=f"loadtest {summary['url']} ({summary['texts']})")
    for column in ("load", "requests", "errors", "req/s", "sentences/s", "p50 ms", "p95 ms", "p99 ms", "mean batch",
                   "batch sizes", "server RSS MB", "CPU µs/req server, client"):
        table.add_column(column, justify="left" if column in ("batch sizes", "errors") else "right")
    for level in summary["levels"]:
        latency = level["latency_ms"]
        load = (f"{level['concurrency']} clients" if level["mode"] == "closed" else
                f"{level['rate']:g}/s for {level['duration_s']:g} s (sent {level['achieved_rate']:.1f}/s)")
        errors = ", ".join(f"{n} × {kind}" for kind, n in level["error_kinds"].items()) or "0"
        table.add_row(load, str(level["requests"]), errors,
                      f"{level['requests_per_s']:.1f}", f"{level['sentences_per_s']:.1f}", f"{latency['p50']:.1f}",
                      f"{latency['p95']:.1f}", f"{latency['p99']:.1f}", f"{level['mean_batch_size']:.1f}",
                      " ".join(f"{k}:{v}" for k, v in level["batch_sizes"].items()),
                      "" if level["server_rss_mb"] is None else f"{level['server_rss_mb']:.0f}",
                      f"{cpu_text(level.get('server_cpu_us_per_request'))}, {cpu_text(level.get('client_cpu_us_per_request'))}")
    return table
