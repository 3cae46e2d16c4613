"""Load a user's RoBERTa classifier — fairseq checkpoint or Hugging Face directory — as one PyTorch model.

fairseq checkpoints are converted to `transformers.RobertaForSequenceClassification` (eager attention,
so the ONNX export keeps the pattern ONNX Runtime fuses), without importing fairseq: the pickle is read
with `torch.load(weights_only=True)` and a minimal allowlist, so a checkpoint cannot run code.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import RobertaConfig, RobertaForSequenceClassification
from transformers.utils import logging as hf_logging

from .data import bpe_dir as default_bpe_dir
from .data import sha256_file
from .errors import RobertaInferError
from .tokenise import FAIRSEQ_SPECIALS, FairseqDictionary, TextEncoder

FAIRSEQ_CHECKPOINT_NAMES = ("checkpoint.pt", "model.pt", "checkpoint_best.pt", "checkpoint_last.pt")
# Non-tensor types a genuine fairseq checkpoint pickles (2019 `args`, numpy scalars in `extra_state`).
# numpy 1.x pickles name its scalar reconstructor `numpy.core.…`, numpy 2 `numpy._core.…`: allow both spellings.
_DTYPES = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
SAFE_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    *_DTYPES,
    *[(t, f"numpy.dtypes.{t.__name__}") for t in _DTYPES],
]
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new", "relu": "relu", "tanh": "tanh"}
HEAD_PREFIX = "classification_heads."
DEFAULT_HEAD = "sentence_classification_head"


@dataclass
class RobertaClassifier:
    """A classifier in PyTorch with everything needed to go from text to labelled logits."""

    model: RobertaForSequenceClassification
    encoder: TextEncoder
    class_names: list[str]
    source: dict = field(default_factory=dict)

    @property
    def max_tokens(self) -> int:
        return max_tokens(self.model)

    @torch.inference_mode()
    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.ascontiguousarray(src_tokens, dtype=np.int64))
        return self.model(input_ids=ids, attention_mask=(ids != self.encoder.pad).long()).logits.float().numpy()


def max_tokens(model: RobertaForSequenceClassification) -> int:
    """Longest `<s> … </s>` sequence the position table holds (RoBERTa positions start after the pad id)."""
    return model.config.max_position_embeddings - model.config.pad_token_id - 1


def load_classifier(path: Path, *, fairseq_data: Path | None = None, bpe_dir: Path | None = None) -> RobertaClassifier:
    """Load a Hugging Face directory or a fairseq checkpoint (file, or directory holding one)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_huggingface(path, bpe_dir=bpe_dir)
    if path.is_dir():
        found = [path / n for n in FAIRSEQ_CHECKPOINT_NAMES if (path / n).is_file()]
        if not found:
            raise RobertaInferError(
                f"{path} is neither a Hugging Face model (config.json) nor a folder with a fairseq "
                f"{' / '.join(FAIRSEQ_CHECKPOINT_NAMES)}"
            )
        path = found[0]
    if not path.is_file():
        raise RobertaInferError(f"model {path} not found")
    return load_fairseq(path, fairseq_data=fairseq_data, bpe_dir=bpe_dir)


# ---------------------------------------------------------------- Hugging Face


def load_huggingface(model_dir: Path, *, bpe_dir: Path | None = None) -> RobertaClassifier:
    """A transformers RoBERTa classifier; its tokenizer is its own, or GPT-2's BPE + `id_map.npy` (our trained models)."""
    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RobertaInferError(f"{config_path} is not valid JSON: {e}") from None
    if config.get("model_type") != "roberta":
        raise RobertaInferError(f"{model_dir} holds a {config.get('model_type')!r} model, not a RoBERTa one")
    if not any((model_dir / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        raise RobertaInferError(f"{model_dir} has no weights: expected model.safetensors or pytorch_model.bin")
    hf_logging.disable_progress_bar()  # our own output stays one line per step
    hf_logging.set_verbosity_error()
    try:
        model = RobertaForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager", local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise RobertaInferError(f"cannot load {model_dir}: {str(e).splitlines()[0]}") from None
    model.float().eval()  # weights stored in fp16 still run (and export) in fp32
    cfg = model.config
    if (model_dir / "special_ids.json").is_file():
        encoder = TextEncoder.load(model_dir, bpe_dir=bpe_dir)
    else:
        encoder = TextEncoder.huggingface(model_dir, bos=cfg.bos_token_id, pad=cfg.pad_token_id, eos=cfg.eos_token_id)
    if encoder.vocab_size() > cfg.vocab_size:
        raise RobertaInferError(
            f"{model_dir}: the tokenizer has {encoder.vocab_size()} tokens but the model embeds only {cfg.vocab_size}"
        )
    names = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
    weights = next(model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file())
    return RobertaClassifier(model, encoder, names, {"kind": "huggingface", "path": str(model_dir), "sha256": sha256_file(weights)})


# ---------------------------------------------------------------- fairseq


def load_fairseq(path: Path, *, fairseq_data: Path | None, bpe_dir: Path | None) -> RobertaClassifier:
    """fairseq RoBERTa (≥0.10 `cfg` + `encoder.*`, or 2019 `args` + `decoder.*`) → transformers model."""
    state = safe_torch_load(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise RobertaInferError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    weights = normalise_fairseq_keys(state["model"], path)
    hparams = fairseq_hparams(state, path)
    data_dir = fairseq_data_dir(path, fairseq_data)
    dictionary = FairseqDictionary.load(data_dir / "input0" / "dict.txt")
    labels = FairseqDictionary.load(data_dir / "label" / "dict.txt", add_mask=False)
    label_symbols = labels.symbols[len(FAIRSEQ_SPECIALS) :]  # class k is line k; madeupword padding may follow
    vocab_rows = weights["sentence_encoder.embed_tokens.weight"].shape[0]
    if len(dictionary) != vocab_rows:
        raise RobertaInferError(
            f"dictionary {data_dir / 'input0' / 'dict.txt'} has {len(dictionary)} symbols (with specials and <mask>) "
            f"but {path} embeds {vocab_rows}: wrong --fairseq-data for this checkpoint"
        )
    try:
        config, hf_state = to_huggingface(weights, hparams, label_symbols, path)
    except KeyError as e:
        raise RobertaInferError(f"{path} is not a RoBERTa classifier checkpoint: it has no weight {e}") from None
    model = RobertaForSequenceClassification(config)
    model.eval()
    missing, unexpected = model.load_state_dict(hf_state, strict=False)
    missing = [k for k in missing if k != "roberta.embeddings.token_type_embeddings.weight"]
    if missing or unexpected:
        raise RobertaInferError(f"{path}: weights do not fit RoBERTa (missing {missing[:3]}, unexpected {unexpected[:3]})")
    encoder = TextEncoder.gpt2_fairseq(default_bpe_dir(bpe_dir), dictionary)
    return RobertaClassifier(model, encoder, list(config.id2label.values()), {"kind": "fairseq", "path": str(path), "sha256": sha256_file(path)})


def safe_torch_load(path: Path) -> dict:
    """`torch.load` that unpickles only tensors, plain containers and the allowlisted fairseq types."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are noise to a user
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it pickles {unsafe.group(1)}, which is not allowed" if unsafe else str(e).splitlines()[0]
        raise RobertaInferError(f"refusing to load {path}: {what} (only tensors and plain data are loaded, never code)") from None
    except Exception as e:  # torch's unpickler fails on garbage with assorted exception types
        raise RobertaInferError(f"{path} is not a PyTorch checkpoint: {str(e).splitlines()[0]}") from None


def normalise_fairseq_keys(model_state: dict, path: Path) -> dict[str, torch.Tensor]:
    """Strip `encoder.`/`decoder.`, rename 2019 names, split fused `in_proj` attention weights."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model_state.items():
        for prefix in ("encoder.", "decoder."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        key = key.replace("sentence_encoder.emb_layer_norm.", "sentence_encoder.layernorm_embedding.")
        if ".self_attn.in_proj_" in key:
            q, k, v = tensor.chunk(3, dim=0)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), (q, k, v)):
                out[key.replace("in_proj_", f"{name}.")] = part
            continue
        out[key] = tensor
    if "sentence_encoder.embed_tokens.weight" not in out:
        raise RobertaInferError(f"{path} is not a RoBERTa checkpoint (no sentence_encoder.embed_tokens.weight)")
    return out


def fairseq_hparams(state: dict, path: Path) -> dict:
    """Model hyper-parameters from `cfg['model']` (fairseq ≥ 0.10) or the 2019 `args` Namespace."""
    cfg = state.get("cfg")
    if isinstance(cfg, dict) and cfg.get("model") is not None:
        model_cfg = cfg["model"]
        return dict(model_cfg) if isinstance(model_cfg, dict) else vars(model_cfg)
    if isinstance(state.get("args"), argparse.Namespace):
        return vars(state["args"])
    raise RobertaInferError(f"{path} has neither 'cfg' nor 'args': cannot tell its architecture")


def fairseq_data_dir(checkpoint: Path, given: Path | None) -> Path:
    """`--fairseq-data`, else the checkpoint's own folder if it holds input0/ and label/."""
    for candidate in ([Path(given)] if given is not None else [checkpoint.parent, checkpoint.parent / "data"]):
        if (candidate / "input0" / "dict.txt").is_file() and (candidate / "label" / "dict.txt").is_file():
            return candidate
    where = given if given is not None else checkpoint.parent
    raise RobertaInferError(
        f"no input0/dict.txt and label/dict.txt in {where}: a fairseq checkpoint needs --fairseq-data DIR "
        f"(the fairseq-preprocess output it was trained on)"
    )


def to_huggingface(weights: dict, hp: dict, label_symbols: list[str], path: Path) -> tuple[RobertaConfig, dict]:
    """Map fairseq RoBERTa weights and hyper-parameters onto transformers' names and config.

    Class k is named by line k of the label dictionary (lines past the head's size are padding).
    """
    heads = sorted({k[len(HEAD_PREFIX) :].split(".")[0] for k in weights if k.startswith(HEAD_PREFIX)})
    if not heads:
        raise RobertaInferError(f"{path} has no classification head: it is a pretrained LM, not a classifier")
    head = DEFAULT_HEAD if DEFAULT_HEAD in heads else heads[0]
    num_classes = weights[f"{HEAD_PREFIX}{head}.out_proj.weight"].shape[0]
    if num_classes > len(label_symbols):
        raise RobertaInferError(f"{path} has {num_classes} classes but the label dictionary lists only {len(label_symbols)}")
    class_names = label_symbols[:num_classes]
    if hp.get("encoder_normalize_before"):
        raise RobertaInferError(f"{path} is a pre-LayerNorm model (encoder_normalize_before), which RoBERTa is not")
    activation = hp.get("activation_fn", "gelu")
    if activation not in ACTIVATIONS or hp.get("pooler_activation_fn", "tanh") != "tanh":
        raise RobertaInferError(f"{path}: activation {activation!r} / pooler {hp.get('pooler_activation_fn')!r} unsupported")
    layers = 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("sentence_encoder.layers."))
    embed = weights["sentence_encoder.embed_tokens.weight"]
    positions = weights["sentence_encoder.embed_positions.weight"]
    hidden = embed.shape[1]
    config = RobertaConfig(
        vocab_size=embed.shape[0],
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=int(hp.get("encoder_attention_heads", 12)),
        intermediate_size=weights["sentence_encoder.layers.0.fc1.weight"].shape[0],
        hidden_act=ACTIVATIONS[activation],
        max_position_embeddings=positions.shape[0],
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=num_classes,
        id2label=dict(enumerate(class_names)),
        label2id={n: i for i, n in enumerate(class_names)},
    )
    if hidden % config.num_attention_heads:
        raise RobertaInferError(f"{path}: hidden size {hidden} is not divisible by {config.num_attention_heads} heads")
    sub = {
        "self_attn.q_proj": "attention.self.query",
        "self_attn.k_proj": "attention.self.key",
        "self_attn.v_proj": "attention.self.value",
        "self_attn.out_proj": "attention.output.dense",
        "self_attn_layer_norm": "attention.output.LayerNorm",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
        "final_layer_norm": "output.LayerNorm",
    }
    hf: dict[str, torch.Tensor] = {
        "roberta.embeddings.word_embeddings.weight": embed,
        "roberta.embeddings.position_embeddings.weight": positions,
        "roberta.embeddings.token_type_embeddings.weight": torch.zeros(1, hidden, dtype=embed.dtype),
    }
    for part in ("weight", "bias"):
        hf[f"roberta.embeddings.LayerNorm.{part}"] = weights[f"sentence_encoder.layernorm_embedding.{part}"]
        hf[f"classifier.dense.{part}"] = weights[f"{HEAD_PREFIX}{head}.dense.{part}"]
        hf[f"classifier.out_proj.{part}"] = weights[f"{HEAD_PREFIX}{head}.out_proj.{part}"]
        for i in range(layers):
            for fs_name, hf_name in sub.items():
                hf[f"roberta.encoder.layer.{i}.{hf_name}.{part}"] = weights[f"sentence_encoder.layers.{i}.{fs_name}.{part}"]
    return config, {k: v.float() for k, v in hf.items()}
