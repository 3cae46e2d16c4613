"""serve's HTTP connections within bounds (`serve.connections`), on loopback over raw sockets: a head over
--max-header-bytes gets 431, a request not whole within --read-timeout-s gets 408 (or its connection closed), idle
connections make room beyond --max-connections, and the real CLI serves its clients while 40 others dribble bytes
and 1,000 sit idle."""

from __future__ import annotations

import json
import resource
import socket
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from test_serve import TEXTS, cached_bundle, cli_server, running, sample, wait_ready

from roberta_infer.bundle import load_bundle
from roberta_infer.predict import predict
from roberta_infer.serve.connections import ConnectionBounds


def connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30)


def answer(conn: socket.socket, data: bytes = b"") -> bytes:
    """Sends `data`, then reads until the server closes the connection: all it answered."""
    try:
        conn.sendall(data)
    except (BrokenPipeError, ConnectionResetError):  # closed while we were still sending: read what it said
        pass
    received = b""
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except ConnectionResetError:  # it closed with our bytes unread
        pass
    return received


def status_and_error(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, hf_model) -> Path:
    return cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")


@pytest.fixture(scope="module")
def small(bundle) -> Iterator[str]:
    """A server with --max-header-bytes 1024 and --read-timeout-s 0.5: its base URL."""
    with running(lambda: load_bundle(bundle, threads=1), bounds=ConnectionBounds(1024, 0.5), keep_alive_s=600) as base:
        wait_ready(base)
        yield base


def closed(base: str, reason: str) -> float:
    return sample(httpx.get(f"{base}/metrics").text, "roberta_infer_connections_closed_total", reason=reason)


def test_a_head_just_under_the_bound_is_served(small):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nConnection: close\r\n\r\n"
    request = head % (b"a" * (1024 - len(head % b"") - 16))  # the whole head, request line included: 1,008 bytes
    with connect(small) as conn:
        assert answer(conn, request).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("pieces", [1, 40], ids=["one read", "one header over many reads"])
def test_a_head_over_the_bound_gets_431_and_the_connection_closed(small, pieces):
    """A 3,000-byte header value, sent whole or in 40 pieces (a header the parser buffers until it ends)."""
    before = closed(small, "head_too_large")
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n"
    with connect(small) as conn:
        if pieces > 1:
            size = len(request) // pieces
            for i in range(pieces - 1):
                try:
                    conn.sendall(request[i * size:(i + 1) * size])
                except (BrokenPipeError, ConnectionResetError):
                    break
            request = request[(pieces - 1) * size:]
        assert status_and_error(answer(conn, request)) == (431, "the request head is over 1024 bytes")
    assert closed(small, "head_too_large") == before + 1


def test_many_headers_over_the_bound_get_431(small):
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"
    with connect(small) as conn:
        assert status_and_error(answer(conn, request))[0] == 431


def test_a_head_that_never_ends_gets_408_at_the_read_timeout(small):
    before = closed(small, "read_timeout")
    with connect(small) as conn:
        assert status_and_error(answer(conn, b"GET /healthz HTTP/1.1\r\nHo")) == (
            408, "the request did not arrive within 0.5 s")
    assert closed(small, "read_timeout") == before + 1


def test_a_body_that_never_ends_has_its_connection_closed_at_the_read_timeout(small):
    """The head announces 100 bytes and 10 come: the connection is closed, nothing answered."""
    before = closed(small, "read_timeout")
    with connect(small) as conn:
        assert answer(conn, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100\r\n\r\n" + b'{"texts": ') == b""
    assert closed(small, "read_timeout") == before + 1


def test_a_kept_alive_connection_serves_requests_past_the_read_timeout(small):
    """The deadline is per request, from its first byte: a connection answered twice, once more after the timeout
    would have passed had it counted from the connection's start, still serves a third request."""
    with httpx.Client(base_url=small) as client:
        for _ in range(3):
            assert client.post("/v1/classify", json={"texts": ["fine"]}).status_code == 200
            threading.Event().wait(0.3)  # pacing only: together past the 0.5 s deadline


def test_idle_connections_make_room_beyond_max_connections_oldest_first(bundle):
    """--max-connections 4 and ten connections that send nothing (kept for 600 s): each one past the fourth closes
    the oldest, the request of an eleventh client closes one more and is served, and the two newest stay open."""
    with running(lambda: load_bundle(bundle, threads=1), max_connections=4, keep_alive_s=600) as base:
        wait_ready(base)
        with ExitStack() as stack:
            idle = [stack.enter_context(connect(base)) for _ in range(10)]
            with httpx.Client(base_url=base) as client:
                assert client.post("/v1/classify", json={"texts": ["fine"]}).status_code == 200
                metrics = client.get("/metrics").text
            assert [answer(conn) for conn in idle[:8]] == [b""] * 8  # closed by the server
            for conn in idle[8:]:
                conn.setblocking(False)
                with pytest.raises(BlockingIOError):  # open, nothing to read
                    conn.recv(1)
    assert sample(metrics, "roberta_infer_connections_closed_total", reason="idle_at_limit") == 8
    assert sample(metrics, "roberta_infer_connections_refused_total") == 0


def test_the_cli_serves_its_clients_while_40_dribble_and_1000_sit_idle(bundle):
    """The real CLI (default --max-connections 1000, keep-alive and read timeout long enough that nobody is timed
    out): 1,000 connections that say nothing and 40 that send a request head one byte at a time, all through the test;
    32 requests from 4 other clients meanwhile all get their own texts' logits (those of `predict`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * 1040 + 200  # this process's sockets, and the server's (which inherits the limit)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    expected = predict(load_bundle(bundle, threads=1), TEXTS)
    try:
        with cli_server("--model", str(bundle), "--threads", "1", "--keep-alive-s", "600", "--read-timeout-s", "600"
                        ) as (proc, base), ExitStack() as stack:
            wait_ready(base)
            for _ in range(1000):  # idle: connected, silent
                stack.enter_context(connect(base))
            dribblers = [stack.enter_context(connect(base)) for _ in range(40)]
            stop = threading.Event()

            def dribble() -> None:
                head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 4000
                for i in range(len(head)):
                    for conn in dribblers:
                        try:
                            conn.sendall(head[i:i + 1])
                        except OSError:  # closed by the server to make room: fine
                            pass
                    if stop.wait(0.05):
                        return

            dribbling = threading.Thread(target=dribble, daemon=True)
            dribbling.start()

            def client(first: int, results: list) -> None:
                with httpx.Client(base_url=base, timeout=60) as http:
                    for i in range(first, 32, 4):
                        results.append((i, http.post("/v1/classify", json={"texts": TEXTS[i % len(TEXTS):]})))

            results: list = []
            clients = [threading.Thread(target=client, args=(first, results)) for first in range(4)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join(120)
            still_dribbling = dribbling.is_alive()
            stop.set()
            dribbling.join(30)
            metrics = httpx.get(f"{base}/metrics").text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert still_dribbling, "the dribblers stopped before the clients were served"
    assert sorted(i for i, _ in results) == list(range(32))
    for i, response in results:
        assert response.status_code == 200, response.text
        got = np.array([r["logits"] for r in response.json()["results"]])
        assert np.abs(got - [e["logits"] for e in expected[i % len(TEXTS):]]).max() < 1e-4
    assert sample(metrics, "roberta_infer_connections_refused_total") == 0
    assert sample(metrics, "roberta_infer_connections_closed_total", reason="idle_at_limit") >= 40
