#!/usr/bin/env bash
# `make run-fleet`: two Envoy replicas sharing global limits through two
# processes of the rate-limit service and Redis (envoy/fleet/replica.yaml
# says how it fits).
#   redis-server :6379; mcp-ratelimit-service :8089 and :8090 (metrics and
#   health :9089 and :9090); demo MCP server :8081;
#   replica 1 :10000 (admin :9901), replica 2 :10001 (admin :9902).
# Redis may be stopped and started again while the fleet runs
# (scripts/fleet-redis.sh stop | start): the script ends when a replica, a
# service process or the demo server ends, or on Ctrl-C, not when Redis does.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_BIN=${ENVOY_BIN:-envoy}
mkdir -p .run

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/fleet-redis.sh stop > /dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

: > .run/redis.log
scripts/fleet-redis.sh start
# Redis answers within 40 ms or the service says UNAVAILABLE: before the
# replicas' timeout_ms (50, envoy/fleet/replica.yaml) gives up on a check
# whose units Redis may already have taken.
for n in 0 1; do
  ratelimit-service/target/release/mcp-ratelimit-service \
    --listen "127.0.0.1:$((8089 + n))" --http-listen "127.0.0.1:$((9089 + n))" \
    --redis redis://127.0.0.1:6379 --redis-timeout-ms 40 \
    > ".run/ratelimit-service-$((n + 1)).log" 2>&1 &
  pids+=($!)
done
target/debug/demo_server --port 8081 > .run/demo_server.log 2>&1 &
pids+=($!)
# Replica 2: the same file with its own listener and admin ports.
sed -e 's/port_value: 10000/port_value: 10001/' -e 's/port_value: 9901/port_value: 9902/' \
  envoy/fleet/replica.yaml > .run/replica-2.yaml
for replica in 1 2; do
  config=envoy/fleet/replica.yaml
  [ "$replica" = 2 ] && config=.run/replica-2.yaml
  "$ENVOY_BIN" -c "$config" --concurrency 1 --disable-hot-restart --base-id "$replica" \
    > ".run/envoy-$replica.log" 2>&1 &
  pids+=($!)
done

for admin in 9901 9902; do
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$admin/ready" > /dev/null 2>&1; then break; fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$admin/ready" > /dev/null || { echo "a replica did not start; see .run/envoy-*.log"; exit 1; }
done

cat <<'MSG'

Two replicas of mcp-policy share one count for asyncExecuteCode (10 a minute per grant, global):
  replica 1    http://127.0.0.1:10000/mcp   (admin :9901)
  replica 2    http://127.0.0.1:10001/mcp   (admin :9902)
  rate-limit service 127.0.0.1:8089 and :8090 (each replica uses both), on redis 127.0.0.1:6379
  metrics      http://127.0.0.1:9089/metrics, http://127.0.0.1:9090/metrics (/healthz, /readyz)
  demo MCP server :8081; logs in .run/

Try it from another terminal: 12 calls alternating between the replicas, 10 pass, then -31002:
  scripts/try-fleet.sh
Take Redis away and bring it back (the fleet keeps running; global limits fail closed meanwhile):
  scripts/fleet-redis.sh stop; AGENT=bob scripts/try-fleet.sh; scripts/fleet-redis.sh start
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "a fleet process ended; see .run/*.log"
