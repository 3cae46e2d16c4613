"""What the server reports about itself: Prometheus metrics (/metrics) and its log."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one: our lines share its format and level
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds


class Metrics:
    """Prometheus metrics in a registry of the app's own, so several apps in one process do not collide.

    The batching histograms carry the served model's name, `model` (label `model`; the attributes are its series).
    Batch sizes are bucketed at the powers of two below `max_batch_size` and at it; padded batch tokens at the powers
    of two from 16 to 65536 and at `max_batch_tokens` (where set), so the share of calls within the budget reads
    off one bucket; times in seconds.
    """

    def __init__(self, max_batch_size: int, max_batch_tokens: int | None, model: str):
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc., for loadtest's memory figures
        sizes = sorted({2**i for i in range(max_batch_size.bit_length()) if 2**i < max_batch_size} | {max_batch_size})
        tokens = sorted({2**i for i in range(4, 17)} | ({max_batch_tokens} if max_batch_tokens else set()))
        self.requests = Counter("roberta_infer_requests", "classify requests answered, by HTTP status", ["status"], registry=r)
        self.errors = Counter("roberta_infer_errors", "requests refused or failed, by reason (unauthorized: any route)",
                              ["reason"], registry=r)
        self.texts = Counter("roberta_infer_texts", "texts classified", registry=r)
        self.dropped = Counter("roberta_infer_texts_dropped", "queued texts dropped before their model call: their "
                               "request's deadline passed or it was cancelled", registry=r)

        def histogram(name: str, text: str, buckets) -> Histogram:
            return Histogram(name, text, ["model"], buckets=buckets, registry=r).labels(model)

        self.batch_size = histogram("roberta_infer_batch_size", "texts (rows) per model call", sizes)
        self.batch_tokens = histogram("roberta_infer_batch_tokens", "padded tokens per model call: rows × the longest "
                                      "row (cut to the model's positions)", tokens)
        self.queue_seconds = histogram("roberta_infer_request_queue_duration_seconds", "time a request's texts waited "
                                       "in the queue: from arrival until the last of them was taken for tokenising "
                                       "(requests dropped before: not observed)", LATENCY_BUCKETS)
        self.tokenize_seconds = histogram("roberta_infer_tokenization_duration_seconds", "time to tokenise one window "
                                          "of queued texts (one or more model calls' worth)", LATENCY_BUCKETS)
        self.call_seconds = histogram("roberta_infer_model_call_duration_seconds", "time of one model call (run + softmax)",
                                      LATENCY_BUCKETS)
        self.queued = Gauge("roberta_infer_queued_texts", "texts waiting for a model call", registry=r)
        self.connections_refused = Counter("roberta_infer_connections_refused", "requests uvicorn answered 503 "
                                           "beyond --max-connections (from its log: every server in this process)",
                                           registry=r)
        self.connections_closed = Counter("roberta_infer_connections_closed", "HTTP connections the server closed, by "
                                          "reason: idle_at_limit (to make room beyond --max-connections), "
                                          "read_timeout (a request not whole within --read-timeout-s), head_too_large "
                                          "(431, over --max-header-bytes)", ["reason"], registry=r)
        self.in_flight = Gauge("roberta_infer_requests_in_flight", "classify requests being handled", registry=r)


class ConnectionRefusals(logging.Filter):
    """Counts uvicorn's 503s beyond --max-connections (`limit_concurrency`) into `counter`: uvicorn answers them
    itself, before any app runs, and says so only in its log ("Exceeded concurrency limit."). The record is kept."""

    def __init__(self, counter: Counter):
        super().__init__()
        self.counter = counter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Exceeded concurrency limit.":
            self.counter.inc()
        return True
