"""bench: a grid of timed cells on a tiny dynamic bundle → well-formed bench.json, bench.md and bench.png; static bundles refused."""

from __future__ import annotations

import json

import pytest
from conftest import make_hf_model

from roberta_infer.bench import bench
from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError


@pytest.fixture(scope="module")
def model_80(tmp_path_factory, shared_data):
    """A tiny model with room for the reference's sequence length 70."""
    return load_classifier(make_hf_model(tmp_path_factory.mktemp("bench") / "hf80", shared_data, max_positions=80))


def test_bench_writes_json_md_png(tmp_path, model_80):
    build_bundle(model_80, tmp_path / "dyn", progress=lambda _: None)
    result = bench(load_bundle(tmp_path / "dyn", threads=1), [1, 32], [16, 70], tmp_path / "out", warmup=1, min_time=0.05,
                   show_progress=False)
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data == json.loads(json.dumps(result)) and data["threads"] == 1 and data["machine"]["physical_cores"] >= 1
    cells = {(c["batch_size"], c["seq_len"]): c for c in data["cells"]}
    assert set(cells) == {(1, 16), (32, 16), (1, 70), (32, 70)}
    for cell in cells.values():
        assert cell["iterations"] >= 5 and cell["latency_ms"]["p99"] >= cell["latency_ms"]["p50"] > 0
        assert cell["seq_per_s"] == pytest.approx(cell["batch_size"] * 1000 / cell["latency_ms"]["p50"])
    assert cells[(1, 70)]["reference_fps"] == 205 and cells[(32, 70)]["reference_fps"] == 1473 and cells[(1, 16)]["reference_fps"] is None
    md = (tmp_path / "out" / "bench.md").read_text().splitlines()
    assert "Ascend 310P3" in md[2] and len(md) == 4 + 4
    assert md[4].startswith("| 1 | 16 |") and md[4].endswith("| — |") and md[6].endswith("| 205 |")
    png = (tmp_path / "out" / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_bench_cli_and_refusals(tmp_path, model_80, capsys):
    build_bundle(model_80, tmp_path / "static", batch_size=2, seq_len=16, progress=lambda _: None)
    with pytest.raises(RobertaInferError, match="needs a dynamic bundle .* export --dynamic"):
        bench(load_bundle(tmp_path / "static"), [2], [16], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["bench", "--model", str(tmp_path / "static"), "--out", str(tmp_path / "o")]) == 2
    assert "export --dynamic" in capsys.readouterr().err
    build_bundle(model_80, tmp_path / "dyn", progress=lambda _: None)
    assert main(["bench", "--model", str(tmp_path / "dyn"), "--batch-sizes", "2", "--seq-lens", "8,100", "--out", str(tmp_path / "o")]) == 2
    assert "seq len 100 exceeds the model's 80 positions" in capsys.readouterr().err
    assert main(["bench", "--model", str(tmp_path / "dyn"), "--batch-sizes", "1,2", "--seq-lens", "8", "--warmup", "0",
                 "--min-time", "0", "--threads", "1", "--out", str(tmp_path / "o")]) == 0
    assert "2 cells" in capsys.readouterr().out and (tmp_path / "o" / "bench.png").is_file()
