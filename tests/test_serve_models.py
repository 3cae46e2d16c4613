"""serve with several models (the real CLI in a subprocess): each model gives its own bundle's results on v1 and v2,
Triton's repository extension (tritonclient) lists, unloads and loads them; and per-request truncation."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpc_triton
import tritonclient.http as triton
from conftest import make_hf_model
from test_serve import cli_server, held_loader, running, sample, start_held_call, wait_ready
from test_serve_grpc import serve_process
from test_serve_v2 import text_input
from transformers import AutoTokenizer
from tritonclient.utils import InferenceServerException

from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.commands.serve import served_models
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import predict
from roberta_infer.serve import Limits

TEXTS = ["a gorgeous , witty , seductive movie .", "!", "the plot is nothing but boilerplate clichés 😴"]
LONG = " ".join(["word"] * 100)  # longer than the models' 64 positions


@pytest.fixture(scope="module")
def three_class(tmp_path_factory, shared_data) -> Path:
    """A second model, unlike `hf_model`: other weights and three classes."""
    return make_hf_model(tmp_path_factory.mktemp("hf3") / "model", shared_data, num_labels=3, seed=3)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, hf_bundle, three_class) -> dict[str, Path]:
    other = tmp_path_factory.mktemp("bundle3") / "bundle"
    build_bundle(load_classifier(three_class), other, progress=lambda _: None)
    return {"two": hf_bundle, "three": other}


@pytest.fixture(scope="module")
def url(bundles) -> Iterator[str]:
    with cli_server(*(arg for name, path in bundles.items() for arg in ("--model", f"{name}={path}")), "--threads", "1",
                    "--max-texts-per-request", "8") as (_, base):
        wait_ready(base)
        yield base


def offline(bundle: Path, texts: list[str]) -> np.ndarray:
    return np.array([r["logits"] for r in predict(load_bundle(bundle, threads=1), texts)])


def check_served(url: str, client: triton.InferenceServerClient, name: str, bundle: Path) -> None:
    """v1 and v2 (tritonclient) on model `name` give `bundle`'s offline logits and labels."""
    expected = predict(load_bundle(bundle, threads=1), TEXTS)
    v1 = httpx.post(f"{url}/v1/classify", json={"texts": TEXTS, "model": name}, timeout=30)
    assert v1.status_code == 200, v1.text
    v2 = client.infer(name, [text_input(TEXTS, binary=True)])
    assert v2.get_response()["model_name"] == name
    for logits in (np.array([r["logits"] for r in v1.json()["results"]]), v2.as_numpy("logits")):
        np.testing.assert_allclose(logits, np.array([r["logits"] for r in expected]), atol=1e-5)
    assert [r["label"] for r in v1.json()["results"]] == [r["label"] for r in expected]


def test_two_bundles_served_at_once_give_their_own_results(url, client, bundles):
    for name, bundle in bundles.items():
        check_served(url, client, name, bundle)
    assert offline(bundles["two"], TEXTS).shape[1] == 2 and offline(bundles["three"], TEXTS).shape[1] == 3
    index = client.get_model_repository_index()
    assert index == [{"name": name, "version": "1", "state": "READY", "reason": ""} for name in bundles]
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"]) == set(bundles)
    assert ready["models"]["three"]["model"]["class_names"] == ["negative", "positive", "neutral"]
    metrics = httpx.get(f"{url}/metrics").text  # each model's counters under its own label
    assert sample(metrics, "roberta_infer_texts_total", model="two") >= 2 * len(TEXTS)
    assert sample(metrics, "roberta_infer_requests_total", model="three", status="200") >= 1


def test_unload_refuses_that_model_only_and_load_serves_it_again(url, client, bundles):
    client.unload_model("three")
    assert {m["name"]: m["state"] for m in client.get_model_repository_index()} == {"two": "READY", "three": "UNAVAILABLE"}
    assert not client.is_model_ready("three") and client.is_model_ready("two")
    refused = httpx.post(f"{url}/v1/classify", json={"text": "fine", "model": "three"})
    assert refused.status_code == 503 and "'three' is unloaded" in refused.json()["error"]
    with pytest.raises(InferenceServerException, match="'three' is unloaded"):
        client.infer("three", [text_input(TEXTS, binary=False)])
    check_served(url, client, "two", bundles["two"])
    ready = httpx.get(f"{url}/readyz")  # an unloaded model does not make the server unready
    assert ready.status_code == 200 and ready.json()["models"]["three"]["status"] == "unloaded"
    client.load_model("three")
    assert client.is_model_ready("three")
    check_served(url, client, "three", bundles["three"])


def test_unload_frees_the_session_and_load_makes_a_new_one(hf_bundle):
    loaded: list[weakref.ref] = []

    def load():
        classifier = load_bundle(hf_bundle, threads=1)
        loaded.append(weakref.ref(classifier))
        return classifier

    with running({"one": load, "other": lambda: load_bundle(hf_bundle, threads=1)}) as base:
        wait_ready(base)
        assert httpx.post(f"{base}/v2/repository/models/one/unload").status_code == 200
        gc.collect()
        assert len(loaded) == 1 and loaded[0]() is None  # nothing holds the unloaded model's session
        index = httpx.post(f"{base}/v2/repository/index", json={"ready": True}).json()
        assert [m["name"] for m in index] == ["other"]
        assert httpx.post(f"{base}/v2/repository/models/one/load").status_code == 200
        assert len(loaded) == 2 and loaded[1]() is not None
        assert httpx.get(f"{base}/v2/models/one/ready").status_code == 200


def test_a_model_that_fails_to_load_again_is_unavailable_with_its_reason(hf_bundle):
    """A failed load answers 400 with the reason, the index shows it, and the server is unready until the operator
    unloads the model (or it loads)."""
    loads: list[int] = []

    def load():
        loads.append(1)
        if len(loads) > 1:
            raise RobertaInferError("the bundle went away")
        return load_bundle(hf_bundle, threads=1)

    with running({"one": load, "other": lambda: load_bundle(hf_bundle, threads=1)}) as base:
        wait_ready(base)
        assert httpx.post(f"{base}/v2/repository/models/one/unload").status_code == 200
        failed = httpx.post(f"{base}/v2/repository/models/one/load")
        assert failed.status_code == 400 and failed.json() == {"error": "failed to load 'one': the bundle went away"}
        one = httpx.post(f"{base}/v2/repository/index").json()[0]
        assert one["state"] == "UNAVAILABLE" and "the bundle went away" in one["reason"]
        assert httpx.get(f"{base}/readyz").status_code == 503 and httpx.get(f"{base}/v2/health/ready").status_code == 503
        assert httpx.post(f"{base}/v2/repository/models/one/unload").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200 and httpx.get(f"{base}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("body, status, message", [
    ({"text": "fine"}, 400, "name one with \"model\" ('two', 'three')"),
    ({"text": "fine", "model": "four"}, 404, "unknown model 'four': this server serves 'two', 'three'"),
    ({"text": "fine", "model": 4}, 422, '"model" is a number'),
])
def test_which_model_a_v1_request_means(url, body, status, message):
    response = httpx.post(f"{url}/v1/classify", json=body)
    assert response.status_code == status and message in response.json()["error"], response.text


@pytest.mark.parametrize("method, path", [("POST", "/v2/repository/models/four/load"), ("POST", "/v2/models/four/infer"),
                                          ("GET", "/v2/models/four"), ("GET", "/v2/models/four/ready")])
def test_an_unknown_model_is_404_naming_those_served(url, method, path):
    response = httpx.request(method, f"{url}{path}", json={"inputs": []})
    assert response.status_code == 404 and "unknown model 'four': this server serves 'two', 'three'" in response.json()["error"]


def test_truncate_false_refuses_a_long_text_naming_it(url, hf_model, bundles):
    tokens = len(AutoTokenizer.from_pretrained(hf_model)(LONG)["input_ids"])  # the reference tokenizer's count
    limit = load_bundle(bundles["two"], threads=1).max_tokens
    assert tokens > limit == 64
    refused = httpx.post(f"{url}/v1/classify", json={"texts": ["fine", LONG], "model": "two", "truncate": False})
    assert refused.status_code == 413
    assert f'"texts"[1] has {tokens} tokens; the model takes at most {limit}' in refused.json()["error"]
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [LONG]}], "parameters": {"truncate": False}}
    refused = httpx.post(f"{url}/v2/models/two/infer", json=v2)
    assert refused.status_code == 413 and f"input element 0 has {tokens} tokens" in refused.json()["error"]
    cut = httpx.post(f"{url}/v1/classify", json={"texts": ["fine", LONG], "model": "two"})  # default: cut as predict cuts
    assert cut.status_code == 200
    np.testing.assert_allclose([r["logits"] for r in cut.json()["results"]], offline(bundles["two"], ["fine", LONG]),
                               atol=1e-5)
    short = httpx.post(f"{url}/v1/classify", json={"texts": ["fine"], "model": "two", "truncate": False})
    assert short.status_code == 200
    bad = httpx.post(f"{url}/v1/classify", json={"text": "fine", "model": "two", "truncate": "no"})
    assert bad.status_code == 422 and '"truncate" is a string' in bad.json()["error"]


def test_a_refused_long_text_fails_its_own_request_only(hf_bundle):
    """Behind a held model call, a request with truncation off and a long text and a request with truncation on
    queue into the same window: the first gets 413 and none of its texts is run, the second gets its results."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    with running(held_loader(hf_bundle, hold, entered, release), Limits(max_batch_size=4, max_wait_ms=1)) as base:
        wait_ready(base)
        sender, first = start_held_call(base, hold, entered)
        answers: dict[bool, httpx.Response] = {}
        senders = [threading.Thread(target=lambda truncate=truncate: answers.__setitem__(truncate, httpx.post(
            f"{base}/v1/classify", json={"texts": ["fine", LONG], "truncate": truncate}, timeout=60)))
            for truncate in (False, True)]
        for thread in senders:
            thread.start()
        deadline = time.monotonic() + 30
        while sample(httpx.get(f"{base}/metrics").text, "roberta_infer_queued_texts") < 4:  # both wait behind the call
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.02)
        release.set()
        for thread in (sender, *senders):
            thread.join(30)
        metrics = httpx.get(f"{base}/metrics").text
    assert first[0].status_code == 200 and answers[False].status_code == 413 and answers[True].status_code == 200
    np.testing.assert_allclose([r["logits"] for r in answers[True].json()["results"]], offline(hf_bundle, ["fine", LONG]),
                               atol=1e-5)
    assert sample(metrics, "roberta_infer_texts_total") == 2 + 2  # the held call's and the truncated request's
    assert sample(metrics, "roberta_infer_texts_dropped_total") == 2


@pytest.mark.parametrize("args, message", [
    (["--model", "a={b}", "--model", "a={b}"], "model name 'a' is given twice"),
    (["--model", "={b}"], "give NAME=BUNDLE with a non-empty NAME"),
    (["--model", "a={b}", "--model", "{b}", "--name", "a"], "model name 'a' is given twice"),
    (["--model", "a={b}/nothing"], "not found"),
    (["--model", "a b={b}"], "--model 'a b'"),
])
def test_bad_model_lists_are_one_line_errors_before_loading(args, message, tmp_path):
    """The real CLI: exit 2 and one line; the bundle is only a manifest, which would fail if it were loaded."""
    (tmp_path / "manifest.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "serve", "--port", "0",
                           *(arg.format(b=tmp_path) for arg in args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_a_model_repository_serves_each_bundle_subfolder_by_name(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    (tmp_path / "README").write_text("a file, not a folder")
    with pytest.warns(UserWarning, match="1 subfolders are not bundles and are not served: notes"):
        assert served_models([], tmp_path, "roberta") == {"a": tmp_path / "a", "b": tmp_path / "b"}
    with pytest.raises(RobertaInferError, match="no bundle in its subfolders"):
        served_models([], tmp_path / "notes", "roberta")
    assert served_models([], None, "roberta") == {"roberta": None}  # the default model, as before


def test_grpc_serves_each_model_by_name_and_refuses_an_unknown_one(bundles):
    """Over gRPC too, each model named in ModelInfer gives its own bundle's logits; another name is NOT_FOUND."""
    args = [arg for name, path in bundles.items() for arg in ("--model", f"{name}={path}")]
    with serve_process(*args, "--threads", "1") as (_, base, address, _):
        wait_ready(base)
        client = grpc_triton.InferenceServerClient(address)
        try:
            for name, path in bundles.items():
                text = grpc_triton.InferInput("text", [len(TEXTS)], "BYTES")
                text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
                logits = client.infer(name, [text]).as_numpy("logits")
                np.testing.assert_allclose(logits, offline(path, TEXTS), atol=1e-5)
            with pytest.raises(InferenceServerException, match="two.*three|three.*two") as refused:
                client.infer("four", [text])
            assert refused.value.status() == "StatusCode.NOT_FOUND"
        finally:
            client.close()
