"""The reference's RoBERTa_postprocess.py, minus its bug: accuracy over all N samples (it divides by N−1)."""

from __future__ import annotations

import numpy as np

from .errors import RobertaInferError


def accuracy(logits: np.ndarray, class_names: list[str], labels: np.ndarray, label_names: list[str]) -> dict:
    """Compare predicted and gold classes by name, so results and labels need not share a class order."""
    if len(logits) != len(labels):
        raise RobertaInferError(f"{len(logits)} results but {len(labels)} labels: they are not from the same data")
    if len(logits) == 0:
        raise RobertaInferError("no samples to evaluate")
    unknown = set(label_names) - set(class_names)
    if unknown:
        raise RobertaInferError(f"labels name classes {sorted(unknown)} that the model does not have ({class_names})")
    to_model = np.array([class_names.index(name) for name in label_names])
    gold = to_model[labels]
    predicted = np.argmax(logits, axis=1)
    correct = int((predicted == gold).sum())
    return {"accuracy": correct / len(gold), "correct": correct, "samples": int(len(gold))}
