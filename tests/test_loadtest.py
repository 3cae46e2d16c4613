"""loadtest: the table and JSON against a real test server; anything but loopback is refused before any network use."""

from __future__ import annotations

import json

import pytest
from test_serve import cached_bundle, running, wait_ready

from roberta_infer.bundle import load_bundle
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.loadtest import BUILTIN_TEXTS, check_loopback, sample_texts


def test_loadtest_reports_each_level(tmp_path_factory, hf_model, shared_data, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(shared_data))
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per level
    bundle = cached_bundle(hf_model, tmp_path_factory.getbasetemp() / "bundle-cache")
    with running(lambda: load_bundle(bundle, threads=1)) as url:
        wait_ready(url)
        code = main(["loadtest", "--url", url, "--concurrency", "1,8", "--requests", "40", "--texts-per-request", "2",
                     "--json", str(tmp_path / "lt.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "texts/s" in out and "p99 ms" in out and "batch sizes" in out
    summary = json.loads((tmp_path / "lt.json").read_text())
    assert summary["texts"].startswith("SST-2 dev") and summary["machine"]["cpu"]
    assert summary["server"]["class_names"] == ["negative", "positive"]
    assert [level["concurrency"] for level in summary["levels"]] == [1, 8]
    for level in summary["levels"]:
        assert level["errors"] == 0 and level["requests"] == 40
        assert level["texts_per_s"] == pytest.approx(2 * level["requests_per_s"])
        latency = level["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert sum(level["batch_sizes"].values()) == level["batches"] > 0
        assert level["mean_batch_size"] * level["batches"] == pytest.approx(80)
        assert level["server_rss_mb"] > 0
        # /metrics counts CPU in 10 ms ticks, so a short level may show none; the client's clock is finer
        assert level["server_cpu_us_per_request"] >= 0 and level["client_cpu_us_per_request"] > 0
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


def test_texts_fall_back_to_built_in_sentences(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(tmp_path))
    assert sample_texts() == (BUILTIN_TEXTS, "built-in sentences")


def test_bad_concurrency_is_a_one_line_error(capsys):
    assert main(["loadtest", "--concurrency", "1,many"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
