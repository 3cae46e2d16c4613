"""Hugging Face Optimum's pipelines as `compare`'s peers, run from virtual environments of their own.

Optimum pins transformers below what roberta-infer runs (optimum-intel 2.2.0: transformers<5.6; optimum-onnx 0.1.0:
transformers<4.58, optimum~=2.1), so it is never our dependency: `benchmarks/optimum/setup.sh` makes two venvs,
DIR/optimum-intel and DIR/optimum-onnx, and each mode runs `optimum_worker.py` in one of them as a subprocess. The
model is handed over as a Hugging Face folder (`hf_folder`: the model under test saved with `save_pretrained`, and a
`tokenizer.json` giving the ids our encoder gives), the texts as the batches the mode runs (JSON in, JSON out).

The worker loads the model as Optimum documents (`OVModelForSequenceClassification` / `ORTModelForSequenceClassification`
with `export=True`; int8 through `OVQuantizer` static int8 calibrated on 300 SST-2 train sentences, or `ORTQuantizer`
with `AutoQuantizationConfig.avx512_vnni(is_static=False)`), exports once into the work dir, and times whole passes of
transformers' `pipeline("text-classification")`, one call per batch of texts (tokenisation included) after one warm-up
batch, the engine given the same thread count as every other engine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast

from .bundle import CALIBRATION_SEED
from .checkpoint import RobertaClassifier
from .data import read_sst2, sst2_file
from .errors import RobertaInferError
from .predict import encode, length_batches

VENVS_VARIABLE = "ROBERTA_INFER_OPTIMUM_VENVS"
WORKER = Path(__file__).with_name("optimum_worker.py")
CALIBRATION_SIZE = 300
# Engine key → (venv under the venvs folder, backend, precision, description).
OPTIMUM = {
    "optimum-ov-fp32": ("optimum-intel", "openvino", "fp32", "Optimum-Intel OVModelForSequenceClassification + pipeline"),
    "optimum-ov-int8": ("optimum-intel", "openvino", "int8", "Optimum-Intel OVQuantizer static int8 + pipeline"),
    "optimum-ort-fp32": ("optimum-onnx", "onnxruntime", "fp32", "Optimum-ONNX ORTModelForSequenceClassification + pipeline"),
    "optimum-ort-int8": ("optimum-onnx", "onnxruntime", "int8", "Optimum-ONNX ORTQuantizer dynamic int8 avx512_vnni + pipeline"),
}


def venvs_folder(given: Path | None) -> Path | None:
    """The folder holding the Optimum venvs: `given` (`--optimum-venvs`), else $ROBERTA_INFER_OPTIMUM_VENVS, else None."""
    found = given or os.environ.get(VENVS_VARIABLE)
    return Path(found) if found else None


def unavailable(key: str, venvs: Path | None) -> str | None:
    """Why Optimum mode `key` (of OPTIMUM) cannot run with `venvs` (one line), or None when it can."""
    if venvs is None:
        return (f"no Optimum venvs given (--optimum-venvs DIR or ${VENVS_VARIABLE}; made by benchmarks/optimum/setup.sh)")
    python = venvs / OPTIMUM[key][0] / "bin" / "python"
    return None if python.is_file() else f"{python} not found (made by benchmarks/optimum/setup.sh)"


def hf_tokenizer(classifier: RobertaClassifier) -> PreTrainedTokenizerFast:
    """A fast tokenizer giving exactly our encoder's `<s> ids </s>` (no prefix space): our BPE with its vocabulary
    renumbered through the GPT-2 → model id table where the encoder has one (tokens without a model id → `<unk>`)."""
    encoder = classifier.encoder
    if encoder.split_unknown:
        raise RobertaInferError("an encoder that splits unknown tokens into pieces has no Hugging Face tokenizer equivalent")
    spec = json.loads(encoder.tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    if encoder.id_map is not None:
        vocab = spec["model"]["vocab"] = {token: int(encoder.id_map[index]) for token, index in vocab.items()}
    ids = {"<s>": encoder.bos, "<pad>": encoder.pad, "</s>": encoder.eos, "<unk>": encoder.unk}
    for token, index in ids.items():  # GPT-2's BPE has none of them: the model's ids
        vocab.setdefault(token, index)
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    specials = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", ids["</s>"]), ("<s>", ids["<s>"]), trim_offsets=False,
                                                            add_prefix_space=False)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=classifier.max_tokens,
                                      model_input_names=["input_ids", "attention_mask"], **specials)
    for token, index in ids.items():
        if wrapped.convert_tokens_to_ids(token) != index:
            raise RobertaInferError(f"the model's {token} is id {index}, its BPE vocabulary numbers it otherwise")
    return wrapped


def hf_folder(classifier: RobertaClassifier, folder: Path) -> Path:
    """`folder`/hf holding `classifier` as a Hugging Face model (fp32 weights, config, `hf_tokenizer`). Unless `folder`
    already holds this model (its source record in `folder`/source.json), `folder` is emptied first: Optimum's
    exports beside hf/ were made from another model."""
    folder, hf = Path(folder), Path(folder) / "hf"
    stamp = json.dumps({k: v for k, v in classifier.source.items() if k != "path"}, sort_keys=True)
    if (folder / "source.json").is_file() and (folder / "source.json").read_text() == stamp:
        return hf
    shutil.rmtree(folder, ignore_errors=True)
    classifier.model.save_pretrained(hf)
    hf_tokenizer(classifier).save_pretrained(hf)
    config = json.loads((hf / "tokenizer_config.json").read_text())  # transformers 5 names its own class, 4.x
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # knows only this one
    (hf / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "source.json").write_text(stamp)
    return hf


@dataclass
class Calls:
    """The model calls of one pass, as `timing.Recorder` keeps them: shape [batch, padded length] and seconds of each."""

    shapes: list[tuple[int, int]]
    seconds: list[float]


class OptimumPeer:
    """Optimum mode `key` on one model: `timed` runs the worker on the texts batched as the mode's group does.

    `folder`: where the Hugging Face folder and Optimum's exports are cached; `data`: SST-2 (train for calibration).
    """

    def __init__(self, key: str, classifier: RobertaClassifier, folder: Path, venvs: Path, *, threads: int,
                 data: Path | None) -> None:
        self.key, self.classifier, self.folder, self.threads, self.data = key, classifier, Path(folder), threads, data
        self.encoder, self.class_names, self.max_tokens = classifier.encoder, classifier.class_names, classifier.max_tokens
        venv, self.backend, self.precision, _ = OPTIMUM[key]
        self.python = venvs / venv / "bin" / "python"

    def timed(self, group: str, texts: list[str], repeats: int, batch_size: int) -> tuple[list[float], np.ndarray, Calls]:
        """`repeats` timed passes over `texts`: "peer" in batches of `batch_size` in arrival order, else ("engine") our
        `predict.length_batches`, each padded by the pipeline to its longest. Returns the seconds of each pass, the
        logits float32 [N, classes] in input order and the calls of the fastest pass (shapes from our encoder, whose
        ids the worker's tokenizer gives by construction). Raises RobertaInferError when the worker fails."""
        rows = encode(self.classifier, texts)
        if group == "peer":
            batches = [np.arange(start, min(start + batch_size, len(rows))) for start in range(0, len(rows), batch_size)]
        else:
            batches = length_batches([len(r) for r in rows], batch_size)
        request = {"backend": self.backend, "precision": self.precision, "threads": self.threads, "repeats": repeats,
                   "model_dir": str(hf_folder(self.classifier, self.folder)), "export_dir": str(self.folder / self.key),
                   "batches": [[texts[i] for i in index] for index in batches],
                   "calibration": self.calibration() if (self.backend, self.precision) == ("openvino", "int8") else []}
        result = self.run_worker(request)
        logits = np.zeros((len(texts), len(self.class_names)), dtype=np.float32)
        logits[np.concatenate(batches)] = np.asarray(result["logits"], dtype=np.float32)
        shapes = [(len(index), min(self.max_tokens, max(len(rows[i]) for i in index))) for index in batches]
        return result["seconds"], logits, Calls(shapes, result["call_seconds"])

    def calibration(self) -> list[str]:
        """The SST-2 train sentences our own OpenVINO int8 is calibrated on (the same seed and number)."""
        train = read_sst2(sst2_file(self.data, "train"))
        return random.Random(CALIBRATION_SEED).sample(train.sentences, min(CALIBRATION_SIZE, len(train.sentences)))

    def run_worker(self, request: dict) -> dict:
        """`optimum_worker.py` in the Optimum venv on `request`; its result. Its stderr (progress) passes through."""
        with tempfile.TemporaryDirectory(prefix="optimum-") as tmp:
            files = [Path(tmp) / "request.json", Path(tmp) / "result.json"]
            files[0].write_text(json.dumps(request))
            done = subprocess.run([str(self.python), str(WORKER), *map(str, files)], stdout=sys.stderr, check=False)
            if done.returncode != 0 or not files[1].is_file():
                raise RobertaInferError(f"{self.key}: the Optimum worker in {self.python.parent.parent} failed "
                                        f"(exit status {done.returncode}; its messages above)")
            return json.loads(files[1].read_text())
