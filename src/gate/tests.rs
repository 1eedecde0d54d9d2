use serde_json::json;

use super::*;
use crate::decision::Outcome;
use crate::testing::{EnvoySharedData, FixedClock};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> Policy {
    Policy::from_json(include_bytes!("../../policy.json")).unwrap()
}

fn tools_call(id: u64, tool: &str) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"script":"secret value","timeout":5}}})
        .to_string()
        .into_bytes()
}

const ALICE: CallerScope<'static> = CallerScope {
    grant: "alice",
    session: Some("sess-1"),
};

#[test]
fn allowed_call_is_forwarded_and_audited_without_values() {
    let (store, clock) = (
        EnvoySharedData::default(),
        FixedClock::at_seconds(1_800_000_000),
    );
    let inspection = inspect_body(
        &policy(),
        &store,
        &clock,
        ALICE,
        &tools_call(1, "asyncExecuteCode"),
    );
    assert_eq!(inspection.reply, None);
    assert_eq!(inspection.reservations.len(), 1);
    assert_eq!(inspection.outcome(), Some(Outcome::Allowed));
    let line = inspection.audit.unwrap().to_log_line();
    assert!(
        line.contains(r#""argument_keys":["script","timeout"]"#),
        "{line}"
    );
    assert!(
        line.contains(r#""grant":"alice""#) && line.contains(r#""session":"sess-1""#),
        "{line}"
    );
    assert!(!line.contains("secret value"), "{line}");
}

#[test]
fn the_repository_policy_limits_async_execution_to_ten_a_minute() {
    let (store, clock) = (
        EnvoySharedData::default(),
        FixedClock::at_seconds(1_800_000_030),
    );
    let policy = policy();
    for id in 0..10 {
        let inspection = inspect_body(
            &policy,
            &store,
            &clock,
            ALICE,
            &tools_call(id, "asyncExecuteCode"),
        );
        assert_eq!(inspection.outcome(), Some(Outcome::Allowed), "call {id}");
    }
    let refused = inspect_body(
        &policy,
        &store,
        &clock,
        ALICE,
        &tools_call(10, "asyncExecuteCode"),
    );
    assert_eq!(refused.outcome(), Some(Outcome::RateLimited));
    let json = refused.reply.unwrap().json().unwrap();
    assert_eq!(json["id"], 10);
    assert_eq!(json["error"]["data"]["retry_after_seconds"], 30);
    assert_eq!(
        refused.audit.unwrap().rule.as_deref(),
        Some("/tools/asyncExecuteCode/limits/0")
    );
    // Another grant is not affected.
    let bob = CallerScope {
        grant: "bob",
        session: None,
    };
    assert_eq!(
        inspect_body(
            &policy,
            &store,
            &clock,
            bob,
            &tools_call(1, "asyncExecuteCode")
        )
        .outcome(),
        Some(Outcome::Allowed)
    );
    // The next minute starts afresh.
    clock.set_seconds(1_800_000_060);
    assert_eq!(
        inspect_body(
            &policy,
            &store,
            &clock,
            ALICE,
            &tools_call(11, "asyncExecuteCode")
        )
        .outcome(),
        Some(Outcome::Allowed)
    );
}

#[test]
fn denied_and_unlisted_tools_are_answered() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let denied = inspect_body(
        &policy(),
        &store,
        &clock,
        ALICE,
        &tools_call(3, "deleteWorkspace"),
    );
    let json = denied.reply.unwrap().json().unwrap();
    assert_eq!(json["error"]["code"], -31001);
    assert_eq!(json["error"]["data"]["rule"], "/tools/deleteWorkspace");
    let unlisted = inspect_body(&policy(), &store, &clock, ALICE, &tools_call(4, "runShell"));
    assert_eq!(
        unlisted.reply.unwrap().json().unwrap()["error"]["data"]["rule"],
        "/default"
    );
    assert_eq!(unlisted.audit.unwrap().decision, Outcome::Denied);
}

#[test]
fn other_messages_pass_unaudited() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let inspection = inspect_body(&policy(), &store, &clock, ALICE, body);
    assert_eq!(
        inspection,
        Inspection {
            reply: None,
            reservations: vec![],
            audit: None,
            filter_listing: None,
        }
    );
}

#[test]
fn unreadable_bodies_are_refused_and_audited_as_invalid() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    for body in [
        &b"{oops"[..],
        b"[]",
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
    ] {
        let inspection = inspect_body(&policy(), &store, &clock, ALICE, body);
        assert_eq!(inspection.reply.unwrap().status, 400);
        assert_eq!(inspection.audit.unwrap().decision, Outcome::Invalid);
    }
    let too_large = body_too_large(&policy(), &clock, ALICE);
    assert_eq!(too_large.reply.unwrap().status, 413);
}
