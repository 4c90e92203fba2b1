#!/usr/bin/env bash
# Phoenix + spendgate collector + a traced app, on this machine. Needs .venv (make) and
# .venv-phoenix (bash tests/export/setup_phoenix.sh). Open http://127.0.0.1:6006 afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p spendgate-data
export PHOENIX_ALLOW_EXTERNAL_RESOURCES=false PHOENIX_TELEMETRY_ENABLED=false
export PHOENIX_WORKING_DIR="${PHOENIX_WORKING_DIR:-$PWD/spendgate-data/phoenix}" PHOENIX_HOST=127.0.0.1
export PHOENIX_PORT=6006 PHOENIX_GRPC_PORT=4319    # 4317 is the collector's
.venv-phoenix/bin/phoenix serve > spendgate-data/phoenix.log 2>&1 &
PHOENIX=$!
trap 'kill $PHOENIX $COLLECTOR 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:6006/healthz > /dev/null; do sleep 1; done

KEYS=spendgate-data/phoenix-demo-keys.yaml
KEY_ID=$(.venv/bin/spendgate keys create --keys-file "$KEYS" --user ana@acme.com --team platform \
    --cost-center CC-1001 --repo acme-api --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
.venv/bin/spendgate collector --config examples/phoenix/collector.yaml &
COLLECTOR=$!
until curl -sf http://127.0.0.1:8788/healthz > /dev/null; do sleep 1; done

# Phoenix prices spans when they arrive: teach it spendgate's rates first (it re-reads them every 5 s).
.venv/bin/python examples/phoenix/sync_prices.py --phoenix http://127.0.0.1:6006 \
    --prices examples/phoenix/prices.yaml --model openai/gpt-4.1-mini
sleep 6
SPENDGATE_KEY_ID="$KEY_ID" .venv/bin/python examples/phoenix/app.py
sleep 2
echo "Phoenix: http://127.0.0.1:6006 (project spendgate-demo). Ctrl-C to stop."
wait $COLLECTOR
