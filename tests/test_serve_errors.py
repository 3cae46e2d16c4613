"""Every route of `serve` against each class of bad request: a 4xx with one JSON `{"error": "..."}` line, never a
500, a traceback or a hang, and the server answers the next good request. Generated from the routes and classes,
so a route added to the list is covered by every class."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from test_serve import cached_bundle, running, wait_ready

from roberta_infer.bundle import load_bundle
from roberta_infer.serve import Limits

LIMITS = Limits(max_texts_per_request=4, max_text_chars=50, max_body_bytes=4096)


def v1(texts) -> dict:
    return {"texts": texts}


def v2(texts) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)] if isinstance(texts, list) else [1],
                        "data": texts}]}


ROUTES = {"/v1/classify": v1, "/v2/models/roberta/infer": v2, "/v2/models/roberta/versions/1/infer": v2}
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


def raw_response(url: str, head: bytes, *chunks: bytes) -> bytes:
    """Send a request head and body chunks over a raw socket, never finishing the body; what comes back until the
    server closes (the socket's timeout only guards against a hang)."""
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=60) as conn:
        conn.sendall(head)
        for chunk in chunks:
            conn.sendall(chunk)
        received = b""
        while data := conn.recv(65536):
            received += data
            if b"\r\n\r\n" in received and received.endswith(b"}"):
                break
    return received


@pytest.mark.parametrize("route", ROUTES)
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(url, route):
    """Content-Length 1 GB and no body at all: the 413 comes back at once, so nothing was waited for or read."""
    head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    response = raw_response(url, head.encode())
    assert response.startswith(b"HTTP/1.1 413"), response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1]) == {
        "error": f"the request body has 1000000000 bytes; the limit is {LIMITS.max_body_bytes}"}


@pytest.mark.parametrize("route", ROUTES)
def test_a_chunked_body_growing_past_the_limit_is_cut_off(url, route):
    """Chunked transfer declares no length: the body is read until it passes the limit, then refused unfinished."""
    head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (3000, b" " * 3000)
    response = raw_response(url, head.encode(), chunk, chunk)  # 6000 bytes > 4096, and no final 0-length chunk
    assert response.startswith(b"HTTP/1.1 413"), response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1]) == {"error": "the request body is over the 4096-byte limit"}
