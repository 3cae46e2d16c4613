"""The HTTP API: FastAPI's routes over the served models (`registry.Models`, one `Service` each), and the ASGI shim
that sends the two infer routes past FastAPI.

POST /v1/classify and POST /v2/models/{name}/infer reach the models directly (`ClassifyFirst`); FastAPI serves the
rest: health, metadata, metrics, the model repository extension (`registry.router`), the OpenAPI schema (which
documents the infer routes too) and 404/405 errors. Every handler finds the models in `app.state.models` (and the
first one, the only one unless several are served, in `app.state.service`).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Mapping

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ..errors import RobertaInferError
from ..runtime import BundleClassifier
from ..version import __version__
from . import v2
from .limits import Limits
from .metrics import ConnectionRefusals, log
from .registry import Models, served
from .registry import router as repository_router
from .requests import ErrorResponse, bearer_matches
from .service import Service
from .tracing import server_tracer
from .v1 import CLASSIFY_PATH, ClassifyRequest, ClassifyResponse
from .v2 import DEFAULT_NAME, V2_INFER, V2_MODELS

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "body is not UTF-8 or not JSON, a text is empty or only whitespace, or no model named among several"),
    (404, "an unknown model"),
    (413, "too many texts, a text too long (in characters, or in tokens with truncation off), or a body too large"),
    (401, "no or a wrong API key (servers started with --api-key)"), (422, "wrong fields or types, or an empty list"),
    (503, "loading, overloaded or shutting down (see Retry-After)"), (504, "the request's deadline passed"))}
router = APIRouter()


UNAUTHORIZED = b'{"error":"this server needs an API key: send the header \'Authorization: Bearer KEY\'"}'
UNAUTHORIZED_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(UNAUTHORIZED)).encode()),
                        (b"www-authenticate", b"Bearer")]


def open_path(path: str) -> bool:
    """The routes that need no API key: the liveness and readiness probes (/healthz, /v2/health/live|ready)."""
    return path == "/healthz" or path.startswith("/v2/health/")


class ClassifyFirst:
    """The ASGI front door: the API key check, then POST /v1/classify and the v2 infer route straight to the service;
    everything else, their OpenAPI entries included, is FastAPI's (`app`).

    With `api_key`, every HTTP request but the health probes (`open_path`) must carry `Authorization: Bearer KEY`
    (compared in constant time, `hmac.compare_digest`), else 401 with `{"error": ...}`, counted in /metrics as
    errors{reason="unauthorized"}: a header lookup per request, no middleware stack.

    The service reads, limits, parses and answers the request itself, errors included, so the route needs none of
    FastAPI's middleware and routing, which cost 50 to 70 µs of CPU per request here: 30 to 40 % of the serving
    stack's own work with one text per request (the zero-cost-model benchmark, benchmarks/serve/ceiling.py).
    """

    def __init__(self, app: FastAPI, models: Models, api_key: str | None = None):
        self.app, self.models = app, models
        self.bearer = None if api_key is None else b"bearer " + api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.bearer is not None and scope["type"] == "http" and not self.authorized(scope):
            self.models.first.metrics.errors.labels("unauthorized").inc()
            await send({"type": "http.response.start", "status": 401, "headers": UNAUTHORIZED_HEADERS})
            return await send({"type": "http.response.body", "body": UNAUTHORIZED})
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == CLASSIFY_PATH:
                response = await self.models.classify(Request(scope, receive))
                return await response(scope, receive, send)
            if (target := v2.infer_target(path)) is not None:
                response = await self.models.infer_v2(Request(scope, receive), *target)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def authorized(self, scope: Scope) -> bool:
        """A health probe, or a request whose Authorization header is `Bearer KEY` (the scheme in any case)."""
        if open_path(scope["path"]):
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return bearer_matches(value, self.bearer)
        return False


def create_app(load: Callable[[], BundleClassifier] | Mapping[str, Callable[[], BundleClassifier]],
               limits: Limits = Limits(), *, on_load_error: Callable[[BaseException], None] | None = None,
               name: str = DEFAULT_NAME, api_key: str | None = None,
               tracer_provider: TracerProvider | None = None) -> ClassifyFirst:
    """The API; each model's `load` runs in the background after startup (so /healthz answers while a model exports
    or loads), each model with its own session, batcher and metrics, all under the same `limits`.

    `load` is one model's loader, served under `name` on the Open Inference Protocol's /v2 routes, or several models'
    loaders by name (`name` is then unused); `on_load_error` is told if a model fails to load at startup; with
    `api_key`, every route but the health probes needs it (`ClassifyFirst`); the request and model call spans go to
    `tracer_provider` (None: the one the application registered with OpenTelemetry, if any; `tracing.server_tracer`).
    Raises RobertaInferError for `limits` that fail `Limits.check`, a name `v2.check_name` refuses, no model, or an
    empty `api_key`.
    """
    loads = dict(load) if isinstance(load, Mapping) else {name: load}
    limits.check()
    if not loads:
        raise RobertaInferError("no model to serve")
    for model_name in loads:
        v2.check_name(model_name)
    check_api_key(api_key)
    app = FastAPI(title="roberta-infer", summary="RoBERTa sentence classification with dynamic batching",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # their pages load scripts from a CDN
    tracer = server_tracer(tracer_provider)
    app.state.models = Models([Service(model_load, limits, on_load_error, model_name, tracer)
                               for model_name, model_load in loads.items()])
    app.state.service = app.state.models.first
    app.add_exception_handler(HTTPException, http_error)
    app.include_router(router)
    app.include_router(repository_router)
    return ClassifyFirst(app, app.state.models, api_key)


def check_api_key(api_key: str | None) -> None:
    """None (no key) or a key usable in an HTTP header: visible ASCII, no spaces; else RobertaInferError, which
    never repeats the key."""
    if api_key is not None and (not api_key or not all("!" <= c <= "~" for c in api_key)):
        raise RobertaInferError("--api-key / ROBERTA_INFER_API_KEY: give a non-empty key of visible ASCII characters "
                                "without spaces (the key is not shown here)")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The models load in the background from startup; shutdown waits for them, then drains their queues. While the
    app lives, uvicorn's refusals beyond --max-connections are counted in its /metrics (`ConnectionRefusals`)."""
    models: Models = app.state.models
    refusals = ConnectionRefusals(models.first.metrics.connections_refused)
    log.addFilter(refusals)
    loading = asyncio.create_task(models.start())
    try:
        yield
        await loading
        await models.stop()
    finally:
        log.removeFilter(refusals)


async def http_error(_: Request, e: HTTPException) -> JSONResponse:
    """404, 405 and the like: the same `{"error"}` shape as every other refusal."""
    return JSONResponse({"error": str(e.detail)}, e.status_code, headers=e.headers)


@router.post(CLASSIFY_PATH, response_model=ClassifyResponse, responses=ERRORS, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": ClassifyRequest.model_json_schema()}}}})
async def classify_texts(request: Request) -> Response:
    """Classify texts: labels, scores and logits in request order, batched with other requests' texts."""
    return await request.app.state.models.classify(request)  # reached when this FastAPI app is mounted without ClassifyFirst


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up (the model may still be loading)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "loading or shutting down"}})
async def readyz(request: Request) -> JSONResponse:
    """200 once the model is loaded and warmed up, with what it is; 503 before that and while shutting down.

    With several models: `{"status", "models": {name: {"status", "model" or "error"}}}`, 200 when every model not
    unloaded on purpose is ready (`Models.ready`)."""
    models: Models = request.app.state.models
    if len(models) > 1:
        report = {service.name: ({"status": "ready", "model": service.model} if service.ready else
                                 {"status": service.status, "error": service.unready_error().message}) for service in models}
        return JSONResponse({"status": "ready" if models.ready else "not ready", "models": report},
                            200 if models.ready else 503)
    service = models.first
    if service.ready:
        return JSONResponse({"status": "ready", "model": service.model})
    error = service.unready_error()
    return JSONResponse({"status": service.status, "error": error.message}, 503, headers=error.headers)


# The Open Inference Protocol (KServe v2): health, metadata and infer, as Triton's and KServe's clients call them.
@router.get("/v2/health/live")
async def v2_live() -> dict:
    """The server is up."""
    return {"live": True}


@router.get("/v2/health/ready", responses={503: {"description": "loading or shutting down"}})
async def v2_ready(request: Request) -> JSONResponse:
    """The models are loaded and warm (`Models.ready`)."""
    ready = request.app.state.models.ready
    return JSONResponse({"ready": ready}, 200 if ready else 503)


@router.get("/v2")
async def v2_server() -> dict:
    """Server metadata."""
    return {"name": "roberta-infer", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}


VERSIONED = "{model_name}/versions/{model_version}"  # the version is the one `model_metadata` lists: "1"


@router.get(V2_MODELS + "{model_name}")
async def v2_model(model_name: str, request: Request) -> JSONResponse:
    """The model's tensors: `text` BYTES [-1] in; `label` BYTES [-1], `score` FP32 [-1], `logits` FP32 [-1, C] out;
    its engine and precision."""
    service = served(request, model_name)
    if not service.ready:
        error = service.unready_error()
        return JSONResponse({"error": error.message}, 503, headers=error.headers)
    model = service.model
    return JSONResponse(v2.model_metadata(service.name, v2.MODEL_VERSION, len(model["class_names"]), model["engine"],
                                          model["precision"]))


@router.get(V2_MODELS + VERSIONED)
async def v2_model_version(model_name: str, model_version: str, request: Request) -> JSONResponse:
    """The model's metadata at `model_version` (404 for a version it does not have)."""
    served(request, model_name, model_version)
    return await v2_model(model_name, request)


@router.get(V2_MODELS + "{model_name}/ready")
async def v2_model_ready(model_name: str, request: Request) -> JSONResponse:
    """200 once the model is loaded and warm, else 503."""
    service = served(request, model_name)
    return JSONResponse({"name": service.name, "ready": service.ready}, 200 if service.ready else 503)


@router.get(V2_MODELS + VERSIONED + "/ready")
async def v2_model_version_ready(model_name: str, model_version: str, request: Request) -> JSONResponse:
    """200 once the model at `model_version` is loaded and warm, else 503 (404 for a version it does not have)."""
    served(request, model_name, model_version)
    return await v2_model_ready(model_name, request)


@router.post(V2_MODELS + "{model_name}" + V2_INFER, responses=ERRORS)
async def v2_infer(model_name: str, request: Request) -> Response:
    """Classify the BYTES tensor `text` (JSON or binary tensor data), batched with every other request's texts."""
    return await request.app.state.models.infer_v2(request, model_name)  # reached when mounted without ClassifyFirst


@router.post(V2_MODELS + VERSIONED + V2_INFER, responses=ERRORS)
async def v2_infer_version(model_name: str, model_version: str, request: Request) -> Response:
    """Infer with the model at `model_version` (404 for a version it does not have)."""
    return await request.app.state.models.infer_v2(request, model_name, model_version)  # without ClassifyFirst


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format; with several models, each model's samples carry a `model` label."""
    return Response(generate_latest(request.app.state.models.metrics_registry), media_type=CONTENT_TYPE_LATEST)
