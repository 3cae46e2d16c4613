"""The accuracy gate every int8 (and compare's bf16) bundle passes: SST-2 dev accuracy of the candidate against its
fp32 reference, each tokenising with its own encoder, refused past an allowed drop in percentage points.

`quantize.quantize_bundle` (ONNX Runtime dynamic int8), `bundle.build_bundle` (OpenVINO + NNCF static int8) and
`compare` (bf16, which the export does not gate) all call `accuracy_gate`; `check_max_drop` checks the allowed drop
before any work.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .data import read_sst2, sha256_file, sst2_file
from .errors import RobertaInferError
from .evaluate import accuracy
from .predict import Classifier, classify
from .prepare import label_indices


def check_max_drop(max_accuracy_drop: float) -> None:
    """A negative allowed drop would demand a gain no quantization can promise: refused before any work."""
    if not max_accuracy_drop >= 0:
        raise RobertaInferError(f"--max-accuracy-drop must be ≥ 0 percentage points, got {max_accuracy_drop:g}")


def accuracy_gate(reference: Classifier, candidate: Classifier, *, data: Path | None = None, max_accuracy_drop: float = 0.3,
                  names: tuple[str, str] = ("fp32", "int8"), progress=print) -> dict:
    """SST-2 dev accuracy of `reference` and `candidate` (`predict.classify`, each tokenising with its own encoder);
    raises RobertaInferError when the candidate loses more than `max_accuracy_drop` percentage points.

    Returns the gate record: data (path, sha256, samples), accuracy_{names}, accuracy_drop_pp, max_accuracy_drop_pp,
    label_agreement (fraction of texts whose argmax agrees), max_abs_logit_diff, seconds_{names} (wall time of each
    pass) and threads. The caller writes nothing when this raises.
    """
    check_max_drop(max_accuracy_drop)
    split = read_sst2(sst2_file(data, "dev"))
    gold = label_indices(split.labels, reference.class_names)
    progress(f"gate: SST-2 dev ({len(split.sentences)} sentences) on {names[0]} and {names[1]}")
    logits, seconds = {}, {}
    for name, model in zip(names, (reference, candidate)):
        start = time.perf_counter()
        logits[name] = classify(model, split.sentences)
        seconds[name] = time.perf_counter() - start
    scores = {name: accuracy(logits[name], reference.class_names, gold, reference.class_names)["accuracy"] for name in names}
    drop = 100 * (scores[names[0]] - scores[names[1]])
    agreement = float(np.mean(logits[names[0]].argmax(1) == logits[names[1]].argmax(1)))
    gate = {"data": {"path": str(split.path), "sha256": sha256_file(split.path), "samples": len(gold)},
            "label_agreement": agreement, **{f"accuracy_{name}": scores[name] for name in names}, "accuracy_drop_pp": drop,
            "max_accuracy_drop_pp": max_accuracy_drop,
            "max_abs_logit_diff": float(np.abs(logits[names[0]] - logits[names[1]]).max()),
            **{f"seconds_{name}": seconds[name] for name in names}, "threads": getattr(candidate, "threads", None)}
    progress(f"label agreement {100 * agreement:.2f} %, accuracy {names[0]} {100 * scores[names[0]]:.2f} % → {names[1]} "
             f"{100 * scores[names[1]]:.2f} % ({-drop:+.2f} pp), dev time {seconds[names[0]]:.2f} s → {seconds[names[1]]:.2f} s")
    if drop > max_accuracy_drop:
        raise RobertaInferError(f"{names[1]} loses {drop:.2f} accuracy points on SST-2 dev ({100 * scores[names[0]]:.2f} % → "
                                f"{100 * scores[names[1]]:.2f} %, label agreement {100 * agreement:.2f} %), "
                                f"more than --max-accuracy-drop {max_accuracy_drop:g}: nothing written")
    return gate
