"""One client for every server the serving benchmarks compare: KServe v2 infer requests over HTTP/JSON, closed or open loop.

`roberta-infer loadtest` speaks only our /v1 route and reads our /metrics; Triton and Ray Serve have neither, so
peers.py, soak.py and faults.py drive all servers through this: the same request (one text, input `text` BYTES
[1, 1], JSON), the same aiohttp client, the same answer check (HTTP 200 and one label back). Closed loop: C clients
each send their next request when their last is answered, for a fixed time. Open loop: requests due every 1/R s,
each latency counted from when it was due (no coordinated omission), as in `loadtest`.
Servers run as child processes in their own session (`Server`), so one signal stops a server and all it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import psutil

OPEN_LOOP_CONNECTIONS = 256
SRC = Path(__file__).resolve().parents[2] / "src"


def body(text: str) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": [[text]]}]}


def label_of(answer: dict) -> str | None:
    """The one label of a v2 infer response, else None."""
    for output in answer.get("outputs", []):
        if output.get("name") == "label" and len(output.get("data", [])) == 1:
            return output["data"][0]
    return None


@dataclass
class Tally:
    """How the requests of one window went: latencies (s) of those answered correctly, failures by kind."""
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    # when asked for: (sent, answered or failed, "ok" or the failure), perf_counter seconds
    events: list[tuple[float, float, str]] | None = None

    def fail(self, kind: str, sent: float) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.events is not None:
            self.events.append((sent, time.perf_counter(), kind))

    def ok(self, sent: float) -> None:
        self.latencies.append(time.perf_counter() - sent)
        if self.events is not None:
            self.events.append((sent, time.perf_counter(), "ok"))

    def summary(self, seconds: float) -> dict:
        ms = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return {"requests": self.sent, "ok": len(self.latencies), "errors": sum(self.errors.values()),
                "error_kinds": dict(self.errors), "seconds": seconds, "sentences_per_s": len(self.latencies) / seconds,
                "latency_ms": {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(np.max(ms))}}


class Client:
    """v2 infer requests to `url` (…/v2/models/NAME/infer) of texts taken in turn; `expected` (text → label), when
    given, makes a different label a failure ("wrong label")."""

    def __init__(self, http: aiohttp.ClientSession, url: str, texts: list[str], expected: dict[str, str] | None = None):
        self.http, self.url, self.texts, self.expected, self.next = http, url, texts, expected, 0

    async def send(self, tally: Tally, due: float | None = None) -> None:
        text = self.texts[self.next % len(self.texts)]
        self.next += 1
        tally.sent += 1
        began = time.perf_counter() if due is None else due
        try:
            async with self.http.post(self.url, json=body(text)) as response:
                answer = await response.json(content_type=None) if response.status == 200 else None
                status = response.status
        except aiohttp.ClientConnectionError as e:
            tally.fail(f"connection error ({type(e).__name__})", began)
            return
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            tally.fail(type(e).__name__, began)
            return
        label = label_of(answer) if answer is not None else None
        if status != 200:
            tally.fail(f"HTTP {status}", began)
        elif label is None:
            tally.fail("no label", began)
        elif self.expected is not None and self.expected.get(text) != label:
            tally.fail("wrong label", began)
        else:
            tally.ok(began)


def session(connections: int, timeout_s: float = 60) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False)


async def closed_loop(url: str, texts: list[str], clients: int, seconds: float, warmup_s: float = 2.0) -> dict:
    """`clients` clients for `warmup_s` (not counted), then for `seconds`; the level's summary."""
    async with session(clients) as http:
        client = Client(http, url, texts)

        async def loop(tally: Tally, until: float) -> None:
            while time.perf_counter() < until:
                await client.send(tally)

        for tally, span in ((Tally(), warmup_s), (Tally(), seconds)):
            began = time.perf_counter()
            await asyncio.gather(*(loop(tally, began + span) for _ in range(clients)))
        return {"mode": "closed", "clients": clients, **tally.summary(time.perf_counter() - began)}


async def open_loop(url: str, texts: list[str], rate: float, seconds: float, windows: float | None = None,
                    probe=None) -> dict:
    """Requests due every 1/`rate` s for `seconds` s. With `windows` (s), also one summary per window of due times,
    with `probe()`'s dict (e.g. the server's RSS) taken at each window's end."""
    async with session(OPEN_LOOP_CONNECTIONS) as http:
        client, total, pending = Client(http, url, texts), Tally(), []
        per_window: list[Tally] = []
        probes: list[dict] = []
        start = time.perf_counter()
        for i in range(max(1, round(rate * seconds))):
            due = start + i / rate
            if windows is not None:
                w = int((due - start) // windows)
                while len(per_window) <= w:
                    if per_window and probe is not None:
                        probes.append(probe())
                    per_window.append(Tally())
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(both(client, total, per_window[-1] if windows else None, due)))
        sent_s = time.perf_counter() - start
        await asyncio.gather(*pending)
        if windows is not None and probe is not None:
            probes.append(probe())
        result = {"mode": "open", "rate": rate, "achieved_rate": total.sent / max(sent_s, 1 / rate),
                  **total.summary(seconds)}
        if windows is not None:
            result["windows"] = [{"window": i, **t.summary(windows), **(probes[i] if i < len(probes) else {})}
                                 for i, t in enumerate(per_window)]
        return result


async def both(client: Client, total: Tally, window: Tally | None, due: float) -> None:
    """One request counted in the run's tally and in its window's."""
    tally = Tally()
    await client.send(tally, due)
    for t in (total, window) if window is not None else (total,):
        t.sent += tally.sent
        t.latencies += tally.latencies
        for kind, n in tally.errors.items():
            t.errors[kind] = t.errors.get(kind, 0) + n


def ours_server(model: Path, port: int, log: Path, *, threads: int, max_batch_size: int = 32, wait_ms: float = 5.0,
                parallel_calls: int = 2) -> Server:
    """`roberta-infer serve` (this interpreter's, our src/ first) on `model` at 127.0.0.1:`port`."""
    command = [str(Path(sys.executable).parent / "roberta-infer"), "serve", "--model", str(model), "--port", str(port),
               "--threads", str(threads), "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(wait_ms),
               "--parallel-calls", str(parallel_calls)]
    return Server("roberta-infer serve", command, f"http://127.0.0.1:{port}/v2/models/roberta/infer", log,
                  {"PYTHONPATH": str(SRC)})


class Server:
    """A server as a child process in its own session (log in `log`); ready once a v2 infer request succeeds."""

    def __init__(self, name: str, command: list[str], url: str, log: Path, env: dict | None = None):
        self.name, self.command, self.url, self.log, self.env = name, command, url, log, env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, **(self.env or {})})

    async def wait_ready(self, timeout_s: float = 180) -> float:
        """Seconds until the first correct answer; RuntimeError if the process exits or `timeout_s` passes."""
        began = time.perf_counter()
        async with session(1, timeout_s=10) as http:
            client = Client(http, self.url, ["a fine , warm film ."])
            while time.perf_counter() - began < timeout_s:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with status {self.process.returncode}; see {self.log}")
                tally = Tally()
                await client.send(tally)
                if tally.latencies:
                    return time.perf_counter() - began
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:g} s; see {self.log}")

    def rss_mb(self) -> float:
        """Resident memory of the server and every process it started (Ray's raylet, workers; Triton's stubs)."""
        try:
            root = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            return float("nan")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """`sig` to the server's process group, reap it, then SIGKILL it and any process it started that is left."""
        if self.process is None:
            return
        try:  # Ray's workers start sessions of their own: found by ancestry, not by process group
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        signal_group(self.process.pid, sig)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for p in alive:
            p.kill()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is already gone
        pass
