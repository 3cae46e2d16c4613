"""The v1 API's wire format: POST /v1/classify, `{"texts": [...]}` or `{"text": "..."}` → `{"results": [...]}`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, Field

from .limits import Limits
from .requests import ApiError, check_texts, check_timeout_ms, check_truncate, json_type

CLASSIFY_PATH = "/v1/classify"
USAGE = 'send {"texts": ["...", ...]} or {"text": "..."}'


@dataclass(frozen=True)
class ClassifyCall:
    """A parsed /v1/classify body: its texts, deadline in milliseconds (None: none given), whether texts longer than
    the model's positions are cut (else refused with 413) and the model it names (None: none named)."""

    texts: list[str]
    timeout_ms: float | None = None
    truncate: bool = True
    model: str | None = None


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a request (`parse_request`'s first field)."""
    return parse_request(body, limits).texts


def parse_document(body: bytes) -> dict:
    """The body as a JSON object, else ApiError 400 (not UTF-8 JSON) or 422 (not an object)."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not UTF-8: byte {e.start} ({e.reason})", "bad_request") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", "bad_request") from None
    except RecursionError:
        raise ApiError(400, "the request body is not valid JSON: nested too deeply", "bad_request") from None
    if not isinstance(document, dict):
        raise ApiError(422, f"the body is {json_type(document)}, not an object: {USAGE}", "bad_request")
    return document


def model_field(document: dict) -> str | None:
    """The body's `"model"` (None: absent), else ApiError 422 for one that is not a string."""
    model = document.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(422, f'"model" is {json_type(model)}, not a string (a model\'s name)', "bad_request")
    return model


def parse_request(body: bytes | dict, limits: Limits) -> ClassifyCall:
    """`{"texts": [...]}` or `{"text": "..."}`, optionally with `"timeout_ms": number`, `"truncate": bool` (default
    true) and `"model": name` → a ClassifyCall, or an ApiError saying exactly what is wrong (400 for a body that is
    not UTF-8 JSON; 422 for wrong fields or types; 400, 413 or 422 from `requests.check_texts`, 400 for an empty or
    blank text). `body` may be the document `parse_document` already read."""
    document = dict(body) if isinstance(body, dict) else parse_document(body)
    unknown = sorted(set(document) - {"texts", "text", "timeout_ms", "truncate", "model"})
    if unknown:
        raise ApiError(422, f"unknown field {', '.join(map(json.dumps, unknown))}: {USAGE}", "bad_request")
    timeout_ms = check_timeout_ms(document.pop("timeout_ms", None), '"timeout_ms"')
    truncate = check_truncate(document.pop("truncate", None), '"truncate"')
    model = model_field(document)
    document.pop("model", None)
    if len(document) != 1:
        raise ApiError(422, f"{'both' if document else 'neither'} \"texts\" {'and' if document else 'nor'} \"text\": {USAGE}",
                       "bad_request")
    if "text" in document:
        return ClassifyCall(check_texts([document["text"]], limits, '"text"', lambda i: '"text"'), timeout_ms, truncate,
                            model)
    if not isinstance(document["texts"], list):
        raise ApiError(422, f'"texts" is {json_type(document["texts"])}, not an array of strings', "bad_request")
    return ClassifyCall(check_texts(document["texts"], limits, '"texts"', where), timeout_ms, truncate, model)


def where(i: int) -> str:
    """How a v1 message names the i-th text."""
    return f'"texts"[{i}]'


# These models document the API in /openapi.json; the handler parses bodies itself to word its own errors.
class ClassifyRequest(BaseModel):
    """Send either `texts` or `text`, not both."""

    texts: list[str] | None = Field(None, description="texts to classify, in order (at most --max-texts-per-request)")
    text: str | None = Field(None, description="one text; the response still holds a list of one result")
    truncate: bool = Field(True, description="false: a text longer than the model's positions gets 413 instead of "
                           "being cut to them")
    model: str | None = Field(None, description="the model's name; needed when the server serves several")
    timeout_ms: float | None = Field(None, gt=0, description="this request's deadline: texts still queued when it "
                                     "passes are dropped and the request gets 504 (the server's --request-timeout-ms "
                                     "applies when it is sooner)")


class Result(BaseModel):
    label: str = Field(description="the class with the highest logit")
    score: float = Field(description="softmax probability of that class")
    logits: list[float]


class ClassifyResponse(BaseModel):
    results: list[Result] = Field(description="one per text, in request order")
