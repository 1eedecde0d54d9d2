//! `make soak`: minutes of mixed traffic through a real Envoy (4 workers)
//! from many grants and sessions, then sweeps of 100 000 distinct grants
//! and of 20 000 distinct 50 KB session ids to measure what tracking a
//! caller costs. Prints a report; exits non-zero if
//! the gate caused a 5xx, let more calls through than a limit allows, a
//! request failed below HTTP, or a reply was not one the mix can cause.
//!
//! `cargo run --release --example soak -- [seconds] [grants-in-sweep]`
//! (needs ENVOY_BIN and MCP_POLICY_WASM, as `make soak` sets them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::demo_server::ServeOptions;
use support::stack::Stack;

/// Limits with windows longer than the run are checked exactly at the
/// upstream (no window edge to blur the count); short ones churn.
const POLICY: &str = r#"{
    "version": "1", "default": "deny",
    "identity": {"header": "x-agent-id"},
    "max_callers_per_counter": 262144,
    "hide": ["secretTool"],
    "tools": {
        "asyncExecuteCode": {
            "deny_if": {"args.script": {"regex": "subprocess"}},
            "limits": [{"counter": "exec_per_grant", "window": 1000000000, "max": 40, "scope": "grant"},
                       {"counter": "exec_burst", "window": "second", "max": 3, "scope": "grant"}]
        },
        "checkCodeExecStatus": {
            "limits": [{"counter": "polls_per_session", "window": 1000000000, "max": 60, "scope": "session"}]
        },
        "deleteWorkspace": {"action": "deny"}
    }
}"#;

const GRANTS: usize = 200;
const SESSIONS_PER_GRANT: usize = 3;
const CONCURRENCY: usize = 64;

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    rate_limited: AtomicU64,
    invalid: AtomicU64,
    hidden: AtomicU64,
    /// -32603: the gate could not decide (a counter's table had no slot left
    /// for the caller, or stayed contended).
    undecided: AtomicU64,
    /// Any other reply: not one this traffic can cause.
    other: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

fn body(kind: u64, id: u64) -> String {
    let call = |name: &str, arguments: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments}}).to_string()
    };
    match kind % 8 {
        0 | 1 => call(
            "asyncExecuteCode",
            json!({"script": "print(1)", "timeout": 30}),
        ),
        2 | 3 => call(
            "checkCodeExecStatus",
            json!({"execution_uuid": "00000000-0000-4000-8000-000000000001"}),
        ),
        4 => call("deleteWorkspace", json!({"workspace": "w"})),
        5 => call(
            "asyncExecuteCode",
            json!({"script": "import subprocess", "timeout": 30}),
        ),
        6 => call("secretTool", json!({})),
        _ => format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":"
        ),
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    grant: &str,
    session: &str,
    body: String,
    tally: &Tally,
) {
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("x-agent-id", grant)
        .header("mcp-session-id", session)
        .body(body)
        .send()
        .await;
    let Ok(response) = response else {
        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let status = response.status().as_u16();
    let Ok(bytes) = response.bytes().await else {
        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let counter = match (status, reply["error"]["code"].as_i64()) {
        (500..=599, _) => &tally.server_errors,
        (200, Some(-31001)) => &tally.denied,
        (200, Some(-31002)) => &tally.rate_limited,
        (200, Some(-32602)) => &tally.hidden,
        (200, Some(-32603)) => &tally.undecided,
        // The malformed bodies of the mix: -32700, not JSON.
        (400, Some(-32700)) => &tally.invalid,
        (200, None) if reply.get("result").is_some() => &tally.allowed,
        _ => {
            if tally.other.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!(
                    "unexpected reply: HTTP {status} {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            return;
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(180);
    let sweep: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);

    let serve = ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    };
    let stack = Stack::start_with(POLICY, 4, serve).await;
    let url = stack.envoy.mcp_url();
    let rss_start = stack.envoy.resident_kib();
    println!("soak: {seconds} s of mixed traffic, {GRANTS} grants x {SESSIONS_PER_GRANT} sessions, {CONCURRENCY} concurrent, Envoy --concurrency 4");

    let client = reqwest::Client::new();
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CONCURRENCY as u64)
        .map(|worker| {
            let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
            tokio::spawn(async move {
                let mut n = worker;
                while Instant::now() < deadline {
                    let grant = format!("agent-{}", n % GRANTS as u64);
                    let session = format!(
                        "session-{}-{}",
                        n % GRANTS as u64,
                        (n / 7) % SESSIONS_PER_GRANT as u64
                    );
                    send(&client, &url, &grant, &session, body(n / 3, n), &tally).await;
                    n += CONCURRENCY as u64;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let rss_after_mix = stack.envoy.resident_kib();

    // Exactness, counted at the upstream: per grant, executions never above
    // 40 (the long-window limit); per session, polls never above 60.
    let mut exec_per_grant: HashMap<String, u64> = HashMap::new();
    let mut polls_per_session: HashMap<String, u64> = HashMap::new();
    for request in stack.upstream.http_requests() {
        let grant = request.header("x-agent-id").unwrap_or("").to_string();
        match request.tool_name().as_deref() {
            Some("asyncExecuteCode") => *exec_per_grant.entry(grant).or_default() += 1,
            Some("checkCodeExecStatus") => {
                *polls_per_session
                    .entry(request.header("mcp-session-id").unwrap_or("").to_string())
                    .or_default() += 1
            }
            _ => {}
        }
    }
    let over_grant = exec_per_grant.values().filter(|n| **n > 40).count();
    let at_grant = exec_per_grant.values().filter(|n| **n == 40).count();
    let over_session = polls_per_session.values().filter(|n| **n > 60).count();
    let at_session = polls_per_session.values().filter(|n| **n == 60).count();
    let forbidden = stack.upstream.tool_call_count("deleteWorkspace")
        + stack.upstream.tool_call_count("secretTool");

    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!("\n| outcome | responses |\n| --- | --- |");
    for (name, counter) in [
        ("sent", &tally.sent),
        ("allowed (tool result)", &tally.allowed),
        ("denied -31001", &tally.denied),
        ("rate limited -31002", &tally.rate_limited),
        ("hidden -32602", &tally.hidden),
        ("invalid (HTTP 400, -32700)", &tally.invalid),
        ("undecided -32603", &tally.undecided),
        ("other", &tally.other),
        ("5xx", &tally.server_errors),
        ("transport errors", &tally.transport_errors),
    ] {
        println!("| {name} | {} |", load(counter));
    }
    println!(
        "\nrequests/s: {:.0}",
        load(&tally.sent) as f64 / seconds as f64
    );
    println!("exactness at the upstream: {} grants reached 40 executions, {over_grant} above; {} sessions reached 60 polls, {over_session} above; denied or hidden tools reached upstream: {forbidden}", at_grant, at_session);
    println!("Envoy resident memory: {rss_start} KiB at start, {rss_after_mix} KiB after the mix");

    // Sweeps: distinct grants, one allowed call each. Each call is counted
    // on two counters: a window longer than the run (a slot per grant that
    // stays taken) and a one-second window (slots reused once it passes).
    // The second sweep, with new names, shows what the reuse saves.
    // Failures of the sweeps: 5xx, transport errors, unexpected replies.
    // (-32603 is reported, not a failure: a table out of free slots is what
    // the sweeps measure.)
    let mut sweep_failures = 0;
    // The third sweep: distinct 50 KB Mcp-Session-Id values on a
    // session-scoped counter. A slot keeps a 16-byte digest of the value, so
    // a caller costs what the grant sweeps show, not 50 KB.
    let long_sessions = (sweep / 5).max(1);
    for (round, prefix) in ["sweep-a", "sweep-b", "sweep-c"].into_iter().enumerate() {
        let long = prefix == "sweep-c";
        let count = if long { long_sessions } else { sweep };
        if long {
            println!(
                "\nsweep {}: {count} distinct 50 KB session ids, one call each",
                round + 1
            );
        } else {
            println!(
                "\nsweep {}: {count} distinct grants, one call each",
                round + 1
            );
        }
        let rss_before = stack.envoy.resident_kib();
        let sweep_tally = Arc::new(Tally::default());
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, url, tally, next) = (
                    client.clone(),
                    url.clone(),
                    sweep_tally.clone(),
                    next.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count as u64 {
                            break;
                        }
                        if long {
                            let session = format!("{prefix}-{n:08}-{}", "s".repeat(50_000));
                            send(&client, &url, "sweeper", &session, body(2, n), &tally).await;
                        } else {
                            let grant = format!("{prefix}-{n:08}");
                            send(&client, &url, &grant, "sweep", body(0, n), &tally).await;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let rss_after = stack.envoy.resident_kib();
        let grown = rss_after.saturating_sub(rss_before);
        sweep_failures += load(&sweep_tally.server_errors)
            + load(&sweep_tally.transport_errors)
            + load(&sweep_tally.other)
            + load(&sweep_tally.invalid);
        println!(
            "outcomes: {} allowed, {} rate limited, {} refused -32603 (no free slot), {} 5xx, {} transport errors, {} other",
            load(&sweep_tally.allowed),
            load(&sweep_tally.rate_limited),
            load(&sweep_tally.undecided),
            load(&sweep_tally.server_errors),
            load(&sweep_tally.transport_errors),
            load(&sweep_tally.other) + load(&sweep_tally.invalid)
        );
        println!(
            "Envoy resident memory: {rss_before} KiB before, {rss_after} KiB after: +{grown} KiB, {:.0} bytes per new {}",
            grown as f64 * 1024.0 / count.max(1) as f64,
            if long { "50 KB session" } else { "grant" }
        );
    }

    let cut_off = stack.upstream.cut_off_requests().len();
    let mut failures = Vec::new();
    for (count, what) in [
        (load(&tally.server_errors), "5xx in the mix"),
        (load(&tally.transport_errors), "transport errors in the mix"),
        (load(&tally.other), "unexpected replies in the mix"),
        (
            load(&tally.undecided),
            "undecided (-32603) calls in the mix",
        ),
        (
            sweep_failures,
            "5xx, transport errors or unexpected replies in the sweeps",
        ),
        (
            (over_grant + over_session) as u64,
            "counters over their limit",
        ),
        (forbidden as u64, "denied or hidden calls at the upstream"),
        (cut_off as u64, "requests cut off mid-body at the upstream"),
    ] {
        if count > 0 {
            failures.push(format!("{count} {what}"));
        }
    }
    if !failures.is_empty() {
        eprintln!("\nSOAK FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
    println!("\nsoak passed: no 5xx, transport error or unexpected reply; every counter within its limit");
}
