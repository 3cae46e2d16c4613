"""serve: a real server on loopback and real HTTP — results equal `predict`, texts of concurrent requests share
model calls and come back to their own request, bad input gets its 4xx, overload its 503, SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import httpx
import numpy as np
import pytest
import uvicorn

from roberta_infer import default
from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import build_parser
from roberta_infer.data import sha256_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.loadtest import server_metrics
from roberta_infer.predict import classify, predict
from roberta_infer.runtime import BundleClassifier
from roberta_infer.serve import Limits, call_cost_tokens, create_app, listen
from roberta_infer.serve.server import exposure_warning, server_config

TEXTS = ["a gorgeous , witty , seductive movie .", "!", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either .", " ".join(["word"] * 100)]  # the last is truncated


def cached_bundle(hf_model: Path, cache: Path) -> Path:
    """The tiny model served as the default one: exported into `cache` on first use, found there afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(default, "DEFAULT_MODEL", hf_model)
        mp.setenv("ROBERTA_INFER_CACHE", str(cache))
        return default.default_bundle(progress=lambda _: None)


@contextmanager
def running(load: Callable[[], BundleClassifier], limits: Limits = Limits(), *, fastapi_only: bool = False,
            api_key: str | None = None, tracer_provider=None, **config) -> Iterator[str]:
    """uvicorn in a background thread on a free loopback port, set up as `serve` sets it up (`server_config`, with
    `config` for its options; spans to `tracer_provider`); yields its base URL once it accepts connections.

    `fastapi_only` serves the FastAPI app without the POST /v1/classify shortcut (and API key check) in front of it.
    """
    app = create_app(load, limits, api_key=api_key, tracer_provider=tracer_provider)
    config = server_config(app.app if fastapi_only else app, closed=app.models.first.metrics.connections_closed,
                           log_level="warning", **config)
    with in_thread(uvicorn.Server(config)) as base:
        yield base


@contextmanager
def in_thread(server: uvicorn.Server) -> Iterator[str]:
    """`server` running in a background thread on a free loopback port; yields its base URL once it accepts connections."""
    sock = listen("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def cli_server(*args: str, code: str | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """The real CLI's `serve ARGS --port 0` in a subprocess (`code`: Python to run it with instead of the module);
    yields the process and its base URL once it has logged its address (stderr is the caller's to read on); killed
    afterwards if still running."""
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "roberta_infer.cli"]
    proc = subprocess.Popen([*command, "serve", *args, "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        log: list[str] = []
        while not (match := re.search(r"serving on (http://\S+)", log[-1] if log else "")):
            line = proc.stderr.readline()
            assert line, "server exited early:\n" + "".join(log)
            log.append(line)
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def concurrent_classify(url: str, texts: list[list[str]], clients: int) -> dict[int, httpx.Response]:
    """POST /v1/classify `{"texts": texts[i]}` for every i, from `clients` concurrent connections: the responses by i."""
    answers: dict[int, httpx.Response] = {}

    async def client(queue: list[int], http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            answers[i] = await http.post(f"{url}/v1/classify", json={"texts": texts[i]})

    async def main() -> None:
        queue = list(range(len(texts)))
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=60) as http:
            await asyncio.gather(*(client(queue, http) for _ in range(clients)))

    asyncio.run(main())
    return answers


def wait_ready(url: str, timeout: float = 60, headers: dict | None = None) -> None:
    """Until /readyz answers 200; a server that logged its address may not be accepting connections yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", headers=headers).status_code == 200:
                return
        except httpx.ConnectError:
            pass
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.05)


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in /metrics text (0 where absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, hf_model) -> Path:
    return cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")


@pytest.fixture(scope="module")
def url(bundle) -> Iterator[str]:
    with running(lambda: load_bundle(bundle, threads=1)) as base:
        wait_ready(base)
        yield base


def test_default_model_is_exported_once_into_the_cache(bundle, hf_model, tmp_path_factory):
    assert bundle.parent == tmp_path_factory.getbasetemp() / "bundle-cache"
    assert bundle.name == sha256_file(hf_model / "model.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(default, "DEFAULT_MODEL", hf_model)
        mp.setenv("ROBERTA_INFER_CACHE", str(bundle.parent))
        assert default.default_bundle(progress=lambda m: pytest.fail(f"exported again: {m}")) == bundle


def test_an_older_export_in_the_cache_is_exported_again(hf_model, tmp_path, monkeypatch):
    """A cached bundle from before every file's sha256 and the cls-only last layer is replaced, once."""
    monkeypatch.setattr(default, "DEFAULT_MODEL", hf_model)
    monkeypatch.setenv("ROBERTA_INFER_CACHE", str(tmp_path))
    bundle = default.default_bundle(progress=lambda _: None)
    manifest = json.loads((bundle / "manifest.json").read_text())
    older = {key: value for key, value in manifest.items() if key not in ("files", "last_layer")}
    (bundle / "manifest.json").write_text(json.dumps(older))
    messages = []
    assert default.default_bundle(progress=messages.append) == bundle
    assert "replacing an older export" in messages[0]
    assert json.loads((bundle / "manifest.json").read_text())["last_layer"] == "cls-only"
    assert default.default_bundle(progress=lambda m: pytest.fail(f"exported again: {m}")) == bundle
    (bundle / "manifest.json").write_bytes(b"\xff not json")  # damaged: exported again, not an internal error
    assert default.default_bundle(progress=lambda _: None) == bundle
    assert json.loads((bundle / "manifest.json").read_text())["last_layer"] == "cls-only"


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(default, "DEFAULT_MODEL", tmp_path / "default_model")
    with pytest.raises(RobertaInferError, match="default model is missing.*pass --model"):
        default.default_model_dir()


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_results_equal_predict(url, bundle):
    expected = predict(load_bundle(bundle, threads=1), TEXTS)
    response = httpx.post(f"{url}/v1/classify", json={"texts": TEXTS})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(TEXTS)
    for got, want in zip(results, expected):
        assert got["label"] == want["label"]
        assert np.abs(np.array(got["logits"]) - want["logits"]).max() < 1e-4
        assert got["score"] == pytest.approx(softmax(np.array(want["logits"])).max(), abs=1e-5)
    single = httpx.post(f"{url}/v1/classify", json={"text": TEXTS[0]}).json()
    assert len(single["results"]) == 1 and single["results"][0]["label"] == expected[0]["label"]


def test_a_full_queue_runs_as_length_sorted_model_calls(bundle):
    calls: list[list[int]] = []

    def load() -> BundleClassifier:  # the bundle, recording each model call's real token counts
        classifier = load_bundle(bundle, threads=1)
        run = classifier.logits
        classifier.logits = lambda tokens: calls.append((tokens != classifier.encoder.pad).sum(axis=1).tolist()) or run(tokens)
        return classifier

    texts = [" ".join(["word"] * n) for n in (9, 2, 14, 5, 1, 11, 7, 3, 16, 4, 12, 6, 8, 15, 10, 13)]
    with running(load, Limits(max_batch_size=4, max_wait_ms=1000, parallel_calls=2)) as base:
        wait_ready(base)
        calls.clear()  # the warm-up and call-cost timing calls
        results = httpx.post(f"{base}/v1/classify", json={"texts": texts}, timeout=30).json()["results"]
    every = [n for call in calls for n in call]
    assert all(len(call) <= 4 for call in calls) and len(every) == len(set(every)) == 16, "each text in one call"
    calls.sort(key=min)  # two calls run at once, so they may start in either order
    assert all(max(shorter) < min(longer) for shorter, longer in zip(calls, calls[1:])), calls
    expected = classify(load_bundle(bundle, threads=1), texts)
    assert np.abs(np.array([r["logits"] for r in results]) - expected).max() < 1e-4


def test_call_cost_is_the_fixed_part_of_a_call_in_tokens(bundle, monkeypatch):
    """On a fake clock each model call advances by its modelled cost, so the fit is exact and no sleep decides it."""
    classifier = load_bundle(bundle, threads=1)
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def costing(seconds: float, rows: int) -> np.ndarray:
        clock[0] += seconds
        return np.zeros((rows, 2), dtype=np.float32)

    fixed, per_token = 0.02, 0.0005  # seconds: a call of n tokens takes fixed + n × per_token
    classifier.logits = lambda tokens: costing(fixed + per_token * tokens.size, len(tokens))
    assert call_cost_tokens(classifier, batch_size=4, repeats=2) == pytest.approx(fixed / per_token, rel=1e-6)
    classifier.logits = lambda tokens: costing(fixed, len(tokens))  # no per-token cost: splitting never pays
    from roberta_infer.serve import WARMUP_TEXT
    assert call_cost_tokens(classifier, batch_size=4, repeats=2) == 4 * len(classifier.encoder.encode([WARMUP_TEXT])[0])


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_a_static_shape_bundle_is_served_in_plain_length_sorted_batches(tmp_path, hf_model):
    static = tmp_path / "static"
    build_bundle(load_classifier(hf_model), static, batch_size=4, seq_len=16, progress=lambda _: None)
    assert call_cost_tokens(load_bundle(static, threads=1), batch_size=4) is None  # every call costs a full (4, 16)
    with running(lambda: load_bundle(static, threads=1)) as base:
        wait_ready(base)
        assert httpx.get(f"{base}/readyz").json()["model"]["call_cost_tokens"] is None
        results = httpx.post(f"{base}/v1/classify", json={"texts": TEXTS * 2}, timeout=30).json()["results"]
    expected = predict(load_bundle(static, threads=1), TEXTS * 2)
    assert np.abs(np.array([r["logits"] for r in results]) - np.array([e["logits"] for e in expected])).max() < 1e-4


def test_a_failed_model_call_fails_its_own_request_with_a_500_and_the_server_carries_on(bundle):
    fail_next = threading.Event()

    def load() -> BundleClassifier:
        classifier = load_bundle(bundle, threads=1)
        logits = classifier.logits

        def sometimes_failing(tokens: np.ndarray) -> np.ndarray:
            if fail_next.is_set():
                fail_next.clear()
                raise RuntimeError("the accelerator fell over")
            return logits(tokens)

        classifier.logits = sometimes_failing
        return classifier

    with running(load) as base:
        wait_ready(base)
        fail_next.set()
        failed = httpx.post(f"{base}/v1/classify", json={"text": TEXTS[0]}, timeout=30)
        # the client is told it failed, not the server's internals (those go to the server's log)
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error: the model call failed (see the server log)"}
        assert httpx.post(f"{base}/v1/classify", json={"text": TEXTS[0]}, timeout=30).status_code == 200
        assert 'roberta_infer_errors_total{reason="internal"} 1.0' in httpx.get(f"{base}/metrics").text


def test_a_model_that_cannot_load_makes_readyz_say_failed_and_why():
    def load() -> BundleClassifier:
        raise RobertaInferError("bundle /models/x is missing manifest.json")

    with running(load) as base:
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{base}/readyz")).json()["status"] == "loading":  # until the load has been tried
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "missing manifest.json" in ready.json()["error"]
        refused = httpx.post(f"{base}/v1/classify", json={"text": "x"})
        assert refused.status_code == 503 and "missing manifest.json" in refused.json()["error"]


def test_a_batching_worker_that_dies_fails_its_texts_and_the_server_says_so(bundle, monkeypatch):
    from roberta_infer.serve import batcher

    with running(lambda: load_bundle(bundle, threads=1)) as base:
        wait_ready(base)
        monkeypatch.setattr(batcher, "LOOKAHEAD", None)  # a bug in the worker's loop: `size * None` raises there
        first = httpx.post(f"{base}/v1/classify", json={"text": "x"}, timeout=30)
        assert first.status_code == 500  # its texts were queued when the worker died: they fail, not hang
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        after = httpx.post(f"{base}/v1/classify", json={"text": "x"})
        assert after.status_code == 503 and "batching worker stopped" in after.json()["error"]


def test_an_idle_model_runs_a_lone_request_without_waiting_for_company(bundle):
    with running(lambda: load_bundle(bundle, threads=1), Limits(max_wait_ms=5000)) as base:
        wait_ready(base)
        began = time.monotonic()
        response = httpx.post(f"{base}/v1/classify", json={"text": TEXTS[0]}, timeout=30)
        took = time.monotonic() - began
    assert response.status_code == 200
    assert took < 2.5, f"a lone request waited {took:.1f} s of the 5 s max-wait"


def test_concurrent_clients_share_batches_and_get_their_own_results(url, bundle):
    requests, clients = 320, 64
    texts = [[f"review {i} : {TEXTS[i % 4]}", f"{'very ' * (i % 7)}good , said number {i}"] for i in range(requests)]
    expected = classify(load_bundle(bundle, threads=1), [t for pair in texts for t in pair]).reshape(requests, 2, -1)
    before = server_metrics(httpx.get(f"{url}/metrics").text)
    answers = concurrent_classify(url, texts, clients)
    assert sorted(answers) == list(range(requests))
    assert [i for i, r in answers.items() if r.status_code != 200] == []
    for i, response in answers.items():
        got = np.array([r["logits"] for r in response.json()["results"]])
        assert np.abs(got - expected[i]).max() < 1e-4, f"request {i} got another request's results"
    after = server_metrics(httpx.get(f"{url}/metrics").text)
    batches = after["count"] - before["count"]
    single = after["buckets"][1.0] - before["buckets"].get(1.0, 0)
    assert after["sum"] - before["sum"] == 2 * requests
    assert batches - single > 0 and batches < requests, "texts of different requests shared model calls"


BAD = [
    (b'{"texts": ["ok"', 400, "not valid JSON"),
    (b'{"text": "caf\xe9"}', 400, "not UTF-8"),
    (b"[1, 2]", 422, "is an array, not an object"),
    (b'{"texts": "one"}', 422, '"texts" is a string, not an array'),
    (b'{"texts": ["ok", 3]}', 422, '"texts"[1] is a number, not a string'),
    (b'{"text": null}', 422, '"text" is null, not a string'),
    (b'{"texts": []}', 422, '"texts" is empty'),
    (b'{"texts": ["a"], "text": "b"}', 422, 'both "texts" and "text"'),
    (b'{"sentences": ["a"]}', 422, 'unknown field "sentences"'),
    (b'{"text": "\\ud800"}', 422, "not valid Unicode"),
    (json.dumps({"texts": ["a"] * 257}).encode(), 413, '"texts" has 257 texts; the limit is 256'),
    (json.dumps({"texts": ["ok", "x" * 10_001]}).encode(), 413, '"texts"[1] has 10001 characters; the limit is 10000'),
    (b'{"texts": ["ok"], "timeout_ms": 0}', 422, '"timeout_ms" is 0: give a positive number of milliseconds'),
    (b'{"texts": ["ok"], "timeout_ms": "soon"}', 422, '"timeout_ms" is a string: give a positive number'),
    (b'{"text": "ok", "timeout_ms": true}', 422, '"timeout_ms" is a boolean: give a positive number'),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_gets_a_4xx_with_a_json_error(url, body, status, message):
    response = httpx.post(f"{url}/v1/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert httpx.post(f"{url}/v1/classify", json={"text": "still fine"}).status_code == 200


def test_the_classify_shortcut_answers_as_the_fastapi_route_does(bundle):
    """ClassifyFirst skips FastAPI's middleware for POST /v1/classify only: the same answers, errors included."""
    bodies = [b'{"texts": ["a gorgeous , witty , seductive movie .", "!"]}', b'{"texts": ["fine", " "]}', b'{"texts": []}',
              b"{not json", b'{"text": 3}']
    answers = []
    for fastapi_only in (False, True):
        with running(lambda: load_bundle(bundle, threads=1), fastapi_only=fastapi_only) as base:
            wait_ready(base)
            answers.append([(r.status_code, r.json()) for r in
                            (httpx.post(f"{base}/v1/classify", content=body) for body in bodies)])
            wrong_method = httpx.get(f"{base}/v1/classify")
            assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}
    assert [status for status, _ in answers[0]] == [200, 400, 422, 400, 422]
    assert answers[0] == answers[1]


def test_health_ready_metrics_openapi(url, bundle):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["class_names"] == ["negative", "positive"]
    manifest = json.loads((bundle / "manifest.json").read_text())  # what the export recorded
    served = ready.json()["model"]
    assert (served["engine"], served["precision"]) == (manifest["engine"], manifest["precision"]) == ("onnxruntime", "fp32")
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("roberta_infer_requests_total", "roberta_infer_errors_total", "roberta_infer_texts_total",
                 "roberta_infer_batch_size_bucket", "roberta_infer_batch_tokens_bucket",
                 "roberta_infer_request_queue_duration_seconds_bucket", "roberta_infer_tokenization_duration_seconds_bucket",
                 "roberta_infer_model_call_duration_seconds_bucket", "process_resident_memory_bytes"):
        assert name in metrics.text
    spec = httpx.get(f"{url}/openapi.json").json()
    operation = spec["paths"]["/v1/classify"]["post"]
    assert set(operation["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "texts", "text", "timeout_ms", "truncate", "model"}
    assert {"200", "400", "413", "422", "503"} <= set(operation["responses"])
    missing = httpx.get(f"{url}/nowhere")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    for offline in ("/docs", "/redoc"):  # Swagger UI and ReDoc would load their scripts from a CDN
        assert httpx.get(f"{url}{offline}").status_code == 404


KEY = "s3cret-Key_0"
GUARDED = [("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/v2"),
           ("GET", "/v2/models/roberta"), ("GET", "/v2/models/roberta/ready"), ("POST", "/v1/classify"),
           ("POST", "/v2/models/roberta/infer"), ("GET", "/nowhere")]


def test_an_api_key_guards_every_route_but_the_health_probes(bundle):
    with running(lambda: load_bundle(bundle, threads=1), api_key=KEY) as base:
        for path in ("/healthz", "/v2/health/live"):
            assert httpx.get(f"{base}{path}").status_code == 200
        wait_ready(base, headers={"Authorization": f"Bearer {KEY}"})
        assert httpx.get(f"{base}/v2/health/ready").status_code == 200
        bodies = {"/v1/classify": {"text": "fine"},
                  "/v2/models/roberta/infer": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["fine"]}]}}
        refused = 0
        for method, path in GUARDED:
            for headers in ({}, {"Authorization": f"Bearer {KEY}x"}, {"Authorization": KEY},
                            {"Authorization": f"Basic {KEY}"}, {"X-Api-Key": KEY}):
                response = httpx.request(method, f"{base}{path}", json=bodies.get(path), headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer" and response.text.count("\n") == 0
                assert list(response.json()) == ["error"] and KEY not in response.text
                refused += 1
            for scheme in ("Bearer", "bearer"):
                response = httpx.request(method, f"{base}{path}", json=bodies.get(path),
                                         headers={"Authorization": f"{scheme} {KEY}"})
                assert response.status_code == (404 if path in ("/docs", "/nowhere") else 200), (method, path)
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert sample(metrics, "roberta_infer_errors_total", reason="unauthorized") == refused


def test_listening_beyond_loopback_without_a_key_is_warned_about():
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"):
        assert exposure_warning(host, None) is None
    for host in ("0.0.0.0", "::", "192.168.1.7", "example.org"):
        assert "without an API key" in exposure_warning(host, None)
        assert exposure_warning(host, KEY) is None


def test_beyond_max_connections_all_busy_uvicorn_answers_503_and_metrics_count_them(bundle):
    """With --max-connections 2 and one request in flight (its model call held), no connection is idle to make room
    for: a second client's request gets 503 (uvicorn counts the requesting connection too) until the first is
    answered."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    with running(held_loader(bundle, hold, entered, release), max_connections=2, keep_alive_s=600) as base:
        wait_ready(base)
        sender, first = start_held_call(base, hold, entered)
        with httpx.Client(base_url=base) as second:
            assert second.get("/readyz").status_code == 503
            release.set()
            sender.join(30)
            assert first[0].status_code == 200
            metrics = second.get("/metrics")
            assert metrics.status_code == 200
            assert sample(metrics.text, "roberta_infer_connections_refused_total") == 1


def test_an_idle_keep_alive_connection_is_closed_by_the_server(bundle):
    with running(lambda: load_bundle(bundle, threads=1), keep_alive_s=0.2) as base:
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while chunk := conn.recv(4096):  # the response, then b"" once the server closes the idle connection
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status":"ok"}')


def test_not_ready_then_overloaded(bundle):
    """A slow model behind a 4-text queue: 503 while loading, then 503 + Retry-After for what does not fit."""
    gate, hold, release = threading.Event(), threading.Event(), threading.Event()

    def slow_load() -> BundleClassifier:
        gate.wait(30)
        classifier = load_bundle(bundle, threads=1)
        logits = classifier.logits

        def held(tokens: np.ndarray) -> np.ndarray:  # once `hold` is set, a model call waits for `release`
            if hold.is_set():
                release.wait(30)
            return logits(tokens)

        classifier.logits = held
        return classifier

    limits = Limits(max_batch_size=2, max_wait_ms=1, max_texts_per_request=2, max_text_chars=20, max_queue=4)
    with running(slow_load, limits) as base:
        assert httpx.get(f"{base}/readyz").status_code == 503
        loading = httpx.post(f"{base}/v1/classify", json={"text": "early"})
        assert loading.status_code == 503 and "loading" in loading.json()["error"] and loading.headers["retry-after"]
        gate.set()
        wait_ready(base)
        too_big = httpx.post(f"{base}/v1/classify", content=b'{"text": "' + b" " * 2000 + b'"}')
        assert too_big.status_code == 413 and "limit" in too_big.json()["error"]

        async def burst() -> list[httpx.Response]:
            """12 requests at a model held busy: released only once each request is either refused or waiting."""
            async with httpx.AsyncClient(timeout=30) as http:
                refused_before = sample((await http.get(f"{base}/metrics")).text, "roberta_infer_errors_total",
                                        reason="overloaded")
                sent = asyncio.gather(*(http.post(f"{base}/v1/classify", json={"texts": [f"t{i}", "u"]}) for i in range(12)))
                deadline = time.monotonic() + 30
                # Waiting: those in the batcher's window (the held call's and, if they came together, up to LOOKAHEAD
                # batches' worth) and two in the 4-text queue, so at most 8 + 2 of 12: the rest refused. No call
                # ends while held, so once every request is counted as one or the other, all have arrived.
                while True:
                    metrics = (await http.get(f"{base}/metrics")).text
                    refused = sample(metrics, "roberta_infer_errors_total", reason="overloaded") - refused_before
                    waiting = sample(metrics, "roberta_infer_requests_in_flight")
                    if refused + waiting == 12:
                        break
                    assert time.monotonic() < deadline, "the burst never reached the server"
                    await asyncio.sleep(0.01)
                release.set()
                return await sent

        hold.set()
        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2  # a full queue holds two requests
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"]
            else:
                assert len(r.json()["results"]) == 2
        metrics = httpx.get(f"{base}/metrics").text
        assert 'roberta_infer_errors_total{reason="overloaded"}' in metrics


def held_loader(bundle: Path, hold: threading.Event, entered: threading.Event,
                release: threading.Event) -> Callable[[], BundleClassifier]:
    """`serve`'s loader of `bundle` whose model calls, once `hold` is set, set `entered` and wait for `release`."""

    def load() -> BundleClassifier:
        classifier = load_bundle(bundle, threads=1)
        logits = classifier.logits

        def held(tokens: np.ndarray) -> np.ndarray:
            if hold.is_set():
                entered.set()
                release.wait(30)
            return logits(tokens)

        classifier.logits = held
        return classifier

    return load


def start_held_call(base: str, hold: threading.Event, entered: threading.Event
                    ) -> tuple[threading.Thread, list[httpx.Response]]:
    """Set `hold` and send two texts from a thread; return once their model call is held (`held_loader`): the thread
    and the list its response will be appended to."""
    hold.set()
    first: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: first.append(
        httpx.post(f"{base}/v1/classify", json={"texts": ["held", "call"]}, timeout=60)))
    sender.start()
    assert entered.wait(30), "the first request never reached the model"
    return sender, first


@pytest.mark.parametrize("whose", ["request", "server"])
def test_texts_queued_past_their_deadline_are_dropped_with_504(bundle, whose):
    """A model call held busy: requests queued behind it get 504 once their deadline passes, while the call is still
    held, and their texts never reach the model. The server's --request-timeout-ms also ends the held request (its
    texts are computed all the same), and the sooner of the server's and a request's own deadline applies."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    held_load = held_loader(bundle, hold, entered, release)

    server_ms, own_ms = (None, 50) if whose == "request" else (50, 600_000)
    with running(held_load, Limits(max_batch_size=2, max_wait_ms=1, request_timeout_ms=server_ms)) as base:
        wait_ready(base)
        before = httpx.get(f"{base}/metrics").text
        sender, first = start_held_call(base, hold, entered)
        if whose == "server":  # its deadline passes while its texts are in the held model call
            sender.join(30)
            assert first[0].status_code == 504
        v1 = httpx.post(f"{base}/v1/classify", json={"texts": ["c", "d", "e"], "timeout_ms": own_ms}, timeout=60)
        v2 = httpx.post(f"{base}/v2/models/roberta/infer", timeout=60, json={
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["f"]}], "parameters": {"timeout_ms": own_ms}})
        assert v1.status_code == 504 and v1.json() == {
            "error": "the request's deadline (50 ms) passed before its texts were classified"}
        assert v2.status_code == 504 and v2.json() == v1.json()
        release.set()
        sender.join(30)
        assert first[0].status_code == (200 if whose == "request" else 504)
        deadline = time.monotonic() + 30
        while (dropped := sample(httpx.get(f"{base}/metrics").text, "roberta_infer_texts_dropped_total")
               - sample(before, "roberta_infer_texts_dropped_total")) < 4:
            assert time.monotonic() < deadline, "the queued texts were never dropped"
        after = httpx.get(f"{base}/metrics").text
        assert dropped == 4 and sample(after, "roberta_infer_errors_total", reason="deadline") == (2 if whose == "request" else 3)
        assert sample(after, "roberta_infer_texts_total") - sample(before, "roberta_infer_texts_total") == 2  # the held call's


def test_a_client_that_disconnects_has_its_queued_texts_dropped(bundle):
    """Behind a held model call, a client queues three texts and hangs up: the server notices at once (while the
    call is still held) and its texts never reach the model."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    held_load = held_loader(bundle, hold, entered, release)

    def metric(name: str, **labels: str) -> float:
        return sample(httpx.get(f"{base}/metrics").text, name, **labels) - sample(before, name, **labels)

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, what

    with running(held_load, Limits(max_batch_size=2, max_wait_ms=1)) as base:
        wait_ready(base)
        before = httpx.get(f"{base}/metrics").text
        sender, first = start_held_call(base, hold, entered)
        body = b'{"texts": ["c", "d", "e"]}'
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30) as conn:
            conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            until(lambda: metric("roberta_infer_requests_in_flight") == 2, "the second request never got queued")
        until(lambda: metric("roberta_infer_errors_total", reason="disconnected") == 1, "the disconnect went unnoticed")
        assert not release.is_set() and metric("roberta_infer_texts_dropped_total") == 0  # still queued, call held
        release.set()
        sender.join(30)
        assert first[0].status_code == 200
        until(lambda: metric("roberta_infer_texts_dropped_total") == 3, "the queued texts were never dropped")
        assert metric("roberta_infer_texts_total") == 2 and metric("roberta_infer_requests_in_flight") == 0


# The real CLI whose model calls wait while the file $HOLD exists: `python -c HOLD_CLI serve ...`
HOLD_CLI = ("import os, sys, time\nfrom pathlib import Path\nfrom roberta_infer.runtime import BundleClassifier\n"
            "run, hold = BundleClassifier.run, Path(os.environ['HOLD'])\n"
            "def held(self, tokens):\n    while hold.exists():\n        time.sleep(0.01)\n    return run(self, tokens)\n"
            "BundleClassifier.run = held\nfrom roberta_infer.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def test_sigterm_finishes_in_flight_requests_then_exits_0(bundle, tmp_path, monkeypatch):
    """The real CLI in a subprocess with its model calls held: requests in flight at SIGTERM still get 200 once the
    model is let go, new connections are refused meanwhile, and serve exits 0."""
    hold = tmp_path / "hold"
    monkeypatch.setenv("HOLD", str(hold))
    with cli_server("--model", str(bundle), "--threads", "1", "--max-batch-size", "4", code=HOLD_CLI) as (proc, base):
        wait_ready(base)
        hold.touch()
        results: dict[int, httpx.Response] = {}
        senders = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, httpx.post(f"{base}/v1/classify", json={"texts": [f"text {i}", "more"]}, timeout=60))) for i in range(3)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while "roberta_infer_requests_in_flight 3.0" not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "requests never reached the server"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:  # new connections are refused once the server has stopped listening, in-flight requests or not
            try:
                httpx.get(f"{base}/healthz", timeout=5)
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
            time.sleep(0.02)
        assert not results  # still held
        hold.unlink()
        for sender in senders:
            sender.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        rest = proc.communicate()[1]
    assert [results[i].status_code for i in range(3)] == [200, 200, 200]
    assert all(len(results[i].json()["results"]) == 2 for i in range(3))
    assert "Shutting down" in rest and "Finished server process" in rest


def test_cli_defaults_are_the_limits_and_bad_settings_are_refused():
    args = build_parser().parse_args(["serve"])
    assert Limits(args.max_batch_size, args.max_wait_ms, args.max_texts_per_request, args.max_text_chars,
                  args.max_queue, args.parallel_calls, args.max_body_bytes, args.request_timeout_ms) == Limits()
    assert (args.max_connections, args.keep_alive_s, args.api_key) == (1000, 5.0, None)
    with pytest.raises(RobertaInferError, match="--max-queue"):
        Limits(max_queue=10).check()
    with pytest.raises(RobertaInferError, match="--max-batch-size must be positive"):
        Limits(max_batch_size=0).check()
    with pytest.raises(RobertaInferError, match="--parallel-calls must be positive"):
        Limits(parallel_calls=0).check()


def test_a_busy_port_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RobertaInferError, match="cannot listen on 127.0.0.1"):
            listen("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize("args, message", [
    (["--port", "99999"], "argument --port: must be in [0, 65535], got 99999"),
    (["--port", "-1"], "argument --port: must be in [0, 65535], got -1"),
    (["--threads", "-3"], "argument --threads: must be in [1, 4096], got -3"),
    (["--threads", "0"], "argument --threads: must be in [1, 4096], got 0"),
    (["--name", "a/b"], "--name 'a/b'"),
    (["--api-key", "s3cret key"], "--api-key / ROBERTA_INFER_API_KEY: give a non-empty key"),
    (["--api-key", "s3cret", "--port", "99999"], "argument --port"),
    (["--max-body-bytes", "0"], "argument --max-body-bytes"),
    (["--max-batch-tokens", "0"], "argument --max-batch-tokens"),
    (["--max-header-bytes", "0"], "argument --max-header-bytes"),
    (["--read-timeout-s", "0"], "argument --read-timeout-s"),
    (["--otlp-endpoint", "localhost:4318"], "--otlp-endpoint 'localhost:4318': give an OTLP/HTTP collector's URL"),
    (["--grpc-port", "70000"], "argument --grpc-port: must be in [0, 65535], got 70000"),
    (["--port", "8123", "--grpc-port", "8123"], "--grpc-port 8123 is --port's too"),
])
def test_impossible_serve_settings_are_one_line_errors(args, message, tmp_path):
    """The real CLI in a subprocess: exit 2 and one line on stderr, before anything listens or loads (the bundle is
    only a manifest: loading it would fail otherwise)."""
    (tmp_path / "manifest.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "serve", "--model", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "s3cret" not in done.stderr  # an API key is never repeated


def test_an_api_key_from_the_environment_is_checked_and_never_printed(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "serve", "--model", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "ROBERTA_INFER_API_KEY": "s3 cret"})
    assert done.returncode == 2 and "ROBERTA_INFER_API_KEY" in done.stderr and "s3 cret" not in done.stderr


def test_a_damaged_bundle_stops_serve_with_one_line_and_no_traceback(bundle, tmp_path):
    """The real CLI in a subprocess: the bundle's edited special_ids.json is named (exit 2); the log says why, once."""
    import shutil

    shutil.copytree(bundle, tmp_path / "b")
    (tmp_path / "b" / "special_ids.json").write_text('{"bos": 0, "pad": 1, "eos": 2, "unk": 2, "split_unknown": false}')
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "serve", "--model", str(tmp_path / "b"), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"error: {tmp_path / 'b' / 'special_ids.json'} does not match its sha256")
