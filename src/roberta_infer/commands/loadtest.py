"""`roberta-infer loadtest`: load-test a running `serve` on this machine: req/s, texts/s, latency percentiles, batch sizes."""

from __future__ import annotations

import argparse

from .args import FILE, OUT_FILE, console, force_arg, formatter, int_list, ranged, url


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest", formatter_class=formatter,
        help="load-test a running `serve` on this machine: req/s, texts/s, latency percentiles, batch sizes",
        description=(
            "Closed loop (default): send --requests requests at each --concurrency level (that many clients,\n"
            "each sending its next request once its last is answered): what the server sustains.\n"
            "Open loop (--rate R --duration S): requests leave every 1/R s whatever the answers, and each\n"
            "latency counts from when its request was due: the latency a given load gets (size servers so).\n"
            "Loopback only (127.0.0.0/8, ::1, localhost; anything else is refused). Texts: --texts FILE (one\n"
            "per line), else SST-2 dev sentences when found ($ROBERTA_INFER_DATA or ./data), else built-in.\n"
            "Reports per level req/s, texts/s, latency p50/p95/p99 of the requests answered correctly, errors\n"
            "by kind, the server's batch sizes (its /metrics histogram before vs after), its RSS, and the CPU\n"
            "time per request of the server (from /metrics) and of this client, as a table and, with --json,\n"
            "a JSON file. No server at --url: an error at once; every request of a level failing: exit 2."
        ),
    )
    p.add_argument("--url", type=url, default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    p.add_argument("--concurrency", type=int_list(ranged(int, 1, 100_000)), default=[1, 8, 64], metavar="C1,C2,...",
                   help="concurrent clients per level (default 1,8,64)")
    p.add_argument("--requests", type=ranged(int, 1, 100_000_000), default=1000, metavar="N",
                   help="requests per level (default 1000)")
    p.add_argument("--texts-per-request", type=ranged(int, 1, 100_000), default=1, metavar="K", help="default 1")
    p.add_argument("--rate", type=ranged(float, 0, 100_000, low_open=True), metavar="R",
                   help="open loop: requests per second (instead of --concurrency; default: closed loop)")
    p.add_argument("--duration", type=ranged(float, 0, 3600, low_open=True), default=10.0, metavar="S",
                   help="open loop: seconds of sending (default 10)")
    p.add_argument("--texts", type=FILE, metavar="FILE", help="texts to send, one per line (default: SST-2 dev)")
    p.add_argument("--model", metavar="NAME", help="the model each request names, on a server of several (`serve "
                   "--model NAME=BUNDLE`); batch figures are then that model's (default: the server's only model)")
    p.add_argument("--json", type=OUT_FILE, metavar="OUT.json", help="also write the summary here (default: none)")
    force_arg(p, "--json file")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:

    from ..loadtest import loadtest, summary_table  # deferred: it imports aiohttp and ONNX Runtime

    summary = loadtest(args.url, concurrency=args.concurrency, requests=args.requests, texts_per_request=args.texts_per_request,
                       rate=args.rate, duration=args.duration, texts_file=args.texts, json_out=args.json, force=args.force,
                       model=args.model)
    console().print(summary_table(summary))
    if args.json:
        print(f"summary: {args.json}")
