#!/usr/bin/env bash
# `make run`: the demo MCP server on :8081, the approval service in memory (its
# page on :8090, the filter's checks on :8091), Envoy with envoy/envoy.yaml on :10000.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_BIN=${ENVOY_BIN:-envoy}
mkdir -p .run

pids=()     # this script's children: the demo server, Envoy
started=()  # started by a helper script: stopped on exit, not waited for
cleanup() { for pid in "${pids[@]}" "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

target/release/examples/demo_server --port 8081 > .run/demo_server.log 2>&1 &
pids+=($!)
"$ENVOY_BIN" -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart > .run/envoy.log 2>&1 &
pids+=($!)

# The approval service, in memory: policy.json holds risky scripts for a
# person's approval on its page (make approval-service builds it).
approval_lines=$(scripts/start-approval-service.sh)
started+=("$(cat .run/approval.pid)")

for _ in $(seq 1 100); do
  if curl -sf http://127.0.0.1:9901/ready > /dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then echo "Envoy exited; see .run/envoy.log"; tail -20 .run/envoy.log; exit 1; fi
  sleep 0.1
done

cat <<'MSG'

mcp-policy is running:
  Envoy with the filter  http://127.0.0.1:10000/mcp   (policy: policy.json, embedded in envoy/envoy.yaml)
  demo MCP server        http://127.0.0.1:8081/mcp    (never executes code)
  Envoy admin / stats    http://127.0.0.1:9901/stats/prometheus
  logs                   .run/envoy.log (audit lines: grep 'mcp-policy audit'), .run/demo_server.log

MSG
echo "$approval_lines"
cat <<'MSG'

Try it from another terminal (an MCP session over curl: allowed, denied,
rate-limited, and a call waiting for approval on the page above):
  scripts/try-calls.sh

Or connect any MCP client to http://127.0.0.1:10000/mcp with the header `x-agent-id: <your name>`.
Ctrl-C stops them all.
MSG
wait -n "${pids[@]}"
