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
            global_check: None,
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

#[test]
fn mirrored_headers_must_match_the_body() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let policy = Policy::from_json(br#"{"version":"1","default":"allow"}"#).unwrap();
    let body = tools_call(7, "asyncExecuteCode");
    let inspect = |method: Option<&str>, name: Option<&str>, body: &[u8]| {
        let headers = McpHeaders { method, name };
        inspect_request(&policy, &store, &clock, ALICE, headers, body).reply
    };
    assert_eq!(
        inspect(Some("tools/call"), Some("asyncExecuteCode"), &body),
        None
    );
    assert_eq!(inspect(None, None, &body), None);
    let mismatch = inspect(Some("tools/list"), None, &body).unwrap();
    assert_eq!(mismatch.status, 400);
    let json = mismatch.json().unwrap();
    assert_eq!(
        (json["error"]["code"].clone(), json["id"].clone()),
        (json!(-32020), json!(7))
    );
    assert!(inspect(None, Some("deleteWorkspace"), &body).is_some());
    // Other methods: Mcp-Name mirrors params.name or params.uri.
    let prompt = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#;
    assert_eq!(inspect(Some("prompts/get"), Some("p"), prompt), None);
    assert!(inspect(Some("prompts/get"), Some("q"), prompt).is_some());
    let read =
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
    assert_eq!(
        inspect(Some("resources/read"), Some("file:///a"), read),
        None
    );
    assert!(inspect(None, Some("file:///b"), read).is_some());
    let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert!(inspect(None, Some("x"), list).is_some());
    let notification = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(
        inspect(Some("notifications/initialized"), None, notification),
        None
    );
}

#[test]
fn failure_mode_decides_what_an_undecidable_call_does() {
    let clock = FixedClock::at_seconds(0);
    let limited =
        r#""tools":{"t":{"limits":[{"counter":"c","window":60,"max":5,"scope":"global"}]}}"#;
    let closed =
        Policy::from_json(format!(r#"{{"version":"1","default":"deny",{limited}}}"#).as_bytes())
            .unwrap();
    let refused = inspect_body(
        &closed,
        &crate::testing::UnavailableStore,
        &clock,
        ALICE,
        &tools_call(1, "t"),
    );
    assert_eq!(refused.outcome(), Some(Outcome::Failed));
    assert_eq!(
        refused.reply.unwrap().json().unwrap()["error"]["code"],
        -32603
    );

    let open = Policy::from_json(
        format!(r#"{{"version":"1","default":"deny","failure_mode":"open",{limited}}}"#).as_bytes(),
    )
    .unwrap();
    let passed = inspect_body(
        &open,
        &crate::testing::UnavailableStore,
        &clock,
        ALICE,
        &tools_call(1, "t"),
    );
    assert_eq!(passed.reply, None);
    let audit = passed.audit.unwrap();
    assert_eq!((audit.decision, audit.enforced), (Outcome::Failed, false));
}

#[test]
fn a_name_differing_only_in_case_never_escapes_its_rule() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow","hide":["secretTool"],"tools":{"deleteWorkspace":{"action":"deny"},"limited":{"limits":[{"counter":"c","window":60,"max":1,"scope":"global"}]}}}"#,
    )
    .unwrap();
    let reply = |tool: &str| {
        inspect_body(&policy, &store, &clock, ALICE, &tools_call(1, tool))
            .reply
            .map(|r| r.json().unwrap())
    };
    let denied = reply("DELETEWORKSPACE").unwrap();
    assert_eq!(denied["error"]["code"], -31001);
    assert_eq!(denied["error"]["data"]["rule"], "/tools/deleteWorkspace");
    // A variant of an allowed-but-limited tool is refused too, not counted elsewhere.
    assert_eq!(reply("Limited").unwrap()["error"]["code"], -31001);
    // A variant of a hidden tool looks just as missing.
    assert_eq!(
        reply("SecretTool").unwrap(),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: SecretTool"}})
    );
    assert_eq!(reply("unrelated"), None);
}
