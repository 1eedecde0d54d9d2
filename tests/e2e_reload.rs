//! End to end: the policy changes without a restart. Envoy reads the listener
//! (and the policy in it) from envoy/hot-reload/ through LDS; `mcp-policy
//! apply` (the real binary) replaces the file and a new policy applies to new
//! requests, its revision shown by mcp_policy_info; apply refuses an invalid
//! policy, and one written by hand is refused by Envoy while the old keeps
//! serving; rate-limit counters survive (same vm_id). A file written in place
//! (what `mv` from another filesystem does) is not picked up: the limitation
//! the hot-reload files document next to `apply`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::demo_server::{self, Recorder, ServeOptions};
use support::envoy::{repo_root, wasm_module, Envoy};

fn policy_a() -> &'static str {
    r#"{"version":"1","default":"deny","tools":{
        "deleteWorkspace":{"action":"deny","reason":"policy A"},
        "asyncExecuteCode":{"limits":[{"counter":"exec","window":1000000000,"max":2,"scope":"global"}]}}}"#
}

fn policy_b() -> &'static str {
    r#"{"version":"1","default":"deny","tools":{
        "deleteWorkspace":{},
        "asyncExecuteCode":{"limits":[{"counter":"exec","window":1000000000,"max":2,"scope":"global"}]}}}"#
}

/// The shipped listener.yaml with our ports, module and policy.
fn listener(port: u16, upstream_port: u16, policy: &str) -> String {
    let shipped =
        std::fs::read_to_string(repo_root().join("envoy/hot-reload/listener.yaml")).unwrap();
    let (head, rest) = shipped.split_once("value: |\n").unwrap();
    let indent = "                  ";
    let tail: String = rest
        .lines()
        .skip_while(|line| line.starts_with(indent) || line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    let policy: String = policy
        .lines()
        .map(|line| format!("{indent}{}\n", line.trim()))
        .collect();
    format!("{head}value: |\n{policy}{tail}")
        .replace("port_value: 10000", &format!("port_value: {port}"))
        .replace("port_value: 8081", &format!("port_value: {upstream_port}"))
        .replace(
            "filename: target/wasm32-wasip1/release/mcp_policy.wasm",
            &format!("filename: {}", wasm_module().display()),
        )
}

/// `mcp-policy apply` of `policy` to the listener file in `dir`: the exit
/// status and what it printed.
fn apply(dir: &Path, policy: &str, port: u16) -> (i32, String) {
    apply_and_wait(dir, policy, port, &[])
}

/// The first apply names the listener's address and module; later ones
/// leave them out, and apply keeps what the file has.
fn apply_and_wait(dir: &Path, policy: &str, port: u16, wait: &[&str]) -> (i32, String) {
    let file = dir.join("policy.json");
    std::fs::write(&file, policy).unwrap();
    let listener = dir.join("listener.yaml");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy"));
    command.arg("apply").args(wait).arg(&file).arg(&listener);
    if !listener.exists() {
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--module", &wasm_module().display().to_string()]);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// `mcp_policy_info{revision}` of this Envoy.
async fn info(envoy: &Envoy, revision: &str) -> u64 {
    support::metrics::sum(
        &envoy.admin("/stats/prometheus").await,
        mcp_policy::metrics::INFO,
        &[("revision", revision)],
    )
}

/// Replaces the watched file by a rename, as apply does.
fn install(dir: &Path, content: &str) {
    let next = dir.join("next.yaml.tmp");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, dir.join("listener.yaml")).unwrap();
}

async fn lds_stat(envoy: &Envoy, name: &str) -> u64 {
    let stats = envoy
        .admin(&format!("/stats?filter=^listener_manager\\.lds\\.{name}$"))
        .await;
    stats
        .lines()
        .find_map(|line| line.split_once(": "))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_for_stat(envoy: &Envoy, name: &str, above: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while lds_stat(envoy, name).await <= above {
        assert!(
            Instant::now() < deadline,
            "listener_manager.lds.{name} stayed at {above}:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(envoy: &Envoy, tool: &str) -> (u16, Value) {
    // A new connection each time: a reloaded listener takes new connections.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client
        .post(envoy.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{"script":"x","workspace":"w"}}}).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn policy_changes_apply_without_a_restart_and_counters_survive() {
    let listener_socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener_socket.local_addr().unwrap().port();
    let upstream = Recorder::default();
    let serve = ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    };
    let server = tokio::spawn(demo_server::serve_with_options(
        listener_socket,
        upstream.clone(),
        serve,
    ));

    let dir = std::env::temp_dir().join(format!("mcp-policy-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bootstrap =
        std::fs::read_to_string(repo_root().join("envoy/hot-reload/bootstrap.yaml")).unwrap();
    let dir_for_config = dir.clone();
    // Envoy binds the listener's port (port_value 0 in every version of the
    // file): an update with the same address keeps the socket, and its port.
    let port = 0;
    let envoy = Envoy::start_with_config(
        move |port, admin_port| {
            let (status, out) = apply(&dir_for_config, policy_a(), port);
            assert_eq!(status, 0, "{out}");
            bootstrap
                .replace("port_value: 9901", &format!("port_value: {admin_port}"))
                .replace("port_value: 8081", &format!("port_value: {upstream_port}"))
                .replace(
                    "path: envoy/hot-reload/listener.yaml",
                    &format!("path: {}", dir_for_config.join("listener.yaml").display()),
                )
                .replace(
                    "path: envoy/hot-reload }",
                    &format!("path: {} }}", dir_for_config.display()),
                )
        },
        2,
    )
    .await;

    // Policy A: deleteWorkspace denied; one of the two executions used.
    let (_, denied) = call(&envoy, "deleteWorkspace").await;
    assert_eq!(denied["error"]["data"]["reason"], "policy A", "{denied}");
    assert_eq!(
        call(&envoy, "asyncExecuteCode").await.1["result"]["isError"],
        false
    );

    let revision_a = mcp_policy::metrics::policy_revision(policy_a().as_bytes());
    let revision_b = mcp_policy::metrics::policy_revision(policy_b().as_bytes());
    assert_eq!(info(&envoy, &revision_a).await, 1);

    // B written in place, as `mv` from another filesystem does (a copy, not
    // a rename): Envoy does not notice; A still decides.
    let successes = lds_stat(&envoy, "update_success").await;
    std::fs::write(
        dir.join("listener.yaml"),
        listener(port, upstream_port, policy_b()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lds_stat(&envoy, "update_success").await, successes);
    let (_, still_a) = call(&envoy, "deleteWorkspace").await;
    assert_eq!(still_a["error"]["data"]["reason"], "policy A", "{still_a}");

    // Policy B by apply, waiting until Envoy shows it live: applied to new
    // requests, no restart.
    let admin = format!("http://127.0.0.1:{}", envoy.admin_port);
    let (dir_b, policy_b) = (dir.clone(), policy_b());
    let (status, out) = tokio::task::spawn_blocking(move || {
        apply_and_wait(&dir_b, policy_b, port, &["--wait", &admin])
    })
    .await
    .unwrap();
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains(&format!("revision {revision_b} written"))
            && out.contains(&format!("revision {revision_b} is live")),
        "{out}"
    );
    assert!(lds_stat(&envoy, "update_success").await > successes);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, reply) = call(&envoy, "deleteWorkspace").await;
        if reply.get("result").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "policy B never applied: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(upstream.tool_call_count("deleteWorkspace"), 1);
    // The live revision is B's (A's listener drains for Envoy's drain time).
    assert_eq!(info(&envoy, &revision_b).await, 1);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().all(|name| !name.ends_with(".tmp")),
        "apply left a temporary file: {names:?}"
    );
    // The counter kept its count across the reload: one more, then full.
    assert_eq!(
        call(&envoy, "asyncExecuteCode").await.1["result"]["isError"],
        false
    );
    assert_eq!(
        call(&envoy, "asyncExecuteCode").await.1["error"]["code"],
        -31002
    );
    assert_eq!(upstream.tool_call_count("asyncExecuteCode"), 2);

    // An invalid policy: apply refuses it and leaves the file alone...
    let invalid = r#"{"version":"1","default":"deny","tools":{"deleteWorkspace":{"limits":[{"counter":"c","window":"fortnight","max":1,"scope":"grant"}]}}}"#;
    let before = std::fs::read_to_string(dir.join("listener.yaml")).unwrap();
    let (status, out) = apply(&dir, invalid, port);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("unknown window \"fortnight\""), "{out}");
    assert!(out.contains("nothing applied"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("listener.yaml")).unwrap(),
        before
    );
    // ...and written by hand, Envoy refuses it; B keeps serving.
    let rejected = lds_stat(&envoy, "update_rejected").await;
    install(&dir, &listener(port, upstream_port, invalid));
    wait_for_stat(&envoy, "update_rejected", rejected).await;
    assert!(envoy.log().contains("mcp-policy: invalid policy: tools.deleteWorkspace.limits[0].window: unknown window \"fortnight\""));
    let (_, still_b) = call(&envoy, "deleteWorkspace").await;
    assert!(still_b.get("result").is_some(), "{still_b}");
    assert_eq!(upstream.tool_call_count("deleteWorkspace"), 2);

    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
