//! The whole MCP surface through a real Envoy, at both protocol revisions
//! (2025-11-25 with sessions, 2026-07-28 without), driven by the official
//! Rust SDK (rmcp) against the demo server, which protects nothing on
//! purpose: every refusal here is the gate's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rmcp::model::ProtocolVersion;
use serde_json::{json, Value};
use support::demo_server::{
    CONFIRM_TOOL, META_TOOL, PUBLIC_MAIN_URI, PUBLIC_README_URI, PUBLIC_TEMPLATE, REPORT_TOOL,
    SECRET_PROMPT, SECRET_TEXT, SECRET_URI, TRAVERSAL_FORMS,
};
use support::mcp_client::{CallOutcome, ClientOptions, McpClient, PROTOCOL_2026, PROTOCOL_VERSION};
use support::stack::Stack;

/// A filesystem-style policy: only /srv/public may be read; one prompt
/// hidden, one with an argument rule; deploys once a day; a meta-tool.
const POLICY: &str = r#"{
  "version": "1", "default": "allow",
  "identity": { "header": "x-agent-id" },
  "hide": ["prompt:secret_prompt"],
  "list": "hide_denied",
  "default_resources": "deny",
  "resources": { "file:///srv/public/*": {} },
  "prompts": { "summarize": { "require": { "args.text": { "max_length": 40 } } } },
  "tools": {
    "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } },
    "deleteWorkspace": { "action": "deny", "reason": "destructive" },
    "confirmDeploy": { "limits": [{ "counter": "deploys", "window": "day", "max": 1, "scope": "grant" }] }
  },
  "methods": { "logging/setLevel": "deny" }
}"#;

const REVISIONS: [ProtocolVersion; 2] = [PROTOCOL_VERSION, PROTOCOL_2026];

async fn client(stack: &Stack, grant: &str, options: ClientOptions) -> McpClient {
    McpClient::connect_with(&stack.envoy.mcp_url(), &[("x-agent-id", grant)], options)
        .await
        .unwrap_or_else(|err| panic!("connect through Envoy: {err}\n{}", stack.envoy.log()))
}

fn code<T: std::fmt::Debug>(result: Result<T, support::mcp_client::RpcError>) -> i32 {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(err) => err.code,
    }
}

/// The gate's refusal of what the caller may not reach: denied (-31001), or
/// unknown to it (-32602, hidden); never a transport or server error.
fn assert_gate_refused<T: std::fmt::Debug>(
    result: Result<T, support::mcp_client::RpcError>,
    what: &str,
) {
    let code = code(result);
    assert!(code == -31001 || code == -32602, "{what}: {code}");
}

#[tokio::test]
async fn resources_outside_the_allowed_tree_never_come_back() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let client = client(&stack, "alice", ClientOptions::at(version.clone())).await;
        let readme = client.read_resource(PUBLIC_README_URI).await.unwrap();
        assert!(
            readme.to_string().contains("Demo project"),
            "{version}: {readme}"
        );
        for form in TRAVERSAL_FORMS.iter().chain(&[SECRET_URI]) {
            let answer = client.read_resource(form).await;
            let text = format!("{answer:?}");
            assert!(
                !text.contains(SECRET_TEXT.trim()),
                "{version}: {form} leaked: {text}"
            );
            let code = answer.expect_err(form).code;
            assert!(
                code == -31001 || code == -32602,
                "{version}: {form}: {code}"
            );
        }
        // Subscribing (2025-11-25) or listening (2026-07-28) to the secret is refused too.
        if version == PROTOCOL_2026 {
            assert_gate_refused(
                client
                    .listen(&[PUBLIC_README_URI, SECRET_URI])
                    .await
                    .map(|_| "listening"),
                "listen to the secret",
            );
            let listening = client.listen(&[PUBLIC_README_URI]).await.unwrap();
            assert_eq!(listening.acknowledged_uris(), [PUBLIC_README_URI]);
            listening.cancel().await.unwrap();
        } else {
            assert_gate_refused(
                client.subscribe("file:///srv/public/%2e%2e/.env").await,
                "subscribe to the secret",
            );
            client.subscribe(PUBLIC_MAIN_URI).await.unwrap();
        }
        client.close().await;
    }
    // Nothing that names the secret ever reached the server.
    for method in [
        "resources/read",
        "resources/subscribe",
        "subscriptions/listen",
    ] {
        let requests = stack.upstream.requests_with_method(method);
        assert!(
            requests
                .iter()
                .all(|request| !String::from_utf8_lossy(&request.body).contains(".env")),
            "{method}: {requests:?}"
        );
    }
    // The allowed reads, subscription and listen did.
    for method in [
        "resources/read",
        "resources/subscribe",
        "subscriptions/listen",
    ] {
        assert!(
            !stack.upstream.requests_with_method(method).is_empty(),
            "no {method} reached the server"
        );
    }
    let audit = stack.envoy.audit_records();
    assert!(audit
        .iter()
        .any(|record| record["kind"] == "resource" && record["decision"] == "denied"));
}

#[tokio::test]
async fn prompts_are_governed_at_both_revisions() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let client = client(&stack, "alice", ClientOptions::at(version.clone())).await;
        let names = client.prompt_names().await.unwrap();
        assert!(
            names.contains(&"summarize".to_string()),
            "{version}: {names:?}"
        );
        assert!(
            !names.contains(&SECRET_PROMPT.to_string()),
            "{version}: {names:?}"
        );
        client
            .get_prompt("summarize", json!({"text": "short"}))
            .await
            .unwrap();
        let long = "a text far longer than the forty characters the rule allows";
        assert_eq!(
            code(client.get_prompt("summarize", json!({"text": long})).await),
            -31001,
            "{version}"
        );
        // Hidden: answered as a prompt that does not exist.
        assert_eq!(
            code(
                client
                    .get_prompt(SECRET_PROMPT, json!({"topic": "x"}))
                    .await
            ),
            -32602,
            "{version}"
        );
        client.close().await;
    }
    assert_eq!(
        stack.upstream.method_count("prompts/get"),
        2,
        "only the allowed gets reached the server"
    );
}

#[tokio::test]
async fn completions_follow_their_prompt() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let client = client(&stack, "alice", ClientOptions::at(version.clone())).await;
        assert!(
            client
                .complete_prompt("summarize", "style", "b")
                .await
                .is_ok(),
            "{version}"
        );
        assert_gate_refused(
            client.complete_prompt(SECRET_PROMPT, "topic", "c").await,
            &format!("{version}: completion of the hidden prompt"),
        );
        assert!(
            client
                .complete_resource(PUBLIC_TEMPLATE, "path", "r")
                .await
                .is_ok(),
            "{version}"
        );
        client.close().await;
    }
    let completions = stack.upstream.requests_with_method("completion/complete");
    assert_eq!(completions.len(), 2 * REVISIONS.len(), "{completions:?}");
    assert!(
        completions
            .iter()
            .all(|request| !String::from_utf8_lossy(&request.body).contains(SECRET_PROMPT)),
        "{completions:?}"
    );
}

#[tokio::test]
async fn listings_show_each_caller_its_own_view() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let client = client(&stack, "alice", ClientOptions::at(version.clone())).await;
        let uris = client.resource_uris().await.unwrap();
        assert!(
            uris.contains(&PUBLIC_README_URI.to_string()),
            "{version}: {uris:?}"
        );
        assert!(
            !uris.iter().any(|uri| uri.contains(".env")),
            "{version}: {uris:?}"
        );
        // A rewritten listing must not be shared across callers by caches.
        let raw = client.request("prompts/list", json!({})).await.unwrap();
        if version == PROTOCOL_2026 {
            assert_eq!(raw["cacheScope"], "private", "{raw}");
        }
        client.close().await;
    }
}

#[tokio::test]
async fn a_task_is_only_its_creators() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let alice = client(
            &stack,
            "alice",
            ClientOptions::at(version.clone()).with_tasks(),
        )
        .await;
        let bob = client(
            &stack,
            "bob",
            ClientOptions::at(version.clone()).with_tasks(),
        )
        .await;
        let (task, _) = alice
            .call_as_task(REPORT_TOOL, json!({"topic": "q3", "delay_ms": 0}), 60_000)
            .await
            .unwrap();
        alice.get_task(&task).await.unwrap();
        assert_eq!(code(bob.get_task(&task).await), -32602, "{version}");
        assert_eq!(code(bob.cancel_task(&task).await), -32602, "{version}");
        if version != PROTOCOL_2026 {
            let listed = bob.list_tasks().await.unwrap();
            assert_eq!(listed["tasks"], json!([]), "{version}: {listed}");
            let mine = alice.list_tasks().await.unwrap();
            assert!(mine.to_string().contains(&task), "{version}: {mine}");
        }
        alice.close().await;
        bob.close().await;
    }
}

#[tokio::test]
async fn a_multi_round_trip_call_counts_once_and_a_forged_state_counts() {
    let stack = Stack::start(POLICY).await;
    let client = client(
        &stack,
        "alice",
        ClientOptions::at(PROTOCOL_2026).with_elicitation_form(),
    )
    .await;
    let environment = json!({"environment": "staging"});
    let state = match client
        .call_once(CONFIRM_TOOL, environment.clone())
        .await
        .unwrap()
    {
        CallOutcome::InputRequired { request_state, .. } => request_state.unwrap(),
        other => panic!("expected input required, got {}", other.json()),
    };
    // The retry with the server's state is the same call: not counted again
    // (deploys: once a day).
    let done = client
        .retry(
            CONFIRM_TOOL,
            environment.clone(),
            Some(&state),
            json!({"confirm": {"action": "accept", "content": {"confirm": true}}}),
        )
        .await
        .unwrap();
    assert!(matches!(done, CallOutcome::Complete(_)), "{}", done.json());
    // A forged state is a new call: refused by the limit.
    let forged = client
        .retry(CONFIRM_TOOL, environment, Some("forged"), Value::Null)
        .await;
    assert_eq!(forged.map(|o| o.json().clone()).unwrap_err().code, -31002);
    client.close().await;
}

#[tokio::test]
async fn a_meta_tool_is_decided_by_the_tool_it_runs() {
    let stack = Stack::start(POLICY).await;
    for version in REVISIONS {
        let client = client(&stack, "alice", ClientOptions::at(version.clone())).await;
        let refused = client
            .call(
                META_TOOL,
                json!({"name": "deleteWorkspace", "arguments": {"workspace": "w"}}),
            )
            .await;
        let error = refused.unwrap_err();
        assert_eq!(
            (error.code, error.data.clone().unwrap()["tool"].clone()),
            (-31001, json!("deleteWorkspace")),
            "{version}"
        );
        // The meta-tool running itself would run a tool nothing decided.
        let nested = client
            .call(
                META_TOOL,
                json!({"name": META_TOOL, "arguments": {"name": "deleteWorkspace", "arguments": {"workspace": "w"}}}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            (nested.code, nested.data.clone().unwrap()["reason"].clone()),
            (-31001, json!("a meta-tool may not run another meta-tool")),
            "{version}"
        );
        client
            .call(
                META_TOOL,
                json!({"name": "checkCodeExecStatus", "arguments": {"execution_uuid": "u"}}),
            )
            .await
            .unwrap();
        client.close().await;
    }
    assert_eq!(stack.upstream.tool_call_count("deleteWorkspace"), 0);
    assert_eq!(
        stack.upstream.tool_call_count(META_TOOL),
        2,
        "only the two allowed calls"
    );
    let audit = stack.envoy.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["tool"] == META_TOOL && r["invokes"] == "checkCodeExecStatus"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn methods_and_mirror_headers_are_enforced() {
    let stack = Stack::start(POLICY).await;
    let legacy = client(&stack, "alice", ClientOptions::at(PROTOCOL_VERSION)).await;
    let denied = legacy
        .request("logging/setLevel", json!({"level": "debug"}))
        .await;
    assert_eq!(denied.unwrap_err().code, -31001);
    legacy.close().await;
    // At 2026-07-28 a request without Mcp-Method is refused by the gate,
    // before the server sees it.
    let current = client(&stack, "alice", ClientOptions::at(PROTOCOL_2026)).await;
    let body = current.envelope(
        "tools/call",
        json!({"name": "checkCodeExecStatus", "arguments": {"execution_uuid": "gate-check"}}),
    );
    let headers: Vec<(String, String)> = current
        .headers_for(&body)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("mcp-method"))
        .collect();
    let raw = current.post_with_headers(&body, &headers).await.unwrap();
    assert_eq!(raw.status, 400);
    assert_eq!(
        raw.messages.first().map(|m| m["error"]["code"].clone()),
        Some(json!(-32020))
    );
    assert!(!stack
        .upstream
        .http_requests()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains("gate-check")));
    current.close().await;
}

/// The conformance-style policy (allow everything) passes all traffic,
/// at both revisions, untouched.
#[tokio::test]
async fn an_allow_all_policy_passes_everything() {
    let stack = Stack::start(r#"{"version": "1", "default": "allow"}"#).await;
    for version in REVISIONS {
        let client = client(
            &stack,
            "alice",
            ClientOptions::at(version.clone()).with_tasks(),
        )
        .await;
        assert_eq!(client.list_tools().await.unwrap().len(), 6, "{version}");
        assert!(client
            .prompt_names()
            .await
            .unwrap()
            .contains(&SECRET_PROMPT.to_string()));
        let secret = client.read_resource(SECRET_URI).await.unwrap();
        assert!(secret.to_string().contains("SECRET="), "{version}");
        client
            .get_prompt(SECRET_PROMPT, json!({"topic": "x"}))
            .await
            .unwrap();
        client
            .complete_prompt(SECRET_PROMPT, "topic", "c")
            .await
            .unwrap();
        let (task, _) = client
            .call_as_task(REPORT_TOOL, json!({"topic": "t", "delay_ms": 0}), 60_000)
            .await
            .unwrap();
        client.get_task(&task).await.unwrap();
        client.close().await;
    }
}

/// MCP forbids reusing a request id within a session, and servers (rmcp, the
/// TypeScript SDK) send an answer to the stream that last sent its id: a
/// `tools/list` sent with the id of a call in flight had its answer, every
/// hidden entry in it, come back on the call's stream, which the gate does
/// not read as a listing. The id is the call's until its answer is complete.
#[tokio::test]
async fn a_request_id_in_flight_is_not_sent_again_in_its_session() {
    let stack = Stack::start(POLICY).await;
    let client = client(&stack, "alice", ClientOptions::at(PROTOCOL_VERSION)).await;
    assert!(client.session_id().is_some(), "2025-11-25 has sessions");
    let with_id = |mut body: Value| {
        body["id"] = json!("same-id");
        body
    };
    let call = with_id(client.envelope(
        "tools/call",
        json!({"name": REPORT_TOOL, "arguments": {"topic": "q4", "delay_ms": 3000}}),
    ));
    let listing = with_id(client.envelope("prompts/list", json!({})));
    let (called, refused) = tokio::join!(client.post(&call), async {
        // The call is decided (its id claimed) well within this.
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        client.post(&listing).await
    });
    let refused = refused.unwrap();
    assert_eq!(
        refused.status,
        400,
        "{}\n{}",
        refused.body,
        stack.envoy.log()
    );
    let error = &refused.answer_to(&json!("same-id")).unwrap()["error"];
    assert_eq!(error["code"], -32600, "{error}");
    let called = called.unwrap();
    assert_eq!(called.status, 200, "{}", called.body);
    let answer = called.answer_to(&json!("same-id")).unwrap();
    assert!(answer["result"]["content"].is_array(), "{answer}");
    // Its answer complete, the id is free: the listing goes, filtered.
    let listed = client.post(&listing).await.unwrap();
    let prompts = &listed.answer_to(&json!("same-id")).unwrap()["result"]["prompts"];
    let names: Vec<&str> = prompts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|prompt| prompt["name"].as_str())
        .collect();
    assert!(
        !names.is_empty() && !names.contains(&SECRET_PROMPT),
        "{names:?}"
    );
    client.close().await;
}
