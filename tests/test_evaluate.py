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
    assert result == {"accuracy": 0.75, "correct": 3, "samples": 4}  # without the name mapping: 1 of 4


def test_mismatched_inputs():
    with pytest.raises(RobertaInferError, match="3 results but 2 labels"):
        accuracy(np.zeros((3, 2)), ["a", "b"], np.array([0, 1]), ["a", "b"])
    with pytest.raises(RobertaInferError, match="does not have"):
        accuracy(np.zeros((2, 2)), ["a", "b"], np.array([0, 1]), ["a", "c"])
