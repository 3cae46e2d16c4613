"""How `compare` times a mode and judges the result: the model calls it records, the fastest of several passes,
each mode's spread over its passes, and the ratios of ours that say whether they lie outside the two rows' spreads.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .predict import Classifier


class Recorder:
    """A classifier that notes the shape and duration (s) of every model call, to count the work and its latency."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.encoder, self.class_names, self.max_tokens = classifier.encoder, classifier.class_names, classifier.max_tokens
        self.shapes: list[tuple[int, int]] = []
        self.seconds: list[float] = []

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.classifier.logits(src_tokens)
        self.seconds.append(time.perf_counter() - start)
        self.shapes.append(tuple(src_tokens.shape))
        return out


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls of `call`, after one untimed warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def spread(sentences: int, seconds: list[float]) -> dict:
    """The sentences/s of the slowest ("min") and fastest ("max") of the passes that took `seconds`, and their number."""
    return {"min": sentences / max(seconds), "max": sentences / min(seconds), "passes": len(seconds)}


def versus(ours: dict, other: dict) -> dict:
    """Ours against another row (each with "sentences_per_s", its fastest pass, and "spread", see `spread`).

    "ratio": the fastest passes' ratio; "low" / "high": ours' slowest pass ÷ the other's fastest and ours' fastest ÷
    the other's slowest, the least and most the ratio can be said to be. "outside_spread" is True when ours' worst
    pass beats the other's best (low > 1) or ours' best is below the other's worst (high < 1); False when the spreads
    overlap ("within the noise"); None when either row ran one pass, which has no spread to judge by.
    """
    low = ours["spread"]["min"] / other["spread"]["max"]
    high = ours["spread"]["max"] / other["spread"]["min"]
    if min(ours["spread"]["passes"], other["spread"]["passes"]) < 2:
        outside, verdict = None, "one pass: noise unknown"
    else:
        outside = low > 1 or high < 1
        verdict = "outside the spread (faster)" if low > 1 else "outside the spread (slower)" if high < 1 else "within the noise"
    return {"ratio": ours["sentences_per_s"] / other["sentences_per_s"], "low": low, "high": high,
            "outside_spread": outside, "verdict": verdict}


def ratios(results: list[dict]) -> dict:
    """Ours against the fastest peer (by its fastest pass) and against each engine row, each as `versus` gives it
    (None / empty where those rows were not run)."""
    ours = next((r for r in results if r["group"] == "ours"), None)
    peers = [r for r in results if r["group"] == "peer"]
    fastest = max(peers, key=lambda r: r["sentences_per_s"])
    if ours is None:
        return {"fastest_peer": fastest["mode"], "ours_vs_fastest_peer": None, "ours_vs_engine": {}}
    return {"fastest_peer": fastest["mode"], "ours_vs_fastest_peer": versus(ours, fastest),
            "ours_vs_engine": {r["mode"]: versus(ours, r) for r in results if r["group"] == "engine"}}
