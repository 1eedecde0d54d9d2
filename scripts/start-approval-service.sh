#!/usr/bin/env bash
# Starts mcp-approval-service in memory mode for `make run` (approvals held by
# the filter's `approve` rules wait on its page). Prints the page's address and
# a sign-in token made for this run; the service keeps running in the
# background: its PID is written to $APPROVAL_PID_FILE.
#   APPROVAL_BIN       the binary (default approval-service/target/release/mcp-approval-service)
#   APPROVAL_PAGE      page and JSON API address (default 127.0.0.1:8090)
#   APPROVAL_FILTER    filter protocol address, the Envoy cluster's endpoint (default 127.0.0.1:8091)
#   APPROVAL_LOG       log file (default .run/approval.log)
#   APPROVAL_PID_FILE  (default .run/approval.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APPROVAL_BIN:-approval-service/target/release/mcp-approval-service}
page=${APPROVAL_PAGE:-127.0.0.1:8090}
filter=${APPROVAL_FILTER:-127.0.0.1:8091}
log=${APPROVAL_LOG:-.run/approval.log}
pid_file=${APPROVAL_PID_FILE:-.run/approval.pid}
mkdir -p "$(dirname "$log")" "$(dirname "$pid_file")"
if [ ! -x "$bin" ]; then
  echo "no $bin: run make approval-service" >&2
  exit 1
fi

# One approver, "demo", with a token made now.
made=$("$bin" new-token demo)
token=$(sed -n 's/^token: //p' <<<"$made")
flag=$(sed -n 's/^--approver-token //p' <<<"$made")

"$bin" --memory --listen "$page" --filter-listen "$filter" --approver-token "$flag" > "$log" 2>&1 &
echo $! > "$pid_file"
for _ in $(seq 1 100); do
  if curl -sf "http://$filter/readyz" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then echo "mcp-approval-service exited; see $log" >&2; tail -5 "$log" >&2; exit 1; fi
  sleep 0.1
done
echo "  approvals page         http://$page/approvals   (sign in with token $token)"
echo "  approval filter API    http://$filter/v1/check   (metrics: http://$filter/metrics; log: $log)"
