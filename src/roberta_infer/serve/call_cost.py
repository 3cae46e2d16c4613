"""A model call's fixed cost, timed at start-up: what `predict.planned_batches` weighs padding against."""

from __future__ import annotations

import time

from ..predict import batch_logits, encode
from ..runtime import BundleClassifier

WARMUP_TEXT = "a warm-up sentence , long enough to touch every kernel the real requests will use ."


def call_cost_tokens(classifier: BundleClassifier, batch_size: int, repeats: int = 10,
                     budget_s: float = 1.0) -> float | None:
    """A model call's fixed cost in padded tokens' worth: what splitting a batch must save in padding to pay off.

    Fitted as cost = fixed + per-token × tokens to the fastest calls on one warm-up row and on `batch_size` of them
    (`repeats` each, fewer, but at least 2, where that would take over `budget_s`): the fastest, as a server starting
    up shares the CPU with whatever starts beside it. Where no per-token cost shows (one row per batch, or timing
    noise), splitting never pays. None for a static-shape bundle: every call is padded to its fixed shape anyway.
    """
    if classifier.static_batch is not None or classifier.static_seq is not None:
        return None
    row = encode(classifier, [WARMUP_TEXT])
    tokens = len(row[0])

    def fastest(rows: int) -> float:
        times: list[float] = []
        while len(times) < repeats and (len(times) < 2 or sum(times) < budget_s):
            began = time.perf_counter()
            batch_logits(classifier, row * rows)
            times.append(time.perf_counter() - began)
        return min(times)

    one = fastest(1)
    per_token = (fastest(batch_size) - one) / ((batch_size - 1) * tokens) if batch_size > 1 else 0.0
    if per_token <= 0:
        return float(batch_size * tokens)
    return max(0.0, one / per_token - tokens)
