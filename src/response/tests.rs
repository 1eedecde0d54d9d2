use serde_json::{json, Value};

use super::*;
use crate::policy::{Limit, Scope};
use crate::target::Target;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn codes_sit_outside_the_reserved_range() {
    for code in [code::POLICY_DENIED, code::RATE_LIMITED] {
        assert!(!(-32768..=-32000).contains(&code), "{code}");
    }
}

#[test]
fn denial_echoes_the_id_with_its_type() {
    let decision = Decision::Deny {
        rule: "/tools/x",
        reason: "no".into(),
    };
    for id in [json!(5), json!("five")] {
        let reply = for_decision(
            &id,
            &Target::tool("x"),
            &decision,
            Answering {
                deny_as: DenyAs::Error,
                current: false,
            },
        )
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json().unwrap(),
            json!({"jsonrpc":"2.0","id":id,"error":{"code":-31001,"message":"Tool 'x' denied by policy: no","data":{"tool":"x","reason":"no","rule":"/tools/x"}}})
        );
    }
}

fn window_limit() -> Limit {
    Limit {
        counter: "exec".to_string(),
        kind: crate::policy::LimitKind::Window {
            seconds: 60,
            max: 10,
        },
        scope: Scope::Grant,
        pointer: "/tools/a/limits/0".to_string(),
        store: crate::policy::CounterStore::Local,
        cost: crate::policy::Cost::Units(1),
        per: None,
    }
}

fn error_data(decision: &Decision<'_>) -> serde_json::Value {
    let json = for_decision(
        &json!(1),
        &Target::tool("a"),
        decision,
        Answering {
            deny_as: DenyAs::Error,
            current: false,
        },
    )
    .unwrap()
    .json()
    .unwrap();
    json["error"].clone()
}

#[test]
fn rate_limit_says_when_to_retry() {
    let limit = window_limit();
    let decision = Decision::RateLimited {
        limit: &limit,
        retry_after_seconds: 12,
        cost: 1,
    };
    let error = error_data(&decision);
    assert_eq!(error["code"], -31002);
    assert_eq!(
        error["data"],
        json!({"tool": "a", "rule": "/tools/a/limits/0", "counter": "exec", "max": 10, "window_seconds": 60, "retry_after_seconds": 12})
    );
    assert_eq!(
        error["message"],
        "Rate limit exceeded for tool 'a': counter 'exec' allows 10 per 60s; retry after 12s"
    );
}

#[test]
fn a_budget_shows_what_the_call_costs() {
    let limit = Limit {
        cost: crate::policy::Cost::Argument(
            crate::policy::ArgumentPath::parse("args.rows").unwrap(),
        ),
        ..window_limit()
    };
    let decision = Decision::RateLimited {
        limit: &limit,
        retry_after_seconds: 12,
        cost: 7,
    };
    let error = error_data(&decision);
    assert_eq!(error["data"]["cost"], 7);
    assert_eq!(error["data"]["max"], 10);
    assert_eq!(
        error["message"],
        "Rate limit exceeded for tool 'a': counter 'exec' allows 10 per 60s (this call costs 7); retry after 12s"
    );
}

#[test]
fn a_full_concurrency_cap_makes_no_retry_guess() {
    let limit = Limit {
        counter: "inflight".to_string(),
        kind: crate::policy::LimitKind::Concurrent {
            cap: 3,
            lease_seconds: 300,
        },
        ..window_limit()
    };
    let decision = Decision::RateLimited {
        limit: &limit,
        retry_after_seconds: 0,
        cost: 1,
    };
    let error = error_data(&decision);
    assert_eq!(error["code"], -31002);
    assert_eq!(
        error["data"],
        json!({"tool": "a", "rule": "/tools/a/limits/0", "counter": "inflight", "concurrent": 3})
    );
    assert_eq!(
        error["message"],
        "Concurrency limit reached for tool 'a': counter 'inflight' allows 3 calls in flight; retry when one has finished"
    );
}

#[test]
fn an_uncountable_argument_is_invalid_params() {
    let decision = Decision::InvalidArgument {
        rule: "/tools/a/limits/0",
        reason: "args.rows must be a non-negative integer".to_string(),
    };
    let error = error_data(&decision);
    assert_eq!(error["code"], -32602);
    assert_eq!(error["data"]["rule"], "/tools/a/limits/0");
    // deny_as: tool_result does not apply: the call is malformed for this policy.
    let reply = for_decision(
        &json!(1),
        &Target::tool("a"),
        &decision,
        Answering {
            deny_as: DenyAs::ToolResult,
            current: false,
        },
    )
    .unwrap();
    assert_eq!(reply.json().unwrap()["error"]["code"], -32602);
}

#[test]
fn allowed_calls_get_no_reply() {
    assert_eq!(
        for_decision(
            &json!(1),
            &Target::tool("a"),
            &Decision::Allow {
                reservations: vec![],
                global: vec![]
            },
            Answering::default()
        ),
        None
    );
}

#[test]
fn invalid_bodies_get_400_with_the_right_code() {
    let cases = [
        (
            Invalid::Malformed { detail: "x".into() },
            -32700,
            Value::Null,
        ),
        (Invalid::Batch, -32600, Value::Null),
        (
            Invalid::Request {
                id: Value::Null,
                detail: "x".into(),
            },
            -32600,
            Value::Null,
        ),
        (
            Invalid::Params {
                id: json!(4),
                detail: "x".into(),
            },
            -32602,
            json!(4),
        ),
    ];
    for (invalid, code, id) in cases {
        let reply = for_invalid(&invalid);
        assert_eq!(reply.status, 400);
        let json = reply.json().unwrap();
        assert_eq!(json["error"]["code"], code);
        assert_eq!(json["id"], id);
    }
}

#[test]
fn oversized_bodies_get_413() {
    let reply = body_too_large(1024);
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.json().unwrap()["error"]["data"]["max_body_bytes"],
        1024
    );
}

#[test]
fn deny_as_tool_result_answers_with_an_error_result() {
    let decision = Decision::Deny {
        rule: "/tools/x",
        reason: "no".into(),
    };
    let json = for_decision(
        &json!(9),
        &Target::tool("x"),
        &decision,
        Answering {
            deny_as: DenyAs::ToolResult,
            current: false,
        },
    )
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(
        json,
        json!({"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"[POLICY DENIED] Tool 'x' denied by policy: no"}],"isError":true}})
    );
    // Hidden tools stay indistinguishable from missing ones: under default
    // deny, the unlisted tool's denial, byte for byte, in either answer form.
    for deny_as in [DenyAs::Error, DenyAs::ToolResult] {
        let unlisted = Decision::Deny {
            rule: "/default",
            reason: crate::decision::DEFAULT_DENY_REASON.into(),
        };
        let hidden = Decision::Hidden {
            rule: "/hide",
            unlisted: Some("/default"),
        };
        assert_eq!(
            for_decision(
                &json!(9),
                &Target::tool("x"),
                &hidden,
                Answering {
                    deny_as,
                    current: false
                }
            ),
            for_decision(
                &json!(9),
                &Target::tool("x"),
                &unlisted,
                Answering {
                    deny_as,
                    current: false
                }
            ),
            "{deny_as:?}"
        );
    }
    // Under default allow an unlisted tool reaches the server, whose own
    // answer the gate cannot know: an unknown-tool error.
    let hidden = for_decision(
        &json!(9),
        &Target::tool("x"),
        &Decision::Hidden {
            rule: "/hide",
            unlisted: None,
        },
        Answering {
            deny_as: DenyAs::ToolResult,
            current: false,
        },
    )
    .unwrap();
    assert_eq!(
        hidden.json().unwrap(),
        json!({"jsonrpc":"2.0","id":9,"error":{"code":-32602,"message":"Unknown tool: x"}})
    );
}

#[test]
fn unauthorized_is_401_with_31003() {
    let reply = unauthorized(&IdentityError::UnknownToken);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json().unwrap()["error"]["code"], -31003);
}

/// Every answer is written without building a `Value` (`write_object`,
/// `error_reply`): it must be exactly what serde_json writes for the same
/// JSON (members in key order, compact, the same escapes), for every kind
/// of target, id and text a caller can put in it.
#[test]
fn every_answer_is_written_as_serde_json_writes_it() {
    let texts = [
        "x",
        "quote \" backslash \\ slash / tab \t newline \n nul \u{0}",
        "ünïcødé 😀 \u{2028}",
        "",
    ];
    let ids = [json!(7), json!("seven \"7\""), json!(-1.5), Value::Null];
    let mut window = window_limit();
    let mut costly = window_limit();
    costly.cost = crate::policy::Cost::Units(3);
    let mut concurrent = window_limit();
    concurrent.kind = crate::policy::LimitKind::Concurrent {
        cap: 2,
        lease_seconds: 30,
    };
    let approval = crate::policy::Approval {
        always: true,
        ttl_seconds: 60,
        reason: Some("why".into()),
        separate_approver: false,
    };
    let mut replies = Vec::new();
    for text in texts {
        window.counter = text.to_string();
        let decisions = [
            Decision::Deny {
                rule: text,
                reason: text.into(),
            },
            Decision::Hidden {
                rule: "/hide",
                unlisted: Some("/default"),
            },
            Decision::Hidden {
                rule: "/hide",
                unlisted: None,
            },
            Decision::RateLimited {
                limit: &window,
                retry_after_seconds: 59,
                cost: 1,
            },
            Decision::RateLimited {
                limit: &costly,
                retry_after_seconds: u64::MAX,
                cost: 3,
            },
            Decision::RateLimited {
                limit: &concurrent,
                retry_after_seconds: 0,
                cost: 1,
            },
            Decision::InvalidArgument {
                rule: text,
                reason: text.to_string(),
            },
            Decision::Failed {
                detail: text.to_string(),
            },
            Decision::NeedsApproval {
                rule: text,
                approval: &approval,
                charges: Vec::new(),
            },
        ];
        for kind in Kind::ALL {
            let target = Target::new(kind, text);
            for id in &ids {
                for deny_as in [DenyAs::Error, DenyAs::ToolResult] {
                    for current in [false, true] {
                        let answering = Answering { deny_as, current };
                        for decision in &decisions {
                            replies.extend(for_decision(id, &target, decision, answering));
                        }
                        replies.push(approval_denied(
                            id,
                            &target,
                            text,
                            text,
                            Some(text),
                            Some(text),
                            answering,
                        ));
                        replies.push(approval_denied(
                            id, &target, text, text, None, None, answering,
                        ));
                    }
                }
                for (reason, expires_at) in [(None, None), (Some(text), Some(text))] {
                    let pending = PendingApproval {
                        approval_id: text,
                        url: text,
                        retry_after_seconds: 5,
                        rule: text,
                        reason,
                        expires_at,
                    };
                    replies.push(approval_required(id, &target, &pending));
                    replies.push(url_elicitation_required(id, &target, &pending));
                    replies.push(input_required(id, &target, &pending, text, text));
                }
                replies.push(approval_refused(id, &target, text, text));
            }
        }
        for id in &ids {
            replies.push(method_denied(Some(id), text, text));
            replies.push(header_mismatch(id, text));
            replies.push(Reply {
                status: 200,
                body: unreadable_answer(id),
            });
            for invalid in [
                Invalid::Request {
                    id: id.clone(),
                    detail: text.to_string(),
                },
                Invalid::Params {
                    id: id.clone(),
                    detail: text.to_string(),
                },
            ] {
                replies.push(for_invalid(&invalid));
            }
        }
        replies.push(method_denied(None, text, text));
        replies.push(for_invalid(&Invalid::Malformed {
            detail: text.to_string(),
        }));
        replies.push(unsupported_encoding(text));
        replies.push(unsupported_charset(crate::mcp::Charset::Foreign(text)));
        replies.push(unusable_header(text, text));
    }
    replies.push(unsupported_charset(crate::mcp::Charset::Twice));
    replies.push(for_invalid(&Invalid::Batch));
    replies.push(unauthorized(&IdentityError::MissingToken));
    replies.push(body_too_large(u64::MAX));
    assert!(replies.len() > 1000, "{}", replies.len());
    for reply in &replies {
        let parsed: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&reply.body)));
        assert_eq!(
            String::from_utf8_lossy(&serde_json::to_vec(&parsed).unwrap()),
            String::from_utf8_lossy(&reply.body)
        );
    }
}
