"""serve --grpc-port: the Open Inference Protocol over gRPC, called by the real `tritonclient.grpc` client (and grpcio's
stub of Triton's own service) against the real CLI in a subprocess: the same results as HTTP /v1/classify, the
protocol's health and metadata, the API key, clear errors as gRPC status codes, SIGTERM finishing calls in flight."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from test_serve import SLOW_CLI, softmax, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

KEY = "grpc-s3cret"
AUTH = {"authorization": f"Bearer {KEY}"}
TEXTS = ["a gorgeous , witty , seductive movie .", "!", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either ."]


@contextmanager
def serve_process(*args: str, cli: list[str] | None = None) -> Iterator[tuple[subprocess.Popen, str, str, list[str]]]:
    """`roberta-infer serve --port 0 --grpc-port 0 ARGS` in a subprocess (`cli`: how to start it): yields the process,
    its base URL, its gRPC address and its log so far, once it has logged both; killed afterwards if still running."""
    proc = subprocess.Popen([*(cli or [sys.executable, "-m", "roberta_infer.cli"]), "serve", "--port", "0",
                             "--grpc-port", "0", *args], stderr=subprocess.PIPE, text=True)
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


def test_sigterm_finishes_grpc_calls_in_flight_then_exits_0(hf_bundle: Path):
    """A slowed-down model: gRPC calls in flight at SIGTERM still get their results, and serve exits 0."""
    with serve_process("--model", str(hf_bundle), "--threads", "1", "--max-batch-size", "2",
                       cli=[sys.executable, "-c", SLOW_CLI]) as (proc, base, address, log):
        wait_ready(base)
        client = triton.InferenceServerClient(address)
        results: dict[int, object] = {}
        callbacks = threading.Semaphore(0)

        def done(i: int, result, error) -> None:
            results[i] = error if error is not None else result
            callbacks.release()

        for i in range(3):
            client.async_infer("roberta", [text_input([f"text {i}", "more"])], lambda result, error, i=i: done(i, result, error))
        deadline = time.monotonic() + 30
        while "roberta_infer_requests_in_flight 3.0" not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "the calls never reached the server"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for _ in range(3):
            assert callbacks.acquire(timeout=60), "a call in flight never finished"
        assert proc.wait(60) == 0, "".join(log)
        client.close()
    assert not any(isinstance(results[i], InferenceServerException) for i in range(3)), results
    assert [results[i].as_numpy("logits").shape for i in range(3)] == [(2, 2)] * 3
