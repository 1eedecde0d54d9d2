#!/usr/bin/env python3
"""Writes the benchmark inputs, deterministically (no randomness, no clock):

  bench/bodies/call-1k.json    a typical tools/call, about 1 KiB
  bench/bodies/call-64k.json   the same call with 64 KiB of arguments
  bench/policy-500.json        a policy naming 500 tools (startup / load time)
  bench/policy-bench.json      the policy of the load test and the criterion benches
  bench/policy-bench-arguments.json  the same with argument rules (criterion only)

The files are committed (benches/core.rs includes them at compile time);
`python3 bench/gen.py --check` verifies they are what this script writes.
Every body calls `asyncExecuteCode`; the runner and the criterion benches
swap the tool name to get the denied and rate-limited calls, so all bodies of
one size differ only in the tool name.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# One tools/call as an agent sends it: a Python script to run, options, and
# the MCP `_meta` progress token. Kept close to 1 KiB.
SCRIPT_1K = (
    "import pandas as pd\n"
    "import numpy as np\n"
    "\n"
    "df = pd.read_csv('/workspace/data/sales_2025.csv', parse_dates=['date'])\n"
    "df = df[df['region'].isin(['eu-west', 'eu-north'])]\n"
    "monthly = df.groupby(df['date'].dt.to_period('M'))['amount'].agg(['sum', 'mean', 'count'])\n"
    "monthly['growth'] = monthly['sum'].pct_change().fillna(0.0)\n"
    "top = df.groupby('sku')['amount'].sum().nlargest(10)\n"
    "print(monthly.to_markdown())\n"
    "print()\n"
    "print(\"Top SKUs by revenue:\")\n"
    "for sku, amount in top.items():\n"
    "    print(f\"  {sku:<12} {amount:>12,.2f}\")\n"
    "monthly.to_csv('/workspace/out/monthly.csv')\n"
    "top.to_csv('/workspace/out/top_skus.csv')\n"
)


def envelope(arguments):
    return {
        "jsonrpc": "2.0",
        "id": 42,
        "method": "tools/call",
        "params": {
            "name": "asyncExecuteCode",
            "arguments": arguments,
            "_meta": {"progressToken": "c0ffee42-7d1e-4b8a-9f21-3a5e8d2b1c04"},
        },
    }


def body_1k():
    arguments = {
        "script": SCRIPT_1K,
        "timeout": 120,
        "environment": {"python": "3.12", "packages": ["pandas", "numpy", "tabulate"]},
        "workspace": "ws-7f3a91",
        "labels": {"team": "analytics", "ticket": "ANL-2231"},
    }
    return envelope(arguments)


def body_64k():
    """About half a long script (one big JSON string with escapes), half a
    table of records (many small objects, keys and numbers): both shapes an
    agent sends when it ships data along with code."""
    lines = []
    i = 0
    while sum(len(line) + 1 for line in lines) < 31 * 1024:
        lines.append(
            f"result_{i} = compute(df[df['bucket'] == {i % 97}], window={i % 13 + 1}, "
            f"label=\"batch-{i:05d}\")  # step {i}"
        )
        i += 1
    rows = []
    j = 0
    while len(json.dumps(rows, separators=(",", ":"))) < 30 * 1024:
        rows.append(
            {
                "id": j,
                "sku": f"SKU-{j:06d}",
                "region": ["eu-west", "eu-north", "us-east", "ap-south"][j % 4],
                "amount": round(12.5 + (j * 7919 % 10000) / 100, 2),
                "tags": ["promo", "q3"] if j % 3 == 0 else ["q3"],
            }
        )
        j += 1
    arguments = {
        "script": "\n".join(lines) + "\n",
        "timeout": 300,
        "rows": rows,
        "workspace": "ws-7f3a91",
    }
    return envelope(arguments)


def pad_to(document, key, size):
    """Pads the string argument `key` with spaces so the body is exactly `size` bytes."""
    text = dump(document)
    missing = size - len(text.encode())
    if missing < 0:
        raise SystemExit(f"body already {len(text)} bytes, over {size}")
    document["params"]["arguments"][key] += " " * missing
    return document


def dump(document):
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def policy_500():
    """500 tools, as a large deployment might list them: most allowed with a
    per-grant limit, every 10th with argument rules (a regex and a bound),
    every 25th denied with a reason; an all_tools limit on top."""
    tools = {}
    for n in range(500):
        name = f"tool_{n:03d}_{['read', 'write', 'query', 'exec', 'list'][n % 5]}"
        if n % 25 == 0:
            tools[name] = {"action": "deny", "reason": f"{name} is retired; use tool_{n + 1:03d}"}
            continue
        rule = {
            "reason": f"{name}: at most {60 + n % 40} calls a minute per grant",
            "limits": [
                {"counter": f"{name}_rate", "window": "minute", "max": 60 + n % 40, "scope": "grant"}
            ],
        }
        if n % 10 == 5:
            rule["require"] = {"args.timeout": {"lte": 300}}
            rule["deny_if"] = {"args.path": {"regex": "^/(etc|proc|sys)/|\\.\\./"}}
        tools[name] = rule
    return {
        "version": "1",
        "default": "deny",
        "identity": {"header": "x-agent-id"},
        "all_tools": {
            "limits": [{"counter": "all_calls", "window": "hour", "max": 100000, "scope": "grant"}]
        },
        "tools": tools,
    }


# The policy the load test and the criterion benches decide by: (2) allowed
# with a per-grant limit that never trips, (3) denied by rule, (4) a limit of
# 1 per ~31 years, used up by the first call.
NEVER_TRIPS = {"counter": "bench_allowed", "window": 1000000000, "max": 10**12, "scope": "grant"}
USED_UP = {"counter": "bench_limited", "window": 1000000000, "max": 1, "scope": "grant"}


def policy_bench():
    return {
        "version": "1",
        "default": "deny",
        "identity": {"header": "x-agent-id"},
        "tools": {
            "asyncExecuteCode": {"limits": [NEVER_TRIPS]},
            "deleteWorkspace": {"action": "deny", "reason": "destroys a workspace; ask an operator"},
            "checkCodeExecStatus": {"limits": [USED_UP]},
        },
    }


def policy_bench_arguments():
    """The same, with the argument rules of the shipped policy on the allowed tool
    (criterion only): arguments are then parsed into a serde_json::Value."""
    policy = policy_bench()
    policy["tools"]["asyncExecuteCode"].update(
        {
            "reason": "timeout must be given and at most 300 s, and scripts that name process-starting calls are refused (a tripwire, not a sandbox)",
            "deny_if": {"args.script": {"regex": "subprocess|os\\.system|os\\.popen|pty\\.spawn"}},
            "require": {"args.timeout": {"lte": 300}},
        }
    )
    return policy


def outputs():
    return {
        os.path.join(HERE, "bodies", "call-1k.json"): dump(pad_to(body_1k(), "script", 1024)),
        os.path.join(HERE, "bodies", "call-64k.json"): dump(pad_to(body_64k(), "script", 65536)),
        os.path.join(HERE, "policy-500.json"): json.dumps(policy_500(), indent=1) + "\n",
        os.path.join(HERE, "policy-bench.json"): json.dumps(policy_bench(), indent=1) + "\n",
        os.path.join(HERE, "policy-bench-arguments.json"): json.dumps(policy_bench_arguments(), indent=1)
        + "\n",
    }


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in outputs().items():
        current = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                current = f.read()
        if current == text:
            continue
        if check:
            stale.append(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path)} ({len(text.encode())} bytes)")
    if stale:
        raise SystemExit("stale (run python3 bench/gen.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
