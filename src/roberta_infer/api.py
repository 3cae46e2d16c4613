"""The Python API: `load` a model once, then `predict` texts with the CLI's own batching.

    import roberta_infer

    model = roberta_infer.load("runs/bundle")  # a bundle folder, a fairseq checkpoint or a Hugging Face folder
    model.predict(["a gripping film", "a waste of time"])
    # [{"label": "positive", "score": 0.98, "logits": [-1.9, 2.1]}, {"label": "negative", …}]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .bundle import open_model
from .default import default_bundle
from .errors import RobertaInferError
from .predict import Classifier, classify, labelled

log = logging.getLogger(__name__)


class Model:
    """A loaded classifier: a bundle on its engine (ONNX Runtime or OpenVINO) or a checkpoint in PyTorch."""

    def __init__(self, classifier: Classifier, path: Path):
        self.classifier = classifier
        self.path = path

    @property
    def class_names(self) -> list[str]:
        """The labels in logit order."""
        return list(self.classifier.class_names)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[dict]:
        """One `{"label": str, "score": float, "logits": list[float]}` per text, in input order: `logits` are the
        model's float32 outputs [classes] in `class_names` order, `label` their argmax and `score` its softmax
        probability (as `roberta-infer predict` and `serve` report them). Batching is `predict.classify`'s: texts
        sorted by length, `batch_size` a model call, each padded to its longest (texts past the model's positions are
        cut, with a warning).

        Raises RobertaInferError for a single string instead of a sequence of texts, a text that is not a string,
        or a batch size ≤ 0.
        """
        if isinstance(texts, (str, bytes)):
            raise RobertaInferError("texts must be a sequence of strings, not one string: wrap it in a list")
        texts = list(texts)
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise RobertaInferError(f"texts[{bad}] is {type(texts[bad]).__name__}, not a string")
        if not texts:
            return []
        return labelled(classify(self.classifier, texts, batch_size=batch_size), self.class_names)

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, class_names={self.class_names})"


def load(path: str | Path | None = None, *, threads: int | None = None, provider: str = "cpu",
         fairseq_data: str | Path | None = None, bpe_dir: str | Path | None = None, head: str | None = None,
         class_names: list[str] | None = None) -> Model:
    """The model at `path`, ready to `predict`: a bundle folder (written by `roberta-infer export`/`quantize`; run by
    its engine with `threads` threads, default all physical cores, on ONNX Runtime's `provider`), a fairseq checkpoint
    (file, or folder holding one) or a Hugging Face folder (run in PyTorch; `fairseq_data`, `bpe_dir`, `head` and
    `class_names` as the CLI's --fairseq-data, --bpe-dir, --head, --class-names). None: the shipped default model's
    bundle, exported into the cache on first use (what `classify` and `serve` use without --model).

    Raises RobertaInferError naming `path` when it does not exist or is no model (a bundle that fails its checks, a
    folder of another kind, an unreadable checkpoint).
    """
    if path is None:
        path = default_bundle(progress=log.info)
    path = Path(path)
    if not path.exists():
        raise RobertaInferError(f"model {path} not found")
    options = dict(fairseq_data=None if fairseq_data is None else Path(fairseq_data),
                   bpe_dir=None if bpe_dir is None else Path(bpe_dir), head=head, class_names=class_names)
    return Model(open_model(path, threads=threads, provider=provider, **options), path)
