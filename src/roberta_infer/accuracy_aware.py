"""Accuracy-aware int8: where plain int8 loses too much, the fastest mixed model that keeps accuracy.

Both engines are validated the same way, on a held-out slice of SST-2 train (`heldout_set`: sentences NNCF's
calibration sample does not hold, dev-like in length where enough are; never dev, which stays the final gate's):
of the held-out sentences the fp32 model classifies correctly, the percentage a candidate gets wrong is its
held-out drop (`lost_pp`). Counting only the points a candidate loses, not those it wins back by luck, matters: on
the shipped default model (6 × 384) plain ONNX Runtime int8 flips 13 of 2,000 held-out sentences for a net drop of
0.05 points, yet loses 0.46 on SST-2 dev; the lost points (0.35) see it.

- ONNX Runtime (`search_float_nodes`): each group of the MatMuls quantize_dynamic quantizes (one op kind across the
  layers: attention Q/K/V, attention scores (two activations), attention output, FFN in, FFN out; or one layer's;
  the classifier head's) is left fp32 in turn and its held-out drop measured;
  the group that passes alone with the fewest float weights is kept, else the groups are added most sensitive
  first (by mean |Δlogit|) until the drop is within the limit. `quantize_dynamic`'s `nodes_to_exclude` does it.
- OpenVINO (`quantize_openvino_accuracy_aware`): `nncf.quantize_with_accuracy_control` on the same held-out set,
  its reverted operations read from its log.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization.onnx_model import ONNXModel

from .data import read_sst2, sha256_file, sst2_file
from .errors import RobertaInferError
from .predict import Classifier, classify, encode, length_batches, pad_batch
from .prepare import label_indices

HELDOUT_SEED = 1
HELDOUT_SIZE = 1000
MIN_WORDS = 10  # held-out rows at least this long, as dev's sentences are, where enough are
# Weight MatMuls grouped by op kind, from the node names of transformers' RoBERTa as torch.onnx exports it.
# attention_scores: the MatMuls of two activations (Q·Kᵀ and the scores times V), which quantize_dynamic quantizes too.
KINDS = {"attention_qkv": r"attention/self/(query|key|value)/", "attention_scores": r"attention/self/MatMul",
         "attention_output": r"attention/output/", "ffn_in": r"intermediate/", "ffn_out": r"layer\.\d+/output/"}
LAYER = re.compile(r"layer\.(\d+)/")


@dataclass(frozen=True)
class HeldOut:
    """Held-out SST-2 train sentences the fp32 reference classifies correctly, with their class indices."""

    sentences: list[str]
    labels: np.ndarray
    record: dict


def heldout_set(reference: Classifier, data: Path | None, *, exclude: set[str] = frozenset(), size: int = HELDOUT_SIZE,
                seed: int = HELDOUT_SEED) -> HeldOut:
    """A seeded sample of up to `size` SST-2 train rows (not in `exclude`: e.g. the calibration sentences; of at least
    MIN_WORDS words where `size` such rows exist), kept where `reference` predicts the gold label.

    Its record: path, sha256, seed, drawn, kept (sentences), min_words and the reference's accuracy on the draw.
    Raises RobertaInferError when train.tsv is missing or the reference gets none right.
    """
    train = read_sst2(sst2_file(data, "train"))
    pool = [i for i, text in enumerate(train.sentences) if text not in exclude]
    long = [i for i in pool if len(train.sentences[i].split()) >= MIN_WORDS]
    pool, min_words = (long, MIN_WORDS) if len(long) >= size else (pool, 0)
    drawn = random.Random(seed).sample(pool, min(size, len(pool)))
    sentences = [train.sentences[i] for i in drawn]
    gold = label_indices([train.labels[i] for i in drawn], reference.class_names)
    right = classify(reference, sentences).argmax(1) == gold
    if not right.any():
        raise RobertaInferError(f"the fp32 model classifies none of {len(drawn)} held-out SST-2 train sentences correctly")
    record = {"path": str(train.path), "sha256": sha256_file(train.path), "seed": seed, "drawn": len(drawn),
              "kept": int(right.sum()), "min_words": min_words, "accuracy_fp32": float(right.mean()),
              "note": "SST-2 train rows (never dev), kept where fp32 is right: the drop is the share int8 gets wrong"}
    return HeldOut([s for s, keep in zip(sentences, right) if keep], gold[right], record)


def heldout_measure(heldout: HeldOut, reference_logits: np.ndarray, logits: np.ndarray) -> dict:
    """lost_pp (percentage of the held-out set a candidate gets wrong), flips (labels unlike fp32's) and
    mean_abs_logit_diff of candidate `logits` [N, classes] against the fp32 `reference_logits` [N, classes]."""
    return {"lost_pp": float(100 * np.mean(logits.argmax(1) != heldout.labels)),
            "flips": int(np.sum(logits.argmax(1) != reference_logits.argmax(1))),
            "mean_abs_logit_diff": float(np.abs(logits - reference_logits).mean())}


def matmul_groups(model: onnx.ModelProto, op_types: tuple[str, ...]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The quantizable nodes (of `op_types`: every node quantize_dynamic quantizes, a MatMul of two activations too)
    grouped for the search: "kind:K" (K of KINDS, across the layers) and "layer:N" by node name; a node neither names
    is a group of its own ("node:NAME"), as the classifier head's Gemms are, under the names quantize_dynamic gives
    them once it has made them MatMuls (ONNX Runtime's own `replace_gemm_with_matmul`, run here on a copy). So with
    every group left fp32 nothing is quantized. Also returns each node's weight elements (0 for a MatMul of two
    activations)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    ONNXModel(model).replace_gemm_with_matmul()
    weights = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    sizes = {node.name: sum(weights.get(name, 0) for name in node.input) for node in model.graph.node
             if node.op_type in op_types}
    groups: dict[str, list[str]] = {}
    for name in sizes:
        kinds = [kind for kind, pattern in KINDS.items() if re.search(pattern, name)]
        layer = LAYER.search(name)
        for group in ([f"kind:{kinds[0]}"] if kinds else []) + ([f"layer:{layer.group(1)}"] if layer else []) or [f"node:{name}"]:
            groups.setdefault(group, []).append(name)
    return groups, sizes


def search_float_nodes(groups: dict[str, list[str]], sizes: dict[str, int], measure: Callable[[list[str]], dict], *,
                       max_drop: float, progress=print) -> dict:
    """The fp32 node set of the fastest mixed model whose held-out drop is within `max_drop` points.

    `measure(float_nodes)` quantizes with those nodes left fp32 and returns `heldout_measure`'s record. Plain int8
    first; then each group alone; the passing group with the fewest float weight elements wins; if none passes,
    groups are added most sensitive first (largest mean |Δlogit| removed) until the drop is within `max_drop`.
    Returns {"float_nodes", "float_weight_share", "heldout_drop_pp", "steps": [{"float_groups", "float_nodes",
    "float_weight_share", lost_pp, flips, mean_abs_logit_diff}]}; raises RobertaInferError when even every group
    left fp32 misses.
    """
    total = sum(sizes.values()) or 1
    steps = []

    def step(names: list[str], nodes: list[str], phase: str) -> dict:
        share = sum(sizes[n] for n in nodes) / total
        row = {"phase": phase, "float_groups": names, "float_nodes": len(nodes), "float_weight_share": share, **measure(nodes)}
        steps.append(row)
        progress(f"held-out: {', '.join(names) or 'plain int8'} fp32 ({100 * share:.0f} % of weights): lost "
                 f"{row['lost_pp']:.2f} pp, {row['flips']} flips, mean |Δlogit| {row['mean_abs_logit_diff']:.4f}")
        return row

    def result(names: list[str], row: dict) -> dict:
        nodes = sorted({n for name in names for n in groups[name]})
        return {"float_groups": names, "float_nodes": nodes, "float_weight_share": row["float_weight_share"],
                "heldout_drop_pp": row["lost_pp"], "max_drop_pp": max_drop, "steps": steps}

    plain = step([], [], "plain")
    if plain["lost_pp"] <= max_drop:
        return result([], plain)
    alone = {name: step([name], nodes, "sensitivity") for name, nodes in groups.items()}
    passing = [name for name, row in alone.items() if row["lost_pp"] <= max_drop]
    if passing:
        best = min(passing, key=lambda name: (alone[name]["float_weight_share"], alone[name]["lost_pp"]))
        return result([best], alone[best])
    chosen: list[str] = []
    for name in sorted(alone, key=lambda name: alone[name]["mean_abs_logit_diff"]):
        chosen.append(name)
        row = step(list(chosen), sorted({n for g in chosen for n in groups[g]}), "greedy")
        if row["lost_pp"] <= max_drop:
            return result(chosen, row)
    raise RobertaInferError(f"int8 loses {row['lost_pp']:.2f} points on held-out SST-2 train even with every quantizable "
                            f"op left fp32, more than --max-accuracy-drop {max_drop:g}")


class RevertedOps(logging.Handler):
    """Collects from nncf.quantize_with_accuracy_control's log the operations it left in floating point: its final
    report's list ("N out of M were reverted back to the floating-point precision"), else (where it reverted every
    group it ranked and wrote no such report) every operation it reverted on the way; and its summary lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.tried: list[str] = []
        self.final: list[str] | None = None
        self.messages: list[str] = []

    @property
    def names(self) -> list[str]:
        return self.final if self.final is not None else list(dict.fromkeys(self.tried))

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
        if message.startswith("Reverted "):
            self.tried += lines
        elif "reverted back to the floating-point" in message:
            self.final = lines
        if "reverted back" in message or message.startswith(("Algorithm", "All layers", "The algorithm", "Accuracy drop:")):
            self.messages.append(message.splitlines()[0])


def nncf_validation(heldout: HeldOut, classifier: Classifier, batch_size: int, seq_len: int | None,
                    fill: Callable[[np.ndarray], np.ndarray]) -> tuple[list[tuple[np.ndarray, np.ndarray]], Callable]:
    """The held-out set as NNCF's validation items ((tokens [B, L] int64, labels [B]) in batches of similar length,
    each made to the model's shape by `fill`) and its validation_fn: (accuracy, per-item accuracies) of a compiled
    OpenVINO model."""
    rows = encode(classifier, heldout.sentences)
    items = []
    for index in length_batches([len(r) for r in rows], batch_size):
        items.append((fill(pad_batch(classifier, [rows[i] for i in index], seq_len)), heldout.labels[index]))

    def validate(model, data) -> tuple[float, list[float]]:
        right = [model(tokens)[0][: len(labels)].argmax(1) == labels for tokens, labels in data]
        return float(np.concatenate(right).mean()), [float(r.mean()) for r in right]

    return items, validate
