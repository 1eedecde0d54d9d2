-- wrk script for `make bench` (bench/run.py): POSTs one MCP tools/call body
-- with the headers an MCP client sends, and prints one machine-readable line.
--
--   BENCH_BODY=path [BENCH_SESSION=id] [BENCH_UNIQUE_IDS=1] wrk -s bench/wrk.lua URL
--   BENCH_METHOD=GET wrk -s bench/wrk.lua URL      (no body: nothing to inspect)
--
-- BENCH_UNIQUE_IDS gives every request its own JSON-RPC id (for a real MCP
-- server, which tracks in-flight ids per session); otherwise the same bytes
-- are sent every time (no per-request Lua work in the load generator).

local body = nil
if os.getenv("BENCH_METHOD") == "GET" then
  wrk.method = "GET"
else
  local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["content-type"] = "application/json"
end
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["x-agent-id"] = "bench"
wrk.headers["mcp-protocol-version"] = "2025-11-25"
local session = os.getenv("BENCH_SESSION")
if session and session ~= "" then
  wrk.headers["mcp-session-id"] = session
end

if os.getenv("BENCH_UNIQUE_IDS") == "1" then
  local head, tail = body:match('^(.-"id":)42(,.*)$')
  assert(head, 'body has no "id":42')
  local counter = 0
  request = function()
    counter = counter + 1
    return wrk.format(nil, nil, nil, head .. counter .. tail)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
