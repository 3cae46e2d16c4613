"""Random-weight classifiers with a real model's exact shape and vocabulary, for speed measurements only.

Timings depend on the architecture, not on the weights, so a synthetic roberta-base measures roberta-base's
speed without its checkpoint. Its predictions mean nothing: every output made from one says "synthetic".
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import RobertaConfig, RobertaForSequenceClassification

from .bundle import build_bundle
from .checkpoint import RobertaClassifier
from .data import bpe_dir, data_root
from .errors import RobertaInferError
from .tokenise import FairseqDictionary, TextEncoder
from .verify import write_manifest

# fairseq's roberta-base: its dictionary (4 specials + dict.txt's 50,260 lines + <mask>) sizes the embedding.
SHAPES = {
    "roberta-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
                     "vocab_size": 50265, "max_position_embeddings": 514},
}
CLASS_NAMES = ["0", "1"]


def synthetic_classifier(name: str, *, seed: int = 0) -> RobertaClassifier:
    """`name`'s architecture with seeded random weights (the same every time) and its fairseq GPT-2 vocabulary."""
    if name not in SHAPES:
        raise RobertaInferError(f"no synthetic shape for {name!r}: choose one of {', '.join(SHAPES)}")
    dict_path = data_root() / "gpt2_bpe" / "dict.txt"
    if not dict_path.is_file():
        raise RobertaInferError(f"{dict_path} not found: a synthetic {name} uses fairseq's GPT-2 dictionary (gpt2_bpe/dict.txt); "
                                "set ROBERTA_INFER_DATA to the folder holding gpt2_bpe/, or run `roberta-infer prepare "
                                "--download`")
    dictionary = FairseqDictionary.load(dict_path)
    shape = SHAPES[name]
    if len(dictionary) != shape["vocab_size"]:
        raise RobertaInferError(f"{dict_path} gives {len(dictionary)} ids, {name} has {shape['vocab_size']}: not fairseq's GPT-2 "
                                "dict.txt")
    config = RobertaConfig(**shape, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           num_labels=len(CLASS_NAMES), id2label=dict(enumerate(CLASS_NAMES)),
                           label2id={n: i for i, n in enumerate(CLASS_NAMES)}, attn_implementation="eager")
    torch.manual_seed(seed)
    model = RobertaForSequenceClassification(config).eval()
    encoder = TextEncoder.gpt2_fairseq(bpe_dir(), dictionary)
    return RobertaClassifier(model, encoder, CLASS_NAMES, {"kind": "synthetic", "name": name, "seed": seed, "sha256": None})


def export_synthetic(name: str, out: Path, **options) -> dict:
    """`build_bundle(classifier, out, **options)` on a synthetic classifier, its manifest marked synthetic."""
    return mark_synthetic(build_bundle(synthetic_classifier(name), out, **options), out)


def mark_synthetic(manifest: dict, bundle: Path) -> dict:
    """Add `"synthetic": true` to the manifest of a bundle built from a synthetic classifier, for every later reader."""
    if manifest["source"].get("kind") == "synthetic":
        manifest["synthetic"] = True
        write_manifest(Path(bundle), manifest)
    return manifest


def model_label(manifest: dict) -> str:
    """How tables name a bundle's model: "synthetic roberta-base" for a synthetic one, else its source path."""
    source = manifest.get("source", {})
    if manifest.get("synthetic"):
        return f"synthetic {source.get('name', 'model')} (random weights)"
    return Path(source.get("path", "model")).name
