"""Several models in one server: the Services by name, each with its own session, batcher and metrics; Triton's
model repository extension over them (index, load, unload); and /metrics over all of them, labelled by model.

Formats: Triton's `extension_model_repository.md` (POST /v2/repository/index → `[{"name", "version", "state",
"reason"}]`; POST /v2/repository/models/NAME/load and /unload → 200 with an empty body, or an HTTP error with
`{"error": ...}`, typically 400). States are Triton's: READY, LOADING, UNLOADING, UNAVAILABLE (unloaded, failed or
shutting down; `reason` says which).
"""

from __future__ import annotations

import asyncio
from typing import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from starlette.exceptions import HTTPException

from . import v2
from .requests import ApiError, read_body
from .service import Service
from .v1 import model_field, parse_document

STATES = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING"}  # any other status: UNAVAILABLE


class Models:
    """The served models by name, in the order given: one Service each. The first one also counts what belongs to
    no model (unauthorized requests, connections uvicorn refused)."""

    def __init__(self, services: list[Service]):
        self.services = {service.name: service for service in services}
        self.first = services[0]
        self.metrics_registry = self.first.metrics.registry
        if len(services) > 1:
            self.metrics_registry = CollectorRegistry()
            self.metrics_registry.register(PerModel(self))

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services.values())

    def __len__(self) -> int:
        return len(self.services)

    def get(self, name: str, version: str | None = None) -> Service:
        """The model named `name` (at `version`; None: any), else ApiError 404 naming the models served."""
        if (unknown := v2.unknown_model(name, version, list(self.services))) is not None:
            raise ApiError(404, unknown, "unknown_model")
        return self.services[name]

    @property
    def ready(self) -> bool:
        """Every model not unloaded on purpose is ready, and at least one is loaded: an unloaded model is no reason
        to take the server out of a load balancer, a model still loading or failed is."""
        loaded = [service for service in self if service.status not in ("unloading", "unloaded")]
        return bool(loaded) and all(service.ready for service in loaded)

    async def start(self) -> None:
        await asyncio.gather(*(service.start() for service in self))

    async def stop(self) -> None:
        await asyncio.gather(*(service.stop() for service in self))

    async def classify(self, request: Request) -> Response:
        """POST /v1/classify on the model the body's "model" names (needed with several models; 404 for an unknown
        one, naming the models served)."""
        if len(self) == 1:
            return await self.first.classify(request)
        try:
            document = parse_document(await read_body(request, self.first.limits.max_body_bytes))
            name = model_field(document)
            if name is None:
                raise ApiError(400, f'this server serves several models: name one with "model" ({self.names()})',
                               "bad_request")
            service = self.get(name)
        except ApiError as e:
            return self.refused(e)
        return await service.classify(request, document)

    async def infer_v2(self, request: Request, name: str, version: str | None = None) -> Response:
        """POST /v2/models/NAME[/versions/VERSION]/infer on that model; 404 for an unknown one, naming those served."""
        if len(self) == 1:
            return await self.first.infer_v2(request, name, version)
        try:
            service = self.get(name)
        except ApiError as e:
            return self.refused(e)
        return await service.infer_v2(request, name, version)

    def refused(self, error: ApiError) -> Response:
        """A request refused before it reaches a model: answered and counted as the first model's."""
        response = self.first.refusal(error)
        self.first.metrics.requests.labels(str(response.status_code)).inc()
        return response

    def names(self) -> str:
        return ", ".join(map(repr, self.services))

    def index(self, ready_only: bool = False) -> list[dict]:
        """Triton's repository index: `{"name", "version", "state", "reason"}` per model (only the ready ones with
        `ready_only`)."""
        out = []
        for service in self:
            if ready_only and not service.ready:
                continue
            reason = "" if service.status in STATES else service.unready_error().message
            out.append({"name": service.name, "version": v2.MODEL_VERSION,
                        "state": STATES.get(service.status, "UNAVAILABLE"), "reason": reason})
        return out


class PerModel:
    """A Prometheus collector over every model's own registry: each model's samples with a `model` label; the
    process's own metrics (process_*) once."""

    def __init__(self, models: Models):
        self.models = models

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for service in self.models:
            for family in service.metrics.registry.collect():
                if family.name.startswith("process_"):
                    families.setdefault(family.name, family)
                    continue
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                                 family.unit))
                merged.samples.extend(s._replace(labels={"model": service.name, **s.labels}) for s in family.samples)
        yield from families.values()


# Triton's model repository extension.
router = APIRouter(prefix="/v2/repository")


def models_of(request: Request) -> Models:
    return request.app.state.models


def served(request: Request, name: str, version: str | None = None) -> Service:
    """The model `name` (at `version`; None: any), else HTTPException 404 (answered as `{"error": ...}`) naming the
    models and versions served."""
    try:
        return models_of(request).get(name, version)
    except ApiError as e:
        raise HTTPException(e.status, e.message) from None


@router.post("/index")
async def repository_index(request: Request) -> JSONResponse:
    """Every model with its version, state (READY, LOADING, UNLOADING, UNAVAILABLE) and why it is not ready; a body
    `{"ready": true}` lists only the ready ones."""
    body = await request.body()
    try:
        document = parse_document(body) if body.strip() else {}
    except ApiError as e:
        return JSONResponse({"error": e.message}, 400)
    ready = document.get("ready", False)
    if type(ready) is not bool:
        return JSONResponse({"error": '"ready" must be true or false'}, 400)
    return JSONResponse(models_of(request).index(ready))


@router.post("/models/{model_name}/load")
async def repository_load(model_name: str, request: Request) -> Response:
    """Load the model again (from the bundle it was served from; a request body is ignored): 200 once it is warm
    and ready, 400 with `{"error": ...}` if it cannot load."""
    failure = await served(request, model_name).reload()
    if failure is not None:
        return JSONResponse({"error": f"failed to load {model_name!r}: {failure}"}, 400)
    return Response(status_code=200)


@router.post("/models/{model_name}/unload")
async def repository_unload(model_name: str, request: Request) -> Response:
    """Refuse the model's new requests (503), run its queued texts, then free its session: 200 once done."""
    await served(request, model_name).unload()
    return Response(status_code=200)
