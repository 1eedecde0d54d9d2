//! The dashboard and the alert rules (monitoring/) against a real
//! Prometheus: it scrapes a real Envoy with the filter (and the rate-limit
//! and approval services) while the test drives traffic through every kind
//! of decision; then every query of the Grafana dashboard must return data,
//! and the failure the traffic caused must fire its alert. promtool checks
//! the rules and runs their unit tests (one scenario per alert).
//!
//! Needs Debian's `prometheus` package (prometheus and promtool on PATH, or
//! PROMETHEUS_BIN and PROMTOOL_BIN), redis-server, and the services' binaries
//! (MCP_RATELIMIT_SERVICE, MCP_APPROVAL_SERVICE): `make test` provides all.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use mcp_policy::cli::render::{self, Endpoints, Envoy as EnvoyConfig, PolicyText};
use serde_json::{json, Value};
use support::demo_server::ServeOptions;
use support::envoy::{repo_root, wasm_module, Envoy};
use support::services::{start_redis, ApprovalService, Prometheus, RateLimitService};
use support::stack::recording_upstream;

const TOKEN: &str = "alice-token";

fn policy() -> String {
    format!(
        r#"{{"version":"1","default":"deny",
        "identity":{{"bearer_tokens":{{"{}":"alice"}}}},
        "rate_limit_service":{{"cluster":"ratelimit","timeout_ms":500,"failure_mode":"closed"}},
        "hide":["secretTool"],
        "tools":{{
            "asyncExecuteCode":{{"limits":[{{"counter":"exec","window":1000000000,"max":2,"scope":"grant"}}]}},
            "checkCodeExecStatus":{{"limits":[{{"counter":"polls","window":"day","max":1000000,"scope":"grant","store":"global"}}]}},
            "deleteWorkspace":{{"action":"deny"}}}}}}"#,
        mcp_policy::policy::sha256_hex(TOKEN.as_bytes())
    )
}

fn promtool() -> String {
    std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".to_string())
}

/// Runs promtool in monitoring/; its output, and whether it succeeded.
fn run_promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(repo_root().join("monitoring"))
        .output()
        .unwrap_or_else(|err| {
            panic!("promtool: {err} (make test installs Debian's prometheus package)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_in_its_scenario() {
    let (ok, text) = run_promtool(&["check", "rules", "mcp-policy.rules.yaml"]);
    assert!(ok, "promtool check rules:\n{text}");
    let (ok, text) = run_promtool(&["test", "rules", "mcp-policy.rules.test.yaml"]);
    assert!(ok, "promtool test rules:\n{text}");
    // Every alert has a scenario.
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("monitoring/mcp-policy.rules.yaml")).unwrap(),
    )
    .unwrap();
    let tests =
        std::fs::read_to_string(repo_root().join("monitoring/mcp-policy.rules.test.yaml")).unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            assert!(
                tests.contains(&format!("alertname: {alert}\n    exp_alerts:\n    - ")),
                "no scenario where {alert} fires"
            );
        }
    }
}

/// Every query of the dashboard (panels and annotations), with Grafana's
/// interval variables made plain.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = annotation["expr"].as_str() {
            queries.push((
                annotation["name"].as_str().unwrap().to_string(),
                expr.to_string(),
            ));
        }
    }
    queries
        .into_iter()
        .map(|(title, expr)| {
            (
                title,
                expr.replace("$__rate_interval", "1m")
                    .replace("$__range", "10m"),
            )
        })
        .collect()
}

async fn call(envoy: &Envoy, token: Option<&str>, tool: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(envoy.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{}}})
                .to_string(),
        );
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    response.json().await.unwrap_or(Value::Null)
}

/// One pending approval, so the backlog is not empty.
async fn ask_for_approval(approval: &ApprovalService) {
    let arguments = r#"{"code":"x"}"#;
    let envelope = format!(
        r#"{{"arguments":{arguments},"caller":null,"grant":"alice","policy_revision":"r1","reason":null,"rule":"/tools/t/approve_if/0","separate_approver":false,"target":{{"kind":"tool","name":"t"}},"ttl_seconds":900,"v":1}}"#
    );
    let digest = format!(
        "sha256:{}",
        mcp_policy::policy::sha256_hex(envelope.as_bytes())
    );
    let check = json!({
        "digest": digest, "grant": "alice", "target": {"kind": "tool", "name": "t"},
        "arguments": {"code": "x"}, "rule": "/tools/t/approve_if/0", "ttl_seconds": 900,
        "policy_revision": "r1"
    });
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/check",
            approval.filter_port
        ))
        .json(&check)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "pending", "{answer}");
}

#[tokio::test]
async fn prometheus_scrapes_the_filter_and_every_dashboard_query_returns_data() {
    let (redis, redis_port) = start_redis();
    let service = RateLimitService::start(redis_port);
    let approval = ApprovalService::start();
    let (upstream_port, _upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let policy = policy();
    let module = wasm_module().display().to_string();
    let service_ports = [("127.0.0.1", service.grpc_port)];
    let upstream = [("127.0.0.1", upstream_port)];
    let envoy = Envoy::start_with_config(
        |port, admin_port| {
            let mut config = EnvoyConfig::standalone(PolicyText::Inline(&policy));
            config.listen = ("127.0.0.1", port);
            config.admin = ("127.0.0.1", admin_port);
            config.filter.module = render::Module::Local(&module);
            config.upstream = Endpoints::Static(&upstream);
            config.rate_limit = Some(Endpoints::Static(&service_ports));
            render::bootstrap(&config)
        },
        2,
    )
    .await;

    let dir = std::env::temp_dir().join(format!("mcp-policy-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo_root().join("monitoring/mcp-policy.rules.yaml"),
        dir.join("mcp-policy.rules.yaml"),
    )
    .unwrap();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [mcp-policy.rules.yaml]
scrape_configs:
- job_name: mcp-policy
  metrics_path: /stats/prometheus
  static_configs: [{{ targets: ["127.0.0.1:{}"] }}]
- job_name: mcp-ratelimit
  static_configs: [{{ targets: ["127.0.0.1:{}"] }}]
- job_name: mcp-approval
  static_configs: [{{ targets: ["127.0.0.1:{}"] }}]
"#,
        envoy.admin_port, service.http_port, approval.filter_port
    );
    let prometheus = Prometheus::start(&dir, &config);

    // Traffic: every decision the dashboard shows.
    assert!(call(&envoy, Some(TOKEN), "asyncExecuteCode").await["result"].is_object());
    assert!(call(&envoy, Some(TOKEN), "asyncExecuteCode").await["result"].is_object());
    assert_eq!(
        call(&envoy, Some(TOKEN), "asyncExecuteCode").await["error"]["code"],
        -31002
    );
    assert_eq!(
        call(&envoy, Some(TOKEN), "deleteWorkspace").await["error"]["code"],
        -31001
    );
    call(&envoy, Some(TOKEN), "secretTool").await;
    assert!(call(&envoy, Some(TOKEN), "checkCodeExecStatus").await["result"].is_object());
    assert_eq!(
        call(&envoy, None, "asyncExecuteCode").await["error"]["code"],
        -31003
    );
    reqwest::Client::new()
        .post(envoy.mcp_url())
        .header("authorization", format!("Bearer {TOKEN}"))
        .body("{")
        .send()
        .await
        .unwrap();
    ask_for_approval(&approval).await;
    // Prometheus sees the counters before they move again, so rates and
    // increases have two samples to work with.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Redis goes away: the service answers with errors, the gate decides
    // `failed` (closed: -32603).
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = call(&envoy, Some(TOKEN), "checkCodeExecStatus").await;
        if reply["error"]["code"] == -32603 {
            break;
        }
        assert!(Instant::now() < deadline, "the gate never failed: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..3 {
        call(&envoy, Some(TOKEN), "checkCodeExecStatus").await;
        call(&envoy, Some(TOKEN), "asyncExecuteCode").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // Every query of the dashboard returns data, once Prometheus has scraped.
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{} queries", queries.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty = Vec::new();
    loop {
        empty.clear();
        for (title, expr) in &queries {
            if prometheus.query(expr).await.is_empty() {
                empty.push(format!("{title}: {expr}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}\nPrometheus log:\n{}",
        empty.join("\n"),
        prometheus.log()
    );

    // The labels are the filter's, as every configuration renders them.
    let decided = prometheus
        .query(r#"sum by (decision) (mcp_policy_decisions_total{job="mcp-policy"})"#)
        .await;
    let by_decision: Vec<(String, f64)> = decided
        .iter()
        .map(|sample| {
            (
                sample["metric"]["decision"].as_str().unwrap().to_string(),
                sample["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for decision in [
        "allowed",
        "denied",
        "rate_limited",
        "hidden",
        "unauthorized",
        "invalid",
        "failed",
    ] {
        assert!(
            by_decision
                .iter()
                .any(|(d, count)| d == decision && *count >= 1.0),
            "{decision} not counted: {by_decision:?}"
        );
    }
    let revision = mcp_policy::metrics::policy_revision(policy.as_bytes());
    let info = prometheus
        .query(&format!(r#"mcp_policy_info{{revision="{revision}"}} == 1"#))
        .await;
    assert_eq!(info.len(), 1, "the live revision: {info:?}");

    // The failure fired its alert in the real Prometheus too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let firing = prometheus
            .query(r#"ALERTS{alertname="McpPolicyFailed",alertstate="firing"}"#)
            .await;
        if !firing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "McpPolicyFailed did not fire; log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prometheus);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
