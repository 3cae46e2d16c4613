"""Dynamic batching: one queue of texts from every request, one worker turning them into model calls.

It knows nothing of HTTP (as text-embeddings-inference's batcher): callers hand it texts and await their results;
a queue that will not take them raises `Refused`; a cancelled request's queued texts are skipped, which the
service answers as it sees fit.

A single worker runs the queued texts as soon as the model is idle; while a call runs, it waits until
max_batch_size texts are queued, or at most max_wait_ms after the oldest arrived, so a lone request is never held
back for company that cannot come. It takes up to LOOKAHEAD batches' worth, tokenises them together, sorts them by
length in tokens and cuts them where padding would cost more than another call (`predict.planned_batches`, with
the call's fixed cost from `call_cost.call_cost_tokens`) into model calls of at most max_batch_size texts and, where
set, max_batch_tokens padded tokens, parallel_calls at a time on the one session, each in an executor thread (so
the event loop keeps serving). Tokenising, padding and truncation are `predict`'s own functions, so results equal
`roberta-infer predict`. Each text's result goes back to its caller through a future. The queue is bounded in texts
(max_queue). Each step is timed into `metrics`, and each model call is traced, linked to its requests (`tracing`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from opentelemetry import trace

from ..predict import encode, labelled, pad_batch, planned_batches
from ..runtime import BundleClassifier
from .limits import Limits
from .metrics import Metrics, log
from .tracing import call_span

# A full queue is taken up to this many batches at a time, tokenised together and split into batches of similar
# length in tokens: padding each to its own longest text wastes far less work than arrival order would.
LOOKAHEAD = 8


class TooLong(Exception):
    """A text of a request sent with truncation off is longer, in tokens, than the model's positions: its request
    fails with this (the caller answers 413), its other texts are dropped; `index` is the text's place in its request."""

    def __init__(self, index: int, tokens: int, limit: int):
        super().__init__(f"text {index} has {tokens} tokens; the model takes {limit}")
        self.index, self.tokens, self.limit = index, tokens, limit


class Refused(Exception):
    """The queue will not take the texts: the message says why; `reason` ("shutting_down", "failed" or
    "overloaded") is how /metrics counts it, `retry` whether the same texts may be taken later."""

    def __init__(self, message: str, reason: str, *, retry: bool):
        super().__init__(message)
        self.reason, self.retry = reason, retry


@dataclass(eq=False)
class _Request:
    enqueued: float  # the event loop's clock, seconds
    waiting: int  # its texts not yet taken from the queue
    span: trace.SpanContext  # its request span (`tracing.request_span`; invalid: none), for model calls to link to
    truncate: bool = True  # False: a text longer than the model's positions fails the request (TooLong)
    items: list[_Item] = field(default_factory=list)  # its texts, in order


@dataclass(eq=False)
class _Item:
    text: str
    future: asyncio.Future
    request: _Request
    index: int = 0  # its place in its request


class Batcher:
    """One queue of texts from all callers, one worker turning them into model calls of up to max_batch_size texts
    (and max_batch_tokens padded tokens).

    Made inside a running event loop (its worker is a task of that loop); `executor` runs the tokenising and the
    model calls, `call_cost` is a model call's fixed cost in padded tokens (`call_cost.call_cost_tokens`; None for
    a static-shape bundle); `tracer` makes the model calls' spans (`tracing.call_span`).
    """

    def __init__(self, classifier: BundleClassifier, limits: Limits, metrics: Metrics, executor: ThreadPoolExecutor,
                 call_cost: float | None, tracer: trace.Tracer):
        self.classifier, self.limits, self.metrics, self.executor = classifier, limits, metrics, executor
        self.call_cost, self.tracer = call_cost, tracer
        self.pending: deque[_Item] = deque()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.slots = asyncio.Semaphore(limits.parallel_calls)
        self.running: set[asyncio.Task] = set()
        self.failure: BaseException | None = None  # why the worker stopped, if it did not stop by `close`
        self.worker = asyncio.create_task(self._work())
        self.worker.add_done_callback(self._worker_stopped)

    def _worker_stopped(self, worker: asyncio.Task) -> None:
        """A worker that died of a bug fails the queued texts and sets `failure` (the server is then unready)."""
        if worker.cancelled() or worker.exception() is None:
            return
        self.failure = worker.exception()
        log.error("the batching worker stopped", exc_info=self.failure)
        self._fail(list(self.pending), self.failure)
        self.pending.clear()

    def submit(self, texts: list[str], span: trace.SpanContext = trace.INVALID_SPAN_CONTEXT,
               truncate: bool = True) -> asyncio.Future:
        """Queue the texts (all or none); the future of their results, in order: `{"label": str, "score": float
        (softmax probability), "logits": [float] * classes}` each. Cancelling it drops those still queued. The spans
        of the model calls that run them link to `span`, their request's span context, where valid.

        Texts longer than the model's positions are cut as `predict` cuts them; with `truncate` False the future
        holds TooLong instead (found where the window is tokenised anyway, so no text is tokenised twice), and the
        request's other texts are dropped. Raises Refused while closing, after the worker stopped, or when the texts
        would overfill the queue; the future holds the exception of a failed tokenisation or model call (logged)
        for its texts only.
        """
        if self.closing:
            raise Refused("the server is shutting down", "shutting_down", retry=True)
        if self.failure is not None:
            raise Refused("the server cannot classify: its batching worker stopped (see the server log)", "failed",
                          retry=False)
        if len(self.pending) + len(texts) > self.limits.max_queue:
            raise Refused(f"overloaded: {len(self.pending)} texts are waiting and the queue holds "
                          f"{self.limits.max_queue}; retry later", "overloaded", retry=True)
        loop = asyncio.get_running_loop()
        request = _Request(loop.time(), len(texts), span, truncate)
        request.items = [_Item(text, loop.create_future(), request, i) for i, text in enumerate(texts)]
        items = request.items
        self.pending.extend(items)
        self.metrics.queued.set(len(self.pending))
        self.wakeup.set()
        return asyncio.gather(*(item.future for item in items))

    async def close(self) -> None:
        """Refuse new texts, run the queued ones, stop the worker."""
        self.closing = True
        self.wakeup.set()
        await self.worker
        await asyncio.gather(*self.running)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        wait, size = self.limits.max_wait_ms / 1000, self.limits.max_batch_size
        while True:
            while not self.pending:
                if self.closing:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
            # Texts queue up while every call slot is busy: closing a batch that cannot start would only shrink it.
            await self.slots.acquire()
            # With a slot free, a batch waits for company only while another call keeps the model busy, and at most
            # max-wait after its oldest text: an idle model runs what is queued at once.
            deadline = self.pending[0].request.enqueued + wait
            while len(self.pending) < size and self.running and not self.closing and deadline > loop.time():
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            window = self._take(min(len(self.pending), size * LOOKAHEAD), loop.time())
            planned: list[tuple[np.ndarray, np.ndarray]] = []
            too_long: dict[int, int] = {}
            try:
                if window:
                    planned, too_long = await loop.run_in_executor(
                        self.executor, self._plan, [item.text for item in window],
                        [None if item.request.truncate else id(item.request) for item in window])
            except Exception as e:
                self._fail(window, e)
            if too_long:  # those texts' requests fail; none of their texts in this window is run
                self.metrics.dropped.inc(len(window) - sum(len(batch) for batch, _ in planned))
            for i, tokens in too_long.items():
                error = TooLong(window[i].index, tokens, self.classifier.max_tokens)
                for item in window[i].request.items:
                    if not item.future.done():
                        item.future.set_exception(error)
            if not planned:
                self.slots.release()
            for n, (batch, tokens) in enumerate(planned):
                if n:  # the first holds the slot taken above
                    await self.slots.acquire()
                call = asyncio.create_task(self._run([window[i] for i in batch], tokens))
                self.running.add(call)
                call.add_done_callback(self._finished)

    def _take(self, n: int, now: float) -> list[_Item]:
        """The `n` oldest queued texts, less those of cancelled requests (counted as dropped); a request whose last
        text is taken has its queue time observed."""
        window = [self.pending.popleft() for _ in range(n)]
        self.metrics.queued.set(len(self.pending))
        live = [item for item in window if not item.future.done()]  # done: its request was cancelled
        self.metrics.dropped.inc(len(window) - len(live))
        for item in window:
            item.request.waiting -= 1
            if not item.request.waiting and not item.future.done():
                self.metrics.queue_seconds.observe(now - item.request.enqueued)
        return live

    def _plan(self, texts: list[str], strict: list[int | None]) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[int, int]]:
        """Tokenise a whole window at once (32 texts at a time, between model calls, cost about twice as much per
        text), cut it into the batches that cost the model least within max_batch_size and max_batch_tokens, and pad
        each as `predict` does: (indices into `texts`, int64 src_tokens [rows, longest row]) per model call.

        `strict[i]` is the id of text i's request when that request refuses truncation (else None): a text of such
        a request longer than the model's positions is returned in the second value (window index → its tokens),
        and no text of its request goes into a batch.
        """
        began = time.perf_counter()
        rows = encode(self.classifier, texts)
        self.metrics.tokenize_seconds.observe(time.perf_counter() - began)
        limit = self.classifier.max_tokens
        too_long = {i: len(row) for i, row in enumerate(rows) if strict[i] is not None and len(row) > limit}
        refused = {strict[i] for i in too_long}
        keep = np.array([i for i in range(len(rows)) if strict[i] is None or strict[i] not in refused], dtype=np.int64)
        lengths = [min(len(rows[i]), limit) for i in keep]  # as `pad_batch` cuts them
        batches = planned_batches(lengths, self.limits.max_batch_size, self.call_cost, self.limits.max_batch_tokens)
        return [(keep[b], pad_batch(self.classifier, [rows[i] for i in keep[b]])) for b in batches], too_long

    def _finished(self, call: asyncio.Task) -> None:
        self.running.discard(call)
        self.slots.release()
        self.wakeup.set()  # the model may now be idle: queued texts need not wait longer

    @staticmethod
    def _fail(items: list[_Item], error: Exception) -> None:
        """A failed tokenisation or model call fails its own texts only; the worker carries on."""
        log.error("classifying %d texts failed", len(items), exc_info=error)
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)

    async def _run(self, batch: list[_Item], tokens: np.ndarray) -> None:
        """One model call on `tokens` (int64 [len(batch), L]), traced and timed; its results to the texts' futures."""
        loop = asyncio.get_running_loop()
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(tokens.size)
        try:
            with call_span(self.tracer, [item.request.span for item in batch], tokens.size):
                started = loop.time()
                results = await loop.run_in_executor(self.executor, self._infer, tokens)
                self.metrics.call_seconds.observe(loop.time() - started)
        except Exception as e:  # recorded on the span too
            self._fail(batch, e)
            return
        self.metrics.texts.inc(len(batch))
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)

    def _infer(self, tokens: np.ndarray) -> list[dict]:
        """One model call (in the executor thread) on rows padded as `predict` pads them, so results equal its."""
        return labelled(self.classifier.logits(tokens), self.classifier.class_names)
