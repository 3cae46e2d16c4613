"""The deployable bundle: export → (fuse + simplify | OpenVINO IR [+ NNCF int8]) → checks → a self-contained directory.

A bundle holds its engine's model — `model.onnx` (ONNX Runtime, fused and simplified) or `model.xml` + `model.bin`
(OpenVINO IR) — what the tokeniser needs (`tokenizer.json`, `special_ids.json`, `id_map.npy` for fairseq
vocabularies) and `manifest.json`: engine, precision, source sha256, shapes, the model files' sha256, every other
file's sha256 (`files`, which `load_bundle` checks), and the measured max |Δlogit| against PyTorch (plus, for
OpenVINO bf16/int8, how far that precision moves the logits and, for int8, the calibration set and the SST-2 dev
accuracy gate). It runs without PyTorch or the original checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .accuracy_aware import RevertedOps, heldout_measure, heldout_set, nncf_validation
from .data import read_sst2, sha256_file, sst2_file
from .engines import make_session, openvino_session
from .errors import RobertaInferError
from .gate import accuracy_gate, check_max_drop
from .hardware import cpu_isa
from .optimize import inspect_onnx, optimize_onnx
from .outputs import describe, kind_of, output_dir
from .predict import classify, encode, length_batches, pad_batch
from .runtime import ENGINES, LAST_LAYERS, PRECISIONS, BundleClassifier, engine_and_precision, fill_batch
from .tokenise import TextEncoder, pad_to
from .verify import (
    check_graph,
    check_manifest,
    model_sha256,
    onnx_positions,
    openvino_positions,
    verify_files,
    write_manifest,
)
from .version import __version__

if TYPE_CHECKING:  # building a bundle needs PyTorch; loading one must not pay for importing it (Ray actors, servers)
    from .checkpoint import RobertaClassifier
    from .export import OnnxSpec

FORMAT = "roberta-infer/bundle/1"
REQUIRED = ("manifest.json", "tokenizer.json", "special_ids.json")
TOLERANCE = 1e-4
# Real sentences for the fidelity check (besides random ids): plain, negated, punctuation-heavy, emoji, accents.
CHECK_TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "this is n't a movie , it 's a hostage situation 😀",
    "a crème brûlée of a film : sweet , brittle , and over too soon .",
    "",
    "if you 've ever wondered what it would be like to be bored for 120 minutes , here 's your chance !",
    "Hé, naïve café — 北京",
]
# NNCF calibration: SST-2 train sentences (never dev, which gates), drawn with this seed, fed in batches of this many.
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 8
# The last layer computed for `<s>` only unless asked otherwise (runtime.LAST_LAYERS; measured faster on both engines).
DEFAULT_LAST_LAYER = "cls-only"


def build_bundle(classifier: RobertaClassifier, out: Path, *, batch_size: int | None = None, seq_len: int | None = None,
                 opset: int = 17, engine: str = "onnxruntime", precision: str = "fp32", data: Path | None = None,
                 max_accuracy_drop: float = 0.3, calibration_size: int = 300, threads: int | None = None, progress=print,
                 force: bool = False, accuracy_aware: bool = True, heldout_max_drop: float | None = None,
                 last_layer: str = DEFAULT_LAST_LAYER) -> dict:
    """Export `classifier` to the bundle directory `out` for `engine` at `precision`; returns the manifest.

    `last_layer` (runtime.LAST_LAYERS, recorded in the manifest): "cls-only" (default) exports the last encoder layer
    computed for `<s>` alone, the only position the classifier reads (`export.ClsOnlyModel`: the same logits, less
    work); "full" the model as it is.

    onnxruntime (fp32 only; int8 is `quantize`'s): export, fusion, simplification. openvino: IR from the same
    module, fp32 weights; `bf16` and `int8` are run with OpenVINO's bf16 hint / NNCF static int8 (calibrated on
    `calibration_size` SST-2 train sentences from `data`, gated on SST-2 dev: at most `max_accuracy_drop` points
    below the fp32 IR). Raises RobertaInferError, having written nothing, if fusion is incomplete, the fp32 logits
    drift above 1e-4 from PyTorch, or the int8 gate fails. `out` is written through `outputs.output_dir` (an
    existing bundle is replaced only with `force`).

    int8 `accuracy_aware` (the default): NNCF's `quantize_with_accuracy_control` reverts the most sensitive ops to
    floating point until at most `heldout_max_drop` points (default `max_accuracy_drop`) are lost on held-out SST-2
    train (`accuracy_aware.heldout_set`: not the calibration sentences, never dev); then the same dev gate.
    """
    check_build_options(batch_size=batch_size, seq_len=seq_len, engine=engine, precision=precision, data=data,
                        max_accuracy_drop=max_accuracy_drop, calibration_size=calibration_size,
                        heldout_max_drop=heldout_max_drop, last_layer=last_layer)
    if seq_len is not None and seq_len > classifier.max_tokens:
        raise RobertaInferError(f"--seq-len {seq_len} exceeds the model's {classifier.max_tokens} positions")
    from .export import OnnxSpec  # deferred (as export_onnx, check_fidelity…): export imports torch, loading a bundle does not

    spec = OnnxSpec(batch_size, seq_len, opset)
    with output_dir(out, "bundle", force=force) as tmp:
        manifest = {
            "format": FORMAT,
            "roberta_infer": __version__,
            "engine": engine,
            "precision": precision,
            "source": classifier.source,
            "class_names": classifier.class_names,
            "max_tokens": classifier.max_tokens,
            "architecture": classifier.architecture,
            "last_layer": last_layer,
            "input": {"name": "src_tokens", "dtype": "int64", "shape": [batch_size or "batch", seq_len or "sequence"]},
            "output": {"name": "output", "dtype": "float32", "shape": [batch_size or "batch", len(classifier.class_names)]},
        }
        build = build_onnx if engine == "onnxruntime" else build_openvino
        manifest |= build(classifier, tmp, spec, manifest, precision=precision, data=data, max_accuracy_drop=max_accuracy_drop,
                          calibration_size=calibration_size, threads=threads, progress=progress, accuracy_aware=accuracy_aware,
                          heldout_max_drop=max_accuracy_drop if heldout_max_drop is None else heldout_max_drop)
        manifest["model_sha256"] = model_sha256(tmp, engine)
        classifier.encoder.save(tmp)
        write_manifest(tmp, manifest)
    return manifest


def build_onnx(classifier: RobertaClassifier, tmp: Path, spec: OnnxSpec, manifest: dict, *, progress, **_) -> dict:
    """model.onnx in `tmp`: export, fuse (every layer's attention or fail), slim, check ≤ 1e-4 vs PyTorch."""
    from .export import export_onnx  # deferred: torch

    config = classifier.model.config
    shape = "static " + str((spec.batch_size, spec.seq_len)) if spec.batch_size else "dynamic"
    progress(f"exporting to ONNX (opset {spec.opset}, {shape} shape)")
    export_onnx(classifier.model, classifier.encoder.pad, tmp / "raw.onnx", batch_size=spec.batch_size, seq_len=spec.seq_len,
                opset=spec.opset, last_layer=manifest["last_layer"])
    progress("fusing with ONNX Runtime's transformer optimizer, then simplifying")
    fused = optimize_onnx(tmp / "raw.onnx", tmp / "model.onnx", num_heads=config.num_attention_heads,
                          hidden_size=config.hidden_size, num_layers=config.num_hidden_layers, last_layer=manifest["last_layer"])
    (tmp / "raw.onnx").unlink()
    progress("fused ops: " + ", ".join(f"{k} {v}" for k, v in fused.items() if v))
    fidelity = fidelity_check(classifier, make_session(tmp / "model.onnx", threads=1), spec, progress)
    return {"opset": spec.opset, "fused_ops": fused, "fidelity": fidelity}


def build_openvino(classifier: RobertaClassifier, tmp: Path, spec: OnnxSpec, manifest: dict, *, precision: str, data: Path | None,
                   max_accuracy_drop: float, calibration_size: int, threads: int | None, progress, accuracy_aware: bool,
                   heldout_max_drop: float) -> dict:
    """model.xml + model.bin in `tmp`: OpenVINO IR of the fp32 model, checked ≤ 1e-4 vs PyTorch with the f32 hint;
    bf16 records its deviation from PyTorch; int8 is NNCF-quantized and must pass the accuracy gate."""
    import openvino as ov

    from .export import deviation, export_openvino  # deferred: torch

    shape = "static " + str((spec.batch_size, spec.seq_len)) if spec.batch_size else "dynamic"
    progress(f"converting to OpenVINO IR {ov.__version__.split('-')[0]} ({shape} shape, fp32 weights)")
    export_openvino(classifier.model, classifier.encoder.pad, tmp / "model.xml", batch_size=spec.batch_size, seq_len=spec.seq_len,
                    last_layer=manifest["last_layer"])
    fp32 = openvino_session(tmp / "model.xml", threads=threads, precision="fp32")
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    part = {"openvino": {"version": ov.__version__, "cpu_isa": cpu_isa(), "cpu_capabilities": list(capabilities),
                         "inference_precision": fp32.inference_precision},
            "fidelity": fidelity_check(classifier, fp32, spec, progress)}
    if precision == "bf16":
        bf16 = openvino_session(tmp / "model.xml", threads=threads, precision="bf16")
        part["bf16"] = deviation(classifier.model, classifier.encoder.pad, bf16, fidelity_shapes(classifier, spec),
                                 real_inputs=real_inputs(classifier.encoder, spec.batch_size,
                                                         spec.seq_len or min(64, classifier.max_tokens)))
        part["openvino"]["inference_precision"] = bf16.inference_precision
        if "BF16" not in capabilities:
            part["bf16"]["note"] = "this CPU has no bf16 instructions: OpenVINO runs this bundle in f32"
        progress(f"bf16 vs PyTorch fp32: max |Δlogit| = {part['bf16']['max_abs_diff']:.2e}, "
                 f"label agreement {100 * part['bf16']['label_agreement']:.1f} % of {part['bf16']['rows']} rows")
    if precision == "int8":
        part["quantization"] = quantize_openvino(classifier, tmp, spec, manifest, fp32, data=data,
                                                 max_accuracy_drop=max_accuracy_drop,
                                                 calibration_size=calibration_size, threads=threads, progress=progress,
                                                 accuracy_aware=accuracy_aware, heldout_max_drop=heldout_max_drop)
        part["openvino"]["inference_precision"] = part["quantization"].pop("inference_precision")
    return part


@contextlib.contextmanager
def library_output_to_stderr(logger: str) -> Iterator[None]:
    """While a library runs: its progress bars (rich, tqdm: whatever writes to `sys.stdout` at the time) and its
    logger's console handlers bound to standard output (NNCF's, set up at import) write to stderr instead, so that
    stdout holds only the command's results (a table, `--output -`)."""
    moved = [(handler, handler.setStream(sys.stderr)) for handler in logging.getLogger(logger).handlers
             if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__)]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


def quantize_openvino(classifier: RobertaClassifier, tmp: Path, spec: OnnxSpec, manifest: dict, fp32, *, data: Path | None,
                      max_accuracy_drop: float, calibration_size: int, threads: int | None, progress, accuracy_aware: bool,
                      heldout_max_drop: float) -> dict:
    """Replace tmp's fp32 IR by NNCF's static int8 (calibrated on SST-2 train), if it passes the SST-2 dev gate;
    `accuracy_aware`: through `nncf.quantize_with_accuracy_control` on held-out SST-2 train (`heldout_max_drop`
    points), the operations it reverted to floating point recorded as `float_nodes`."""
    import nncf
    import openvino as ov

    train = read_sst2(sst2_file(data, "train"))
    sentences = random.Random(CALIBRATION_SEED).sample(train.sentences, min(calibration_size, len(train.sentences)))
    rows = encode(classifier, sentences)
    feeds = []  # batches of similar length, so the ranges seen span short and long texts as real traffic does
    for index in length_batches([len(r) for r in rows], spec.batch_size or CALIBRATION_BATCH):
        tokens = pad_batch(classifier, [rows[i] for i in index], spec.seq_len)
        feeds.append(fill_batch(tokens, spec.batch_size, classifier.encoder) if spec.batch_size else tokens)
    progress(f"quantizing with NNCF {nncf.__version__}: static int8, calibrated on {len(sentences)} SST-2 train sentences "
             f"({len(feeds)} batches)")
    reference = BundleClassifier(fp32, classifier.encoder, classifier.class_names, manifest)
    log, reverted = logging.getLogger("nncf"), RevertedOps()
    level = log.level
    log.setLevel(logging.WARNING)  # its INFO lines restate what the line above says
    with library_output_to_stderr("nncf"):  # its progress bars and INFO lines: stdout is for results
        try:
            if accuracy_aware:
                heldout = heldout_set(reference, data, exclude=set(sentences))
                items, validate = nncf_validation(heldout, classifier, spec.batch_size or CALIBRATION_BATCH, spec.seq_len,
                                                  lambda t: fill_batch(t, spec.batch_size, classifier.encoder)
                                                  if spec.batch_size else t)
                progress(f"accuracy-aware: NNCF reverts the most sensitive ops to floating point until at most "
                         f"{heldout_max_drop:g} points are lost on {len(heldout.sentences)} held-out SST-2 train "
                         "sentences fp32 gets right")
                log.setLevel(logging.INFO)
                log.addHandler(reverted)
                quantized = nncf.quantize_with_accuracy_control(
                    ov.Core().read_model(tmp / "model.xml"), nncf.Dataset(feeds), nncf.Dataset(items, lambda item: item[0]),
                    validate, max_drop=heldout_max_drop / 100, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
            else:
                quantized = nncf.quantize(ov.Core().read_model(tmp / "model.xml"), nncf.Dataset(feeds),
                                          model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
        finally:
            log.setLevel(level)
            log.removeHandler(reverted)
    for name in ("model.xml", "model.bin"):  # unlinked first: the fp32 session may still map the old weights
        (tmp / name).unlink()
    ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
    int8 = openvino_session(tmp / "model.xml", threads=threads, precision="int8")
    candidate = BundleClassifier(int8, classifier.encoder, classifier.class_names, manifest)
    gate = accuracy_gate(reference, candidate, data=data, max_accuracy_drop=max_accuracy_drop, progress=progress)
    aware = None
    if accuracy_aware:
        measured = heldout_measure(heldout, classify(reference, heldout.sentences), classify(candidate, heldout.sentences))
        aware = {"max_drop_pp": heldout_max_drop, "heldout_drop_pp": measured["lost_pp"], **measured,
                 "float_nodes": reverted.names, "nncf_log": reverted.messages, "heldout": heldout.record}
        progress(f"accuracy-aware: {len(reverted.names)} ops left in floating point, held-out loss {measured['lost_pp']:.2f} "
                 "points")
    return {"method": "nncf.quantize_with_accuracy_control" if accuracy_aware else "nncf.quantize", "nncf": nncf.__version__,
            "float_nodes": reverted.names, "accuracy_aware": aware, "model_type": "transformer", "subset_size": len(feeds),
            "inference_precision": int8.inference_precision,
            "calibration": {"path": str(train.path), "sha256": sha256_file(train.path), "sentences": len(sentences),
                            "seed": CALIBRATION_SEED, "batches": len(feeds)},
            "gate": gate, "note": "`fidelity` is the fp32 IR's; int8's own deviation is gate.max_abs_logit_diff"}


def check_build_options(*, batch_size: int | None, seq_len: int | None, engine: str, precision: str, data: Path | None,
                        max_accuracy_drop: float, calibration_size: int, heldout_max_drop: float | None = None,
                        last_layer: str = DEFAULT_LAST_LAYER) -> None:
    """`build_bundle`'s options that need no model, checked before one is loaded (RobertaInferError): a static
    shape needs both sizes, an engine and precision it exports, a last-layer mode of runtime.LAST_LAYERS, and for
    int8 a gate, a calibration size and SST-2 train.tsv and dev.tsv in `data`."""
    if (batch_size is None) != (seq_len is None):
        raise RobertaInferError("give both --batch-size and --seq-len for a static model, or neither (--dynamic)")
    if batch_size is not None and (batch_size <= 0 or seq_len < 2):
        raise RobertaInferError(f"batch size must be positive and seq-len at least 2 (got {batch_size}, {seq_len})")
    if engine not in ENGINES or precision not in PRECISIONS:
        raise RobertaInferError(f"unknown engine {engine!r} or precision {precision!r}: engines {', '.join(ENGINES)}, "
                                f"precisions {', '.join(PRECISIONS)}")
    if last_layer not in LAST_LAYERS:
        raise RobertaInferError(f"unknown last-layer mode {last_layer!r}: choose one of {', '.join(LAST_LAYERS)}")
    if engine == "onnxruntime" and precision != "fp32":
        raise RobertaInferError(f"ONNX Runtime bundles are exported fp32: export with --engine openvino --precision {precision}"
                                + (", or run `roberta-infer quantize` on an fp32 bundle" if precision == "int8" else ""))
    if precision == "int8":
        check_max_drop(max_accuracy_drop)
        check_max_drop(max_accuracy_drop if heldout_max_drop is None else heldout_max_drop)
        if calibration_size < 1:
            raise RobertaInferError(f"--calibration-size must be positive, got {calibration_size}")
        sst2_file(data, "train"), sst2_file(data, "dev")  # both found before any work is done


def fidelity_shapes(classifier: RobertaClassifier, spec: OnnxSpec) -> list[tuple[int, int]]:
    """The shapes the fidelity check runs: a static export's own, else three of different size."""
    if spec.batch_size:
        return [(spec.batch_size, spec.seq_len)]
    return [(1, 8), (3, 17), (8, min(64, classifier.max_tokens))]


def fidelity_check(classifier: RobertaClassifier, session, spec: OnnxSpec, progress) -> dict:
    """`check_fidelity` at `fidelity_shapes` plus the real CHECK_TEXTS, within TOLERANCE (or RobertaInferError)."""
    from .export import check_fidelity  # deferred: torch

    real = real_inputs(classifier.encoder, spec.batch_size, spec.seq_len or min(64, classifier.max_tokens))
    fidelity = check_fidelity(classifier.model, classifier.encoder.pad, session, fidelity_shapes(classifier, spec),
                              real_inputs=real, tol=TOLERANCE)
    progress(f"fidelity vs PyTorch: max |Δlogit| = {fidelity['max_abs_diff']:.2e} (limit {TOLERANCE:g})")
    return fidelity


def real_inputs(encoder: TextEncoder, batch_size: int | None, seq_len: int) -> np.ndarray:
    """The check sentences as model input, cut/padded to the export's shape."""
    rows = encoder.encode(CHECK_TEXTS)
    tokens, _ = pad_to(rows, seq_len, pad=encoder.pad, eos=encoder.eos)
    if batch_size is not None:
        tokens = np.resize(tokens, (batch_size, seq_len))
    return tokens


def load_bundle(directory: Path, *, threads: int | None = None, provider: str = "cpu", spin: bool = True,
                streams: int | None = None) -> BundleClassifier:
    """Open a bundle on its engine (manifest "engine"; none recorded = onnxruntime) after checking it is complete,
    unmodified (`verify_files`: every file's sha256; an older bundle without `files`, its model files') and a RoBERTa
    classifier of our form whose manifest fits its graph (`check_graph`: class names = logits width, `max_tokens`
    within the position table the graph holds, tokenizer ids within the embedding table).

    `threads`: the engine's threads (default: all physical cores). `provider` and `spin` are ONNX Runtime's
    (`make_session`); an OpenVINO bundle runs on the CPU and refuses any other provider; `streams` is OpenVINO's
    (`openvino_session`: default one per thread; 1 for the lowest single-row latency). Raises RobertaInferError.
    """
    directory = Path(directory)
    if not directory.exists():
        raise RobertaInferError(f"bundle {directory} not found")
    kind = kind_of(directory)
    if kind in ("checkpoint", "model"):
        raise RobertaInferError(f"{directory} is a checkpoint, not a bundle: run `roberta-infer export` first")
    if kind not in (None, "bundle"):
        raise RobertaInferError(f"{directory} is {describe(kind)}, not a bundle")
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise RobertaInferError(f"bundle {directory} is missing {', '.join(missing)}: re-run `roberta-infer export`")
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except json.JSONDecodeError as e:
        raise RobertaInferError(f"{directory / 'manifest.json'} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise RobertaInferError(f"{directory} is not a roberta-infer bundle (format {manifest.get('format')!r})")
    engine, precision = engine_and_precision(manifest)
    if engine not in ENGINES:
        raise RobertaInferError(f"{directory} needs engine {engine!r}, which this roberta-infer does not have "
                                f"({', '.join(ENGINES)})")
    if engine == "openvino" and provider != "cpu":
        raise RobertaInferError(f"--provider {provider} is ONNX Runtime's: {directory} is an OpenVINO bundle, "
                                "which runs on the CPU")
    verify_files(directory, manifest)
    check_manifest(directory, manifest)
    encoder = TextEncoder.load(directory)
    if engine == "openvino":
        import openvino as ov

        try:
            graph = ov.Core().read_model(str(directory / "model.xml"))  # read once: inspected here, compiled below
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            first = str(e).strip().splitlines()[0][:300]
            raise RobertaInferError(f"OpenVINO cannot read {directory / 'model.xml'}: {first}") from None
        positions = openvino_positions(graph)
        session = openvino_session(graph, threads=threads, precision=precision, streams=streams)
    else:
        positions = onnx_positions(inspect_onnx(directory / "model.onnx"))
        session = make_session(directory / "model.onnx", threads=threads, provider=provider, spin=spin)
    check_graph(directory, manifest, classes=session.output_shape[-1], positions=positions, encoder=encoder)
    return BundleClassifier(session, encoder, manifest["class_names"], manifest)


def open_model(path: Path, *, threads: int | None = None, provider: str = "cpu", **checkpoint_options):
    """Any model `--model` may name: an exported bundle (ONNX Runtime or OpenVINO) or a checkpoint (PyTorch).

    `checkpoint_options` (fairseq_data, bpe_dir, head, class_names) go to `checkpoint.load_classifier`.
    """
    from .checkpoint import load_classifier  # deferred: torch

    if (Path(path) / "manifest.json").is_file():
        return load_bundle(path, threads=threads, provider=provider)
    return load_classifier(path, **checkpoint_options)
