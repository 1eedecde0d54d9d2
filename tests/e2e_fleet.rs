//! End to end, fleet-wide limits: a real redis-server, the shipped rate-limit
//! service (limitador on Redis) and TWO Envoy processes with the filter, as
//! two replicas in front of one MCP server. A global limit holds exactly
//! across both; a local one stays per replica; Redis going away gives the
//! configured failure behaviour and its return recovers.
//!
//! Needs `redis-server` on PATH and the service binary in
//! `$MCP_RATELIMIT_SERVICE` (`make test` builds and installs both).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::demo_server::ServeOptions;
use support::envoy::{config_yaml, free_port, Envoy};
use support::stack::recording_upstream;

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_redis(port: u16) -> Process {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("redis-server: {err} (make test installs it)"));
    wait_for_port(port);
    Process(child)
}

fn start_service(port: u16, redis_port: u16) -> Process {
    let binary = std::env::var("MCP_RATELIMIT_SERVICE")
        .unwrap_or_else(|_| "ratelimit-service/target/release/mcp-ratelimit-service".to_string());
    let child = Command::new(&binary)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("{binary}: {err} (make test builds it)"));
    wait_for_port(port);
    Process(child)
}

fn policy(failure_mode: &str) -> String {
    POLICY.replace("FAILURE_MODE", failure_mode)
}

const POLICY: &str = r#"{
    "version": "1", "default": "deny",
    "identity": {"header": "x-agent-id"},
    "rate_limit_service": {"cluster": "ratelimit", "timeout_ms": 500, "failure_mode": "FAILURE_MODE"},
    "tools": {
        "asyncExecuteCode": {"limits": [{"counter": "exec", "window": "day", "max": 20, "scope": "grant", "store": "global"}]},
        "checkCodeExecStatus": {"limits": [{"counter": "polls", "window": 1000000000, "max": 5, "scope": "grant"}]}
    }
}"#;

/// The harness's Envoy configuration plus the rate-limit service cluster (gRPC).
fn replica_config(
    port: u16,
    admin_port: u16,
    upstream_port: u16,
    service_port: u16,
    failure_mode: &str,
) -> String {
    let mut config = config_yaml(port, admin_port, upstream_port, &policy(failure_mode));
    config.push_str(&format!(
        r#"  - name: ratelimit
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: ratelimit
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {service_port} }} }} }}
"#
    ));
    config
}

async fn call(url: &str, grant: &str, tool: &str) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-agent-id", grant)
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{"script":"x","execution_uuid":"u"}}}).to_string())
        .send()
        .await
        .unwrap();
    response.json().await.unwrap_or(Value::Null)
}

fn passed(reply: &Value) -> bool {
    reply.get("result").is_some()
}

#[tokio::test]
async fn a_global_limit_holds_across_two_replicas() {
    let redis_port = free_port();
    let mut redis = Some(start_redis(redis_port));
    let service_port = free_port();
    let _service = start_service(service_port, redis_port);

    let (upstream_port, upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let replica = |_: ()| {
        Envoy::start_with_config(
            move |port, admin| replica_config(port, admin, upstream_port, service_port, "closed"),
            2,
        )
    };
    let (a, b) = (replica(()).await, replica(()).await);
    let urls = [a.mcp_url(), b.mcp_url()];

    // 60 concurrent calls for one grant, alternating replicas: exactly 20 pass.
    let calls = (0..60).map(|i| call(&urls[i % 2], "alice", "asyncExecuteCode"));
    let replies = futures::future::join_all(calls).await;
    let allowed = replies.iter().filter(|r| passed(r)).count();
    let limited: Vec<&Value> = replies
        .iter()
        .filter(|r| r["error"]["code"] == -31002)
        .collect();
    assert_eq!(
        (allowed, limited.len()),
        (20, 40),
        "{:?}",
        replies
            .iter()
            .find(|r| !passed(r) && r["error"]["code"] != -31002)
    );
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), 20);
    let retry = limited[0]["error"]["data"]["retry_after_seconds"]
        .as_u64()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(
        limited[0]["error"]["data"]["rule"],
        "/tools/asyncExecuteCode/limits/0"
    );
    // Another grant has its own global count.
    assert!(passed(&call(&urls[1], "bob", "asyncExecuteCode").await));

    // A local limit stays per replica: 5 through each.
    for url in &urls {
        let replies =
            futures::future::join_all((0..8).map(|_| call(url, "carol", "checkCodeExecStatus")))
                .await;
        assert_eq!(replies.iter().filter(|r| passed(r)).count(), 5);
    }
    assert_eq!(upstream.tool_call_count("checkCodeExecStatus"), 10);

    // Redis goes away: failure_mode closed refuses with -32603, forwards nothing.
    drop(redis.take());
    let before = upstream.tool_call_count("asyncExecuteCode");
    let reply = call(&urls[0], "dave", "asyncExecuteCode").await;
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), before);
    // Local limits do not need the service.
    assert!(passed(&call(&urls[0], "erin", "checkCodeExecStatus").await));

    // Redis is back: calls pass again (the service reconnects).
    let _redis = start_redis(redis_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = call(&urls[1], "dave", "asyncExecuteCode").await;
        if passed(&reply) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis restarted: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.abort();
}

/// `failure_mode: open`: with the service unable to reach Redis, a call with
/// a global limit goes through, counted in `mcp_policy_failed`.
#[tokio::test]
async fn failure_mode_open_forwards_when_the_service_cannot_count() {
    // Redis is never started on this port: the service answers UNAVAILABLE.
    let redis_port = free_port();
    let service_port = free_port();
    let _service = start_service(service_port, redis_port);

    let (upstream_port, upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let envoy = Envoy::start_with_config(
        move |port, admin| replica_config(port, admin, upstream_port, service_port, "open"),
        1,
    )
    .await;

    for _ in 0..3 {
        let reply = call(&envoy.mcp_url(), "alice", "asyncExecuteCode").await;
        assert!(passed(&reply), "{reply}");
    }
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), 3);
    assert_eq!(envoy.prometheus_counter("mcp_policy_failed").await, 3);
    assert_eq!(envoy.prometheus_counter("mcp_policy_allowed").await, 0);
    server.abort();
}
