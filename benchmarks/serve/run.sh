#!/usr/bin/env bash
# The serving benchmark, for a quiet machine. Offline `infer` at batch 32 on SST-2 dev, then `serve` under
# `loadtest`, then README's serving section (update_readme.py).
#   bash benchmarks/serve/run.sh                the shipped model, into benchmarks/serve/: one text per request at
#                                               1, 8 and 64 clients (loadtest.json), 8 per request at 64
#                                               (loadtest-8.json), the same two against ceiling.py's zero-cost model
#                                               (ceiling.json, ceiling-8.json), and a fresh server's RSS after 1,000
#                                               and 10,000 requests (memory-1000.json, memory-10000.json)
#   bash benchmarks/serve/run.sh roberta-base   roberta-base's shape (synthetic weights: speed only), into
#                                               benchmarks/serve/roberta-base/: 64 clients, 1 and 8 texts per request
#   bash benchmarks/serve/run.sh peers          ours against Triton (PyTriton) and Ray Serve on the default model
#                                               (peers.py, venv from peers_venv.sh), then soak.py (SOAK_MINUTES,
#                                               default 20) and faults.py, into benchmarks/serve/peers/
#   bash benchmarks/serve/run.sh peers-roberta-base   the peers at roberta-base's shape (64 clients and fixed rates)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHAPE=${1:-default}
PORT=${PORT:-8765}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
SERVER=
stop_server() { if [ -n "$SERVER" ]; then kill -TERM "$SERVER"; wait "$SERVER"; SERVER=; fi; }
trap 'stop_server; rm -rf "$WORK"' EXIT
start_server() { "$@" 2>"$WORK/serve.log" & SERVER=$!; }

BUNDLE=$WORK/bundle
case $SHAPE in
  peers|peers-roberta-base)
    PEERS_PYTHON=$(PROJECT_PY="$(command -v python)" bash benchmarks/serve/peers_venv.sh)
    if [ "$SHAPE" = peers ]; then
      roberta-infer export --out "$BUNDLE" 2>/dev/null
      python benchmarks/serve/peers.py --model "$BUNDLE" --peers-python "$PEERS_PYTHON"
      python benchmarks/serve/soak.py --model "$BUNDLE" --minutes "${SOAK_MINUTES:-20}"
      python benchmarks/serve/faults.py --model "$BUNDLE"
    else
      roberta-infer export --synthetic roberta-base --out "$BUNDLE" 2>/dev/null
      python benchmarks/serve/peers.py --model "$BUNDLE" --peers-python "$PEERS_PYTHON" --clients 8,64 --passes 1 \
        --parallel-calls 1 --out benchmarks/serve/peers/roberta-base.json --plot benchmarks/serve/peers/roberta-base.png
    fi
    python benchmarks/serve/update_readme.py
    exit 0 ;;
esac
case $SHAPE in
  default)
    OUT=benchmarks/serve; REQUESTS=${REQUESTS:-2000}; REQUESTS_8=$REQUESTS; LOOP=3; LEVELS=1,8,64
    SERVE_ARGS=${SERVE_ARGS:---parallel-calls 2}  # the small default model gains from it (see `serve --help`)
    roberta-infer export --out "$BUNDLE" 2>/dev/null ;;
  roberta-base)
    OUT=benchmarks/serve/roberta-base; REQUESTS=${REQUESTS:-400}; REQUESTS_8=$((REQUESTS / 4)); LOOP=1; LEVELS=64
    SERVE_ARGS=${SERVE_ARGS:-}
    roberta-infer export --synthetic roberta-base --out "$BUNDLE" 2>/dev/null ;;
  *) echo "usage: bash benchmarks/serve/run.sh [default|roberta-base|peers|peers-roberta-base]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
roberta-infer prepare --model "$BUNDLE" --split dev --seq-len 70 --out "$WORK/prepared" >/dev/null
roberta-infer infer --model "$BUNDLE" --input "$WORK/prepared" --out "$WORK/results" --batch-size 32 --warmup 5 --loop $LOOP
cp "$WORK/results/summary.json" "$OUT/offline.json"

load() {  # load NAME: one text per request at $LEVELS, then 8 per request at 64 clients
  roberta-infer loadtest --url "$URL" --concurrency "$LEVELS" --requests "$REQUESTS" --json "$OUT/$1.json"
  roberta-infer loadtest --url "$URL" --concurrency 64 --requests "$REQUESTS_8" --texts-per-request 8 \
    --json "$OUT/$1-8.json"
}
# shellcheck disable=SC2086  # SERVE_ARGS is a list of arguments
start_server roberta-infer serve --model "$BUNDLE" --port "$PORT" $SERVE_ARGS
load loadtest
stop_server

if [ "$SHAPE" = default ]; then
  # shellcheck disable=SC2086
  start_server python benchmarks/serve/ceiling.py --model "$BUNDLE" --port "$PORT" $SERVE_ARGS
  LEVELS=64
  load ceiling
  stop_server
  # shellcheck disable=SC2086
  start_server roberta-infer serve --model "$BUNDLE" --port "$PORT" $SERVE_ARGS
  roberta-infer loadtest --url "$URL" --concurrency 64 --requests 1000 --json "$OUT/memory-1000.json"
  roberta-infer loadtest --url "$URL" --concurrency 64 --requests 9000 --json "$OUT/memory-10000.json"
  stop_server
fi
python benchmarks/serve/update_readme.py
