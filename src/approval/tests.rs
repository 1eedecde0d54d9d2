use serde_json::{json, Value};

use super::*;
use crate::policy::Approval;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn approval(reason: Option<&str>, separate: bool) -> Approval {
    Approval {
        always: false,
        ttl_seconds: 900,
        reason: reason.map(str::to_string),
        separate_approver: separate,
    }
}

fn call<'a>(arguments: Option<&'a str>, approval: &'a Approval) -> Call<'a> {
    Call {
        grant: "alice",
        kind: Kind::Tool,
        name: "asyncExecuteCode",
        arguments,
        rule: "/tools/asyncExecuteCode/approve_if/args.script/regex",
        approval,
        policy_revision: "r1",
    }
}

#[test]
fn the_check_body_carries_every_field_and_its_digest_covers_them() {
    let approval = approval(Some("scripts that start processes need a look"), true);
    let arguments = r#"{"timeout": 30.0, "script": "import os\nos.system('id')"}"#;
    let (digest, body) = check_request(&call(Some(arguments), &approval)).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["grant"], "alice");
    assert_eq!(
        body["target"],
        json!({"kind": "tool", "name": "asyncExecuteCode"})
    );
    assert_eq!(
        body["arguments"],
        json!({"script": "import os\nos.system('id')", "timeout": 30})
    );
    assert_eq!(body["reason"], "scripts that start processes need a look");
    assert_eq!(body["ttl_seconds"], 900);
    assert_eq!(body["separate_approver"], true);
    assert_eq!(body["policy_revision"], "r1");
    assert!(body.get("caller").is_none());
    // The service recomputes the digest from these fields (its reference code,
    // copied as `canonical`): the same envelope.
    let envelope = canonical::digest_envelope(&canonical::DigestInput {
        arguments: r#"{"script":"import os\nos.system('id')","timeout":30}"#,
        caller: None,
        grant: "alice",
        policy_revision: "r1",
        reason: Some("scripts that start processes need a look"),
        rule: "/tools/asyncExecuteCode/approve_if/args.script/regex",
        separate_approver: true,
        target_kind: "tool",
        target_name: "asyncExecuteCode",
        ttl_seconds: 900,
    });
    use sha2::{Digest as _, Sha256};
    assert_eq!(
        digest,
        format!(
            "sha256:{}",
            canonical::hex(&Sha256::digest(envelope.as_bytes()))
        )
    );
    // Key order and number spelling do not change the digest; values do.
    let same = r#"{"script":"import os\nos.system('id')","timeout":3e1}"#;
    assert_eq!(
        check_request(&call(Some(same), &approval)).unwrap().0,
        digest
    );
    let other = r#"{"script":"import os\nos.system('id')","timeout":31}"#;
    assert_ne!(
        check_request(&call(Some(other), &approval)).unwrap().0,
        digest
    );
    // No arguments: null.
    let (_, body) = check_request(&call(None, &approval)).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["arguments"],
        Value::Null
    );
    // A key twice: no canonical form, so no approval.
    let twice = r#"{"script":"print(1)","script":"rm -rf /"}"#;
    assert!(check_request(&call(Some(twice), &approval)).is_err());
}

#[test]
fn long_grants_go_to_the_service_as_their_digest() {
    assert_eq!(grant_for_service("alice"), "alice");
    let long = "a".repeat(MAX_GRANT_BYTES + 1);
    assert!(grant_for_service(&long).starts_with("sha256:"));
    assert!(grant_for_service("tab\there").starts_with("sha256:"));
}

#[test]
fn no_grant_is_spelled_as_another_grants_digest() {
    for hashed in ["a".repeat(MAX_GRANT_BYTES + 1), "tab\there".to_string()] {
        let digest = grant_for_service(&hashed);
        // The digest, sent as a grant of its own, is not that grant's spelling.
        assert_ne!(grant_for_service(&digest), digest);
    }
    assert_ne!(grant_for_service("sha256:ab"), "sha256:ab");
    assert_eq!(grant_for_service("sha256-ab"), "sha256-ab");
}

#[test]
fn the_services_answers_are_read_strictly() {
    let id = "3f0c1d8e9a7b4c2d8e1f0a9b8c7d6e5f";
    let pending = json!({"status":"pending","id":id,"url":"https://a.example/approvals/x","expires_at":"2026-11-30T11:19:11Z","retry_after_seconds":5,"created":true});
    assert_eq!(
        verdict(Some(200), pending.to_string().as_bytes()),
        Verdict::Pending {
            id: id.to_string(),
            url: "https://a.example/approvals/x".to_string(),
            retry_after_seconds: 5,
            expires_at: Some("2026-11-30T11:19:11Z".to_string()),
        }
    );
    let approved = json!({"status":"approved","id":id,"url":"u","expires_at":"e","approver":"bob","reason":null,"decided_at":"d"});
    assert_eq!(
        verdict(Some(200), approved.to_string().as_bytes()),
        Verdict::Approved {
            id: id.to_string(),
            approver: Some("bob".to_string())
        }
    );
    let denied = json!({"status":"denied","id":id,"url":"u","expires_at":"e","approver":"bob","reason":"no","decided_at":"d"});
    assert_eq!(
        verdict(Some(200), denied.to_string().as_bytes()),
        Verdict::Denied {
            id: id.to_string(),
            approver: Some("bob".to_string()),
            reason: Some("no".to_string())
        }
    );
    for status in [400, 413, 429] {
        let refused = verdict(
            Some(status),
            br#"{"error":"too_many_pending","message":"full"}"#,
        );
        assert!(matches!(refused, Verdict::Refused { status: s, .. } if s == status));
    }
    for (status, body) in [
        (None, &b""[..]),
        (
            Some(503),
            &br#"{"error":"unavailable","message":"redis"}"#[..],
        ),
        (Some(504), &b"upstream request timeout"[..]),
        (Some(200), &b"not json"[..]),
        (Some(200), &br#"{"status":"approved","id":"../../etc"}"#[..]),
        (
            Some(200),
            &br#"{"status":"maybe","id":"3f0c1d8e9a7b4c2d8e1f0a9b8c7d6e5f"}"#[..],
        ),
    ] {
        assert!(
            matches!(verdict(status, body), Verdict::Unavailable(_)),
            "{status:?} {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn links_come_from_the_policy_or_else_from_the_service() {
    let id = "3f0c1d8e9a7b4c2d8e1f0a9b8c7d6e5f";
    assert_eq!(
        approval_link(
            Some("https://approvals.example.com"),
            id,
            "http://internal:8090/approvals/x"
        )
        .unwrap(),
        format!("https://approvals.example.com/approvals/{id}")
    );
    assert_eq!(
        approval_link(None, id, "http://127.0.0.1:8090/approvals/x").unwrap(),
        "http://127.0.0.1:8090/approvals/x"
    );
    assert_eq!(approval_link(None, id, "javascript:alert(1)"), None);
    assert_eq!(approval_link(None, id, "https://a.example/x y"), None);
}

#[test]
fn the_gates_request_state_is_bound_to_the_call() {
    let id = "3f0c1d8e9a7b4c2d8e1f0a9b8c7d6e5f";
    let state = gate_state(id, "sha256:aa");
    assert!(is_gate_state(&state));
    assert_eq!(verify_gate_state(&state, "sha256:aa"), Some(id));
    // Another call (changed arguments give another digest), a forged tag,
    // another id, a server's state: not the gate's for this call.
    assert_eq!(verify_gate_state(&state, "sha256:bb"), None);
    assert_eq!(verify_gate_state(&format!("{state}0"), "sha256:aa"), None);
    let other_id = gate_state("0000000000000000000000000000000f", "sha256:aa");
    assert_ne!(other_id, state);
    assert_eq!(
        verify_gate_state(
            &other_id.replace("0000000000000000000000000000000f", id),
            "sha256:aa"
        ),
        None
    );
    assert!(!is_gate_state("eyJsb2NhdGlvbiI6Ik5ldyBZb3JrIn0"));
    assert_eq!(
        verify_gate_state("eyJsb2NhdGlvbiI6Ik5ldyBZb3JrIn0", "sha256:aa"),
        None
    );
}

#[test]
fn url_elicitation_is_declared_only_with_a_url_member() {
    assert!(declares_url_elicitation(Some(
        &json!({"elicitation": {"form": {}, "url": {}}})
    )));
    assert!(declares_url_elicitation(Some(
        &json!({"elicitation": {"url": {}}})
    )));
    assert!(
        !declares_url_elicitation(Some(&json!({"elicitation": {}}))),
        "form only"
    );
    assert!(!declares_url_elicitation(Some(
        &json!({"elicitation": {"url": true}})
    )));
    assert!(!declares_url_elicitation(Some(&json!({"sampling": {}}))));
    assert!(!declares_url_elicitation(None));
    let initialize = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"c","version":"1"}}}"#;
    assert!(initialize_declares_url_elicitation(initialize));
    assert!(!initialize_declares_url_elicitation(
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{}}}"#
    ));
    let retry = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","requestState":"s","inputResponses":{"approval":{"action":"decline"}},"_meta":{"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}"#;
    assert_eq!(
        retry_of(retry),
        Retry {
            request_state: Some("s".to_string()),
            action: Some("decline".to_string()),
            url_elicitation: true,
        }
    );
}

#[test]
fn a_retry_loses_the_gates_members_and_nothing_else() {
    let strip = |body: &str| -> Option<String> {
        strip_retry_members(body.as_bytes()).map(|out| {
            assert_eq!(out.len(), body.len(), "same length");
            String::from_utf8(out).unwrap()
        })
    };
    let parsed = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let cases = [
        // Last, first, middle, both, with whitespace and nested look-alikes.
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run","arguments":{"requestState":"kept","n":1.50},"inputResponses":{"approval":{"action":"accept"}},"requestState":"mcp-policy-approval.x"}}"#,
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run","arguments":{"requestState":"kept","n":1.50}}}),
        ),
        (
            r#"{"params":{"requestState":"s","inputResponses":{},"name":"run"},"id":1}"#,
            json!({"params":{"name":"run"},"id":1}),
        ),
        (
            r#"{ "params" : { "name" : "a\"b" , "requestState" : "s" , "_meta" : {"x":[1,{"y":"}"}]} } }"#,
            json!({"params":{"name":"a\"b","_meta":{"x":[1,{"y":"}"}]}}}),
        ),
        (
            r#"{"params":{"inputResponses":{"a":[1,2,{"b":"]"}]},"requestState":"s"}}"#,
            json!({"params":{}}),
        ),
    ];
    for (body, expected) in &cases {
        let out = strip(body).unwrap_or_else(|| panic!("nothing stripped from {body}"));
        assert_eq!(&parsed(&out), expected, "{body}\n{out}");
    }
    // The numbers' spelling reaches the server as sent.
    assert!(strip(cases[0].0).unwrap().contains(r#""n":1.50"#));
    // Nothing to strip: None (the body goes as it is).
    assert_eq!(
        strip(r#"{"params":{"name":"run","arguments":{"requestState":"x"}}}"#),
        None
    );
    assert_eq!(strip(r#"{"params":"x"}"#), None);
    assert_eq!(strip(r#"[1]"#), None);
}
