"""The v1 API's wire format: POST /v1/classify, `{"texts": [...]}` or `{"text": "..."}` → `{"results": [...]}`."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from .limits import Limits
from .requests import ApiError, check_texts, check_timeout_ms, json_type

CLASSIFY_PATH = "/v1/classify"


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a request (`parse_request`'s first half)."""
    return parse_request(body, limits)[0]


def parse_request(body: bytes, limits: Limits) -> tuple[list[str], float | None]:
    """`{"texts": [...]}` or `{"text": "..."}`, optionally with `"timeout_ms": number` → the texts and that deadline
    in milliseconds (None: none given), or an ApiError saying exactly what is wrong (400 for a body that is not
    UTF-8 JSON; 422 for wrong fields or types; 400, 413 or 422 from `requests.check_texts`, 400 for an empty or
    blank text)."""
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
    unknown = sorted(set(document) - {"texts", "text", "timeout_ms"})
    if unknown:
        raise ApiError(422, f"unknown field {', '.join(map(json.dumps, unknown))}: {usage}", "bad_request")
    timeout_ms = check_timeout_ms(document.pop("timeout_ms", None), '"timeout_ms"')
    if len(document) != 1:
        raise ApiError(422, f"{'both' if document else 'neither'} \"texts\" {'and' if document else 'nor'} \"text\": {usage}",
                       "bad_request")
    if "text" in document:
        return check_texts([document["text"]], limits, '"text"', lambda i: '"text"'), timeout_ms
    if not isinstance(document["texts"], list):
        raise ApiError(422, f'"texts" is {json_type(document["texts"])}, not an array of strings', "bad_request")
    return check_texts(document["texts"], limits, '"texts"', lambda i: f'"texts"[{i}]'), timeout_ms


# These models document the API in /openapi.json; the handler parses bodies itself to word its own errors.
class ClassifyRequest(BaseModel):
    """Send either `texts` or `text`, not both."""

    texts: list[str] | None = Field(None, description="texts to classify, in order (at most --max-texts-per-request)")
    text: str | None = Field(None, description="one text; the response still holds a list of one result")
    timeout_ms: float | None = Field(None, gt=0, description="this request's deadline: texts still queued when it "
                                     "passes are dropped and the request gets 504 (the server's --request-timeout-ms "
                                     "applies when it is sooner)")


class Result(BaseModel):
    label: str = Field(description="the class with the highest logit")
    score: float = Field(description="softmax probability of that class")
    logits: list[float]


class ClassifyResponse(BaseModel):
    results: list[Result] = Field(description="one per text, in request order")
