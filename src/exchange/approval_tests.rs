//! Calls that need a person's approval, through the simulated Envoy and a
//! model of the approval service's protocol (create-or-get pending by
//! digest, approved answered once, denied with a reason): what reaches the
//! server, what the caller is told at each protocol revision, what the
//! limits and the audit line keep.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::sim::{End, SimEnvoy, SimStream};
use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy(failure_mode: &str, extra: &str) -> String {
    format!(
        r#"{{
  "version": "1", "default": "deny", "identity": {{ "header": "x-agent-id" }},
  "approval_service": {{ "cluster": "mcp_approval", "public_url": "https://approvals.example.com",
                         "timeout_ms": 200, "failure_mode": "{failure_mode}" }},
  {extra}
  "tools": {{
    "run": {{
      "approve_if": {{ "args.script": {{ "regex": "subprocess" }} }},
      "approval": {{ "reason": "scripts that start processes need a look", "ttl_seconds": 600 }},
      "limits": [{{ "counter": "run", "window": "day", "max": 2, "scope": "grant" }}]
    }},
    "wipe": {{ "action": "approve" }},
    "read": {{}}
  }}
}}"#
    )
}

fn closed() -> String {
    policy("closed", "")
}

const RISKY: &str = "import subprocess\nsubprocess.run(['ls'])";

fn run_call(id: u64, script: &str) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"run","arguments":{"script":script,"timeout":30}}})
        .to_string()
        .into_bytes()
}

fn headers<'a>(grant: &'a str, extra: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", b"/mcp"),
        ("content-type", b"application/json"),
        ("x-agent-id", grant.as_bytes()),
    ];
    headers.extend_from_slice(extra);
    headers
}

fn send<'e>(envoy: &'e SimEnvoy, extra: &[(&str, &[u8])], body: &[u8]) -> SimStream<'e> {
    let mut stream = envoy.stream();
    stream.send(&headers("alice", extra), &[body]);
    stream
}

/// The approval service's protocol, in memory: one approval per digest.
#[derive(Default)]
struct Service {
    by_digest: RefCell<HashMap<String, (String, State)>>,
    checks: RefCell<Vec<Value>>,
    next: RefCell<u32>,
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Pending,
    Approved(String),
    Denied(String, String),
}

impl Service {
    /// Answers one check body, as the service would.
    fn answer(&self, body: &[u8]) -> (u16, Vec<u8>) {
        let check: Value = serde_json::from_slice(body).unwrap();
        self.checks.borrow_mut().push(check.clone());
        let digest = check["digest"].as_str().unwrap().to_string();
        let mut approvals = self.by_digest.borrow_mut();
        let entry = approvals.get(&digest).cloned();
        let answer = match entry {
            Some((id, State::Approved(approver))) => {
                approvals.remove(&digest);
                json!({"status":"approved","id":id,"url":"http://internal/x","expires_at":"2027-01-01T00:00:00Z","approver":approver,"reason":null,"decided_at":"2027-01-01T00:00:00Z"})
            }
            Some((id, State::Denied(approver, reason))) => {
                json!({"status":"denied","id":id,"url":"http://internal/x","expires_at":"2027-01-01T00:00:00Z","approver":approver,"reason":reason,"decided_at":"2027-01-01T00:00:00Z"})
            }
            Some((id, State::Pending)) => {
                json!({"status":"pending","id":id,"url":"http://internal/x","expires_at":"2027-01-01T00:00:00Z","retry_after_seconds":5,"created":false})
            }
            None => {
                *self.next.borrow_mut() += 1;
                let id = format!("{:032x}", *self.next.borrow());
                approvals.insert(digest, (id.clone(), State::Pending));
                json!({"status":"pending","id":id,"url":"http://internal/x","expires_at":"2027-01-01T00:00:00Z","retry_after_seconds":5,"created":true})
            }
        };
        (200, answer.to_string().into_bytes())
    }

    fn decide(&self, id: &str, state: State) {
        for (known, current) in self.by_digest.borrow_mut().values_mut() {
            if known == id {
                assert_eq!(
                    *current,
                    State::Pending,
                    "only pending approvals are decided"
                );
                *current = state;
                return;
            }
        }
        panic!("no approval {id}");
    }

    fn approve(&self, id: &str) {
        self.decide(id, State::Approved("bob@example.com".to_string()));
    }

    fn last_check(&self) -> Value {
        self.checks.borrow().last().cloned().unwrap_or(Value::Null)
    }
}

/// Delivers the service's answer to the stream's pending check.
fn ask(stream: &mut SimStream<'_>, service: &Service) {
    let (token, call) = stream
        .http_calls()
        .last()
        .cloned()
        .expect("the gate asked the approval service");
    assert_eq!(call.cluster, "mcp_approval");
    assert_eq!(call.path, "/v1/check");
    assert_eq!(call.timeout, Duration::from_millis(200));
    let (status, body) = service.answer(&call.body);
    stream.http_answers(token, Some(status), &body);
}

fn error(stream: &SimStream<'_>) -> Value {
    stream.downstream().json()["error"].clone()
}

fn approval_id(stream: &SimStream<'_>) -> String {
    error(stream)["data"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {}", stream.downstream().json()))
        .to_string()
}

#[test]
fn an_approved_call_goes_through_once_and_a_replay_waits_again() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let body = run_call(1, RISKY);

    let mut first = send(&envoy, &[], &body);
    assert!(
        !first.upstream().started(),
        "held while the service decides"
    );
    ask(&mut first, &service);
    assert!(
        !first.upstream().started(),
        "a pending call never reaches the server"
    );
    let answer = error(&first);
    assert_eq!(answer["code"], -31004);
    let id = approval_id(&first);
    assert_eq!(
        answer["data"]["approval_url"],
        format!("https://approvals.example.com/approvals/{id}"),
        "the policy's public_url, not the service's own link"
    );
    assert_eq!(answer["data"]["retry_after_seconds"], 5);
    assert_eq!(
        answer["data"]["rule"],
        "/tools/run/approve_if/args.script/regex"
    );
    assert_eq!(
        answer["data"]["reason"],
        "scripts that start processes need a look"
    );
    assert_eq!(answer["data"]["tool"], "run");
    first.end(End::Completed);
    let check = service.last_check();
    assert_eq!(check["grant"], "alice");
    assert_eq!(check["target"], json!({"kind":"tool","name":"run"}));
    assert_eq!(check["arguments"], json!({"script": RISKY, "timeout": 30}));
    assert_eq!(check["ttl_seconds"], 600);
    assert_eq!(
        check["policy_revision"],
        envoy.plugin.policy.revision.as_str()
    );

    service.approve(&id);
    let mut retry = send(&envoy, &[], &run_call(2, RISKY));
    ask(&mut retry, &service);
    assert!(retry.upstream().complete);
    assert_eq!(
        retry.upstream().body,
        run_call(2, RISKY),
        "forwarded as sent"
    );
    retry.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    retry.end(End::Completed);

    let mut replay = send(&envoy, &[], &run_call(3, RISKY));
    ask(&mut replay, &service);
    assert!(!replay.upstream().started(), "used once: the replay waits");
    assert_eq!(error(&replay)["code"], -31004);
    assert_ne!(approval_id(&replay), id, "a new approval");
    replay.end(End::Completed);

    let audit = envoy.audit_lines();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0]["decision"], "approval_pending");
    assert_eq!(
        audit[0]["approval"],
        json!({"status":"pending","id":id,"approver":null})
    );
    assert_eq!(audit[0]["argument_keys"], json!(["script", "timeout"]));
    assert!(!audit[0].to_string().contains("subprocess"), "no values");
    assert_eq!(audit[1]["decision"], "allowed");
    assert_eq!(
        audit[1]["approval"],
        json!({"status":"approved","id":id,"approver":"bob@example.com"})
    );
    assert_eq!(audit[1]["rule"], "/tools/run/approve_if/args.script/regex");
    assert_eq!(audit[1]["status"], 200);
    assert_eq!(audit[2]["decision"], "approval_pending");
    assert_eq!(
        envoy.sum(
            crate::metrics::DECISIONS,
            &[("decision", "approval_pending")]
        ),
        2
    );
    assert_eq!(
        envoy.sum(
            crate::metrics::DECISIONS,
            &[("decision", "approval_pending"), ("target", "run")]
        ),
        2
    );
    assert_eq!(
        envoy.sum(
            crate::metrics::DECISIONS,
            &[("decision", "allowed"), ("target", "run")]
        ),
        1
    );
}

#[test]
fn changed_arguments_need_their_own_approval() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut first = send(&envoy, &[], &run_call(1, RISKY));
    ask(&mut first, &service);
    let id = approval_id(&first);
    service.approve(&id);
    let changed = format!("{RISKY}\nsubprocess.run(['rm', '-rf', '/'])");
    let mut other = send(&envoy, &[], &run_call(2, &changed));
    ask(&mut other, &service);
    assert!(!other.upstream().started());
    assert_eq!(error(&other)["code"], -31004);
    assert_ne!(approval_id(&other), id);
    // Key order and number spelling are the same call: the approval holds.
    let same = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{"timeout":30.0,"script":"import subprocess\nsubprocess.run(['ls'])"},"name":"run"}}"#;
    let mut again = send(&envoy, &[], same);
    ask(&mut again, &service);
    assert!(again.upstream().complete);
}

#[test]
fn calls_that_match_no_approval_condition_are_not_held() {
    let envoy = SimEnvoy::new(&closed());
    let stream = send(&envoy, &[], &run_call(1, "print(1)"));
    assert!(stream.http_calls().is_empty());
    assert!(stream.upstream().complete);
    // `action: approve` asks for every call, arguments or not.
    let wipe = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wipe"}});
    let stream = send(&envoy, &[], wipe.to_string().as_bytes());
    assert_eq!(stream.http_calls().len(), 1);
    assert!(!stream.upstream().started());
}

#[test]
fn a_denial_tells_the_agent_the_approvers_reason() {
    for deny_as in ["error", "tool_result"] {
        let envoy = SimEnvoy::new(&policy("closed", &format!(r#""deny_as": "{deny_as}","#)));
        let service = Service::default();
        let mut first = send(&envoy, &[], &run_call(1, RISKY));
        ask(&mut first, &service);
        let id = approval_id(&first);
        service.decide(
            &id,
            State::Denied("bob@example.com".to_string(), "use the ls tool".to_string()),
        );
        for call in 2..4 {
            let mut retry = send(&envoy, &[], &run_call(call, RISKY));
            ask(&mut retry, &service);
            assert!(!retry.upstream().started());
            let answer = retry.downstream().json();
            if deny_as == "error" {
                assert_eq!(answer["error"]["code"], -31001);
                assert_eq!(
                    answer["error"]["message"],
                    "Tool 'run' denied by bob@example.com: use the ls tool"
                );
                assert_eq!(answer["error"]["data"]["reason"], "use the ls tool");
                assert_eq!(answer["error"]["data"]["approver"], "bob@example.com");
                assert_eq!(answer["error"]["data"]["approval_id"], id.as_str());
            } else {
                assert_eq!(answer["result"]["isError"], true);
                assert_eq!(
                    answer["result"]["content"][0]["text"],
                    "[APPROVAL DENIED] Tool 'run' denied by bob@example.com: use the ls tool"
                );
            }
            retry.end(End::Completed);
        }
        let audit = envoy.audit_lines();
        assert_eq!(audit[1]["decision"], "denied");
        assert_eq!(
            audit[1]["approval"],
            json!({"status":"denied","id":id,"approver":"bob@example.com"})
        );
        assert_eq!(
            envoy.sum(
                crate::metrics::DECISIONS,
                &[("decision", "denied"), ("target", "run")]
            ),
            2
        );
    }
}

// ---- How a pending approval reaches each client ----

fn initialize(capabilities: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":capabilities,"clientInfo":{"name":"agent","version":"1"}}})
        .to_string()
        .into_bytes()
}

/// Starts a 2025-11-25 session for `grant` whose server names it `session`.
fn start_session(envoy: &SimEnvoy, grant: &str, session: &str, capabilities: Value) {
    let mut stream = envoy.stream();
    stream.send(&headers(grant, &[]), &[&initialize(capabilities)]);
    assert!(stream.upstream().complete);
    stream.server_answers(
        200,
        &[
            ("content-type", b"application/json"),
            ("mcp-session-id", session.as_bytes()),
        ],
        &[br#"{"jsonrpc":"2.0","id":0,"result":{}}"#],
    );
    stream.end(End::Completed);
}

#[test]
fn at_2025_11_25_a_session_that_declared_url_elicitation_gets_the_url_elicitation_error() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    start_session(
        &envoy,
        "alice",
        "s-url",
        json!({"elicitation": {"form": {}, "url": {}}}),
    );
    start_session(&envoy, "alice", "s-form", json!({"elicitation": {}}));

    let mut stream = send(&envoy, &[("mcp-session-id", b"s-url")], &run_call(1, RISKY));
    ask(&mut stream, &service);
    assert!(!stream.upstream().started());
    let answer = error(&stream);
    assert_eq!(answer["code"], -32042);
    let elicitation = &answer["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    let id = elicitation["elicitationId"].as_str().unwrap().to_string();
    assert_eq!(
        elicitation["url"],
        format!("https://approvals.example.com/approvals/{id}")
    );
    assert!(elicitation["message"]
        .as_str()
        .unwrap()
        .contains("scripts that start processes need a look"));

    // Form-only sessions, sessions the gate never saw, and another grant
    // presenting alice's session: the plain error.
    for (grant, session) in [
        ("alice", "s-form"),
        ("alice", "s-unknown"),
        ("mallory", "s-url"),
    ] {
        let mut stream = envoy.stream();
        stream.send(
            &headers(grant, &[("mcp-session-id", session.as_bytes())]),
            &[&run_call(2, RISKY)],
        );
        ask(&mut stream, &service);
        assert_eq!(error(&stream)["code"], -31004, "{grant} {session}");
    }

    // Approved in the page: the client's retry goes through.
    service.approve(&id);
    let mut retry = send(&envoy, &[("mcp-session-id", b"s-url")], &run_call(3, RISKY));
    ask(&mut retry, &service);
    assert!(retry.upstream().complete);
}

const CURRENT: [(&str, &[u8]); 3] = [
    ("mcp-protocol-version", b"2026-07-28"),
    ("mcp-method", b"tools/call"),
    ("mcp-name", b"run"),
];

fn current_call(id: u64, script: &str, url: bool, retry: Option<(&str, &str)>) -> Vec<u8> {
    let elicitation = if url {
        json!({"form": {}, "url": {}})
    } else {
        json!({"form": {}})
    };
    let mut params = json!({
        "name": "run",
        "arguments": {"script": script, "timeout": 30},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": elicitation},
            "progressToken": id,
        }
    });
    if let Some((state, action)) = retry {
        params["requestState"] = json!(state);
        params["inputResponses"] = json!({"approval": {"action": action}});
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
        .to_string()
        .into_bytes()
}

#[test]
fn at_2026_07_28_a_client_that_declares_url_elicitation_gets_an_input_required_result() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut first = send(&envoy, &CURRENT, &current_call(1, RISKY, true, None));
    ask(&mut first, &service);
    assert!(!first.upstream().started());
    let answer = first.downstream().json();
    let result = &answer["result"];
    assert_eq!(result["resultType"], "input_required", "{answer}");
    let request = &result["inputRequests"]["approval"];
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["mode"], "url");
    let url = request["params"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://approvals.example.com/approvals/"));
    assert!(
        request["params"].get("elicitationId").is_none(),
        "not at 2026-07-28"
    );
    let state = result["requestState"].as_str().unwrap().to_string();
    first.end(End::Completed);

    // Retried before anyone decided: asked again, the same approval.
    let waiting = current_call(2, RISKY, true, Some((&state, "accept")));
    let mut early = send(&envoy, &CURRENT, &waiting);
    ask(&mut early, &service);
    assert!(!early.upstream().started());
    let again = early.downstream().json();
    assert_eq!(
        again["result"]["inputRequests"]["approval"]["params"]["url"],
        url.as_str()
    );
    assert_eq!(
        service.last_check()["arguments"],
        json!({"script": RISKY, "timeout": 30}),
        "requestState, inputResponses and _meta are not the call"
    );

    // Approved: the retry reaches the server without the gate's members.
    let id = url.rsplit('/').next().unwrap().to_string();
    service.approve(&id);
    let retry = current_call(3, RISKY, true, Some((&state, "accept")));
    let mut done = send(&envoy, &CURRENT, &retry);
    ask(&mut done, &service);
    assert!(done.upstream().complete);
    let sent = &done.upstream().body;
    assert_eq!(
        sent.len(),
        retry.len(),
        "same length: content-length stays true"
    );
    let sent: Value = serde_json::from_slice(sent).unwrap();
    assert!(sent["params"].get("requestState").is_none(), "{sent}");
    assert!(sent["params"].get("inputResponses").is_none(), "{sent}");
    let mut expected: Value = serde_json::from_slice(&retry).unwrap();
    let params = expected["params"].as_object_mut().unwrap();
    params.remove("requestState");
    params.remove("inputResponses");
    assert_eq!(sent, expected, "everything else as the client sent it");
}

/// Whatever is used, not only tools: a prompt that needs no approval, asked
/// with a state only the gate issues, is refused; a server's own state
/// reaches the server.
#[test]
fn a_gate_state_on_a_prompt_that_needs_no_approval_is_refused() {
    let envoy = SimEnvoy::new(&policy("closed", r#""prompts": { "summary": {} },"#));
    let headers: [(&str, &[u8]); 3] = [
        ("mcp-protocol-version", b"2026-07-28"),
        ("mcp-method", b"prompts/get"),
        ("mcp-name", b"summary"),
    ];
    let get = |id: u64, state: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"prompts/get",
               "params":{"name":"summary","requestState":state}})
        .to_string()
        .into_bytes()
    };
    let forged = format!("{}0123456789abcdef.0000", approval::STATE_PREFIX);
    let stream = send(&envoy, &headers, &get(1, &forged));
    assert!(!stream.upstream().started());
    assert_eq!(
        error(&stream)["code"],
        -32602,
        "{}",
        stream.downstream().json()
    );
    let own = get(2, "server-state-1");
    let stream = send(&envoy, &headers, &own);
    assert!(stream.upstream().complete, "{:?}", stream.downstream());
    assert_eq!(stream.upstream().body, own);
}

#[test]
fn at_2026_07_28_a_gate_state_for_another_call_is_refused_and_never_forwarded() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut first = send(&envoy, &CURRENT, &current_call(1, RISKY, true, None));
    ask(&mut first, &service);
    let state = first.downstream().json()["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let id = approval::verify_gate_state(&state, service.last_check()["digest"].as_str().unwrap())
        .unwrap()
        .to_string();
    service.approve(&id);
    // The state with changed arguments, a forged state, and the state on a
    // call that needs no approval: refused, nothing asked, nothing forwarded.
    let forged = format!("{}{id}.0000", approval::STATE_PREFIX);
    for body in [
        current_call(
            2,
            &format!("{RISKY} # more"),
            true,
            Some((&state, "accept")),
        ),
        current_call(3, RISKY, true, Some((&forged, "accept"))),
        current_call(4, "print(1)", true, Some((&state, "accept"))),
    ] {
        let stream = send(&envoy, &CURRENT, &body);
        assert!(!stream.upstream().started());
        assert!(stream.http_calls().is_empty());
        assert_eq!(
            error(&stream)["code"],
            -32602,
            "{}",
            stream.downstream().json()
        );
    }
    // A server's own state passes to the server untouched (the call still
    // needs its approval).
    let server_state = current_call(5, RISKY, true, Some(("server-state-1", "accept")));
    let mut stream = send(&envoy, &CURRENT, &server_state);
    ask(&mut stream, &service);
    assert!(stream.upstream().complete);
    assert_eq!(stream.upstream().body, server_state);
}

#[test]
fn at_2026_07_28_without_url_elicitation_or_after_a_decline_the_error_says_where() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut form_only = send(&envoy, &CURRENT, &current_call(1, RISKY, false, None));
    ask(&mut form_only, &service);
    assert_eq!(error(&form_only)["code"], -31004);

    let mut first = send(&envoy, &CURRENT, &current_call(2, RISKY, true, None));
    ask(&mut first, &service);
    let state = first.downstream().json()["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let mut declined = send(
        &envoy,
        &CURRENT,
        &current_call(3, RISKY, true, Some((&state, "decline"))),
    );
    ask(&mut declined, &service);
    assert!(!declined.upstream().started());
    assert_eq!(
        error(&declined)["code"],
        -31004,
        "no second prompt after a decline"
    );
}

// ---- The service failing or refusing ----

#[test]
fn a_failing_service_follows_the_failure_mode() {
    // Closed: no answer, an error status, an unreadable answer, a refused
    // dispatch: -32603, nothing forwarded.
    let envoy = SimEnvoy::new(&closed());
    for (status, body) in [
        (None, &b""[..]),
        (
            Some(503),
            &br#"{"error":"unavailable","message":"redis"}"#[..],
        ),
        (Some(504), &b"upstream request timeout"[..]),
        (Some(200), &b"<html>"[..]),
    ] {
        let mut stream = send(&envoy, &[], &run_call(1, RISKY));
        let token = stream.http_calls()[0].0;
        stream.http_answers(token, status, body);
        assert!(!stream.upstream().started(), "{status:?}");
        assert_eq!(error(&stream)["code"], -32603, "{status:?}");
        stream.end(End::Completed);
    }
    let mut refused = envoy.stream();
    refused.fail_dispatch();
    refused.send(&headers("alice", &[]), &[&run_call(1, RISKY)]);
    assert!(!refused.upstream().started());
    assert_eq!(error(&refused)["code"], -32603);
    refused.end(End::Completed);
    let audit = envoy.audit_lines();
    // One line for each of the four unusable answers and the refused dispatch.
    assert_eq!(audit.len(), 5, "{audit:#?}");
    assert!(audit.iter().all(|line| line["decision"] == "failed"
        && line["enforced"] == true
        && line["approval"]["status"] == "unavailable"));

    // Open: forwarded, and the audit line says the gate did not enforce it.
    let envoy = SimEnvoy::new(&policy("open", ""));
    let mut stream = send(&envoy, &[], &run_call(1, RISKY));
    let token = stream.http_calls()[0].0;
    stream.http_answers(token, None, b"");
    assert!(stream.upstream().complete);
    stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    stream.end(End::Completed);
    let audit = envoy.audit_lines();
    assert_eq!(audit[0]["decision"], "failed");
    assert_eq!(audit[0]["enforced"], false);
    assert_eq!(audit[0]["approval"]["status"], "unavailable");
    // Open still counts: the limits hold (2 a day).
    for id in 2..4 {
        let mut stream = send(&envoy, &[], &run_call(id, RISKY));
        let token = stream.http_calls()[0].0;
        stream.http_answers(token, Some(503), b"");
        let reached = stream.upstream().complete;
        assert_eq!(reached, id == 2, "call {id}");
    }
}

#[test]
fn checks_the_service_refuses_refuse_the_call_whatever_the_failure_mode() {
    let envoy = SimEnvoy::new(&policy("open", ""));
    for (status, code, text) in [
        (413, -31001, "too large"),
        (429, -31001, "too many calls are waiting"),
        (400, -32603, "could not decide"),
    ] {
        let mut stream = send(&envoy, &[], &run_call(1, RISKY));
        let token = stream.http_calls()[0].0;
        stream.http_answers(token, Some(status), br#"{"error":"x","message":"y"}"#);
        assert!(!stream.upstream().started(), "{status}");
        let answer = error(&stream);
        assert_eq!(answer["code"], code, "{status}");
        assert!(
            answer["message"].as_str().unwrap().contains(text),
            "{answer}"
        );
    }
}

// ---- Limits, leaving, monitor mode ----

#[test]
fn an_approved_meta_tool_call_over_the_inner_tools_limit_names_the_inner_tool() {
    let policy = policy("closed", "").replace(
        r#""read": {}"#,
        r#""read": {},
    "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } }"#,
    );
    let envoy = SimEnvoy::new(&policy);
    let service = Service::default();
    let meta = |id: u64, script: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"call_tool",
            "arguments":{"name":"run","arguments":{"script":script,"timeout":30}}}})
        .to_string()
        .into_bytes()
    };
    let mut refused = None;
    for round in 0..3u64 {
        let script = format!("{RISKY} # {round}");
        let mut first = send(&envoy, &[], &meta(10 + round, &script));
        ask(&mut first, &service);
        service.approve(&approval_id(&first));
        first.end(End::Completed);
        let mut retry = send(&envoy, &[], &meta(20 + round, &script));
        ask(&mut retry, &service);
        if retry.upstream().complete {
            retry.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
        } else {
            refused = Some(error(&retry));
        }
        retry.end(End::Completed);
    }
    // `run` takes 2 a day, however it is called; the refusal names it.
    let answer = refused.unwrap();
    assert_eq!(answer["code"], -31002, "{answer}");
    assert_eq!(answer["data"]["rule"], "/tools/run/limits/0");
    assert_eq!(answer["data"]["tool"], "run", "{answer}");
}

#[test]
fn limits_count_approved_calls_only() {
    // `run`: 2 a day. Pending and denied calls take nothing; each approved
    // call takes one; the third approved call is over the limit.
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    for round in 0..5u64 {
        let mut pending = send(&envoy, &[], &run_call(round, RISKY));
        ask(&mut pending, &service);
        assert_eq!(error(&pending)["code"], -31004);
        pending.end(End::Completed);
    }
    let mut forwarded = 0;
    for round in 0..3u64 {
        let script = format!("{RISKY} # {round}");
        let mut first = send(&envoy, &[], &run_call(10 + round, &script));
        ask(&mut first, &service);
        service.approve(&approval_id(&first));
        first.end(End::Completed);
        let mut retry = send(&envoy, &[], &run_call(20 + round, &script));
        ask(&mut retry, &service);
        if retry.upstream().complete {
            forwarded += 1;
            retry.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
        } else {
            let answer = error(&retry);
            assert_eq!(answer["code"], -31002, "{answer}");
            assert_eq!(answer["data"]["rule"], "/tools/run/limits/0");
        }
        retry.end(End::Completed);
    }
    assert_eq!(forwarded, 2);
    let last = envoy.audit_lines().pop().unwrap();
    assert_eq!(last["decision"], "rate_limited");
    assert_eq!(
        last["approval"]["status"], "approved",
        "the approval was used"
    );
}

#[test]
fn a_caller_who_leaves_while_the_service_decides_is_audited_and_nothing_is_forwarded() {
    let envoy = SimEnvoy::new(&closed());
    let mut stream = send(&envoy, &[], &run_call(1, RISKY));
    stream.end(End::ClientGone);
    assert!(!stream.upstream().started());
    let audit = envoy.audit_lines();
    assert_eq!(audit.len(), 1);
    // Nobody was told to wait: abandoned, as while the rate-limit service
    // decides.
    assert_eq!(audit[0]["decision"], "abandoned");
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "abandoned")]),
        1,
        "counted once"
    );
    assert_eq!(
        envoy.sum(
            crate::metrics::DECISIONS,
            &[("decision", "approval_pending")]
        ),
        0
    );
    // The quota is untouched: two calls that need no approval still pass.
    for id in 2..4 {
        assert!(
            send(&envoy, &[], &run_call(id, "print(1)"))
                .upstream()
                .complete
        );
    }
}

#[test]
fn an_answer_for_another_check_is_ignored() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut stream = send(&envoy, &[], &run_call(1, RISKY));
    let token = stream.http_calls()[0].0;
    stream.http_answers(
        token + 100,
        Some(200),
        br#"{"status":"approved","id":"00000000000000000000000000000001"}"#,
    );
    assert!(!stream.upstream().started());
    assert!(stream.downstream().status.is_none());
    ask(&mut stream, &service);
    assert_eq!(error(&stream)["code"], -31004);
}

#[test]
fn monitor_mode_asks_nobody_and_records_that_approval_was_needed() {
    let envoy = SimEnvoy::new(&policy("closed", r#""mode": "monitor","#));
    let mut stream = send(&envoy, &[], &run_call(1, RISKY));
    assert!(stream.http_calls().is_empty());
    assert!(stream.upstream().complete);
    stream.end(End::Completed);
    let audit = envoy.audit_lines();
    assert_eq!(audit[0]["decision"], "approval_pending");
    assert_eq!(audit[0]["enforced"], false);
}

#[test]
fn with_headers_not_held_a_retry_is_rewritten_at_the_same_length() {
    let envoy = SimEnvoy::new(&policy("closed", r#""hold_request_headers": false,"#));
    let service = Service::default();
    let mut first = send(&envoy, &CURRENT, &current_call(1, RISKY, true, None));
    ask(&mut first, &service);
    let state = first.downstream().json()["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let id = state.split('.').nth(1).unwrap().to_string();
    service.approve(&id);
    let retry = current_call(2, RISKY, true, Some((&state, "accept")));
    let length = retry.len().to_string();
    let mut extra = CURRENT.to_vec();
    extra.push(("content-length", length.as_bytes()));
    let mut stream = send(&envoy, &extra, &retry);
    assert!(stream.upstream().started(), "headers went ahead");
    ask(&mut stream, &service);
    assert!(stream.upstream().complete);
    assert_eq!(stream.upstream().body.len(), retry.len());
    assert!(!String::from_utf8_lossy(&stream.upstream().body).contains("requestState"));
}

/// An approved call whose local limits cannot be counted (a full table)
/// goes ahead under `failure_mode: open`, and its fleet-wide limits still
/// hold: the rate-limit service is asked, and its refusal is enforced.
#[test]
fn an_approved_call_let_through_open_still_asks_the_fleet() {
    use super::quota_tests::{service_answer, status};
    let policy = r#"{
      "version": "1", "default": "deny", "identity": { "header": "x-agent-id" },
      "failure_mode": "open", "max_callers_per_counter": 1,
      "approval_service": { "cluster": "mcp_approval", "public_url": "https://approvals.example.com", "timeout_ms": 200 },
      "rate_limit_service": { "cluster": "ratelimit" },
      "tools": { "wipe": { "action": "approve", "limits": [
        { "counter": "local_day", "window": "day", "max": 5, "scope": "grant" },
        { "counter": "fleet", "window": "minute", "max": 10, "scope": "grant", "store": "global" }
      ] } }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let service = Service::default();
    let answer = |overall: i32| service_answer(overall, vec![status(overall, "fleet")]);
    let wipe = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"wipe","arguments":{"w":"x"}}})
            .to_string()
            .into_bytes()
    };
    let approved = |grant: &str, id: u64| {
        let mut first = envoy.stream();
        first.send(&headers(grant, &[]), &[&wipe(id)]);
        ask(&mut first, &service);
        service.approve(&approval_id(&first));
        first.end(End::Completed);
        let mut retry = envoy.stream();
        retry.send(&headers(grant, &[]), &[&wipe(id + 1)]);
        ask(&mut retry, &service);
        retry
    };
    // Alice takes the one slot of the local table; the fleet lets her through.
    let mut alice = approved("alice", 1);
    let token = alice.calls()[0].0;
    alice.service_answers(token, 0, &answer(1));
    assert!(alice.upstream().complete);
    alice.end(End::Completed);
    // Bob's local count fails (no slot), open: the fleet is asked, refuses.
    let mut bob = approved("bob", 10);
    assert_eq!(bob.calls().len(), 1, "the fleet-wide limit is asked");
    let token = bob.calls()[0].0;
    bob.service_answers(token, 0, &answer(2));
    assert!(!bob.upstream().started());
    assert_eq!(error(&bob)["code"], -31002);
    bob.end(End::Completed);
    let last = envoy.audit_lines().pop().unwrap();
    assert_eq!(
        (last["decision"].clone(), last["enforced"].clone()),
        (json!("rate_limited"), json!(true)),
        "{last}"
    );
}

/// At 2026-07-28 the gate's pending answer carries its own requestState;
/// Envoy passes that answer through the filter's response callbacks, and
/// the gate must not take it for a server's and spare the approved retry
/// its window units.
#[test]
fn an_approved_2026_retry_pays_its_window_units() {
    let envoy = SimEnvoy::new(&closed());
    let service = Service::default();
    let mut forwarded = 0;
    for round in 0..3u64 {
        let script = format!("{RISKY} # {round}");
        let mut first = send(
            &envoy,
            &CURRENT,
            &current_call(10 + round, &script, true, None),
        );
        ask(&mut first, &service);
        let answer = first.downstream().json();
        let state = answer["result"]["requestState"]
            .as_str()
            .unwrap()
            .to_string();
        let url = answer["result"]["inputRequests"]["approval"]["params"]["url"]
            .as_str()
            .unwrap()
            .to_string();
        first.end(End::Completed);
        service.approve(url.rsplit('/').next().unwrap());
        let mut retry = send(
            &envoy,
            &CURRENT,
            &current_call(20 + round, &script, true, Some((&state, "accept"))),
        );
        ask(&mut retry, &service);
        if retry.upstream().complete {
            forwarded += 1;
            retry.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
        }
        retry.end(End::Completed);
    }
    assert_eq!(
        forwarded, 2,
        "run allows 2 a day: the third approved call is over it"
    );
}
