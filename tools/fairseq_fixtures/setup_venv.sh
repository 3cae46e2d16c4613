#!/usr/bin/env bash
# Create the *separate* virtual environment with the real fairseq, used only to
# regenerate tests/fixtures/fairseq (fairseq is never a roberta-infer dependency).
#
#   tools/fairseq_fixtures/setup_venv.sh                  # -> .venv-fairseq/
#   FAIRSEQ_VENV=/path/to/venv tools/fairseq_fixtures/setup_venv.sh
#
# Environment:
#   FAIRSEQ_VENV     venv path (default: <repo>/.venv-fairseq, git-ignored)
#   PYTHON           interpreter used to create it (default: python3; tested with 3.11)
#   TORCH_INDEX_URL  optional extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${FAIRSEQ_VENV:-$REPO_ROOT/.venv-fairseq}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install)

# torch first (CPU is enough), then fairseq (the maintained 0.12 fork on PyPI).
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
  "${PIP[@]}" --extra-index-url "$TORCH_INDEX_URL" "torch==2.13.0"
else
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" "fairseq-fixed==0.12.3.1"

"$VENV/bin/python" -c 'import fairseq, torch; print("fairseq", fairseq.__version__, "torch", torch.__version__)'
echo "fairseq venv ready: $VENV"
echo "next: $VENV/bin/python tools/fairseq_fixtures/make_fixtures.py --shared /work/shared/data"
