"""Accuracy over all N (not N−1), matched by class name."""

from __future__ import annotations

import numpy as np
import pytest

from roberta_infer.errors import RobertaInferError
from roberta_infer.evaluate import accuracy


def test_accuracy_counts_every_sample_and_maps_class_order():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])  # predicts 0, 1, 0, 1
    # labels in SST-2 order (0 = "0"), model in fairseq order (class 0 = "1")
    result = accuracy(logits, ["1", "0"], np.array([1, 0, 0, 0]), ["0", "1"])
    assert (result["accuracy"], result["correct"], result["samples"]) == (0.75, 3, 4)  # without the name mapping: 1 of 4
    assert result["confusion"] == [[1, 0], [1, 2]]  # gold "1" (model class 0) ×1, gold "0" ×3 of which one called "1"


def test_mismatched_inputs():
    with pytest.raises(RobertaInferError, match="3 results but 2 labels"):
        accuracy(np.zeros((3, 2)), ["a", "b"], np.array([0, 1]), ["a", "b"])
    with pytest.raises(RobertaInferError, match="does not have"):
        accuracy(np.zeros((2, 2)), ["a", "b"], np.array([0, 1]), ["a", "c"])


def test_scores_against_hand_counted_binary_case():
    # gold (model order: "neg", "pos"): 6 neg, 4 pos; predicted: neg→ 5 neg 1 pos; pos→ 2 neg 2 pos
    logits = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] + [[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2)
    result = accuracy(logits, ["neg", "pos"], np.array([0] * 6 + [1] * 4), ["neg", "pos"])
    assert result["confusion"] == [[5, 1], [2, 2]]
    tp, tn, fp, fn = 2, 5, 1, 2  # positive class "pos"
    assert result["per_class"]["pos"] == pytest.approx({"precision": tp / (tp + fp), "recall": tp / (tp + fn),
                                                        "f1": 2 * tp / (2 * tp + fp + fn), "support": 4})
    assert result["per_class"]["neg"] == pytest.approx({"precision": 5 / 7, "recall": 5 / 6, "f1": 10 / 13, "support": 6})
    assert result["macro_f1"] == pytest.approx((4 / 7 + 10 / 13) / 2)
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))  # the binary textbook form
    assert result["mcc"] == pytest.approx(mcc)
    assert result["accuracy"] == 0.7


def test_three_class_mcc_against_a_brute_force_correlation():
    """Multi-class MCC equals the Pearson correlation of one-hot gold and predicted matrices (Gorodkin's definition)."""
    rng = np.random.default_rng(3)
    gold, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    predicted[:120] = gold[:120]
    result = accuracy(np.eye(3)[predicted], ["a", "b", "c"], gold, ["a", "b", "c"])
    x, y = np.eye(3)[gold], np.eye(3)[predicted]
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    assert result["mcc"] == pytest.approx((xc * yc).sum() / np.sqrt((xc**2).sum() * (yc**2).sum()))
    assert np.array(result["confusion"]).sum() == 200


def test_a_class_never_predicted_scores_zero_not_nan():
    result = accuracy(np.array([[1.0, 0.0]] * 3), ["a", "b"], np.array([0, 0, 1]), ["a", "b"])
    assert result["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["mcc"] == 0.0
