#!/usr/bin/env bash
# Talks MCP over curl through the gate: opens a session, then makes an allowed
# call, a call denied by an argument rule, a call held for a person's approval
# (-31004 with the link to the approvals page), a denied call, a call to an
# unlisted tool, and calls until the asyncExecuteCode limit (10 a minute per
# grant) answers -31002; then reads a resource and gets a prompt the policy
# does not allow (its default is deny).
#
#   scripts/try-calls.sh            the tour above
#   scripts/try-calls.sh approval   only the held call, sent again every 5 s
#                                   until a person approves or denies it on the page
set -euo pipefail
URL=${MCP_URL:-http://127.0.0.1:10000/mcp}
AGENT=${AGENT:-alice}
headers=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'
         -H "x-agent-id: $AGENT" -H 'mcp-protocol-version: 2025-11-25')

session=$(curl -s -D - -o /dev/null "${headers[@]}" "$URL" \
  -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \
  | awk -F': ' 'tolower($1)=="mcp-session-id" {print $2}' | tr -d '\r')
[ -n "$session" ] || { echo "no session from $URL: is 'make run' running?"; exit 1; }
curl -s -o /dev/null "${headers[@]}" -H "mcp-session-id: $session" "$URL" \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

request() { # id method params-json
  local body="{\"jsonrpc\":\"2.0\",\"id\":$1,\"method\":\"$2\",\"params\":$3}"
  echo "\$ curl $URL -H 'x-agent-id: $AGENT' -H 'mcp-session-id: $session' ... -d '$body'"
  curl -s "${headers[@]}" -H "mcp-session-id: $session" "$URL" -d "$body" | sed -n 's/^data: //p; t; /^{/p'
  echo
}

call() { # id tool arguments-json
  local body="{\"jsonrpc\":\"2.0\",\"id\":$1,\"method\":\"tools/call\",\"params\":{\"name\":\"$2\",\"arguments\":$3}}"
  echo "\$ curl $URL -H 'x-agent-id: $AGENT' -H 'mcp-session-id: $session' ... -d '$body'"
  curl -s "${headers[@]}" -H "mcp-session-id: $session" "$URL" -d "$body" | sed -n 's/^data: //p; t; /^{/p'
  echo
}

# A script that starts a process: policy.json's approve_if holds it for a person.
risky='{"script":"import subprocess\nsubprocess.run([\"ls\", \"/\"])","timeout":30}'

if [ "${1:-}" = "approval" ]; then
  echo "== waiting for approval: the same call every 5 s until a person decides on the page"
  for id in $(seq 100 160); do
    out=$(call "$id" asyncExecuteCode "$risky")
    if ! grep -q -- '-31004' <<< "$out"; then echo "$out"; exit 0; fi
    sed -n 's/.*"approval_url":"\([^"]*\)".*/   waiting: \1/p' <<< "$out"
    sleep 5
  done
  echo "nobody decided within 5 minutes"; exit 1
fi

echo "== allowed: asyncExecuteCode (limited to 10 a minute per grant)"
call 1 asyncExecuteCode '{"script":"print(42)","timeout":30}'
echo "== denied by an argument rule: the script spawns an interactive shell"
call 2 asyncExecuteCode '{"script":"import pty; pty.spawn(\"/bin/sh\")","timeout":30}'
echo "== waiting for approval: the script starts a process (-31004, nothing reaches the server)"
call 22 asyncExecuteCode "$risky"
echo "   open approval_url (sign in with the token 'make run' printed), approve it, then send it"
echo "   again: scripts/try-calls.sh approval"
echo "== denied by rule: deleteWorkspace"
call 3 deleteWorkspace '{"workspace":"prod"}'
echo "== denied by default: runShell is not in the policy"
call 4 runShell '{"cmd":"ls"}'
echo "== rate limited: asyncExecuteCode until the limit answers"
for id in $(seq 5 15); do
  out=$(call "$id" asyncExecuteCode '{"script":"print(1)","timeout":30}')
  if grep -q -- '-31002' <<< "$out"; then echo "$out"; break; fi
done
echo "== denied resource: a path that climbs out of /srv/public to the secret"
request 20 resources/read '{"uri":"file:///srv/public/%2e%2e/.env"}'
echo "== denied prompt: not in the policy"
request 21 prompts/get '{"name":"secret_prompt","arguments":{"topic":"keys"}}'
