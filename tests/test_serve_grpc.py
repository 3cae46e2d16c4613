"""serve --grpc-port: the Open Inference Protocol over gRPC, called by the real `tritonclient.grpc` client (and grpcio's
stub of Triton's own service) against the real CLI in a subprocess: the same results as HTTP /v1/classify, the
protocol's health and metadata, the API key, clear errors as gRPC status codes, SIGTERM finishing calls in flight."""

from __future__ import annotations

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

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from test_serve import HOLD_CLI, held_loader, in_thread, sample, softmax, start_held_call, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from roberta_infer.bundle import load_bundle
from roberta_infer.runtime import BundleClassifier
from roberta_infer.serve import Limits, create_app
from roberta_infer.serve.server import Server, server_config

KEY = "grpc-s3cret"
AUTH = {"authorization": f"Bearer {KEY}"}
TEXTS = ["a gorgeous , witty , seductive movie .", "!", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either ."]


@contextmanager
def serve_process(*args: str, cli: list[str] | None = None, env: dict | None = None
                  ) -> Iterator[tuple[subprocess.Popen, str, str, list[str]]]:
    """`roberta-infer serve --port 0 --grpc-port 0 ARGS` in a subprocess (`cli`: how to start it, `env` its
    environment): yields the process, its base URL, its gRPC address and its log so far, once it has logged both;
    killed afterwards if still running."""
    proc = subprocess.Popen([*(cli or [sys.executable, "-m", "roberta_infer.cli"]), "serve", "--port", "0",
                             "--grpc-port", "0", *args], stderr=subprocess.PIPE, text=True, env=env)
    log: list[str] = []
    addresses: dict[str, str] = {}
    both = threading.Event()

    def read() -> None:  # drains stderr for the process's whole life, so it never blocks on a full pipe
        for line in proc.stderr:
            log.append(line)
            for key, pattern in (("http", r"serving on (http://\S+)"), ("grpc", r"gRPC \(KServe v2\) on (\S+)")):
                if match := re.search(pattern, line):
                    addresses[key] = match.group(1)
            if len(addresses) == 2:
                both.set()
        both.set()  # the process ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert both.wait(120) and len(addresses) == 2, "serve never logged its addresses:\n" + "".join(log)
        yield proc, addresses["http"], addresses["grpc"], log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        reader.join(30)


@pytest.fixture(scope="module")
def server(hf_bundle) -> Iterator[tuple[str, str]]:
    with serve_process("--model", str(hf_bundle), "--threads", "1", "--api-key", KEY, "--max-texts-per-request", "8",
                       "--max-body-bytes", "100000") as (_, base, address, _):
        wait_ready(base, headers=AUTH)
        yield base, address


@pytest.fixture()
def client(server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server[1])
    yield client
    client.close()


def text_input(texts: list[str]) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


def refused(call, code: str, message: str) -> None:
    """`call()` raises tritonclient's InferenceServerException with gRPC status `code` and `message` in its text."""
    with pytest.raises(InferenceServerException) as error:
        call()
    assert error.value.status() == f"StatusCode.{code}" and message in error.value.message(), error.value


def test_infer_gives_v1s_results(server, client):
    v1 = httpx.post(f"{server[0]}/v1/classify", json={"texts": TEXTS}, headers=AUTH).json()["results"]
    result = client.infer("roberta", [text_input(TEXTS)], request_id="r-9", headers=AUTH)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("roberta", "1", "r-9")
    assert [o.name for o in response.outputs] == ["label", "score", "logits"]
    logits, scores = result.as_numpy("logits"), result.as_numpy("score")
    assert logits.shape == (len(TEXTS), 2) and logits.dtype == np.float32
    assert np.abs(logits - np.array([r["logits"] for r in v1])).max() <= 1e-5
    assert [label.decode() for label in result.as_numpy("label")] == [r["label"] for r in v1]
    assert scores == pytest.approx(softmax(np.array([r["logits"] for r in v1])).max(axis=1), abs=1e-5)


def test_texts_as_bytes_contents_and_one_output(server, client):
    """Triton's stub with the texts in `contents.bytes_contents` (not raw) gets the same logits, only those asked for."""
    expected = client.infer("roberta", [text_input(TEXTS[:2])], headers=AUTH).as_numpy("logits")
    request = service_pb2.ModelInferRequest(model_name="roberta", outputs=[{"name": "logits"}], inputs=[
        {"name": "text", "datatype": "BYTES", "shape": [2, 1], "contents": {"bytes_contents": [t.encode() for t in TEXTS[:2]]}}])
    with grpc.insecure_channel(server[1]) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=tuple(AUTH.items()))
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("logits", "FP32", [2, 2])]
    assert np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 2).tolist() == expected.tolist()


def test_health_metadata_and_config(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("roberta", headers=AUTH) and client.is_model_ready("roberta", "1", headers=AUTH)
    server = client.get_server_metadata(headers=AUTH, as_json=True)
    assert server["name"] == "roberta-infer"
    model = client.get_model_metadata("roberta", headers=AUTH, as_json=True)
    assert (model["name"], model["versions"]) == ("roberta", ["1"])
    assert model["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}]  # int64 as JSON strings
    assert model["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": ["-1"]},
                                {"name": "score", "datatype": "FP32", "shape": ["-1"]},
                                {"name": "logits", "datatype": "FP32", "shape": ["-1", "2"]}]
    config = client.get_model_config("roberta", headers=AUTH, as_json=True)["config"]
    assert [(t["name"], t["data_type"]) for t in config["input"]] == [("text", "TYPE_STRING")]
    assert [(t["name"], t["data_type"]) for t in config["output"]] == [
        ("label", "TYPE_STRING"), ("score", "TYPE_FP32"), ("logits", "TYPE_FP32")]


def test_an_api_key_guards_every_rpc_but_the_health_probes(client):
    assert client.is_server_live() and client.is_server_ready()  # no key needed
    for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
        refused(lambda: client.infer("roberta", [text_input(["fine"])], headers=headers), "UNAUTHENTICATED",
                "authorization: Bearer KEY")
        refused(lambda: client.get_model_metadata("roberta", headers=headers), "UNAUTHENTICATED", "API key")
        refused(lambda: client.is_model_ready("roberta", headers=headers), "UNAUTHENTICATED", "API key")
    assert client.infer("roberta", [text_input(["fine"])], headers={"authorization": f"bearer {KEY}"})  # any case


def int64_input() -> triton.InferInput:
    tensor = triton.InferInput("text", [1], "INT64")
    tensor.set_data_from_numpy(np.array([3], dtype=np.int64))
    return tensor


@pytest.mark.parametrize("inputs, extra, message", [
    (lambda: [text_input(["fine", ""])], {}, "input element 1 is empty: nothing to classify"),
    (lambda: [text_input(["   "])], {}, "input element 0 is only whitespace"),
    (lambda: [int64_input()], {}, "the input is 'text' of datatype 'INT64'; this model takes 'text' of datatype BYTES"),
    (lambda: [text_input(["x"] * 9)], {}, "input 'text' has 9 texts; the limit is 8"),
    (lambda: [text_input(["a"])], {"outputs": [triton.InferRequestedOutput("probabilities")]},
     "unknown output 'probabilities'"),
    (lambda: [text_input(["a"])], {"parameters": {"timeout_ms": -5}}, '"timeout_ms" is -5'),
    (lambda: [text_input(["a"])], {"timeout": -5}, '"timeout" parameter is -5: give a positive number of microseconds'),
], ids=["empty", "blank", "datatype", "too-many", "output", "timeout_ms", "timeout"])
def test_bad_input_is_invalid_argument_with_a_clear_message(client, inputs, extra, message):
    refused(lambda: client.infer("roberta", inputs(), headers=AUTH, **extra), "INVALID_ARGUMENT", message)


def test_a_raw_input_that_is_not_utf8_is_invalid_argument(server):
    request = service_pb2.ModelInferRequest(model_name="roberta", inputs=[{"name": "text", "datatype": "BYTES", "shape": [1]}],
                                            raw_input_contents=[b"\x02\x00\x00\x00\xff\xfe"])
    with grpc.insecure_channel(server[1]) as channel, pytest.raises(grpc.RpcError) as error:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=tuple(AUTH.items()))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "is not UTF-8" in error.value.details()


def test_a_message_over_max_body_bytes_is_refused(client):
    refused(lambda: client.infer("roberta", [text_input(["word " * 30_000])], headers=AUTH), "RESOURCE_EXHAUSTED",
            "larger than max")


def test_an_unknown_model_or_version_is_not_found(client):
    refused(lambda: client.infer("bert", [text_input(["fine"])], headers=AUTH), "NOT_FOUND",
            "unknown model 'bert': this server serves 'roberta'")
    refused(lambda: client.infer("roberta", [text_input(["fine"])], model_version="2", headers=AUTH), "NOT_FOUND",
            "has no version '2'")
    refused(lambda: client.get_model_metadata("bert", headers=AUTH), "NOT_FOUND", "unknown model 'bert'")
    refused(lambda: client.is_model_ready("bert", headers=AUTH), "NOT_FOUND", "unknown model 'bert'")


def test_a_busy_grpc_port_is_a_one_line_error(tmp_path):
    """The real CLI: exit 2 and one line naming --grpc-port, before the model loads (the bundle is only a manifest)."""
    (tmp_path / "manifest.json").write_text("{}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "serve", "--model", str(tmp_path), "--port", "0",
                               "--grpc-port", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == f"error: --grpc-port: cannot listen on 127.0.0.1:{port}: " \
        "Address already in use\n", done.stderr


@contextmanager
def running_grpc(load: Callable[[], BundleClassifier], limits: Limits) -> Iterator[tuple[str, triton.InferenceServerClient]]:
    """`serve`'s HTTP and gRPC servers (`Server`) over `load` in a background thread (`in_thread`): yields the base URL
    and a tritonclient.grpc client of the gRPC port."""
    app = create_app(load, limits)
    server = Server(server_config(app, log_level="warning"), app.models,
                    {"host": "127.0.0.1", "port": 0, "api_key": None, "max_message_bytes": limits.max_body_bytes})
    with in_thread(server) as base:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            yield base, client
        finally:
            client.close()


def until(condition: Callable[[], bool], what: str) -> None:
    """Polls `condition` (the server's own counters) until it holds; fails after 30 s saying `what` never happened."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_unavailable_while_the_model_loads(hf_bundle):
    loaded = threading.Event()

    def load() -> BundleClassifier:
        assert loaded.wait(60)
        return load_bundle(hf_bundle, threads=1)

    with running_grpc(load, Limits()) as (base, client):
        try:
            assert client.is_server_live() and not client.is_server_ready() and not client.is_model_ready("roberta")
            refused(lambda: client.infer("roberta", [text_input(["fine"])]), "UNAVAILABLE", "the model is still loading")
            refused(lambda: client.get_model_metadata("roberta"), "UNAVAILABLE", "the model is still loading")
        finally:
            loaded.set()
        wait_ready(base)
        assert client.is_server_ready() and client.infer("roberta", [text_input(["fine"])]).as_numpy("logits").shape == (1, 2)


def test_deadlines_cancellation_and_a_full_queue_behind_a_held_model_call(hf_bundle):
    """A model call held busy: a call queued past its own `timeout` gets DEADLINE_EXCEEDED, one past its gRPC deadline
    is cancelled, one that would overfill the queue gets RESOURCE_EXHAUSTED; their texts never reach the model."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    limits = Limits(max_batch_size=2, max_wait_ms=1, max_texts_per_request=4, max_queue=8)
    with running_grpc(held_loader(hf_bundle, hold, entered, release), limits) as (base, client):
        wait_ready(base)

        def metric(name: str, **labels: str) -> float:
            return sample(httpx.get(f"{base}/metrics").text, name, **labels)

        sender, first = start_held_call(base, hold, entered)
        queued: list = []
        answered = threading.Event()
        client.async_infer("roberta", [text_input(["q1", "q2", "q3", "q4"])],
                           lambda result, error: (queued.append(error or result), answered.set()))
        until(lambda: metric("roberta_infer_queued_texts") == 4, "the four texts were never queued")
        refused(lambda: client.infer("roberta", [text_input(["c"])], timeout=50_000), "DEADLINE_EXCEEDED",
                "the request's deadline (50 ms) passed before its texts were classified")
        refused(lambda: client.infer("roberta", [text_input(["d", "e"])], client_timeout=0.05), "DEADLINE_EXCEEDED",
                "Deadline")
        until(lambda: metric("roberta_infer_errors_total", reason="cancelled") == 1, "the server never saw the cancel")
        refused(lambda: client.infer("roberta", [text_input(["f", "g"])]), "RESOURCE_EXHAUSTED",
                "overloaded: 7 texts are waiting and the queue holds 8")
        assert not release.is_set() and metric("roberta_infer_texts_dropped_total") == 0  # the call is still held
        release.set()
        sender.join(30)
        assert first[0].status_code == 200 and answered.wait(30)
        assert queued[0].as_numpy("logits").shape == (4, 2)
        until(lambda: metric("roberta_infer_texts_dropped_total") == 3, "the texts past their deadlines were never dropped")
        assert metric("roberta_infer_texts_total") == 2 + 4
        assert metric("roberta_infer_errors_total", reason="deadline") == 1
        assert metric("roberta_infer_errors_total", reason="overloaded") == 1


def test_sigterm_finishes_grpc_calls_in_flight_then_exits_0(hf_bundle: Path, tmp_path: Path):
    """The real CLI with its model calls held: gRPC calls in flight at SIGTERM still get their results once the model
    is let go, new calls are refused meanwhile, and serve exits 0."""
    hold = tmp_path / "hold"
    with serve_process("--model", str(hf_bundle), "--threads", "1", cli=[sys.executable, "-c", HOLD_CLI],
                       env={**os.environ, "HOLD": str(hold)}) as (proc, base, address, log):
        wait_ready(base)
        hold.touch()
        client = triton.InferenceServerClient(address)
        results: dict[int, object] = {}
        callbacks = threading.Semaphore(0)

        def done(i: int, result, error) -> None:
            results[i] = error if error is not None else result
            callbacks.release()

        for i in range(2):
            client.async_infer("roberta", [text_input([f"text {i}", "more"])],
                               lambda result, error, i=i: done(i, result, error))
        until(lambda: sample(httpx.get(f"{base}/metrics").text, "roberta_infer_requests_in_flight") == 2,
              "the calls never reached the server")
        proc.send_signal(signal.SIGTERM)
        until(lambda: not live(address), "the gRPC server still takes new calls after SIGTERM")
        assert not results  # the calls in flight are still held
        hold.unlink()
        for _ in range(2):
            assert callbacks.acquire(timeout=60), "a call in flight never finished"
        assert proc.wait(60) == 0, "".join(log)
        client.close()
    assert not any(isinstance(results[i], InferenceServerException) for i in range(2)), results
    assert [results[i].as_numpy("logits").shape for i in range(2)] == [(2, 2)] * 2


def live(address: str) -> bool:
    """Whether a new client's ServerLive call to `address` is answered."""
    with triton.InferenceServerClient(address) as client:
        try:
            return client.is_server_live(client_timeout=5)
        except InferenceServerException:
            return False
