"""serve's Open Inference Protocol (KServe v2) routes, called by the real `tritonclient[http]` client: the same
results as /v1/classify and `predict`, JSON and binary tensors, the protocol's health and metadata, clear errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from test_serve import cached_bundle, running, softmax, wait_ready
from tritonclient.utils import InferenceServerException

from roberta_infer.bundle import load_bundle
from roberta_infer.predict import predict
from roberta_infer.serve import Limits

TEXTS = ["a gorgeous , witty , seductive movie .", "!", "the plot is nothing but boilerplate clichés 😴",
         "it 's not a bad film , but it is n't a good one either ."]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, hf_model) -> Path:
    return cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")


@pytest.fixture(scope="module")
def url(bundle) -> Iterator[str]:
    with running(lambda: load_bundle(bundle, threads=1), Limits(max_texts_per_request=8, max_text_chars=200)) as base:
        wait_ready(base)
        yield base


def text_input(texts: list[str], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_gets_what_predict_and_v1_give(url, bundle, client, binary):
    expected = predict(load_bundle(bundle, threads=1), TEXTS)
    v1 = httpx.post(f"{url}/v1/classify", json={"texts": TEXTS}).json()["results"]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "score", "logits")]
    result = client.infer("roberta", [text_input(TEXTS, binary=binary)], outputs=outputs, request_id="r-7")
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
    logits, scores = result.as_numpy("logits"), result.as_numpy("score")
    assert result.get_response()["id"] == "r-7" and result.get_response()["model_name"] == "roberta"
    assert labels == [r["label"] for r in expected] == [r["label"] for r in v1]
    assert logits.shape == (len(TEXTS), 2) and logits.dtype == np.float32
    assert np.abs(logits - np.array([r["logits"] for r in expected])).max() < 1e-4
    assert np.abs(logits - np.array([r["logits"] for r in v1], dtype=np.float32)).max() == 0  # the same computation
    assert scores == pytest.approx(softmax(np.array([r["logits"] for r in expected])).max(axis=1), abs=1e-5)


def test_no_outputs_named_means_all_three_as_binary(client):
    result = client.infer("roberta", [text_input(TEXTS[:2], binary=True)])
    names = [output["name"] for output in result.get_response()["outputs"]]
    assert names == ["label", "score", "logits"]
    assert all("binary_data_size" in output["parameters"] for output in result.get_response()["outputs"])
    assert result.as_numpy("logits").shape == (2, 2)


def test_one_output_only(client):
    result = client.infer("roberta", [text_input(TEXTS[:1], binary=False)],
                          outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]


def test_health_and_metadata(url, client, bundle):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("roberta")
    assert not client.is_model_ready("bert")
    server = client.get_server_metadata()
    assert server["name"] == "roberta-infer" and "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("roberta")
    assert model["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert model["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                                {"name": "score", "datatype": "FP32", "shape": [-1]},
                                {"name": "logits", "datatype": "FP32", "shape": [-1, 2]}]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (model["engine"], model["precision"]) == (manifest["engine"], manifest["precision"]) == ("onnxruntime", "fp32")
    with pytest.raises(InferenceServerException, match="unknown model 'bert'"):
        client.get_model_metadata("bert")


def bytes_tensor(texts: list[bytes]) -> bytes:
    """Triton's BYTES serialization, written out here from its spec (uint32 LE length, then the bytes)."""
    return b"".join(struct.pack("<I", len(t)) + t for t in texts)


def binary_request(n: int, payload: bytes) -> tuple[bytes, dict]:
    """A body with `payload` as the binary data of an n-element `text` input, and its header-length header."""
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [n],
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


def v2_request(texts: list, **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}],
                       **extra}).encode()


@pytest.mark.parametrize("body, headers, status, message", [
    (b"{not json", {}, 400, "not valid JSON"),
    (json.dumps({"inputs": []}).encode(), {}, 400, "exactly one tensor"),
    (json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1], "data": [3]}]}).encode(), {}, 400,
     "this model takes 'text' of datatype BYTES"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}).encode(), {}, 400,
     "does not match its 1 elements"),
    (v2_request(["a", 5]), {}, 400, "element 1 is not a string"),
    (v2_request(["a"], outputs=[{"name": "probabilities"}]), {}, 400, "unknown output 'probabilities'"),
    (v2_request([]), {}, 422, "input 'text' is empty"),
    (v2_request(["x"] * 9), {}, 413, "has 9 texts; the limit is 8"),
    (v2_request(["y" * 201]), {}, 413, "input element 0 has 201 characters"),
    (*binary_request(1, bytes_tensor([b"\xff\xfe"])), 400, "is not UTF-8"),
    (*binary_request(2, struct.pack("<I", 50) + b"abcd"), 400, "past the body's end"),
    (*binary_request(1, b"abc"), 400, "ends inside an element's length"),
    (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "not a length within the 2-byte body"),
])
def test_bad_requests_get_a_clear_json_error(url, body, headers, status, message):
    response = httpx.post(f"{url}/v2/models/roberta/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_binary_request_by_hand(url):
    texts = ["naïve café 北京", "fine"]
    payload = bytes_tensor([t.encode() for t in texts])
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1],
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    response = httpx.post(f"{url}/v2/models/roberta/infer", content=header + payload,
                          headers={"Inference-Header-Content-Length": str(len(header))})
    v1 = httpx.post(f"{url}/v1/classify", json={"texts": texts}).json()["results"]
    assert response.status_code == 200
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["data"] == [r["label"] for r in v1]
    assert outputs["logits"]["shape"] == [2, 2]
    assert outputs["logits"]["data"] == [x for r in v1 for x in r["logits"]]


def test_unknown_model_is_404(url):
    response = httpx.post(f"{url}/v2/models/bert/infer", content=v2_request(["a"]))
    assert response.status_code == 404 and "this server serves 'roberta'" in response.json()["error"]


def test_not_ready_before_the_model_loads(bundle):
    import threading

    gate = threading.Event()

    def slow_load():
        gate.wait(30)
        return load_bundle(bundle, threads=1)

    with running(slow_load) as base:
        try:
            assert httpx.get(f"{base}/v2/health/live").status_code == 200
            assert httpx.get(f"{base}/v2/health/ready").status_code == 503
            assert httpx.get(f"{base}/v2/models/roberta/ready").status_code == 503
            response = httpx.post(f"{base}/v2/models/roberta/infer", content=v2_request(["a"]))
            assert response.status_code == 503 and "loading" in response.json()["error"]
        finally:
            gate.set()
        wait_ready(base)
        assert httpx.get(f"{base}/v2/health/ready").status_code == 200


def test_openapi_documents_the_v2_routes(url):
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert {"/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{model_name}", "/v2/models/{model_name}/ready",
            "/v2/models/{model_name}/infer"} <= set(paths)


def test_the_versioned_routes_serve_the_advertised_version_only(url, client):
    """/v2/models/NAME/versions/V/...: V is what the metadata lists; tritonclient's model_version reaches them."""
    (version,) = client.get_model_metadata("roberta")["versions"]
    assert version == "1"
    assert client.get_model_metadata("roberta", version) == client.get_model_metadata("roberta")
    assert client.is_model_ready("roberta", version)
    versioned = client.infer("roberta", [text_input(TEXTS, binary=False)], model_version=version)
    plain = client.infer("roberta", [text_input(TEXTS, binary=False)])
    assert versioned.as_numpy("label").tolist() == plain.as_numpy("label").tolist()
    np.testing.assert_array_equal(versioned.as_numpy("logits"), plain.as_numpy("logits"))
    assert versioned.get_response()["model_version"] == "1"
    for method, path in [("GET", "/v2/models/roberta/versions/2"), ("GET", "/v2/models/roberta/versions/2/ready"),
                         ("POST", "/v2/models/roberta/versions/2/infer"), ("POST", "/v2/models/roberta/versions//infer")]:
        response = httpx.request(method, f"{url}{path}", content=v2_request(["a"]) if method == "POST" else None)
        assert response.status_code == 404, path
        assert "has no version" in response.json()["error"] and "the versions available are '1'" in response.json()["error"]
    response = httpx.post(f"{url}/v2/models/bert/versions/1/infer", content=v2_request(["a"]))
    assert response.status_code == 404 and "this server serves 'roberta'" in response.json()["error"]
    assert httpx.post(f"{url}/v2/models/roberta/versions/1/x/infer", content=v2_request(["a"])).status_code == 404
