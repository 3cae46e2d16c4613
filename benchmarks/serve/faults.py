"""Kill `roberta-infer serve` under load, start it again, and check how every request and readiness probe went.

Clients (closed loop, drive.py's v2 client) send SST-2 texts whose labels are known beforehand (the bundle run
offline, `predict`, in this process); after --kill-after s the server gets SIGKILL and is started again at once; the
load goes on for --seconds in all, and at least --after s once the new server is ready, while /readyz is polled
every 20 ms. Checks, each in the JSON:
  - every request was answered with the expected label, or failed with a connection error (server down) or a 503
    sent before the new server's first /readyz 200 (loading); nothing else (no wrong label, no other status);
  - no request was answered after the kill and before the new server's last not-ready /readyz probe was sent;
  - /readyz said 200 only after the server had logged "model ready" (loaded and warmed up), and 503 or no
    connection before.
    python benchmarks/serve/faults.py --model BUNDLE [--clients 8] [--seconds 20] [--kill-after 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from drive import Client, Tally, ours_server, session

from roberta_infer.bundle import load_bundle
from roberta_infer.hardware import machine, physical_cores
from roberta_infer.loadtest import run_fast, sample_texts
from roberta_infer.predict import predict

HERE = Path(__file__).resolve().parent
READY_LINE = "model ready"


async def poll_ready(base: str, log: Path, until: dict, probes: list[dict]) -> None:
    """GET /readyz every 20 ms until until["t"]: when sent and answered, status or "no connection", and the "model
    ready" lines in the server's log read after the answer."""
    async with session(2, timeout_s=5) as http:
        while time.perf_counter() < until["t"]:
            sent = time.perf_counter()
            try:
                async with http.get(f"{base}/readyz") as response:
                    status: int | str = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = "no connection"
            probes.append({"sent": sent, "t": time.perf_counter(), "status": status,
                           "ready_lines": log.read_text().count(READY_LINE)})
            await asyncio.sleep(0.02)


async def faults(args, server, texts: list[str], expected: dict[str, str]) -> dict:
    server.start()
    await server.wait_ready()
    base = server.url.split("/v2/")[0]
    tally, probes = Tally(events=[]), []
    began = time.perf_counter()
    until = {"t": began + args.seconds}  # moved on once the new server is ready, so it has --after s of load
    async with session(args.clients) as http:
        client = Client(http, server.url, texts, expected)

        async def loop() -> None:
            while time.perf_counter() < until["t"]:
                failed = tally.sent - len(tally.latencies)
                await client.send(tally)
                if tally.sent - len(tally.latencies) > failed:
                    await asyncio.sleep(0.05)  # a client backs off a little after a failure

        async def kill_and_restart() -> dict:
            await asyncio.sleep(args.kill_after)
            killed = time.perf_counter()
            server.kill(signal.SIGKILL)
            server.start()
            restarted, planned = time.perf_counter(), until["t"]
            until["t"] = float("inf")  # the load and the probes go on until the new server is ready
            while time.perf_counter() < planned + args.give_up:
                if any(p["status"] == 200 and p["t"] > restarted for p in probes):
                    until["t"] = max(planned, time.perf_counter() + args.after)
                    break
                await asyncio.sleep(0.05)
            else:
                until["t"] = time.perf_counter()
            return {"killed": killed, "restarted": restarted}

        _, times, *_ = await asyncio.gather(poll_ready(base, server.log, until, probes), kill_and_restart(),
                                            *(loop() for _ in range(args.clients)))
    killed = times["killed"]
    after = [p for p in probes if p["t"] > times["restarted"]]
    ready_at = next((p["t"] for p in after if p["status"] == 200), None)
    # readiness only ever goes 503 → 200, so a request sent after the kill and answered before a not-ready probe was
    # even sent was answered by a server that was not ready
    last_unready = max((p["sent"] for p in after if p["status"] != 200 and (ready_at is None or p["t"] < ready_at)),
                       default=killed)
    answered_while_down = sum(1 for sent, t, kind in tally.events if kind == "ok" and sent > killed and t < last_unready)
    end = until["t"]
    bad = {kind: n for kind, n in tally.errors.items() if not kind.startswith("connection error") and kind != "HTTP 503"}
    late_503 = sum(1 for sent, _, kind in tally.events if kind == "HTTP 503" and ready_at is not None and sent > ready_at)
    premature = [p for p in probes if p["status"] == 200 and p["ready_lines"] < (1 if p["t"] < killed else 2)]
    checks = {
        "every request answered correctly or refused while down": not bad and late_503 == 0,
        "no answer between the kill and the new server's readiness": answered_while_down == 0,
        "/readyz 200 only after the model was loaded and warm": not premature and ready_at is not None,
        "answers again after the restart": any(kind == "ok" and t > (ready_at or end) for _, t, kind in tally.events),
    }
    return {"clients": args.clients, "seconds": args.seconds, "kill_after_s": args.kill_after,
            "requests": tally.sent, "answered_correctly": len(tally.latencies), "failures": tally.errors,
            "unexpected_failures": bad, "503_after_ready": late_503, "answered_while_down": answered_while_down,
            "ready_again_after_kill_s": None if ready_at is None else ready_at - killed,
            "readyz_before_ready": sorted({str(p["status"]) for p in after if ready_at is None or p["t"] < ready_at}),
            "readyz_200_before_warm": len(premature), "checks": checks, "passed": all(checks.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a bundle from `roberta-infer export`")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load once the new server is ready")
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds past --seconds to wait for readiness")
    parser.add_argument("--texts", type=int, default=400, help="SST-2 dev sentences used (their labels are computed first)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--port", type=int, default=18760)
    parser.add_argument("--out", type=Path, default=HERE / "peers" / "faults.json")
    args = parser.parse_args()
    texts, source = sample_texts()
    texts = texts[: args.texts]
    expected = {r["text"]: r["label"] for r in predict(load_bundle(args.model, threads=args.threads), texts)}
    with tempfile.TemporaryDirectory() as work:
        server = ours_server(args.model, args.port, Path(work) / "serve.log", threads=args.threads)
        try:
            result = run_fast(faults(args, server, texts, expected))
        finally:
            server.stop()
    summary = {"server": "roberta-infer serve", "texts": f"{len(texts)} of {source}", **result,
               "machine": {**machine(), "load_average": list(os.getloadavg())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    for name, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
