"""The Open Inference Protocol (KServe v2, what Triton and KServe clients speak) for `serve`, over HTTP/REST.

Only the wire format lives here: the routes' paths and the model's name, a v2 infer request → the texts to
classify, and their results → a v2 infer response. The texts then go through `serve`'s one queue and batcher, with
/v1/classify's limits and errors.

The model takes one input, `text` (BYTES, shape [N], or [N, 1] as Triton's clients often send), and gives three
outputs: `label` (BYTES [N], the class name), `score` (FP32 [N], its softmax probability) and `logits` (FP32
[N, C]). Tensors travel as JSON or, with Triton's binary tensor data extension (tritonclient's default), as raw
bytes after a JSON header whose length the `Inference-Header-Content-Length` header gives.

Formats: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ (REST: health, metadata,
infer) and Triton's `binary_data.md` (BYTES elements are a little-endian uint32 length, then the bytes; FP32 is
little-endian float32, row-major).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import RobertaInferError

V2_MODELS, V2_INFER = "/v2/models/", "/infer"  # POST V2_MODELS + name [+ "/versions/" + version] + V2_INFER
DEFAULT_NAME = "roberta"  # the model's name on the /v2 routes (`serve --name`)
MODEL_VERSION = "1"
HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "text"
OUTPUT_NAMES = ("label", "score", "logits")


class ProtocolError(Exception):
    """A request the protocol cannot accept: HTTP 400 with `{"error": message}`, as KServe answers."""


@dataclass(frozen=True)
class InferRequest:
    """A parsed v2 infer request: the texts, the request id, and which outputs to send and how."""

    texts: list
    id: str | None
    outputs: dict[str, bool]  # output name → as binary data
    timeout_ms: object = None  # the request's parameters' "timeout_ms", unchecked (`requests.check_timeout_ms`)
    truncate: object = None  # the request's parameters' "truncate", unchecked (`requests.check_truncate`)


def check_name(name: str, option: str = "--name") -> None:
    """A model name usable as one path segment of the /v2 routes, else RobertaInferError naming `option`."""
    if not name or any(c in name for c in "/?#% ") or not name.isprintable():
        raise RobertaInferError(f"{option} {name!r}: give a non-empty name without '/', '?', '#', '%' or spaces")


def infer_target(path: str) -> tuple[str, str | None] | None:
    """The model name and version (None: unversioned) an infer path names: /v2/models/NAME/infer or
    /v2/models/NAME/versions/VERSION/infer; None for any other path."""
    if not (path.startswith(V2_MODELS) and path.endswith(V2_INFER)):
        return None
    parts = path[len(V2_MODELS):-len(V2_INFER)].split("/")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions":
        return parts[0], parts[2]
    return None


def unknown_model(name: str, version: str | None, served: str | list[str]) -> str | None:
    """Why `name` (at `version`, None: any) is not a served model (`served`: its name, or their names), for a 404;
    None when it is."""
    served = [served] if isinstance(served, str) else served
    if name not in served:
        return f"unknown model {name!r}: this server serves {', '.join(map(repr, served))}"
    if version is not None and version != MODEL_VERSION:
        return f"model {name!r} has no version {version!r}: the versions available are {MODEL_VERSION!r}"
    return None


def model_metadata(name: str, version: str, classes: int, engine: str, precision: str) -> dict:
    """`GET /v2/models/{name}`: the model's tensors, and (beyond the protocol's fields, which clients ignore) the
    bundle's engine ("onnxruntime" | "openvino") and precision ("fp32" | "bf16" | "int8")."""
    return {"name": name, "versions": [version], "platform": "roberta-infer", "engine": engine, "precision": precision,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "score", "datatype": "FP32", "shape": [-1]},
                        {"name": "logits", "datatype": "FP32", "shape": [-1, classes]}]}


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """A v2 infer request body → the texts (not yet checked against any limit: the caller does that).

    Raises ProtocolError naming what is wrong: a JSON header that is not an object, not exactly one input named
    `text` of datatype BYTES, a shape that does not match its data, binary data of the wrong size, an unknown output.
    """
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
        header, binary = body[: int(header_length)], body[int(header_length):]
    else:
        header, binary = body, b""
    try:
        document = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError(f"the request's JSON header is not valid JSON: {e}") from None
    return infer_request(document, binary)


def infer_request(document: object, binary: bytes = b"") -> InferRequest:
    """A v2 infer request's JSON document, with the binary tensor data after its header (over gRPC: the input's
    contents as a serialized BYTES tensor), → the texts; ProtocolError as `parse_infer_request` says."""
    if not isinstance(document, dict):
        raise ProtocolError("the request is not a JSON object")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f'"inputs" must hold exactly one tensor, {INPUT_NAME!r} (BYTES, shape [N])')
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME or tensor.get("datatype") != "BYTES":
        raise ProtocolError(f"the input is {tensor.get('name')!r} of datatype {tensor.get('datatype')!r}; "
                            f"this model takes {INPUT_NAME!r} of datatype BYTES")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2 or not all(type(s) is int and s >= 0 for s in shape)
            or len(shape) == 2 and shape[1] != 1):
        raise ProtocolError(f"input shape {shape!r}: expected [N] or [N, 1]")
    size = parameters(tensor, "the input's").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != len(binary):
            raise ProtocolError(f"binary_data_size {size!r} does not match the {len(binary)} bytes after the JSON header")
        texts = decode_bytes_tensor(binary)
    else:
        texts = tensor.get("data")
        if not isinstance(texts, list):
            raise ProtocolError('the input has neither "data" nor binary data')
        if len(shape) == 2:  # [[text], [text], …] as well as the row-major flat form
            texts = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in texts]
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise ProtocolError(f"input element {bad} is not a string")
    if len(texts) != shape[0]:
        raise ProtocolError(f"input shape {shape} does not match its {len(texts)} elements")
    request_parameters = parameters(document, "the request's")
    return InferRequest(texts, document.get("id"), requested_outputs(document), request_parameters.get("timeout_ms"),
                        request_parameters.get("truncate"))


def requested_outputs(document: dict) -> dict[str, bool]:
    """Output name → whether it goes as binary data; all three when the request names none."""
    every_binary = bool(parameters(document, "the request's").get("binary_data_output", False))
    wanted = document.get("outputs")
    if wanted is None:
        return {name: every_binary for name in OUTPUT_NAMES}
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise ProtocolError('"outputs" must be a list of {"name": ...} objects')
    unknown = [o.get("name") for o in wanted if o.get("name") not in OUTPUT_NAMES]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0]!r}: this model has {', '.join(OUTPUT_NAMES)}")
    return {o["name"]: bool(parameters(o, f"output {o['name']!r}'s").get("binary_data", every_binary)) for o in wanted}


def parameters(document: dict, whose: str) -> dict:
    """A request's, tensor's or output's `parameters` (an object; absent or null: none), else ProtocolError."""
    value = document.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f'{whose} "parameters" is not an object')
    return value


def decode_bytes_tensor(data: bytes) -> list[str]:
    """Triton's serialized BYTES tensor (uint32 LE length + bytes, repeated) → UTF-8 strings."""
    texts, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise ProtocolError(f"binary input ends inside an element's length at byte {offset}")
        (length,) = struct.unpack_from("<I", data, offset)
        start, offset = offset + 4, offset + 4 + length
        if offset > len(data):
            raise ProtocolError(f"binary input element {len(texts)} claims {length} bytes past the body's end")
        try:
            texts.append(data[start:offset].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ProtocolError(f"input element {len(texts)} is not UTF-8: byte {e.start} ({e.reason})") from None
    return texts


def infer_response(request: InferRequest, results: list[dict], *, model_name: str, model_version: str) -> tuple[bytes, dict]:
    """The v2 response body and its extra headers, from `serve`'s per-text `{"label", "score", "logits"}` results."""
    tensors = output_tensors(results)
    outputs, binary = [], []
    for name, as_binary in request.outputs.items():
        datatype, shape, data = tensors[name]
        output: dict = {"name": name, "datatype": datatype, "shape": shape}
        if as_binary:
            raw = raw_tensor(datatype, data)
            output["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            output["data"] = data
        outputs.append(output)
    document = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        document["id"] = request.id
    header = json.dumps(document, ensure_ascii=False).encode("utf-8")
    if not binary:
        return header, {}
    return header + b"".join(binary), {HEADER_LENGTH: str(len(header))}


def output_tensors(results: list[dict]) -> dict[str, tuple[str, list[int], list]]:
    """`serve`'s per-text `{"label", "score", "logits"}` results → each output's datatype, shape and row-major data."""
    n = len(results)
    classes = len(results[0]["logits"]) if results else 0
    return {"label": ("BYTES", [n], [r["label"] for r in results]),
            "score": ("FP32", [n], [r["score"] for r in results]),
            "logits": ("FP32", [n, classes], [x for r in results for x in r["logits"]])}


def raw_tensor(datatype: str, data: list) -> bytes:
    """An output's data as binary tensor data: BYTES serialized (`encode_bytes_tensor`), FP32 as little-endian float32."""
    return encode_bytes_tensor(data) if datatype == "BYTES" else np.asarray(data, dtype="<f4").tobytes()


def encode_bytes_tensor(texts: list[str] | list[bytes]) -> bytes:
    """Strings (as UTF-8) or bytes → Triton's serialized BYTES tensor."""
    return b"".join(struct.pack("<I", len(raw)) + raw
                    for raw in (text if isinstance(text, bytes) else text.encode("utf-8") for text in texts))
