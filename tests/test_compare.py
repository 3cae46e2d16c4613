"""compare: peers, engines and ours end to end on tiny models (the model source injected), bundles cached, the JSON the
README is built from. Batch shapes are checked against transformers' own tokenisation of the same texts."""

from __future__ import annotations

import importlib.util
import itertools
import json
from functools import partial

import pytest
from conftest import REPO, make_hf_model
from test_report import assert_report_renders
from transformers import AutoTokenizer

import roberta_infer.compare as compare_module
from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.compare import BASELINE, compare, parse_modes
from roberta_infer.compare_report import markdown, summary
from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.roofline import forward_flops, gemm_peak_gflops, int8_gemm_peak_gops
from roberta_infer.synthetic import mark_synthetic, model_label, synthetic_classifier
from roberta_infer.timing import spread, versus

LIMIT = 64
MODES = ["peer:hf-fp32", "peer:torch-bf16", "peer:torch-int8", "peer:ort-int8", "engine:hf-fp32", "engine:torch-int8",
         "engine:ort-int8", "ours"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    return make_hf_model(tmp_path_factory.mktemp("compare") / "hf80", shared_data, max_positions=80)


@pytest.fixture(scope="module")
def model(model_dir):
    return load_classifier(model_dir)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("compare-work")


# The int8 peak stub's measurements, before and after the modes in each `compare` call: the higher is the peak.
INT8_PEAKS = (1000.0, 1500.0)


@pytest.fixture
def small_peak(monkeypatch):
    monkeypatch.setattr(compare_module, "gemm_peak_gflops", partial(gemm_peak_gflops, n=256, repeats=2))
    measurements = itertools.cycle(INT8_PEAKS)
    monkeypatch.setattr(compare_module, "int8_gemm_peak_gops", lambda threads=None: next(measurements))


@pytest.fixture(scope="module")
def lengths(model_dir, shared_data):
    """`<s> … </s>` lengths of the first LIMIT dev texts by transformers' tokenizer of the model."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = read_sst2(sst2_file(shared_data, "dev")).sentences[:LIMIT]
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def chunks(values: list[int], size: int = 32) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def test_peers_engines_and_ours(model, shared_data, work, small_peak, lengths):
    # random weights: every gate result passes at 100 points, so the choice of ours does not depend on int8 kernels
    result = compare(model, model, work_dir=work, modes=MODES, data=shared_data, limit=LIMIT, threads=1,
                     ours_from=("ort-int8",), max_accuracy_drop=100, progress=lambda _: None)
    assert json.loads(json.dumps(result)) == result
    modes = {m["mode"]: m for m in result["modes"]}
    assert list(modes) == [BASELINE, *MODES] and result["sentences"] == LIMIT and result["threads"] == 1
    flags = next(line for line in open("/proc/cpuinfo").read().splitlines() if line.startswith("flags")).split()
    for flag in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"):  # the ISA the int8/bf16 engines' speed depends on
        assert (flag in result["machine"]["isa"]) == (flag in flags)
    expected = {"hf-fp32": ("pytorch", "fp32"), "torch-bf16": ("pytorch", "bf16"), "torch-int8": ("pytorch", "int8"),
                "ort-int8": ("onnxruntime", "int8")}
    for name, m in modes.items():
        group = name.split(":")[0]
        assert m["group"] == group
        if group != "ours":
            key = "hf-fp32" if name == BASELINE else name.split(":")[1]
            assert (m["engine"], m["precision"]) == expected[key]
        assert m["sentences_per_s"] == pytest.approx(LIMIT / m["seconds"]) and 0 <= m["accuracy"] <= 1
        assert m["ratio_to_baseline"] == pytest.approx(m["sentences_per_s"] / modes[BASELINE]["sentences_per_s"])
        assert m["latency_ms"]["p99"] >= m["latency_ms"]["p50"] > 0 and 0 <= m["agreement_with_baseline"] <= 1
        # three passes by default; the row's figure is the fastest, inside the slowest–fastest spread
        assert m["spread"]["passes"] == 3 and m["spread"]["min"] <= m["sentences_per_s"] == m["spread"]["max"]
        # fp32 rows against the fp32 GEMM peak, int8 rows against the stubbed int8 peak (the higher of its two), bf16 none
        peak = {"fp32": result["peak_gflops"], "int8": max(INT8_PEAKS), "bf16": None}[m["precision"]]
        assert m["peak"] == (None if peak is None else m["precision"])
        assert m["peak_fraction"] == (None if peak is None else pytest.approx(m["gflops"] / peak))
    assert result["int8_peak_gops"] == 1500.0 and result["int8_peak_gops_measured"] == list(INT8_PEAKS)
    ours = modes["ours"]
    assert (ours["engine"], ours["precision"], ours["candidate"]) == ("onnxruntime", "int8", "ort-int8")
    # ONNX Runtime's session keeps the engine's defaults: no second candidate
    assert list(modes["ours"]["sentences_per_s_by_candidate"]) == ["ort-int8"]
    assert modes["ours"]["settings"] == {"source": "ours", "threads": 1, "streams": 1, "batch_size": 32}
    assert modes["ours"]["name"] == "ours: predict.classify on onnxruntime int8 (ours: 1 stream, 1 thread)"
    # shapes, against a brute-force batching of transformers' token counts
    assert modes[BASELINE]["batch_shapes"] == [[32, 70], [32, 70]]
    arrival = [[len(chunk), max(chunk)] for chunk in chunks(lengths)]
    by_length = [[len(chunk), max(chunk)] for chunk in chunks(sorted(lengths))]
    assert arrival != by_length, "the texts are not already sorted: the two batchings differ"
    for name, m in modes.items():
        if name != BASELINE:
            assert m["batch_shapes"] == (arrival if m["group"] == "peer" else by_length), name
    assert modes["peer:hf-fp32"]["gflops"] * modes["peer:hf-fp32"]["seconds"] == pytest.approx(
        1e-9 * sum(forward_flops({"layers": 2, "hidden": 32, "ffn": 64}, b, s) for b, s in arrival))
    peers = [m for m in modes.values() if m["group"] == "peer"]
    fastest = max(peers, key=lambda m: m["sentences_per_s"])
    ratios = result["ratios"]
    assert ratios["fastest_peer"] == fastest["mode"]
    ours = modes["ours"]
    against = {fastest["mode"]: ratios["ours_vs_fastest_peer"], **ratios["ours_vs_engine"]}
    assert set(ratios["ours_vs_engine"]) == {name for name, m in modes.items() if m["group"] == "engine"}
    for name, v in against.items():
        other = modes[name]
        assert v["ratio"] == pytest.approx(ours["sentences_per_s"] / other["sentences_per_s"])
        assert v["low"] == pytest.approx(ours["spread"]["min"] / other["spread"]["max"])
        assert v["high"] == pytest.approx(ours["spread"]["max"] / other["spread"]["min"])
        assert v["outside_spread"] == (ours["spread"]["min"] > other["spread"]["max"]
                                       or ours["spread"]["max"] < other["spread"]["min"])
    table = markdown(result)
    assert "| peer | Hugging Face transformers eager fp32, fixed 70 | pytorch | fp32 |" in table
    assert "| spread | × baseline |" in table and "| GOP/s | of peak |" in table
    line = {m["mode"]: next(text for text in table.splitlines() if text.startswith(f"| peer | {m['name']} |"))
            for m in peers}
    bf16 = modes["peer:torch-bf16"]
    assert line["peer:torch-bf16"].endswith(f"| {bf16['spread']['min']:.1f}–{bf16['spread']['max']:.1f} "
                                          f"| {bf16['ratio_to_baseline']:.2f}× "
                                          f"| {100 * bf16['accuracy']:.2f} % | {100 * bf16['agreement_with_baseline']:.2f} % "
                                          f"| {bf16['latency_ms']['p99']:.1f} | {bf16['gflops']:.0f} | — |")
    int8 = modes["peer:torch-int8"]
    assert line["peer:torch-int8"].endswith(f"| {int8['gflops']:.0f} | {100 * int8['gflops'] / 1500:.0f} % int8 |")
    first = ratios["ours_vs_fastest_peer"]
    assert (f"- Ours is {first['ratio']:.2f}× the fastest peer ({fastest['mode']}): "
            f"passes {first['low']:.2f}–{first['high']:.2f}×, ") in table
    assert "int8 1500 GOP/s (ONNX Runtime MatMulInteger u8×s8)" in table


def test_ours_only_from_bundles_that_kept_accuracy(model, shared_data, work, small_peak):
    # built as the calls below want it (accuracy-aware within 1 point), without choosing ours yet
    compare(model, model, work_dir=work, modes=["engine:ort-int8"], data=shared_data, limit=8, threads=1,
            max_accuracy_drop=1, progress=lambda _: None)
    manifest_path = work / "speed" / "ort-int8" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["quantization"]["gate"]["accuracy_drop_pp"] = 5.0  # as if int8 had lost 5 points on the accuracy model
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RobertaInferError, match=r"none of ort-int8 kept SST-2 dev accuracy within 1 points .*ort-int8 5\.00"):
        compare(model, model, work_dir=work, modes=["ours"], data=shared_data, limit=8, threads=1, ours_from=("ort-int8",),
                max_accuracy_drop=1, progress=lambda _: None)
    manifest["quantization"]["gate"]["accuracy_drop_pp"] = 0.5
    manifest_path.write_text(json.dumps(manifest))
    result = compare(model, model, work_dir=work, modes=["ours"], data=shared_data, limit=8, threads=1,
                     ours_from=("ort-int8",), max_accuracy_drop=1, progress=lambda _: None)
    assert result["modes"][1]["gate_drop_pp"] == {"ort-int8": 0.5}


def test_cli_reuses_bundles_and_writes_json(model, shared_data, work, tmp_path, monkeypatch, small_peak, capsys):
    compare(model, None, work_dir=work, modes=["peer:ort-int8"], data=shared_data, limit=8, threads=1, progress=lambda _: None)
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("speed/*/model.onnx")}
    monkeypatch.setattr(compare_module, "default_models", lambda: (model, None, "no trained default model"))
    monkeypatch.setenv("COLUMNS", "160")  # a terminal wide enough for the table's cells unwrapped
    assert main(["compare", "--modes", "engine:ort-int8,ours", "--ours-from", "ort-int8", "--limit", str(LIMIT), "--threads",
                 "1", "--repeats", "2", "--data", str(shared_data), "--work-dir", str(work), "--json",
                 str(tmp_path / "c.json")]) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("speed/*/model.onnx")} == stamps and len(stamps) == 2, "bundles reused"
    result = json.loads((tmp_path / "c.json").read_text())
    assert {"machine", "peak_gflops", "modes", "ratios"} <= set(result) and result["accuracy_note"] == "no trained default model"
    assert [m["mode"] for m in result["modes"]] == [BASELINE, "engine:ort-int8", "ours"] and result["repeats"] == 2
    assert result["int8_peak_gops"] == 1500.0
    for m in result["modes"]:
        assert {"group", "engine", "precision", "sentences_per_s", "accuracy", "latency_ms"} <= set(m) and m["accuracy"] is None
        assert m["spread"]["passes"] == 2 and m["spread"]["min"] <= m["sentences_per_s"] <= m["spread"]["max"]
    out = capsys.readouterr().out
    assert "engine:ort-int8" in out and "Ours is" in out
    assert_report_renders(tmp_path / "c.html", tmp_path / "profile", tables=2, images=1)
    assert main(["compare", "--modes", "peer:x", "--work-dir", str(work), "--data", str(shared_data)]) == 2
    assert "unknown mode 'peer:x'" in capsys.readouterr().err
    assert main(["compare", "--ours-from", "ort-fp32", "--work-dir", str(work), "--data", str(shared_data)]) == 2
    assert "choose from ort-int8, ov-int8, ov-bf16" in capsys.readouterr().err


def test_modes_by_group():
    assert parse_modes("peer") == [BASELINE, "peer:hf-fp32", "peer:torch-bf16", "peer:torch-int8", "peer:ort-int8",
                                   "peer:ov-default", "peer:ov-int8", "peer:optimum-ov-fp32", "peer:optimum-ov-int8",
                                   "peer:optimum-ort-fp32", "peer:optimum-ort-int8"]
    assert parse_modes("engine:ov-int8,ours") == ["engine:ov-int8", "ours"]
    assert len(parse_modes("all")) == 1 + 2 * 10 + 1
    with pytest.raises(RobertaInferError, match="no mode"):
        parse_modes(",")


def test_a_model_shorter_than_the_reference_length_is_refused(hf_model, shared_data, tmp_path):
    short = load_classifier(hf_model)  # 64 positions
    with pytest.raises(RobertaInferError, match="fewer than the reference's fixed length 70"):
        compare(short, None, work_dir=tmp_path, modes=[BASELINE], data=shared_data, progress=lambda _: None)


def test_synthetic_roberta_base_has_its_exact_shape_and_vocabulary(shared_data, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(shared_data))
    classifier = synthetic_classifier("roberta-base")
    cfg = classifier.model.config
    shape = (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size,
             cfg.max_position_embeddings)
    assert shape == (12, 768, 12, 3072, 50265, 514) and classifier.max_tokens == 512
    assert classifier.encoder.encode(["Hello world!"]) == [[0, 31414, 232, 328, 2]], "fairseq roberta-base ids"
    assert classifier.source["kind"] == "synthetic"
    manifest = mark_synthetic({"source": classifier.source}, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["synthetic"] is True
    assert model_label(manifest) == "synthetic roberta-base (random weights)"
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(tmp_path))
    assert main(["export", "--synthetic", "roberta-base", "--out", str(tmp_path / "b")]) == 2
    assert "gpt2_bpe/dict.txt not found" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path), "--synthetic", "roberta-base", "--out", str(tmp_path / "b")]) == 2
    assert "either --model PATH or --synthetic NAME, not both" in capsys.readouterr().err


def test_readme_section_is_generated(model, shared_data, work, tmp_path, small_peak):
    spec = importlib.util.spec_from_file_location("update_readme", REPO / "benchmarks" / "update_readme.py")
    update_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_readme)
    result = compare(model, model, work_dir=work, modes=["peer:ort-int8", "ours"], data=shared_data, limit=8, threads=1,
                     ours_from=("ort-int8",), max_accuracy_drop=100, progress=lambda _: None)
    (tmp_path / "compare.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- performance:start (generated) -->\nNot measured yet.\n<!-- performance:end -->\n\nrest\n")
    update_readme.main(["--compare", str(tmp_path / "compare.json"), "--quantize",
                        str(work / "speed" / "ort-int8" / "manifest.json"),
                        "--bench", "--readme", str(readme)])
    text = readme.read_text()
    assert "Not measured yet" not in text and "int8 gate (hf80" in text
    assert "| peer | ONNX Runtime dynamic int8 (accuracy-aware), arrival order" in text
    assert text.startswith("# x\n\n<!-- performance:start (generated) -->\n")
    assert text.endswith("<!-- performance:end -->\n\nrest\n")
    assert result["machine"]["cpu"] in text and "Ours is" in text


@pytest.mark.openvino
def test_openvino_rows_and_ours_chosen_among_every_engine(model, shared_data, work, small_peak):
    openvino = pytest.importorskip("openvino")
    modes = ["peer:ov-default", "peer:ov-int8", "engine:ov-int8", "ours"]
    result = compare(model, model, work_dir=work, modes=modes, data=shared_data, limit=LIMIT, threads=1,
                     ours_from=("ort-int8", "ov-int8", "ov-bf16"), max_accuracy_drop=100, progress=lambda _: None)
    rows = {m["mode"]: m for m in result["modes"]}
    default_hint = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert (rows["peer:ov-default"]["engine"], rows["peer:ov-default"]["precision"]) == ("openvino",
                                                                                         f"{default_hint} (default hint)")
    assert (rows["peer:ov-int8"]["engine"], rows["peer:ov-int8"]["precision"]) == ("openvino", "int8")
    assert rows["peer:ov-int8"]["batch_shapes"] != rows["engine:ov-int8"]["batch_shapes"], "arrival order vs length-aware"
    ours = rows["ours"]
    by_candidate = ours["sentences_per_s_by_candidate"]
    assert set(ours["gate_drop_pp"]) == {"ort-int8", "ov-int8", "ov-bf16"}
    # each OpenVINO bundle also compiled with OpenVINO's defaults, so ours is never slower than those on our batches
    assert set(by_candidate) == {"ort-int8", "ov-int8", "ov-bf16", "ov-int8 (engine defaults)", "ov-bf16 (engine defaults)"}
    winner = max(by_candidate, key=by_candidate.get)
    assert ours["sentences_per_s"] == by_candidate[winner] and winner.startswith(ours["candidate"])
    defaults = openvino.Core().get_property("CPU", "NUM_STREAMS")  # OpenVINO's own stream count (its LATENCY mode: 1)
    assert ours["settings"] == ({"source": "engine defaults", "threads": 1, "streams": int(defaults), "batch_size": 32}
                                if winner.endswith("(engine defaults)") else
                                {"source": "ours", "threads": 1, "streams": 1, "batch_size": 32})
    assert (ours["engine"], ours["precision"]) == {"ort-int8": ("onnxruntime", "int8"), "ov-int8": ("openvino", "int8"),
                                                   "ov-bf16": ("openvino", "bf16")}[ours["candidate"]]
    # speed and accuracy model are one here, so its int8 bundles are accuracy-aware
    method = json.loads((work / "speed" / "ov-int8" / "manifest.json").read_text())["quantization"]["method"]
    assert method == "nncf.quantize_with_accuracy_control"


def test_spread_of_passes():
    # 64 sentences in 2 s, 1 s and 4 s: 32, 64 and 16 sentences/s
    assert spread(64, [2.0, 1.0, 4.0]) == {"min": 16.0, "max": 64.0, "passes": 3}


def row(low: float, high: float, passes: int = 3) -> dict:
    """A mode's speed as `compare` reports it: the fastest pass, and the slowest–fastest spread of `passes` passes."""
    return {"sentences_per_s": high, "spread": {"min": low, "max": high, "passes": passes}}


@pytest.mark.parametrize("ours, other, expected", [
    # ours' slowest pass (90) beats the other's fastest (75): 100/75, 90/75, 100/60
    ((90, 100, 3), (60, 75, 3), (4 / 3, 1.2, 5 / 3, True, "outside the spread (faster)")),
    # ours' fastest (60) is below the other's slowest (70): 60/80, 50/80, 60/70
    ((50, 60, 3), (70, 80, 3), (0.75, 0.625, 6 / 7, True, "outside the spread (slower)")),
    # overlapping spreads: 100/110, 90/110, 100/95
    ((90, 100, 3), (95, 110, 3), (10 / 11, 9 / 11, 100 / 95, False, "within the noise")),
    # one pass each has no spread: however far apart, the noise is unknown
    ((100, 100, 1), (50, 50, 1), (2.0, 2.0, 2.0, None, "one pass: noise unknown")),
])
def test_ratio_says_whether_it_lies_outside_the_spread(ours, other, expected):
    v = versus(row(*ours), row(*other))
    ratio, low, high, outside, verdict = expected
    assert (v["ratio"], v["low"], v["high"]) == pytest.approx((ratio, low, high))
    assert v["outside_spread"] is outside and v["verdict"] == verdict


def test_ratio_lines_word_the_verdicts():
    result = {"ratios": {"fastest_peer": "peer:ov-int8", "ours_vs_fastest_peer": versus(row(90, 100), row(60, 75)),
                         "ours_vs_engine": {"engine:ov-int8": versus(row(90, 100), row(95, 110))}}}
    assert summary(result).splitlines() == [
        "Ours is 1.33× the fastest peer (peer:ov-int8): passes 1.20–1.67×, outside the spread (faster).",
        "Ours is 0.91× engine:ov-int8 (the engine given our batching): passes 0.82–1.05×, within the noise."]


def test_int8_gemm_peak_runs_an_int8_matmul():
    assert int8_gemm_peak_gops(n=64, repeats=1, threads=1) > 0
