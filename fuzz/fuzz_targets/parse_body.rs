//! Any bytes as a request body: the parser never panics, whatever it accepts
//! as a tool call names a tool with an acceptable name, and what it reads in
//! its single pass is what a plain JSON parser reads from the same bytes,
//! and wherever the single pass's fast path accepts a body, serde_json's
//! walk reads the same from it (at the default nesting limit and at a small
//! one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy::mcp::{self, Message};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    for max_depth in [mcp::DEFAULT_MAX_DEPTH, 3] {
        if let Err(disagreement) = mcp::fast_path_agrees(body, max_depth) {
            panic!("max_depth {max_depth}: {disagreement}");
        }
    }
    match mcp::parse(body) {
        Ok(Message::ToolCall(call)) => {
            assert!(mcp::check_tool_name(&call.name).is_ok());
            assert!(call.id.is_string() || call.id.is_i64() || call.id.is_u64());
            // What the gate accepted is valid JSON, read one way.
            let value: Value = serde_json::from_slice(body).expect("accepted, so JSON");
            assert_eq!(value["method"], "tools/call");
            assert_eq!(value["id"], call.id);
            assert_eq!(value["params"]["name"].as_str(), Some(call.name.as_ref()));
            let arguments = call.arguments().expect("arguments readable");
            match value["params"].get("arguments") {
                None | Some(Value::Null) => {
                    assert!(arguments.is_none());
                    assert!(call.argument_keys.is_empty());
                }
                Some(Value::Object(map)) => {
                    let mut keys: Vec<&str> =
                        call.argument_keys.iter().map(|k| k.as_ref()).collect();
                    keys.sort_unstable();
                    let mut expected: Vec<&str> = map.keys().map(String::as_str).collect();
                    expected.sort_unstable();
                    assert_eq!(keys, expected);
                    let raw: Value = serde_json::from_str(arguments.expect("present").get())
                        .expect("raw arguments are JSON");
                    assert_eq!(&raw, &Value::Object(map.clone()));
                }
                Some(other) => panic!("accepted arguments {other}"),
            }
        }
        Ok(Message::Other {
            method,
            id,
            named,
            body: kept,
        }) => {
            assert_eq!(kept, body, "the message keeps the whole body");
            let value: Value = serde_json::from_slice(body).expect("accepted, so JSON");
            assert_eq!(
                value.get("method").and_then(Value::as_str),
                method.as_deref()
            );
            assert_eq!(value.get("id"), id.as_ref());
            let params = value.get("params");
            let text = |field: &str| params.and_then(|p| p.get(field)).and_then(Value::as_str);
            assert_eq!(text("name"), named.name.as_deref());
            assert_eq!(text("uri"), named.uri.as_deref());
        }
        Err(_) => {}
    }
});
