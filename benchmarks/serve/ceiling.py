"""The serving stack's own ceiling: `roberta-infer serve` exactly as shipped, but with a model call that costs nothing.

Requests still go through uvicorn, FastAPI, JSON, the queue, the batcher, the executor threads and tokenisation;
only ONNX Runtime's work is replaced by zeros. `loadtest` against this server measures how many texts per second
HTTP + batching + tokenisation allow on this machine (the load-test client included) with an infinitely fast model:
an upper bound on what `serve` can reach with any model.
    python benchmarks/serve/ceiling.py --model BUNDLE [any other `serve` option]
"""

from __future__ import annotations

import sys

import numpy as np

from roberta_infer.cli import main
from roberta_infer.runtime import BundleClassifier
from roberta_infer.serve import server


class ZeroCostClassifier(BundleClassifier):
    """The bundle's tokenizer, class names and limits; logits are zeros, returned at once."""

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        return np.zeros((src_tokens.shape[0], len(self.class_names)), dtype=np.float32)


def load_zero_cost(*args, **kwargs) -> BundleClassifier:
    real = load_bundle(*args, **kwargs)
    return ZeroCostClassifier(real.session, real.encoder, real.class_names, real.manifest)


if __name__ == "__main__":
    load_bundle, server.load_bundle = server.load_bundle, load_zero_cost  # what `serve` loads its model with
    sys.exit(main(["serve", *sys.argv[1:]]))
