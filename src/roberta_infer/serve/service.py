"""A model's life in the app (loading → ready → draining, unloaded and loaded again), and every protocol's infer
requests answered around its batcher (`Service.run`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, TypeVar

from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from starlette.requests import Request

from ..errors import RobertaInferError
from ..predict import classify
from ..runtime import BundleClassifier, engine_and_precision
from . import v2
from .batcher import Batcher, Refused, TooLong
from .call_cost import WARMUP_TEXT, call_cost_tokens
from .limits import Limits
from .metrics import Metrics, log
from .requests import RETRY_AFTER, ApiError, check_texts, check_timeout_ms, check_truncate, read_body, too_long_error
from .tracing import current_request, request_span
from .v1 import CLASSIFY_PATH, parse_request
from .v1 import where as v1_text

T = TypeVar("T")


def v2_text(i: int) -> str:
    """How an Open Inference Protocol request names its i-th text in messages."""
    return f"input element {i}"


class Service:
    """One model's life in the app: loading (in the executor) → warm and ready → draining on shutdown; `unload`
    drains it and lets its session go, `reload` loads it again (the repository extension, `registry`).

    `load` makes the classifier (run in the executor by `start`); `on_load_error`, if given, is told when the first
    load fails; `name` is the model's name on the /v2 routes, in a v1 request's "model" and in metrics and traces;
    `tracer` makes the request and model call spans (`tracing`).
    """

    def __init__(self, load: Callable[[], BundleClassifier], limits: Limits,
                 on_load_error: Callable[[BaseException], None] | None, name: str, tracer: trace.Tracer):
        self.load, self.limits, self.on_load_error, self.name, self.tracer = load, limits, on_load_error, name, tracer
        self.metrics = Metrics(limits.max_batch_size, limits.max_batch_tokens, name)
        self.executor = ThreadPoolExecutor(max_workers=limits.parallel_calls, thread_name_prefix="model")  # on ONE session
        self.batcher: Batcher | None = None
        self.load_failure: str | None = None
        self.unloaded: str | None = None  # "unloading" (draining) or "unloaded"; None while loaded or loading
        self.model: dict = {}
        self.changing = asyncio.Lock()  # one load or unload at a time

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def status(self) -> str:
        """loading → ready → shutting down; unloading → unloaded; or failed (the model did not load, or the
        batching worker stopped)."""
        if self.load_failure is not None or self.batcher is not None and self.batcher.failure is not None:
            return "failed"
        if self.unloaded is not None:
            return self.unloaded
        if self.batcher is None:
            return "loading"
        return "shutting down" if self.batcher.closing else "ready"

    def unready_error(self) -> ApiError:
        """What a request or a readiness probe is told while the service is not ready."""
        if self.status == "failed":
            why = self.load_failure or "its batching worker stopped"
            return ApiError(503, f"the server cannot classify: {why} (see the server log)", "failed")
        if self.unloaded is not None:
            return ApiError(503, f"model {self.name!r} is {self.unloaded}: load it again with POST "
                                 f"/v2/repository/models/{self.name}/load", "not_ready")
        message = "the model is still loading" if self.status == "loading" else "the server is shutting down"
        return ApiError(503, message, "not_ready", RETRY_AFTER)

    async def start(self) -> None:
        """Load and warm the model, then start batching; a failure is recorded (status "failed") and told to
        `on_load_error`."""
        async with self.changing:
            await self._start(report=True)

    async def _start(self, report: bool) -> None:
        try:
            classifier, call_cost = await asyncio.get_running_loop().run_in_executor(self.executor, self._load_and_warm)
        except Exception as e:  # a model that cannot load stops `serve`; an app without that hook reports failed
            self.load_failure = (str(e) if isinstance(e, RobertaInferError) else
                                 f"the model cannot be loaded ({type(e).__name__})")
            # a bad bundle is one line, as everywhere; anything else keeps its traceback for the log
            log.error("the model cannot be loaded: %s", e, exc_info=None if isinstance(e, RobertaInferError) else e)
            if report and self.on_load_error is not None:
                self.on_load_error(e)
            return
        engine, precision = engine_and_precision(classifier.manifest)
        self.model = {"class_names": classifier.class_names, "max_tokens": classifier.max_tokens,
                      "engine": engine, "precision": precision,
                      "source": classifier.manifest.get("source"), "architecture": classifier.manifest.get("architecture"),
                      "threads": classifier.threads, "provider": classifier.provider,
                      "max_batch_size": self.limits.max_batch_size, "max_batch_tokens": self.limits.max_batch_tokens,
                      "max_wait_ms": self.limits.max_wait_ms,
                      "parallel_calls": self.limits.parallel_calls,
                      "call_cost_tokens": None if call_cost is None else round(call_cost, 1)}
        self.batcher = Batcher(classifier, self.limits, self.metrics, self.executor, call_cost, self.tracer)
        log.info("model ready: %s %s, classes %s, %d threads (%s)", engine, precision, classifier.class_names,
                 classifier.threads, classifier.provider)

    def _load_and_warm(self) -> tuple[BundleClassifier, float | None]:
        """The model, warmed up, and its call cost for batch planning (timed after the warm-up call)."""
        classifier = self.load()
        classify(classifier, [WARMUP_TEXT] * self.limits.max_batch_size, batch_size=self.limits.max_batch_size)
        return classifier, call_cost_tokens(classifier, self.limits.max_batch_size)

    async def stop(self) -> None:
        """Run what is queued, then let the executor go."""
        async with self.changing:
            if self.batcher is not None:
                await self.batcher.close()
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def unload(self) -> None:
        """Refuse new requests (503 naming the model), run what is queued, then drop the batcher and with it the
        session. A model that failed is marked unloaded (it then no longer makes the server unready)."""
        async with self.changing:
            if self.batcher is None and self.load_failure is None:
                return  # already unloaded
            self.unloaded, self.load_failure = "unloading", None
            if self.batcher is not None and self.batcher.failure is None:
                await self.batcher.close()
            self.batcher, self.model, self.unloaded = None, {}, "unloaded"
            log.info("model %r unloaded", self.name)

    async def reload(self) -> str | None:
        """Load the model again after `unload` or a failed load (nothing to do when loaded): ready once warm. Returns
        why it failed (the model is then "failed"), or None."""
        async with self.changing:
            if self.batcher is not None and self.batcher.failure is None:
                return None
            self.batcher, self.load_failure, self.unloaded = None, None, None
            await self._start(report=False)
            return self.load_failure

    async def classify(self, request: Request, document: dict | None = None) -> Response:
        """POST /v1/classify: `{"texts": [...]}` or `{"text": ...}` → `{"results": [...]}`; `document`: the body,
        already read and parsed (by `registry.Models`, to find the model it names)."""
        async def answer(body: bytes | dict) -> Response:
            call = parse_request(body, self.limits)
            if call.model is not None and (unknown := v2.unknown_model(call.model, None, self.name)) is not None:
                raise ApiError(404, unknown, "unknown_model")
            return JSONResponse({"results": await self.queue(call.texts, call.timeout_ms, request, call.truncate)})

        return await self.handle(request, answer, CLASSIFY_PATH, document)

    async def infer_v2(self, request: Request, model_name: str, version: str | None = None) -> Response:
        """POST /v2/models/{name}[/versions/{version}]/infer: the Open Inference Protocol's request and response
        around the same queue; 404 for another model or version."""
        async def answer(body: bytes) -> Response:
            if (unknown := v2.unknown_model(model_name, version, self.name)) is not None:
                raise ApiError(404, unknown, "unknown_model")
            try:
                parsed = v2.parse_infer_request(body, request.headers.get(v2.HEADER_LENGTH))
            except v2.ProtocolError as e:
                raise ApiError(400, str(e), "bad_request") from None
            content, headers = v2.infer_response(parsed, await self.infer_texts(parsed, request), model_name=self.name,
                                                 model_version=v2.MODEL_VERSION)
            return Response(content, headers=headers,
                            media_type="application/octet-stream" if headers else "application/json")

        return await self.handle(request, answer, v2.V2_MODELS + "{model_name}" + v2.V2_INFER)

    async def infer_texts(self, parsed: v2.InferRequest, request: Request | None = None) -> list[dict]:
        """An Open Inference Protocol request's texts (input `text`), `timeout_ms` and `truncate`, checked
        (`check_texts`, `check_timeout_ms`, `check_truncate`), → their results (`queue`); over HTTP and gRPC alike."""
        texts = check_texts(parsed.texts, self.limits, f"input {v2.INPUT_NAME!r}", v2_text)
        timeout_ms = check_timeout_ms(parsed.timeout_ms, 'the request\'s "parameters" "timeout_ms"')
        truncate = check_truncate(parsed.truncate, 'the request\'s "parameters" "truncate"')
        return await self.queue(texts, timeout_ms, request, truncate, v2_text)

    async def queue(self, texts: list[str], timeout_ms: float | None, request: Request | None, truncate: bool = True,
                    where: Callable[[int], str] = v1_text) -> list[dict]:
        """The texts' results from the batcher; its refusals as 503s (with Retry-After where a retry may succeed).

        With `truncate` False, a text longer than the model's positions is ApiError 413 naming it (`where(i)`: how
        the request names its i-th text) and its token count, found when the batcher tokenises it.

        The texts still queued are dropped (the batcher skips them, counted in /metrics as
        roberta_infer_texts_dropped_total) when the deadline (the sooner of `timeout_ms` and --request-timeout-ms)
        passes first: ApiError 504; when the HTTP `request`'s client disconnects first: ApiError 499 (nginx's
        "client closed request", which no client sees); or when this coroutine is cancelled (a gRPC call cancelled
        or past its own deadline; `request` None).
        """
        try:
            results = self.batcher.submit(texts, current_request(), truncate)
        except Refused as e:
            raise ApiError(503, str(e), e.reason, RETRY_AFTER if e.retry else None) from None
        deadlines = [ms for ms in (timeout_ms, self.limits.request_timeout_ms) if ms is not None]
        gone = asyncio.ensure_future(disconnected(request) if request is not None else asyncio.Event().wait())
        try:
            await asyncio.wait((results, gone), timeout=min(deadlines) / 1000 if deadlines else None,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            drop(results)
            raise
        finally:
            gone.cancel()
        if results.done():
            try:
                return list(results.result())
            except TooLong as e:
                raise too_long_error(e.index, e.tokens, e.limit, where) from None
        drop(results)
        if gone.done() and not gone.cancelled():
            raise ApiError(499, "the client disconnected before its texts were classified", "disconnected")
        raise ApiError(504, f"the request's deadline ({min(deadlines):g} ms) passed before its texts were classified",
                       "deadline")

    async def handle(self, request: Request, answer: Callable[[bytes | dict], Any], route: str,
                     body: dict | None = None) -> Response:
        """One HTTP request of either protocol to `route` (its path template), run by `run` in a span of its own (a
        child of the caller's when it sends `traceparent`, `tracing.request_span`): refusals become
        `{"error": ...}` with their status; every outcome is counted, and set on the span (5xx: an error). `answer`
        gets `body` when given (a body already read and parsed), else the body read here."""
        async def read_and_answer() -> Response:
            return await answer(body if body is not None else await read_body(request, self.limits.max_body_bytes))

        with request_span(self.tracer, route, request.method, request.headers, self.name) as span:
            try:
                response = await self.run(read_and_answer)
            except ApiError as e:
                response = JSONResponse({"error": e.message}, e.status, headers=e.headers)
            self.metrics.requests.labels(str(response.status_code)).inc()
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
        return response

    async def run(self, answer: Callable[[], Awaitable[T]]) -> T:
        """One infer request of any protocol (HTTP v1 and v2, gRPC), counted in flight while `answer` runs: refused
        with the ApiError `unready_error` unless the model is ready; an ApiError is counted by its reason and raised;
        any other failure (a failed model call, logged where it failed) becomes ApiError 500 "internal"."""
        self.metrics.in_flight.inc()
        try:
            if not self.ready:
                raise self.unready_error()
            return await answer()
        except ApiError as e:
            self.metrics.errors.labels(e.reason).inc()
            raise
        except Exception:  # this request fails, the server carries on
            self.metrics.errors.labels("internal").inc()
            raise ApiError(500, "internal error: the model call failed (see the server log)", "internal") from None
        finally:
            self.metrics.in_flight.dec()

    def refusal(self, error: ApiError) -> JSONResponse:
        """`{"error": ...}` with the error's status and headers, counted by its reason (a request refused before it
        reaches `run`, `registry.Models`)."""
        self.metrics.errors.labels(error.reason).inc()
        return JSONResponse({"error": error.message}, error.status, headers=error.headers)


def drop(results: asyncio.Future) -> None:
    """Cancel the future `Batcher.submit` gave (the batcher then skips its texts still queued). The asyncio.gather
    behind it then ends with a CancelledError that nobody awaits: retrieved here, else asyncio logs it
    ("_GatheringFuture exception was never retrieved") when the future is collected."""
    results.cancel()
    results.add_done_callback(lambda future: future.cancelled() or future.exception())


async def disconnected(request: Request) -> None:
    """Returns once the client has disconnected (ASGI `http.disconnect`); call it after the body has been read."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
