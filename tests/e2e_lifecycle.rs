//! The lifecycle of a stream through a real Envoy: each hole the request's
//! life once had, tried as an attacker would (issue 11). A scripted upstream
//! gives the answers real servers give (normalised ids, replays on GET
//! streams, encodings nobody asked for, slow answers, 5xx).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{Envoy, EnvoyOptions};
use support::scripted::{Answer, Scripted, Seen};

/// `run` once a day per grant; `secretTool` hidden; the rest denied.
const POLICY: &str = r#"{
  "version": "1", "default": "deny",
  "identity": { "header": "x-agent-id" },
  "hide": ["secretTool"],
  "tools": {
    "run": { "limits": [{ "counter": "run", "window": "day", "max": 1, "scope": "grant" }] },
    "read": {}
  }
}"#;

fn policy_with(extra: &str) -> String {
    POLICY.replacen('{', &format!("{{ {extra},"), 1)
}

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
        .to_string()
}

const TOOLS: &str = r#"[{"name":"run","inputSchema":{"type":"object"}},{"name":"secretTool","inputSchema":{"type":"object"}},{"name":"read","inputSchema":{"type":"object"}}]"#;

fn listing(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{TOOLS}}}}}"#)
}

fn result(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#)
}

/// Answers tools/list with the full listing (the id as a normalising server
/// writes it: a number as an integer), everything else with a result.
fn mcp_server(request: &Seen) -> Answer {
    let message: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let id = match &message["id"] {
        Value::Number(number) => number
            .as_f64()
            .map_or("0".to_string(), |n| format!("{}", n as i64)),
        other => other.to_string(),
    };
    match message["method"].as_str() {
        Some("tools/list") => Answer::json(listing(&id)),
        _ => Answer::json(result(&id)),
    }
}

async fn start(policy: &str, upstream: &Scripted) -> Envoy {
    Envoy::start(EnvoyOptions::new(policy, upstream.port)).await
}

/// Envoy whose listener treats loopback callers as internal (as a sidecar
/// or mesh listener often does): its router then honours the caller's
/// `x-envoy-*` retry and timeout headers, unless the gate removes them.
async fn start_internal(policy: &str, upstream: &Scripted) -> Envoy {
    let upstream_port = upstream.port;
    Envoy::start_with_config(
        |port, admin_port| {
            let config = support::envoy::config_yaml(port, admin_port, upstream_port, policy);
            let internal = "stat_prefix: mcp\n          use_remote_address: true\n          internal_address_config: { cidr_ranges: [{ address_prefix: 127.0.0.1, prefix_len: 32 }] }\n";
            assert!(config.contains("stat_prefix: mcp\n"));
            config.replace("stat_prefix: mcp\n", internal)
        },
        1,
    )
    .await
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-agent-id", "alice")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn post(envoy: &Envoy, body: String) -> (u16, Value) {
    let (status, text) = send(client().post(envoy.mcp_url()).body(body)).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn names(message: &Value) -> Vec<String> {
    message["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until Envoy has finished `count` streams (the filter writes an
/// audit line at the end of each it decided).
async fn wait_for_stream_ends(envoy: &Envoy, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ended = envoy.log().matches(mcp_policy::audit::AUDIT_PREFIX).count();
        if ended >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ended} of {count} streams ended:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- 1. A VM panic that lasted ----

#[tokio::test]
async fn listings_with_headers_not_held_neither_panic_nor_leak() {
    let upstream = Scripted::start(mcp_server).await;
    let envoy = start(&policy_with(r#""hold_request_headers": false"#), &upstream).await;
    for round in 0..3 {
        let (status, text) = send(
            client()
                .post(envoy.mcp_url())
                .header("accept-encoding", "gzip, br")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
        )
        .await;
        assert_eq!(status, 200, "round {round}: {text}\n{}", envoy.log());
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(names(&message), ["run", "read"], "round {round}");
        // The next request on the worker is served.
        let (status, body) = post(&envoy, call(2, "read")).await;
        assert_eq!((status, body["result"].is_object()), (200, true), "{body}");
    }
    assert!(upstream
        .seen()
        .iter()
        .all(|seen| seen.header("accept-encoding").is_none()));
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

// ---- 2. Limits beaten by hanging up ----

async fn hang_up_after_forwarding(http2: bool) {
    let upstream =
        Scripted::start(|request| mcp_server(request).after(Duration::from_secs(2))).await;
    let envoy = start(POLICY, &upstream).await;
    let http = if http2 { h2_client() } else { client() };
    let url = envoy.mcp_url();
    let first = tokio::spawn(async move { send(http.post(url).body(call(1, "run"))).await });
    upstream.wait_complete(1).await;
    // The call reached the server; the agent does not need its answer.
    first.abort();
    wait_for_stream_ends(&envoy, 1).await;
    let (status, body) = post(&envoy, call(2, "run")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (200, json!(-31002)),
        "{body}"
    );
    assert_eq!(upstream.seen().len(), 1, "a second call reached the server");
}

#[tokio::test]
async fn hanging_up_after_the_call_was_forwarded_keeps_the_quota_taken_http1() {
    hang_up_after_forwarding(false).await;
}

#[tokio::test]
async fn resetting_the_stream_after_the_call_was_forwarded_keeps_the_quota_taken_http2() {
    hang_up_after_forwarding(true).await;
}

// ---- 3. Refunds for calls that happened ----

#[tokio::test]
async fn a_caller_set_timeout_cannot_turn_a_call_into_a_refund() {
    let upstream =
        Scripted::start(|request| mcp_server(request).after(Duration::from_millis(800))).await;
    let envoy = start_internal(POLICY, &upstream).await;
    let (status, text) = send(
        client()
            .post(envoy.mcp_url())
            .header("x-envoy-upstream-rq-timeout-ms", "50")
            .header("x-envoy-upstream-rq-per-try-timeout-ms", "50")
            .body(call(1, "run")),
    )
    .await;
    assert_eq!(status, 200, "Envoy honoured the caller's timeout: {text}");
    let (status, body) = post(&envoy, call(2, "run")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (200, json!(-31002)),
        "{body}"
    );
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_caller_cannot_make_the_router_send_one_call_several_times() {
    let upstream = Scripted::start(|_| Answer::status(500)).await;
    let envoy = start_internal(POLICY, &upstream).await;
    let (status, _) = send(
        client()
            .post(envoy.mcp_url())
            .header("x-envoy-retry-on", "5xx,reset,retriable-status-codes")
            .header("x-envoy-retriable-status-codes", "500")
            .header("x-envoy-max-retries", "3")
            .body(call(1, "run")),
    )
    .await;
    assert_eq!(status, 500);
    upstream.wait_complete(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.seen().len(), 1, "the router retried the call");
    // A 500 from the server means it took the call: the quota stays taken.
    wait_for_stream_ends(&envoy, 1).await;
    let (_, body) = post(&envoy, call(2, "run")).await;
    assert_eq!(body["error"]["code"], -31002, "{body}");
}

#[tokio::test]
async fn quota_comes_back_only_when_the_server_was_not_reached_or_refused_the_call() {
    // Nothing listens on the upstream port, held by the test (bound, never
    // listening): Envoy could not connect.
    let closed = support::envoy::ClosedPort::reserve();
    let envoy = Envoy::start(EnvoyOptions::new(POLICY, closed.port)).await;
    for attempt in 0..3 {
        let (status, body) = post(&envoy, call(attempt, "run")).await;
        assert_eq!(status, 503, "attempt {attempt}: {body}");
        wait_for_stream_ends(&envoy, attempt as usize + 1).await;
    }
    assert!(
        envoy
            .log()
            .contains("quota given back (Envoy could not reach the server"),
        "{}",
        envoy.log()
    );
    drop(envoy);
    drop(closed);
    // The server itself says 503 (it did not take the call).
    let upstream = Scripted::start(|_| Answer::status(503)).await;
    let envoy = start(POLICY, &upstream).await;
    for attempt in 0..3 {
        let (status, _) = post(&envoy, call(attempt, "run")).await;
        assert_eq!(status, 503, "attempt {attempt}");
        wait_for_stream_ends(&envoy, attempt as usize + 1).await;
    }
    assert_eq!(upstream.seen().len(), 3);
}

// ---- 4. Hidden tools listed ----

#[tokio::test]
async fn listings_are_filtered_whatever_the_id_and_the_stream() {
    let upstream = Scripted::start(|request| {
        if request.method == "GET" && request.path == "/sse" {
            // The deprecated HTTP+SSE transport: an endpoint, then answers.
            return Answer::events(format!(
                "event: endpoint\ndata: /messages?sessionId=1\n\nevent: message\ndata: {}\n\n",
                listing("5")
            ));
        }
        if request.method == "GET" && request.path == "/untyped" {
            // Events under another type: a client reads a GET's answer as
            // events whatever its Content-Type.
            return Answer {
                headers: vec![("content-type", "text/plain".to_string())],
                ..Answer::events(format!("data: {}\n\n", listing("6")))
            };
        }
        if request.method == "GET" {
            // A resumed stream (Last-Event-ID) replays an earlier answer.
            return Answer::events(format!("id: 42\ndata: {}\n\n", listing("4")));
        }
        mcp_server(request)
    })
    .await;
    let envoy = start(POLICY, &upstream).await;
    for id in ["-0", "1.0", "2e0"] {
        let (status, body) = post(
            &envoy,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(names(&body), ["run", "read"], "id {id}: {body}");
    }
    for (path, last_event_id) in [("/mcp", Some("41")), ("/sse", None), ("/untyped", None)] {
        let mut request = client().get(format!("http://127.0.0.1:{}{path}", envoy.port));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        // As MCP clients' GET streams ask.
        request = request.header("accept", "text/event-stream");
        let (status, text) = send(request).await;
        assert_eq!(status, 200);
        assert!(!text.contains("secretTool"), "{path}: {text}");
        assert!(text.contains("\"read\""), "{path}: {text}");
    }
}

#[tokio::test]
async fn listings_the_filter_cannot_read_are_withheld() {
    let upstream = Scripted::start(|request| {
        let message: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        match message["id"].as_u64() {
            // Compressed although the filter asked for identity.
            Some(1) => Answer::json(listing("1")).with_header("content-encoding", "gzip"),
            // A lone surrogate: JSON to JavaScript, not to a strict reader.
            Some(2) => Answer::json(
                r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secretTool","d":"\ud800"}]}}"#,
            ),
            _ => Answer::events(format!("data: {}\n\n", listing("3")))
                .with_header("content-encoding", "br"),
        }
    })
    .await;
    let envoy = start(POLICY, &upstream).await;
    for id in 1..=3 {
        let (status, text) = send(client().post(envoy.mcp_url()).body(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#
        )))
        .await;
        assert_eq!(status, 200, "{id}");
        assert!(!text.contains("secretTool"), "{id}: {text}");
        assert!(text.contains("-32603"), "{id}: {text}");
    }
}

// ---- 5. Method spelling ----

#[tokio::test]
async fn a_call_is_inspected_whatever_the_method_and_its_spelling() {
    let upstream = Scripted::start(mcp_server).await;
    let envoy = start(POLICY, &upstream).await;
    for method in ["post", "Post", "PUT", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (status, text) = send(
            h2_client()
                .request(method.clone(), envoy.mcp_url())
                .body(call(1, "deleteWorkspace")),
        )
        .await;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (200, json!(-31001)),
            "{method}: {text}"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

// ---- 6. Memory per caller ----

#[tokio::test]
async fn long_session_ids_cost_what_short_ones_cost() {
    let policy = r#"{"version": "1", "default": "allow",
      "tools": {"read": {"limits": [{"counter": "s", "window": "day", "max": 5, "scope": "session"}]}}}"#;
    let upstream = Scripted::start(mcp_server).await;
    let envoy = start(policy, &upstream).await;
    let http = client();
    let session_of = |index: usize| format!("{index:08}{}", "s".repeat(50_000));
    // Warm up, then measure Envoy's memory across 1000 new 50 KB sessions.
    for index in 0..50 {
        send(
            http.post(envoy.mcp_url())
                .header("mcp-session-id", session_of(index))
                .body(call(1, "read")),
        )
        .await;
    }
    let before = envoy.resident_kib();
    assert!(before > 0);
    for index in 50..1050 {
        let (status, _) = send(
            http.post(envoy.mcp_url())
                .header("mcp-session-id", session_of(index))
                .body(call(1, "read")),
        )
        .await;
        assert_eq!(status, 200);
    }
    let after = envoy.resident_kib();
    assert_eq!(upstream.seen().len(), 1050);
    // Keeping each session's whole name would take 1000 × 50 KB ≈ 49 MiB.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "Envoy grew by {grown} KiB for 1000 sessions"
    );
}

// ---- 7. Hidden is indistinguishable from missing ----

#[tokio::test]
async fn a_hidden_tool_is_answered_exactly_as_an_unlisted_one() {
    let upstream = Scripted::start(mcp_server).await;
    let envoy = start(POLICY, &upstream).await;
    let answer = |name: &'static str| {
        let url = envoy.mcp_url();
        async move {
            let response = client()
                .post(url)
                .header("content-type", "application/json")
                .header("x-agent-id", "alice")
                .body(call(7, name))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
                .collect();
            headers.sort();
            let body = response.text().await.unwrap().replace(name, "NAME");
            (status, headers, body)
        }
    };
    let hidden = answer("secretTool").await;
    let unlisted = answer("unlistedXY").await;
    assert_eq!(hidden, unlisted);
    assert!(upstream.seen().is_empty());
}
