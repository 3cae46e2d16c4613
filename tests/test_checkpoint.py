"""Loading user checkpoints: Hugging Face parity with transformers, fairseq parity with fairseq's own outputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, make_hf_model
from transformers import AutoTokenizer, RobertaForSequenceClassification
from transformers.utils import logging as hf_logging

from roberta_infer.checkpoint import load_classifier
from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import classify

TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "great movie 😀",
    "café crème brûlée, naïve",
    "",
    "北京 is lovely",
    "The year 2024 had 365 days; 12 months!",
]


@pytest.mark.parametrize("tokenizer_json", [True, False], ids=["tokenizer.json", "vocab+merges"])
@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_huggingface_matches_transformers(tmp_path, shared_data, tokenizer_json, safetensors):
    model_dir = make_hf_model(tmp_path / "m", shared_data, num_labels=3, tokenizer_json=tokenizer_json, safetensors=safetensors)
    ours = load_classifier(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = RobertaForSequenceClassification.from_pretrained(model_dir).eval()
    assert ours.encoder.encode(TEXTS) == [tok(t)["input_ids"] for t in TEXTS]
    with torch.inference_mode():
        expected = ref(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    got = classify(ours, TEXTS, batch_size=3)
    assert np.abs(got - expected).max() < 1e-4
    assert ours.class_names == ["negative", "positive", "neutral"]
    assert ours.source["kind"] == "huggingface" and len(ours.source["sha256"]) == 64


def test_loading_leaves_transformers_logging_as_it_was(hf_model):
    """No process-wide change: transformers' level and progress bars are the caller's again after a load."""
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        load_classifier(hf_model)
        assert hf_logging.get_verbosity() == hf_logging.INFO and hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity_warning()


def test_huggingface_bad_inputs(tmp_path, hf_model):
    with pytest.raises(RobertaInferError, match="not found"):
        load_classifier(tmp_path / "nope")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(RobertaInferError, match="not a RoBERTa"):
        load_classifier(other)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_bytes((hf_model / "config.json").read_bytes())
    with pytest.raises(RobertaInferError, match="no weights"):
        load_classifier(weightless)


def test_huggingface_weights_that_do_not_cover_the_config_are_refused(tmp_path, shared_data):
    """A config.json asking for a layer the weights lack would load it at random (logits changing run to run)."""
    model_dir = make_hf_model(tmp_path / "m", shared_data, layers=2)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(RobertaInferError, match=r"16 missing \(roberta\.encoder\.layer\.2\."):
        load_classifier(model_dir)
    (model_dir / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(RobertaInferError, match=r"16 unexpected \(roberta\.encoder\.layer\.1\."):
        load_classifier(model_dir)
    assert main(["info", str(model_dir)]) == 2


def test_harmless_extra_tensors_still_load(tmp_path, shared_data):
    """An unused pooler and a position_ids buffer (older transformers saved both) change no logit."""
    from safetensors.torch import load_file, save_file

    model_dir = make_hf_model(tmp_path / "m", shared_data)
    state = load_file(model_dir / "model.safetensors")
    reference = RobertaForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    state["roberta.pooler.dense.weight"], state["roberta.pooler.dense.bias"] = torch.ones(32, 32), torch.ones(32)
    state["roberta.embeddings.position_ids"] = torch.arange(66)[None]
    save_file(state, model_dir / "model.safetensors", metadata={"format": "pt"})
    tokens = torch.tensor([[0, 100, 200, 2]])
    with torch.inference_mode():
        expected = reference(input_ids=tokens).logits.numpy()
    assert np.abs(load_classifier(model_dir).logits(tokens.numpy()) - expected).max() < 1e-6


class Boom:
    """Unpickling this would call os.system: a malicious checkpoint."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "evil": Boom()}, path)
    with pytest.raises(RobertaInferError, match="refusing to load .*os.system|refusing to load .*posix.system"):
        load_classifier(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(RobertaInferError, match="is not a checkpoint"):
        load_classifier(path)
    torch.save({"model": {"layer.weight": torch.zeros(2, 2)}, "cfg": {"model": {}}}, path)
    with pytest.raises(RobertaInferError, match="not a RoBERTa checkpoint"):
        load_classifier(path)
    with open(path, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(RobertaInferError):
        load_classifier(path)


FAIRSEQ = FIXTURES / "fairseq" / "tiny"
EXPECTED = json.loads((FAIRSEQ / "expected.json").read_text())


@pytest.mark.parametrize("checkpoint", ["checkpoint.pt", "checkpoint_2019.pt"])
def test_fairseq_matches_fairseq_hub(checkpoint, shared_data):
    """Ids and logits equal fairseq's own (RobertaModel.from_pretrained → encode → predict), both checkpoint layouts."""
    ours = load_classifier(FAIRSEQ / checkpoint, fairseq_data=FAIRSEQ / "data", bpe_dir=shared_data / "gpt2_bpe")
    assert ours.class_names == EXPECTED["class_names"] == ["1", "0"]
    assert ours.max_tokens == EXPECTED["max_positions"]
    texts = [case["text"] for case in EXPECTED["texts"]]
    rows = ours.encoder.encode(texts)
    for case, row in zip(EXPECTED["texts"], rows):
        ids = row[: ours.max_tokens - 1] + [2] if len(row) > ours.max_tokens else row
        assert ids == case["ids"], case["text"]
    assert any(case["truncated"] for case in EXPECTED["texts"]), "the fixture covers an over-long text"
    with pytest.warns(UserWarning, match="truncated"):
        logits = classify(ours, texts, batch_size=4)
    expected = np.array([case["logits"] for case in EXPECTED["texts"]])
    assert np.abs(logits - expected).max() < 1e-4
    assert [ours.class_names[i] for i in logits.argmax(1)] == [case["label"] for case in EXPECTED["texts"]]
    batch = EXPECTED["batch"]
    assert np.abs(ours.logits(np.array(batch["ids"])) - np.array(batch["logits"])).max() < 1e-4


def test_fairseq_checkpoint_found_beside_its_data(tmp_path):
    """A folder holding checkpoint.pt and data/{input0,label} loads with no --fairseq-data."""
    assert load_classifier(FAIRSEQ).source["kind"] == "fairseq"
    lone = tmp_path / "model.pt"
    lone.write_bytes((FAIRSEQ / "checkpoint.pt").read_bytes())
    with pytest.raises(RobertaInferError, match="needs --fairseq-data"):
        load_classifier(lone)


def test_fairseq_wrong_dictionary(shared_data, tmp_path):
    full = tmp_path / "data"
    (full / "input0").mkdir(parents=True)
    (full / "label").mkdir()
    (full / "input0" / "dict.txt").write_bytes((shared_data / "gpt2_bpe" / "dict.txt").read_bytes())
    (full / "label" / "dict.txt").write_bytes((FAIRSEQ / "data" / "label" / "dict.txt").read_bytes())
    with pytest.raises(RobertaInferError, match="has 50265 symbols .* embeds 1913: wrong --fairseq-data"):
        load_classifier(FAIRSEQ / "checkpoint.pt", fairseq_data=full)


def test_pretrained_lm_without_head_is_not_a_classifier(tmp_path):
    state = torch.load(FAIRSEQ / "checkpoint.pt", weights_only=False)
    state["model"] = {k: v for k, v in state["model"].items() if "classification_heads" not in k}
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(RobertaInferError, match="no classification head"):
        load_classifier(tmp_path / "checkpoint.pt", fairseq_data=FAIRSEQ / "data")


def test_fairseq_encoder_tensor_the_conversion_would_drop_is_refused(tmp_path):
    state = torch.load(FAIRSEQ / "checkpoint.pt", weights_only=False)
    state["model"]["encoder.sentence_encoder.layer_norm.weight"] = torch.ones(4)  # a pre-LN model's final norm
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(RobertaInferError, match=r"1 encoder tensors do not fit RoBERTa \(sentence_encoder\.layer_norm\.weight\)"):
        load_classifier(tmp_path / "checkpoint.pt", fairseq_data=FAIRSEQ / "data")


def test_fused_in_proj_attention_of_early_2019_checkpoints(tmp_path):
    """Mid-2019 fairseq stored q/k/v as one `in_proj_weight`; it must load to the same logits."""
    state = torch.load(FAIRSEQ / "checkpoint_2019.pt", weights_only=False)
    model = state["model"]
    for layer in {k.split(".self_attn.")[0] for k in model if ".self_attn.q_proj." in k}:
        for part in ("weight", "bias"):
            qkv = [model.pop(f"{layer}.self_attn.{p}_proj.{part}") for p in "qkv"]
            model[f"{layer}.self_attn.in_proj_{part}"] = torch.cat(qkv)
    torch.save(state, tmp_path / "checkpoint.pt")
    fused = load_classifier(tmp_path / "checkpoint.pt", fairseq_data=FAIRSEQ / "data")
    reference = load_classifier(FAIRSEQ / "checkpoint_2019.pt", fairseq_data=FAIRSEQ / "data")
    tokens = np.array(EXPECTED["batch"]["ids"])
    assert np.abs(fused.logits(tokens) - reference.logits(tokens)).max() < 1e-6


# ---------------------------------------------------------------- sharded Hugging Face weights


def _shard_as_pytorch_bin(model_dir: Path, shards: int) -> None:
    """Replace model.safetensors by `pytorch_model-0000k-of-0000n.bin` shards + `pytorch_model.bin.index.json`.

    transformers 5 writes only safetensors shards, so the torch-pickle layout older transformers wrote is built by
    hand in its documented form: {"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}.
    """
    model = RobertaForSequenceClassification.from_pretrained(model_dir)
    state = model.state_dict()
    names = list(state)
    weight_map, total = {}, 0
    for k in range(shards):
        shard = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        part = {name: state[name].contiguous() for name in names[k::shards]}
        torch.save(part, model_dir / shard)
        weight_map.update(dict.fromkeys(part, shard))
        total += sum(t.numel() * t.element_size() for t in part.values())
    (model_dir / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                        "weight_map": weight_map}))
    (model_dir / "model.safetensors").unlink()


@pytest.mark.parametrize("layout", ["safetensors shards", "pytorch_model.bin shards"])
def test_sharded_huggingface_weights(tmp_path, shared_data, layout):
    whole = make_hf_model(tmp_path / "whole", shared_data, num_labels=3)
    sharded = make_hf_model(tmp_path / "sharded", shared_data, num_labels=3)
    if layout == "safetensors shards":
        model = RobertaForSequenceClassification.from_pretrained(sharded)
        (sharded / "model.safetensors").unlink()
        model.save_pretrained(sharded, max_shard_size="200KB")
        assert (sharded / "model.safetensors.index.json").is_file()
    else:
        _shard_as_pytorch_bin(sharded, shards=3)
    assert len([f for f in sharded.iterdir() if f.name.startswith(("model-", "pytorch_model-"))]) > 1
    ours = load_classifier(sharded)
    tok = AutoTokenizer.from_pretrained(whole)
    ref = RobertaForSequenceClassification.from_pretrained(whole, attn_implementation="eager").eval()
    with torch.inference_mode():
        expected = ref(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    assert np.abs(classify(ours, TEXTS, batch_size=3) - expected).max() < 1e-5
    assert ours.source["sha256"] != load_classifier(whole).source["sha256"]  # the digest covers the shards, not the index alone
    index = next(sharded.glob("*.index.json"))
    next(f for f in sharded.iterdir() if f.name.startswith(("model-", "pytorch_model-"))).unlink()
    with pytest.raises(RobertaInferError, match=f"{index.name} names \\d+ shards, 1 of them missing"):
        load_classifier(sharded)


# ---------------------------------------------------------------- released fairseq models, heads by name


def _released_layout(tmp_path: Path, *, label_dict: bool) -> Path:
    """The tiny fixture as fairseq's released models ship: model.pt + dict.txt, label/dict.txt only if asked."""
    folder = tmp_path / "released"
    folder.mkdir()
    (folder / "model.pt").write_bytes((FAIRSEQ / "checkpoint.pt").read_bytes())
    (folder / "dict.txt").write_bytes((FAIRSEQ / "data" / "input0" / "dict.txt").read_bytes())
    if label_dict:
        (folder / "label").mkdir()
        (folder / "label" / "dict.txt").write_bytes((FAIRSEQ / "data" / "label" / "dict.txt").read_bytes())
    return folder


def _expected_logits() -> tuple[np.ndarray, np.ndarray]:
    batch = EXPECTED["batch"]
    return np.array(batch["ids"]), np.array(batch["logits"])


def test_released_model_with_dict_txt_beside_it(tmp_path):
    tokens, expected = _expected_logits()
    folder = _released_layout(tmp_path, label_dict=False)
    with pytest.warns(UserWarning, match="named by index 0, 1; give --class-names"):
        by_index = load_classifier(folder)
    assert by_index.class_names == ["0", "1"]
    assert np.abs(by_index.logits(tokens) - expected).max() < 1e-4
    named = load_classifier(folder / "model.pt", class_names=["positive", "negative"])
    assert named.class_names == ["positive", "negative"]
    with pytest.raises(RobertaInferError, match="--class-names lists 3 names but .* has 2 classes"):
        load_classifier(folder, class_names=["a", "b", "c"])
    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    (folder / "model.pt").rename(elsewhere / "model.pt")
    with pytest.warns(UserWarning, match="named by index"):
        assert np.abs(load_classifier(elsewhere / "model.pt", fairseq_data=folder).logits(tokens) - expected).max() < 1e-4
    (tmp_path / "l").mkdir()
    labelled = _released_layout(tmp_path / "l", label_dict=True)
    assert load_classifier(labelled).class_names == EXPECTED["class_names"]


def _two_heads(tmp_path: Path, *, names: tuple[str, ...]) -> Path:
    """The fixture with its head renamed `names[0]`, plus `names[1:]` copies whose output rows are swapped, in a folder
    of its own below `tmp_path` (outputs inside a checkpoint's folder are refused)."""
    state = torch.load(FAIRSEQ / "checkpoint.pt", weights_only=False)
    model = state["model"]
    prefix = "classification_heads.sentence_classification_head."
    head = {k[len(prefix) :]: model.pop(k) for k in list(model) if k.startswith(prefix)}
    for n, name in enumerate(names):
        for key, tensor in head.items():
            model[f"classification_heads.{name}.{key}"] = tensor.flip(0) if n and key.startswith("out_proj") else tensor.clone()
    (tmp_path / "checkpoint").mkdir()
    torch.save(state, tmp_path / "checkpoint" / "checkpoint.pt")
    return tmp_path / "checkpoint" / "checkpoint.pt"


def test_classification_head_by_name(tmp_path):
    tokens, expected = _expected_logits()
    path = _two_heads(tmp_path, names=("sst2", "mnli"))
    with pytest.raises(RobertaInferError, match=r"has 2 classification heads \(mnli, sst2\): choose one with --head NAME"):
        load_classifier(path, fairseq_data=FAIRSEQ / "data")
    sst2 = load_classifier(path, fairseq_data=FAIRSEQ / "data", head="sst2")
    assert np.abs(sst2.logits(tokens) - expected).max() < 1e-4
    mnli = load_classifier(path, fairseq_data=FAIRSEQ / "data", head="mnli")  # the copy with its two classes swapped
    assert np.abs(mnli.logits(tokens) - expected[:, ::-1]).max() < 1e-4
    with pytest.raises(RobertaInferError, match="no classification head 'qnli'; its heads: mnli, sst2"):
        load_classifier(path, fairseq_data=FAIRSEQ / "data", head="qnli")
    (tmp_path / "one").mkdir()
    lone = _two_heads(tmp_path / "one", names=("my_task",))
    assert np.abs(load_classifier(lone, fairseq_data=FAIRSEQ / "data").logits(tokens) - expected).max() < 1e-4


def test_a_head_with_another_class_count_than_the_label_dictionary_asks_for_class_names(tmp_path, capsys):
    """A 3-class head (another task's) beside SST-2's 2-label dictionary: one line naming --class-names, exit 2;
    with --class-names it loads, named as given."""
    path = _two_heads(tmp_path, names=("sst2", "mnli"))
    state = torch.load(path, weights_only=False)
    for part in ("weight", "bias"):
        key = f"classification_heads.mnli.out_proj.{part}"
        state["model"][key] = torch.cat([state["model"][key], state["model"][key][:1]])
    torch.save(state, path)
    with pytest.raises(RobertaInferError, match=r"head 'mnli' has 3 classes but the label dictionary .*label/dict.txt "
                                                r"beside it lists 2 \(1, 0\): give --class-names"):
        load_classifier(path, fairseq_data=FAIRSEQ / "data", head="mnli")
    loaded = load_classifier(path, fairseq_data=FAIRSEQ / "data", head="mnli", class_names=["e", "n", "c"])
    assert loaded.class_names == ["e", "n", "c"]
    (tmp_path / "t.txt").write_text("fine\n")
    assert main(["predict", "--model", str(path), "--fairseq-data", str(FAIRSEQ / "data"), "--head", "mnli",
                 "--input", str(tmp_path / "t.txt"), "--output", str(tmp_path / "out" / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "give --class-names" in err and len(err.splitlines()) == 1


def test_head_and_class_names_on_the_command_line(tmp_path, shared_data, capsys):
    path = _two_heads(tmp_path, names=("sst2", "mnli"))
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(case["text"] for case in EXPECTED["texts"][:3]) + "\n")
    common = ["predict", "--model", str(path), "--fairseq-data", str(FAIRSEQ / "data"), "--bpe-dir",
              str(shared_data / "gpt2_bpe"),
              "--input", str(texts), "--output", str(tmp_path / "out" / "o.jsonl"), "--force"]
    assert main(common) == 2
    assert "2 classification heads (mnli, sst2): choose one with --head NAME" in capsys.readouterr().err
    assert main([*common, "--head", "sst2", "--class-names", "pos,neg"]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "o.jsonl").read_text().splitlines()]
    expected = np.array([case["logits"] for case in EXPECTED["texts"][:3]])
    assert np.abs(np.array([r["logits"] for r in records]) - expected).max() < 1e-4
    assert [r["label"] for r in records] == [{"1": "pos", "0": "neg"}[case["label"]] for case in EXPECTED["texts"][:3]]
    assert main([*common, "--head", "sst2", "--class-names", "a,,b"]) == 2
    assert "distinct, non-empty names" in capsys.readouterr().err
