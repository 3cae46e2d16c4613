"""serve's token budget and what it tells about itself: model calls never above --max-batch-tokens (the planner
against a brute-force oracle, and a real server read through its own histograms), the batching histograms counting
every request and call, and OpenTelemetry spans (captured in memory, or exported over OTLP/HTTP by the real CLI)
linking each model call to the requests it served."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_serve import cached_bundle, concurrent_classify, held_loader, running, sample, start_held_call, wait_ready
from test_serve_v2 import v2_request

from roberta_infer.bundle import load_bundle
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify, planned_batches
from roberta_infer.runtime import BundleClassifier
from roberta_infer.serve import Limits
from roberta_infer.serve.tracing import otlp_traces_url


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, hf_model) -> Path:
    return cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")


def partitions(items: list[int]):
    """Every partition of `items` into non-empty groups (brute force: 877 for 7 items)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1:]]


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(1, 20), min_size=1, max_size=7), batch_size=st.integers(1, 5),
       budget=st.none() | st.integers(1, 60), call_cost=st.none() | st.integers(0, 40))
def test_planned_batches_is_the_cheapest_split_within_both_bounds(lengths, batch_size, budget, call_cost):
    """Against every way to split the rows into calls: each call within max_batch_size and the token budget (a row
    longer than the budget alone), no split that keeps to them costs less (call_cost None: fewest calls)."""
    def tokens(group) -> int:
        return len(group) * max(lengths[i] for i in group)

    def allowed(group) -> bool:
        return len(group) <= batch_size and (budget is None or len(group) == 1 or tokens(group) <= budget)

    def cost(split) -> int:
        return sum(1 if call_cost is None else call_cost + tokens(group) for group in split)

    planned = [batch.tolist() for batch in planned_batches(lengths, batch_size, call_cost, budget)]
    assert sorted(i for batch in planned for i in batch) == list(range(len(lengths)))
    assert all(allowed(batch) for batch in planned), planned
    assert cost(planned) == min(cost(split) for split in partitions(list(range(len(lengths))))
                                if all(allowed(group) for group in split))


def recording(bundle: Path, calls: list[tuple[int, int]], tokenised: list[int]):
    """`serve`'s loader of `bundle` recording each model call's (rows, padded length) and each tokenising call."""
    def load() -> BundleClassifier:
        classifier = load_bundle(bundle, threads=1)
        run, encode = classifier.logits, classifier.encoder.encode
        classifier.logits = lambda tokens: calls.append(tokens.shape) or run(tokens)
        classifier.encoder.encode = lambda texts: tokenised.append(len(texts)) or encode(texts)
        return classifier

    return load


MAX_BATCH_SIZE, BUDGET = 16, 96  # tokens: at least the model's 64 positions, so no text is over it alone


def test_a_burst_of_mixed_lengths_never_makes_a_call_above_the_token_budget(bundle):
    requests = 48
    texts = [[" ".join(["word"] * (6 + (7 * i + 5 * j) % 50)) for j in range(1 + i % 3)] for i in range(requests)]
    flat = [t for group in texts for t in group]
    shortest = min(len(row) for row in load_bundle(bundle, threads=1).encoder.encode(flat))
    assert MAX_BATCH_SIZE * shortest > BUDGET, "the budget binds: a full batch of the shortest texts is over it"
    expected = classify(load_bundle(bundle, threads=1), flat)
    calls: list[tuple[int, int]] = []
    tokenised: list[int] = []
    with running(recording(bundle, calls, tokenised), Limits(max_batch_size=MAX_BATCH_SIZE, max_batch_tokens=BUDGET,
                                                            max_wait_ms=20)) as base:
        wait_ready(base)
        calls.clear()  # the warm-up and call-cost timing calls
        tokenised.clear()
        answers = concurrent_classify(base, texts, 16)
        metrics = httpx.get(f"{base}/metrics").text
    assert [answers[i].status_code for i in range(requests)] == [200] * requests
    got = np.array([r["logits"] for i in range(requests) for r in answers[i].json()["results"]])
    assert np.abs(got - expected).max() < 1e-4

    def value(name: str, **labels: str) -> float:
        return sample(metrics, f"roberta_infer_{name}", model="roberta", **labels)

    assert value("batch_tokens_bucket", le=f"{float(BUDGET)}") == value("batch_tokens_count") == len(calls) > 0
    assert value("batch_tokens_sum") == sum(rows * width for rows, width in calls)
    assert value("batch_size_count") == value("model_call_duration_seconds_count") == len(calls)
    assert value("batch_size_sum") == sum(rows for rows, _ in calls) == len(flat)
    assert max(rows for rows, _ in calls) > 1, "texts shared model calls"
    assert value("request_queue_duration_seconds_count") == requests
    assert value("tokenization_duration_seconds_count") == len(tokenised) > 0
    assert sum(tokenised) == len(flat)


def test_a_text_longer_than_the_budget_runs_alone(bundle):
    calls: list[tuple[int, int]] = []
    texts = [" ".join(["word"] * 40), "short", "also short", " ".join(["word"] * 8)]
    long = len(load_bundle(bundle, threads=1).encoder.encode(texts[:1])[0])
    assert long > 20
    with running(recording(bundle, calls, []), Limits(max_batch_tokens=20)) as base:
        wait_ready(base)
        calls.clear()
        response = httpx.post(f"{base}/v1/classify", json={"texts": texts}, timeout=30)
    assert response.status_code == 200
    assert np.abs(np.array([r["logits"] for r in response.json()["results"]]) -
                  classify(load_bundle(bundle, threads=1), texts)).max() < 1e-4
    assert (1, long) in calls and all(rows * width <= 20 for rows, width in calls if (rows, width) != (1, long)), calls


TRACE_ID, PARENT_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331  # the W3C Trace Context spec's example


def test_each_model_call_span_links_to_the_request_spans_it_served(bundle):
    """One call held busy while three requests (one with a `traceparent`, one on v2) queue behind it: the next call
    runs all three, and its span links to exactly their spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    text = "the same length"
    sends = [("/v1/classify", {"json": {"text": text}, "headers": {"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"}}),
             ("/v1/classify", {"json": {"texts": [text]}}),
             ("/v2/models/roberta/infer", {"content": v2_request([text])})]
    answers: list[httpx.Response] = []
    with running(held_loader(bundle, hold, entered, release), tracer_provider=provider) as base:
        wait_ready(base)
        held, first = start_held_call(base, hold, entered)
        senders = [threading.Thread(target=lambda path=path, kw=kw: answers.append(httpx.post(base + path, timeout=60, **kw)))
                   for path, kw in sends]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while sample(httpx.get(f"{base}/metrics").text, "roberta_infer_queued_texts") < 3:
            assert time.monotonic() < deadline, "the requests never queued"
            time.sleep(0.02)
        release.set()
        for thread in (held, *senders):
            thread.join(timeout=60)
    assert [r.status_code for r in first + answers] == [200] * 4
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    calls = [s for s in spans if s.name == "model call"]
    assert sorted(s.name for s in requests) == ["POST /v1/classify"] * 3 + ["POST /v2/models/{model_name}/infer"]
    assert all(s.attributes["http.response.status_code"] == 200 for s in requests)
    by_texts = {s.attributes["roberta_infer.batch_size"]: s for s in calls}
    assert len(calls) == 2 and set(by_texts) == {2, 3}
    assert all(call.parent is None for call in calls)  # roots: a call serves several requests
    linked = {n: {link.context.span_id: link.attributes["roberta_infer.texts"] for link in call.links}
              for n, call in by_texts.items()}
    first_span = [s for s in requests if s.context.span_id in linked[2]]
    assert len(first_span) == 1 and linked[2] == {first_span[0].context.span_id: 2}
    assert linked[3] == {s.context.span_id: 1 for s in requests if s is not first_span[0]}
    traced = [s for s in requests if s.context.trace_id == TRACE_ID]
    assert len(traced) == 1 and traced[0].parent.span_id == PARENT_ID and traced[0].parent.is_remote
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), "no provider was set globally"


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace collector: each POST body to /v1/traces parsed into `received`."""

    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            self.received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_the_cli_exports_its_spans_to_an_otlp_endpoint_and_flushes_them_on_exit(bundle):
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    proc = subprocess.Popen([sys.executable, "-m", "roberta_infer.cli", "serve", "--model", str(bundle), "--port", "0",
                             "--threads", "1", "--otlp-endpoint", endpoint], stderr=subprocess.PIPE, text=True)
    try:
        log = []
        while not (match := re.search(r"serving on (http://\S+)", log[-1] if log else "")):
            line = proc.stderr.readline()
            assert line, "server exited early:\n" + "".join(log)
            log.append(line)
        wait_ready(match.group(1))
        assert httpx.post(f"{match.group(1)}/v1/classify", json={"texts": ["one", "two"]}, timeout=30).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        collector.shutdown()
    assert f"exporting traces over OTLP/HTTP to {endpoint}/v1/traces" in "".join(log)
    resources = [r for request in Collector.received for r in request.resource_spans]
    services = {a.value.string_value for r in resources for a in r.resource.attributes if a.key == "service.name"}
    spans = [s for r in resources for scope in r.scope_spans for s in scope.spans]
    request = [s for s in spans if s.name == "POST /v1/classify"]
    call = [s for s in spans if s.name == "model call"]
    assert services == {"roberta-infer"} and len(request) == len(call) == 1
    assert [link.span_id for link in call[0].links] == [request[0].span_id]


@pytest.mark.parametrize("url, traces", [("http://localhost:4318", "http://localhost:4318/v1/traces"),
                                         ("https://collector:4318/", "https://collector:4318/v1/traces"),
                                         ("http://127.0.0.1:4318/custom/traces", "http://127.0.0.1:4318/custom/traces")])
def test_otlp_endpoint_urls(url, traces):
    assert otlp_traces_url(url) == traces


@pytest.mark.parametrize("url", ["localhost:4318", "grpc://localhost:4317", "http://", "http://host:99999", "http://h:0",
                                 "http://host/v1/traces?x=1"])
def test_bad_otlp_endpoints_are_refused(url):
    with pytest.raises(RobertaInferError, match="--otlp-endpoint"):
        otlp_traces_url(url)
