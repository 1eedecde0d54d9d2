//! Concurrency caps, costs, per-argument counters and roles through the
//! simulated Envoy: a slot is taken when the call is forwarded and given
//! back however its exchange ends; global slots are released through the
//! rate-limit service.

use prost::Message;
use serde_json::{json, Value};

use super::sim::{flags, End, SimEnvoy, SimStream};
use super::*;
use crate::ratelimit::service::{
    CurrentLimit, DescriptorStatus, RateLimitRequest, RateLimitResponse,
};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `exec` two in flight per grant; `export` a budget of 100 rows a day taken
/// from `args.rows`; `merge` twice an hour per repository.
const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "identity": { "header": "x-agent-id" },
  "tools": {
    "exec": { "limits": [{ "counter": "exec_inflight", "concurrent": 2, "scope": "grant", "lease_seconds": 60 }] },
    "export": { "limits": [{ "counter": "rows", "window": "day", "max": 100, "scope": "grant", "cost_from": "args.rows" }] },
    "merge": { "limits": [{ "counter": "merges", "window": "hour", "max": 2, "scope": "grant", "per": "args.repo" }] }
  }
}"#;

fn call(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
        .to_string()
        .into_bytes()
}

fn headers(grant: &str) -> Vec<(&str, &[u8])> {
    vec![
        (":method", b"POST"),
        (":path", b"/mcp"),
        ("x-agent-id", grant.as_bytes()),
        ("content-type", b"application/json"),
    ]
}

fn post<'e>(envoy: &'e SimEnvoy, grant: &str, body: &[u8]) -> SimStream<'e> {
    let mut stream = envoy.stream();
    stream.send(&headers(grant), &[body]);
    stream
}

fn exec<'e>(envoy: &'e SimEnvoy, grant: &str) -> SimStream<'e> {
    post(
        envoy,
        grant,
        &call(1, "exec", json!({"script": "sleep 60"})),
    )
}

fn error_of(stream: &SimStream<'_>) -> Value {
    stream.downstream().json()["error"].clone()
}

fn answer(stream: &mut SimStream<'_>) {
    stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
}

// ---- Concurrency, local ----

#[test]
fn a_full_cap_refuses_with_the_cap_and_no_retry_guess() {
    let envoy = SimEnvoy::new(POLICY);
    let first = exec(&envoy, "alice");
    let second = exec(&envoy, "alice");
    assert!(first.upstream().complete && second.upstream().complete);
    let mut third = exec(&envoy, "alice");
    assert!(!third.upstream().started());
    let error = error_of(&third);
    assert_eq!(error["code"], -31002);
    assert_eq!(
        error["data"],
        json!({"tool": "exec", "rule": "/tools/exec/limits/0", "counter": "exec_inflight", "concurrent": 2})
    );
    third.end(End::Completed);
    // Another grant has slots of its own.
    assert!(exec(&envoy, "bob").upstream().complete);
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "rate_limited")]),
        1
    );
}

/// Every way an exchange can end gives its slot back: after each, two calls
/// fit again (the cap is 2), and a third does not.
#[test]
fn a_slot_comes_back_however_the_exchange_ends() {
    type Ending = fn(&mut SimStream<'_>);
    let endings: [(&str, Ending); 9] = [
        ("the answer completed", |s| {
            answer(s);
            s.end(End::Completed)
        }),
        ("an event stream completed", |s| {
            s.response_headers(200, &[("content-type", b"text/event-stream")], false);
            s.response_body(b"data: {}\n\n", true);
            s.end(End::Completed)
        }),
        ("the client hung up before the answer", |s| {
            s.end(End::ClientGone)
        }),
        ("the client hung up mid-answer", |s| {
            s.response_headers(200, &[("content-type", b"text/event-stream")], false);
            s.response_body(b"data: {}\n\n", false);
            s.end(End::ClientGone)
        }),
        ("the server reset mid-answer", |s| {
            s.response_headers(200, &[("content-type", b"text/event-stream")], false);
            s.end(End::ServerReset)
        }),
        ("the server reset before answering", |s| {
            s.envoy_answers(
                503,
                "upstream_reset_before_response_started{remote_reset}",
                flags::UPSTREAM_REMOTE_RESET,
            );
            s.end(End::Completed)
        }),
        ("Envoy timed out", |s| {
            s.envoy_answers(
                504,
                "upstream_response_timeout",
                flags::UPSTREAM_REQUEST_TIMEOUT,
            );
            s.end(End::Completed)
        }),
        ("Envoy could not connect", |s| {
            s.envoy_answers(
                503,
                "upstream_reset_before_response_started{remote_connection_failure}",
                flags::UPSTREAM_CONNECTION_FAILURE,
            );
            s.end(End::Completed)
        }),
        ("the server answered 503", |s| {
            s.server_answers(503, &[], &[b"busy"]);
            s.end(End::Completed)
        }),
    ];
    for (how, ending) in endings {
        let envoy = SimEnvoy::new(POLICY);
        let mut first = exec(&envoy, "alice");
        let _second = exec(&envoy, "alice");
        assert!(
            !exec(&envoy, "alice").upstream().started(),
            "{how}: cap of 2"
        );
        ending(&mut first);
        assert!(
            exec(&envoy, "alice").upstream().complete,
            "{how}: slot not given back"
        );
        assert!(
            !exec(&envoy, "alice").upstream().started(),
            "{how}: two slots came back"
        );
    }
}

#[test]
fn a_refused_call_holds_no_slot() {
    let envoy = SimEnvoy::new(POLICY);
    // Refused by the default: never counted.
    let mut denied = post(&envoy, "alice", &call(1, "deleteAll", json!({})));
    assert_eq!(error_of(&denied)["code"], -31001);
    denied.end(End::Completed);
    let one = exec(&envoy, "alice");
    let two = exec(&envoy, "alice");
    assert!(
        one.upstream().complete && two.upstream().complete,
        "the denied call took a slot"
    );
    let mut refused = exec(&envoy, "alice");
    assert_eq!(error_of(&refused)["code"], -31002, "cap of 2");
    refused.end(End::Completed);
    // The refused call's end gave nothing back that it did not hold.
    assert!(!exec(&envoy, "alice").upstream().started());
}

#[test]
fn a_call_longer_than_its_lease_stops_counting_and_says_so() {
    let envoy = SimEnvoy::new(POLICY);
    envoy.set_time(1_800_000_000);
    let mut long = exec(&envoy, "alice");
    let _other = exec(&envoy, "alice");
    assert!(!exec(&envoy, "alice").upstream().started());
    // 60 s later (the lease) the long call's slot has ended by itself.
    envoy.set_time(1_800_000_060);
    assert!(exec(&envoy, "alice").upstream().complete);
    answer(&mut long);
    long.end(End::Completed);
    assert!(
        envoy
            .logs()
            .iter()
            .any(|(level, line)| *level == Level::Warn
                && line.contains("longer than the lease of its concurrency slots")),
        "{:?}",
        envoy.logs()
    );
}

// ---- Costs and per-argument counters ----

#[test]
fn costs_spend_a_budget_and_the_refusal_shows_the_cost() {
    let envoy = SimEnvoy::new(POLICY);
    let export = |rows: Value| post(&envoy, "alice", &call(1, "export", json!({"rows": rows})));
    assert!(export(json!(60)).upstream().complete);
    assert!(export(json!(40)).upstream().complete);
    let mut over = export(json!(1));
    let error = error_of(&over);
    assert_eq!(error["code"], -31002);
    assert_eq!(error["data"]["cost"], 1);
    assert_eq!(error["data"]["max"], 100);
    over.end(End::Completed);
    // A cost of 0 passes even with the budget spent.
    assert!(export(json!(0)).upstream().complete);
}

#[test]
fn an_uncountable_cost_is_invalid_params_and_counts_nothing() {
    let envoy = SimEnvoy::new(POLICY);
    for (rows, reason) in [
        (None, "args.rows is required"),
        (Some(json!(-1)), "must be a non-negative integer"),
        (Some(json!(2.5)), "must be a non-negative integer"),
        (Some(json!("10")), "must be a non-negative integer"),
        (Some(json!(101)), "more than the 100"),
    ] {
        let arguments = match &rows {
            Some(rows) => json!({ "rows": rows }),
            None => json!({}),
        };
        let mut stream = post(&envoy, "alice", &call(7, "export", arguments));
        assert!(!stream.upstream().started(), "{rows:?}");
        let error = error_of(&stream);
        assert_eq!(error["code"], -32602, "{rows:?}");
        assert_eq!(error["data"]["rule"], "/tools/export/limits/0");
        assert!(
            error["data"]["reason"].as_str().unwrap().contains(reason),
            "{rows:?}: {error}"
        );
        stream.end(End::Completed);
    }
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "invalid")]),
        5
    );
    // Nothing was taken: the whole budget is there.
    let full = post(&envoy, "alice", &call(8, "export", json!({"rows": 100})));
    assert!(full.upstream().complete);
}

#[test]
fn audit_lines_show_what_a_call_costs() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, "alice", &call(1, "export", json!({"rows": 42})));
    answer(&mut stream);
    stream.end(End::Completed);
    let mut plain = exec(&envoy, "alice");
    plain.end(End::Completed);
    let lines = envoy.audit_lines();
    assert_eq!(lines[0]["costs"], json!([{"counter": "rows", "cost": 42}]));
    // Limits without a cost of their own add nothing to the line.
    assert!(lines[1].get("costs").is_none(), "{}", lines[1]);
}

#[test]
fn per_argument_counters_count_each_value_apart() {
    let envoy = SimEnvoy::new(POLICY);
    let merge = |grant: &str, repo: &str| {
        post(&envoy, grant, &call(1, "merge", json!({"repo": repo})))
            .upstream()
            .complete
    };
    assert!(merge("alice", "acme/web"));
    assert!(merge("alice", "acme/web"));
    assert!(!merge("alice", "acme/web"));
    assert!(merge("alice", "acme/api"));
    assert!(merge("bob", "acme/web"));
}

// ---- Roles ----

const ROLES: &str = r#"{
  "version": "1",
  "default": "deny",
  "identity": { "jwt_claim": { "provider_metadata": "jwt_payload", "claim": "sub", "role_claim": "role" } },
  "roles": {
    "engineer": { "tools": {
      "deploy": { "limits": [{ "counter": "deploys", "window": "hour", "max": 2, "scope": "role" }] },
      "exec": { "limits": [{ "counter": "execs", "window": "hour", "max": 1, "scope": "grant" }] }
    } }
  },
  "grant_roles": { "ci": "engineer" }
}"#;

fn claim(stream: &mut SimStream<'_>, name: &str, value: &str) {
    stream.set_property(
        &[
            "metadata",
            "filter_metadata",
            JWT_AUTHN_METADATA,
            "jwt_payload",
            name,
        ],
        value.as_bytes(),
    );
}

fn as_jwt<'e>(envoy: &'e SimEnvoy, sub: &str, role: Option<&str>, tool: &str) -> SimStream<'e> {
    let mut stream = envoy.stream();
    claim(&mut stream, "sub", sub);
    if let Some(role) = role {
        claim(&mut stream, "role", role);
    }
    stream.send(
        &[
            (":method", b"POST"),
            (":path", b"/mcp"),
            ("content-type", b"application/json"),
        ],
        &[&call(1, tool, json!({}))],
    );
    stream
}

#[test]
fn a_role_claim_gives_the_roles_rules_and_counts_stay_per_grant_unless_scope_role() {
    let envoy = SimEnvoy::new(ROLES);
    // Without a role, the top level: deny.
    assert!(!as_jwt(&envoy, "eve", None, "exec").upstream().started());
    // A role the policy does not define is no role.
    assert!(!as_jwt(&envoy, "eve", Some("admin"), "exec")
        .upstream()
        .started());
    // Engineers: `exec` once an hour each (scope grant).
    assert!(
        as_jwt(&envoy, "alice", Some("engineer"), "exec")
            .upstream()
            .complete
    );
    assert!(!as_jwt(&envoy, "alice", Some("engineer"), "exec")
        .upstream()
        .started());
    assert!(
        as_jwt(&envoy, "bob", Some("engineer"), "exec")
            .upstream()
            .complete
    );
    // `deploy` twice an hour for all engineers together (scope role),
    // including `ci`, an engineer by grant_roles.
    assert!(
        as_jwt(&envoy, "alice", Some("engineer"), "deploy")
            .upstream()
            .complete
    );
    assert!(as_jwt(&envoy, "ci", None, "deploy").upstream().complete);
    let refused = as_jwt(&envoy, "bob", Some("engineer"), "deploy");
    assert_eq!(
        error_of(&refused)["data"]["rule"],
        "/roles/engineer/tools/deploy/limits/0"
    );
}

// ---- Global caps through the rate-limit service ----

const GLOBAL: &str = r#"{
  "version": "1",
  "default": "deny",
  "identity": { "header": "x-agent-id" },
  "rate_limit_service": { "cluster": "ratelimit", "timeout_ms": 50, "failure_mode": "FAILURE" },
  "tools": {
    "exec": { "limits": [
      { "counter": "exec_inflight", "concurrent": 3, "scope": "grant", "store": "global" },
      { "counter": "exec_rate", "window": "minute", "max": 10, "scope": "grant", "store": "global", "cost": 2 }
    ] }
  }
}"#;

fn global(failure: &str) -> SimEnvoy {
    SimEnvoy::new(&GLOBAL.replace("FAILURE", failure))
}

/// One descriptor's status in a rate-limit service answer.
pub(super) fn status(code: i32, name: &str) -> DescriptorStatus {
    DescriptorStatus {
        code,
        current_limit: Some(CurrentLimit {
            name: name.to_string(),
        }),
        limit_remaining: 0,
        duration_until_reset: None,
    }
}

/// A rate-limit service answer, encoded.
pub(super) fn service_answer(overall: i32, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
    RateLimitResponse {
        overall_code: overall,
        statuses,
    }
    .encode_to_vec()
}

fn acknowledged() -> Vec<u8> {
    service_answer(
        1,
        vec![
            status(1, "concurrent:exec_inflight"),
            status(1, "exec_rate"),
        ],
    )
}

fn entries(request: &RateLimitRequest, index: usize) -> Vec<(String, String)> {
    request.descriptors[index]
        .entries
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect()
}

fn request_of(stream: &SimStream<'_>, index: usize) -> RateLimitRequest {
    RateLimitRequest::decode(stream.calls()[index].1.message.as_slice()).unwrap()
}

#[test]
fn a_global_slot_is_acquired_with_the_call_and_released_when_it_ends() {
    type Ending = fn(&mut SimStream<'_>);
    let endings: [(&str, Ending); 3] = [
        ("completed", |s| {
            answer(s);
            s.end(End::Completed)
        }),
        ("client gone", |s| s.end(End::ClientGone)),
        ("server reset", |s| {
            s.response_headers(200, &[("content-type", b"text/event-stream")], false);
            s.end(End::ServerReset)
        }),
    ];
    for (how, ending) in endings {
        let envoy = global("closed");
        let mut stream = exec(&envoy, "alice");
        assert!(
            !stream.upstream().started(),
            "held while the service decides"
        );
        let acquire = request_of(&stream, 0);
        let lease = entries(&acquire, 0)
            .into_iter()
            .find(|(key, _)| key == "lease")
            .map(|(_, value)| value)
            .unwrap();
        assert_eq!(lease.len(), 32, "128 bits in hex");
        assert_eq!(
            acquire.descriptors[1]
                .hits_addend
                .as_ref()
                .map(|cost| cost.value),
            Some(2),
            "the window's cost"
        );
        let token = stream.calls()[0].0;
        stream.service_answers(token, 0, &acknowledged());
        assert!(stream.upstream().complete, "{how}");
        assert_eq!(stream.calls().len(), 1, "{how}: nothing released yet");
        ending(&mut stream);
        assert_eq!(stream.calls().len(), 2, "{how}: one release");
        let release = request_of(&stream, 1);
        assert_eq!(
            entries(&release, 0),
            vec![
                ("counter".into(), "exec_inflight".into()),
                ("scope".into(), "grant:alice".into()),
                ("lease".into(), lease.clone()),
                ("release".into(), "true".into()),
            ],
            "{how}"
        );
        assert_eq!(
            release.descriptors.len(),
            1,
            "{how}: windows are not released"
        );
        assert_eq!(
            release.descriptors[0].hits_addend.as_ref().map(|h| h.value),
            Some(0)
        );
    }
    // Each exchange leases its own id.
    let envoy = global("closed");
    let (a, b) = (exec(&envoy, "alice"), exec(&envoy, "alice"));
    assert_ne!(
        entries(&request_of(&a, 0), 0)[2],
        entries(&request_of(&b, 0), 0)[2]
    );
}

#[test]
fn a_full_global_cap_refuses_without_a_retry_guess_and_releases_nothing() {
    let envoy = global("closed");
    let mut stream = exec(&envoy, "alice");
    let token = stream.calls()[0].0;
    let full = service_answer(
        2,
        vec![
            status(2, "concurrent:exec_inflight"),
            status(1, "exec_rate"),
        ],
    );
    stream.service_answers(token, 0, &full);
    assert!(!stream.upstream().started());
    let error = error_of(&stream);
    assert_eq!(error["code"], -31002);
    assert_eq!(error["data"]["concurrent"], 3);
    assert!(
        error["data"].get("retry_after_seconds").is_none(),
        "{error}"
    );
    stream.end(End::Completed);
    assert_eq!(
        stream.calls().len(),
        1,
        "nothing was taken: nothing to release"
    );
}

#[test]
fn a_service_that_does_not_hold_leases_is_a_failure_of_the_service() {
    // envoyproxy/ratelimit answers OK and names override limits "".
    let unacknowledged = service_answer(1, vec![status(1, ""), status(1, "")]);
    let envoy = global("closed");
    let mut stream = exec(&envoy, "alice");
    let token = stream.calls()[0].0;
    stream.service_answers(token, 0, &unacknowledged);
    assert!(!stream.upstream().started());
    assert_eq!(error_of(&stream)["code"], -32603);
    stream.end(End::Completed);
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "failed")]),
        1
    );

    let envoy = global("open");
    let mut stream = exec(&envoy, "alice");
    let token = stream.calls()[0].0;
    stream.service_answers(token, 0, &unacknowledged);
    assert!(stream.upstream().complete, "failure_mode open forwards");
    answer(&mut stream);
    stream.end(End::Completed);
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "failed")]),
        1
    );
}

#[test]
fn slots_the_service_may_hold_are_released_even_when_its_answer_is_lost() {
    // A timeout: the service may have taken the slot.
    let envoy = global("closed");
    let mut stream = exec(&envoy, "alice");
    let token = stream.calls()[0].0;
    stream.service_answers(token, 4, b"");
    assert_eq!(error_of(&stream)["code"], -32603);
    stream.end(End::Completed);
    assert_eq!(stream.calls().len(), 2, "released after a timeout");
    // The caller left while the service decided.
    let envoy = global("closed");
    let mut stream = exec(&envoy, "alice");
    stream.end(End::ClientGone);
    assert_eq!(stream.calls().len(), 2, "released when the caller left");
    assert_eq!(
        entries(&request_of(&stream, 1), 0)[3],
        ("release".into(), "true".into())
    );
    // Recorded once, as what happened, and counted.
    let audit = envoy.audit_lines();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["decision"], "abandoned");
    assert_eq!(
        stream.filter_state("mcp_policy.decision"),
        Some("abandoned")
    );
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "abandoned")]),
        1
    );
    assert_eq!(envoy.sum(crate::metrics::DECISIONS, &[]), 1);
}

#[test]
fn a_release_envoy_refuses_to_send_is_logged_and_left_to_the_lease() {
    let envoy = global("closed");
    let mut stream = exec(&envoy, "alice");
    let token = stream.calls()[0].0;
    stream.service_answers(token, 0, &acknowledged());
    stream.fail_dispatch();
    answer(&mut stream);
    stream.end(End::Completed);
    assert!(envoy
        .logs()
        .iter()
        .any(|(_, line)| line.contains("could not release concurrency slots")));
}

/// Monitor mode counts what enforcement would: a call the service refuses
/// goes ahead, but gives back the local quota enforcement would give back.
#[test]
fn monitor_mode_gives_back_local_quota_when_the_service_refuses() {
    let policy = r#"{
      "version": "1",
      "default": "deny",
      "mode": "monitor",
      "identity": { "header": "x-agent-id" },
      "rate_limit_service": { "cluster": "ratelimit" },
      "tools": {
        "exec": { "limits": [
          { "counter": "local_one", "window": 1000000000, "max": 1, "scope": "grant" },
          { "counter": "exec_rate", "window": "minute", "max": 10, "scope": "grant", "store": "global" }
        ] }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let over = service_answer(2, vec![status(1, "local_one"), status(2, "exec_rate")]);
    let mut first = exec(&envoy, "alice");
    let token = first.calls()[0].0;
    first.service_answers(token, 0, &over);
    assert!(first.upstream().complete, "monitor mode blocks nothing");
    answer(&mut first);
    first.end(End::Completed);
    // Enforcement would have refused the first call and kept none of the
    // local unit: the second call finds room locally and asks the service.
    let mut second = exec(&envoy, "alice");
    assert_eq!(second.calls().len(), 1, "{:?}", envoy.audit_lines());
    let token = second.calls()[0].0;
    second.service_answers(token, 0, &over);
    answer(&mut second);
    second.end(End::Completed);
    let decisions: Vec<Value> = envoy
        .audit_lines()
        .iter()
        .map(|line| json!([line["decision"], line["enforced"]]))
        .collect();
    assert_eq!(
        decisions,
        [
            json!(["rate_limited", false]),
            json!(["rate_limited", false])
        ]
    );
}

/// `failure_mode: open` lets a call through when its local limits cannot be
/// counted; its fleet-wide limits still hold.
#[test]
fn a_local_failure_let_through_still_asks_the_fleet() {
    let policy = r#"{
      "version": "1",
      "default": "deny",
      "failure_mode": "open",
      "max_callers_per_counter": 1,
      "identity": { "header": "x-agent-id" },
      "rate_limit_service": { "cluster": "ratelimit" },
      "tools": {
        "exec": { "limits": [
          { "counter": "local_day", "window": "day", "max": 5, "scope": "grant" },
          { "counter": "exec_rate", "window": "minute", "max": 10, "scope": "grant", "store": "global" }
        ] }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let ok = service_answer(1, vec![status(1, "exec_rate")]);
    let mut alice = exec(&envoy, "alice");
    let token = alice.calls()[0].0;
    alice.service_answers(token, 0, &ok);
    assert!(alice.upstream().complete);
    // Bob finds the one-slot local table taken by alice: local counting
    // fails, open; the service is asked all the same, and refuses.
    let mut bob = exec(&envoy, "bob");
    assert_eq!(bob.calls().len(), 1, "the fleet-wide limit is asked");
    assert!(!bob.upstream().started(), "held while the service decides");
    let over = service_answer(2, vec![status(2, "exec_rate")]);
    let token = bob.calls()[0].0;
    bob.service_answers(token, 0, &over);
    assert!(!bob.upstream().started());
    assert_eq!(error_of(&bob)["code"], -31002);
    bob.end(End::Completed);
    // Refused by the fleet: enforced, though local counting failed open.
    let last = envoy.audit_lines().pop().unwrap();
    assert_eq!(
        (last["decision"].clone(), last["enforced"].clone()),
        (json!("rate_limited"), json!(true)),
        "{last}"
    );
}

#[test]
fn a_full_counter_table_says_in_envoys_log_which_field_to_raise() {
    for (failure_mode, forwarded) in [("closed", false), ("open", true)] {
        let policy = format!(
            r#"{{
          "version": "1", "default": "allow", "failure_mode": "{failure_mode}",
          "identity": {{ "header": "x-agent-id" }},
          "max_callers_per_counter": 1,
          "tools": {{ "exec": {{ "limits": [{{ "counter": "c", "window": "hour", "max": 5, "scope": "grant" }}] }} }}
        }}"#
        );
        let envoy = SimEnvoy::new(&policy);
        // One slot: the second caller finds it held (every probe lands on it).
        assert!(exec(&envoy, "alice").upstream().complete);
        let bob = exec(&envoy, "bob");
        assert_eq!(bob.upstream().complete, forwarded, "{failure_mode}");
        if !forwarded {
            assert_eq!(error_of(&bob)["code"], -32603);
        }
        let warned = || -> Vec<String> {
            envoy
                .logs()
                .into_iter()
                .filter(|(level, line)| *level == Level::Warn && line.contains("could not decide"))
                .map(|(_, line)| line)
                .collect()
        };
        let first = warned();
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].contains(r#"could not decide tool "exec""#)
                && first[0].contains("raise max_callers_per_counter")
                && first[0].contains(&format!("failure_mode {failure_mode}")),
            "{first:?}"
        );
        // A caller filling the table writes no line per call: one per 10 s,
        // with how many went unlogged.
        exec(&envoy, "carol");
        exec(&envoy, "dave");
        assert_eq!(warned().len(), 1);
        envoy.set_time(1_800_000_010);
        exec(&envoy, "erin");
        let last = warned();
        assert_eq!(last.len(), 2, "{last:?}");
        assert!(
            last[1].ends_with("(2 more not logged since the last such line)"),
            "{last:?}"
        );
    }
}
