//! End to end, "require approval": a real Envoy with the module, the shipped
//! approval service on a real `redis-server`, an MCP agent, and a person
//! approving in a real browser (Debian's headless Chromium through
//! chromedriver).
//!
//! - The rmcp client (2025-11-25, no URL elicitation): a risky call is held
//!   and answered `-31004` with the link; nothing reaches the server; the
//!   page shows the call; the person approves; the same call goes through
//!   exactly once; a replay and changed arguments wait again; a denial's
//!   reason reaches the agent; the audit line names the approval and approver.
//! - Clients that declared URL-mode elicitation, at 2025-11-25 (`-32042`)
//!   and at 2026-07-28 (an `InputRequiredResult`; the retry reaches the
//!   server without the gate's `requestState` and `inputResponses`), and a
//!   2026-07-28 client without it (`-31004`).
//! - The service down: `failure_mode` closed refuses, open forwards.
//!
//! Needs the module (`make wasm`), Envoy, `redis-server`, `chromium`,
//! `chromedriver` and the service binary in `$MCP_APPROVAL_SERVICE`
//! (`make test` provides them all).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rmcp::model::ProtocolVersion;
use serde_json::{json, Value};
use support::approval::{approval_cluster, ApprovalService, Browser, Redis};
use support::demo_server::ServeOptions;
use support::envoy::{config_yaml, Envoy};
use support::mcp_client::{CallOutcome, ClientOptions, McpClient};
use support::stack::recording_upstream;

const RISKY: &str = "import subprocess\nsubprocess.run(['ls', '/'])";
const REASON: &str = "scripts that start processes need a look";

fn policy(public_url: &str, failure_mode: &str) -> String {
    json!({
        "version": "1",
        "default": "deny",
        "identity": {"header": "x-agent-id"},
        "approval_service": {
            "cluster": "mcp_approval", "public_url": public_url,
            "timeout_ms": 2000, "failure_mode": failure_mode
        },
        "tools": {
            "asyncExecuteCode": {
                "require": {"args.timeout": {"lte": 300}},
                "approve_if": {"args.script": {"regex": "subprocess|os\\.system|socket"}},
                "approval": {"reason": REASON, "ttl_seconds": 600},
                "limits": [{"counter": "exec", "window": "minute", "max": 20, "scope": "grant"}]
            },
            "checkCodeExecStatus": {}
        }
    })
    .to_string()
}

/// Envoy in front of `upstream_port`, with the approval service's cluster.
async fn envoy(upstream_port: u16, service_port: u16, policy: &str) -> Envoy {
    let policy = policy.to_string();
    Envoy::start_with_config(
        move |port, admin| {
            let mut config = config_yaml(port, admin, upstream_port, &policy);
            config.push_str(&approval_cluster("mcp_approval", service_port));
            config
        },
        1,
    )
    .await
}

/// The audit lines of `tool` calls with a decision, in order.
fn audit_of(envoy: &Envoy, tool: &str) -> Vec<Value> {
    envoy
        .audit_records()
        .into_iter()
        .filter(|record| record["tool"] == tool)
        .collect()
}

#[tokio::test]
async fn a_person_approves_a_held_call_in_chromium_and_its_retry_reaches_the_server_once() {
    let redis = Redis::start();
    let service = ApprovalService::start(&redis);
    let (upstream_port, upstream, server) = recording_upstream(ServeOptions::default()).await;
    let envoy = envoy(
        upstream_port,
        service.filter.port(),
        &policy(&service.page_url(), "closed"),
    )
    .await;
    let browser = Browser::signed_in(&service).await;
    let agent = McpClient::connect(&envoy.mcp_url(), &[("x-agent-id", "alice")])
        .await
        .unwrap();
    let risky = json!({"script": RISKY, "timeout": 30});
    let executions = || upstream.tool_call_count("asyncExecuteCode");

    // An ordinary script is not held.
    agent
        .call(
            "asyncExecuteCode",
            json!({"script": "print(1)", "timeout": 30}),
        )
        .await
        .unwrap();
    assert_eq!(executions(), 1);

    // The risky one is held: -31004 with the link; nothing reaches the server.
    let held = agent
        .call("asyncExecuteCode", risky.clone())
        .await
        .unwrap_err();
    assert_eq!(held.code, -31004, "{held}");
    let data = held.data.clone().unwrap();
    let id = data["approval_id"].as_str().unwrap().to_string();
    let url = data["approval_url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("{}/approvals/{id}", service.page_url()));
    assert_eq!(
        data["rule"],
        "/tools/asyncExecuteCode/approve_if/args.script/regex"
    );
    assert_eq!(data["reason"], REASON);
    assert!(data["retry_after_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(executions(), 1, "a held call never reaches the server");
    // Asking again before anyone decided: the same approval, still held.
    let again = agent
        .call("asyncExecuteCode", risky.clone())
        .await
        .unwrap_err();
    assert_eq!(again.data.unwrap()["approval_id"], id.as_str());
    assert_eq!(executions(), 1);

    // The person sees it on the list, opens the agent's link, approves.
    browser.listed(&id).await;
    browser
        .approve(
            &url,
            "alice",
            "asyncExecuteCode",
            "subprocess.run(['ls', '/'])",
        )
        .await;

    // The agent's retry goes through, exactly once.
    let result = agent.call("asyncExecuteCode", risky.clone()).await.unwrap();
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(executions(), 2);
    let (tool, arguments) = upstream.tool_calls().last().cloned().unwrap();
    assert_eq!(
        (tool.as_str(), arguments),
        ("asyncExecuteCode", risky.clone())
    );

    // A replay needs a new approval.
    let replay = agent
        .call("asyncExecuteCode", risky.clone())
        .await
        .unwrap_err();
    assert_eq!(replay.code, -31004);
    let replay_id = replay.data.unwrap()["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(replay_id, id);
    assert_eq!(executions(), 2, "the approval was used once");

    // Changed arguments are another call: another approval.
    let changed = json!({"script": format!("{RISKY}\nsubprocess.run(['id'])"), "timeout": 30});
    let other = agent
        .call("asyncExecuteCode", changed.clone())
        .await
        .unwrap_err();
    assert_eq!(other.code, -31004);
    let other_data = other.data.unwrap();
    let other_id = other_data["approval_id"].as_str().unwrap().to_string();
    assert!(other_id != id && other_id != replay_id);

    // The person denies it, with a reason the agent is told.
    let denial = "no subprocesses from agents, use the ls tool";
    browser
        .deny(
            other_data["approval_url"].as_str().unwrap(),
            "alice",
            "asyncExecuteCode",
            "subprocess.run(['id'])",
            denial,
        )
        .await;
    let denied = agent.call("asyncExecuteCode", changed).await.unwrap_err();
    assert_eq!(denied.code, -31001, "{denied}");
    assert!(denied.message.contains(denial), "{denied}");
    assert_eq!(denied.data.as_ref().unwrap()["reason"], denial);
    assert_eq!(denied.data.as_ref().unwrap()["approver"], "bob");
    assert_eq!(executions(), 2);

    // The audit line of the approved call names the approval and approver;
    // none carries the script.
    agent.close().await;
    let audit = audit_of(&envoy, "asyncExecuteCode");
    let approved: Vec<&Value> = audit
        .iter()
        .filter(|record| record["approval"]["status"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1, "{audit:?}");
    assert_eq!(approved[0]["decision"], "allowed");
    assert_eq!(approved[0]["approval"]["id"], id.as_str());
    assert_eq!(approved[0]["approval"]["approver"], "bob");
    assert_eq!(
        audit
            .iter()
            .filter(|record| record["decision"] == "approval_pending")
            .count(),
        4
    );
    assert!(audit
        .iter()
        .all(|record| !record.to_string().contains("subprocess.run")));
    assert_eq!(
        support::metrics::decisions(
            &envoy,
            &[
                ("decision", "approval_pending"),
                ("target", "asyncExecuteCode")
            ]
        )
        .await,
        4
    );
    browser.close().await;
    server.abort();
}

const TOOL: &str = "asyncExecuteCode";

fn script_args(script: &str) -> Value {
    json!({"script": script, "timeout": 30})
}

/// The repository's policy.json, its approval timeout raised from 200 ms for
/// a machine the tests share with builds. It names no public_url: links are
/// the service's own (its page address here).
fn repository_policy() -> String {
    let policy = include_str!("../policy.json");
    assert!(policy.contains(r#""timeout_ms": 200"#));
    policy.replace(r#""timeout_ms": 200"#, r#""timeout_ms": 2000"#)
}

/// policy.json's approval reason.
const REPOSITORY_REASON: &str =
    "scripts that start processes, open sockets or import modules by name wait for a person's approval";

#[tokio::test]
async fn clients_that_declared_url_elicitation_are_shown_the_link_the_protocols_own_way() {
    let redis = Redis::start();
    let service = ApprovalService::start(&redis);
    let (upstream_port, upstream, server) = recording_upstream(ServeOptions::default()).await;
    let envoy = envoy(upstream_port, service.filter.port(), &repository_policy()).await;
    let browser = Browser::signed_in(&service).await;
    let url = envoy.mcp_url();
    let alice = [("x-agent-id", "alice")];
    let executions = |script: &str| {
        upstream
            .tool_calls()
            .iter()
            .filter(|(tool, arguments)| tool == TOOL && arguments["script"] == script)
            .count()
    };

    // 2025-11-25: the session's initialize declared URL elicitation: the
    // URL-elicitation-required error, its elicitation id the approval's.
    let options = ClientOptions::at(ProtocolVersion::V_2025_11_25).with_elicitation_url();
    let agent = McpClient::connect_with(&url, &alice, options)
        .await
        .unwrap();
    let script = format!("{RISKY} # 2025");
    let held = agent.call(TOOL, script_args(&script)).await.unwrap_err();
    assert_eq!(held.code, -32042, "{held}");
    let data = held.data.unwrap();
    let elicitation = &data["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    let link = elicitation["url"].as_str().unwrap().to_string();
    let id = elicitation["elicitationId"].as_str().unwrap();
    assert_eq!(link, format!("{}/approvals/{id}", service.page_url()));
    assert!(elicitation["message"]
        .as_str()
        .unwrap()
        .contains(REPOSITORY_REASON));
    assert_eq!(executions(&script), 0);
    browser.approve(&link, "alice", TOOL, "# 2025").await;
    let result = agent.call(TOOL, script_args(&script)).await.unwrap();
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(executions(&script), 1);
    agent.close().await;

    // 2026-07-28: the request's _meta declares URL elicitation: an
    // InputRequiredResult with a URL-mode elicitation/create and the gate's
    // own requestState.
    let options = ClientOptions::at(ProtocolVersion::V_2026_07_28).with_elicitation_url();
    let agent = McpClient::connect_with(&url, &alice, options)
        .await
        .unwrap();
    let script = format!("{RISKY} # 2026");
    let (state, result) = match agent.call_once(TOOL, script_args(&script)).await.unwrap() {
        CallOutcome::InputRequired {
            request_state: Some(state),
            result,
        } => (state, result),
        other => panic!("expected input_required, got {other:?}"),
    };
    let request = &result["inputRequests"]["approval"];
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["mode"], "url");
    let link = request["params"]["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("{}/approvals/", service.page_url())));
    assert_eq!(executions(&script), 0);
    let accept = json!({"approval": {"action": "accept"}});
    // Retried before the person decided: asked again, the same approval.
    match agent
        .retry(TOOL, script_args(&script), Some(&state), accept.clone())
        .await
        .unwrap()
    {
        CallOutcome::InputRequired { result, .. } => {
            assert_eq!(
                result["inputRequests"]["approval"]["params"]["url"],
                link.as_str()
            )
        }
        other => panic!("expected input_required, got {other:?}"),
    }
    assert_eq!(executions(&script), 0);
    browser.approve(&link, "alice", TOOL, "# 2026").await;
    let done = agent
        .retry(TOOL, script_args(&script), Some(&state), accept.clone())
        .await
        .unwrap();
    assert!(matches!(done, CallOutcome::Complete(_)), "{done:?}");
    assert_eq!(executions(&script), 1);
    // The server got the call without the gate's requestState and
    // inputResponses, which it never issued.
    let reached: Vec<Value> = upstream
        .requests_with_method("tools/call")
        .iter()
        .filter_map(|request| request.json())
        .filter(|body| body["params"]["arguments"]["script"] == script.as_str())
        .collect();
    assert_eq!(reached.len(), 1, "{reached:?}");
    let params = &reached[0]["params"];
    assert!(params.get("requestState").is_none(), "{params}");
    assert!(params.get("inputResponses").is_none(), "{params}");
    assert_eq!(params["name"], TOOL);
    assert_eq!(params["arguments"], script_args(&script));
    // Replaying the retry: a new approval, nothing forwarded.
    match agent
        .retry(TOOL, script_args(&script), Some(&state), accept)
        .await
        .unwrap()
    {
        CallOutcome::InputRequired { result, .. } => {
            assert_ne!(
                result["inputRequests"]["approval"]["params"]["url"],
                link.as_str()
            )
        }
        other => panic!("expected input_required, got {other:?}"),
    }
    assert_eq!(executions(&script), 1);
    agent.close().await;

    // 2026-07-28 without URL elicitation: -31004 with the link.
    let agent = McpClient::connect_with(
        &url,
        &alice,
        ClientOptions::at(ProtocolVersion::V_2026_07_28),
    )
    .await
    .unwrap();
    let script = format!("{RISKY} # form only");
    let held = agent.call(TOOL, script_args(&script)).await.unwrap_err();
    assert_eq!(held.code, -31004, "{held}");
    assert!(held.data.unwrap()["approval_url"]
        .as_str()
        .unwrap()
        .starts_with(&service.page_url()));
    assert_eq!(executions(&script), 0);
    agent.close().await;
    browser.close().await;
    server.abort();
}

#[tokio::test]
async fn with_the_service_down_failure_mode_decides() {
    let mut redis = Redis::start();
    let mut service = ApprovalService::start(&redis);
    let (upstream_port, upstream, server) = recording_upstream(ServeOptions::default()).await;
    let mut envoys = Vec::new();
    for mode in ["closed", "open"] {
        let envoy = envoy(
            upstream_port,
            service.filter.port(),
            &policy(&service.page_url(), mode),
        )
        .await;
        let agent = McpClient::connect(&envoy.mcp_url(), &[("x-agent-id", "alice")])
            .await
            .unwrap();
        envoys.push((mode, envoy, agent));
    }
    let executions = |script: &str| {
        upstream
            .tool_calls()
            .iter()
            .filter(|(_, arguments)| arguments["script"] == script)
            .count()
    };
    // Up: held by both.
    for (mode, _, agent) in &envoys {
        let held = agent
            .call(TOOL, script_args(&format!("import socket # {mode} up")))
            .await;
        assert_eq!(held.unwrap_err().code, -31004);
    }
    assert_eq!(service.checks().await, 2);

    // Redis gone: the service answers 503. Then the service itself gone.
    redis.stop();
    for what in ["redis down", "service down"] {
        if what == "service down" {
            service.stop();
        }
        for (mode, _, agent) in &envoys {
            let script = format!("import socket # {mode} {what}");
            let answer = agent.call(TOOL, script_args(&script)).await;
            if *mode == "closed" {
                assert_eq!(answer.unwrap_err().code, -32603, "{what}");
                assert_eq!(executions(&script), 0, "{what}");
            } else {
                assert_ne!(answer.unwrap()["isError"], true, "{what}");
                assert_eq!(executions(&script), 1, "{what}");
            }
        }
    }
    for (mode, envoy, agent) in envoys {
        agent.close().await;
        let failed: Vec<Value> = audit_of(&envoy, TOOL)
            .into_iter()
            .filter(|record| record["decision"] == "failed")
            .collect();
        assert_eq!(failed.len(), 2, "{mode}: {failed:?}");
        for record in failed {
            assert_eq!(record["approval"]["status"], "unavailable", "{mode}");
            assert_eq!(record["enforced"], mode == "closed", "{mode}");
        }
    }
    server.abort();
}
