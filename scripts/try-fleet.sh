#!/usr/bin/env bash
# Against `make run-fleet`: opens one MCP session, then makes 12 asyncExecuteCode
# calls alternating between the two replicas. The global limit (10 a minute
# per grant) is one count for both: 10 pass, then -31002 from either replica.
set -euo pipefail
AGENT=${AGENT:-alice}
headers=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'
         -H "x-agent-id: $AGENT" -H 'mcp-protocol-version: 2025-11-25')

# Both replicas front the same MCP server, so one session serves both.
session=$(curl -s -D - -o /dev/null "${headers[@]}" http://127.0.0.1:10000/mcp \
  -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \
  | awk -F': ' 'tolower($1)=="mcp-session-id" {print $2}' | tr -d '\r')
[ -n "$session" ] || { echo "no session: is 'make run-fleet' running?"; exit 1; }
curl -s -o /dev/null "${headers[@]}" -H "mcp-session-id: $session" http://127.0.0.1:10000/mcp \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

for id in $(seq 1 12); do
  port=$((10000 + id % 2))
  body="{\"jsonrpc\":\"2.0\",\"id\":$id,\"method\":\"tools/call\",\"params\":{\"name\":\"asyncExecuteCode\",\"arguments\":{\"script\":\"print($id)\",\"timeout\":30}}}"
  out=$(curl -s "${headers[@]}" -H "mcp-session-id: $session" "http://127.0.0.1:$port/mcp" -d "$body" | sed -n 's/^data: //p; t; /^{/p')
  if grep -q -- '-31002' <<< "$out"; then verdict="rate limited (-31002)"
  elif grep -q '"result"' <<< "$out"; then verdict="allowed"
  else verdict="unexpected: $out"; fi
  echo "call $id via replica $((port - 9999)) (:$port): $verdict"
done
