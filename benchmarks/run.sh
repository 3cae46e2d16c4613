#!/usr/bin/env bash
# The performance benchmark, for a quiet machine: `compare` (peers end to end on SST-2 dev), the int8 gate on the
# default model, and `bench` grids of a synthetic roberta-base in fp32 and int8. Writes benchmarks/results/ and
# then README's performance section (benchmarks/update_readme.py). About 20 minutes on 2 cores.
#   bash benchmarks/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

roberta-infer compare --repeats 2 --work-dir "$WORK/compare" --json "$OUT/compare.json"

MODEL=$(python -c 'from roberta_infer.default import default_model_dir; print(default_model_dir())')
roberta-infer export --model "$MODEL" --out "$WORK/default" 2>/dev/null
roberta-infer quantize --model "$WORK/default" --out "$WORK/default-int8"
cp "$WORK/default-int8/manifest.json" "$OUT/int8_manifest.json"

roberta-infer export --synthetic roberta-base --out "$WORK/base" 2>/dev/null
roberta-infer quantize --model "$WORK/base" --out "$WORK/base-int8" --max-accuracy-drop 100  # random weights: speed only
for form in base base-int8; do
  roberta-infer bench --model "$WORK/$form" --out "$WORK/bench-$form"
done
for ext in json md png; do
  cp "$WORK/bench-base/bench.$ext" "$OUT/bench.$ext"
  cp "$WORK/bench-base-int8/bench.$ext" "$OUT/bench_int8.$ext"
done

python benchmarks/update_readme.py
