"""The Open Inference Protocol (KServe v2) over gRPC for `serve --grpc-port`: Triton's `inference.GRPCInferenceService`.

The messages are the generated ones tritonclient[grpc] ships (`tritonclient.grpc.service_pb2`, from Triton's
`grpc_service.proto`); the server is grpcio's asyncio server in `serve`'s own event loop, beside uvicorn. Every
ModelInfer goes to the named model's `Service`, as over HTTP (`Service.run`, `Service.infer_texts`): one queue and batcher, the
same limits, deadline, metrics, traces (a span per call, a child of the metadata's `traceparent`) and errors, as gRPC
status codes (`status_code`).

RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig, ModelInfer; the others answer
UNIMPLEMENTED. The tensors are HTTP v2's (`v2`): input `text` BYTES [N] (or [N, 1]) as `contents.bytes_contents` or
as `raw_input_contents` (a serialized BYTES tensor, as tritonclient sends it); outputs `label` BYTES [N], `score`
FP32 [N] and `logits` FP32 [N, C], always as `raw_output_contents` (as Triton answers). A request's deadline is the
sooner of its parameters `timeout_ms` (milliseconds, as over HTTP) and `timeout` (microseconds: what tritonclient's
`infer(timeout=...)` sends), and --request-timeout-ms; a call cancelled or past its gRPC deadline has its queued
texts dropped.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio
from tritonclient.grpc import model_config_pb2 as config_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..errors import RobertaInferError
from ..version import __version__
from . import v2
from .registry import Models
from .requests import ApiError, bearer_matches
from .service import Service
from .tracing import request_span

SERVICE = "/inference.GRPCInferenceService/"
OPEN_METHODS = (SERVICE + "ServerLive", SERVICE + "ServerReady")  # no API key needed, as HTTP's /v2/health/*
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
         401: grpc.StatusCode.UNAUTHENTICATED, 404: grpc.StatusCode.NOT_FOUND, 499: grpc.StatusCode.CANCELLED,
         500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
CONFIG_TYPES = {"BYTES": config_pb2.TYPE_STRING, "FP32": config_pb2.TYPE_FP32}  # model_config.proto's names
UNAUTHENTICATED = "this server needs an API key: send the metadata 'authorization: Bearer KEY'"
GRACE_S = 3600.0  # how long a stopping server waits for its calls in flight (HTTP waits without limit)


def status_code(error: ApiError) -> grpc.StatusCode:
    """The gRPC status for a refusal: INVALID_ARGUMENT for bad input (HTTP's 400, 413 and 422), RESOURCE_EXHAUSTED
    for a full queue, UNAVAILABLE while loading or shutting down, DEADLINE_EXCEEDED, NOT_FOUND, INTERNAL, …"""
    if error.reason == "overloaded":
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return CODES.get(error.status, grpc.StatusCode.UNKNOWN)


def parameter(value: pb.InferParameter) -> object:
    """An InferParameter's value (bool, int, str or float), None when none is set."""
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def parse_infer_request(request: pb.ModelInferRequest) -> v2.InferRequest:
    """A ModelInferRequest → the texts, checked as HTTP v2's (`v2.infer_request`: its ProtocolErrors, same words).

    The input's data is its `raw_input_contents` entry, else its `contents.bytes_contents`; a `timeout` parameter
    (microseconds) that is not a positive number is a ProtocolError.
    """
    inputs, raw = request.inputs, request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise v2.ProtocolError(f"the request has {len(raw)} raw_input_contents for {len(inputs)} inputs")
    tensors, binary = [], b""
    for i, tensor in enumerate(inputs):
        described: dict = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if raw or tensor.contents.bytes_contents:  # as a serialized BYTES tensor, decoded (UTF-8) as HTTP's binary data
            binary = raw[i] if raw else v2.encode_bytes_tensor(list(tensor.contents.bytes_contents))
            described["parameters"] = {"binary_data_size": len(binary)}
        else:
            described["data"] = []
        tensors.append(described)
    parameters = {name: parameter(value) for name, value in request.parameters.items()}
    timeout_ms = parameters.get("timeout_ms")
    if "timeout" in parameters:
        us = parameters["timeout"]
        if type(us) not in (int, float) or not 0 < us < float("inf"):
            raise v2.ProtocolError(f"the request's \"timeout\" parameter is {us!r}: give a positive number of microseconds")
        if timeout_ms is None:
            timeout_ms = us / 1000
        elif type(timeout_ms) in (int, float):  # else a bad timeout_ms, named by `check_timeout_ms`
            timeout_ms = min(timeout_ms, us / 1000)
    document: dict = {"inputs": tensors, "parameters": {"timeout_ms": timeout_ms}}
    if request.outputs:
        document["outputs"] = [{"name": output.name} for output in request.outputs]
    if request.id:
        document["id"] = request.id
    return v2.infer_request(document, binary)


def infer_response(parsed: v2.InferRequest, results: list[dict], name: str) -> pb.ModelInferResponse:
    """The results as a ModelInferResponse: the outputs asked for (all three when none), as raw_output_contents."""
    response = pb.ModelInferResponse(model_name=name, model_version=v2.MODEL_VERSION, id=parsed.id or "")
    tensors = v2.output_tensors(results)
    for output in parsed.outputs:
        datatype, shape, data = tensors[output]
        response.outputs.add(name=output, datatype=datatype, shape=shape)
        response.raw_output_contents.append(v2.raw_tensor(datatype, data))
    return response


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over the served `Models` (each request to the model it names). Refusals abort the call
    with `status_code` and the HTTP routes' message; infer calls are counted in /metrics as HTTP's are (requests by
    the HTTP status their code stands for; one naming no served model, as the first model's)."""

    def __init__(self, models: Models):
        self.models = models

    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.models.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="roberta-infer", version=__version__)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=(await self.known(request, context)).ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: aio.ServicerContext) -> pb.ModelMetadataResponse:
        """HTTP's `v2.model_metadata` (its engine and precision, which the message has no field for, left out)."""
        metadata = await self.metadata(request, context)
        return pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in metadata["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in metadata["outputs"]])

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: aio.ServicerContext) -> pb.ModelConfigResponse:
        """The model's tensors in Triton's model configuration (max_batch_size 0: the batch is the shapes' first
        dimension, batched by `serve` itself)."""
        metadata = await self.metadata(request, context)
        return pb.ModelConfigResponse(config=config_pb2.ModelConfig(
            name=metadata["name"], platform=metadata["platform"], max_batch_size=0,
            input=[config_pb2.ModelInput(name=t["name"], data_type=CONFIG_TYPES[t["datatype"]], dims=t["shape"])
                   for t in metadata["inputs"]],
            output=[config_pb2.ModelOutput(name=t["name"], data_type=CONFIG_TYPES[t["datatype"]], dims=t["shape"])
                    for t in metadata["outputs"]]))

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        """Classify the BYTES input `text` in the named model's queue (`Service.run`, `Service.infer_texts`)."""
        try:
            service = self.models.get(request.model_name, request.model_version or None)
        except ApiError as e:
            self.models.refused(e)
            await context.abort(status_code(e), e.message)

        async def answer() -> pb.ModelInferResponse:
            try:
                parsed = parse_infer_request(request)
            except v2.ProtocolError as e:
                raise ApiError(400, str(e), "bad_request") from None
            return infer_response(parsed, await service.infer_texts(parsed), service.name)

        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        with request_span(service.tracer, SERVICE + "ModelInfer", "", metadata, service.name) as span:
            try:
                response = await service.run(answer)
            except asyncio.CancelledError:  # the client cancelled, or its gRPC deadline passed: its queued texts are dropped
                service.metrics.errors.labels("cancelled").inc()
                raise
            except ApiError as e:
                service.metrics.requests.labels(str(e.status)).inc()
                span.set_attribute("rpc.grpc.status_code", status_code(e).value[0])
                await context.abort(status_code(e), e.message)
        service.metrics.requests.labels("200").inc()
        return response

    async def known(self, request: pb.ModelReadyRequest | pb.ModelMetadataRequest, context: aio.ServicerContext
                    ) -> Service:
        """The served model `request` names (at its version, or none); aborts with NOT_FOUND for another."""
        try:
            return self.models.get(request.name, request.version or None)
        except ApiError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, e.message)

    async def metadata(self, request: pb.ModelMetadataRequest | pb.ModelConfigRequest, context: aio.ServicerContext) -> dict:
        """HTTP's model metadata for the model `request` names: NOT_FOUND for another, UNAVAILABLE until it is ready."""
        service = await self.known(request, context)
        if not service.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, service.unready_error().message)
        model = service.model
        return v2.model_metadata(service.name, v2.MODEL_VERSION, len(model["class_names"]), model["engine"],
                                 model["precision"])


class ApiKey(aio.ServerInterceptor):
    """Every RPC but ServerLive and ServerReady needs the metadata `authorization: Bearer KEY` (`bearer_matches`),
    else UNAUTHENTICATED, counted in /metrics as errors{reason="unauthorized"}, as over HTTP."""

    def __init__(self, api_key: str, models: Models):
        self.bearer, self.models = b"bearer " + api_key.encode("utf-8"), models
        self.refuse = grpc.unary_unary_rpc_method_handler(self.unauthenticated)

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        if details.method in OPEN_METHODS or any(
                key == "authorization" and bearer_matches(value.encode("utf-8") if isinstance(value, str) else value,
                                                          self.bearer)
                for key, value in details.invocation_metadata or ()):
            return await continuation(details)
        self.models.first.metrics.errors.labels("unauthorized").inc()
        return self.refuse

    @staticmethod
    async def unauthenticated(request: bytes, context: aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)


async def start_grpc(models: Models, host: str, port: int, *, api_key: str | None, max_message_bytes: int
                     ) -> tuple[aio.Server, int]:
    """A started gRPC server for the served `models` on `host`:`port` (0: any free port) in the running event loop, and the
    port it listens on. Messages over `max_message_bytes` are refused by grpcio (RESOURCE_EXHAUSTED); with `api_key`,
    `ApiKey` guards it. The port is not shared (SO_REUSEPORT off): a busy one is a RobertaInferError."""
    server = aio.server(interceptors=[ApiKey(api_key, models)] if api_key is not None else [],
                        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(models), server)
    address = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        raise RobertaInferError(f"--grpc-port: cannot listen on {address}") from None
    await server.start()
    return server, bound
