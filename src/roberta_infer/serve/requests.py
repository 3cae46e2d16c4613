"""What both protocols' requests share: the `{"error": ...}` refusal, reading a body within a size limit, and
checking a request's texts against the Limits."""

from __future__ import annotations

import hmac
from typing import Any, Callable

from pydantic import BaseModel
from starlette.requests import Request

from ..data import clean_text
from .limits import Limits

RETRY_AFTER = {"Retry-After": "1"}


class ApiError(Exception):
    """A refused request: its HTTP status, the message for `{"error": ...}`, and the reason counted in /metrics."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers


def bearer_matches(value: bytes, bearer: bytes) -> bool:
    """Whether an `Authorization` value is `bearer` (b"bearer " + the key), the scheme in any case, compared in
    constant time (`hmac.compare_digest`): HTTP's header and gRPC's metadata alike."""
    return hmac.compare_digest(value[:7].lower() + value[7:], bearer)


class ErrorResponse(BaseModel):  # every refusal's body, as /openapi.json documents it
    error: str


def json_type(value: Any) -> str:
    """How an error message names a parsed JSON value's type: "an object", "an array", "a string", "null", …"""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused unread (ApiError 413) once it is larger than `limit` bytes, as declared or as read."""
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


def check_timeout_ms(value: Any, what: str) -> float | None:
    """A request's own deadline in milliseconds (None: none given), else ApiError 422 naming `what`: a positive number."""
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 < value < float("inf"):
        raise ApiError(422, f"{what} is {json_type(value) if type(value) not in (int, float) else value}: give a "
                            "positive number of milliseconds", "bad_request")
    return float(value)


def check_truncate(value: Any, what: str) -> bool:
    """Whether a request lets texts longer than the model's positions be cut (None: not said, so yes), else ApiError
    422 naming `what`: a boolean."""
    if value is None:
        return True
    if type(value) is not bool:
        raise ApiError(422, f"{what} is {json_type(value)}: give true (cut long texts, the default) or false (refuse "
                            "them with 413)", "bad_request")
    return value


def too_long_error(index: int, tokens: int, limit: int, where: Callable[[int], str]) -> ApiError:
    """The 413 for a text of a request sent with truncation off that is longer than the model's positions."""
    return ApiError(413, f"{where(index)} has {tokens} tokens; the model takes at most {limit} (truncation is off "
                         "for this request: allow it to have the text cut)", "too_long")


def check_texts(texts: list, limits: Limits, what: str, where: Callable[[int], str]) -> list[str]:
    """The texts of a request as `data.clean_text` leaves them (ends stripped), or an ApiError: none (422), too many
    (413), not strings (422), too long (413), not valid Unicode (422), or empty or blank (400: nothing left by
    `clean_text`; nothing to classify, where a label would be made up).

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
        if not clean_text(text):
            raise ApiError(400, f"{where(i)} is {'empty' if not text else 'only whitespace'}: nothing to classify",
                           "bad_request")
    return [clean_text(text) for text in texts]
