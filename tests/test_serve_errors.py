"""Every route of `serve` against each class of bad request: a 4xx with one JSON `{"error": "..."}` line, never a
500, a traceback or a hang, and the server answers the next good request. Generated from the routes and classes,
so a route added to the list is covered by every class."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from test_serve import cached_bundle, running, wait_ready

from roberta_infer.bundle import load_bundle
from roberta_infer.serve import Limits

LIMITS = Limits(max_texts_per_request=4, max_text_chars=50)


def v1(texts) -> dict:
    return {"texts": texts}


def v2(texts) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)] if isinstance(texts, list) else [1],
                        "data": texts}]}


ROUTES = {"/v1/classify": v1, "/v2/models/roberta/infer": v2}
# class of bad request → (body for a route's document builder, statuses it may get)
CLASSES = {
    "not JSON": (lambda make: b"{not json", {400}),
    "not UTF-8": (lambda make: b'{"texts": ["\xff\xfe"]}', {400}),
    "empty body": (lambda make: b"", {400}),
    "an array": (lambda make: b"[1, 2]", {400, 422}),
    "null": (lambda make: b"null", {400, 422}),
    "deeply nested": (lambda make: b"[" * 100_000 + b"]" * 100_000, {400, 413, 422}),
    "no texts": (lambda make: json.dumps(make([])).encode(), {422}),
    "a number for a text": (lambda make: json.dumps(make(["fine", 7])).encode(), {400, 422}),
    "null for a text": (lambda make: json.dumps(make([None])).encode(), {400, 422}),
    "texts not a list": (lambda make: json.dumps(make("just a string")).encode(), {400, 422}),
    "too many texts": (lambda make: json.dumps(make(["t"] * 5)).encode(), {413}),
    "a text too long": (lambda make: json.dumps(make(["x" * 51])).encode(), {413}),
    "a lone surrogate": (lambda make: json.dumps(make(["\ud800"])).encode(), {400, 422}),
    "an empty text": (lambda make: json.dumps(make(["fine", ""])).encode(), {400}),
    "a blank text": (lambda make: json.dumps(make([" \t\n"])).encode(), {400}),
    "a text of Unicode separators": (lambda make: json.dumps(make(["\u2028\u3000\u200b"])).encode(), {400}),
    "body over the limit": (lambda make: json.dumps(make(["y" * 40] * 4)).encode() + b" " * LIMITS.max_body_bytes, {413}),
}


@pytest.fixture(scope="module")
def url(tmp_path_factory, hf_model) -> Iterator[str]:
    bundle: Path = cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")
    with running(lambda: load_bundle(bundle, threads=1), LIMITS) as base:
        wait_ready(base)
        yield base


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CLASSES)
def test_each_class_of_bad_request_on_each_route(url, route, case):
    body, statuses = CLASSES[case]
    response = httpx.post(f"{url}{route}", content=body(ROUTES[route]), headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code in statuses, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
    good = httpx.post(f"{url}{route}", content=json.dumps(ROUTES[route](["still fine"])).encode(), timeout=60)
    assert good.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("route", ROUTES)
def test_wrong_methods_are_405_with_a_json_error(url, route, method):
    response = httpx.request(method, f"{url}{route}")
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}


@pytest.mark.parametrize("path", ["/v3/classify", "/v2/models", "/v2/models/roberta/infer/extra", "/v1/classify/x"])
def test_unknown_paths_are_404_with_a_json_error(url, path):
    response = httpx.post(f"{url}{path}", content=b"{}")
    assert response.status_code == 404 and "error" in response.json()


def test_a_blank_text_is_refused_naming_it(url):
    """An empty or blank text has nothing to classify: 400 naming it, where `{"texts": []}` is a 422 — never a label."""
    response = httpx.post(f"{url}/v1/classify", json={"texts": ["fine", ""]}, timeout=60)
    assert response.status_code == 400 and response.json() == {"error": '"texts"[1] is empty: nothing to classify'}
    response = httpx.post(f"{url}/v1/classify", json={"text": "\u3000 "}, timeout=60)
    assert response.status_code == 400 and response.json() == {"error": '"text" is only whitespace: nothing to classify'}
    response = httpx.post(f"{url}/v2/models/roberta/infer", json=v2(["ok", "\t"]), timeout=60)
    assert response.status_code == 400 and "input element 1 is only whitespace" in response.json()["error"]


def test_binary_data_that_lies_about_its_size(url):
    payload = struct.pack("<I", 3) + b"abc"
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(payload) + 5}}]}).encode()
    response = httpx.post(f"{url}/v2/models/roberta/infer", content=header + payload,
                          headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "does not match" in response.json()["error"]
