//! End to end: a real Envoy loading the built module, in front of the demo
//! MCP server (which records everything that reaches it), driven by a real
//! MCP client (rmcp) and by raw HTTP where a client would not send such bytes.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::demo_server::{self, Recorder};
use support::envoy::Envoy;
use support::mcp_client::McpClient;
use support::stack::{error_of, unix_now, Stack};

const CODE_EXEC_POLICY: &str = include_str!("../policy.json");

#[tokio::test]
async fn allowed_call_reaches_the_server() {
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let client = stack.client("alice").await;
    let tools = client.list_tools().await.unwrap();
    assert!(tools.contains(&"asyncExecuteCode".to_string()), "{tools:?}");

    let result = client
        .call(
            "asyncExecuteCode",
            json!({"script": "print(1)", "timeout": 30}),
        )
        .await
        .unwrap();
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    // The upstream saw the request unchanged, caller headers included.
    let forwarded = stack
        .upstream
        .http_requests()
        .into_iter()
        .find(|request| request.tool_name().as_deref() == Some("asyncExecuteCode"))
        .unwrap();
    assert_eq!(forwarded.header("x-agent-id"), Some("alice"));

    let audit = stack.envoy.audit_records();
    let record = audit
        .iter()
        .find(|record| record["tool"] == "asyncExecuteCode")
        .unwrap_or_else(|| panic!("no audit line in:\n{}", stack.envoy.log()));
    assert_eq!(record["decision"], "allowed");
    assert_eq!(record["grant"], "alice");
    assert_eq!(record["session"], json!(client.session_id().unwrap()));
    assert_eq!(record["argument_keys"], json!(["script", "timeout"]));
    assert!(
        !stack.envoy.log().contains("print(1)"),
        "argument values must not be logged"
    );
    client.close().await;
}

#[tokio::test]
async fn explicit_deny_is_answered_by_the_gate() {
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let client = stack.client("alice").await;
    let err = error_of(
        client
            .call("deleteWorkspace", json!({"workspace": "prod"}))
            .await,
    );
    assert_eq!(err.code, -31001, "{err:?}");
    assert!(
        err.message
            .contains("destroys a workspace; ask an operator"),
        "{}",
        err.message
    );
    let data = err.data.unwrap();
    assert_eq!(data["tool"], "deleteWorkspace");
    assert_eq!(data["rule"], "/tools/deleteWorkspace");
    assert_eq!(data["reason"], "destroys a workspace; ask an operator");
    assert!(stack.upstream.calls_reaching("deleteWorkspace").is_empty());
    // The session goes on.
    client
        .call(
            "checkCodeExecStatus",
            json!({"execution_uuid": "00000000-0000-4000-8000-000000000001"}),
        )
        .await
        .unwrap();
    client.close().await;
}

#[tokio::test]
async fn unlisted_tool_is_denied_by_default() {
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let client = stack.client("alice").await;
    let err = error_of(client.call("runShell", json!({"cmd": "ls"})).await);
    assert_eq!(err.code, -31001);
    let data = err.data.unwrap();
    assert_eq!(data["rule"], "/default");
    assert_eq!(data["tool"], "runShell");
    assert!(stack.upstream.calls_reaching("runShell").is_empty());
    // With default allow the same call is forwarded (the server then says it
    // has no such tool).
    let open = Stack::start(r#"{"version":"1","default":"allow"}"#).await;
    let client = open.client("alice").await;
    let err = error_of(client.call("runShell", json!({})).await);
    assert_ne!(err.code, -31001);
    assert_eq!(open.upstream.tool_call_count("runShell"), 1);
}

#[tokio::test]
async fn limits_count_per_grant_per_session_and_globally() {
    let policy = r#"{
        "version": "1", "default": "deny",
        "identity": {"header": "x-agent-id"},
        "tools": {
            "asyncExecuteCode": {"limits": [{"counter": "per_grant", "window": 1000000000, "max": 2, "scope": "grant"}]},
            "checkCodeExecStatus": {"limits": [{"counter": "per_session", "window": 1000000000, "max": 2, "scope": "session"}]},
            "deleteWorkspace": {"limits": [{"counter": "everyone", "window": 1000000000, "max": 3, "scope": "global"}]}
        }
    }"#;
    let stack = Stack::start(policy).await;
    let alice_1 = stack.client("alice").await;
    let alice_2 = stack.client("alice").await;
    let bob = stack.client("bob").await;
    assert_ne!(alice_1.session_id(), alice_2.session_id());
    let exec = json!({"script": "x"});
    let status = json!({"execution_uuid": "u"});
    let wipe = json!({"workspace": "w"});

    // grant: alice's two sessions share 2; bob has his own 2.
    alice_1
        .call("asyncExecuteCode", exec.clone())
        .await
        .unwrap();
    alice_2
        .call("asyncExecuteCode", exec.clone())
        .await
        .unwrap();
    let err = error_of(alice_1.call("asyncExecuteCode", exec.clone()).await);
    assert_eq!(err.code, -31002);
    assert_eq!(err.data.as_ref().unwrap()["counter"], "per_grant");
    bob.call("asyncExecuteCode", exec.clone()).await.unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 3);

    // session: each session has 2, whatever the grant.
    alice_1
        .call("checkCodeExecStatus", status.clone())
        .await
        .unwrap();
    alice_1
        .call("checkCodeExecStatus", status.clone())
        .await
        .unwrap();
    let err = error_of(alice_1.call("checkCodeExecStatus", status.clone()).await);
    assert_eq!(err.code, -31002);
    assert_eq!(
        err.data.as_ref().unwrap()["rule"],
        "/tools/checkCodeExecStatus/limits/0"
    );
    alice_2
        .call("checkCodeExecStatus", status.clone())
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_call_count("checkCodeExecStatus"), 3);

    // global: 3 across everyone.
    alice_1.call("deleteWorkspace", wipe.clone()).await.unwrap();
    alice_2.call("deleteWorkspace", wipe.clone()).await.unwrap();
    bob.call("deleteWorkspace", wipe.clone()).await.unwrap();
    assert_eq!(
        error_of(bob.call("deleteWorkspace", wipe.clone()).await).code,
        -31002
    );
    assert_eq!(
        error_of(alice_1.call("deleteWorkspace", wipe).await).code,
        -31002
    );
    assert_eq!(stack.upstream.tool_call_count("deleteWorkspace"), 3);

    let limited = stack
        .envoy
        .audit_records()
        .into_iter()
        .filter(|record| record["decision"] == "rate_limited")
        .count();
    assert_eq!(limited, 4);
}

#[tokio::test]
async fn rate_limited_call_says_when_to_retry() {
    let policy = r#"{"version":"1","default":"deny","tools":{"asyncExecuteCode":{"limits":[{"counter":"exec","window":"minute","max":1,"scope":"grant"}]}}}"#;
    let stack = Stack::start(policy).await;
    let client = stack.client("alice").await;
    let args = json!({"script": "x"});
    // Keep both calls inside one minute window.
    while unix_now() % 60 > 55 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    client.call("asyncExecuteCode", args.clone()).await.unwrap();
    let before = unix_now();
    let err = error_of(client.call("asyncExecuteCode", args).await);
    let after = unix_now();
    assert_eq!(err.code, -31002);
    let data = err.data.unwrap();
    assert_eq!(data["tool"], "asyncExecuteCode");
    assert_eq!(data["rule"], "/tools/asyncExecuteCode/limits/0");
    assert_eq!(data["counter"], "exec");
    let retry = data["retry_after_seconds"].as_u64().unwrap();
    // Seconds to the end of the current UTC minute, as Envoy's clock saw it.
    let (latest, earliest) = (60 - before % 60, 60 - after % 60);
    assert!(
        (earliest..=latest).contains(&retry),
        "retry_after_seconds {retry} not in {earliest}..={latest}"
    );
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
}

/// PolicyLayer's pages: "Add a rate_limit block to the asyncExecuteCode
/// rule ... setting max: 10 and window: 60". Each caller counts apart.
#[tokio::test]
async fn the_published_rate_limit_block_limits_each_caller() {
    let policy = r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
        "tools":{"asyncExecuteCode":{"rate_limit":{"max":2,"window":1000000000}}}}"#;
    let stack = Stack::start(policy).await;
    let (alice, bob) = (stack.client("alice").await, stack.client("bob").await);
    let args = json!({"script": "x"});
    for _ in 0..2 {
        alice.call("asyncExecuteCode", args.clone()).await.unwrap();
    }
    let err = error_of(alice.call("asyncExecuteCode", args.clone()).await);
    assert_eq!(err.code, -31002);
    let data = err.data.unwrap();
    assert_eq!(data["rule"], "/tools/asyncExecuteCode/rate_limit");
    assert_eq!(data["counter"], "/tools/asyncExecuteCode/rate_limit");
    assert_eq!(data["max"], 2);
    bob.call("asyncExecuteCode", args).await.unwrap();
    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 3);
}

#[tokio::test]
async fn batches_are_refused_and_none_of_them_is_forwarded() {
    let stack = Stack::start(r#"{"version":"1","default":"allow"}"#).await;
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"script":"x"}}},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, body) = stack.post(&batch[..]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(body["id"], Value::Null);
    assert!(!stack.upstream_saw_body(batch));
    assert!(stack.upstream.http_requests().is_empty());
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let stack = Stack::start(r#"{"version":"1","default":"allow"}"#).await;
    for body in [
        &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\""[..],
        b"not json at all",
    ] {
        let (status, reply) = stack.post(body).await;
        assert_eq!(status, 400);
        assert_eq!(reply["error"]["code"], -32700, "{reply}");
        assert_eq!(reply["jsonrpc"], "2.0");
    }
    // A tools/call without a usable id or name.
    let (status, reply) = stack
        .post(r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}}"#)
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let (status, reply) = stack
        .post(r#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":7}}"#)
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone(), reply["id"].clone()),
        (400, json!(-32602), json!("q"))
    );
    assert!(stack.upstream.http_requests().is_empty());
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "invalid")]).await,
        4
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_whether_declared_or_streamed() {
    let stack = Stack::start(r#"{"version":"1","default":"allow","max_body_bytes":1024}"#).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"asyncExecuteCode","arguments":{{"script":"{}"}}}}}}"#,
        "x".repeat(4096)
    );
    let (status, reply) = stack.post(big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(reply["error"]["data"]["max_body_bytes"], 1024, "{reply}");
    // Chunked, without content-length, in small pieces.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
    let (status, _) = stack.post(stream).await;
    assert_eq!(status, 413);
    assert!(stack.upstream.http_requests().is_empty());
}

#[tokio::test]
async fn a_body_split_into_pieces_is_decided_as_a_whole() {
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"deleteWorkspace","arguments":{"workspace":"prod"}}}"#;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(7).map(|chunk| Ok(chunk.to_vec())).collect();
    let (status, reply) = stack
        .post(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["error"]["code"], -31001, "{reply}");
    assert_eq!(reply["id"], 5);
    assert!(stack.upstream.http_requests().is_empty());
}

#[tokio::test]
async fn invalid_policy_is_refused_by_envoy_with_the_path() {
    // Two errors: the log line gives the first, then the other.
    let policy = r#"{"version":"1","default":"deny","tools":{"asyncExecuteCode":{"limits":[{"counter":"c","window":"fortnight","max":10,"scope":"grant"}]},"checkCodeExecStatus":{"require":{"args.execution_uuid":{"regex":"("}}}}}"#;
    let (status, log) = Envoy::start_expecting_refusal(policy);
    assert!(
        !status.success(),
        "Envoy accepted an invalid policy:\n{log}"
    );
    assert!(
        log.contains(r#"mcp-policy: invalid policy: tools.asyncExecuteCode.limits[0].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds) (and 1 more: tools.checkCodeExecStatus.require.args.execution_uuid.regex: invalid regex "(": found open group without closing ')')"#),
        "the refusal does not say why:\n{log}"
    );
}

#[tokio::test]
async fn concurrent_calls_across_four_workers_pass_exactly_max() {
    let policy = r#"{"version":"1","default":"deny","tools":{"checkCodeExecStatus":{"limits":[{"counter":"polls","window":1000000000,"max":50,"scope":"global"}]}}}"#;
    let stack = Stack::start_with_workers(policy, 4).await;
    let mut clients = Vec::new();
    for index in 0..8 {
        clients.push(stack.client(&format!("agent-{index}")).await);
    }
    let calls = clients.iter().flat_map(|client| {
        (0..25).map(move |_| client.call("checkCodeExecStatus", json!({"execution_uuid": "u"})))
    });
    let results = futures::future::join_all(calls).await;
    let passed = results.iter().filter(|result| result.is_ok()).count();
    let limited = results
        .iter()
        .filter(|result| matches!(result, Err(err) if err.code == -31002))
        .count();
    assert_eq!(
        (passed, limited),
        (50, 150),
        "other errors: {:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|e| e.code != -31002)
            .take(3)
            .collect::<Vec<_>>()
    );
    assert_eq!(stack.upstream.tool_call_count("checkCodeExecStatus"), 50);
    // The calls really were spread over several workers: count the workers
    // that accepted connections.
    let stats = stack
        .envoy
        .admin("/stats?filter=worker_.*downstream_cx_total")
        .await;
    let busy_workers = stats
        .lines()
        .filter_map(|line| line.rsplit_once(": "))
        .filter(|(_, count)| count.trim().parse::<u64>().is_ok_and(|count| count > 0))
        .count();
    assert!(
        busy_workers >= 2,
        "connections were not spread over workers:\n{stats}"
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "allowed")]).await,
        50
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "rate_limited")]).await,
        150
    );
}

#[tokio::test]
async fn decisions_are_counted_in_envoy_stats() {
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let client = stack.client("alice").await;
    client
        .call("asyncExecuteCode", json!({"script": "x", "timeout": 60}))
        .await
        .unwrap();
    error_of(
        client
            .call("deleteWorkspace", json!({"workspace": "w"}))
            .await,
    );
    error_of(client.call("runShell", json!({})).await);
    stack.post("{").await;
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "allowed")]).await,
        1
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "denied")]).await,
        2
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "invalid")]).await,
        1
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "rate_limited")]).await,
        0
    );
}

#[tokio::test]
async fn non_post_requests_and_other_methods_pass() {
    let stack = Stack::start(r#"{"version":"1","default":"deny"}"#).await;
    // initialize, notifications/initialized and tools/list all pass through a
    // default-deny policy: only tools/call is gated.
    let client = stack.client("alice").await;
    assert_eq!(client.list_tools().await.unwrap().len(), 6);
    let session = client.session_id().unwrap();
    // A GET (the SSE stream) is not held for a body.
    let response = reqwest::Client::new()
        .get(stack.envoy.mcp_url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success() || response.status().as_u16() == 405,
        "{}",
        response.status()
    );
    assert!(stack
        .upstream
        .http_requests()
        .iter()
        .any(|request| request.method == "GET"));
    client.close().await;
    // The transport sends the DELETE after close() returns: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !stack.upstream.http_requests().iter().any(|request| {
        request.method == "DELETE" && request.header("mcp-session-id") == Some(session.as_str())
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no DELETE of the session within 20 s of close()"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The configuration users copy: it validates, carries policy.json verbatim,
/// and enforces it when run.
#[tokio::test]
async fn shipped_envoy_yaml_validates_and_enforces_policy_json() {
    let shipped =
        std::fs::read_to_string(support::envoy::repo_root().join("envoy/envoy.yaml")).unwrap();

    let embedded: String = shipped
        .split("value: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|line| line.starts_with("                    ") || line.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let embedded: Value = serde_json::from_str(&embedded).unwrap();
    let policy_json: Value = serde_json::from_str(CODE_EXEC_POLICY).unwrap();
    assert_eq!(
        embedded, policy_json,
        "envoy/envoy.yaml must embed policy.json unchanged"
    );

    let validate = std::process::Command::new(support::envoy::envoy_binary())
        .args(["--mode", "validate", "-c", "envoy/envoy.yaml"])
        .current_dir(support::envoy::repo_root())
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    let upstream = Recorder::default();
    let server = tokio::spawn(demo_server::serve(listener, upstream.clone()));
    let wasm = support::envoy::wasm_module();
    let envoy = Envoy::start_with_config(
        |port, admin_port| {
            shipped
                .replace("port_value: 9901", &format!("port_value: {admin_port}"))
                .replace("port_value: 10000", &format!("port_value: {port}"))
                .replace("port_value: 8081", &format!("port_value: {upstream_port}"))
                .replace(
                    "filename: target/wasm32-wasip1/release/mcp_policy.wasm",
                    &format!("filename: {}", wasm.display()),
                )
        },
        1,
    )
    .await;
    let client = McpClient::connect(&envoy.mcp_url(), &[("x-agent-id", "alice")])
        .await
        .unwrap();
    client
        .call("asyncExecuteCode", json!({"script": "x", "timeout": 60}))
        .await
        .unwrap();
    assert_eq!(
        error_of(
            client
                .call("deleteWorkspace", json!({"workspace": "w"}))
                .await
        )
        .code,
        -31001
    );
    assert_eq!(upstream.tool_calls().len(), 1);
    server.abort();
}

/// Envoy's own channels: per-tool counters with the tool as a Prometheus
/// label, the decision in Envoy's access log (filter state), and the audit
/// line with the status the caller got and the duration.
#[tokio::test]
async fn decisions_show_in_prometheus_access_log_and_audit() {
    let policy = r#"{"version":"1","default":"deny","hide":["deleteWorkspace"],
        "tools":{"asyncExecuteCode":{"limits":[{"counter":"c","window":1000000000,"max":1,"scope":"grant"}]}}}"#;
    let stack = Stack::start(policy).await;
    let client = stack.client("alice").await;
    client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    error_of(
        client
            .call("asyncExecuteCode", json!({"script": "x"}))
            .await,
    );
    error_of(
        client
            .call("deleteWorkspace", json!({"workspace": "w"}))
            .await,
    );
    error_of(client.call("runShell", json!({})).await);

    let envoy = &stack.envoy;
    let scrape = envoy.admin("/stats/prometheus").await;
    let tool = |decision: &str, target: &str| {
        support::metrics::sum(
            &scrape,
            mcp_policy::metrics::DECISIONS,
            &[("decision", decision), ("kind", "tool"), ("target", target)],
        )
    };
    assert_eq!(tool("allowed", "asyncExecuteCode"), 1);
    assert_eq!(tool("rate_limited", "asyncExecuteCode"), 1);
    assert_eq!(tool("hidden", "deleteWorkspace"), 1);
    // Unnamed tools are counted under `*`: their names are the caller's to choose.
    assert_eq!(tool("denied", "*"), 1);
    assert_eq!(
        support::metrics::sum(
            &scrape,
            mcp_policy::metrics::GRANT_DECISIONS,
            &[("grant", "anonymous")]
        ),
        4,
        "the policy names no identity: every caller is anonymous"
    );
    assert!(!envoy.admin("/stats/prometheus").await.contains("runShell"));

    // Envoy writes each access log line when its stream ends: wait for the
    // four decided ones (the session's own requests have no decision).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut entries = envoy.access_log(0);
    while entries
        .iter()
        .filter(|entry| !entry["decision"].is_null())
        .count()
        < 4
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        entries = envoy.access_log(0);
    }
    let decided: Vec<(String, String, String, String)> = entries
        .into_iter()
        .filter(|entry| !entry["decision"].is_null())
        .map(|entry| {
            let field = |name: &str| {
                entry[name]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| entry[name].to_string())
            };
            (
                field("tool"),
                field("decision"),
                field("rule"),
                field("status"),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            (
                "asyncExecuteCode".into(),
                "allowed".into(),
                "null".into(),
                "200".into()
            ),
            (
                "asyncExecuteCode".into(),
                "rate_limited".into(),
                "/tools/asyncExecuteCode/limits/0".into(),
                "200".into()
            ),
            (
                "deleteWorkspace".into(),
                "hidden".into(),
                "/hide".into(),
                "200".into()
            ),
            (
                "runShell".into(),
                "denied".into(),
                "/default".into(),
                "200".into()
            ),
        ],
        "access log:\n{}",
        envoy.log()
    );
    let audit = envoy.audit_records();
    assert_eq!(audit.len(), 4);
    assert!(
        audit
            .iter()
            .all(|r| r["status"] == 200 && r["duration_ms"].is_u64()),
        "{audit:?}"
    );
}

/// The audit line follows Envoy's log level at runtime (`/logging`), which
/// the filter reads at most once a second per worker; the decision's filter
/// state, which the access log writes, does not depend on it.
#[tokio::test]
async fn audit_lines_follow_envoys_log_level_at_runtime() {
    /// Sends one call the gate denies; whether Envoy wrote its audit line.
    async fn decide_one(stack: &Stack, id: u64) -> bool {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "runShell", "arguments": {}}});
        let before = stack.envoy.audit_records().len();
        let (status, answer) = stack.post(body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["error"]["code"], -31001, "{answer}");
        stack.envoy.audit_records().len() > before
    }
    async fn set_level(stack: &Stack, level: &str) {
        let url = format!(
            "http://127.0.0.1:{}/logging?wasm={level}",
            stack.envoy.admin_port
        );
        let answer = reqwest::Client::new().post(&url).send().await.unwrap();
        assert!(answer.status().is_success(), "{url}: {}", answer.status());
    }
    /// Sends calls for up to 5 s until one is (or is not) logged.
    async fn until_logged(stack: &Stack, sent: &mut u64, logged: bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            *sent += 1;
            if decide_one(stack, *sent).await == logged {
                return true;
            }
        }
        false
    }
    let stack = Stack::start(CODE_EXEC_POLICY).await;
    let mut sent = 1;
    assert!(
        decide_one(&stack, sent).await,
        "logged at Envoy's level info"
    );
    // Soon after the change, calls are no longer written...
    set_level(&stack, "warning").await;
    assert!(
        until_logged(&stack, &mut sent, false).await,
        "still logging at level warning:\n{}",
        stack.envoy.log()
    );
    // ... and once it is set back, they are again.
    set_level(&stack, "info").await;
    assert!(
        until_logged(&stack, &mut sent, true).await,
        "no audit line at level info again:\n{}",
        stack.envoy.log()
    );
    // The access log has every decision, whatever the level.
    let sent = usize::try_from(sent).unwrap();
    let decided = stack
        .envoy
        .access_log(sent)
        .into_iter()
        .filter(|entry| entry["decision"] == "denied" && entry["tool"] == "runShell")
        .count();
    assert_eq!(decided, sent, "access log:\n{}", stack.envoy.log());
}
