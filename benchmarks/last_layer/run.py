"""The last layer for `<s>` only against the whole last layer: the default model's fp32 bundles on both engines.

Builds four dynamic-shape bundles of the shipped default model (onnxruntime and openvino, `last_layer` "cls-only"
and "full") in a temporary folder, then at each batch × sequence length times calls of the two forms of an engine
alternately, in one process, one thread each, with full-length random rows. The speed-up is full / cls-only time:
the ratio of the median latencies, of the minimum latencies, and the median of the ratios of adjacent call pairs.
Nothing here is a pass/fail assertion. Writes --out (JSON) and prints a table.
    python benchmarks/last_layer/run.py                  # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.default import default_model_dir
from roberta_infer.hardware import machine

HERE = Path(__file__).resolve().parent
SHAPES = [(1, 16), (1, 64), (1, 128), (8, 64), (32, 70)]
FORMS = ("cls-only", "full")


def time_pairs(sessions: dict, tokens: np.ndarray, pairs: int) -> dict:
    """Latencies (s) of `pairs` alternating calls of each session (the order swapped every pair), after 3 warm-ups."""
    for session in sessions.values():
        for _ in range(3):
            session.run(tokens)
    latencies = {form: [] for form in sessions}
    for pair in range(pairs):
        for form in (FORMS if pair % 2 else FORMS[::-1]):
            start = time.perf_counter()
            sessions[form].run(tokens)
            latencies[form].append(time.perf_counter() - start)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100, help="call pairs at batch 1 × 16 ids; fewer (at least 12) "
                                                                "for larger shapes, in proportion to their ids")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    classifier = load_classifier(default_model_dir())
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("onnxruntime", "openvino"):
            sessions = {}
            for form in FORMS:
                build_bundle(classifier, Path(tmp) / f"{engine}-{form}", engine=engine, last_layer=form, threads=1,
                             progress=lambda _: None)
                sessions[form] = load_bundle(Path(tmp) / f"{engine}-{form}", threads=1).session
            for batch, seq in SHAPES:
                tokens = rng.integers(4, classifier.model.config.vocab_size, size=(batch, seq))
                tokens[:, 0], tokens[:, -1] = classifier.model.config.bos_token_id, classifier.model.config.eos_token_id
                pairs = min(args.pairs, max(12, args.pairs * 16 // (batch * seq)))
                latencies = time_pairs(sessions, tokens, pairs)
                full, cls = latencies["full"], latencies["cls-only"]
                row = {"engine": engine, "batch_size": batch, "seq_len": seq, "pairs": pairs,
                       "full_ms_median": 1e3 * statistics.median(full), "cls_only_ms_median": 1e3 * statistics.median(cls),
                       "speedup_of_medians": statistics.median(full) / statistics.median(cls),
                       "speedup_of_minimums": min(full) / min(cls),
                       "speedup_median_of_pairs": statistics.median(f / c for f, c in zip(full, cls))}
                results[f"{engine} {batch}x{seq}"] = row
                print(f"{engine:<12} {batch:>3} x {seq:<4} full {row['full_ms_median']:8.2f} ms  cls-only "
                      f"{row['cls_only_ms_median']:8.2f} ms  speed-up {row['speedup_of_medians']:.3f} (minimums "
                      f"{row['speedup_of_minimums']:.3f}, pairs {row['speedup_median_of_pairs']:.3f})", flush=True)
    args.out.write_text(json.dumps({"machine": machine(), "threads": 1, "model": str(default_model_dir()),
                                    "architecture": classifier.architecture, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
