use super::*;
use crate::policy::Policy;
use crate::testing::{EnvoySharedData, UnavailableStore};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;

fn policy(json: &str) -> Policy {
    Policy::from_json(json.as_bytes()).unwrap()
}

fn caller(grant: &str) -> CallerScope<'_> {
    CallerScope {
        grant,
        session: None,
        role: None,
    }
}

const CODE_EXEC: &str = r#"{
    "version": "1", "default": "deny",
    "all_tools": {"limits": [{"counter": "everything", "window": "hour", "max": 4, "scope": "grant"}]},
    "tools": {
        "asyncExecuteCode": {"limits": [{"counter": "exec", "window": "minute", "max": 2, "scope": "grant"}]},
        "checkCodeExecStatus": {},
        "deleteWorkspace": {"action": "deny", "reason": "destructive"},
        "wipe": {"action": "deny"}
    }
}"#;

#[test]
fn explicit_deny_names_the_rule_and_reason() {
    let policy = policy(CODE_EXEC);
    let store = EnvoySharedData::default();
    assert_eq!(
        decide(
            policy.base(),
            "deleteWorkspace",
            None,
            caller("a"),
            &store,
            NOW
        ),
        Decision::Deny {
            rule: "/tools/deleteWorkspace",
            reason: Cow::Borrowed("destructive")
        }
    );
    assert_eq!(
        decide(policy.base(), "wipe", None, caller("a"), &store, NOW),
        Decision::Deny {
            rule: "/tools/wipe",
            reason: Cow::Borrowed(RULE_DENY_REASON)
        }
    );
}

#[test]
fn unlisted_tools_follow_the_default() {
    let store = EnvoySharedData::default();
    let deny = policy(CODE_EXEC);
    assert_eq!(
        decide(deny.base(), "unknownTool", None, caller("a"), &store, NOW),
        Decision::Deny {
            rule: "/default",
            reason: Cow::Borrowed(DEFAULT_DENY_REASON)
        }
    );
    // A name that differs only in case from a listed tool is not that tool,
    // and does not escape its rule either: it is refused, naming the rule.
    assert_eq!(
        decide(
            deny.base(),
            "checkcodeexecstatus",
            None,
            caller("a"),
            &store,
            NOW
        ),
        Decision::Deny {
            rule: "/tools/checkCodeExecStatus",
            reason: Cow::Owned(
                "tool name differs from \"checkCodeExecStatus\" only in letter case".to_string()
            )
        }
    );
    let allow = policy(r#"{"version":"1","default":"allow"}"#);
    assert_eq!(
        decide(allow.base(), "anything", None, caller("a"), &store, NOW),
        Decision::Allow {
            reservations: vec![],
            global: vec![]
        }
    );
}

#[test]
fn denied_calls_consume_no_quota() {
    let policy = policy(CODE_EXEC);
    let store = EnvoySharedData::default();
    for _ in 0..10 {
        assert!(matches!(
            decide(
                policy.base(),
                "deleteWorkspace",
                None,
                caller("a"),
                &store,
                NOW
            ),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide(policy.base(), "nope", None, caller("a"), &store, NOW),
            Decision::Deny { .. }
        ));
    }
    assert!(store.keys().is_empty());
}

#[test]
fn limits_of_the_tool_and_of_all_tools_both_apply() {
    let policy = policy(CODE_EXEC);
    let store = EnvoySharedData::default();
    let exec = |grant| {
        decide(
            policy.base(),
            "asyncExecuteCode",
            None,
            caller(grant),
            &store,
            NOW,
        )
    };
    assert!(matches!(exec("a"), Decision::Allow { reservations, .. } if reservations.len() == 2));
    assert!(matches!(exec("a"), Decision::Allow { .. }));
    match exec("a") {
        Decision::RateLimited {
            limit,
            retry_after_seconds,
            ..
        } => {
            assert_eq!(limit.pointer, "/tools/asyncExecuteCode/limits/0");
            assert_eq!(retry_after_seconds, 60);
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // The all-tools budget of 4 per hour: 2 used by exec, 2 more by status.
    let status = |grant| {
        decide(
            policy.base(),
            "checkCodeExecStatus",
            None,
            caller(grant),
            &store,
            NOW,
        )
    };
    assert!(matches!(status("a"), Decision::Allow { .. }));
    assert!(matches!(status("a"), Decision::Allow { .. }));
    assert!(
        matches!(status("a"), Decision::RateLimited { limit, retry_after_seconds: 3600, .. } if limit.pointer == "/all_tools/limits/0")
    );
    // Another grant has its own counts.
    assert!(matches!(exec("b"), Decision::Allow { .. }));
}

#[test]
fn a_failed_store_fails_closed() {
    let policy = policy(CODE_EXEC);
    let decision = decide(
        policy.base(),
        "asyncExecuteCode",
        None,
        caller("a"),
        &UnavailableStore,
        NOW,
    );
    assert!(matches!(decision, Decision::Failed { .. }));
    assert_eq!(decision.outcome(), Outcome::Failed);
    // Tools without limits need no store.
    let policy =
        Policy::from_json(br#"{"version":"1","default":"deny","tools":{"t":{}}}"#).unwrap();
    assert!(matches!(
        decide(
            policy.base(),
            "t",
            None,
            caller("a"),
            &UnavailableStore,
            NOW
        ),
        Decision::Allow { .. }
    ));
}

#[test]
fn argument_rules_deny_before_limits_take_quota() {
    let policy = policy(
        r#"{"version":"1","default":"deny","tools":{"asyncExecuteCode":{
            "reason": "scripts may not spawn processes",
            "deny_if": {"args.script": {"regex": "subprocess|os\\.system"}},
            "require": {"args.timeout": {"lte": 300}},
            "limits": [{"counter": "exec", "window": 60, "max": 1, "scope": "grant"}]}}}"#,
    );
    let store = EnvoySharedData::default();
    let call = |arguments: &str| {
        let raw = serde_json::value::RawValue::from_string(arguments.to_string()).unwrap();
        let decision = decide(
            policy.base(),
            "asyncExecuteCode",
            Some(&*raw),
            caller("a"),
            &store,
            NOW,
        );
        match decision {
            Decision::Deny { rule, reason } => format!("deny {rule} ({reason})"),
            Decision::Allow { .. } => "allow".to_string(),
            Decision::RateLimited { .. } => "rate limited".to_string(),
            other => format!("{other:?}"),
        }
    };
    assert_eq!(
        call(r#"{"script":"import subprocess","timeout":10}"#),
        "deny /tools/asyncExecuteCode/deny_if/args.script/regex (scripts may not spawn processes)"
    );
    assert_eq!(
        call(r#"{"script":"x","timeout":900}"#),
        "deny /tools/asyncExecuteCode/require/args.timeout/lte (scripts may not spawn processes)"
    );
    assert_eq!(
        call(r#"{"script":"x","timeout":"300"}"#),
        "deny /tools/asyncExecuteCode/require/args.timeout/lte (scripts may not spawn processes)"
    );
    assert_eq!(
        call(r#"{"script":"x"}"#),
        "deny /tools/asyncExecuteCode/require/args.timeout/lte (scripts may not spawn processes)"
    );
    // Denied calls took no quota: the one unit is still there.
    assert_eq!(call(r#"{"script":"print(1)","timeout":300}"#), "allow");
    assert_eq!(
        call(r#"{"script":"print(1)","timeout":300}"#),
        "rate limited"
    );
    // No arguments at all: the require fails.
    assert!(matches!(
        decide(
            policy.base(),
            "asyncExecuteCode",
            None,
            caller("b"),
            &store,
            NOW
        ),
        Decision::Deny {
            rule: "/tools/asyncExecuteCode/require/args.timeout/lte",
            ..
        }
    ));
}
