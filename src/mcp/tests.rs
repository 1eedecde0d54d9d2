use serde_json::json;

use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn call(body: &str) -> ToolCall<'_> {
    match parse(body.as_bytes()) {
        Ok(Message::ToolCall(call)) => call,
        other => panic!("expected a tool call from {body}, got {other:?}"),
    }
}

fn invalid(body: &str) -> Invalid {
    match parse(body.as_bytes()) {
        Err(invalid) => invalid,
        Ok(message) => panic!("expected {body} to be refused, got {message:?}"),
    }
}

#[test]
fn reads_a_tool_call() {
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"script":"print(1)","timeout":30},"_meta":{"progressToken":1}}}"#;
    let call = call(body);
    assert_eq!(call.id, json!(7));
    assert_eq!(call.name, "asyncExecuteCode");
    assert_eq!(call.argument_keys, vec!["script", "timeout"]);
    assert_eq!(
        call.arguments.unwrap().get(),
        r#"{"script":"print(1)","timeout":30}"#
    );
}

#[test]
fn keeps_the_id_type() {
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"t"}}"#).id,
        json!("a-1")
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":-3,"method":"tools/call","params":{"name":"t"}}"#).id,
        json!(-3)
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"tools/call","params":{"name":"t"}}"#).id,
        json!(18446744073709551615u64)
    );
}

#[test]
fn reads_escaped_names_as_the_server_does() {
    // "tools\/call" and "\u0061sync" are the same strings once decoded.
    let call = call(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0061syncExecuteCode"}}"#,
    );
    assert_eq!(call.name, "asyncExecuteCode");
    assert!(call.argument_keys.is_empty());
}

#[test]
fn other_messages_pass() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#,
    ] {
        assert!(
            matches!(parse(body.as_bytes()), Ok(Message::Other { .. })),
            "{body}"
        );
    }
}

#[test]
fn malformed_json_is_a_parse_error() {
    for body in ["{", "{\"jsonrpc\":", "not json", "[1,", "", "{\"a\":1}}"] {
        assert!(
            matches!(invalid(body), Invalid::Malformed { .. }),
            "{body:?}"
        );
    }
}

#[test]
fn batches_are_refused_whole() {
    assert_eq!(
        invalid(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}]"#),
        Invalid::Batch
    );
    assert_eq!(invalid("  []"), Invalid::Batch);
}

#[test]
fn non_objects_are_invalid_requests() {
    for body in ["1", "\"tools/call\"", "null", "true"] {
        assert!(
            matches!(
                invalid(body),
                Invalid::Request {
                    id: Value::Null,
                    ..
                }
            ),
            "{body}"
        );
    }
}

#[test]
fn tool_call_needs_a_string_or_integer_id() {
    for id in ["null", "1.5", "{}", "[]", "true"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"a"}}}}"#
        );
        assert!(
            matches!(
                invalid(&body),
                Invalid::Request {
                    id: Value::Null,
                    ..
                }
            ),
            "{body}"
        );
    }
    let missing = r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#;
    assert!(matches!(invalid(missing), Invalid::Request { .. }));
}

#[test]
fn tool_call_needs_jsonrpc_2() {
    let body = r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"a"}}"#;
    assert!(matches!(invalid(body), Invalid::Request { id, .. } if id == json!(1)));
    let body = r#"{"id":1,"method":"tools/call","params":{"name":"a"}}"#;
    assert!(matches!(invalid(body), Invalid::Request { .. }));
}

#[test]
fn tool_call_params_must_name_a_tool() {
    for params in [
        None,
        Some("[]"),
        Some("\"a\""),
        Some("{}"),
        Some(r#"{"name":5}"#),
        Some(r#"{"name":null}"#),
        Some(r#"{"name":"a","arguments":"x"}"#),
        Some(r#"{"name":"a","arguments":[1]}"#),
        Some(r#"{"name":"a","name":"b"}"#),
        Some(r#"{"name":"a","arguments":{"k":1,"k":2}}"#),
    ] {
        let body = match params {
            Some(params) => {
                format!(r#"{{"jsonrpc":"2.0","id":"r","method":"tools/call","params":{params}}}"#)
            }
            None => r#"{"jsonrpc":"2.0","id":"r","method":"tools/call"}"#.to_string(),
        };
        assert!(
            matches!(invalid(&body), Invalid::Params { id, .. } if id == json!("r")),
            "{body}"
        );
    }
}

#[test]
fn a_member_given_twice_is_refused() {
    // Read first by one parser and last by another, a duplicate would let the
    // gate and the server see different messages.
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"a"}}"#;
    assert!(matches!(invalid(body), Invalid::Request { .. }));
    let body = r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#;
    assert!(matches!(invalid(body), Invalid::Request { .. }));
}

#[test]
fn method_of_the_wrong_type_is_invalid() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":5}"#;
    assert!(matches!(invalid(body), Invalid::Request { .. }));
}

#[test]
fn unicode_and_escapes_in_names_and_keys() {
    let call = call(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"résumé","arguments":{"ключ":1,"a\"b":2}}}"#,
    );
    assert_eq!(call.name, "résumé");
    assert_eq!(call.argument_keys, vec!["ключ", "a\"b"]);
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}}"#);
    assert!(matches!(parse(&body), Err(Invalid::Malformed { .. })));
}
