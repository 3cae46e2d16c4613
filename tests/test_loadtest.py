"""loadtest: the table and JSON against a real test server; anything but loopback is refused before any network use."""

from __future__ import annotations

import json

import httpx
import pytest
from test_serve import cached_bundle, running, sample, wait_ready

from roberta_infer.bundle import load_bundle
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.loadtest import BUILTIN_TEXTS, check_loopback, sample_texts
from roberta_infer.serve import Limits, listen


def test_loadtest_reports_each_level(tmp_path_factory, hf_model, shared_data, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(shared_data))
    bundle = cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")
    with running(lambda: load_bundle(bundle, threads=1)) as url:
        wait_ready(url)
        code = main(["loadtest", "--url", url, "--concurrency", "1,8", "--requests", "40", "--texts-per-request", "2",
                     "--json", str(tmp_path / "lt.json")])
    assert code == 0
    out = capsys.readouterr().out
    # piped (as here), the table is not cut to 80 columns: the header is whole on one line
    assert any("sentences/s" in line and "p99 ms" in line and "CPU µs/req server, client" in line for line in out.splitlines())
    summary = json.loads((tmp_path / "lt.json").read_text())
    assert summary["texts"].startswith("SST-2 dev") and summary["machine"]["cpu"]
    assert summary["server"]["class_names"] == ["negative", "positive"]
    assert [level["concurrency"] for level in summary["levels"]] == [1, 8]
    for level in summary["levels"]:
        assert level["mode"] == "closed" and level["errors"] == 0 and level["requests"] == 40
        latency = level["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert sum(level["batch_sizes"].values()) == level["batches"] > 0
        # the server's own count of texts it ran: every text of every request, exactly once
        assert level["mean_batch_size"] * level["batches"] == pytest.approx(80)
        assert level["server_rss_mb"] > 0
    alone = summary["levels"][0]["batch_sizes"]  # one client: a call holds its request's two texts, or one of them
    assert set(alone) <= {"1", "2"} and alone.get("1", 0) + 2 * alone.get("2", 0) == 80, alone


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "https://8.8.8.8/", "http://[::2]:80",
                                 "ftp://127.0.0.1", "127.0.0.1:8000"])
def test_only_loopback_is_targeted(url, capsys):
    assert main(["loadtest", "--url", url, "--requests", "1"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(RobertaInferError):
        check_loopback(url)


def test_loopback_forms_are_accepted():
    for url in ("http://127.0.0.1:8000/", "http://127.1.2.3", "http://localhost:9", "http://[::1]:8000"):
        assert check_loopback(url) == url.rstrip("/")


def test_a_route_url_means_its_server_and_any_other_path_is_refused_at_once(capsys):
    """The README's curl URL works as --url; another path is refused before any connection is tried."""
    assert check_loopback("http://127.0.0.1:8000/v1/classify") == "http://127.0.0.1:8000"
    assert check_loopback("http://[::1]:9/readyz/") == "http://[::1]:9"
    assert main(["loadtest", "--url", "http://127.0.0.1:1/v1/predict", "--requests", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give the server's base URL (http://127.0.0.1:1), not a path in it" in err


def test_texts_fall_back_to_built_in_sentences(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(tmp_path))
    assert sample_texts() == (BUILTIN_TEXTS, "built-in sentences")


def test_bad_concurrency_is_a_one_line_error(capsys):
    assert main(["loadtest", "--concurrency", "1,many"]) == 2
    assert "argument --concurrency: expected a whole number, got 'many'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, hf_model):
    """A server that takes one text of at most 40 characters per request."""
    bundle = cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")
    with running(lambda: load_bundle(bundle, threads=1), Limits(max_texts_per_request=1, max_text_chars=40)) as url:
        wait_ready(url)
        yield url


def test_open_loop_sends_every_request_and_counts_failures_apart(small_server, tmp_path, capsys):
    """Every other text is too long (413): half the requests fail, are counted by kind and kept out of the latencies."""
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"short text {i}\n" + "x" * 41 + "\n" for i in range(10)))
    code = main(["loadtest", "--url", small_server, "--rate", "40", "--duration", "1", "--texts", str(texts),
                 "--json", str(tmp_path / "open.json")])
    assert code == 0, capsys.readouterr().err
    [level] = json.loads((tmp_path / "open.json").read_text())["levels"]
    assert level["mode"] == "open" and level["rate"] == 40 and level["requests"] == 40
    assert level["errors"] == 20 and level["error_kinds"] == {"HTTP 413": 20}
    assert level["mean_batch_size"] * level["batches"] == pytest.approx(20)  # the server ran only the 20 short texts
    assert "20 × HTTP 413" in capsys.readouterr().out


def test_every_request_failing_is_an_error_and_writes_nothing(small_server, tmp_path, capsys):
    code = main(["loadtest", "--url", small_server, "--concurrency", "2", "--requests", "6", "--texts-per-request", "2",
                 "--json", str(tmp_path / "lt.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "every one of the 6 requests" in err and "6 × HTTP 413" in err
    assert not (tmp_path / "lt.json").exists()


def test_no_server_is_an_error_at_once(capsys):
    sock = listen("127.0.0.1", 0)  # a port that is bound but not listening: connections are refused
    try:
        code = main(["loadtest", "--url", f"http://127.0.0.1:{sock.getsockname()[1]}", "--requests", "1"])
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert code == 2 and "no server at" in err and "roberta-infer serve" in err


@pytest.mark.parametrize("args", [["--rate", "0"], ["--rate", "-5"], ["--rate", "10", "--duration", "0"],
                                  ["--rate", "1e9"]])
def test_bad_open_loop_settings_are_refused(args, capsys):
    assert main(["loadtest", *args]) == 2
    err = capsys.readouterr().err
    assert f"argument {'--duration' if '--duration' in args else '--rate'}: must be in (0, " in err


def test_model_sends_every_request_to_that_model_of_several(tmp_path_factory, hf_model, tmp_path, capsys):
    """Two models served: --model b names b in every request; the server's own batch histograms say b ran all 30
    texts and a none; an unknown name is one line before any request."""
    bundle = cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")
    loads = {name: (lambda: load_bundle(bundle, threads=1)) for name in ("a", "b")}
    with running(loads) as url:
        wait_ready(url)
        code = main(["loadtest", "--url", url, "--model", "b", "--concurrency", "3", "--requests", "15",
                     "--texts-per-request", "2", "--json", str(tmp_path / "lt.json")])
        assert code == 0, capsys.readouterr().err
        metrics = httpx.get(f"{url}/metrics").text
        assert main(["loadtest", "--url", url, "--model", "c", "--requests", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{url} serves no model named 'c'" in err
    summary = json.loads((tmp_path / "lt.json").read_text())
    [level] = summary["levels"]
    assert summary["model_name"] == "b" and level["errors"] == 0
    assert level["mean_batch_size"] * level["batches"] == pytest.approx(30)  # b's calls only
    assert sample(metrics, "roberta_infer_batch_size_sum", model="b") == 30
    assert sample(metrics, "roberta_infer_batch_size_sum", model="a") == 0
