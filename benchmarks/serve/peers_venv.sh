#!/usr/bin/env bash
# The serving peers' own virtual environment (never a dependency of roberta-infer): PyTriton (its bundled
# tritonserver, the dynamic batcher) and Ray Serve (`@serve.batch`). PyTriton pins numpy < 2, which ours does not
# allow, hence a separate venv. Our own code runs there from src/ (PYTHONPATH), on the same ONNX Runtime, tokenizers
# and onnx versions as the project's venv, so every server runs the same engine on the same bundle.
#   bash benchmarks/serve/peers_venv.sh [VENV]      default /work/venvs/serve-peers; prints the venv's python
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-${PEERS_VENV:-/work/venvs/serve-peers}}
PROJECT_PY=${PROJECT_PY:-.venv/bin/python}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# the engine's versions as the project's venv has them
pins=$("$PROJECT_PY" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("onnxruntime", "onnx", "tokenizers", "ray")))
PY
)
ray_pin=${pins##*ray==}
# shellcheck disable=SC2086  # pins is a list of requirements
"$VENV/bin/pip" install -q nvidia-pytriton "ray[serve]==$ray_pin" ${pins% ray==*} aiohttp >&2
echo "$VENV/bin/python"
