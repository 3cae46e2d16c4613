"""Regenerate README.md's performance section from measured results, so no figure there is typed by hand.

    python benchmarks/update_readme.py [--compare F] [--bench F …] [--quantize MANIFEST] [--readme README.md]

Replaces what lies between `<!-- performance:start … -->` and `<!-- performance:end -->` (markers kept) with
the `compare` table, the `bench` table and plot, and the int8 gate, each naming the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from roberta_infer.bench import markdown as bench_markdown
from roberta_infer.compare import markdown as compare_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTION = re.compile(r"(<!-- performance:start[^>]*-->\n).*?(<!-- performance:end -->)", re.S)


def quantization_markdown(manifest: dict) -> str:
    """The int8 gate of a quantized bundle's manifest, in one paragraph."""
    q, gate = manifest["quantization"], manifest["quantization"]["gate"]
    return (f"int8 gate ({Path(manifest['source'].get('path', 'model')).name}, {gate['data']['samples']} SST-2 dev sentences): "
            f"weights {q['weight_type']}, per-channel {q['per_channel']}, reduce-range {q['reduce_range']}, ops "
            f"{', '.join(q['op_types'])}; label agreement with fp32 {100 * gate['label_agreement']:.2f} %, accuracy "
            f"{100 * gate['accuracy_fp32']:.2f} % → {100 * gate['accuracy_int8']:.2f} % ({-gate['accuracy_drop_pp']:+.2f} pp, "
            f"limit −{gate['max_accuracy_drop_pp']:g} pp).\n")


def section(compare: Path | None, benches: list[Path], quantize: Path | None, readme_dir: Path) -> str:
    parts = []
    if compare is not None:
        parts += ["### End to end (`roberta-infer compare`)\n", compare_markdown(json.loads(compare.read_text()))]
    if quantize is not None:
        parts += [quantization_markdown(json.loads(quantize.read_text()))]
    for bench in benches:
        result, png = json.loads(bench.read_text()), bench.with_suffix(".png")
        parts += [f"### Model calls by shape, {result['quantization']} (`roberta-infer bench`)\n"]
        if png.is_file():
            parts += [f"![{result['quantization']} throughput vs batch size]({png.resolve().relative_to(readme_dir.resolve())})\n"]
        parts += [f"<details><summary>all {len(result['cells'])} cells (batch × seq), {result['threads']} threads on "
                  f"{result['machine']['cpu']}, with the reference's Ascend 310P3 figures</summary>\n", bench_markdown(result),
                  "</details>\n"]
    parts += ["Reproduce: `bash benchmarks/run.sh` on a quiet machine (it rewrites `benchmarks/results/` and this section).\n"]
    return "\n".join(parts)


def update(readme: Path, text: str) -> None:
    content = readme.read_text()
    if not SECTION.search(content):
        raise SystemExit(f"{readme} has no <!-- performance:start --> … <!-- performance:end --> section")
    readme.write_text(SECTION.sub(lambda m: m.group(1) + text + m.group(2), content, count=1))


def _found(name: str) -> Path | None:
    """A committed result, if it has been measured."""
    return RESULTS / name if (RESULTS / name).is_file() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, default=_found("compare.json"), help="compare --json output")
    parser.add_argument("--bench", type=Path, nargs="*", default=sorted(RESULTS.glob("bench*.json")),
                        help="bench JSON files (a .png of the same name beside one is shown); default: results/bench*.json")
    parser.add_argument("--quantize", type=Path, default=_found("int8_manifest.json"), help="an int8 bundle's manifest.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    update(args.readme, section(args.compare, args.bench, args.quantize, args.readme.parent))
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
