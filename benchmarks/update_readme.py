"""Regenerate benchmarks/README.md's performance section from measured results, so no figure there is typed by hand.

    python benchmarks/update_readme.py [--results DIR] [--compare F] [--bench F …] [--quantize MANIFEST …] [--readme README.md]

Replaces what lies between `<!-- performance:start … -->` and `<!-- performance:end -->` (markers kept) with
the `compare` table, the int8 gates, and the `bench` grids (fp32, bf16, int8 side by side with the reference's Ascend
310P3 figures, then each grid's plot and full table), each naming the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from roberta_infer.bench import label, side_by_side
from roberta_infer.bench import markdown as bench_markdown
from roberta_infer.compare_report import markdown as compare_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTION = re.compile(r"(<!-- performance:start[^>]*-->\n).*?(<!-- performance:end -->)", re.S)


def quantization_markdown(manifest: dict) -> str:
    """The int8 gate of a quantized bundle's manifest (ONNX Runtime dynamic or NNCF static), in one paragraph."""
    q, gate = manifest["quantization"], manifest["quantization"]["gate"]
    if q["method"] == "nncf.quantize":
        how = (f"OpenVINO + NNCF {q['nncf']} static int8, calibrated on {q['calibration']['sentences']} SST-2 train "
               f"sentences")
    else:
        how = (f"ONNX Runtime dynamic int8: weights {q['weight_type']}, per-channel {q['per_channel']}, reduce-range "
               f"{q['reduce_range']}, ops {', '.join(q['op_types'])}")
    return (f"int8 gate ({Path(manifest['source'].get('path', 'model')).name}, {gate['data']['samples']} SST-2 dev sentences), "
            f"{how}; label agreement with fp32 {100 * gate['label_agreement']:.2f} %, accuracy "
            f"{100 * gate['accuracy_fp32']:.2f} % → {100 * gate['accuracy_int8']:.2f} % ({-gate['accuracy_drop_pp']:+.2f} pp, "
            f"limit −{gate['max_accuracy_drop_pp']:g} pp).\n")


def section(compare: Path | None, benches: list[Path], quantize: list[Path], readme_dir: Path) -> str:
    parts = []
    if compare is not None:
        parts += ["### End to end (`roberta-infer compare`)\n", compare_markdown(json.loads(compare.read_text()))]
    parts += [quantization_markdown(json.loads(path.read_text())) for path in quantize]
    results = [json.loads(bench.read_text()) for bench in benches]
    if results:
        parts += ["### Model calls by shape (`roberta-infer bench`)\n",
                  f"seq/s = batch size / median latency of full-length rows, {results[0]['model']}, "
                  f"{results[0]['threads']} threads on {results[0]['machine']['cpu']}.\n", side_by_side(results)]
    for bench, result in zip(benches, results):
        png = bench.with_suffix(".png")
        if png.is_file():
            parts += [f"![{label(result)} throughput vs batch size]({png.resolve().relative_to(readme_dir.resolve())})\n"]
        parts += [f"<details><summary>{label(result)}: all {len(result['cells'])} cells (batch × seq) with p50 and p99 "
                  "latency</summary>\n", bench_markdown(result), "</details>\n"]
    parts += ["Reproduce: `bash benchmarks/run.sh` on a quiet machine (it rewrites `benchmarks/results/` and this section).\n"]
    return "\n".join(parts)


def update(readme: Path, text: str) -> None:
    content = readme.read_text()
    if not SECTION.search(content):
        raise SystemExit(f"{readme} has no <!-- performance:start --> … <!-- performance:end --> section")
    tmp = readme.with_name(readme.name + ".partial")
    tmp.write_text(SECTION.sub(lambda m: m.group(1) + text + m.group(2), content, count=1))
    tmp.replace(readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where run.sh wrote compare.json, bench*.json and *int8_manifest.json (default benchmarks/results)")
    parser.add_argument("--compare", type=Path, help="compare --json output (default: RESULTS/compare.json if there)")
    parser.add_argument("--bench", type=Path, nargs="*",
                        help="bench JSON files, in table order (a .png of the same name beside one is shown); "
                             "default: RESULTS/bench*.json, fp32 first")
    parser.add_argument("--quantize", type=Path, nargs="*", help="int8 bundles' manifest.json (default: RESULTS/*int8_manifest.json)")
    parser.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    args = parser.parse_args(argv)
    results = args.results
    compare = args.compare or (results / "compare.json" if (results / "compare.json").is_file() else None)
    benches = args.bench if args.bench is not None else sorted(results.glob("bench*.json"), key=bench_order)
    quantize = args.quantize if args.quantize is not None else sorted(results.glob("*int8_manifest.json"))
    update(args.readme, section(compare, benches, quantize, args.readme.parent))
    print(f"updated {args.readme}")


def bench_order(path: Path) -> tuple[int, str]:
    """fp32, then bf16, then int8 (ONNX Runtime before OpenVINO within each)."""
    precision = next((p for p in ("bf16", "int8") if p in path.stem), "fp32")
    return ["fp32", "bf16", "int8"].index(precision), path.stem.replace("_ov", "~")


if __name__ == "__main__":
    main()
