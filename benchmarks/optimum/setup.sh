#!/usr/bin/env bash
# Create the two *separate* virtual environments that run Hugging Face Optimum's pipelines as peers in
# `roberta-infer compare --optimum-venvs DIR` (Optimum is never a roberta-infer dependency: its pins clash with ours,
# optimum-intel 2.2.0 wants transformers<5.6, optimum-onnx 0.1.0 transformers<4.58 and optimum~=2.1).
#
#   benchmarks/optimum/setup.sh                 # -> /work/venvs/optimum-intel, /work/venvs/optimum-onnx
#   OPTIMUM_VENVS=/path benchmarks/optimum/setup.sh
#
# Environment:
#   OPTIMUM_VENVS    folder of the two venvs (default: /work/venvs)
#   PYTHON           interpreter used to create them (default: python3; tested with 3.11)
#   TORCH_INDEX_URL  optional extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu
set -euo pipefail

ROOT="${OPTIMUM_VENVS:-/work/venvs}"
PYTHON="${PYTHON:-python3}"
TORCH=("torch==2.13.0")
[[ -n "${TORCH_INDEX_URL:-}" ]] && TORCH=(--extra-index-url "$TORCH_INDEX_URL" "${TORCH[@]}")

make_venv() {  # NAME PACKAGE... : one venv, torch first (CPU is enough), then Optimum's package with its extra
  local venv="$ROOT/$1"; shift
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "${TORCH[@]}"
  "$venv/bin/python" -m pip install -q "$@" "${TORCH[@]}"  # torch named again, so that pip keeps it
}

start=$SECONDS
mkdir -p "$ROOT"
# optimum-intel requires torchvision (for its vision models only): the build of torch's release (0.28.0) keeps pip
# from pulling a newer torch built for CUDA, and is then removed, its compiled ops not matching the CPU torch
# (transformers' pipeline would fail importing it).
make_venv optimum-intel "optimum-intel[openvino]==2.2.0" "torchvision==0.28.0"
"$ROOT/optimum-intel/bin/python" -m pip uninstall -q -y torchvision
make_venv optimum-onnx "optimum-onnx[onnxruntime]==0.1.0"
"$ROOT/optimum-intel/bin/python" -c 'import optimum.intel, openvino, nncf, transformers; print("optimum-intel", openvino.__version__, "nncf", nncf.__version__, "transformers", transformers.__version__)'
"$ROOT/optimum-onnx/bin/python" -c 'import optimum.onnxruntime, onnxruntime, transformers; print("optimum-onnx: onnxruntime", onnxruntime.__version__, "transformers", transformers.__version__)'
echo "Optimum venvs ready in $ROOT ($((SECONDS - start)) s): roberta-infer compare --optimum-venvs $ROOT --modes ..."
