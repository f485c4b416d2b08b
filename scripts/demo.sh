#!/usr/bin/env bash
# Install brazecfg, start the local Braze emulator, then validate, plan and apply the example
# project, and plan once more (which shows no changes). No Braze account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=.venv/bin/brazecfg
PROJECT=${1:-examples/project}
PORT=${BRAZECFG_EMULATOR_PORT:-4567}
export BRAZE_REST_ENDPOINT=${BRAZE_REST_ENDPOINT:-http://127.0.0.1:$PORT}
health() {
  .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:$PORT/_emulator/health" >/dev/null 2>&1
}
if ! health; then
  mkdir -p "$PROJECT/.brazecfg"
  "$BIN" emulator --port "$PORT" --state "$PROJECT/.brazecfg/emulator.json" \
    > "$PROJECT/.brazecfg/emulator.log" 2>&1 &
  started=$!
  trap 'set +x; kill $started 2>/dev/null; wait $started 2>/dev/null' EXIT
  for _ in $(seq 50); do
    health && break
    sleep 0.1
  done
fi
set -x
"$BIN" validate "$PROJECT"
"$BIN" plan "$PROJECT"
"$BIN" apply "$PROJECT" --auto-approve
"$BIN" plan "$PROJECT"
