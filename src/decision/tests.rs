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

#[test]
fn deny_and_argument_rules_come_before_approval_and_approval_before_limits() {
    let policy = policy(
        r#"{
        "version": "1", "default": "deny",
        "approval_service": {"cluster": "mcp_approval"},
        "tools": {
            "run": {
                "require": {"args.timeout": {"lte": 300}},
                "deny_if": {"args.script": {"regex": "rm -rf"}},
                "approve_if": {"args.script": {"regex": "subprocess"}},
                "limits": [{"counter": "run", "window": "day", "max": 1, "scope": "grant"}]
            },
            "call_tool": {"invokes": {"name": "args.name", "arguments": "args.arguments"}}
        }
    }"#,
    );
    let store = EnvoySharedData::default();
    let raw = |value: serde_json::Value| serde_json::value::to_raw_value(&value).unwrap();
    let decide_with = |arguments: serde_json::Value| {
        let raw = raw(arguments);
        decide(
            policy.base(),
            "run",
            Some(raw.as_ref()),
            caller("a"),
            &store,
            NOW,
        )
    };
    // A denial wins over approval, whatever else matches.
    let denied = decide_with(serde_json::json!({"script": "subprocess; rm -rf /", "timeout": 1}));
    assert!(matches!(
        denied,
        Decision::Deny {
            rule: "/tools/run/deny_if/args.script/regex",
            ..
        }
    ));
    let unmet = decide_with(serde_json::json!({"script": "subprocess", "timeout": 900}));
    assert!(matches!(
        unmet,
        Decision::Deny {
            rule: "/tools/run/require/args.timeout/lte",
            ..
        }
    ));
    // Then approval: nothing counted yet, the limits handed over.
    for _ in 0..3 {
        match decide_with(serde_json::json!({"script": "subprocess", "timeout": 1})) {
            Decision::NeedsApproval {
                rule,
                approval,
                charges,
            } => {
                assert_eq!(rule, "/tools/run/approve_if/args.script/regex");
                assert_eq!(approval.ttl_seconds, 900);
                assert_eq!(charges.len(), 1);
                assert_eq!(charges[0].limit.pointer, "/tools/run/limits/0");
                assert_eq!(charges[0].cost, 1);
            }
            other => panic!("{other:?}"),
        }
    }
    // A call that needs no approval takes the (untouched) limit.
    let plain = decide_with(serde_json::json!({"script": "print(1)", "timeout": 1}));
    assert!(matches!(plain, Decision::Allow { .. }), "{plain:?}");
    let again = decide_with(serde_json::json!({"script": "print(1)", "timeout": 1}));
    assert!(matches!(again, Decision::RateLimited { .. }), "{again:?}");
    // A meta-tool running `run` with risky arguments needs the approval too.
    let meta = raw(
        serde_json::json!({"name": "run", "arguments": {"script": "subprocess", "timeout": 1}}),
    );
    let decided = decide(
        policy.base(),
        "call_tool",
        Some(meta.as_ref()),
        caller("a"),
        &store,
        NOW,
    );
    assert!(
        matches!(
            decided,
            Decision::NeedsApproval {
                rule: "/tools/run/approve_if/args.script/regex",
                ..
            }
        ),
        "{decided:?}"
    );
}

#[test]
fn a_held_call_carries_its_costs_and_one_that_cannot_be_counted_is_refused_before_anyone_is_asked()
{
    let policy = policy(
        r#"{
        "version": "1", "default": "deny",
        "approval_service": {"cluster": "mcp_approval"},
        "tools": {
            "export": {
                "action": "approve",
                "limits": [
                    {"counter": "rows", "window": "day", "max": 100, "scope": "grant", "cost_from": "args.rows"},
                    {"counter": "exports", "window": "day", "max": 5, "scope": "grant", "per": "args.table"}
                ]
            }
        }
    }"#,
    );
    let store = EnvoySharedData::default();
    let decide_with = |arguments: serde_json::Value| {
        let raw = serde_json::value::to_raw_value(&arguments).unwrap();
        decide(
            policy.base(),
            "export",
            Some(raw.as_ref()),
            caller("a"),
            &store,
            NOW,
        )
    };
    match decide_with(serde_json::json!({"rows": 40, "table": "users"})) {
        Decision::NeedsApproval { charges, .. } => {
            let taken: Vec<(&str, u64, Option<&str>)> = charges
                .iter()
                .map(|charge| {
                    (
                        charge.limit.counter.as_str(),
                        charge.cost,
                        charge.per.as_deref(),
                    )
                })
                .collect();
            assert_eq!(
                taken,
                [("rows", 40, None), ("exports", 1, Some("args.table=users"))]
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing was taken while the call waits for a person.
    match decide_with(serde_json::json!({"rows": 100, "table": "users"})) {
        Decision::NeedsApproval { charges, .. } => assert_eq!(charges[0].cost, 100),
        other => panic!("{other:?}"),
    }
    // A cost that cannot be read refuses the call: no approver is asked.
    let unreadable = decide_with(serde_json::json!({"rows": "many", "table": "users"}));
    assert!(
        matches!(
            unreadable,
            Decision::InvalidArgument {
                rule: "/tools/export/limits/0",
                ..
            }
        ),
        "{unreadable:?}"
    );
}

#[test]
fn a_meta_tool_may_not_run_another_meta_tool_nor_a_name_no_call_could_have() {
    let policy = policy(
        r#"{
        "version": "1", "default": "allow",
        "tools": {
            "deleteWorkspace": {"action": "deny"},
            "call_tool": {"invokes": {"name": "args.name", "arguments": "args.arguments"}},
            "run_*": {"invokes": {"name": "args.tool"}}
        }
    }"#,
    );
    let store = EnvoySharedData::default();
    let decide_meta = |tool: &str, arguments: serde_json::Value| {
        let raw = serde_json::value::to_raw_value(&arguments).unwrap();
        decide(
            policy.base(),
            tool,
            Some(raw.as_ref()),
            caller("a"),
            &store,
            NOW,
        )
    };
    // One level runs what it names, decided as if called directly.
    let direct = decide_meta(
        "call_tool",
        serde_json::json!({"name": "search", "arguments": {}}),
    );
    assert!(matches!(direct, Decision::Allow { .. }), "{direct:?}");
    let denied = decide_meta(
        "call_tool",
        serde_json::json!({"name": "deleteWorkspace", "arguments": {}}),
    );
    assert!(
        matches!(
            denied,
            Decision::Deny {
                rule: "/tools/deleteWorkspace",
                ..
            }
        ),
        "{denied:?}"
    );
    // A meta-tool naming a meta-tool (itself, or another through a pattern)
    // is refused, whatever the innermost tool is.
    for (outer, arguments, rule) in [
        (
            "call_tool",
            serde_json::json!({"name": "call_tool", "arguments": {"name": "deleteWorkspace", "arguments": {}}}),
            "/tools/call_tool",
        ),
        (
            "call_tool",
            serde_json::json!({"name": "call_tool", "arguments": {"name": "search", "arguments": {}}}),
            "/tools/call_tool",
        ),
        (
            "call_tool",
            serde_json::json!({"name": "run_any", "arguments": {"tool": "deleteWorkspace"}}),
            "/tools/run_*",
        ),
        (
            "run_x",
            serde_json::json!({"tool": "call_tool"}),
            "/tools/call_tool",
        ),
    ] {
        match decide_meta(outer, arguments.clone()) {
            Decision::Deny { rule: got, reason } => {
                assert_eq!(got, rule, "{arguments}");
                assert_eq!(reason, "a meta-tool may not run another meta-tool");
            }
            other => panic!("{outer} {arguments}: {other:?}"),
        }
    }
    // An inner name a direct call could not have (a NUL, a space, empty) is
    // refused, as the direct call would be.
    for name in ["deleteWorkspace\u{0}", "delete Workspace", ""] {
        match decide_meta(
            "call_tool",
            serde_json::json!({"name": name, "arguments": {}}),
        ) {
            Decision::Deny { rule, reason } => {
                assert_eq!(rule, "/tools/call_tool");
                assert!(
                    reason.starts_with("the meta-tool's arguments name no valid tool: "),
                    "{reason}"
                );
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
}

#[test]
fn a_name_that_matches_a_pattern_only_ignoring_case_does_not_escape_it() {
    let policy = policy(
        r#"{"version":"1","default":"allow",
            "hide":["secret*","prompt:Internal_*"],
            "tools":{"drop_*":{"action":"deny"},
                     "getUser*":{"limits":[{"counter":"u","window":"minute","max":1,"scope":"grant"}]}},
            "prompts":{"draft_*":{"action":"deny"}}}"#,
    );
    let store = EnvoySharedData::default();
    let decided = |kind: Kind, name: &str| {
        super::check_target(policy.base(), kind, name).map(|rule| rule.map(|r| r.pointer.clone()))
    };
    let variant = |kind: Kind, name: &str, pattern: &str, rule: &str| match decided(kind, name) {
        Err(Decision::Deny { rule: got, reason }) => {
            assert_eq!(got, rule, "{name}");
            assert_eq!(
                reason,
                format!(
                    "{} name matches {pattern:?} only when letter case is ignored",
                    kind.as_str()
                ),
                "{name}"
            );
        }
        other => panic!("{name}: {other:?}"),
    };
    variant(Kind::Tool, "Drop_table", "drop_*", "/tools/drop_*");
    variant(Kind::Tool, "DROP_TABLE", "drop_*", "/tools/drop_*");
    // An allowed pattern's limits are not escaped either.
    variant(Kind::Tool, "getuserById", "getUser*", "/tools/getUser*");
    variant(Kind::Prompt, "Draft_x", "draft_*", "/prompts/draft_*");
    // A hidden pattern's variant looks missing, as the hidden name does.
    for (kind, name) in [
        (Kind::Tool, "SecretX"),
        (Kind::Tool, "SECRET"),
        (Kind::Prompt, "internal_notes"),
    ] {
        assert!(
            matches!(
                decided(kind, name),
                Err(Decision::Hidden { rule: "/hide", .. })
            ),
            "{name}: {:?}",
            decided(kind, name)
        );
    }
    // What the patterns match as written, and names no pattern matches in
    // any case, are decided as before.
    assert!(matches!(
        decided(Kind::Tool, "drop_table"),
        Err(Decision::Deny {
            rule: "/tools/drop_*",
            ..
        })
    ));
    assert!(matches!(
        decided(Kind::Tool, "secretx"),
        Err(Decision::Hidden { .. })
    ));
    assert_eq!(
        decided(Kind::Tool, "getUserById"),
        Ok(Some("/tools/getUser*".to_string()))
    );
    assert_eq!(decided(Kind::Tool, "DROP"), Ok(None));
    assert_eq!(decided(Kind::Tool, "Search"), Ok(None));
    let allowed = decide(policy.base(), "Search", None, caller("a"), &store, NOW);
    assert!(matches!(allowed, Decision::Allow { .. }), "{allowed:?}");
}

#[test]
fn characters_whose_case_mapping_is_ascii_do_not_escape_a_name_or_pattern() {
    let policy = policy(
        r#"{"version":"1","default":"allow",
            "prompts":{"secret_*":{"action":"deny"},"admin":{"action":"deny"}}}"#,
    );
    for (name, rule) in [
        ("\u{17f}ecret_report", "/prompts/secret_*"), // ſ
        ("SECRET_report", "/prompts/secret_*"),
        ("adm\u{131}n", "/prompts/admin"), // dotless ı
        ("ADMIN", "/prompts/admin"),
    ] {
        match super::check_target(policy.base(), Kind::Prompt, name) {
            Err(Decision::Deny { rule: got, .. }) => assert_eq!(got, rule, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        super::check_target(policy.base(), Kind::Prompt, "\u{e9}t\u{e9}"),
        Ok(None)
    ));
}
