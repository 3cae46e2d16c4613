#!/usr/bin/env bash
# The serving benchmark, for a quiet machine: offline `infer` at batch 32 on SST-2 dev, then `serve` under
# `loadtest` at 1, 8 and 64 clients sending one text per request, and at 64 clients sending 8, then a fresh server's
# RSS after 1,000 and after 10,000 requests. Writes offline.json, loadtest.json, loadtest-8.json, memory-1000.json,
# memory-10000.json here, then README's serving section.
#   bash benchmarks/serve/run.sh [MODEL]     (a checkpoint or HF folder; default: the shipped model)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=benchmarks/serve
PORT=${PORT:-8765}
REQUESTS=${REQUESTS:-2000}
SEQ_LEN=${SEQ_LEN:-70}  # the reference's length; a model with fewer positions needs less
SERVE_ARGS=${SERVE_ARGS:---parallel-calls 2}  # the small default model gains from it (see `serve --help`)
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
SERVER=
stop_server() { if [ -n "$SERVER" ]; then kill -TERM "$SERVER"; wait "$SERVER"; SERVER=; fi; }
trap 'stop_server; rm -rf "$WORK"' EXIT

MODEL=${1:-$(python -c 'from roberta_infer.default import default_model_dir; print(default_model_dir())')}
BUNDLE=$WORK/bundle
roberta-infer export --model "$MODEL" --out "$BUNDLE" 2>/dev/null
roberta-infer prepare --model "$MODEL" --split dev --seq-len "$SEQ_LEN" --out "$WORK/prepared" >/dev/null
roberta-infer infer --model "$BUNDLE" --input "$WORK/prepared" --out "$WORK/results" --batch-size 32 --warmup 5 --loop 3
cp "$WORK/results/summary.json" "$OUT/offline.json"

roberta-infer serve --model "$BUNDLE" --port "$PORT" $SERVE_ARGS 2>"$WORK/serve.log" & SERVER=$!
roberta-infer loadtest --url "$URL" --concurrency 1,8,64 --requests "$REQUESTS" --json "$OUT/loadtest.json"
roberta-infer loadtest --url "$URL" --concurrency 64 --requests "$REQUESTS" --texts-per-request 8 --json "$OUT/loadtest-8.json"
stop_server

roberta-infer serve --model "$BUNDLE" --port "$PORT" $SERVE_ARGS 2>"$WORK/serve.log" & SERVER=$!
roberta-infer loadtest --url "$URL" --concurrency 64 --requests 1000 --json "$OUT/memory-1000.json"
roberta-infer loadtest --url "$URL" --concurrency 64 --requests 9000 --json "$OUT/memory-10000.json"
stop_server

python "$OUT/update_readme.py"
