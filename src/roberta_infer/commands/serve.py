"""`roberta-infer serve`: HTTP API over a bundle, batching texts across concurrent requests (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse

from .args import BATCH, PORT, bundle_dir, formatter, positive_int, ranged, runtime_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", formatter_class=formatter,
        help="HTTP API over a bundle, batching texts across concurrent requests (FastAPI + uvicorn)",
        description=(
            "Serve a bundle over HTTP with one session of its engine (ONNX Runtime or OpenVINO):\n"
            '  POST /v1/classify {"texts": ["...", ...]} or {"text": "..."}\n'
            '       → {"results": [{"label": ..., "score": softmax prob, "logits": [...]}, ...]} in request order\n'
            "  GET  /healthz (process up), /readyz (200 once the model is loaded and warm), /metrics (Prometheus),\n"
            "       /openapi.json, /docs\n"
            "The Open Inference Protocol (KServe v2), as Triton's and KServe's clients (tritonclient) speak it:\n"
            "  POST /v2/models/NAME/infer  input text BYTES [N] → outputs label BYTES [N], score FP32 [N],\n"
            "       logits FP32 [N, C]; JSON or binary tensor data\n"
            "  GET  /v2/health/live, /v2/health/ready, /v2 (server), /v2/models/NAME, /v2/models/NAME/ready\n"
            "Texts from concurrent requests share model calls: up to --max-batch-size texts, length-sorted, cut\n"
            "where padding would cost more than another call, padded to the longest; results equal `predict`.\n"
            "Texts wait for company only while the model is busy, and at most --max-wait-ms after the oldest:\n"
            "an idle model runs a lone request at once.\n"
            'Bad input gets a 4xx with {"error": ...}; more than --max-queue waiting texts, 503 + Retry-After.\n'
            "SIGTERM/SIGINT: in-flight requests finish, new connections are refused, exit status 0.\n"
            "Without --model the shipped default model is served, exported once to a bundle cached in\n"
            "$ROBERTA_INFER_CACHE (default ~/.cache/roberta-infer)."
        ),
    )
    p.add_argument("--model", type=bundle_dir, metavar="BUNDLE",
                   help="a bundle written by `roberta-infer export` (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="default 8000 (0: any free port)")
    p.add_argument("--max-batch-size", type=BATCH, default=32, metavar="B", help="texts per model call at most (default 32)")
    p.add_argument("--max-wait-ms", type=ranged(float, 0, 60_000), default=5.0, metavar="MS",
                   help="how long a batch may wait for more texts after its oldest arrived, while the model is "
                        "busy with another call (default 5)")
    p.add_argument("--max-texts-per-request", type=positive_int, default=256, metavar="N", help="default 256; more: 413")
    p.add_argument("--max-text-chars", type=positive_int, default=10000, metavar="N",
                   help="characters per text (default 10000); more: 413")
    p.add_argument("--max-queue", type=positive_int, default=2048, metavar="N",
                   help="texts waiting for the model at most (default 2048); beyond, 503 with Retry-After")
    p.add_argument("--parallel-calls", type=ranged(int, 1, 64), default=1, metavar="N",
                   help="model calls running at once on the one session (default 1; 2 helps models so small that "
                        "tokenising and answering take as long as the call)")
    p.add_argument("--name", default="roberta", help="the model's name on the /v2 routes (default roberta)")
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU under load)")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    """`serve.serve(...)` with the parsed options: the size and wait limits as its Limits, the rest as they are."""
    from ..serve import Limits, serve  # deferred: it imports FastAPI, onnx and ONNX Runtime

    limits = Limits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                    max_texts_per_request=args.max_texts_per_request, max_text_chars=args.max_text_chars,
                    parallel_calls=args.parallel_calls)
    serve(args.model, host=args.host, port=args.port, limits=limits, threads=args.threads, provider=args.provider,
          access_log=args.access_log, name=args.name)
