"""`roberta-infer serve` side by side with its serving peers on the same bundle, engine, threads and texts.

Peers (peer_servers.py, in the venv peers_venv.sh makes): Triton's dynamic batcher through PyTriton and Ray Serve's
`@serve.batch`, each calling our bundle (`load_bundle` + `predict`) on the texts its batcher gathered. All three run
at once, idle but for the one being measured, and one client (drive.py: KServe v2 infer over HTTP/JSON, one text per
request) drives each in turn: Triton's queue delays and instance counts first (64 clients; the best is kept), then
closed loop at each client count and open loop at fixed rates below the slowest server's capacity, each level
measured on every server back to back, in an order that rotates from pass to pass. Medians over passes; ratios per
pass. Writes JSON (--out) and a plot (--plot); update_readme.py turns the JSON into README's table.
    python benchmarks/serve/peers.py --model BUNDLE [--peers-python /work/venvs/serve-peers/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from statistics import median

import numpy as np
from drive import SRC, Server, closed_loop, open_loop, ours_server

from roberta_infer.hardware import machine, physical_cores
from roberta_infer.loadtest import run_fast, sample_texts

HERE = Path(__file__).resolve().parent
OURS, TRITON, RAY = "roberta-infer serve", "Triton (PyTriton)", "Ray Serve"


def make_servers(args, work: Path) -> dict[str, Server]:
    """Our server and the two peers, on ports args.port, +10 (Triton: HTTP, gRPC, metrics), +20."""
    common = ["--model", str(args.model), "--threads", str(args.threads)]
    env = {"PYTHONPATH": str(SRC)}
    peer = [args.peers_python, str(HERE / "peer_servers.py")]
    triton = [*peer, "triton", *common, "--port", str(args.port + 10), "--max-batch-size", str(args.max_batch_size),
              "--delays-us", ",".join(map(str, args.delays_us)), "--instances", ",".join(map(str, args.instances))]
    ray = [*peer, "ray", *common, "--port", str(args.port + 20), "--max-batch-size", str(args.max_batch_size),
           "--wait-ms", str(args.wait_ms)]
    url = "http://127.0.0.1:{}/v2/models/{}/infer".format
    first = f"roberta-{args.delays_us[0]}us-{args.instances[0]}i"
    return {OURS: ours_server(args.model, args.port, work / "ours.log", threads=args.threads,
                              max_batch_size=args.max_batch_size, wait_ms=args.wait_ms, parallel_calls=args.parallel_calls),
            TRITON: Server(TRITON, triton, url(args.port + 10, first), work / "triton.log", env),
            RAY: Server(RAY, ray, url(args.port + 20, "roberta"), work / "ray.log", env)}


def rotated(names: list[str], k: int) -> list[str]:
    return names[k % len(names):] + names[:k % len(names)]


async def measure(args, servers: dict[str, Server], texts: list[str]) -> dict:
    names = list(servers)
    for server in servers.values():  # one at a time: three loads at once would crowd two cores
        server.start()
        print(f"{server.name}: ready after {await server.wait_ready():.1f} s", file=sys.stderr)
    triton_base = servers[TRITON].url.rsplit("/", 2)[0]  # …/v2/models
    sweep = []
    for delay, instances in ((d, n) for n in args.instances for d in args.delays_us):
        url = f"{triton_base}/roberta-{delay}us-{instances}i/infer"
        level = await closed_loop(url, texts, 64, args.sweep_seconds)
        sweep.append({"max_queue_delay_us": delay, "instances": instances, **level})
        print(f"Triton sweep {delay} µs × {instances}: {level['sentences_per_s']:.0f}/s, "
              f"p99 {level['latency_ms']['p99']:.0f} ms", file=sys.stderr)
    best = max(sweep, key=lambda s: s["sentences_per_s"])
    servers[TRITON].url = f"{triton_base}/roberta-{best['max_queue_delay_us']}us-{best['instances']}i/infer"
    levels = []
    for p in range(args.passes):
        for i, clients in enumerate(args.clients):
            for name in rotated(names, p + i):
                level = await closed_loop(servers[name].url, texts, clients, args.seconds)
                levels.append({"server": name, "pass": p, "rss_mb": servers[name].rss_mb(), **level})
                print(f"pass {p} {name} {clients} clients: {level['sentences_per_s']:.0f}/s, "
                      f"p99 {level['latency_ms']['p99']:.0f} ms", file=sys.stderr)
    capacity = min(median(lv["sentences_per_s"] for lv in levels if lv["server"] == n and lv["clients"] == max(args.clients))
                   for n in names)
    rates = [round(f * capacity) for f in args.rate_fractions]
    for p in range(args.passes):
        for i, rate in enumerate(rates):
            for name in rotated(names, p + i):
                level = await open_loop(servers[name].url, texts, rate, args.seconds)
                levels.append({"server": name, "pass": p, "rss_mb": servers[name].rss_mb(), **level})
                print(f"pass {p} {name} {rate}/s: p99 {level['latency_ms']['p99']:.0f} ms, {level['errors']} errors",
                      file=sys.stderr)
    return {"triton_sweep": sweep, "triton_chosen": {k: best[k] for k in ("max_queue_delay_us", "instances")},
            "slowest_capacity": capacity, "rates": rates, "levels": levels}


def medians(levels: list[dict], server: str, key: str, value) -> dict:
    """{key value: (median sentences/s, median p50, median p99)} over passes."""
    out = {}
    for v in sorted({lv[key] for lv in levels if lv.get(key) is not None}):
        mine = [lv for lv in levels if lv["server"] == server and lv.get(key) == v]
        if mine and value(mine[0]):
            out[v] = {"sentences_per_s": median(lv["sentences_per_s"] for lv in mine),
                      "p50_ms": median(lv["latency_ms"]["p50"] for lv in mine),
                      "p99_ms": median(lv["latency_ms"]["p99"] for lv in mine),
                      "errors": sum(lv["errors"] for lv in mine)}
    return out


def at_p99(curve: dict, p99: float) -> tuple[float | None, str]:
    """Throughput on a closed-loop curve (points by client count) at `p99` ms, linear between measured points: the
    highest point's throughput (a lower bound, "≥") past its p99, None below the lowest point's."""
    points = sorted((c["p99_ms"], c["sentences_per_s"]) for c in curve.values())
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if p99 < xs[0]:
        return None, "below the 1-client p99"
    if p99 >= xs[-1]:
        return max(ys), "a lower bound: even at the most clients its p99 is below that"
    return float(np.interp(p99, xs, ys)), "interpolated between client counts"


def compare(result: dict, clients: list[int]) -> dict:
    """Throughput at equal p99 with the most clients, p99 at equal rate, and per-pass throughput ratios."""
    levels, names = result["levels"], [OURS, TRITON, RAY]
    closed = {n: medians(levels, n, "clients", lambda lv: lv["mode"] == "closed") for n in names}
    opened = {n: medians(levels, n, "rate", lambda lv: lv["mode"] == "open") for n in names}
    top = max(clients)
    best_peer = max((TRITON, RAY), key=lambda n: closed[n][top]["sentences_per_s"])
    p99 = closed[best_peer][top]["p99_ms"]
    ours_at, how = at_p99(closed[OURS], p99)

    def throughput(server: str, p: int) -> float:
        return next(lv["sentences_per_s"] for lv in levels if lv["server"] == server and lv.get("clients") == top
                    and lv["pass"] == p)

    passes = sorted({lv["pass"] for lv in levels})
    per_pass = {peer: [throughput(OURS, p) / throughput(peer, p) for p in passes] for peer in (TRITON, RAY)}
    equal_rate = {rate: {"p99_ms": {n: opened[n][rate]["p99_ms"] for n in names},
                         "ours_lowest": all(opened[OURS][rate]["p99_ms"] < opened[n][rate]["p99_ms"] for n in (TRITON, RAY))}
                  for rate in result["rates"]}
    return {"closed": closed, "open": opened, "best_peer": best_peer,
            "equal_p99": {"clients": top, "p99_ms": p99, "peer_sentences_per_s": closed[best_peer][top]["sentences_per_s"],
                          "ours_sentences_per_s": ours_at, "how": how,
                          "ratio": None if ours_at is None else ours_at / closed[best_peer][top]["sentences_per_s"],
                          "target": 1.3},
            "ratio_at_most_clients_per_pass": per_pass, "equal_rate": equal_rate}


def plot(summary: dict, path: Path) -> None:
    """Left: closed loop, p99 against throughput (1/8/64 clients); right: open loop, p99 against the offered rate."""
    import matplotlib  # deferred: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib

    c = summary["comparison"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, marker in ((OURS, "o"), (TRITON, "s"), (RAY, "^")):
        curve = c["closed"][name]
        xs = [curve[k]["sentences_per_s"] for k in sorted(curve, key=int)]
        ys = [curve[k]["p99_ms"] for k in sorted(curve, key=int)]
        left.plot(xs, ys, marker=marker, label=name)
        for k, x, y in zip(sorted(curve, key=int), xs, ys):
            left.annotate(f"{k}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        rates = sorted(c["open"][name], key=float)
        right.plot([float(r) for r in rates], [c["open"][name][r]["p99_ms"] for r in rates], marker=marker, label=name)
    left.set(xlabel="throughput, sentences/s (closed loop; points: clients)", ylabel="p99 latency, ms", yscale="log")
    right.set(xlabel="offered rate, requests/s (open loop)", ylabel="p99 latency, ms", yscale="log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend()
    m = summary["machine"]
    fig.suptitle(f"serving, one text per request (KServe v2 JSON): {m['cpu']}, {m['logical_cpus']} vCPUs, shared; "
                 f"load avg {m['load_average_before'][0]:.2f} before", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser.add_argument("--model", type=Path, required=True, help="a bundle from `roberta-infer export`")
    parser.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON", "/work/venvs/serve-peers/bin/python"))
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0, help="ours' --max-wait-ms and Ray's batch_wait_timeout_s")
    parser.add_argument("--parallel-calls", type=int, default=2, help="ours' (run.sh's setting for the default model)")
    parser.add_argument("--delays-us", type=ints, default=[100, 1000, 5000], help="Triton's max queue delays to try")
    parser.add_argument("--instances", type=ints, default=[1, 2], help="Triton's instance counts to try")
    parser.add_argument("--clients", type=ints, default=[1, 8, 64])
    parser.add_argument("--rate-fractions", type=lambda s: [float(x) for x in s.split(",")], default=[0.3, 0.6, 0.85],
                        help="open-loop rates as fractions of the slowest server's throughput at the most clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="per level and server")
    parser.add_argument("--sweep-seconds", type=float, default=10.0)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "peers" / "default.json")
    parser.add_argument("--plot", type=Path, default=HERE / "peers" / "default.png")
    args = parser.parse_args()
    texts, source = sample_texts()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        servers = make_servers(args, Path(work))
        try:
            result = run_fast(measure(args, servers, texts))
        except BaseException:
            for server in servers.values():
                print(f"--- {server.log.name} (last lines)\n" + "".join(open(server.log).readlines()[-15:]), file=sys.stderr)
            raise
        finally:
            for server in servers.values():
                server.stop()
    manifest = json.loads((args.model / "manifest.json").read_text())
    summary = {"model": {"source": manifest.get("source"), "architecture": manifest.get("architecture"),
                         "engine": manifest.get("engine", "onnxruntime"), "precision": manifest.get("precision", "fp32")},
               "texts": source, "request": "one text per request, KServe v2 infer over HTTP/JSON",
               "settings": {"threads": args.threads, "max_batch_size": args.max_batch_size, "seconds": args.seconds,
                            "passes": args.passes, OURS: {"max_wait_ms": args.wait_ms, "parallel_calls": args.parallel_calls},
                            RAY: {"batch_wait_timeout_ms": args.wait_ms, "replicas": 1}},
               "machine": {**machine(), "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
                           "shared": "2 vCPUs shared with other users' work; client and servers share them"},
               **result}
    summary["comparison"] = compare(summary, args.clients)
    args.out.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    plot(summary, args.plot)
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
