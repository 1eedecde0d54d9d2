#!/usr/bin/env bash
# The Redis of `make run-fleet` (127.0.0.1:6379, pid in .run/redis.pid), to
# watch the fleet through a Redis outage: stopped, a call with a global limit
# gets -32603 (failure_mode closed) and nothing reaches the server, local
# limits still work; started again, the rate-limit services reconnect (and
# load their script again) and calls pass. The fleet keeps running meanwhile.
#   scripts/fleet-redis.sh stop | start | status
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=.run/redis.pid
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "redis-server is running (pid $(cat "$pidfile"))"; exit 0; fi
    mkdir -p .run
    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no >> .run/redis.log 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 50); do
      if redis-cli -p 6379 ping > /dev/null 2>&1; then echo "redis-server started (pid $(cat "$pidfile"))"; exit 0; fi
      running || break
      sleep 0.1
    done
    echo "redis-server did not start; see .run/redis.log"; exit 1 ;;
  stop)
    if ! running; then echo "redis-server is not running"; rm -f "$pidfile"; exit 0; fi
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
    echo "redis-server stopped" ;;
  status)
    if running; then echo "redis-server is running (pid $(cat "$pidfile"))"; else echo "redis-server is not running"; fi ;;
  *)
    echo "usage: $0 stop | start | status"; exit 2 ;;
esac
