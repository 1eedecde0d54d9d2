//! Costs and per-argument values as a decision reads them from a call's
//! arguments, including a meta-tool's inner call.

use serde_json::json;

use super::*;
use crate::policy::Policy;
use crate::testing::EnvoySharedData;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;

const CALLER: CallerScope<'static> = CallerScope {
    grant: "alice",
    session: None,
    role: None,
};

const POLICY: &str = r#"{
    "version": "1", "default": "deny",
    "all_tools": {"limits": [{"counter": "all_rows", "window": "day", "max": 1000, "scope": "grant", "cost_from": "args.rows"}]},
    "tools": {
        "run": {"invokes": {"name": "args.tool", "arguments": "args.arguments"}},
        "export": {"limits": [
            {"counter": "rows", "window": "day", "max": 100, "scope": "grant", "cost_from": "args.rows"},
            {"counter": "exports", "window": "day", "max": 50, "scope": "grant", "per": "args.table"}
        ]}
    }
}"#;

fn decide_call<'p>(
    view: &'p View,
    tool: &str,
    arguments: serde_json::Value,
    store: &EnvoySharedData,
) -> Decided<'p> {
    let raw = serde_json::value::to_raw_value(&arguments).unwrap();
    let request = Request {
        kind: Kind::Tool,
        name: tool,
        counting: Counting::Take,
        request_state: None,
        binds_state: false,
    };
    decide_target(view, request, Some(raw.as_ref()), CALLER, store, NOW)
}

#[test]
fn costs_are_read_from_the_arguments_and_reported() {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let decided = decide_call(
        policy.base(),
        "export",
        json!({"rows": 40, "table": "t"}),
        &store,
    );
    assert!(
        matches!(decided.decision, Decision::Allow { ref reservations, .. } if reservations.len() == 3)
    );
    // Both costed limits, in order; the per-table counter has no cost of its own.
    assert_eq!(
        decided.costs,
        vec![("rows".to_string(), 40), ("all_rows".to_string(), 40)]
    );
    let decided = decide_call(
        policy.base(),
        "export",
        json!({"rows": 61, "table": "t"}),
        &store,
    );
    assert!(matches!(
        decided.decision,
        Decision::RateLimited { limit, cost: 61, .. } if limit.counter == "rows"
    ));
}

#[test]
fn a_meta_tool_costs_what_its_inner_call_says() {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    // The inner tool's limit reads the inner arguments; all_tools reads the
    // meta-tool's own, which has no `rows`: -32602 against all_tools.
    let decided = decide_call(
        policy.base(),
        "run",
        json!({"tool": "export", "arguments": {"rows": 10, "table": "t"}}),
        &store,
    );
    assert_eq!(
        decided.decision,
        Decision::InvalidArgument {
            rule: "/all_tools/limits/0",
            reason: "args.rows is required: it is the cost counted against \"all_rows\""
                .to_string()
        }
    );
    let decided = decide_call(
        policy.base(),
        "run",
        json!({"tool": "export", "rows": 3, "arguments": {"rows": 10, "table": "t"}}),
        &store,
    );
    assert!(
        matches!(decided.decision, Decision::Allow { .. }),
        "{:?}",
        decided.decision
    );
    assert_eq!(
        decided.costs,
        vec![("rows".to_string(), 10), ("all_rows".to_string(), 3)]
    );
    // An inner call that cannot be counted names the inner tool.
    let decided = decide_call(
        policy.base(),
        "run",
        json!({"tool": "export", "rows": 3, "arguments": {"rows": -1}}),
        &store,
    );
    assert!(decided.by_invoked);
    assert!(matches!(
        decided.decision,
        Decision::InvalidArgument {
            rule: "/tools/export/limits/0",
            ..
        }
    ));
}

#[test]
fn nothing_is_taken_when_a_cost_cannot_be_read() {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let decided = decide_call(policy.base(), "export", json!({"table": "t"}), &store);
    assert!(matches!(decided.decision, Decision::InvalidArgument { .. }));
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}
