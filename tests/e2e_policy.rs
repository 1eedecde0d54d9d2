//! End to end, policy depth: grants and identity sources, hidden tools in
//! `tools/list` answers (JSON and event streams), monitor mode, denials as
//! tool results. Real Envoy, real MCP client, recording upstream.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::{Envoy, EnvoyOptions};
use support::mcp_client::result_json;
use support::stack::{error_of, Stack};

/// Every tool of the demo server, sorted.
const ALL_TOOLS: [&str; 6] = [
    "asyncExecuteCode",
    "call_tool",
    "checkCodeExecStatus",
    "confirmDeploy",
    "deleteWorkspace",
    "generateReport",
];

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// [`ALL_TOOLS`] without `hidden`.
fn all_but(hidden: &[&str]) -> Vec<&'static str> {
    ALL_TOOLS
        .into_iter()
        .filter(|tool| !hidden.contains(tool))
        .collect()
}

#[tokio::test]
async fn hidden_tools_vanish_from_event_stream_listings_and_calls() {
    let policy = r#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},"hide":["deleteWorkspace"]}"#;
    let stack = Stack::start(policy).await;
    let client = stack.client("alice").await;
    assert_eq!(
        sorted(client.list_tools().await.unwrap()),
        all_but(&["deleteWorkspace"])
    );
    // The upstream did list it: the gate removed it on the way back.
    assert!(stack
        .upstream
        .http_requests()
        .iter()
        .any(|r| r.jsonrpc_method().as_deref() == Some("tools/list")));

    let err = error_of(
        client
            .call("deleteWorkspace", json!({"workspace": "w"}))
            .await,
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (-32602, "Unknown tool: deleteWorkspace")
    );
    assert_eq!(err.data, None);
    assert!(stack.upstream.calls_reaching("deleteWorkspace").is_empty());
    let audit = stack.envoy.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["decision"] == "hidden" && r["rule"] == "/hide"),
        "{audit:?}"
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "hidden")]).await,
        1
    );
}

#[tokio::test]
async fn hidden_tools_vanish_from_json_listings() {
    let policy =
        r#"{"version":"1","default":"allow","hide":["deleteWorkspace","asyncExecuteCode"]}"#;
    let stack = Stack::start_json_upstream(policy).await;
    // A raw look at the answer first: valid JSON, and the upstream's
    // content-length (of the unfiltered list) removed, so none is left stale
    // (a client trusting a stale one waits for bytes that never come).
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::Client::new()
            .post(stack.envoy.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(r#"{"jsonrpc":"2.0","id":"list-1","method":"tools/list"}"#)
            .send(),
    )
    .await
    .expect("no answer within 10 s")
    .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        response.headers().get("content-length"),
        None,
        "{:?}",
        response.headers()
    );
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .expect("the body did not end within 10 s")
        .unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["id"], "list-1");
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, all_but(&["deleteWorkspace", "asyncExecuteCode"]));
    // And through a real MCP client.
    let client = stack.client("alice").await;
    let listed = tokio::time::timeout(Duration::from_secs(10), client.list_tools())
        .await
        .expect("tools/list did not end within 10 s");
    assert_eq!(
        sorted(listed.unwrap()),
        all_but(&["deleteWorkspace", "asyncExecuteCode"])
    );
}

#[tokio::test]
async fn hide_denied_lists_only_what_the_grant_can_call() {
    let tools = r#""tools":{"asyncExecuteCode":{},"deleteWorkspace":{"action":"deny"}}"#;
    let stack = Stack::start(&format!(
        r#"{{"version":"1","default":"deny","list":"hide_denied",{tools}}}"#
    ))
    .await;
    let client = stack.client("alice").await;
    assert_eq!(client.list_tools().await.unwrap(), vec!["asyncExecuteCode"]);
    // Denied tools stay visible by default.
    let stack = Stack::start(&format!(r#"{{"version":"1","default":"deny",{tools}}}"#)).await;
    let client = stack.client("alice").await;
    assert_eq!(sorted(client.list_tools().await.unwrap()), ALL_TOOLS);
}

#[tokio::test]
async fn grants_override_the_fields_they_name() {
    let policy = r#"{
        "version": "1", "default": "deny",
        "identity": {"header": "x-agent-id"},
        "hide": ["deleteWorkspace"],
        "tools": {"checkCodeExecStatus": {}},
        "grants": {
            "ci-runner": {"default": "allow", "hide": []},
            "intern": {"tools": {"checkCodeExecStatus": {"action": "deny", "on_deny": "interns wait for results"}}}
        }
    }"#;
    let stack = Stack::start(policy).await;
    let status = json!({"execution_uuid": "u"});

    let alice = stack.client("alice").await;
    assert_eq!(
        sorted(alice.list_tools().await.unwrap()),
        all_but(&["deleteWorkspace"])
    );
    assert_eq!(
        error_of(alice.call("asyncExecuteCode", json!({"script": "x"})).await)
            .data
            .unwrap()["rule"],
        "/default"
    );
    alice
        .call("checkCodeExecStatus", status.clone())
        .await
        .unwrap();

    let ci = stack.client("ci-runner").await;
    assert_eq!(sorted(ci.list_tools().await.unwrap()), ALL_TOOLS);
    ci.call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    ci.call("deleteWorkspace", json!({"workspace": "w"}))
        .await
        .unwrap();

    let intern = stack.client("intern").await;
    let err = error_of(intern.call("checkCodeExecStatus", status).await);
    let data = err.data.unwrap();
    assert_eq!(data["rule"], "/grants/intern/tools/checkCodeExecStatus");
    assert_eq!(data["reason"], "interns wait for results");
    // Fields the grant does not name come from the top level: hidden, and
    // under default deny answered exactly as an unlisted tool is.
    let hidden = error_of(
        intern
            .call("deleteWorkspace", json!({"workspace": "w"}))
            .await,
    );
    assert_eq!(
        (hidden.code, hidden.data.unwrap()["rule"].clone()),
        (-31001, json!("/default"))
    );

    assert_eq!(stack.upstream.tool_call_count("asyncExecuteCode"), 1);
    assert_eq!(stack.upstream.tool_call_count("deleteWorkspace"), 1);
    assert_eq!(stack.upstream.tool_call_count("checkCodeExecStatus"), 1);
}

#[tokio::test]
async fn bearer_tokens_select_the_grant_and_stay_at_the_gate() {
    let token = "s3cret-ci-token";
    let policy = format!(
        r#"{{"version":"1","default":"deny",
            "identity":{{"bearer_tokens":{{"{}":"ci-runner"}}}},
            "grants":{{"ci-runner":{{"default":"allow"}}}}}}"#,
        mcp_policy::policy::sha256_hex(token.as_bytes())
    );
    let stack = Stack::start(&policy).await;
    let authorization = format!("Bearer {token}");
    let client = stack
        .client_with(&[("authorization", &authorization)])
        .await;
    client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    let requests = stack.upstream.http_requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.header("authorization").is_none()),
        "the token reached the server"
    );
    let audit = stack.envoy.audit_records();
    assert_eq!(audit.last().unwrap()["grant"], "ci-runner");
    assert!(!stack.envoy.log().contains(token), "the token was logged");

    stack.upstream.clear();
    let http = reqwest::Client::new();
    for header in [None, Some("Bearer wrong"), Some("Basic czNjcmV0")] {
        let mut request = http
            .post(stack.envoy.mcp_url())
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{}}}"#);
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -31003, "{header:?}");
    }
    let get = http.get(stack.envoy.mcp_url()).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 401);
    assert!(stack.upstream.http_requests().is_empty());
    // Refused callers are `unauthorized`, apart from the policy's denials.
    assert_eq!(
        support::metrics::decisions(
            &stack.envoy,
            &[("decision", "unauthorized"), ("kind", "none")]
        )
        .await,
        4
    );
    assert_eq!(
        support::metrics::decisions(&stack.envoy, &[("decision", "denied")]).await,
        0
    );
}

#[tokio::test]
async fn monitor_mode_decides_and_counts_but_blocks_nothing() {
    let policy = r#"{"version":"1","default":"deny","mode":"monitor",
        "tools":{"asyncExecuteCode":{"limits":[{"counter":"c","window":1000000000,"max":1,"scope":"grant"}]},
                 "deleteWorkspace":{"action":"deny"}},
        "hide":["checkCodeExecStatus"]}"#;
    let stack = Stack::start(policy).await;
    let client = stack.client("alice").await;
    assert_eq!(sorted(client.list_tools().await.unwrap()), ALL_TOOLS);
    client
        .call("deleteWorkspace", json!({"workspace": "w"}))
        .await
        .unwrap();
    client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    client
        .call("checkCodeExecStatus", json!({"execution_uuid": "u"}))
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_calls().len(), 4);

    let decisions: Vec<(String, bool)> = stack
        .envoy
        .audit_records()
        .iter()
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_string(),
                r["enforced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("denied".to_string(), false),
            ("allowed".to_string(), false),
            ("rate_limited".to_string(), false),
            ("hidden".to_string(), false),
        ]
    );
    for (metric, count) in [
        ("denied", 1),
        ("allowed", 1),
        ("rate_limited", 1),
        ("hidden", 1),
    ] {
        assert_eq!(
            support::metrics::decisions(&stack.envoy, &[("decision", metric)]).await,
            count,
            "{metric}"
        );
    }
}

#[tokio::test]
async fn denials_can_be_answered_as_tool_results() {
    let policy = r#"{"version":"1","default":"deny","deny_as":"tool_result",
        "tools":{"asyncExecuteCode":{"limits":[{"counter":"c","window":1000000000,"max":1,"scope":"grant"}]}}}"#;
    let stack = Stack::start(policy).await;
    let client = stack.client("alice").await;
    let denied = client
        .call("deleteWorkspace", json!({"workspace": "w"}))
        .await
        .unwrap();
    assert_eq!(denied["isError"], true);
    let text = denied["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[POLICY DENIED] Tool 'deleteWorkspace' denied by policy"),
        "{text}"
    );
    client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    let limited = client
        .call("asyncExecuteCode", json!({"script": "x"}))
        .await
        .unwrap();
    assert_eq!(limited["isError"], true);
    assert!(limited["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("[RATE LIMITED]"));
    assert!(result_json(&limited).is_none());
    assert_eq!(stack.upstream.tool_calls().len(), 1);
}

/// An upstream whose answer to a POST is an event stream that stays open:
/// a notification, the `tools/list` answer, then a tick every 50 ms.
async fn serve_endless_stream(listener: tokio::net::TcpListener) {
    use axum::body::{Body, Bytes};
    use axum::response::Response;
    let app = axum::Router::new().fallback(|body: Bytes| async move {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = request["id"].clone();
        let answer = json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
            {"name":"asyncExecuteCode","inputSchema":{"type":"object"}},
            {"name":"deleteWorkspace","inputSchema":{"type":"object"}}]}});
        let head = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"before\"}}\n\n")),
            Ok(Bytes::from(format!("event: message\ndata: {answer}\n\n"))),
        ]);
        let ticks = futures::StreamExt::then(futures::stream::iter(0..), |tick| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Bytes::from(format!("data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"tick\":{tick}}}}}\n\n")))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures::StreamExt::chain(head, ticks)))
            .unwrap()
    });
    axum::serve(listener, app).await.unwrap();
}

#[tokio::test]
async fn a_long_lived_stream_keeps_flowing_after_the_filtered_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_endless_stream(listener));
    let policy = r#"{"version":"1","default":"allow","hide":["deleteWorkspace"]}"#;
    let envoy = Envoy::start(EnvoyOptions::new(policy, upstream_port)).await;

    let mut response = reqwest::Client::new()
        .post(envoy.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":77,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    let mut received = String::new();
    let events = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let chunk = response.chunk().await.unwrap().expect("stream ended early");
            received.push_str(std::str::from_utf8(&chunk).unwrap());
            let events: Vec<String> = received.split("\n\n").map(str::to_string).collect();
            // Complete events are all but the last piece; wait for 5 ticks after the answer.
            if events.len() > 1
                && events[..events.len() - 1]
                    .iter()
                    .filter(|e| e.contains("tick"))
                    .count()
                    >= 5
            {
                return events;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "events stopped flowing; got:\n{received}\nEnvoy log:\n{}",
            envoy.log()
        )
    });

    assert!(events[0].contains("\"before\""), "{events:?}");
    assert!(
        events[1].starts_with("event: message\ndata: "),
        "{}",
        events[1]
    );
    let answer: Value =
        serde_json::from_str(events[1].strip_prefix("event: message\ndata: ").unwrap()).unwrap();
    assert_eq!(answer["id"], 77);
    assert_eq!(answer["result"]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(answer["result"]["tools"][0]["name"], "asyncExecuteCode");
    for (index, event) in events[2..7].iter().enumerate() {
        assert!(event.contains(&format!("\"tick\":{index}")), "{event}");
    }
    server.abort();
}

/// The repository's policy.json: the seed server's tools with argument rules
/// (its approve_if is tested with the approval service in e2e_approval.rs).
#[tokio::test]
async fn argument_rules_gate_the_code_execution_tools() {
    let stack = Stack::start(include_str!("../policy.json")).await;
    let client = stack.client("alice").await;
    let denied = |result| {
        let err = error_of(result);
        assert_eq!(err.code, -31001, "{err:?}");
        err.data.unwrap()["rule"].as_str().unwrap().to_string()
    };
    assert_eq!(
        denied(
            client
                .call(
                    "asyncExecuteCode",
                    json!({"script": "import pty\npty.spawn('/bin/sh')", "timeout": 30})
                )
                .await
        ),
        "/tools/asyncExecuteCode/deny_if/args.script/regex"
    );
    assert_eq!(
        denied(
            client
                .call(
                    "asyncExecuteCode",
                    json!({"script": "print(1)", "timeout": 900})
                )
                .await
        ),
        "/tools/asyncExecuteCode/require/args.timeout/lte"
    );
    // A number written as a string is not a number: the require fails.
    assert_eq!(
        denied(
            client
                .call(
                    "asyncExecuteCode",
                    json!({"script": "print(1)", "timeout": "300"})
                )
                .await
        ),
        "/tools/asyncExecuteCode/require/args.timeout/lte"
    );
    assert_eq!(
        denied(
            client
                .call("asyncExecuteCode", json!({"script": "print(1)"}))
                .await
        ),
        "/tools/asyncExecuteCode/require/args.timeout/lte"
    );
    assert!(stack.upstream.calls_reaching("asyncExecuteCode").is_empty());

    let started = client
        .call(
            "asyncExecuteCode",
            json!({"script": "print(1)", "timeout": 300}),
        )
        .await
        .unwrap();
    let uuid = result_json(&started).unwrap()["execution_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        denied(
            client
                .call(
                    "checkCodeExecStatus",
                    json!({"execution_uuid": "../../etc/passwd"})
                )
                .await
        ),
        "/tools/checkCodeExecStatus/require/args.execution_uuid/regex"
    );
    client
        .call("checkCodeExecStatus", json!({"execution_uuid": uuid}))
        .await
        .unwrap();
    assert_eq!(stack.upstream.tool_calls().len(), 2);
    let err = error_of(
        client
            .call(
                "asyncExecuteCode",
                json!({"script": "os.fork()", "timeout": 1}),
            )
            .await,
    );
    assert_eq!(
        err.data.unwrap()["reason"],
        "timeout must be given and at most 300 s, and scripts that spawn interactive shells are refused (a tripwire, not a sandbox)"
    );
}
