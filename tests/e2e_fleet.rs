//! End to end, fleet-wide limits: a real redis-server, TWO processes of the
//! shipped rate-limit service on it and TWO Envoy processes with the filter,
//! as two replicas in front of one MCP server, each replica spreading its
//! ShouldRateLimit calls over both service processes. A global limit holds
//! exactly across all of them in every round of repeated bursts; a local one
//! stays per replica; Redis going away gives the configured failure
//! behaviour and its return recovers.
//!
//! Needs `redis-server` on PATH and the service binary in
//! `$MCP_RATELIMIT_SERVICE` (`make test` builds and installs both).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::demo_server::ServeOptions;
use support::envoy::{ClosedPort, Envoy};
use support::fleet::{
    config_with_service, global_window, start_redis, try_start_redis, RateLimitService,
};
use support::stack::recording_upstream;

/// A child process killed when dropped.
fn policy(failure_mode: &str, window: &str) -> String {
    POLICY
        .replace("FAILURE_MODE", failure_mode)
        .replace("GLOBAL_WINDOW", window)
}

const POLICY: &str = r#"{
    "version": "1", "default": "deny",
    "identity": {"header": "x-agent-id"},
    "rate_limit_service": {"cluster": "ratelimit", "timeout_ms": 500, "failure_mode": "FAILURE_MODE"},
    "tools": {
        "asyncExecuteCode": {"limits": [{"counter": "exec", "window": "GLOBAL_WINDOW", "max": 20, "scope": "grant", "store": "global"}]},
        "checkCodeExecStatus": {"limits": [{"counter": "polls", "window": 1000000000, "max": 5, "scope": "grant"}]}
    }
}"#;

/// The harness's Envoy configuration plus the rate-limit service cluster
/// (gRPC), round robin over every service process.
fn replica_config(
    port: u16,
    admin_port: u16,
    upstream_port: u16,
    service_ports: &[u16],
    failure_mode: &str,
) -> String {
    let policy = policy(failure_mode, global_window());
    config_with_service(port, admin_port, upstream_port, service_ports, &policy)
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
async fn a_global_limit_holds_across_two_replicas_and_two_service_processes() {
    let (redis, redis_port) = start_redis();
    let mut redis = Some(redis);
    let services = [
        RateLimitService::start(redis_port),
        RateLimitService::start(redis_port),
    ];
    let service_ports = [services[0].grpc_port, services[1].grpc_port];

    let (upstream_port, upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let replica = |_: ()| {
        Envoy::start_with_config(
            move |port, admin| replica_config(port, admin, upstream_port, &service_ports, "closed"),
            2,
        )
    };
    let (a, b) = (replica(()).await, replica(()).await);
    let urls = [a.mcp_url(), b.mcp_url()];

    // Rounds of 60 concurrent calls for one grant, alternating replicas (each
    // spreading its checks over both service processes): exactly 20 reach
    // the upstream in every round.
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let grant = format!("alice-{round}");
        let before = upstream.tool_call_count("asyncExecuteCode");
        let calls = (0..60).map(|i| call(&urls[i % 2], &grant, "asyncExecuteCode"));
        let replies = futures::future::join_all(calls).await;
        let allowed = replies.iter().filter(|r| passed(r)).count();
        let limited: Vec<&Value> = replies
            .iter()
            .filter(|r| r["error"]["code"] == -31002)
            .collect();
        assert_eq!(
            (allowed, limited.len()),
            (20, 40),
            "round {round}: {:?}",
            replies
                .iter()
                .find(|r| !passed(r) && r["error"]["code"] != -31002)
        );
        assert_eq!(
            upstream.tool_call_count("asyncExecuteCode") - before,
            20,
            "round {round}: calls at the upstream"
        );
        let retry = limited[0]["error"]["data"]["retry_after_seconds"]
            .as_u64()
            .unwrap();
        assert!((1..=86_400).contains(&retry), "{retry}");
        assert_eq!(
            limited[0]["error"]["data"]["rule"],
            "/tools/asyncExecuteCode/limits/0"
        );
    }
    // Every check went to one of the two service processes, and both had some.
    let (one, two) = (services[0].checks().await, services[1].checks().await);
    assert!(
        one > 0 && two > 0,
        "checks per service process: {one}, {two}"
    );
    assert_eq!(one + two, ROUNDS as u64 * 60);
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
    let before = upstream.calls_reaching("asyncExecuteCode").len();
    for url in &urls {
        let reply = call(url, "dave", "asyncExecuteCode").await;
        assert_eq!(reply["error"]["code"], -32603, "{reply}");
    }
    assert_eq!(upstream.calls_reaching("asyncExecuteCode").len(), before);
    // Local limits do not need the service.
    assert!(passed(&call(&urls[0], "erin", "checkCodeExecStatus").await));

    // Redis is back, empty: calls pass again through both replicas (the
    // service processes reconnect and load their script again).
    let _redis = try_start_redis(redis_port).expect("redis-server again on its port");
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = call(url, "dave", "asyncExecuteCode").await;
            if passed(&reply) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no recovery after Redis restarted: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(upstream.cut_off_requests().is_empty());
    server.abort();
}

/// A call that passed its local limit but that the rate-limit service
/// refuses did not happen: the unit it took from the local counter comes
/// back. Seen through a second tool that shares the local counter.
#[tokio::test]
async fn local_quota_comes_back_when_the_global_limit_refuses() {
    let (_redis, redis_port) = start_redis();
    let service = RateLimitService::start(redis_port);
    let service_ports = [service.grpc_port];
    let (upstream_port, upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let policy = format!(
        r#"{{
        "version": "1", "default": "deny",
        "identity": {{"header": "x-agent-id"}},
        "rate_limit_service": {{"cluster": "ratelimit", "timeout_ms": 500}},
        "tools": {{
            "asyncExecuteCode": {{"limits": [
                {{"counter": "shared", "window": 1000000000, "max": 3, "scope": "grant"}},
                {{"counter": "fleet", "window": "{}", "max": 1, "scope": "grant", "store": "global"}}]}},
            "checkCodeExecStatus": {{"limits": [
                {{"counter": "shared", "window": 1000000000, "max": 3, "scope": "grant"}}]}}
        }}
    }}"#,
        global_window()
    );
    let envoy = Envoy::start_with_config(
        move |port, admin| config_with_service(port, admin, upstream_port, &service_ports, &policy),
        1,
    )
    .await;
    let url = envoy.mcp_url();

    // One call passes both limits: "shared" holds 1 of 3.
    assert!(passed(&call(&url, "alice", "asyncExecuteCode").await));
    // Four more pass "shared" locally, and the service refuses each.
    for attempt in 0..4 {
        let reply = call(&url, "alice", "asyncExecuteCode").await;
        assert_eq!(
            (&reply["error"]["code"], &reply["error"]["data"]["rule"]),
            (&json!(-31002), &json!("/tools/asyncExecuteCode/limits/1")),
            "attempt {attempt}: {reply}"
        );
    }
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), 1);
    // Their local units came back: "shared" still has 2 for the other tool.
    assert!(passed(&call(&url, "alice", "checkCodeExecStatus").await));
    assert!(passed(&call(&url, "alice", "checkCodeExecStatus").await));
    let reply = call(&url, "alice", "checkCodeExecStatus").await;
    assert_eq!(
        (&reply["error"]["code"], &reply["error"]["data"]["counter"]),
        (&json!(-31002), &json!("shared")),
        "{reply}"
    );
    assert!(upstream.cut_off_requests().is_empty());
    server.abort();
}

/// `failure_mode: open`: with the service unable to reach Redis, a call with
/// a global limit goes through, counted as `failed`
/// (`mcp_policy_decisions_total{decision="failed"}`).
#[tokio::test]
async fn failure_mode_open_forwards_when_the_service_cannot_count() {
    // Nothing listens on this port, held by the test for its whole run
    // (bound, never listening): the service answers UNAVAILABLE.
    let redis = ClosedPort::reserve();
    let service = RateLimitService::start(redis.port);
    let service_ports = [service.grpc_port];

    let (upstream_port, upstream, server) = recording_upstream(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let envoy = Envoy::start_with_config(
        move |port, admin| replica_config(port, admin, upstream_port, &service_ports, "open"),
        1,
    )
    .await;

    for _ in 0..3 {
        let reply = call(&envoy.mcp_url(), "alice", "asyncExecuteCode").await;
        assert!(passed(&reply), "{reply}");
    }
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), 3);
    assert!(upstream.cut_off_requests().is_empty());
    assert_eq!(
        support::metrics::decisions(&envoy, &[("decision", "failed")]).await,
        3
    );
    assert_eq!(
        support::metrics::decisions(&envoy, &[("decision", "allowed")]).await,
        0
    );
    server.abort();
    drop(redis);
}
