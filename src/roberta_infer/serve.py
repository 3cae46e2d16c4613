"""`roberta-infer serve`: classify texts over HTTP with one session of the bundle's engine and dynamic batching.

Every request puts its texts on one queue. A single worker runs them as soon as the model is idle; while a call
runs, it waits until --max-batch-size texts are queued, or at most --max-wait-ms after the oldest arrived, so a
lone request is never held back for company that cannot come. It takes up to LOOKAHEAD batches' worth, tokenises
them together, sorts them by length in tokens and cuts them where padding would cost more than another call
(`predict.planned_batches`, with the call's fixed cost timed at start-up) into model calls of at most
--max-batch-size texts, --parallel-calls at a time on the one session, each in a thread (so the event loop keeps
serving). Tokenising, padding and truncation are `predict`'s own functions, so results equal `roberta-infer
predict`. The session's idle threads sleep rather than spin, leaving the CPU to the event loop between calls.
Each text's result goes back to its request through a future. The queue is bounded in texts: beyond --max-queue
a request gets 503 with Retry-After rather than waiting without limit. The same queue serves the Open Inference
Protocol (KServe v2: `/v2/health/*`, `/v2`, `/v2/models/{name}[/ready|/infer]`, its wire format in
`inference_protocol`), so Triton's and KServe's clients get the same batching, limits and errors. The two infer
routes reach the service directly (`ClassifyFirst`); FastAPI serves the rest: health, metadata, metrics, the OpenAPI
schema and 404/405 errors.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from . import inference_protocol as v2
from . import __version__
from .errors import RobertaInferError, check_positive
from .predict import batch_logits, classify, encode, labelled, length_batches, planned_batches
from .runtime import BundleClassifier

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one: our lines share its format and level
CLASSIFY_PATH = "/v1/classify"
V2_MODELS, V2_INFER = "/v2/models/", "/infer"
DEFAULT_NAME = "roberta"  # the model's name on the /v2 routes (`serve --name`)
MODEL_VERSION = "1"
RETRY_AFTER = {"Retry-After": "1"}
WARMUP_TEXT = "a warm-up sentence , long enough to touch every kernel the real requests will use ."
# A full queue is taken up to this many batches at a time, tokenised together and split into batches of similar
# length in tokens: padding each to its own longest text wastes far less work than arrival order would.
LOOKAHEAD = 8
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Limits:
    """How large a batch, request, text and queue may get, and how long a batch may wait to fill."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_texts_per_request: int = 256
    max_text_chars: int = 10_000
    max_queue: int = 2048
    # Model calls in flight on the one session (and executor threads). 2 lets one thread tokenise the next window, or
    # pad and hand back results (Python), while another call keeps ONNX Runtime's threads busy: 10–15 % more texts/s
    # for the small default model, but −15 % for roberta-base, whose calls already keep every core busy.
    parallel_calls: int = 1

    def check(self) -> None:
        check_positive({f"--{name.replace('_', '-')}": getattr(self, name)
                        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_queue", "parallel_calls")})
        if self.max_wait_ms < 0:
            raise RobertaInferError(f"--max-wait-ms must be ≥ 0, got {self.max_wait_ms}")
        if self.max_queue < self.max_texts_per_request:
            raise RobertaInferError(f"--max-queue ({self.max_queue}) must be at least --max-texts-per-request "
                                    f"({self.max_texts_per_request}), or a full request could never be queued")

    @property
    def max_body_bytes(self) -> int:
        """A size every valid request fits in (JSON may spend 12 bytes on one character); larger bodies are not read."""
        return self.max_texts_per_request * (12 * self.max_text_chars + 8) + 1024


class Metrics:
    """Prometheus metrics in a registry of the app's own, so several apps in one process do not collide."""

    def __init__(self, max_batch_size: int):
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc., for loadtest's memory figures
        sizes = sorted({2**i for i in range(max_batch_size.bit_length()) if 2**i < max_batch_size} | {max_batch_size})
        self.requests = Counter("roberta_infer_requests", "classify requests answered, by HTTP status", ["status"], registry=r)
        self.errors = Counter("roberta_infer_errors", "classify requests refused or failed, by reason", ["reason"], registry=r)
        self.texts = Counter("roberta_infer_texts", "texts classified", registry=r)
        self.batch_size = Histogram("roberta_infer_batch_size", "texts per model call", buckets=sizes, registry=r)
        self.queue_seconds = Histogram("roberta_infer_queue_seconds", "time a text waited for its model call",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("roberta_infer_inference_seconds", "time of one model call (pad + run)",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.queued = Gauge("roberta_infer_queued_texts", "texts waiting for a model call", registry=r)
        self.in_flight = Gauge("roberta_infer_requests_in_flight", "classify requests being handled", registry=r)


class ApiError(Exception):
    """A refused request: its HTTP status, the message for `{"error": ...}`, and the reason counted in /metrics."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers


@dataclass
class _Item:
    text: str
    future: asyncio.Future
    enqueued: float


class Batcher:
    """One queue of texts from all requests, one worker turning them into model calls of up to max_batch_size."""

    def __init__(self, classifier: BundleClassifier, limits: Limits, metrics: Metrics, executor: ThreadPoolExecutor,
                 call_cost: float | None):
        self.classifier, self.limits, self.metrics, self.executor = classifier, limits, metrics, executor
        self.call_cost = call_cost  # a model call's fixed cost in padded tokens, or None: see `call_cost_tokens`
        self.pending: deque[_Item] = deque()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.slots = asyncio.Semaphore(limits.parallel_calls)
        self.running: set[asyncio.Task] = set()
        self.failure: BaseException | None = None  # why the worker stopped, if it did not stop by `close`
        self.worker = asyncio.create_task(self._work())
        self.worker.add_done_callback(self._worker_stopped)

    def _worker_stopped(self, worker: asyncio.Task) -> None:
        """A worker that died of a bug fails the queued texts and makes the server unready (/readyz says why)."""
        if worker.cancelled() or worker.exception() is None:
            return
        self.failure = worker.exception()
        log.error("the batching worker stopped", exc_info=self.failure)
        self._fail(list(self.pending), self.failure)
        self.pending.clear()

    async def classify(self, texts: list[str]) -> list[dict]:
        """Queue the texts (all or none) and wait for their results, in order."""
        if self.closing:
            raise ApiError(503, "the server is shutting down", "shutting_down", RETRY_AFTER)
        if self.failure is not None:
            raise ApiError(503, "the server cannot classify: its batching worker stopped (see the server log)", "failed")
        if len(self.pending) + len(texts) > self.limits.max_queue:
            raise ApiError(503, f"overloaded: {len(self.pending)} texts are waiting and the queue holds "
                                f"{self.limits.max_queue}; retry later", "overloaded", RETRY_AFTER)
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(text, loop.create_future(), now) for text in texts]
        self.pending.extend(items)
        self.metrics.queued.set(len(self.pending))
        self.wakeup.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        """Refuse new texts, run the queued ones, stop the worker."""
        self.closing = True
        self.wakeup.set()
        await self.worker
        await asyncio.gather(*self.running)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        wait, size = self.limits.max_wait_ms / 1000, self.limits.max_batch_size
        while True:
            while not self.pending:
                if self.closing:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
            # Texts queue up while every call slot is busy: closing a batch that cannot start would only shrink it.
            await self.slots.acquire()
            # With a slot free, a batch waits for company only while another call keeps the model busy, and at most
            # max-wait after its oldest text: an idle model runs what is queued at once.
            deadline = self.pending[0].enqueued + wait
            while len(self.pending) < size and self.running and not self.closing and deadline > loop.time():
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            window = [self.pending.popleft() for _ in range(min(len(self.pending), size * LOOKAHEAD))]
            self.metrics.queued.set(len(self.pending))
            window = [item for item in window if not item.future.done()]  # done: its request was cancelled
            rows: list[list[int]] = []
            batches: list[np.ndarray] = []
            try:
                if window:
                    rows, batches = await loop.run_in_executor(self.executor, self._plan, [item.text for item in window])
            except Exception as e:
                self._fail(window, e)
            if not batches:
                self.slots.release()
            for n, batch in enumerate(batches):
                if n:  # the first holds the slot taken above
                    await self.slots.acquire()
                call = asyncio.create_task(self._run([window[i] for i in batch], [rows[i] for i in batch]))
                self.running.add(call)
                call.add_done_callback(self._finished)

    def _plan(self, texts: list[str]) -> tuple[list[list[int]], list[np.ndarray]]:
        """Tokenise a whole window at once (32 texts at a time, between model calls, cost about twice as much per
        text), then cut it into the batches that cost the model least."""
        rows, size = encode(self.classifier, texts), self.limits.max_batch_size
        lengths = [len(row) for row in rows]
        if self.call_cost is None:  # a static-shape bundle: each call costs one full fixed-shape batch
            return rows, length_batches(lengths, size)
        return rows, planned_batches(lengths, size, self.call_cost)

    def _finished(self, call: asyncio.Task) -> None:
        self.running.discard(call)
        self.slots.release()
        self.wakeup.set()  # the model may now be idle: queued texts need not wait longer

    @staticmethod
    def _fail(items: list[_Item], error: Exception) -> None:
        """A failed tokenisation or model call fails its own texts only; the worker carries on."""
        log.error("classifying %d texts failed", len(items), exc_info=error)
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)

    async def _run(self, batch: list[_Item], rows: list[list[int]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for item in batch:
            self.metrics.queue_seconds.observe(started - item.enqueued)
        self.metrics.batch_size.observe(len(batch))
        try:
            results = await loop.run_in_executor(self.executor, self._infer, rows)
        except Exception as e:
            self._fail(batch, e)
            return
        self.metrics.inference_seconds.observe(loop.time() - started)
        self.metrics.texts.inc(len(batch))
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)

    def _infer(self, rows: list[list[int]]) -> list[dict]:
        """One model call (in the executor thread), padded and cut as `predict` does, so results equal its."""
        return labelled(batch_logits(self.classifier, rows), self.classifier.class_names)


def call_cost_tokens(classifier: BundleClassifier, batch_size: int, repeats: int = 10,
                     budget_s: float = 1.0) -> float | None:
    """A model call's fixed cost in padded tokens' worth: what splitting a batch must save in padding to pay off.

    Fitted as cost = fixed + per-token × tokens to the fastest calls on one warm-up row and on `batch_size` of them
    (`repeats` each, fewer, but at least 2, where that would take over `budget_s`): the fastest, as a server starting
    up shares the CPU with whatever starts beside it. Where no per-token cost shows (one row per batch, or timing
    noise), splitting never pays. None for a static-shape bundle: every call is padded to its fixed shape anyway.
    """
    if classifier.static_batch is not None or classifier.static_seq is not None:
        return None
    row = encode(classifier, [WARMUP_TEXT])
    tokens = len(row[0])

    def fastest(rows: int) -> float:
        times: list[float] = []
        while len(times) < repeats and (len(times) < 2 or sum(times) < budget_s):
            began = time.perf_counter()
            batch_logits(classifier, row * rows)
            times.append(time.perf_counter() - began)
        return min(times)

    one = fastest(1)
    per_token = (fastest(batch_size) - one) / ((batch_size - 1) * tokens) if batch_size > 1 else 0.0
    if per_token <= 0:
        return float(batch_size * tokens)
    return max(0.0, one / per_token - tokens)


# ---------------------------------------------------------------- request parsing


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused unread (413) once it is larger than any valid request could be."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {declared} bytes; the limit is {limit}", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the {limit}-byte limit", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """`{"texts": [...]}` or `{"text": "..."}` → the texts, or an ApiError saying exactly what is wrong."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not UTF-8: byte {e.start} ({e.reason})", "bad_request") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", "bad_request") from None
    except RecursionError:
        raise ApiError(400, "the request body is not valid JSON: nested too deeply", "bad_request") from None
    usage = 'send {"texts": ["...", ...]} or {"text": "..."}'
    if not isinstance(document, dict):
        raise ApiError(422, f"the body is {json_type(document)}, not an object: {usage}", "bad_request")
    unknown = sorted(set(document) - {"texts", "text"})
    if unknown:
        raise ApiError(422, f"unknown field {', '.join(map(json.dumps, unknown))}: {usage}", "bad_request")
    if len(document) != 1:
        raise ApiError(422, f"{'both' if document else 'neither'} \"texts\" {'and' if document else 'nor'} \"text\": {usage}",
                       "bad_request")
    if "text" in document:
        return check_texts([document["text"]], limits, '"text"', lambda i: '"text"')
    if not isinstance(document["texts"], list):
        raise ApiError(422, f'"texts" is {json_type(document["texts"])}, not an array of strings', "bad_request")
    return check_texts(document["texts"], limits, '"texts"', lambda i: f'"texts"[{i}]')


def check_texts(texts: list, limits: Limits, what: str, where: Callable[[int], str]) -> list[str]:
    """The texts of a request, or an ApiError: none, too many, not strings, too long, or not valid Unicode.

    `what` names the list and `where(i)` its i-th element in the messages, in the request's own terms.
    """
    if not texts:
        raise ApiError(422, f"{what} is empty: send at least one text", "bad_request")
    if len(texts) > limits.max_texts_per_request:
        raise ApiError(413, f"{what} has {len(texts)} texts; the limit is {limits.max_texts_per_request} per request",
                       "too_large")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(422, f"{where(i)} is {json_type(text)}, not a string", "bad_request")
        if len(text) > limits.max_text_chars:
            raise ApiError(413, f"{where(i)} has {len(text)} characters; the limit is {limits.max_text_chars}", "too_large")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{where(i)} is not valid Unicode (an unpaired surrogate escape)", "bad_request") from None
    return texts


# ---------------------------------------------------------------- the app


# These models document the API in /openapi.json; the handler parses bodies itself to word its own errors.
class ClassifyRequest(BaseModel):
    """Send either `texts` or `text`, not both."""

    texts: list[str] | None = Field(None, description="texts to classify, in order (at most --max-texts-per-request)")
    text: str | None = Field(None, description="one text; the response still holds a list of one result")


class Result(BaseModel):
    label: str = Field(description="the class with the highest logit")
    score: float = Field(description="softmax probability of that class")
    logits: list[float]


class ClassifyResponse(BaseModel):
    results: list[Result] = Field(description="one per text, in request order")


class ErrorResponse(BaseModel):
    error: str


class Service:
    """The model's life in the app: loading (in the executor) → warm and ready → draining on shutdown."""

    def __init__(self, load: Callable[[], BundleClassifier], limits: Limits,
                 on_load_error: Callable[[BaseException], None] | None, name: str):
        self.load, self.limits, self.on_load_error, self.name = load, limits, on_load_error, name
        self.metrics = Metrics(limits.max_batch_size)
        self.executor = ThreadPoolExecutor(max_workers=limits.parallel_calls, thread_name_prefix="model")  # on ONE session
        self.batcher: Batcher | None = None
        self.load_failure: str | None = None
        self.model: dict = {}

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def status(self) -> str:
        """loading → ready → shutting down; or failed (the model did not load, or the batching worker stopped)."""
        if self.load_failure is not None or self.batcher is not None and self.batcher.failure is not None:
            return "failed"
        if self.batcher is None:
            return "loading"
        return "shutting down" if self.batcher.closing else "ready"

    def unready_error(self) -> ApiError:
        """What a request or a readiness probe is told while the service is not ready."""
        if self.status == "failed":
            why = self.load_failure or "its batching worker stopped"
            return ApiError(503, f"the server cannot classify: {why} (see the server log)", "failed")
        message = "the model is still loading" if self.status == "loading" else "the server is shutting down"
        return ApiError(503, message, "not_ready", RETRY_AFTER)

    async def start(self) -> None:
        try:
            classifier, call_cost = await asyncio.get_running_loop().run_in_executor(self.executor, self._load_and_warm)
        except Exception as e:  # a model that cannot load stops `serve`; an app without that hook reports failed
            self.load_failure = (str(e) if isinstance(e, RobertaInferError) else
                                 f"the model cannot be loaded ({type(e).__name__})")
            log.error("the model cannot be loaded", exc_info=e)
            if self.on_load_error is not None:
                self.on_load_error(e)
            return
        self.model = {"class_names": classifier.class_names, "max_tokens": classifier.max_tokens,
                      "source": classifier.manifest.get("source"), "architecture": classifier.manifest.get("architecture"),
                      "threads": classifier.threads, "provider": classifier.provider,
                      "max_batch_size": self.limits.max_batch_size, "max_wait_ms": self.limits.max_wait_ms,
                      "parallel_calls": self.limits.parallel_calls, "call_cost_tokens": None if call_cost is None else round(call_cost, 1)}
        self.batcher = Batcher(classifier, self.limits, self.metrics, self.executor, call_cost)
        log.info("model ready: classes %s, %d threads (%s)", classifier.class_names, classifier.threads, classifier.provider)

    def _load_and_warm(self) -> tuple[BundleClassifier, float | None]:
        """The model, warmed up, and its call cost for batch planning (timed after the warm-up call)."""
        classifier = self.load()
        classify(classifier, [WARMUP_TEXT] * self.limits.max_batch_size, batch_size=self.limits.max_batch_size)
        return classifier, call_cost_tokens(classifier, self.limits.max_batch_size)

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def classify(self, request: Request) -> Response:
        """POST /v1/classify: `{"texts": [...]}` or `{"text": ...}` → `{"results": [...]}`."""
        async def answer(body: bytes) -> Response:
            return JSONResponse({"results": await self.batcher.classify(parse_texts(body, self.limits))})

        return await self.handle(request, answer)

    async def infer_v2(self, request: Request, model_name: str) -> Response:
        """POST /v2/models/{name}/infer: the Open Inference Protocol's request and response around the same queue."""
        async def answer(body: bytes) -> Response:
            if model_name != self.name:
                raise ApiError(404, f"unknown model {model_name!r}: this server serves {self.name!r}", "unknown_model")
            try:
                parsed = v2.parse_infer_request(body, request.headers.get(v2.HEADER_LENGTH))
            except v2.ProtocolError as e:
                raise ApiError(400, str(e), "bad_request") from None
            texts = check_texts(parsed.texts, self.limits, f"input {v2.INPUT_NAME!r}", lambda i: f"input element {i}")
            content, headers = v2.infer_response(parsed, await self.batcher.classify(texts), model_name=self.name,
                                                 model_version=MODEL_VERSION)
            return Response(content, headers=headers,
                            media_type="application/octet-stream" if headers else "application/json")

        return await self.handle(request, answer)

    async def handle(self, request: Request, answer: Callable[[bytes], Any]) -> Response:
        """One request of either protocol: refusals become `{"error": ...}` with their status; every outcome is counted."""
        self.metrics.in_flight.inc()
        try:
            if not self.ready:
                raise self.unready_error()
            response = await answer(await read_body(request, self.limits.max_body_bytes))
        except ApiError as e:
            self.metrics.errors.labels(e.reason).inc()
            response = JSONResponse({"error": e.message}, e.status, headers=e.headers)
        except Exception:  # a failed model call (logged where it failed): this request fails, the server carries on
            self.metrics.errors.labels("internal").inc()
            response = JSONResponse({"error": "internal error: the model call failed (see the server log)"}, 500)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response


class ClassifyFirst:
    """POST /v1/classify and the v2 infer route go straight to the service; everything else, their OpenAPI entries
    included, is FastAPI's.

    The service reads, limits, parses and answers the request itself, errors included, so the route needs none of
    FastAPI's middleware and routing, which cost 50 to 70 µs of CPU per request here: 30 to 40 % of the serving
    stack's own work with one text per request (the zero-cost-model benchmark, benchmarks/serve/ceiling.py).
    """

    def __init__(self, app: FastAPI, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == CLASSIFY_PATH:
                response = await self.service.classify(Request(scope, receive))
                return await response(scope, receive, send)
            if path.startswith(V2_MODELS) and path.endswith(V2_INFER) and "/" not in path[len(V2_MODELS):-len(V2_INFER)]:
                response = await self.service.infer_v2(Request(scope, receive), path[len(V2_MODELS):-len(V2_INFER)])
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(load: Callable[[], BundleClassifier], limits: Limits = Limits(), *,
               on_load_error: Callable[[BaseException], None] | None = None, name: str = DEFAULT_NAME) -> ClassifyFirst:
    """The API; `load` runs in the background after startup (so /healthz answers while a model exports or loads).

    The model is served under `name` on the Open Inference Protocol's /v2 routes.
    """
    limits.check()
    check_name(name)
    service = Service(load, limits, on_load_error, name)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loading = asyncio.create_task(service.start())
        yield
        await loading
        await service.stop()

    app = FastAPI(title="roberta-infer", summary="RoBERTa sentence classification with dynamic batching",
                  lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:  # 404, 405: the same {"error"} shape
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=e.headers)

    errors = {status: {"model": ErrorResponse, "description": text} for status, text in (
        (400, "body is not UTF-8 or not JSON"), (413, "too many texts, a text too long, or a body too large"),
        (422, "wrong fields or types, or an empty list"), (503, "loading, overloaded or shutting down (see Retry-After)"))}

    @app.post(CLASSIFY_PATH, response_model=ClassifyResponse, responses=errors, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": ClassifyRequest.model_json_schema()}}}})
    async def classify_texts(request: Request) -> Response:
        """Classify texts: labels, scores and logits in request order, batched with other requests' texts."""
        return await service.classify(request)  # reached when this FastAPI app is mounted without ClassifyFirst

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is up (the model may still be loading)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "loading or shutting down"}})
    async def readyz() -> JSONResponse:
        """200 once the model is loaded and warmed up, with what it is; 503 before that and while shutting down."""
        if service.ready:
            return JSONResponse({"status": "ready", "model": service.model})
        error = service.unready_error()
        return JSONResponse({"status": service.status, "error": error.message}, 503, headers=error.headers)

    # The Open Inference Protocol (KServe v2): health, metadata and infer, as Triton's and KServe's clients call them.
    @app.get("/v2/health/live")
    async def v2_live() -> dict:
        """The server is up."""
        return {"live": True}

    @app.get("/v2/health/ready", responses={503: {"description": "loading or shutting down"}})
    async def v2_ready() -> JSONResponse:
        """The model is loaded and warm."""
        return JSONResponse({"ready": service.ready}, 200 if service.ready else 503)

    @app.get("/v2")
    async def v2_server() -> dict:
        """Server metadata."""
        return {"name": "roberta-infer", "version": __version__, "extensions": ["binary_tensor_data"]}

    def served(model_name: str) -> None:
        if model_name != service.name:
            raise HTTPException(404, f"unknown model {model_name!r}: this server serves {service.name!r}")

    @app.get(V2_MODELS + "{model_name}")
    async def v2_model(model_name: str) -> JSONResponse:
        """The model's tensors: `text` BYTES [-1] in; `label` BYTES [-1], `score` FP32 [-1], `logits` FP32 [-1, C] out."""
        served(model_name)
        if not service.ready:
            error = service.unready_error()
            return JSONResponse({"error": error.message}, 503, headers=error.headers)
        return JSONResponse(v2.model_metadata(service.name, MODEL_VERSION, len(service.model["class_names"])))

    @app.get(V2_MODELS + "{model_name}/ready")
    async def v2_model_ready(model_name: str) -> JSONResponse:
        """200 once the model is loaded and warm, else 503."""
        served(model_name)
        return JSONResponse({"name": service.name, "ready": service.ready}, 200 if service.ready else 503)

    @app.post(V2_MODELS + "{model_name}" + V2_INFER, responses=errors)
    async def v2_infer(model_name: str, request: Request) -> Response:
        """Classify the BYTES tensor `text` (JSON or binary tensor data), batched with every other request's texts."""
        return await service.infer_v2(request, model_name)  # reached when mounted without ClassifyFirst

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return ClassifyFirst(app, service)


def check_name(name: str) -> None:
    """A model name usable as one path segment of the /v2 routes."""
    if not name or any(c in name for c in "/?#% ") or not name.isprintable():
        raise RobertaInferError(f"--name {name!r}: give a non-empty name without '/', '?', '#', '%' or spaces")


def listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, so a busy port is a one-line error instead of uvicorn's exit.

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


def serve(model: Path | None = None, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          threads: int | None = None, provider: str = "cpu", access_log: bool = False, name: str = DEFAULT_NAME) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and return; a model that cannot load is an error.

    Without `model`, the shipped default model is exported to a cached bundle on first use.
    """
    from .bundle import load_bundle
    from .default import default_bundle

    failures: list[BaseException] = []

    def load() -> BundleClassifier:
        bundle = default_bundle(progress=log.info) if model is None else model
        classifier = load_bundle(bundle, threads=threads, provider=provider, spin=False)
        # What is alive now (hundreds of thousands of library objects) lives as long as the process: frozen, full
        # collections stop walking it, which otherwise stalls every request in flight ~0.1 s now and then.
        gc.collect()
        gc.freeze()
        return classifier

    def stop_on_failure(error: BaseException) -> None:
        failures.append(error)
        server.should_exit = True

    check_name(name)
    sock = listen(host, port)
    app = create_app(load, limits, on_load_error=stop_on_failure, name=name)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", access_log=access_log,
                                           log_level="info", timeout_graceful_shutdown=None))
    bound = sock.getsockname()[1]
    log.info("serving on http://%s:%d (/readyz answers 200 once the model is warm; SIGTERM or Ctrl+C to stop)",
             f"[{host}]" if ":" in host else host, bound)
    # uvicorn re-raises the stop signal after its graceful shutdown; a no-op handler makes that a normal return (exit 0).
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        error = failures[0]
        raise error if isinstance(error, RobertaInferError) else RobertaInferError(f"cannot load the model: {error}")
