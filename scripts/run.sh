#!/usr/bin/env bash
# `make run`: the whole system on its embedded default, in the foreground (Ctrl-C stops it all).
#   Anvil on 127.0.0.1:8545 with its state kept in var/anvil-state.json
#   contracts deployed on first start (deployments/<chain id>.json), SQLite index in var/
#   ledger index --follow, ledger relay, ledger ingest-mqtt, and the portal + API on 127.0.0.1:5000
#   served by gunicorn (WORKERS, default 3); the devnet's server secret is kept in var/secret_key
# DEMO=1 (`make demo`) also seeds the demo world once per devnet state (scripts/demo.py, docs/demo.md)
# and runs its three devices under supervision; a fresh demo devnet starts its clock DEMO_DAYS
# (default 7) days back, so that the seeded history of plays falls on its own days.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
mkdir -p var
# Anvil's first default account: a public devnet key, never used outside the devnet.
DEVNET_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
export LEDGER_RPC_URL="${LEDGER_RPC_URL:-http://127.0.0.1:8545}"
export LEDGER_PRIVATE_KEY="${LEDGER_PRIVATE_KEY:-$DEVNET_KEY}"
export LEDGER_RELAYER_KEY="${LEDGER_RELAYER_KEY:-$LEDGER_PRIVATE_KEY}"
# Anvil's second default account pays the portal's gasless actions (its own nonces).
export LEDGER_GASLESS_KEY="${LEDGER_GASLESS_KEY:-0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d}"
export LEDGER_MQTT_URL="${LEDGER_MQTT_URL:-mqtt://127.0.0.1:1883}"
export LEDGER_LOG_LEVEL="${LEDGER_LOG_LEVEL:-INFO}"
PORT="${PORT:-5000}"
DEMO="${DEMO:-}"
[ "$DEMO" = 0 ] && DEMO=""
DEMO_DAYS="${DEMO_DAYS:-7}"

pids=()
stopping=""
cleanup() {
  stopping=1
  for pid in "${pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true  # the service a supervisor loop runs
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# supervise NAME CMD...: runs CMD, restarting it with backoff (1 s doubling to 30 s) whenever it
# exits, so no service dies silently; each exit is logged to var/NAME.log with its status.
supervise() {
  local name=$1 delay=1 started status
  shift
  while [ -z "$stopping" ]; do
    started=$(date +%s)
    "$@" >> "var/$name.log" 2>&1 && status=0 || status=$?
    [ -n "$stopping" ] && break
    if [ $(( $(date +%s) - started )) -gt 60 ]; then delay=1; fi  # it ran a while: a fresh failure
    echo "$(date -u +%FT%TZ) supervisor: $name exited with status $status; restarting in ${delay}s" \
      | tee -a "var/$name.log" >&2
    sleep "$delay"
    delay=$(( delay < 30 ? delay * 2 : 30 ))
  done
}

rpc_up() { python - "$LEDGER_RPC_URL" <<'PY' 2>/dev/null
import json, sys, urllib.request
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
request = urllib.request.Request(sys.argv[1], body, {"content-type": "application/json"})
urllib.request.urlopen(request, timeout=2).read()
PY
}

if ! rpc_up; then
  echo "starting Anvil (state in var/anvil-state.json)"
  anvil_args=()
  if [ -n "$DEMO" ] && [ ! -s var/anvil-state.json ]; then
    anvil_args=(--timestamp $(( $(date +%s) - DEMO_DAYS * 86400 )))  # demo.py brings it back to now
  fi
  # --state-interval 1: a SIGKILL loses at most about a second of chain; a clean stop dumps it all.
  # Whatever is lost is found at the next start: the indexer rolls back to what the chain holds
  # and the relayer sends again the batches whose transactions vanished.
  anvil --host 127.0.0.1 --port 8545 --state var/anvil-state.json --state-interval 1 --gas-limit 30000000 \
    "${anvil_args[@]}" --silent > var/anvil.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do rpc_up && break; sleep 0.2; done
fi

brownie compile >/dev/null
deployed() { python - <<'PY' 2>/dev/null
from ledger.chain import connect, load_deployment
from ledger.config import Settings
s = Settings.from_env()
w3 = connect(s.rpc_url)
load_deployment(w3, s.deployment_file(w3.eth.chain_id))
PY
}
if ! deployed; then
  echo "deploying the contracts"
  ledger deploy --force
fi
ledger db upgrade

supervise indexer ledger index --follow & pids+=($!)
supervise relayer ledger relay & pids+=($!)
supervise mqtt ledger ingest-mqtt & pids+=($!)
echo "indexer, relayer and MQTT ingest running under supervision (logs in var/)"
echo "portal on http://127.0.0.1:$PORT/ and the API on /api/v1; Ctrl-C stops everything"
gunicorn --workers "${WORKERS:-3}" --threads "${THREADS:-8}" --bind "127.0.0.1:$PORT" --preload --no-control-socket \
  --access-logfile var/portal-access.log \
  --error-logfile - 'webapp:create_app()' & pids+=($!)
portal_pid=$!
if [ -n "$DEMO" ]; then
  python scripts/demo.py --portal "http://127.0.0.1:$PORT" seed --days "$DEMO_DAYS" \
    || { echo "demo: seeding failed (it resumes where it stopped on the next \`make demo\`)" >&2; exit 1; }
  for device in $(python scripts/demo.py devices); do
    supervise "demo-$device" python scripts/demo.py play "$device" & pids+=($!)
  done
  echo "demo devices reporting plays (logs in var/demo-*.log)"
fi
wait "$portal_pid"
