"""The main job end to end on the shipped default model, as `make run` runs it."""

from __future__ import annotations

import json

from roberta_infer.cli import main
from roberta_infer.default import default_model_dir


def test_run_on_default_model(tmp_path, shared_data, capsys):
    assert main(["run", "--data", str(shared_data), "--work-dir", str(tmp_path), "--warmup", "1"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    card = (default_model_dir() / "MODEL_CARD.md").read_text()
    assert report["accuracy"]["samples"] == 872
    assert f"{100 * report['accuracy']['accuracy']:.2f} %" in card, "the model card states the accuracy `run` measures"
    assert report["fused_ops"]["Attention"] == json.loads((default_model_dir() / "config.json").read_text())["num_hidden_layers"]
    assert report["infer"]["throughput_samples_per_s"] > 0 and report["fidelity_max_abs_diff"] <= 1e-4
    assert "accuracy" in capsys.readouterr().out


def test_predict_defaults_to_the_shipped_model(tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("a masterpiece , moving and funny .\na dull , lifeless mess .\n")
    assert main(["predict", "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 0
    labels = [json.loads(line)["label"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert labels == ["positive", "negative"]
