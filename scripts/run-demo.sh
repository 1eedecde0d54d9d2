#!/usr/bin/env bash
# `make run`: the demo MCP server on :8081, the approval service in memory (its
# page on :8090, the filter's checks on :8091), Envoy on :10000 with the filter
# and policy.json. The Envoy configuration is rendered from policy.json at
# every start (`mcp-policy render envoy`, the source of envoy/envoy.yaml too),
# so what runs is the policy file as it is now.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_BIN=${ENVOY_BIN:-envoy}
mkdir -p .run
# Checks policy.json (its errors stop here) and writes Envoy's configuration.
target/debug/mcp-policy render envoy --policy policy.json --output .run/envoy.yaml

pids=()     # children of this shell: `wait -n` watches them
others=()   # started by a helper script (not children): stopped on exit only
cleanup() { for pid in "${pids[@]}" "${others[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

target/debug/demo_server --port 8081 > .run/demo_server.log 2>&1 &
pids+=($!)
# Standard output: the access log and the audit log (JSON lines); standard
# error: Envoy's own log.
"$ENVOY_BIN" -c .run/envoy.yaml --concurrency 2 --disable-hot-restart --file-flush-interval-msec 1000 \
  > .run/access.log 2> .run/envoy.log &
pids+=($!)

# The approval service, in memory: policy.json holds risky scripts for a
# person's approval on its page (make approval-service builds it).
approval_lines=$(scripts/start-approval-service.sh)
others+=("$(cat .run/approval.pid)")

for _ in $(seq 1 100); do
  if curl -sf http://127.0.0.1:9901/ready > /dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then echo "Envoy exited; see .run/envoy.log"; tail -20 .run/envoy.log; exit 1; fi
  sleep 0.1
done

cat <<'MSG'

mcp-policy is running:
  Envoy with the filter  http://127.0.0.1:10000/mcp   (policy: policy.json, rendered into .run/envoy.yaml)
  demo MCP server        http://127.0.0.1:8081/mcp    (never executes code)
  Envoy admin / stats    http://127.0.0.1:9901/stats/prometheus
  logs                   .run/access.log: JSON lines, the request log ("access_log":"mcp") and
                         the audit log (the others); .run/envoy.log, .run/demo_server.log

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
