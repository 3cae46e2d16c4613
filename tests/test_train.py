"""train: a tiny from-scratch run that learns, is reproducible, loads everywhere; fine-tuning from --init; bad inputs."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, make_hf_model
from safetensors.numpy import load_file

from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.data import read_sst2, sha256_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.fit import TrainState
from roberta_infer.predict import classify
from roberta_infer.train import split_by_sentence, train

TINY = {"layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "max_len": 16, "batch_size": 16, "lr": 3e-3, "threads": 1,
        "holdout": 0.2, "show_progress": False}


@pytest.fixture(scope="module")
def short_rows(tmp_path_factory, shared_data) -> Path:
    """300 + 300 SST-2 train rows of at most 5 of its 300 commonest words: learnable in seconds, chance easy to beat."""
    split = read_sst2(shared_data / "SST-2" / "train.tsv")
    common = {w for w, _ in Counter(w for s in split.sentences for w in s.split()).most_common(300)}
    rows = [(s, y) for s, y in zip(split.sentences, split.labels) if len(s.split()) <= 5 and set(s.split()) <= common]
    rows = [r for r in rows if r[1] == "0"][:300] + [r for r in rows if r[1] == "1"][:300]
    path = tmp_path_factory.mktemp("data") / "short.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, short_rows) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "model"
    return out, train(short_rows, out, epochs=12, seed=3, **TINY)


def test_tiny_run_learns_and_loads(tiny_model, short_rows):
    out, record = tiny_model
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "id_map.npy", "special_ids.json",
                                               "training.json"}
    assert json.loads((out / "training.json").read_text()) == record
    classifier = load_classifier(out)
    assert classifier.class_names == ["negative", "positive"] and classifier.model.config.num_hidden_layers == 1
    # Re-score the held-out sentences through the saved model: the same figure training recorded, well above chance.
    split = read_sst2(short_rows)
    _, held, _ = split_by_sentence(split.sentences, TINY["holdout"], np.random.default_rng(0))
    gold = np.array([int(split.labels[i]) for i in held])
    predicted = classify(classifier, [split.sentences[i] for i in held]).argmax(axis=1)
    accuracy = float((predicted == gold).mean())
    chosen = [e for e in record["epochs"] if f"epoch {e['epoch']}" == record["chosen"]][0]
    assert accuracy == pytest.approx(chosen["heldout_accuracy"], abs=1e-4)
    assert len(held) >= 40 and accuracy >= 0.75 and accuracy > max(gold.mean(), 1 - gold.mean()) + 0.15
    assert record["data"]["sha256"] == sha256_file(short_rows)


def test_same_seed_same_weights(tiny_model, short_rows, tmp_path):
    out, _ = tiny_model
    first = load_file(out / "model.safetensors")
    train(short_rows, tmp_path / "again", epochs=12, seed=3, **TINY)
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)  # whatever it is, train (at 1 thread) must give it back
    try:
        before = torch.get_num_threads()
        train(short_rows, tmp_path / "other", epochs=2, seed=4, **TINY)
        assert torch.get_num_threads() == before, "train restores PyTorch's thread count"
    finally:
        torch.set_num_threads(threads)
    other = load_file(tmp_path / "other" / "model.safetensors")
    assert not np.array_equal(first["classifier.out_proj.weight"], other["classifier.out_proj.weight"])


def test_split_holds_out_whole_trees():
    texts = ["a very good film", "very good", "good", "a dull , dull film", "dull", "film"]
    split = split_by_sentence(texts, 0.5, np.random.default_rng(0))
    # Only the maximal rows are sentences; a held-out sentence takes the phrases found nowhere else with it.
    assert split in (([3, 4, 5], [0], [3]), ([0, 1, 2, 5], [3], [0]))


def test_fine_tune_from_huggingface_keeps_its_tokenizer(tmp_path, shared_data, short_rows):
    init = make_hf_model(tmp_path / "init", shared_data)
    record = train(short_rows, tmp_path / "tuned", init=init, epochs=1, seed=0, **{**TINY, "layers": 7})
    assert record["args"]["init"] == str(init) and record["args"]["layers"] == 2  # the shape is the init's
    assert (tmp_path / "tuned" / "tokenizer.json").is_file() and not (tmp_path / "tuned" / "id_map.npy").exists()
    before, after = load_classifier(init), load_classifier(tmp_path / "tuned")
    texts = ["a gorgeous film", "utterly dull"]
    assert after.encoder.encode(texts) == before.encoder.encode(texts)
    assert not np.allclose(classify(before, texts), classify(after, texts))


def test_fine_tune_from_fairseq_and_from_own_model(tmp_path, short_rows, tiny_model):
    fairseq = FIXTURES / "fairseq" / "tiny"
    train(short_rows, tmp_path / "fs", init=fairseq / "checkpoint.pt", fairseq_data=fairseq / "data", epochs=1, **TINY)
    tuned = load_classifier(tmp_path / "fs")
    assert tuned.class_names == load_classifier(fairseq / "checkpoint.pt", fairseq_data=fairseq / "data").class_names
    assert (tmp_path / "fs" / "id_map.npy").is_file()
    out, _ = tiny_model
    train(short_rows, tmp_path / "own", init=out, epochs=1, **TINY)
    assert np.array_equal(np.load(tmp_path / "own" / "id_map.npy"), np.load(out / "id_map.npy"))


def test_bad_inputs(tmp_path, shared_data, short_rows):
    args = {**TINY, "epochs": 1}
    with pytest.raises(RobertaInferError, match="no label column"):
        train(shared_data / "SST-2" / "test.tsv", tmp_path / "m", **args)
    (tmp_path / "empty.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(RobertaInferError, match="no training rows"):
        train(tmp_path / "empty.tsv", tmp_path / "m", **args)
    (tmp_path / "one.tsv").write_text("sentence\tlabel\ngood\t1\n")
    with pytest.raises(RobertaInferError, match="no training rows"):
        train(tmp_path / "one.tsv", tmp_path / "m", **args)
    with pytest.raises(RobertaInferError, match="not divisible by --heads 3"):
        train(short_rows, tmp_path / "m", **{**args, "heads": 3})
    with pytest.raises(RobertaInferError, match="train.tsv not found"):
        train(tmp_path, tmp_path / "m", **args)
    with pytest.raises(RobertaInferError, match="not found"):
        train(short_rows, tmp_path / "m", init=tmp_path / "missing", **args)
    with pytest.raises(RobertaInferError, match="--epochs must be at least 1"):
        train(short_rows, tmp_path / "m", **{**args, "epochs": 0})
    assert not (tmp_path / "m").exists()


def test_cli_min_count_and_mlm_warmup(tmp_path, short_rows, tiny_model, capsys):
    """Through the command line: --min-count shrinks the vocabulary to a trained <unk>, --mlm-steps runs first."""
    args = ["train", "--data", str(short_rows), "--out", str(tmp_path / "m"), "--layers", "1", "--hidden", "32",
            "--heads", "2", "--ffn", "64", "--max-len", "16", "--epochs", "1", "--holdout", "0.2", "--threads", "1",
            "--min-count", "3", "--mlm-steps", "5"]
    assert main(args) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["args"]["min_count"] == 3 and np.isfinite(record["mlm_final_loss"])
    assert record["model"]["vocab_size"] < tiny_model[1]["model"]["vocab_size"]
    id_map = np.load(tmp_path / "m" / "id_map.npy")
    assert (id_map == 3).sum() > (np.load(tiny_model[0] / "id_map.npy") == 3).sum()
    load_classifier(tmp_path / "m")
    assert main([*args[:-2], "--min-count", "0"]) == 2
    assert "argument --min-count: must be in [1, " in capsys.readouterr().err


def test_split_unknown_model_loads_exports_and_predicts_the_same(tmp_path, short_rows):
    """A model whose rare and unseen tokens are BPE pieces: the flag is saved, and a bundle of it matches PyTorch."""
    from roberta_infer.bundle import build_bundle, open_model

    # 64 positions: the export's fidelity check runs shapes up to 17 ids.
    record = train(short_rows, tmp_path / "m", epochs=2, seed=0, min_count=3, split_unknown=True, **{**TINY, "max_len": 64})
    assert record["args"]["split_unknown"]
    assert json.loads((tmp_path / "m" / "special_ids.json").read_text())["split_unknown"] is True
    classifier = load_classifier(tmp_path / "m")
    texts = ["a fascinating , beautiful film without fans", "offbeat , nevertheless", "naïve café 😀"]
    rows = classifier.encoder.encode(texts)
    unsplit = dataclasses.replace(classifier.encoder, split_unknown=False).encode(texts)
    unk = classifier.encoder.unk
    # The ~180-id vocabulary has none of the long words, but has pieces of them.
    assert sum(r.count(unk) for r in rows[:2]) < sum(r.count(unk) for r in unsplit[:2])
    build_bundle(classifier, tmp_path / "bundle", progress=lambda _: None)
    bundle = open_model(tmp_path / "bundle")
    assert bundle.encoder.encode(texts) == rows
    assert np.abs(classify(classifier, texts) - classify(bundle, texts)).max() < 1e-4


def test_split_unknown_is_for_models_trained_from_scratch(tmp_path, short_rows, tiny_model, capsys):
    base = ["train", "--data", str(short_rows), "--out", str(tmp_path / "m"), "--epochs", "1", "--holdout", "0.2"]
    assert main([*base, "--split-unknown", "--init", str(tiny_model[0])]) == 2
    assert "--split-unknown is for training from scratch" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path, short_rows, monkeypatch):
    """Killed after its 3rd saved state, the same command resumes from it and ends with the weights of a run never
    stopped (dropout included: the RNGs are in the state); the state file is gone once the model is written."""
    args = {"epochs": 2, "seed": 3, "dropout": 0.1, "checkpoint_every": 4, **TINY}
    whole = train(short_rows, tmp_path / "whole", **args)
    saves = []
    real_save = TrainState.save

    def save_then_die(self, **state):
        real_save(self, **state)
        saves.append(state["step"])
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainState, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(short_rows, tmp_path / "resumed", **args)
    monkeypatch.setattr(TrainState, "save", real_save)
    assert (tmp_path / "resumed.train-state.pt").is_file() and not (tmp_path / "resumed").exists()
    resumed = train(short_rows, tmp_path / "resumed", **args)
    resumed_weights = load_file(tmp_path / "resumed" / "model.safetensors")
    assert resumed_weights.keys() == load_file(tmp_path / "whole" / "model.safetensors").keys()
    for name, weights in load_file(tmp_path / "whole" / "model.safetensors").items():
        np.testing.assert_array_equal(resumed_weights[name], weights, err_msg=name)
    assert resumed["epochs"] == whole["epochs"]
    assert not (tmp_path / "resumed.train-state.pt").exists()
    saves.clear()
    monkeypatch.setattr(TrainState, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(short_rows, tmp_path / "other", **args)
    monkeypatch.setattr(TrainState, "save", real_save)
    with pytest.raises(RobertaInferError, match="other arguments"):
        train(short_rows, tmp_path / "other", **{**args, "lr": 1e-3})
