"""int8 bundles: ONNX Runtime dynamic quantization of a bundle's model, refused unless SST-2 dev accuracy holds.

`gate.accuracy_gate` is the one accuracy gate: `quantize_bundle` here and OpenVINO's NNCF int8 export
(`bundle.build_bundle`) both pass through it. `ort_int8_bundle` is the one recipe for an ONNX Runtime int8 bundle
from a PyTorch model, used by `run`'s fast row and `compare`.

Dynamic quantization stores MatMul weights as int8 and quantizes activations per call, so it needs no
calibration data. Where the source checkpoint is at hand it is applied to the model re-exported unfused: ONNX
Runtime then fuses the quantized graph itself (DynamicQuantizeMatMul, MatMulIntegerToFloat with one shared
quantization of Q/K/V's input), which ran ~20 % faster at batch 32 on roberta-base than the fused graph's
QAttention (ONNX Runtime 1.32, AVX-512 VNNI). Without it, the bundle's fused graph is quantized (Attention too).
The gate compares fp32 and int8 on SST-2 dev, tokenised by the bundle itself, and writes nothing when accuracy
drops by more than the allowed percentage points.

Accuracy-aware (the default): before the gate, `accuracy_aware.search_float_nodes` picks which MatMuls stay fp32,
measured on held-out SST-2 train (plain int8 where it already keeps accuracy there); the manifest's `quantization`
records them (`float_nodes`) and every measurement (`accuracy_aware`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx
import onnxruntime.quantization
from onnxruntime.quantization import QuantType, quantize_dynamic

from .accuracy_aware import heldout_measure, heldout_set, matmul_groups, search_float_nodes
from .bundle import build_bundle, load_bundle
from .checkpoint import RobertaClassifier, load_classifier
from .data import sha256_file, sst2_file
from .engines import make_session
from .errors import RobertaInferError
from .export import export_onnx
from .gate import accuracy_gate, check_max_drop
from .optimize import op_counts
from .outputs import check_dir, output_dir
from .predict import classify
from .runtime import BundleClassifier
from .synthetic import mark_synthetic, synthetic_classifier
from .verify import write_manifest

QUANTIZATION_SOURCE = str(Path(onnxruntime.quantization.__file__).parent)
WEIGHT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


@dataclass(frozen=True)
class QuantSettings:
    """How weights are quantized. Activations are always uint8 (ONNX Runtime's dynamic scheme).

    int8 weights with uint8 activations (u8s8) can saturate 16-bit intermediate sums on AVX2 CPUs without VNNI;
    `reduce_range` (7-bit weights) avoids that and `per_channel` recovers the precision 7 bits lose. Measured on
    an AVX-512 VNNI CPU: every int8 setting kept SST-2 dev accuracy within 0.23 points at the same speed, while
    uint8 weights (u8u8, the other way around saturation) ran 3x slower; so the default is the setting that is
    also safe on CPUs without VNNI. `float_nodes`: names of nodes left fp32 (`quantize_dynamic`'s nodes_to_exclude).
    """

    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = True
    op_types: tuple[str, ...] = ("MatMul",)
    float_nodes: tuple[str, ...] = ()


def quantize_onnx(src: Path, dst: Path, settings: QuantSettings) -> None:
    """Write the dynamically quantized `src` to `dst` (weights inside, one file)."""
    if settings.weight_type not in WEIGHT_TYPES:
        raise RobertaInferError(f"unknown weight type {settings.weight_type!r}: choose one of {', '.join(WEIGHT_TYPES)}")
    with quiet_advice():
        quantize_dynamic(Path(src), Path(dst), op_types_to_quantize=list(settings.op_types), per_channel=settings.per_channel,
                         reduce_range=settings.reduce_range, weight_type=WEIGHT_TYPES[settings.weight_type],
                         nodes_to_exclude=list(settings.float_nodes),
                         # shape inference cannot type the outputs of fused com.microsoft ops; they are all float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


@contextmanager
def quiet_advice() -> Iterator[None]:
    """Drop onnxruntime.quantization's warnings for the duration (it always logs generic advice to pre-process the
    model, which a user cannot act on), leaving the root logger's level and every other record alone. It logs
    through `logging.warning`, which would also install a handler on an unconfigured root logger: a NullHandler
    stands in meanwhile."""
    root, guard = logging.getLogger(), logging.NullHandler()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(QUANTIZATION_SOURCE)

    root.addFilter(keep)
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeFilter(keep)
        root.removeHandler(guard)


def quantize_bundle(bundle: Path, out: Path, *, source: RobertaClassifier | Path | None = None,
                    fairseq_data: Path | None = None, data: Path | None = None, max_accuracy_drop: float = 0.3,
                    settings: QuantSettings = QuantSettings(), threads: int | None = None, progress=print,
                    force: bool = False, accuracy_aware: bool = True, heldout_max_drop: float | None = None) -> dict:
    """Quantize `bundle` into the bundle `out` if SST-2 dev accuracy drops by at most `max_accuracy_drop` points.

    `source` is the PyTorch model the bundle was exported from, or its checkpoint's path (loaded, with
    `fairseq_data`, once `bundle`, `out` and `data` have passed their checks); default: re-loaded from the path its
    manifest records, or rebuilt if synthetic; if neither can be, the fused graph is quantized. It must match the
    manifest's sha256. Returns the new manifest; raises (having written nothing) when the gate fails. `out` is written
    through `outputs.output_dir`: an existing bundle is replaced only with `force`, the fp32 bundle never.

    `accuracy_aware`: first find the MatMuls to leave fp32 (`accuracy_aware.search_float_nodes`, on held-out SST-2
    train, which `data` must then hold) so that at most `heldout_max_drop` points (default `max_accuracy_drop`) are
    lost there; SST-2 dev is still only the final gate's.
    """
    bundle, out = Path(bundle), Path(out)
    if out.resolve() == bundle.resolve():
        raise RobertaInferError("--out must differ from --model: the fp32 bundle is kept")
    check_dir(out, "bundle", force=force)
    check_max_drop(max_accuracy_drop)
    check_max_drop(max_accuracy_drop if heldout_max_drop is None else heldout_max_drop)
    sst2_file(data, "dev")  # found before any work is done
    if accuracy_aware:
        sst2_file(data, "train")
    fp32 = load_bundle(bundle, threads=threads)
    if fp32.engine != "onnxruntime":
        raise RobertaInferError(f"{bundle} is an {fp32.engine} bundle: `quantize` makes ONNX Runtime int8 bundles; for OpenVINO "
                                "int8 use `roberta-infer export --engine openvino --precision int8`")
    if fp32.precision != "fp32":
        raise RobertaInferError(f"{bundle} is already quantized ({fp32.precision})")
    if isinstance(source, Path):
        source = load_classifier(source, fairseq_data=fairseq_data)
    source = source or source_classifier(fp32.manifest["source"])
    if source is not None and comparable(source.source) != comparable(fp32.manifest["source"]):
        raise RobertaInferError(f"the source model {source.source.get('path')} is not the one {bundle} was exported from "
                                f"(sha256 {source.source.get('sha256')} vs {fp32.manifest['source'].get('sha256')})")
    shape = [size if isinstance(size, int) else None for size in fp32.manifest["input"]["shape"]]
    with output_dir(out, "bundle", force=force) as tmp:
        for path in bundle.iterdir():
            if path.is_file() and path.name not in ("model.onnx", "manifest.json"):
                shutil.copy2(path, tmp / path.name)
        if source is None:
            progress(f"the checkpoint {fp32.source.get('path')} is not here: quantizing the bundle's fused graph "
                     "(with --source CHECKPOINT the unfused re-export is quantized, ~20 % faster at batch 32)")
            graph, src = "fused bundle", bundle / "model.onnx"
            settings = replace(settings, op_types=(*settings.op_types, "Attention"))
        else:
            progress("re-exporting the model unfused (its quantized form runs faster than the fused graph's)")
            graph, src = "unfused export", tmp / "raw.onnx"
            export_onnx(source.model, source.encoder.pad, src, batch_size=shape[0], seq_len=shape[1],
                        opset=fp32.manifest["opset"], last_layer=fp32.manifest.get("last_layer", "full"))
        search = None
        if accuracy_aware:
            limit = max_accuracy_drop if heldout_max_drop is None else heldout_max_drop
            search = choose_float_nodes(fp32, src, tmp / "trial.onnx", settings, data=data, max_drop=limit, threads=threads,
                                        progress=progress)
            settings = replace(settings, float_nodes=tuple(search["float_nodes"]))
        progress(f"quantizing {', '.join(settings.op_types)} weights to {settings.weight_type} "
                 f"(per-channel {settings.per_channel}, reduce-range {settings.reduce_range}"
                 f"{f', {len(settings.float_nodes)} left fp32' if settings.float_nodes else ''})")
        quantize_onnx(src, tmp / "model.onnx", settings)
        (tmp / "raw.onnx").unlink(missing_ok=True)
        manifest = {**fp32.manifest, "precision": "int8", "model_sha256": sha256_file(tmp / "model.onnx"),
                    "fused_ops": op_counts(onnx.load(str(tmp / "model.onnx"))),
                    "quantization": {"method": "onnxruntime.quantization.quantize_dynamic", "graph": graph,
                                     **asdict(settings), "accuracy_aware": search,
                                     "fp32_model_sha256": fp32.manifest["model_sha256"],
                                     "note": "`fidelity` is the fp32 bundle's; int8's own deviation is gate.max_abs_logit_diff"}}
        write_manifest(tmp, manifest)
        int8 = load_bundle(tmp, threads=threads)
        manifest["quantization"]["gate"] = accuracy_gate(fp32, int8, data=data, max_accuracy_drop=max_accuracy_drop,
                                                         progress=progress)
        write_manifest(tmp, manifest)
    return manifest


def choose_float_nodes(fp32: BundleClassifier, src: Path, trial: Path, settings: QuantSettings, *, data: Path | None,
                       max_drop: float, threads: int | None, progress=print) -> dict:
    """`accuracy_aware.search_float_nodes` for ONNX Runtime: each trial quantizes `src` (ONNX, fp32) into `trial`
    with `settings` and the trial's nodes fp32, and runs it on the held-out set beside `fp32` (the bundle's own
    encoder). Returns the search record plus the held-out set's (`heldout`); `trial` is removed."""
    heldout = heldout_set(fp32, data)
    progress(f"accuracy-aware: finding the MatMuls to leave fp32, on {len(heldout.sentences)} held-out SST-2 train "
             f"sentences fp32 gets right (limit {max_drop:g} points lost)")
    reference = classify(fp32, heldout.sentences)

    def measure(float_nodes: list[str]) -> dict:
        quantize_onnx(src, trial, replace(settings, float_nodes=tuple(float_nodes)))
        candidate = BundleClassifier(make_session(trial, threads=threads), fp32.encoder, fp32.class_names, fp32.manifest)
        return heldout_measure(heldout, reference, classify(candidate, heldout.sentences))

    groups, sizes = matmul_groups(onnx.load(str(src)), settings.op_types)
    try:
        return {**search_float_nodes(groups, sizes, measure, max_drop=max_drop, progress=progress), "heldout": heldout.record}
    finally:
        trial.unlink(missing_ok=True)


def ort_int8_bundle(classifier: RobertaClassifier, fp32: Path, out: Path, *, data: Path | None = None,
                    max_accuracy_drop: float = 0.3, threads: int | None = None, progress=print, **options) -> dict:
    """ONNX Runtime int8 from a PyTorch model, the one recipe (`run`'s fast row and `compare` use it): `classifier`
    exported fp32 with a dynamic shape into the bundle directory `fp32` (marked synthetic if the model is), then its
    unfused re-export dynamically quantized into the bundle directory `out` behind the SST-2 dev gate
    (`quantize_bundle` with `source=classifier` and `options`: settings, accuracy_aware, heldout_max_drop). Both
    directories are replaced if there.

    Returns `out`'s manifest; raises RobertaInferError when the export's checks or the gate refuse (`out` is then
    not written).
    """
    mark_synthetic(build_bundle(classifier, fp32, threads=threads, progress=progress, force=True), fp32)
    return quantize_bundle(fp32, out, source=classifier, data=data, max_accuracy_drop=max_accuracy_drop, threads=threads,
                           progress=progress, force=True, **options)


def source_classifier(recorded: dict) -> RobertaClassifier | None:
    """The model a bundle's manifest names as its source: a synthetic one rebuilt from its seed, else re-loaded
    (None when it is not where the manifest says)."""
    if recorded.get("kind") == "synthetic":
        return synthetic_classifier(recorded["name"], seed=recorded["seed"])
    path = recorded.get("path")
    if not path or not Path(path).exists():
        return None
    return load_classifier(Path(path))


def comparable(source: dict) -> dict:
    """A source record without its path: the same checkpoint may be found elsewhere."""
    return {key: value for key, value in source.items() if key != "path"}
