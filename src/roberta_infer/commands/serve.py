"""`roberta-infer serve`: HTTP (and gRPC) API over a bundle, batching texts across concurrent requests (FastAPI + uvicorn,
grpcio)."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from ..errors import RobertaInferError
from ..outputs import kind_of
from .args import BATCH, PORT, bundle_dir, existing, formatter, positive_int, ranged, runtime_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", formatter_class=formatter,
        help="HTTP (and gRPC) API over a bundle, batching texts across concurrent requests (FastAPI + uvicorn, grpcio)",
        description=(
            "Serve a bundle over HTTP (and gRPC) with one session of its engine (ONNX Runtime or OpenVINO):\n"
            '  POST /v1/classify {"texts": ["...", ...]} or {"text": "..."}\n'
            '       → {"results": [{"label": ..., "score": softmax prob, "logits": [...]}, ...]} in request order\n'
            "  GET  /healthz (process up), /readyz (200 once the model is loaded and warm), /metrics (Prometheus),\n"
            "       /openapi.json\n"
            "The Open Inference Protocol (KServe v2), as Triton's and KServe's clients (tritonclient) speak it:\n"
            "  POST /v2/models/NAME/infer  input text BYTES [N] → outputs label BYTES [N], score FP32 [N],\n"
            "       logits FP32 [N, C]; JSON or binary tensor data\n"
            "  GET  /v2/health/live, /v2/health/ready, /v2 (server), /v2/models/NAME, /v2/models/NAME/ready\n"
            "  and /v2/models/NAME/versions/1[/ready|/infer] (the one version served; others: 404)\n"
            "  With --grpc-port, the same over gRPC (Triton's inference.GRPCInferenceService, tritonclient.grpc):\n"
            "  ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelConfig, ModelInfer (text\n"
            "  as bytes_contents or raw_input_contents; outputs as raw_output_contents), in the same process,\n"
            "  queue and limits; refusals as gRPC codes: INVALID_ARGUMENT (bad input), NOT_FOUND (another model),\n"
            "  UNAVAILABLE (loading, shutting down), RESOURCE_EXHAUSTED (queue full), DEADLINE_EXCEEDED,\n"
            "  UNAUTHENTICATED (API key: metadata `authorization: Bearer KEY`; ServerLive/ServerReady need none)\n"
            "Texts from concurrent requests share model calls: up to --max-batch-size texts and --max-batch-tokens\n"
            "padded tokens (rows × the longest row), length-sorted, cut where padding would cost more than another\n"
            "call, padded to the longest; results equal `predict`.\n"
            "Texts wait for company only while the model is busy, and at most --max-wait-ms after the oldest:\n"
            "an idle model runs a lone request at once.\n"
            'Bad input gets a 4xx with {"error": ...}; more than --max-queue waiting texts, 503 + Retry-After.\n'
            "Security: with an API key (--api-key, or better $ROBERTA_INFER_API_KEY: a command line is visible to\n"
            "every user in `ps`) every route but /healthz and /v2/health/* needs `Authorization: Bearer KEY`,\n"
            "else 401; the key is never printed. Listening beyond loopback without a key logs a warning.\n"
            "HTTP limits: a body over --max-body-bytes gets 413 unread; a head over --max-header-bytes, 431; a\n"
            "request not whole within --read-timeout-s of its first byte, 408 (or, its body late, the connection\n"
            "closed); idle keep-alive connections, and new ones that send nothing, close after --keep-alive-s.\n"
            "Beyond --max-connections a new connection closes the one idle the longest (kept alive, unused, or\n"
            "still sending its head); only when every connection has a request in flight does uvicorn answer\n"
            "503. Clients that dribble bytes or sit idle so never keep others out; /metrics counts each close\n"
            "(roberta_infer_connections_closed_total) and 503 (roberta_infer_connections_refused_total).\n"
            "/docs is off: Swagger UI loads its scripts from a CDN; /openapi.json describes the API.\n"
            "Deadlines: past --request-timeout-ms (or a request's sooner timeout_ms; gRPC: also its parameter\n"
            "timeout in microseconds, as tritonclient's infer(timeout=) sends it) a request gets 504\n"
            "(DEADLINE_EXCEEDED); its texts still queued are dropped, as are those of a client that disconnects\n"
            "(or a gRPC call cancelled or past its own deadline).\n"
            "Observability: /metrics has histograms, labelled by model, of each request's queue time, of\n"
            "tokenisation and model call times, and of rows and padded tokens per model call:\n"
            "roberta_infer_request_queue_duration_seconds, roberta_infer_tokenization_duration_seconds,\n"
            "roberta_infer_model_call_duration_seconds, roberta_infer_batch_size, roberta_infer_batch_tokens.\n"
            "With --otlp-endpoint, OpenTelemetry traces go to that collector (OTLP/HTTP): a span per request\n"
            "(a child of the caller's W3C `traceparent` header) and one per model call, linked to the requests\n"
            "it served.\n"
            "SIGTERM/SIGINT: in-flight requests (and gRPC calls) finish, new connections are refused, exit status 0.\n"
            "Without --model the shipped default model is served, exported once to a bundle cached in\n"
            "$ROBERTA_INFER_CACHE (default ~/.cache/roberta-infer).\n"
            "Several models: --model NAME=BUNDLE (repeatable) and/or --model-repository DIR (each bundle subfolder\n"
            "is a model named after it); each has its own session and batcher, under the same limits.\n"
            '  /v1/classify then needs "model": NAME in the body (an unknown name: 404 naming the models);\n'
            "  /v2/models/NAME/... serve that model; /readyz reports each model and is 200 when every model not\n"
            "  unloaded on purpose is ready (/v2/health/ready the same); /metrics labels each model's samples.\n"
            "Triton's model repository extension: POST /v2/repository/index → [{name, version, state, reason}];\n"
            "  POST /v2/repository/models/NAME/unload (refuses its new requests with 503, runs its queued texts,\n"
            "  frees its session) and /load (loads its bundle again; 200 once warm).\n"
            'Truncation: a text longer than the model\'s positions is cut, as `predict` cuts it; "truncate": false\n'
            '  in a v1 body (v2: in the request\'s "parameters") refuses it with 413 naming the text and its tokens.'
        ),
    )
    p.add_argument("--model", type=model_spec, action="append", metavar="[NAME=]BUNDLE",
                   help="a bundle written by `roberta-infer export` (default: the shipped model), served as --name; "
                        "NAME=BUNDLE serves it as NAME; repeat for several models")
    p.add_argument("--model-repository", type=existing("dir"), metavar="DIR",
                   help="serve every bundle in DIR's subfolders, each named after its subfolder (others are skipped "
                        "with a warning; default: none)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="default 8000 (0: any free port)")
    p.add_argument("--grpc-port", type=PORT, metavar="PORT",
                   help="also serve the Open Inference Protocol over gRPC on this port of --host (default: no gRPC; "
                        "0: any free port); messages over --max-body-bytes are refused (RESOURCE_EXHAUSTED)")
    p.add_argument("--max-batch-size", type=BATCH, default=32, metavar="B", help="texts per model call at most (default 32)")
    p.add_argument("--max-batch-tokens", type=positive_int, metavar="N",
                   help="padded tokens per model call at most: rows × the longest row's tokens (default: no bound but "
                        "--max-batch-size); a single text longer than N still runs, alone")
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
    p.add_argument("--name", default="roberta", help="the model's name on the /v2 routes, for the default model or a "
                   "--model without NAME= (default roberta)")
    p.add_argument("--request-timeout-ms", type=ranged(float, 0, 3_600_000, low_open=True), metavar="MS",
                   help="a request's deadline (default: none): texts still queued when it passes are dropped, and the "
                        "request gets 504; a request may ask for a sooner one (v1: \"timeout_ms\" in the body; v2: "
                        "in its \"parameters\")")
    p.add_argument("--api-key", metavar="KEY", help="require `Authorization: Bearer KEY` on every route but the health "
                   "probes (default: $ROBERTA_INFER_API_KEY if set, else no key)")
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, metavar="N",
                   help="request body bytes at most (default 1048576 = 1 MiB); more: 413, not read")
    p.add_argument("--max-connections", type=positive_int, default=1000, metavar="N",
                   help="open connections (or requests in flight) at most (default 1000); beyond, the connection idle "
                        "the longest is closed to make room, and if none is idle uvicorn answers 503")
    p.add_argument("--keep-alive-s", type=ranged(float, 0.1, 3600), default=5.0, metavar="S",
                   help="an idle keep-alive connection, or a new one that sends nothing, is closed after S seconds "
                        "(default 5)")
    p.add_argument("--max-header-bytes", type=positive_int, default=16 * 1024, metavar="N",
                   help="a request head's (request line and headers) bytes at most (default 16384); more: 431 and the "
                        "connection closed")
    p.add_argument("--read-timeout-s", type=ranged(float, 0.1, 3600), default=30.0, metavar="S",
                   help="a request must arrive whole within S seconds of its first byte (default 30), else 408 and the "
                        "connection closed")
    p.add_argument("--otlp-endpoint", metavar="URL",
                   help="export OpenTelemetry traces over OTLP/HTTP to this collector, e.g. http://localhost:4318 "
                        "(/v1/traces is added to a URL without a path; default: no traces exported)")
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU under load)")
    runtime_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    """`serve.serve(...)` with the parsed options: the size and wait limits as its Limits, the API key from
    --api-key or $ROBERTA_INFER_API_KEY, the rest as they are."""
    from ..serve import ConnectionBounds, Limits, serve  # deferred: it imports FastAPI, onnx and ONNX Runtime

    limits = Limits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                    max_texts_per_request=args.max_texts_per_request, max_text_chars=args.max_text_chars,
                    parallel_calls=args.parallel_calls, max_body_bytes=args.max_body_bytes,
                    request_timeout_ms=args.request_timeout_ms, max_batch_tokens=args.max_batch_tokens)
    api_key = args.api_key if args.api_key is not None else os.environ.get("ROBERTA_INFER_API_KEY")
    serve(served_models(args.model or [], args.model_repository, args.name), host=args.host, port=args.port,
          limits=limits, threads=args.threads, provider=args.provider,
          access_log=args.access_log, name=args.name, api_key=api_key, max_connections=args.max_connections,
          keep_alive_s=args.keep_alive_s, bounds=ConnectionBounds(args.max_header_bytes, args.read_timeout_s),
          otlp_endpoint=args.otlp_endpoint, grpc_port=args.grpc_port)


def model_spec(text: str) -> tuple[str | None, Path]:
    """An argparse type: `BUNDLE` (name None: --name's) or `NAME=BUNDLE`; a bundle folder whose own path holds "="
    is taken whole."""
    if "=" not in text or kind_of(Path(text)) == "bundle":
        return None, bundle_dir(text)
    name, path = text.split("=", 1)
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=BUNDLE with a non-empty NAME, or BUNDLE alone")
    return name, bundle_dir(path)


model_spec.role = "bundle"


def served_models(specs: list[tuple[str | None, Path]], repository: Path | None, name: str) -> dict[str, Path | None]:
    """Model name → bundle (None: the shipped default model, when neither --model nor --model-repository is given).

    A --model without NAME= is served as `name`; each bundle subfolder of `repository` as its folder's name, the
    other subfolders named in one warning. Raises RobertaInferError, before any model loads, for a name given
    twice, a name the /v2 routes cannot carry, or a repository without a bundle.
    """
    from ..serve.v2 import check_name  # deferred: the serve package imports FastAPI and ONNX Runtime

    named = [(name if given is None else given, path, "--name" if given is None else "--model") for given, path in specs]
    if repository is not None:
        folders = sorted(p for p in repository.iterdir() if p.is_dir())
        bundles = [p for p in folders if kind_of(p) == "bundle"]
        if not bundles:
            raise RobertaInferError(f"--model-repository {repository}: no bundle in its subfolders (each bundle, "
                                    "written by `roberta-infer export`, in a folder named after its model)")
        if skipped := [p.name for p in folders if p not in bundles]:
            warnings.warn(f"--model-repository {repository}: {len(skipped)} subfolders are not bundles and are not "
                          f"served: {', '.join(skipped)}")
        named += [(p.name, p, "--model-repository") for p in bundles]
    if not named:
        check_name(name)
        return {name: None}
    models: dict[str, Path | None] = {}
    for model_name, path, option in named:
        check_name(model_name, option)
        if model_name in models:
            raise RobertaInferError(f"model name {model_name!r} is given twice ({models[model_name]} and {path}): "
                                    "give each model its own name (NAME=BUNDLE)")
        models[model_name] = path
    return models
