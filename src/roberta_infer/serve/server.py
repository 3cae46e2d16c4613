"""The `serve` process: its socket, uvicorn (and gRPC beside it), the stop signals and the model load's place in memory
(gc.freeze)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import itertools
import signal
import socket
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import uvicorn
from grpc import aio
from prometheus_client import Counter

from ..bundle import load_bundle
from ..default import default_bundle
from ..errors import RobertaInferError
from ..runtime import BundleClassifier
from .app import check_api_key, create_app
from .connections import BoundedHttpProtocol, ConnectionBounds
from .grpc_v2 import GRACE_S, start_grpc
from .limits import Limits
from .metrics import log
from .registry import Models
from .tracing import otlp_provider, otlp_traces_url
from .v2 import DEFAULT_NAME, check_name


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0: any free port), not yet listening. Bound here rather than in uvicorn, so
    a busy port is a one-line RobertaInferError instead of uvicorn's exit (also for a port outside 0–65535).

    The socket's protocol must be IPPROTO_TCP (as getaddrinfo gives it): asyncio turns Nagle off only on such
    sockets, and with Nagle on every keep-alive response waits ~40 ms for the client's delayed ACK.
    """
    if not 0 <= port <= 65535:
        raise RobertaInferError(f"--port {port} is not a TCP port: give 0 to 65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise RobertaInferError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def loopback(host: str) -> bool:
    """Whether `host` only reaches this machine: localhost, 127.0.0.0/8 or ::1."""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning `serve` logs when it listens beyond loopback without an API key; None when it need not."""
    if api_key is not None or loopback(host):
        return None
    return (f"listening on {host} without an API key: anyone who reaches this address can use the server "
            "(set ROBERTA_INFER_API_KEY or --api-key)")


def server_config(app, *, max_connections: int | None = None, keep_alive_s: float = 5.0,
                  bounds: ConnectionBounds = ConnectionBounds(), closed: Counter | None = None, access_log: bool = False,
                  log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for `app`: at most `max_connections` open connections or requests in flight (beyond: the
    connection idle the longest is closed to make room, and where none is idle uvicorn answers 503,
    `limit_concurrency`; None: no limit), idle keep-alive connections (and new ones that send nothing) closed after
    `keep_alive_s` seconds, request heads and the time to receive a request within `bounds`; connections closed for
    those reasons are counted in `closed` (`connections.BoundedHttpProtocol`)."""
    return uvicorn.Config(app, lifespan="on", access_log=access_log, log_level=log_level, timeout_graceful_shutdown=None,
                          limit_concurrency=max_connections, timeout_keep_alive=keep_alive_s,
                          http=partial(BoundedHttpProtocol, bounds=bounds, closed=closed, ticks=itertools.count()))


class Server(uvicorn.Server):
    """uvicorn's server and, with `grpc`, the Open Inference Protocol's gRPC server beside it in the same event loop
    (`grpc_v2.start_grpc`'s arguments but the models): listening before the model starts loading, and stopping
    as HTTP does on SIGTERM/SIGINT: new calls refused, calls in flight finished (within `grpc_v2.GRACE_S`)."""

    def __init__(self, config: uvicorn.Config, models: Models, grpc: dict | None = None):
        super().__init__(config)
        self.models, self.grpc = models, grpc
        self.grpc_server: aio.Server | None = None
        self.grpc_port: int | None = None  # the port gRPC listens on, once started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.grpc is not None:
            self.grpc_server, self.grpc_port = await start_grpc(self.models, **self.grpc)
            log.info("gRPC (KServe v2) on %s:%d", bracketed(self.grpc["host"]), self.grpc_port)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = None if self.grpc_server is None else asyncio.ensure_future(self.grpc_server.stop(GRACE_S))
        await super().shutdown(sockets)
        if stopping is not None:
            await stopping


def bracketed(host: str) -> str:
    """`host` as it goes before ":port": an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def serve(model: Path | None | Mapping[str, Path | None] = None, *, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits = Limits(),
          threads: int | None = None, provider: str = "cpu", access_log: bool = False, name: str = DEFAULT_NAME,
          api_key: str | None = None, max_connections: int | None = 1000, keep_alive_s: float = 5.0,
          bounds: ConnectionBounds = ConnectionBounds(), otlp_endpoint: str | None = None, grpc_port: int | None = None) -> None:
    """Serve the bundle `model` over HTTP (and gRPC on `grpc_port`, if given) until SIGINT/SIGTERM, then finish
    in-flight requests and return.

    `model` may also map several models' names to their bundles, each served with its own session and batcher
    (`name` is then unused). Without a bundle (None), the shipped default model is exported to a cached bundle on
    first use. `threads` and `provider` are `load_bundle`'s; `name` is the model's name on the /v2 routes and over
    gRPC; `access_log` logs every HTTP request; `api_key` is required by every route and RPC but the health probes
    (`create_app`, `grpc_v2.ApiKey`); `max_connections`, `keep_alive_s` and `bounds` are `server_config`'s; gRPC messages are
    bounded by `limits.max_body_bytes`. The key is never logged; listening beyond loopback without one logs a
    warning. With `otlp_endpoint` (an OTLP/HTTP collector's URL, `tracing.otlp_traces_url`) the request and model
    call spans are exported there by a tracer provider of the server's own, flushed on exit; without it none is
    made. Raises RobertaInferError for bad limits, name, key, OTLP endpoint or ports (the gRPC port equal to the HTTP
    one), a port that cannot be bound, or a model that cannot load.
    """
    failures: list[BaseException] = []
    models = dict(model) if isinstance(model, Mapping) else {name: model}

    def loader(bundle: Path | None) -> Callable[[], BundleClassifier]:
        def load() -> BundleClassifier:
            classifier = load_bundle(default_bundle(progress=log.info) if bundle is None else bundle, threads=threads,
                                     provider=provider, spin=False)
            # What is alive now (hundreds of thousands of library objects) lives as long as the process: frozen, full
            # collections stop walking it, which otherwise stalls every request in flight ~0.1 s now and then.
            gc.collect()
            gc.freeze()
            return classifier
        return load

    def stop_on_failure(error: BaseException) -> None:
        failures.append(error)
        server.should_exit = True

    for model_name in models:
        check_name(model_name)
    check_api_key(api_key)
    bounds.check()
    traces = None if otlp_endpoint is None else otlp_traces_url(otlp_endpoint)
    if grpc_port is not None and not 0 <= grpc_port <= 65535:
        raise RobertaInferError(f"--grpc-port {grpc_port} is not a TCP port: give 0 to 65535 (0: any free port)")
    if grpc_port is not None and grpc_port == port != 0:
        raise RobertaInferError(f"--grpc-port {grpc_port} is --port's too: give gRPC a port of its own (0: any free port)")
    sock = listen(host, port)
    if grpc_port:  # a busy port is one line now, before uvicorn starts and the model loads (gRPC binds it again later)
        try:
            listen(host, grpc_port).close()
        except RobertaInferError as e:
            raise RobertaInferError(f"--grpc-port: {e}") from None
    tracer_provider = None if otlp_endpoint is None else otlp_provider(otlp_endpoint)
    app = create_app({model_name: loader(bundle) for model_name, bundle in models.items()}, limits,
                     on_load_error=stop_on_failure, api_key=api_key, tracer_provider=tracer_provider)
    grpc = None if grpc_port is None else {"host": host, "port": grpc_port, "api_key": api_key,
                                           "max_message_bytes": limits.max_body_bytes}
    config = server_config(app, max_connections=max_connections, keep_alive_s=keep_alive_s, bounds=bounds,
                           closed=app.models.first.metrics.connections_closed, access_log=access_log)
    server = Server(config, app.models, grpc)
    if (warning := exposure_warning(host, api_key)) is not None:
        log.warning("%s", warning)
    if traces is not None:
        log.info("exporting traces over OTLP/HTTP to %s", traces)
    log.info("serving on http://%s:%d (/readyz answers 200 once the model is warm; SIGTERM or Ctrl+C to stop)",
             bracketed(host), sock.getsockname()[1])
    # uvicorn re-raises the stop signal after its graceful shutdown; a no-op handler makes that a normal return (exit 0).
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tracer_provider is not None:
            tracer_provider.shutdown()  # exports the spans still batched
    if failures:
        error = failures[0]
        raise error if isinstance(error, RobertaInferError) else RobertaInferError(f"cannot load the model: {error}")
