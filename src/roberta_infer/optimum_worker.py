"""Run one Hugging Face Optimum pipeline on batches of texts and time it: `compare`'s Optimum peers.

Run by `optimum_peers.OptimumPeer` with an Optimum venv's python (never imported by roberta-infer, whose transformers
Optimum does not accept):

    VENV/bin/python optimum_worker.py REQUEST.json RESULT.json

REQUEST: {"backend": "openvino" | "onnxruntime", "precision": "fp32" | "int8", "model_dir": a Hugging Face folder,
"export_dir": where Optimum's export is kept (made on first use), "threads": int, "repeats": int, "batches": [[text]],
"calibration": [text] (OpenVINO int8 only)}. RESULT: {"seconds": [s per pass], "call_seconds": [s per batch, fastest
pass], "logits": [[float]] (batch after batch), "versions": {package: version}, "export": how the model was made}.
Each pass calls `pipeline("text-classification")` once per batch (batch_size = the batch's length, raw logits:
`function_to_apply="none"`, `top_k=None`), after one untimed call on the first batch.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MADE = "made.json"


def export_openvino(model_dir: Path, out: Path, precision: str, calibration: list[str], threads: int) -> str:
    """Optimum-Intel's export (`OVModelForSequenceClassification.from_pretrained(..., export=True)`), int8 through
    `OVQuantizer` static int8 (`OVQuantizationConfig()`) calibrated on `calibration`, saved in `out`."""
    import nncf
    from optimum.intel import OVConfig, OVModelForSequenceClassification, OVQuantizationConfig, OVQuantizer
    from transformers import AutoTokenizer

    model = OVModelForSequenceClassification.from_pretrained(model_dir, export=True, ov_config={"INFERENCE_NUM_THREADS": threads})
    if precision == "fp32":
        model.save_pretrained(out)
        return "OVModelForSequenceClassification export=True"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    samples = nncf.Dataset([dict(tokenizer(text, return_tensors="np")) for text in calibration])
    OVQuantizer.from_pretrained(model).quantize(calibration_dataset=samples, save_directory=out,
                                                ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    return f"OVQuantizer static int8 (OVQuantizationConfig defaults), {len(calibration)} calibration texts"


def export_onnxruntime(model_dir: Path, out: Path, precision: str) -> str:
    """Optimum-ONNX's export (`ORTModelForSequenceClassification.from_pretrained(..., export=True)`), int8 through
    `ORTQuantizer` with `AutoQuantizationConfig.avx512_vnni(is_static=False)`, saved in `out` as model.onnx."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTModelForSequenceClassification, ORTQuantizer

    model = ORTModelForSequenceClassification.from_pretrained(model_dir, export=True)
    if precision == "fp32":
        model.save_pretrained(out)
        return "ORTModelForSequenceClassification export=True"
    fp32 = out.with_name(out.name + "-fp32")
    model.save_pretrained(fp32)
    ORTQuantizer.from_pretrained(fp32).quantize(AutoQuantizationConfig.avx512_vnni(is_static=False), save_dir=out,
                                                file_suffix=None)
    for name in ("config.json",):
        (out / name).write_bytes((fp32 / name).read_bytes())
    return "ORTQuantizer AutoQuantizationConfig.avx512_vnni(is_static=False)"


def load(request: dict):
    """The pipeline of the request's model, exported into export_dir unless already there."""
    from transformers import AutoTokenizer, pipeline

    model_dir, out = Path(request["model_dir"]), Path(request["export_dir"])
    backend, precision, threads = request["backend"], request["precision"], request["threads"]
    if not (out / MADE).is_file():
        print(f"optimum: exporting {model_dir} ({backend} {precision}) to {out}", file=sys.stderr)
        how = (export_openvino(model_dir, out, precision, request["calibration"], threads) if backend == "openvino"
               else export_onnxruntime(model_dir, out, precision))
        (out / MADE).write_text(json.dumps({"export": how}))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if backend == "openvino":
        from optimum.intel import OVModelForSequenceClassification

        model = OVModelForSequenceClassification.from_pretrained(out, ov_config={"INFERENCE_NUM_THREADS": str(threads)})
    else:
        import onnxruntime
        from optimum.onnxruntime import ORTModelForSequenceClassification

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        model = ORTModelForSequenceClassification.from_pretrained(out, session_options=options)
    made = json.loads((out / MADE).read_text())["export"]
    return pipeline("text-classification", model=model, tokenizer=tokenizer), made


def run_pass(classify, batches: list[list[str]], labels: list[str]) -> tuple[float, list[float], list[list[float]]]:
    """One call per batch: the seconds of the pass and of each call, and the logits in the model's label order."""
    calls, logits = [], []
    start = time.perf_counter()
    for batch in batches:
        called = time.perf_counter()
        out = classify(batch, batch_size=len(batch), top_k=None, function_to_apply="none")
        calls.append(time.perf_counter() - called)
        logits += [[{row["label"]: row["score"] for row in scores}[label] for label in labels] for scores in out]
    return time.perf_counter() - start, calls, logits


def installed() -> dict:
    """The versions of the packages that decide what this worker measures, those installed here."""
    names = ("optimum", "optimum-intel", "optimum-onnx", "transformers", "openvino", "nncf", "onnxruntime", "torch")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    import torch

    torch.set_num_threads(request["threads"])
    classify, made = load(request)
    config = classify.model.config
    labels = [config.id2label[i] for i in range(config.num_labels)]
    batches = request["batches"]
    run_pass(classify, batches[:1], labels)
    passes = [run_pass(classify, batches, labels) for _ in range(request["repeats"])]
    fastest = min(passes, key=lambda p: p[0])
    versions = installed()
    print(f"optimum: {made}; " + ", ".join(f"{name} {v}" for name, v in versions.items()), file=sys.stderr)
    Path(result_path).write_text(json.dumps({"seconds": [p[0] for p in passes], "call_seconds": fastest[1],
                                             "logits": fastest[2], "versions": versions, "export": made}))


if __name__ == "__main__":
    main(*sys.argv[1:])
