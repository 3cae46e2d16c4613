"""`roberta-infer info`: what a bundle or checkpoint is, without running it.

A bundle is described from its manifest (no runtime session is made, so it is instant even for roberta-base);
a checkpoint is loaded as `predict` would load it. Either way the answer is one dict, shown as text or JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import RobertaInferError
from .runtime import engine_and_precision
from .verify import OLDER_BUNDLE, verify_files


def describe(path: Path, *, fairseq_data: Path | None = None, bpe_dir: Path | None = None) -> dict:
    """{"kind": "bundle" | "fairseq" | "huggingface", "architecture", "class_names", …} for `path`.

    Raises RobertaInferError when `path` does not exist or is neither a bundle nor a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise RobertaInferError(f"{path} not found")
    if (path / "manifest.json").is_file():
        return describe_bundle(path)
    from .checkpoint import load_classifier  # deferred: torch, needed for a checkpoint only

    classifier = load_classifier(path, fairseq_data=fairseq_data, bpe_dir=bpe_dir)
    return {"kind": classifier.source.get("kind"), "path": str(path), "source": classifier.source,
            "class_names": classifier.class_names, "max_tokens": classifier.max_tokens, "architecture": classifier.architecture,
            "parameters": sum(p.numel() for p in classifier.model.parameters())}


def describe_bundle(directory: Path) -> dict:
    """A bundle's manifest, summarised: engine, precision, shapes, fused ops, fidelity, gate, source; and whether its
    files verify (`verify.verify_files`: "verified" is "yes", "partly" for an older bundle that lists only its model
    files' sha256, or "no", with "verification" saying what was checked or which file failed)."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RobertaInferError(f"{directory / 'manifest.json'} is not valid JSON: {e}") from None
    engine, precision = engine_and_precision(manifest)
    try:
        checked = verify_files(directory, manifest)
        verified = "partly" if checked == OLDER_BUNDLE else "yes"
    except RobertaInferError as e:
        checked, verified = str(e), "no"
    quantization = manifest.get("quantization") or {}
    gate = manifest.get("gate") or quantization.get("gate")
    return {
        "kind": "bundle", "path": str(directory), "format": manifest.get("format"),
        "roberta_infer": manifest.get("roberta_infer"),
        "engine": engine, "precision": precision,
        "class_names": manifest.get("class_names"), "max_tokens": manifest.get("max_tokens"),
        "architecture": manifest.get("architecture"), "input": manifest.get("input"), "output": manifest.get("output"),
        "opset": manifest.get("opset"), "fused_ops": manifest.get("fused_ops"),
        "last_layer": manifest.get("last_layer", "full"),  # a manifest without it is an export of the whole model
        "fidelity_max_abs_diff": (manifest.get("fidelity") or {}).get("max_abs_diff"),
        "gate": gate, "source": manifest.get("source"), "model_sha256": manifest.get("model_sha256"),
        "synthetic": bool(manifest.get("synthetic")), "verified": verified, "verification": checked,
    }


def as_text(info: dict) -> str:
    """`key: value` lines for a terminal, in a fixed order; absent fields are left out."""
    arch = info.get("architecture") or {}
    lines = [("kind", info["kind"]), ("path", info["path"])]
    if info["kind"] == "bundle":
        lines += [("engine", info["engine"]), ("precision", info["precision"])]
    lines += [("architecture", ", ".join(f"{k} {v}" for k, v in arch.items())),
              ("classes", ", ".join(info.get("class_names") or [])), ("max tokens", info.get("max_tokens"))]
    if "parameters" in info:
        lines.append(("parameters", f"{info['parameters']:,}"))
    if info["kind"] == "bundle":
        shape = lambda t: "" if not t else f"{t['name']} {t['dtype']} {t['shape']}"  # noqa: E731
        lines += [("input", shape(info["input"])), ("output", shape(info["output"])), ("opset", info["opset"]),
                  ("last layer", info["last_layer"]),
                  ("fused ops", ", ".join(f"{k} {v}" for k, v in (info["fused_ops"] or {}).items() if v)),
                  ("fidelity", None if info["fidelity_max_abs_diff"] is None
                   else f"max |Δlogit| {info['fidelity_max_abs_diff']:.1e} vs PyTorch")]
        gate = info.get("gate")
        if gate:
            before, after = gate.get("accuracy_fp32"), gate.get("accuracy_int8", gate.get("accuracy"))
            lines.append(("gate", ", ".join(part for part in (
                None if before is None or after is None else f"SST-2 dev accuracy {100 * before:.2f} % → {100 * after:.2f} %",
                None if gate.get("label_agreement") is None else f"label agreement {100 * gate['label_agreement']:.2f} %",
            ) if part)))
        lines.append(("model sha256", info["model_sha256"]))
        lines.append(("verified", f"{info['verified']}: {info['verification']}"))
    source = info.get("source") or {}
    lines.append(("source", " ".join(str(source[k]) for k in ("kind", "path", "name") if source.get(k))))
    lines.append(("source sha256", source.get("sha256")))
    return "\n".join(f"{key:<14} {value}" for key, value in lines if value not in (None, ""))
