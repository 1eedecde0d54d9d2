//! One `tools/call`, its whole life through the simulated Envoy, N times: a
//! target for `valgrind --tool=callgrind` (instruction counts, repeatable
//! whatever else the machine does). The second argument picks the call of
//! `make bench`'s cells: `allowed` (2), `denied` (3) or `limited` (4); the
//! third its body, `1k` (default) or `64k`.
//!
//! `CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --example profile_exchange && valgrind --tool=callgrind --toggle-collect='mcp_policy::exchange::Exchange::on' target/release/examples/profile_exchange 2000 limited 1k`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_policy::exchange::sim::{End, SimEnvoy};

const BODY_1K: &[u8] = include_bytes!("../bench/bodies/call-1k.json");
const BODY_64K: &[u8] = include_bytes!("../bench/bodies/call-64k.json");
const POLICY: &str = include_str!("../bench/policy-bench.json");

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let kind = std::env::args().nth(2).unwrap_or_else(|| "allowed".into());
    // The same body, naming the tool the bench policy treats that way.
    let body = match std::env::args().nth(3).as_deref() {
        None | Some("1k") => BODY_1K,
        Some("64k") => BODY_64K,
        Some(other) => panic!("{other}: 1k or 64k"),
    };
    let text = std::str::from_utf8(body).unwrap();
    let body = match kind.as_str() {
        "allowed" => text.to_string(),
        "denied" => text.replacen("asyncExecuteCode", "deleteWorkspace", 1),
        "limited" => text.replacen("asyncExecuteCode", "checkCodeExecStatus", 1),
        other => panic!("{other}: allowed, denied or limited"),
    };
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
        // A fresh window every 100 calls keeps the allowed call's limit
        // from refusing (the limited one's allows its first call only).
        envoy.set_time(1_800_000_000 + (round as u64 / 100) * 3600);
        let mut stream = envoy.stream();
        stream.send(&headers, &[body.as_bytes()]);
        let passed = stream.upstream().complete;
        let expected = kind == "allowed" || (kind == "limited" && round == 0);
        assert_eq!(
            passed,
            expected,
            "round {round}: {:?}",
            stream.downstream().json()
        );
        if passed {
            stream.server_answers(200, &[("content-type", b"application/json")], &[answer]);
        }
        stream.end(End::Completed);
    }
    println!(
        "{rounds} {kind} exchanges, {} audit lines",
        envoy.audit_lines().len()
    );
}
