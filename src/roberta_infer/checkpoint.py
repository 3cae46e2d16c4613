"""Load a user's RoBERTa classifier — fairseq checkpoint or Hugging Face directory — as one PyTorch model.

fairseq checkpoints are converted to `transformers.RobertaForSequenceClassification` (eager attention,
so the ONNX export keeps the pattern ONNX Runtime fuses), without importing fairseq: the pickle is read
with `torch.load(weights_only=True)` and a minimal allowlist, so a checkpoint cannot run code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import RobertaConfig, RobertaForSequenceClassification
from transformers.utils import logging as hf_logging

from .data import bpe_dir as default_bpe_dir
from .data import read_utf8, sha256_file
from .errors import RobertaInferError
from .outputs import FAIRSEQ_CHECKPOINTS, HF_WEIGHTS, describe, kind_of
from .tokenise import FairseqDictionary, TextEncoder, label_symbols

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
HF_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Tensors a Hugging Face RoBERTa checkpoint may hold or lack without changing a classifier's logits: index buffers
# (older transformers saved them) and the pooler, which RobertaForSequenceClassification does not use.
HARMLESS_TENSORS = re.compile(r"(^|\.)(position_ids|token_type_ids)$|(^|\.)pooler\.")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count set to `threads` for the block (None: left as it is), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def transformers_quiet() -> Iterator[None]:
    """transformers' warnings and progress bars off for the block (our output stays one line per step), its logging
    level and progress-bar setting restored after: no process-wide change."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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

    @property
    def architecture(self) -> dict:
        """{"layers", "hidden", "heads", "ffn", "vocab", "positions"} of the model's config (as manifests record it)."""
        config = self.model.config
        return {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads,
                "ffn": config.intermediate_size, "vocab": config.vocab_size, "positions": config.max_position_embeddings}

    @torch.inference_mode()
    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.ascontiguousarray(src_tokens, dtype=np.int64))
        return self.model(input_ids=ids, attention_mask=(ids != self.encoder.pad).long()).logits.float().numpy()


def max_tokens(model: RobertaForSequenceClassification) -> int:
    """Longest `<s> … </s>` sequence the position table holds (RoBERTa positions start after the pad id)."""
    return model.config.max_position_embeddings - model.config.pad_token_id - 1


def load_classifier(path: Path, *, fairseq_data: Path | None = None, bpe_dir: Path | None = None, head: str | None = None,
                    class_names: list[str] | None = None) -> RobertaClassifier:
    """Load a Hugging Face directory or a fairseq checkpoint (file, or directory holding one).

    `head` picks a fairseq classification head by name (`--classification-head-name`); `class_names` names the
    classes in logit order, overriding the label dictionary / `id2label`. Raises RobertaInferError on bad input.
    """
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        if head is not None:
            raise RobertaInferError(f"--head chooses a fairseq classification head; {path} is a Hugging Face model with one "
                                    "classifier")
        return load_huggingface(path, bpe_dir=bpe_dir, class_names=class_names)
    if path.is_dir():
        found = [path / n for n in FAIRSEQ_CHECKPOINTS if (path / n).is_file()]
        if not found:
            kind = kind_of(path)
            if kind is not None:  # another stage's output where a checkpoint belongs: name what it is
                raise RobertaInferError(f"{path} is {describe(kind)}, not a checkpoint: give the fairseq checkpoint or "
                                        "Hugging Face folder it came from (`roberta-infer info` names a bundle's source)")
            raise RobertaInferError(
                f"{path} is neither a Hugging Face model (config.json) nor a folder with a fairseq "
                f"{' / '.join(FAIRSEQ_CHECKPOINTS)}"
            )
        path = found[0]
    if not path.is_file():
        raise RobertaInferError(f"model {path} not found")
    return load_fairseq(path, fairseq_data=fairseq_data, bpe_dir=bpe_dir, head=head, class_names=class_names)


def named_classes(found: list[str], given: list[str] | None, where: Path) -> list[str]:
    """The model's class names: `given` (`--class-names`) when set, which must count as many as the model's classes."""
    if given is None:
        return found
    if len(given) != len(found):
        raise RobertaInferError(f"--class-names lists {len(given)} names but {where} has {len(found)} classes")
    return list(given)


# ---------------------------------------------------------------- Hugging Face


def load_huggingface(model_dir: Path, *, bpe_dir: Path | None = None, class_names: list[str] | None = None) -> RobertaClassifier:
    """A transformers RoBERTa classifier; its tokenizer is its own, or GPT-2's BPE + `id_map.npy` (our trained models).

    Weights in any layout `save_pretrained` writes (one file or shards behind an index) are loaded by transformers.
    """
    config_path = model_dir / "config.json"
    try:
        config = json.loads(read_utf8(config_path))
    except json.JSONDecodeError as e:
        raise RobertaInferError(f"{config_path} is not valid JSON: {e}") from None
    if config.get("model_type") != "roberta":
        raise RobertaInferError(f"{model_dir} holds a {config.get('model_type')!r} model, not a RoBERTa one")
    weights = huggingface_weights(model_dir)
    try:
        with transformers_quiet():
            model, loading = RobertaForSequenceClassification.from_pretrained(
                model_dir, attn_implementation="eager", local_files_only=True, output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError) as e:
        raise RobertaInferError(f"cannot load {model_dir}: {str(e).splitlines()[0]}") from None
    check_coverage(model_dir, loading)
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
    names = named_classes([str(cfg.id2label[i]) for i in range(cfg.num_labels)], class_names, model_dir)
    return RobertaClassifier(model, encoder, names,
                             {"kind": "huggingface", "path": str(model_dir), "sha256": files_sha256(weights)})


def check_coverage(model_dir: Path, loading: dict) -> None:
    """Refuse weights that do not cover the config exactly (RobertaInferError naming the tensors): transformers would
    initialise a missing tensor at random (a config asking for more layers than the weights hold loads a random
    layer) and drop an unexpected one. `loading` is `from_pretrained(output_loading_info=True)`'s: missing_keys,
    unexpected_keys, mismatched_keys. Buffers (position_ids, token_type_ids) and a pooler the classifier has no use
    for are harmless (HARMLESS_TENSORS)."""
    names = {kind: [str(k[0] if isinstance(k, tuple) else k) for k in loading.get(f"{kind}_keys") or ()]
             for kind in ("missing", "unexpected", "mismatched")}  # mismatched ones come as (name, shapes…)
    found = {kind: sorted(k for k in keys if not HARMLESS_TENSORS.search(k)) for kind, keys in names.items()}
    problems = [f"{len(names)} {kind} ({', '.join(names[:4])}{', …' if len(names) > 4 else ''})"
                for kind, names in found.items() if names]
    if problems:
        raise RobertaInferError(f"{model_dir}: its weights do not fit its config.json, tensors {'; '.join(problems)}: "
                                "a missing tensor would be random (check num_hidden_layers and the other sizes in config.json)")


def huggingface_weights(model_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face folder: one `model.safetensors` / `pytorch_model.bin`, or an index + its shards.

    Index format (transformers' `save_pretrained(max_shard_size=…)`): JSON whose `weight_map` maps tensor name → shard file.
    """
    for name in HF_WEIGHTS:
        if (model_dir / name).is_file():
            return [model_dir / name]
    for name in HF_INDEXES:
        index = model_dir / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(read_utf8(index))["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise RobertaInferError(f"{index} is not a weight index (JSON with a 'weight_map')") from None
            missing = [shard for shard in shards if not (model_dir / shard).is_file()]
            if missing or not shards:
                raise RobertaInferError(f"{index} names {len(shards)} shards, {len(missing)} of them missing, e.g. {missing[:1]}")
            return [index, *(model_dir / shard for shard in shards)]
    raise RobertaInferError(f"{model_dir} has no weights: expected {', '.join(HF_WEIGHTS + HF_INDEXES)} (with its shards)")


def files_sha256(files: list[Path]) -> str:
    """One file's sha256; for several (an index and its shards), the sha256 of their `name sha256` lines in order."""
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(f"{f.name} {sha256_file(f)}\n" for f in files).encode()).hexdigest()


# ---------------------------------------------------------------- fairseq


def load_fairseq(path: Path, *, fairseq_data: Path | None, bpe_dir: Path | None, head: str | None = None,
                 class_names: list[str] | None = None) -> RobertaClassifier:
    """fairseq RoBERTa (≥0.10 `cfg` + `encoder.*`, or 2019 `args` + `decoder.*`) → transformers model.

    Class names: `class_names`, else the label dictionary's lines (which must count as many as the head's classes:
    RobertaInferError naming --class-names otherwise), else "0", "1", … with a warning.
    """
    state = safe_torch_load(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise RobertaInferError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    weights = normalise_fairseq_keys(state["model"], path)
    hparams = fairseq_hparams(state, path)
    dict_path, label_path = fairseq_dictionaries(path, fairseq_data)
    dictionary = FairseqDictionary.load(dict_path)
    vocab_rows = weights["sentence_encoder.embed_tokens.weight"].shape[0]
    if len(dictionary) != vocab_rows:
        raise RobertaInferError(
            f"dictionary {dict_path} has {len(dictionary)} symbols (with specials and <mask>) "
            f"but {path} embeds {vocab_rows}: wrong --fairseq-data for this checkpoint"
        )
    head = choose_head(weights, head, path)
    num_classes = weights[f"{HEAD_PREFIX}{head}.out_proj.weight"].shape[0]
    if class_names is not None:
        names = named_classes([str(i) for i in range(num_classes)], class_names, path)
    elif label_path is not None:
        names = label_symbols(label_path)  # class k is line k
        if num_classes != len(names):  # a head trained on other data (another task's head in the same checkpoint)
            raise RobertaInferError(f"{path}: classification head {head!r} has {num_classes} classes but the label "
                                    f"dictionary {label_path} beside it lists {len(names)} ({', '.join(names)}): give "
                                    f"--class-names with the head's {num_classes} class names, in logit order")
    else:
        names = [str(i) for i in range(num_classes)]
        warnings.warn(f"no label dictionary (label/dict.txt) for {path}: its {num_classes} classes are named by index "
                      f"{', '.join(names)}; give --class-names to name them (class k is line k of the label dictionary "
                      f"it was trained with: fairseq's SST-2 one lists label 1 first)")
    try:
        config, hf_state = to_huggingface(weights, hparams, head, names, path)
    except KeyError as e:
        raise RobertaInferError(f"{path} is not a RoBERTa classifier checkpoint: it has no weight {e}") from None
    model = RobertaForSequenceClassification(config)
    model.eval()
    missing, unexpected = model.load_state_dict(hf_state, strict=False)
    missing = [k for k in missing if k != "roberta.embeddings.token_type_embeddings.weight"]
    if missing or unexpected:
        raise RobertaInferError(f"{path}: weights do not fit RoBERTa (missing {missing[:3]}, unexpected {unexpected[:3]})")
    encoder = TextEncoder.gpt2_fairseq(default_bpe_dir(bpe_dir), dictionary)
    return RobertaClassifier(model, encoder, list(config.id2label.values()),
                             {"kind": "fairseq", "path": str(path), "sha256": sha256_file(path)})


def safe_torch_load(path: Path) -> dict:
    """`torch.load` that unpickles only tensors, plain containers and the allowlisted fairseq types."""
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive (PK\x03\x04); fairseq's 2019 checkpoints are a pickle (protocol 2+: \x80)
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):
        raise RobertaInferError(f"{path} is not a checkpoint (neither a PyTorch zip archive nor a pickle): give a fairseq "
                                "checkpoint.pt, a Hugging Face model folder or a bundle")
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


def fairseq_dictionaries(checkpoint: Path, given: Path | None) -> tuple[Path, Path | None]:
    """The source dictionary and the label dictionary (None if absent) of a fairseq checkpoint.

    Looked for in `--fairseq-data`, else the checkpoint's folder, else its `data/`: the fairseq-preprocess output
    (`input0/dict.txt` + `label/dict.txt`) or, as released models ship, a bare `dict.txt` (no label dictionary).
    """
    for candidate in ([Path(given)] if given is not None else [checkpoint.parent, checkpoint.parent / "data"]):
        for source in (candidate / "input0" / "dict.txt", candidate / "dict.txt"):
            if source.is_file():
                labels = candidate / "label" / "dict.txt"
                return source, labels if labels.is_file() else None
    where = given if given is not None else checkpoint.parent
    raise RobertaInferError(
        f"no input0/dict.txt nor dict.txt in {where}: a fairseq checkpoint needs --fairseq-data DIR "
        f"(the fairseq-preprocess output it was trained on, or the folder with the released model's dict.txt)"
    )


def choose_head(weights: dict, head: str | None, path: Path) -> str:
    """The classification head to run: `head` if given, else the only one; several and none chosen is an error."""
    heads = sorted({k[len(HEAD_PREFIX) :].split(".")[0] for k in weights if k.startswith(HEAD_PREFIX)})
    if not heads:
        raise RobertaInferError(f"{path} has no classification head: it is a pretrained LM, not a classifier")
    if head is not None and head not in heads:
        raise RobertaInferError(f"{path} has no classification head {head!r}; its heads: {', '.join(heads)}")
    if head is None and len(heads) > 1:
        raise RobertaInferError(f"{path} has {len(heads)} classification heads ({', '.join(heads)}): choose one with --head NAME")
    return head or heads[0]


def to_huggingface(weights: dict, hp: dict, head: str, class_names: list[str], path: Path) -> tuple[RobertaConfig, dict]:
    """Map fairseq RoBERTa weights (classification head `head`) and hyper-parameters onto transformers' names and config."""
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
        num_labels=len(class_names),
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
    used = {"sentence_encoder.embed_tokens.weight", "sentence_encoder.embed_positions.weight", "sentence_encoder.version",
            *(f"sentence_encoder.layernorm_embedding.{part}" for part in ("weight", "bias")),
            *(f"sentence_encoder.layers.{i}.{fs_name}.{part}"
              for i in range(layers) for fs_name in sub for part in ("weight", "bias"))}
    unexpected = sorted(k for k in weights if k.startswith("sentence_encoder.") and k not in used)
    if unexpected:  # an encoder tensor the conversion would drop: a different architecture, whose logits would be wrong
        raise RobertaInferError(f"{path}: {len(unexpected)} encoder tensors do not fit RoBERTa ({', '.join(unexpected[:4])}"
                                f"{', …' if len(unexpected) > 4 else ''})")
    return config, {k: v.float() for k, v in hf.items()}
