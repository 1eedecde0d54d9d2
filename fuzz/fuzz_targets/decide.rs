//! A random policy and a random request (split at the first NUL byte): the
//! whole request path never panics, every reply is a JSON-RPC message, and a
//! call the gate forwards is never one it could not read.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_policy::gate;
use mcp_policy::host::Clock;
use mcp_policy::memory::MemorySharedData as Store;
use mcp_policy::policy::Policy;
use mcp_policy::ratelimit::CallerScope;

struct At(u64);
impl Clock for At {
    fn unix_time(&self) -> Duration {
        Duration::from_secs(self.0)
    }
}

fuzz_target!(|data: &[u8]| {
    let (policy, request) = match data.iter().position(|byte| *byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(policy) = Policy::from_json(policy) else {
        return;
    };
    let store = Store::default();
    let clock = At(1_800_000_000);
    for grant in ["anonymous", "alice", "ci-runner"] {
        let caller = CallerScope {
            grant,
            session: Some("s"),
            role: None,
        };
        // Twice: the second call meets the counters the first one left.
        for _ in 0..2 {
            let inspection = gate::inspect_body(&policy, &store, &clock, caller, request);
            if let Some(reply) = &inspection.reply {
                let json: serde_json::Value =
                    serde_json::from_slice(&reply.body).expect("replies are JSON");
                assert_eq!(json["jsonrpc"], "2.0");
                assert!(json.get("error").is_some() || json.get("result").is_some());
            } else if inspection.audit.is_some() {
                // Forwarded and audited: a tools/call the gate read.
                assert!(
                    matches!(
                        mcp_policy::mcp::parse(request),
                        Ok(mcp_policy::mcp::Message::ToolCall(_))
                    ) || policy.mode == mcp_policy::policy::Mode::Monitor
                        || policy.failure_mode == mcp_policy::policy::FailureMode::Open
                );
            }
        }
    }
});
