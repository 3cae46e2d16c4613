#!/usr/bin/env bash
# Serving vs offline at roberta-base's shape (synthetic weights: speed only), where the model's work dwarfs HTTP,
# JSON and tokenisation, so what remains is how well dynamic batching fills the model calls. For a quiet machine;
# writes roberta-base/{offline,loadtest,loadtest-8}.json here (README's serving section shows them).
#   bash benchmarks/serve/roberta_base.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=benchmarks/serve/roberta-base
PORT=${PORT:-8766}
REQUESTS=${REQUESTS:-400}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
SERVER=
stop_server() { if [ -n "$SERVER" ]; then kill -TERM "$SERVER"; wait "$SERVER"; SERVER=; fi; }
trap 'stop_server; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

roberta-infer export --synthetic roberta-base --out "$WORK/bundle" 2>/dev/null
roberta-infer prepare --model "$WORK/bundle" --split dev --seq-len 70 --out "$WORK/prepared" >/dev/null
roberta-infer infer --model "$WORK/bundle" --input "$WORK/prepared" --out "$WORK/results" --batch-size 32 --warmup 2 --loop 1
cp "$WORK/results/summary.json" "$OUT/offline.json"

roberta-infer serve --model "$WORK/bundle" --port "$PORT" 2>"$WORK/serve.log" & SERVER=$!
roberta-infer loadtest --url "$URL" --concurrency 64 --requests "$REQUESTS" --json "$OUT/loadtest.json"
roberta-infer loadtest --url "$URL" --concurrency 64 --requests "$((REQUESTS / 4))" --texts-per-request 8 --json "$OUT/loadtest-8.json"
stop_server
python "$(dirname "$OUT")/update_readme.py"
