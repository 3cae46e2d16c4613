"""The reference's RoBERTa_postprocess.py, minus its bug (it divides by N−1), plus the scores people report.

Accuracy over all N samples; per-class precision, recall and F1; macro-F1; Matthews correlation (GLUE's metric
for CoLA, and a fairer one than accuracy when classes are unbalanced); the confusion matrix. Classes are matched
by name, so results and labels need not share a class order.
"""

from __future__ import annotations

import numpy as np

from .errors import RobertaInferError
from .predict import labelled


def accuracy(logits: np.ndarray, class_names: list[str], labels: np.ndarray, label_names: list[str]) -> dict:
    """Scores of `logits` [N, C] (the model's `class_names` order) against gold `labels` [N] (indices into `label_names`).

    Returns {"accuracy", "correct", "samples", "class_names", "per_class": {name: {"precision", "recall", "f1",
    "support"}}, "macro_f1", "mcc", "confusion"}; `confusion[i][j]` counts gold class i predicted as j, both in the
    model's class order. Raises RobertaInferError when counts differ, there are no samples, or labels name a class
    the model does not have.
    """
    gold = gold_classes(logits, class_names, labels, label_names)
    predicted = np.argmax(logits, axis=1)
    correct = int((predicted == gold).sum())
    confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    np.add.at(confusion, (gold, predicted), 1)
    return {"accuracy": correct / len(gold), "correct": correct, "samples": int(len(gold)), "class_names": class_names,
            **scores(confusion, class_names)}


def gold_classes(logits: np.ndarray, class_names: list[str], labels: np.ndarray, label_names: list[str]) -> np.ndarray:
    """Gold labels as the model's class indices [N]; raises RobertaInferError where results and labels do not match."""
    if len(logits) != len(labels):
        raise RobertaInferError(f"{len(logits)} results but {len(labels)} labels: they are not from the same data")
    if len(logits) == 0:
        raise RobertaInferError("no samples to evaluate")
    unknown = set(label_names) - set(class_names)
    if unknown:
        raise RobertaInferError(f"labels name classes {sorted(unknown)} that the model does not have ({class_names})")
    return np.array([class_names.index(name) for name in label_names])[labels]


def misclassified(logits: np.ndarray, class_names: list[str], labels: np.ndarray, label_names: list[str],
                  texts: list[str]) -> list[dict]:
    """`{"index", "text", "gold", "predicted", "score"}` for each sample the model got wrong, in data order; the
    score is the softmax probability of the predicted class (as `predict` and `serve` report it)."""
    if len(texts) != len(logits):
        raise RobertaInferError(f"{len(texts)} texts but {len(logits)} results: they are not from the same data")
    gold = gold_classes(logits, class_names, labels, label_names)
    return [{"index": i, "text": texts[i], "gold": class_names[gold[i]], "predicted": row["label"], "score": row["score"]}
            for i, row in enumerate(labelled(logits, class_names)) if row["label"] != class_names[gold[i]]]


def scores(confusion: np.ndarray, class_names: list[str]) -> dict:
    """Per-class precision/recall/F1, macro-F1 and MCC from a confusion matrix (gold rows × predicted columns).

    A ratio with a zero denominator is 0, as scikit-learn reports it. MCC is Gorodkin's multi-class form
    (Gorodkin 2004; scikit-learn's `matthews_corrcoef`): (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)),
    with c correct, s samples, t_k gold and p_k predicted counts of class k; for two classes it is the usual
    (TP·TN − FP·FN) / √(…).
    """
    true_positive = np.diag(confusion).astype(np.float64)
    gold_counts, predicted_counts = confusion.sum(axis=1).astype(np.float64), confusion.sum(axis=0).astype(np.float64)
    precision = np.divide(true_positive, predicted_counts, out=np.zeros_like(true_positive), where=predicted_counts > 0)
    recall = np.divide(true_positive, gold_counts, out=np.zeros_like(true_positive), where=gold_counts > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    s, c = confusion.sum(), true_positive.sum()
    denominator = np.sqrt((s**2 - (predicted_counts**2).sum()) * (s**2 - (gold_counts**2).sum()))
    mcc = float((c * s - (predicted_counts * gold_counts).sum()) / denominator) if denominator > 0 else 0.0
    per_class = {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                 for name, p, r, f, n in zip(class_names, precision, recall, f1, gold_counts)}
    return {"per_class": per_class, "macro_f1": float(f1.mean()), "mcc": mcc, "confusion": confusion.tolist()}
