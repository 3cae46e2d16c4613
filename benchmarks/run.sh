#!/usr/bin/env bash
# The performance benchmark, for a quiet machine: `compare` (peers as their users run them, the same engines with our
# batching, and ours, end to end on SST-2 dev), the int8 gates on the default model (ONNX Runtime dynamic, OpenVINO +
# NNCF static), and `bench` grids of a synthetic roberta-base on each engine and precision. Writes benchmarks/results/
# and then benchmarks/README.md's performance section (benchmarks/update_readme.py). About 40 minutes on 2 cores.
#   bash benchmarks/run.sh                 # everything
#   LIMIT=64 OUT=/tmp/r README=/tmp/r/README.md bash benchmarks/run.sh   # a quick check: 64 texts, one bench cell each
# SST-2 and gpt2_bpe/ are read from $ROBERTA_INFER_DATA (or ./data). compare has Hugging Face Optimum's pipelines among
# its peers where $ROBERTA_INFER_OPTIMUM_VENVS names the venvs benchmarks/optimum/setup.sh made (else they are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
if [ -n "${LIMIT:-}" ]; then
  COMPARE=(--limit "$LIMIT" --repeats 1); GRID=(--batch-sizes 32 --seq-lens 70 --min-time 0 --warmup 1)
else
  COMPARE=(--repeats 3); GRID=()
fi
OPENVINO=$(python -c 'import importlib.util; print(int(importlib.util.find_spec("openvino") is not None))')

# written beside the work, then copied: $OUT holds `bench` results, and no command writes inside another's output
roberta-infer compare "${COMPARE[@]}" --work-dir "$WORK/compare" --json "$WORK/compare.json"
cp "$WORK/compare.json" "$OUT/compare.json"

MODEL=$(python -c 'from roberta_infer.default import default_model_dir; print(default_model_dir())')
roberta-infer export --model "$MODEL" --out "$WORK/default" 2>/dev/null
roberta-infer quantize --model "$WORK/default" --out "$WORK/default-int8"
cp "$WORK/default-int8/manifest.json" "$OUT/int8_manifest.json"
if [ "$OPENVINO" = 1 ]; then
  roberta-infer export --model "$MODEL" --engine openvino --precision int8 --out "$WORK/default-ov-int8"
  cp "$WORK/default-ov-int8/manifest.json" "$OUT/ov_int8_manifest.json"
fi

# bench: synthetic roberta-base (random weights: speed only, so no accuracy gate) on each engine and precision
roberta-infer export --synthetic roberta-base --out "$WORK/base" 2>/dev/null
roberta-infer quantize --model "$WORK/base" --out "$WORK/base-int8" --max-accuracy-drop 100
FORMS=(base base-int8)
if [ "$OPENVINO" = 1 ]; then
  for precision in fp32 bf16 int8; do
    roberta-infer export --synthetic roberta-base --engine openvino --precision "$precision" --max-accuracy-drop 100 \
      --out "$WORK/base-ov-$precision" 2>/dev/null
    FORMS+=("base-ov-$precision")
  done
fi
for form in "${FORMS[@]}"; do
  roberta-infer bench --model "$WORK/$form" "${GRID[@]}" --out "$WORK/bench-$form"
  name=bench${form#base}  # bench, bench-int8, bench-ov-fp32, …
  for ext in json md png; do cp "$WORK/bench-$form/bench.$ext" "$OUT/${name//-/_}.$ext"; done
done

python benchmarks/update_readme.py --results "$OUT" --readme "${README:-benchmarks/README.md}"
