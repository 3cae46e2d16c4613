"""HTTP/1.1 connections no client can hold on to: uvicorn's httptools protocol with a bound on a request head's size,
a deadline for receiving a whole request, and room made at --max-connections by closing idle connections.

uvicorn alone parses a head of any size, waits for the rest of a request for ever, and lets connections that never
send a byte fill --max-connections (`limit_concurrency`), after which every real request gets 503: a client sending
one byte every two seconds, or a thousand that connect and say nothing, stop the server for everyone. Here:

- a request head (request line and headers) over `max_header_bytes` gets 431 and the connection is closed;
- a request must arrive whole within `read_timeout_s` of its first byte, else 408 (head unfinished) or the connection
  is closed (body unfinished: the application, reading it, sees the client leave);
- a new connection that sends nothing is closed after uvicorn's keep-alive timeout, as an idle kept-alive one is;
- a new connection, or a request, beyond --max-connections closes the connection idle the longest (one with no
  request in flight: kept alive, never used, or still sending a head); only when every other connection has a
  request in flight does uvicorn's 503 answer the request.

Each of these closes is counted by reason in `closed` (/metrics: roberta_infer_connections_closed_total).
"""

from __future__ import annotations

import http
import json
from dataclasses import dataclass
from typing import Iterator

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import check_positive


@dataclass(frozen=True)
class ConnectionBounds:
    """max_header_bytes: a request head's size at most, in bytes (default 16 KiB, as Node.js's and h11's), counted as
    the request target, each header's name and value and 4 bytes (": " and CRLF) per header, and, for a head that
    spans reads, every read after its first (so a header still arriving, which the parser buffers, is bounded too);
    read_timeout_s: seconds from a request's first byte until all of it (head and body) must have arrived."""

    max_header_bytes: int = 16 * 1024
    read_timeout_s: float = 30.0

    def check(self) -> None:
        """Raises RobertaInferError, naming the `serve` option, for a bound that is not positive."""
        check_positive({"--max-header-bytes": self.max_header_bytes, "--read-timeout-s": self.read_timeout_s})


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol within `bounds` (the module's docstring); made by uvicorn with its own keyword
    arguments, so `serve` passes `functools.partial(BoundedHttpProtocol, bounds=..., closed=..., ticks=...)` as its
    `http`, where `ticks` (an `itertools.count()` of the server's) orders the moments connections fall idle: the
    event loop's clock can give many the same time."""

    def __init__(self, *args, bounds: ConnectionBounds, ticks: Iterator[int], closed: Counter | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bounds, self.closed, self.ticks = bounds, closed, ticks
        self.idle_since = 0  # the tick when it last fell idle (no request in flight)
        self.head_bytes: int | None = None  # the open head's size from the parser's callbacks; None: no head open
        self.head_reads = 0  # bytes of the reads after the one the open head began in, which all belong to it
        self.heads = 0  # heads begun on this connection
        self.read_deadline = None

    # connection
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.idle_since = next(self.ticks)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self.make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_read_deadline()
        super().connection_lost(exc)

    def idle(self) -> bool:
        """No request in flight: none begun, the last one answered, none pipelined, or a head still arriving."""
        busy = self.cycle is not None and not self.cycle.response_complete
        return not busy and not self.pipeline and not self.transport.is_closing()

    def make_room(self) -> None:
        """At --max-connections, closes the connection idle the longest but this one, if there is one."""
        if self.limit_concurrency is None or len(self.connections) < self.limit_concurrency:
            return
        idle = [c for c in self.connections if c is not self and isinstance(c, BoundedHttpProtocol) and c.idle()]
        if idle:
            oldest = min(idle, key=lambda c: c.idle_since)
            self.connections.discard(oldest)  # at once, so this connection's request finds room
            oldest.transport.close()
            self.count("idle_at_limit")

    def on_response_complete(self) -> None:
        self.idle_since = next(self.ticks)
        super().on_response_complete()

    # a request's head and its deadline
    def data_received(self, data: bytes) -> None:
        open_before, heads = self.head_bytes is not None, self.heads
        super().data_received(data)
        if open_before and self.head_bytes is not None and self.heads == heads and not self.transport.is_closing():
            # the same head was open before and after this read: all of it is head (a header still incomplete is
            # buffered in the parser, unseen by the callbacks)
            self.head_reads += len(data)
            if self.head_reads > self.bounds.max_header_bytes:
                self.refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.heads += 1
        self.head_bytes, self.head_reads = 0, 0
        self.cancel_read_deadline()
        self.read_deadline = self.loop.call_later(self.bounds.read_timeout_s, self.read_timed_out)

    def on_url(self, url: bytes) -> None:
        if not self.transport.is_closing():
            super().on_url(url)
            self.count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.transport.is_closing():
            super().on_header(name, value)
            self.count_head(len(name) + len(value) + 4)  # ": " and CRLF

    def count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.bounds.max_header_bytes:
            self.refuse_head()  # the rest of this read is parsed for nothing: every callback ends on a closing transport

    def on_headers_complete(self) -> None:
        if not self.transport.is_closing():
            self.head_bytes = None
            self.make_room()  # before uvicorn counts the connections to decide on its 503
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.cancel_read_deadline()
        if not self.transport.is_closing():
            super().on_message_complete()

    def cancel_read_deadline(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def read_timed_out(self) -> None:
        self.read_deadline = None
        if self.transport.is_closing():
            return
        self.count("read_timeout")
        if self.head_bytes is not None:
            self.refuse(408, f"the request did not arrive within {self.bounds.read_timeout_s:g} s")
        else:  # the body is late: the application, if it is reading it, sees the client leave
            self.transport.close()

    def refuse_head(self) -> None:
        self.count("head_too_large")
        self.refuse(431, f"the request head is over {self.bounds.max_header_bytes} bytes")

    def refuse(self, status: int, error: str) -> None:
        """Answers `status` with `{"error": error}` and closes the connection."""
        body = json.dumps({"error": error}).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, http.HTTPStatus(status).phrase.encode(), len(body), body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not after a refusal of ours
            super().send_400_response(msg)

    def count(self, reason: str) -> None:
        if self.closed is not None:
            self.closed.labels(reason).inc()

