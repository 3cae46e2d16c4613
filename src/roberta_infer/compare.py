"""Us against the engines people run, on equal terms: SST-2 dev end to end, text → label, tokenisation included.

Speed is measured on a roberta-base-shaped model (synthetic weights: time depends on the shape only), accuracy
on the trained default model run the same way. Three groups of rows:
- *peer*: each engine as its users run it — batches of 32 texts in arrival order, each padded to its longest
  (one row padded to a fixed 70, the reference's way: the baseline every ratio is taken against), Hugging Face
  Optimum's pipelines among them where their venvs are given (`optimum_peers`: exported by Optimum itself);
- *engine*: the same engines, the same model files, fed our length-aware batches (`predict.length_batches`);
- *ours*: our full pipeline (`predict.classify` on `load_bundle`: e.g. OpenVINO's streams) on the fastest of our
  gated bundles, chosen by measurement here; each OpenVINO bundle is also tried compiled with OpenVINO's own
  defaults (as its engine row runs it), so ours is never slower than the engine's defaults on the same batches.

A peer row differs from its engine row only in the batching, an engine row from ours only in how our bundle runs
the same model file (the engine rows compile it with the engine's defaults, as its users do).
Every mode runs `repeats` timed passes: its sentences/s is the fastest pass's, its spread the slowest and fastest,
and each ratio of ours says whether it lies outside the two rows' spreads (`versus`).
GOP/s counts the multiply-adds ×2 of the matmuls of the shapes actually run, padding included (`forward_flops`);
fp32 modes are set against this machine's measured fp32 GEMM peak, int8 modes against its int8 GEMM peak.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .bundle import build_bundle, load_bundle
from .checkpoint import RobertaClassifier, load_classifier, torch_threads
from .compare_report import counted
from .data import read_sst2, sst2_file
from .default import default_model_dir
from .engines import compile_openvino
from .errors import RobertaInferError
from .evaluate import accuracy
from .gate import accuracy_gate, check_max_drop
from .hardware import candidates, machine, physical_cores
from .optimum_peers import OPTIMUM, OptimumPeer, unavailable
from .predict import Classifier, classify, encode, pad_batch
from .prepare import label_indices
from .quantize import QuantSettings, comparable, ort_int8_bundle
from .roofline import forward_flops, gemm_peak_gflops, int8_gemm_peak_gops, peak_kind
from .synthetic import mark_synthetic, model_label, synthetic_classifier
from .timing import Recorder, ratios, spread

BATCH_SIZE = 32
FIXED_LEN = 70
# Bundles are built ungated (their accuracy is in the table); ours is chosen among those whose gate, run on the
# accuracy model at their build, passed (by default at `quantize`'s 0.3 SST-2 dev percentage points). int8 bundles
# of the accuracy model are built accuracy-aware against that limit on held-out SST-2 train; the speed model's ORT
# int8 leaves the same MatMuls fp32 (its OpenVINO int8 is plain NNCF int8: its reverted ops are not carried over).
NO_GATE = 100.0


@dataclass(frozen=True)
class Engine:
    """One engine and precision, as its users get it: `form` names which model object runs it."""

    engine: str
    precision: str
    description: str
    form: str


# Engine key → how it runs. OpenVINO rows run the IR of our own OpenVINO bundles compiled as a user would
# (`Core().compile_model(xml, "CPU")`, no hint), ONNX Runtime's the model of our ORT int8 bundle.
ENGINES = {
    "hf-fp32": Engine("pytorch", "fp32", "Hugging Face transformers eager fp32", "torch"),
    "torch-bf16": Engine("pytorch", "bf16", 'PyTorch bf16 autocast (torch.autocast("cpu", torch.bfloat16))', "torch-bf16"),
    "torch-int8": Engine("pytorch", "int8", "PyTorch dynamic int8 (torch.ao quantize_dynamic, Linear)", "torch-int8"),
    "ort-int8": Engine("onnxruntime", "int8", "ONNX Runtime dynamic int8 (accuracy-aware)", "ort-int8"),
    "ov-default": Engine("openvino", "default hint", "OpenVINO, default hint (bf16 where the CPU has it)", "ov:ov-fp32"),
    "ov-int8": Engine("openvino", "int8", "OpenVINO + NNCF static int8 (accuracy-aware)", "ov:ov-int8"),
    # Hugging Face Optimum's pipelines, run from venvs of their own (`optimum_peers`): skipped unless given.
    **{key: Engine(backend, precision, text, f"optimum:{key}") for key, (_, backend, precision, text) in OPTIMUM.items()},
}
BASELINE = "peer:hf-fp32-fixed70"
# Mode name → (group, engine key). The baseline is the only fixed-length row.
MODES = {BASELINE: ("peer", "hf-fp32"), **{f"peer:{key}": ("peer", key) for key in ENGINES},
         **{f"engine:{key}": ("engine", key) for key in ENGINES}, "ours": ("ours", None)}
# Our gated bundles that may be "ours", and how each is built (`quantize` for ORT int8, else `build_bundle`).
OURS = {"ort-int8": ("onnxruntime", "int8"), "ov-int8": ("openvino", "int8"), "ov-bf16": ("openvino", "bf16")}
BUNDLES = {"ort-fp32": ("onnxruntime", "fp32"), "ov-fp32": ("openvino", "fp32"), **OURS}
IR_FILE = "model.xml"  # the OpenVINO IR inside an OpenVINO bundle
# The candidate for ours that runs an OpenVINO bundle's IR compiled with OpenVINO's defaults (`OpenVinoPeer`).
ENGINE_DEFAULTS = " (engine defaults)"


def parse_modes(text: str) -> list[str]:
    """`--modes`: comma-separated names of MODES, or a group (`peer`, `engine`) for all of its rows, or `all`."""
    chosen: list[str] = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name == "all":
            chosen += list(MODES)
        elif name in ("peer", "engine"):
            chosen += [mode for mode, (group, _) in MODES.items() if group == name]
        elif name in MODES:
            chosen.append(name)
        else:
            raise RobertaInferError(f"unknown mode {name!r}: choose from all, peer, engine, {', '.join(MODES)}")
    if not chosen:
        raise RobertaInferError("--modes names no mode")
    return chosen


class Autocast:
    """A PyTorch classifier run as its users get bf16: the forward pass inside `torch.autocast("cpu", torch.bfloat16)`."""

    def __init__(self, classifier: RobertaClassifier) -> None:
        self.classifier = classifier
        self.encoder, self.class_names, self.max_tokens = classifier.encoder, classifier.class_names, classifier.max_tokens

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        """float32 [N, classes] (the bf16 logits widened)."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.classifier.logits(src_tokens)


class OpenVinoPeer:
    """An OpenVINO bundle's IR compiled as a user of OpenVINO would: `Core().compile_model(xml, "CPU")` with only the
    thread count set (`engines.compile_openvino`), default hint, called as a whole batch.

    `precision` is what OpenVINO chose (its INFERENCE_PRECISION_HINT: bf16 on AMX CPUs, else f32).
    """

    def __init__(self, bundle: Path, threads: int) -> None:
        ours = load_bundle(bundle, threads=threads)
        self.encoder, self.class_names, self.max_tokens = ours.encoder, ours.class_names, ours.max_tokens
        self.manifest = ours.manifest
        self.model = compile_openvino(Path(bundle) / IR_FILE, {"INFERENCE_NUM_THREADS": threads})
        self.precision = self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def logits(self, src_tokens: np.ndarray) -> np.ndarray:
        """int64 [N, L] → float32 [N, classes]."""
        return self.model(np.ascontiguousarray(src_tokens, dtype=np.int64))[0]


class Models:
    """One model in every form the modes run, made on first use; bundles cached in `work_dir` per model.

    int8 bundles are accuracy-aware (at most `max_drop` points lost on held-out SST-2 train) where `search`, else
    plain; with `float_like` (the accuracy model's Models) ORT int8 leaves fp32 the MatMuls that model's does.
    """

    def __init__(self, classifier: RobertaClassifier, work_dir: Path, *, data: Path | None, threads: int,
                 progress: Callable[[str], None], max_drop: float = 0.3, search: bool = True,
                 float_like: Models | None = None, optimum_venvs: Path | None = None) -> None:
        self.classifier, self.work_dir, self.data, self.optimum_venvs = classifier, Path(work_dir), data, optimum_venvs
        self.threads, self.progress = threads, progress
        self.max_drop, self.search, self.float_like = max_drop, search, float_like
        self.forms: dict[str, Classifier] = {}
        self.checked: set[str] = set()  # bundles found current or built by this object: not loaded again to check

    def bundle(self, name: str) -> Path:
        """The directory of bundle `name` (a key of BUNDLES) of this model, built unless already there."""
        engine, precision = BUNDLES[name]
        directory = self.work_dir / name
        if name in self.checked:
            return directory
        aware = {"accuracy_aware": self.search, "heldout_max_drop": self.max_drop}
        if name == "ort-int8" and self.float_like is not None:
            float_nodes = load_bundle(self.float_like.bundle(name)).manifest["quantization"]["float_nodes"]
            aware["settings"] = replace(QuantSettings(), float_nodes=tuple(float_nodes))
        if not current(directory, self.classifier.source, engine, precision, aware):
            self.progress(f"building {directory} ({engine} {precision})")
            if name == "ort-int8":
                ort_int8_bundle(self.classifier, self.work_dir / "ort-fp32", directory, data=self.data, max_accuracy_drop=NO_GATE,
                                threads=self.threads, progress=self.progress, **aware)
            else:
                options = {key: value for key, value in aware.items() if key != "settings"} if precision == "int8" else {}
                mark_synthetic(build_bundle(self.classifier, directory, engine=engine, precision=precision, data=self.data,
                                            max_accuracy_drop=NO_GATE, threads=self.threads, progress=self.progress, force=True,
                                            **options),
                              directory)
        self.checked.add(name)
        return directory

    def form(self, name: str) -> Classifier:
        """`torch`, `torch-bf16`, `torch-int8`, `ov:BUNDLE` (an OpenVINO bundle's IR as users compile it),
        `optimum:KEY` (an Optimum pipeline, `optimum_peers.OptimumPeer`), or a bundle of BUNDLES through `load_bundle`."""
        if name not in self.forms:
            if name == "torch":
                model = self.classifier
            elif name == "torch-bf16":
                model = Autocast(self.classifier)
            elif name == "torch-int8":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (still what its users run)
                    int8 = torch.ao.quantization.quantize_dynamic(self.classifier.model, {torch.nn.Linear}, dtype=torch.qint8)
                model = replace(self.classifier, model=int8)
            elif name.startswith("ov:"):
                model = OpenVinoPeer(self.bundle(name.removeprefix("ov:")), self.threads)
            elif name.startswith("optimum:"):
                model = OptimumPeer(name.removeprefix("optimum:"), self.classifier, self.work_dir / "optimum", self.optimum_venvs,
                                    threads=self.threads, data=self.data)
            else:
                model = load_bundle(self.bundle(name), threads=self.threads)
            self.forms[name] = model
        return self.forms[name]

    def gate_drop(self, name: str) -> float:
        """SST-2 dev points bundle `name` (of OURS) loses against its engine's fp32 form: from the gate its build ran
        (int8), else measured now with `gate.accuracy_gate` (bf16, which OpenVINO's export does not gate)."""
        bundle = load_bundle(self.bundle(name), threads=self.threads)
        gate = bundle.manifest.get("quantization", {}).get("gate")
        if gate is None:
            fp32 = load_bundle(self.bundle("ov-fp32" if bundle.engine == "openvino" else "ort-fp32"), threads=self.threads)
            gate = accuracy_gate(fp32, bundle, data=self.data, max_accuracy_drop=NO_GATE, names=("fp32", bundle.precision),
                                 progress=self.progress)
        return gate["accuracy_drop_pp"]

    @property
    def label(self) -> str:
        return model_label({"source": self.classifier.source, "synthetic": self.classifier.source.get("kind") == "synthetic"})


def current(bundle: Path, source: dict, engine: str, precision: str, aware: dict | None = None) -> bool:
    """Whether `bundle` loads and was made from `source` as `engine` / `precision` (else it is rebuilt); for int8,
    also as `aware` asks (`Models.bundle`: accuracy-aware at the same held-out limit, or the same fp32 MatMuls)."""
    try:
        loaded = load_bundle(bundle)
    except (RobertaInferError, KeyError):
        return False
    same = (comparable(loaded.manifest["source"]) == comparable(source)
            and (loaded.engine, loaded.precision) == (engine, precision))
    if not same or precision != "int8" or aware is None:
        return same
    quantization = loaded.manifest.get("quantization", {})
    search = quantization.get("accuracy_aware")
    if not aware["accuracy_aware"]:
        wanted = aware["settings"].float_nodes if "settings" in aware else ()
        return search is None and tuple(quantization.get("float_nodes", ())) == tuple(wanted)
    return search is not None and search.get("max_drop_pp") == aware["heldout_max_drop"]


def as_users_run_it(classifier: Classifier, texts: list[str], *, width: int | None = None) -> np.ndarray:
    """Logits [N, classes] of batches of 32 texts in arrival order, each padded to its longest (or to `width` ids)."""
    rows = encode(classifier, texts)
    return np.concatenate([classifier.logits(pad_batch(classifier, rows[start : start + BATCH_SIZE], width))
                           for start in range(0, len(rows), BATCH_SIZE)])


def run_mode(mode: str, classifier: Classifier, texts: list[str]) -> tuple[np.ndarray, Recorder]:
    """Logits of `texts` in input order, the way `mode` runs them, and the record of its model calls."""
    group = MODES[mode][0]
    if isinstance(classifier, OptimumPeer):  # timed in its own venv: one pass
        return classifier.timed(group, texts, 1, BATCH_SIZE)[1:]
    recorder = Recorder(classifier)
    if group == "peer":
        logits = as_users_run_it(recorder, texts, width=FIXED_LEN if mode == BASELINE else None)
    else:
        logits = classify(recorder, texts, batch_size=BATCH_SIZE)
    return logits, recorder


def timed(mode: str, classifier: Classifier, texts: list[str], repeats: int) -> tuple[list[float], np.ndarray, Recorder]:
    """`repeats` passes after one warm-up on the first batch: the seconds of each pass, in order, and the logits and
    record of the fastest (other load on a shared machine only slows)."""
    if isinstance(classifier, OptimumPeer):  # the worker warms up and times its passes itself
        return classifier.timed(MODES[mode][0], texts, repeats, BATCH_SIZE)
    run_mode(mode, classifier, texts[:BATCH_SIZE])
    seconds, best = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        logits, recorder = run_mode(mode, classifier, texts)
        seconds.append(time.perf_counter() - start)
        if best is None or seconds[-1] < min(seconds[:-1]):
            best = (logits, recorder)
    return seconds, *best


def default_models() -> tuple[RobertaClassifier, RobertaClassifier | None, str | None]:
    """Synthetic roberta-base for speed; the shipped trained model for accuracy, or None and why."""
    try:
        trained, note = load_classifier(default_model_dir()), None
    except RobertaInferError as e:
        trained, note = None, str(e)
    return synthetic_classifier("roberta-base"), trained, note


def compare(speed_model: RobertaClassifier, accuracy_model: RobertaClassifier | None, *, work_dir: Path, modes: list[str],
            data: Path | None = None, limit: int | None = None, threads: int | None = None, repeats: int = 3,
            ours_from: tuple[str, ...] | None = None, max_accuracy_drop: float = 0.3, accuracy_note: str | None = None,
            optimum_venvs: Path | None = None, progress: Callable[[str], None] = print) -> dict:
    """Run each mode on SST-2 dev, one after the other: sentences/s of `speed_model`, accuracy of `accuracy_model`.

    `modes` are keys of MODES (the baseline always runs too). "ours" is the fastest, through `predict.classify`,
    of the bundles `ours_from` (keys of OURS; default `hardware.candidates(bf16=True)`: ORT int8, and where openvino
    is installed OpenVINO int8 on a CPU with VNNI or AMX and OpenVINO bf16 on one with AVX-512 BF16 or AMX) whose
    gate on `accuracy_model` lost at most `max_accuracy_drop` SST-2 dev points, each with our settings and (OpenVINO)
    with the engine's defaults (`ours_forms`; the winner's in "settings"). Bundles are built under
    `work_dir`/{speed,accuracy} once and reused while the models are the same. Returns the JSON-ready result: per
    mode sentences/s of the fastest of `repeats` passes (time of the whole pass, tokenisation included) and "spread"
    (`spread`: slowest and fastest pass), accuracy, label agreement with the baseline (on the accuracy model, else
    the speed model), model-call latency p50/p99 in ms, the batch shapes, "gflops" (`forward_flops` per second: GOP/s)
    and "peak_fraction" of the peak named in "peak" ("fp32": "peak_gflops" from `gemm_peak_gflops`, "int8":
    "int8_peak_gops" from `int8_gemm_peak_gops`, each the higher of a measurement before and after the modes; None
    for bf16); "ratios" (`ratios`: ours against the fastest peer and each engine, with the noise verdict); "skipped":
    mode → why, for Optimum modes (`optimum_peers`, from the venvs in `optimum_venvs`) that cannot run here. Raises
    RobertaInferError for bad settings (`check_settings`), a model with fewer than 70 positions, or when no
    candidate for ours kept accuracy.
    """
    ours_from = check_settings(modes, data=data, limit=limit, repeats=repeats, ours_from=ours_from,
                               max_accuracy_drop=max_accuracy_drop)
    modes = [BASELINE, *(m for m in MODES if m in modes and m != BASELINE)]  # the table's order
    skipped = {m: why for m in modes if MODES[m][1] in OPTIMUM and (why := unavailable(MODES[m][1], optimum_venvs))}
    for mode, why in skipped.items():
        progress(f"{mode} skipped: {why}")
    modes = [m for m in modes if m not in skipped]
    for model in (speed_model, accuracy_model):
        if model is not None and model.max_tokens < FIXED_LEN:
            raise RobertaInferError(f"{model.source.get('path', 'the model')} holds {model.max_tokens} positions, "
                                    f"fewer than the reference's fixed length {FIXED_LEN}")
    split = read_sst2(sst2_file(data, "dev"))
    texts, raw_labels = split.sentences[:limit], split.labels[:limit]
    threads = threads or physical_cores()
    trained = None
    if accuracy_model is not None and accuracy_model is not speed_model:
        trained = Models(accuracy_model, Path(work_dir) / "accuracy", data=data, threads=threads, progress=progress,
                         max_drop=max_accuracy_drop, optimum_venvs=optimum_venvs)
    speed = Models(speed_model, Path(work_dir) / "speed", data=data, threads=threads, progress=progress,
                   max_drop=max_accuracy_drop, search=accuracy_model is speed_model, float_like=trained,
                   optimum_venvs=optimum_venvs)
    trained = speed if accuracy_model is speed_model else trained
    with torch_threads(threads):  # the PyTorch modes and the GEMM peak get the cores the other engines get
        load_before = os.getloadavg()
        peaks = [gemm_peak_gflops()]
        int8_peaks = [int8_gemm_peak_gops(threads=threads)]
        results = [run_one(mode, speed, trained, texts, raw_labels, repeats, (ours_from, max_accuracy_drop), progress)
                   for mode in modes]
        peaks.append(gemm_peak_gflops())  # before and after: the higher one is the machine's, the lower was disturbed
        int8_peaks.append(int8_gemm_peak_gops(threads=threads))
    progress(f"GEMM peaks on {threads} threads: fp32 {max(peaks):.0f} GFLOP/s, int8 {max(int8_peaks):.0f} GOP/s")
    peak = {"fp32": max(peaks), "int8": max(int8_peaks)}
    baseline, labels = results[0], [result.pop("labels") for result in results]
    for result, mode_labels in zip(results, labels):
        result["agreement_with_baseline"] = float(np.mean(mode_labels == labels[0]))
        result["ratio_to_baseline"] = result["sentences_per_s"] / baseline["sentences_per_s"]
        flops = sum(forward_flops(speed.classifier.architecture, b, s) for b, s in result["batch_shapes"])
        result["gflops"] = flops / result["seconds"] / 1e9
        result["peak"] = peak_kind(result["precision"])
        result["peak_fraction"] = None if result["peak"] is None else result["gflops"] / peak[result["peak"]]
    return {"machine": machine(), "threads": threads, "repeats": repeats, "batch_size": BATCH_SIZE,
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())}, "peak_gflops": peak["fp32"],
            "peak_gflops_measured": peaks, "int8_peak_gops": peak["int8"], "int8_peak_gops_measured": int8_peaks,
            "sentences": len(texts), "speed_model": speed.label,
            "accuracy_model": trained.label if trained else None, "accuracy_note": accuracy_note,
            "agreement_on": "accuracy model" if trained else "speed model", "baseline": BASELINE,
            "max_accuracy_drop_pp": max_accuracy_drop, "ratios": ratios(results), "modes": results, "skipped": skipped}


def check_settings(modes: list[str], *, data: Path | None, limit: int | None, repeats: int,
                   ours_from: tuple[str, ...] | None, max_accuracy_drop: float) -> tuple[str, ...]:
    """`compare`'s settings, checked before any model is built or loaded: RobertaInferError for unknown modes or
    candidates, a non-positive `limit`/`repeats`, a negative `max_accuracy_drop` or no SST-2 dev.tsv in `data`.
    Returns the candidates for ours (`hardware.candidates(bf16=True)` where `ours_from` is None)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise RobertaInferError(f"unknown modes {unknown}: choose from {', '.join(MODES)}")
    if limit is not None and limit < 1 or repeats < 1:
        raise RobertaInferError(f"--limit and --repeats must be positive, got {limit} and {repeats}")
    check_max_drop(max_accuracy_drop)
    ours_from = tuple(candidates(bf16=True)) if ours_from is None else ours_from
    if not ours_from or set(ours_from) - set(OURS):
        raise RobertaInferError(f"candidates for ours {list(ours_from)}: choose from {', '.join(OURS)}")
    sst2_file(data, "dev")
    return ours_from


def run_one(mode: str, speed: Models, trained: Models | None, texts: list[str], raw_labels: list[str], repeats: int,
            gate: tuple[tuple[str, ...], float], progress: Callable[[str], None]) -> dict:
    """One row: the speed pass(es) on `speed`, then the same mode on `trained` for accuracy and labels.

    `gate`: the candidates for ours and the accuracy drop (points) they may have lost on `trained`.
    """
    group, key = MODES[mode]
    entry: dict = {"mode": mode, "group": group}
    if group == "ours":
        ours_from, max_drop = gate
        drops = {name: trained.gate_drop(name) for name in ours_from} if trained is not None else {}
        eligible = [name for name in ours_from if drops.get(name, 0.0) <= max_drop]
        if not eligible:
            raise RobertaInferError(f"none of {', '.join(ours_from)} kept SST-2 dev accuracy within {max_drop:g} points on "
                                    f"the accuracy model (lost {', '.join(f'{n} {d:.2f}' for n, d in drops.items())})")
        forms = ours_forms(eligible)
        passes = {name: timed(mode, speed.form(form), texts, repeats) for name, (_, form) in forms.items()}
        chosen = min(passes, key=lambda name: min(passes[name][0]))
        bundle, form = forms[chosen]
        engine, precision = OURS[bundle]
        settings = runtime_settings(speed.form(form))
        entry.update(engine=engine, precision=precision, candidate=bundle, settings=settings,
                     name=f"ours: predict.classify on {engine} {precision} ({settings['source']}: "
                          f"{counted(settings['streams'], 'stream')}, {counted(settings['threads'], 'thread')})",
                     sentences_per_s_by_candidate={name: len(texts) / min(p[0]) for name, p in passes.items()},
                     gate_drop_pp=drops or None)
        seconds, logits, recorder = passes[chosen]
    else:
        spec = ENGINES[key]
        form = spec.form
        model = speed.form(form)
        precision = f"{model.precision} (default hint)" if spec.precision == "default hint" else spec.precision
        batching = "fixed 70" if mode == BASELINE else "arrival order, padded to longest" if group == "peer" else "length-aware"
        entry.update(engine=spec.engine, precision=precision, name=f"{spec.description}, {batching}")
        seconds, logits, recorder = timed(mode, model, texts, repeats)
    labels, score = logits.argmax(1), None
    if trained is not None:
        acc_model = trained.form(form)
        acc_logits = run_mode(mode, acc_model, texts)[0]
        gold = label_indices(raw_labels, acc_model.class_names)
        score = accuracy(acc_logits, acc_model.class_names, gold, acc_model.class_names)["accuracy"]
        labels = acc_logits.argmax(1)
    ms = np.array(recorder.seconds) * 1000
    entry.update(model=speed.label, seconds=min(seconds), sentences_per_s=len(texts) / min(seconds),
                 spread=spread(len(texts), seconds), accuracy=score,
                 latency_ms={"p50": float(np.median(ms)), "p99": float(np.percentile(ms, 99))},
                 batch_shapes=[list(shape) for shape in recorder.shapes], labels=labels)
    progress(f"{mode}: {entry['sentences_per_s']:.1f} sentences/s ({entry['name']})")
    return entry


def ours_forms(bundles: list[str]) -> dict[str, tuple[str, str]]:
    """The candidates for ours, name → (bundle of OURS, form for `Models.form`): each bundle through `load_bundle` with
    our settings, and each OpenVINO bundle also compiled with OpenVINO's defaults (`OpenVinoPeer`: no hint, so
    OpenVINO's LATENCY mode and its stream count; named "BUNDLE (engine defaults)").

    ONNX Runtime bundles have no second candidate: `engines.make_session` keeps ONNX Runtime's defaults (intra-op
    threads = physical cores, all graph optimisations, spinning threads), setting only the thread count compare
    gives every engine.
    """
    forms = {}
    for bundle in bundles:
        forms[bundle] = (bundle, bundle)
        if OURS[bundle][0] == "openvino":
            forms[bundle + ENGINE_DEFAULTS] = (bundle, f"ov:{bundle}")
    return forms


def runtime_settings(classifier: Classifier) -> dict:
    """How ours' chosen candidate runs: "source" ("ours": `load_bundle`'s settings, or "engine defaults"), "threads",
    "streams" (OpenVINO's; 1 for ONNX Runtime, which runs a call on one intra-op pool) and "batch_size"."""
    if isinstance(classifier, OpenVinoPeer):
        return {"source": "engine defaults", "threads": int(classifier.model.get_property("INFERENCE_NUM_THREADS")),
                "streams": int(classifier.model.get_property("NUM_STREAMS")), "batch_size": BATCH_SIZE}
    session = classifier.session
    return {"source": "ours", "threads": session.threads, "streams": getattr(session, "streams", 1), "batch_size": BATCH_SIZE}
