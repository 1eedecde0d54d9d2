//! One allowed 1 KiB `tools/call`, its whole life through the simulated
//! Envoy, N times: a target for `valgrind --tool=callgrind` (instruction
//! counts, repeatable whatever else the machine does).
//!
//! `cargo build --release --example profile_exchange && valgrind --tool=callgrind target/release/examples/profile_exchange 2000`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_policy::exchange::sim::{End, SimEnvoy};

const BODY_1K: &[u8] = include_bytes!("../bench/bodies/call-1k.json");
const POLICY: &str = include_str!("../bench/policy-bench.json");

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let envoy = SimEnvoy::new(POLICY);
    let headers: [(&str, &[u8]); 5] = [
        (":method", b"POST"),
        (":path", b"/mcp"),
        ("x-agent-id", b"bench"),
        ("content-type", b"application/json"),
        ("mcp-session-id", b"session-1"),
    ];
    let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
    for round in 0..rounds {
        // A fresh window every 1000 calls keeps the limit from refusing.
        envoy.set_time(1_800_000_000 + (round as u64 / 100) * 3600);
        let mut stream = envoy.stream();
        stream.send(&headers, &[BODY_1K]);
        assert!(
            stream.upstream().complete,
            "round {round} refused: {:?}",
            stream.downstream().json()
        );
        stream.server_answers(200, &[("content-type", b"application/json")], &[answer]);
        stream.end(End::Completed);
    }
    println!(
        "{rounds} exchanges, {} audit lines",
        envoy.audit_lines().len()
    );
}
