"""How large a batch, a request, a text and the queue may get, and how long a batch may wait to fill: `serve`'s options."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RobertaInferError, check_positive


@dataclass(frozen=True)
class Limits:
    """How large a batch, request, text and queue may get, and how long a batch may wait to fill.

    max_batch_size: texts per model call; max_wait_ms: milliseconds a batch may wait for company after its oldest
    text arrived, while another call keeps the model busy; max_texts_per_request and max_text_chars (characters):
    beyond them a request gets 413; max_queue: texts waiting for the model, beyond which a request gets 503;
    parallel_calls: model calls in flight on the one session; max_body_bytes: a request body larger than this gets 413,
    unread when its Content-Length says so, cut off where a chunked body grows past it (default 1 MiB: JSON may
    spend up to 12 bytes on one character, so a request at every other limit may need more); request_timeout_ms:
    a request's deadline (None: none): texts still queued when it passes are dropped and the request gets 504; a
    request may set a sooner one of its own (`timeout_ms`); max_batch_tokens: padded tokens per model call at most
    (rows × the longest row, in tokens; None: no bound but max_batch_size), except a single text longer than it,
    which runs alone.
    """

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_texts_per_request: int = 256
    max_text_chars: int = 10_000
    max_queue: int = 2048
    # Model calls in flight on the one session (and executor threads). 2 lets one thread tokenise the next window, or
    # pad and hand back results (Python), while another call keeps ONNX Runtime's threads busy: 10–15 % more texts/s
    # for the small default model, but −15 % for roberta-base, whose calls already keep every core busy.
    parallel_calls: int = 1
    max_body_bytes: int = 1 << 20
    request_timeout_ms: float | None = None
    max_batch_tokens: int | None = None

    def check(self) -> None:
        """Raises RobertaInferError, naming the `serve` option, for a limit that is not positive, a negative wait, or
        a queue smaller than one full request."""
        check_positive({f"--{name.replace('_', '-')}": getattr(self, name)
                        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_queue", "parallel_calls",
                                     "max_body_bytes", "max_batch_tokens")})
        if self.request_timeout_ms is not None and not self.request_timeout_ms > 0:
            raise RobertaInferError(f"--request-timeout-ms must be positive, got {self.request_timeout_ms}")
        if self.max_wait_ms < 0:
            raise RobertaInferError(f"--max-wait-ms must be ≥ 0, got {self.max_wait_ms}")
        if self.max_queue < self.max_texts_per_request:
            raise RobertaInferError(f"--max-queue ({self.max_queue}) must be at least --max-texts-per-request "
                                    f"({self.max_texts_per_request}), or a full request could never be queued")
