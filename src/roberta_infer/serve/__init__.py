"""`roberta-infer serve`: classify texts over HTTP with one session per model and dynamic batching.

Every request puts its texts on its model's queue; one worker per model turns them into length-sorted model calls (`batcher`), so
results equal `roberta-infer predict`'s. The queue is bounded in texts: beyond --max-queue a request gets 503 with
Retry-After rather than waiting without limit. The same queue serves /v1/classify (`v1`) and the Open Inference
Protocol (KServe v2: `/v2/health/*`, `/v2`, `/v2/models/{name}[/ready|/infer]`, `v2`), so Triton's and KServe's
clients get the same batching, limits and errors. An optional API key guards every route but the health probes;
body and head size, the time to receive a request, open connections, keep-alive and request deadlines are bounded
(`serve --help`). With a gRPC port, the Open Inference Protocol is also served over gRPC (`grpc_v2`), on the same
queue, limits, key and errors.

- `limits`: the Limits (`serve`'s size and wait options); `connections`: HTTP connections within bounds (head size,
  read deadline, idle ones closed to make room);
- `batcher`: the queue and its worker (no HTTP); `call_cost`: a model call's fixed cost, timed at start-up;
- `metrics`: Prometheus metrics and the log; `tracing`: OpenTelemetry spans of requests and model calls;
- `requests`: what both protocols share (ApiError, body size, text checks); `v1` and `v2`: their wire formats;
- `grpc_v2`: the Open Inference Protocol over gRPC (`serve --grpc-port`), on the same service;
- `service`: a model's life (loading → ready → draining; unloaded, loaded again) and each protocol's infer request
  answered; `registry`: several models by name, Triton's model repository extension, /metrics labelled by model;
- `app`: the routes (`create_app`) and the ASGI shim that sends the infer routes past FastAPI;
- `server`: the process (`serve`: socket, uvicorn, signals, gc.freeze).
"""

from .app import create_app
from .call_cost import WARMUP_TEXT, call_cost_tokens
from .connections import ConnectionBounds
from .limits import Limits
from .server import listen, serve

__all__ = ["WARMUP_TEXT", "ConnectionBounds", "Limits", "call_cost_tokens", "create_app", "listen", "serve"]
