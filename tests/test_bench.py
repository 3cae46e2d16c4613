"""bench: a grid of timed cells on a tiny dynamic bundle → well-formed bench.json, bench.md and bench.png labelled with
engine and precision; a static bundle gives one cell at its own shape; the reference's figures only for roberta-base."""

from __future__ import annotations

import json

import pytest
from conftest import make_hf_model
from test_report import assert_report_renders

from roberta_infer.bench import bench, side_by_side
from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.quantize import quantize_bundle

# roberta-base's published shape (Liu et al. 2019; fairseq's roberta.base): 12 layers, hidden 768, 12 heads, FFN 3072
ROBERTA_BASE = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072}


@pytest.fixture(scope="module")
def model_80(tmp_path_factory, shared_data):
    """A tiny model with room for the reference's sequence length 70."""
    return load_classifier(make_hf_model(tmp_path_factory.mktemp("bench") / "hf80", shared_data, max_positions=80))


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory, model_80):
    path = tmp_path_factory.mktemp("bench-bundles") / "dyn"
    build_bundle(model_80, path, progress=lambda _: None)
    return path


def test_bench_writes_json_md_png(tmp_path, dynamic):
    result = bench(load_bundle(dynamic, threads=1), [1, 32], [16, 70], tmp_path / "out", warmup=1, min_time=0.05,
                   show_progress=False)
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data == result and data["threads"] == 1 and data["machine"]["physical_cores"] >= 1
    assert (data["engine"], data["precision"], data["static_shape"]) == ("onnxruntime", "fp32", None)
    cells = {(c["batch_size"], c["seq_len"]): c for c in data["cells"]}
    assert set(cells) == {(1, 16), (32, 16), (1, 70), (32, 70)}
    for cell in cells.values():
        assert cell["iterations"] >= 5 and cell["latency_ms"]["p99"] >= cell["latency_ms"]["p50"] > 0
        assert cell["seq_per_s"] == pytest.approx(cell["batch_size"] * 1000 / cell["latency_ms"]["p50"])
        assert cell["reference_fps"] is None, "a tiny model is not set beside the reference's roberta-base figures"
    md = (tmp_path / "out" / "bench.md").read_text().splitlines()
    assert "ONNX Runtime" in md[0] and " fp32, " in md[0] and "Ascend" not in "\n".join(md)
    assert md[2] == "| batch | seq | seq/s | p50 ms | p99 ms |" and len(md) == 4 + 4 and md[4].startswith("| 1 | 16 |")
    png = (tmp_path / "out" / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert_report_renders(tmp_path / "out" / "report.html", tmp_path / "profile", tables=2, images=1)


def test_reference_figures_for_a_roberta_base_shaped_bundle(tmp_path, dynamic):
    claimed = tmp_path / "claimed"  # the tiny bundle, its manifest claiming roberta-base's shape (the file is not checked)
    claimed.mkdir()
    for path in dynamic.iterdir():
        (claimed / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((claimed / "manifest.json").read_text())
    manifest["architecture"] |= ROBERTA_BASE
    (claimed / "manifest.json").write_text(json.dumps(manifest))
    result = bench(load_bundle(claimed, threads=1), [1, 32], [16, 70], tmp_path / "out", warmup=0, min_time=0,
                   show_progress=False)
    cells = {(c["batch_size"], c["seq_len"]): c["reference_fps"] for c in result["cells"]}
    # the guide's table 1 (batch 1…64 at seq 70) and its table 2's batch-1 column (seq 16, 32, 64, 128)
    assert cells == {(1, 16): 602, (32, 16): None, (1, 70): 205, (32, 70): 1473}
    md = (tmp_path / "out" / "bench.md").read_text().splitlines()
    assert "Ascend 310P3" in md[2] and md[4].endswith("| 602 |") and md[5].endswith("| — |") and md[6].endswith("| 205 |")


def test_static_bundle_is_one_cell_at_its_shape(tmp_path, model_80, capsys):
    build_bundle(model_80, tmp_path / "static", batch_size=2, seq_len=16, progress=lambda _: None)
    result = bench(load_bundle(tmp_path / "static", threads=1), None, None, tmp_path / "out", warmup=0, min_time=0,
                   show_progress=False)
    assert [(c["batch_size"], c["seq_len"]) for c in result["cells"]] == [(2, 16)] and result["static_shape"] == [2, 16]
    with pytest.raises(RobertaInferError, match="fixed at batch 2 × seq 16: bench runs it at that shape only"):
        bench(load_bundle(tmp_path / "static"), [4], None, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    assert main(["bench", "--model", str(tmp_path / "static"), "--min-time", "0", "--out", str(tmp_path / "o")]) == 0
    assert "1 cells" in capsys.readouterr().out


@pytest.mark.openvino
def test_bench_cli_refusals_and_precisions_side_by_side(tmp_path, model_80, dynamic, shared_data, capsys):
    assert main(["bench", "--model", str(dynamic), "--batch-sizes", "2", "--seq-lens", "8,100", "--out",
                 str(tmp_path / "o")]) == 2
    assert "seq len 100 exceeds the model's 80 positions" in capsys.readouterr().err
    quantize_bundle(dynamic, tmp_path / "int8", source=model_80, data=shared_data, max_accuracy_drop=100, progress=lambda _: None)
    build_bundle(model_80, tmp_path / "bf16", engine="openvino", precision="bf16", progress=lambda _: None)
    results = []
    for name, bundle in (("fp32", dynamic), ("bf16", tmp_path / "bf16"), ("int8", tmp_path / "int8")):
        assert main(["bench", "--model", str(bundle), "--batch-sizes", "1,2", "--seq-lens", "8" if name == "fp32" else "8,16",
                     "--warmup", "0", "--min-time", "0", "--threads", "1", "--out", str(tmp_path / f"bench-{name}")]) == 0
        results.append(json.loads((tmp_path / f"bench-{name}" / "bench.json").read_text()))
    assert [(r["engine"], r["precision"]) for r in results] == [("onnxruntime", "fp32"), ("openvino", "bf16"),
                                                                ("onnxruntime", "int8")]
    assert "2 cells" in capsys.readouterr().out
    assert ", OpenVINO " in (tmp_path / "bench-bf16" / "bench.md").read_text().splitlines()[0]
    table = side_by_side(results).splitlines()
    assert table[0].startswith("| batch | seq | ONNX Runtime ") and " fp32 seq/s | OpenVINO " in table[0]
    assert table[0].endswith(" bf16 seq/s | ONNX Runtime " + results[2]["engine_version"] + " int8 seq/s |")
    assert len(table) == 2 + 4
    assert table[4].startswith("| 1 | 16 | — | ") and table[2].startswith("| 1 | 8 | ")
