"""The serving stack's own ceiling: `serve` exactly as shipped, but with a model call that costs nothing.

Requests still go through uvicorn, FastAPI, JSON, the queue, the batcher, the executor thread and tokenisation;
only ONNX Runtime's work is replaced by zeros. `loadtest` against this server measures how many texts per second
HTTP + batching + tokenisation allow on this machine (the load-test client included) with an infinitely fast model:
an upper bound on what `serve` can reach with any model.
    python benchmarks/serve/ceiling.py BUNDLE [PORT]     (then run `roberta-infer loadtest` against it)
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import uvicorn

from roberta_infer.bundle import load_bundle
from roberta_infer.runtime import OnnxClassifier
from roberta_infer.serve import Limits, create_app, listen


class ZeroCostClassifier(OnnxClassifier):
    """The bundle's tokenizer, class names and limits; logits are zeros, returned at once."""

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        return np.zeros((src_tokens.shape[0], len(self.class_names)), dtype=np.float32)


def main(bundle: Path, port: int) -> None:
    def load() -> OnnxClassifier:
        real = load_bundle(bundle, spin=False)
        gc.collect()
        gc.freeze()  # as `serve` does
        return ZeroCostClassifier(real.session, real.encoder, real.class_names, real.manifest)

    sock = listen("127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(create_app(load, Limits(parallel_calls=2)), lifespan="on",
                                           access_log=False, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8767)
