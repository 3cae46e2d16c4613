"""Shared test fixtures: the reference data beside the repo, and tiny random RoBERTa classifiers built at test time;
and a home and roberta-infer cache of the session's own."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import tritonclient.http
from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
# Random weights at 10x transformers' default spread give O(1) logits, so a wrong mask or weight shows far above 1e-4.
INIT_RANGE = 0.2
# Variables that would lead a test, or a process it starts, to the user's files: the roberta-infer cache, and the
# home where libraries keep caches and telemetry ids (matplotlib, ONNX Runtime, OpenVINO) unless XDG_* or
# MPLCONFIGDIR point elsewhere.
PRIVATE_ENV = ("HOME", "ROBERTA_INFER_CACHE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
               "MPLCONFIGDIR")
SAVED_ENV = pytest.StashKey[tuple[Path, dict[str, str | None]]]()


def pytest_configure(config: pytest.Config) -> None:
    """Before the tests are even imported (ONNX Runtime writes to the home when imported): an empty home for this
    session, its own empty roberta-infer cache inside (the default model is exported there once per session, if a
    test needs it), and no XDG_* / MPLCONFIGDIR pointing outside it. Every process a test starts inherits them."""
    home = Path(tempfile.mkdtemp(prefix="roberta-infer-tests-home-"))
    config.stash[SAVED_ENV] = home, {name: os.environ.get(name) for name in PRIVATE_ENV}
    for name in PRIVATE_ENV:
        os.environ.pop(name, None)
    os.environ["HOME"] = str(home)
    os.environ["ROBERTA_INFER_CACHE"] = str(home / ".cache" / "roberta-infer")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The caller's environment back, the session's home removed."""
    home, saved = config.stash[SAVED_ENV]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $ROBERTA_INFER_SHARED): verified SST-2 and GPT-2 BPE files, never copied into the repo."""
    path = Path(os.environ.get("ROBERTA_INFER_SHARED", REPO.parent / "shared" / "data"))
    if not (path / "SST-2" / "dev.tsv").is_file() or not (path / "gpt2_bpe" / "encoder.json").is_file():
        pytest.fail(f"reference data not found at {path}: put ../shared/data beside the repo or set ROBERTA_INFER_SHARED")
    return path


def roberta_vocab(shared: Path) -> dict[str, int]:
    """roberta-base's vocab.json: fairseq dict.txt order over GPT-2 token strings, after the four specials."""
    encoder = json.loads((shared / "gpt2_bpe" / "encoder.json").read_text())
    by_id = {v: k for k, v in encoder.items()}
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for line in (shared / "gpt2_bpe" / "dict.txt").read_text().splitlines():
        symbol = line.split(" ")[0]
        vocab[by_id[int(symbol)] if symbol.isdigit() else symbol] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def tiny_classifier(*, num_labels: int, layers: int, seed: int, attn: str = "eager") -> RobertaForSequenceClassification:
    """A random 32-wide RoBERTa over a 150-id vocabulary (no tokenizer), for the ONNX stages."""
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=150, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=42, type_vocab_size=1, num_labels=num_labels,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, initializer_range=INIT_RANGE,
                           attn_implementation=attn)
    return RobertaForSequenceClassification(config).eval()


def make_hf_model(directory: Path, shared: Path, *, num_labels: int = 2, layers: int = 2, tokenizer_json: bool = True,
                  safetensors: bool = True, seed: int = 0, max_positions: int = 64) -> Path:
    """A random RoBERTa classifier in Hugging Face format, with roberta-base's real tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = roberta_vocab(shared)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_bytes((shared / "gpt2_bpe" / "vocab.bpe").read_bytes())
    if tokenizer_json:
        RobertaTokenizer.from_pretrained(directory).save_pretrained(directory)
        (directory / "vocab.json").unlink()
        (directory / "merges.txt").unlink()
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=max_positions + 2, type_vocab_size=1, num_labels=num_labels, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, initializer_range=INIT_RANGE,
        id2label={i: ["negative", "positive", "neutral"][i] for i in range(num_labels)},
    )
    model = RobertaForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    if not safetensors:
        (directory / "model.safetensors").unlink()
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    return directory


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory, shared_data) -> Path:
    return make_hf_model(tmp_path_factory.mktemp("hf") / "model", shared_data)


@pytest.fixture(scope="session")
def hf_bundle(tmp_path_factory, hf_model) -> Path:
    """`hf_model` exported as a dynamic-shape fp32 ONNX Runtime bundle (`build_bundle`'s defaults), once per session:
    for tests that only read it."""
    from roberta_infer.bundle import build_bundle
    from roberta_infer.checkpoint import load_classifier

    out = tmp_path_factory.mktemp("hf-bundle") / "bundle"
    build_bundle(load_classifier(hf_model), out, progress=lambda _: None)
    return out


def make_int8_fragile_model(directory: Path, shared: Path, *, layer: int = 1) -> Path:
    """`make_hf_model`, then one FFN neuron of `layer` made dead (input weights 0, bias -1000: GELU gives exactly 0)
    with output weights of 1e4: fp32 is unchanged, but int8's per-channel scales grow so that every other weight of
    that FFN output rounds to 0, which breaks the layer on any CPU. Leaving that MatMul fp32 repairs it."""
    make_hf_model(directory, shared, seed=7)
    model = RobertaForSequenceClassification.from_pretrained(directory)
    ffn = model.roberta.encoder.layer[layer]
    with torch.no_grad():
        ffn.intermediate.dense.weight[0] = 0
        ffn.intermediate.dense.bias[0] = -1000
        ffn.output.dense.weight[:, 0] = 1e4
    model.save_pretrained(directory)
    return directory


def self_labelled_data(directory: Path, shared: Path, labels_from, *, rows: int = 300) -> Path:
    """SST-2 train.tsv and dev.tsv of `rows` sentences each (dev's first, train's longest), labelled with the
    predictions of `labels_from` (texts → logits [N, 2]): fp32 scores 100 %, so every label int8 flips is lost."""
    from roberta_infer.data import read_sst2

    directory.mkdir(parents=True, exist_ok=True)
    dev = read_sst2(shared / "SST-2" / "dev.tsv").sentences[:rows]
    train = sorted(read_sst2(shared / "SST-2" / "train.tsv").sentences[:20000], key=lambda s: -len(s))[:rows]
    for name, texts in (("dev", dev), ("train", train)):
        predicted = labels_from(texts).argmax(1)
        (directory / f"{name}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{p}\n" for s, p in zip(texts, predicted)))
    return directory


@pytest.fixture()
def client(url):
    """Triton's own HTTP client (tritonclient.http) of the server at the requesting module's `url` fixture."""
    client = tritonclient.http.InferenceServerClient(url.removeprefix("http://"))
    yield client
    client.close()
