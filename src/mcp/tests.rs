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
        call.arguments().unwrap().unwrap().get(),
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
        Some(r#"["a"]"#),
        Some(r#"["a", {}]"#),
        Some("\"a\""),
        Some("{}"),
        Some(r#"{"name":5}"#),
        Some(r#"{"name":null}"#),
        Some(r#"{"name":"a","arguments":"x"}"#),
        Some(r#"{"name":"a","arguments":[1]}"#),
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
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"resume","arguments":{"ключ":1,"a\"b":2}}}"#,
    );
    assert_eq!(call.name, "resume");
    assert_eq!(call.argument_keys, vec!["ключ", "a\"b"]);
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}}"#);
    assert!(matches!(parse(&body), Err(Invalid::Malformed { .. })));
}

fn request_detail(body: &str) -> String {
    match invalid(body) {
        Invalid::Request { detail, .. } => detail,
        other => panic!("expected an invalid request from {body}, got {other:?}"),
    }
}

#[test]
fn duplicate_members_are_refused_at_any_depth() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"o":{"x":1,"x":2}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"l":[{"k":1},{"k":1,"k":1}]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"t":1,"t":1}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"a","cursor":"b"}}"#,
        // The same key once escaped, once not: equal once decoded.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
    ] {
        assert!(
            request_detail(body).starts_with("duplicate member"),
            "{body}"
        );
    }
}

#[test]
fn members_that_differ_only_in_case_are_refused() {
    for (body, detail) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"a"}}"#,
            r#"member "Method" differs from "method" only in letter case"#,
        ),
        (
            r#"{"JSONRPC":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#,
            r#"member "JSONRPC" differs from "jsonrpc" only in letter case"#,
        ),
        (
            r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#,
            r#"member "ID" differs from "id" only in letter case"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{},"params":{"name":"a"}}"#,
            r#"member "Params" differs from "params" only in letter case"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","Name":"danger"}}"#,
            r#"member "Name" differs from "name" only in letter case"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","ARGUMENTS":{}}}"#,
            r#"member "ARGUMENTS" differs from "arguments" only in letter case"#,
        ),
        // Unicode folding: LATIN SMALL LETTER LONG S folds to "s".
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","argumentſ":{}}}"#,
            r#"member "argumentſ" differs from "arguments" only in letter case"#,
        ),
    ] {
        assert_eq!(request_detail(body), detail, "{body}");
    }
    // Deeper down, case is the server's business: argument names are data.
    call(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"Name":1,"name":2}}}"#,
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let nested = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"x":{}1{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // The message, params and arguments are 3 levels; 61 arrays make 64.
    call(&nested(61));
    assert_eq!(request_detail(&nested(62)), "nesting deeper than 64 levels");
    assert!(matches!(
        parse_with_depth(nested(10).as_bytes(), 12),
        Err(Invalid::Request { .. })
    ));
    // Far deeper than serde_json's own limit: still refused, never a crash.
    assert!(parse(nested(100_000).as_bytes()).is_err());
}

#[test]
fn broken_text_is_malformed() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"k":"\udc00x"}}}"#,
    ] {
        assert!(matches!(invalid(body), Invalid::Malformed { .. }), "{body}");
    }
}

#[test]
fn tool_names_outside_the_recommended_set_are_refused() {
    let long = "a".repeat(129);
    for name in [
        "résumé",
        "delete\\u0000Workspace",
        "deleteWorkspace\\n",
        "dеleteWorkspace",
        "a b",
        "",
        long.as_str(),
        "x;y",
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#
        );
        assert!(matches!(invalid(&body), Invalid::Params { .. }), "{name:?}");
    }
    for name in ["a", "A-Z_0.9", "github/create_issue", &"a".repeat(128)] {
        assert_eq!(check_tool_name(name), Ok(()), "{name}");
    }
}

/// A call whose arguments object has `members` members `"k0"`, `"k1"`, ...
fn call_with_members(members: usize) -> String {
    let members: Vec<String> = (0..members).map(|i| format!(r#""k{i}":1"#)).collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{{}}}}}}}"#,
        members.join(",")
    )
}

/// Key comparisons the duplicate check makes reading `body`.
fn key_comparisons(body: &str) -> usize {
    super::KEY_COMPARISONS.with(|count| count.set(0));
    let _ = parse(body.as_bytes());
    super::KEY_COMPARISONS.with(std::cell::Cell::get)
}

/// Counted, not timed: the duplicate-member check compares a key with the
/// few keys before it while an object has at most 16 (`KeySet::FEW`), then
/// looks each key up once in a hash set, so the work grows with the members,
/// not with their square.
#[test]
fn an_object_with_many_members_is_checked_in_linear_time() {
    // One lookup per member, plus at most 16 * 15 / 2 comparisons while the
    // keys are a list, plus the envelope's and params' own few members.
    let bound = |members: usize| members + 16 * 15 / 2 + 16;
    for members in [1_000, 20_000] {
        let comparisons = key_comparisons(&call_with_members(members));
        assert!(
            (members..=bound(members)).contains(&comparisons),
            "{members} members: {comparisons} key comparisons, expected at most {}",
            bound(members)
        );
    }
    let body = call_with_members(100_000);
    assert_eq!(call(&body).argument_keys.len(), 100_000);
    let duplicate = body.replacen(r#""k99999":1"#, r#""k5":1"#, 1);
    assert!(request_detail(&duplicate).starts_with("duplicate member"));
}

#[test]
fn other_messages_keep_what_mcp_name_mirrors() {
    let Ok(Message::Other {
        method, id, named, ..
    }) = parse(
        br#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:\/\/a","name":5}}"#,
    ) else {
        panic!("expected another message");
    };
    assert_eq!(method.as_deref(), Some("resources/read"));
    assert_eq!(id, Some(json!(4)));
    assert_eq!(named.uri.as_deref(), Some("file://a"));
    assert_eq!(
        named.name, None,
        "a name that is not a string names nothing"
    );
}

#[test]
fn an_object_id_is_echoed_as_sent() {
    let Ok(Message::Other { id, .. }) =
        parse(br#"{"jsonrpc":"2.0","id":{"a":[1]},"method":"ping"}"#)
    else {
        panic!("expected another message");
    };
    assert_eq!(id, Some(json!({"a": [1]})));
}

#[test]
fn arguments_are_read_only_when_asked_and_as_sent() {
    let body = r#"{"params":{"arguments":{"k":[1,{"x":"\u00e9"}]},"name":"t"},"id":"i","method":"tools/call","jsonrpc":"2.0"}"#;
    let call = call(body);
    assert_eq!(call.argument_keys, vec!["k"]);
    assert_eq!(
        call.arguments().unwrap().unwrap().get(),
        r#"{"k":[1,{"x":"\u00e9"}]}"#
    );
    let without = self::call(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}"#,
    );
    assert!(without.arguments().unwrap().is_none());
    assert!(without.argument_keys.is_empty());
}

#[test]
fn the_single_pass_keeps_the_protocol_version_of_meta() {
    let with = |meta: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"a":1}},"_meta":{meta}}}}}"#
        )
    };
    let version = |meta: &str| {
        let body = with(meta);
        call(&body).meta_version.map(|v| v.into_owned())
    };
    assert_eq!(
        version(r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":3}"#),
        Some("2026-07-28".to_string())
    );
    // Escapes are decoded, as the server would read them.
    assert_eq!(
        version(r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-\u0032\u0038"}"#),
        Some("2026-07-28".to_string())
    );
    // Not a string, not there, or `_meta` not an object: no version.
    assert_eq!(
        version(r#"{"io.modelcontextprotocol/protocolVersion":20260728}"#),
        None
    );
    assert_eq!(version(r#"{"progressToken":"x"}"#), None);
    assert_eq!(
        version(r#""io.modelcontextprotocol/protocolVersion""#),
        None
    );
    assert_eq!(version("null"), None);
    // Only `params._meta`'s member counts, not one nested deeper.
    assert_eq!(
        version(r#"{"x":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#),
        None
    );
    // Other methods too.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    match parse(body.as_bytes()) {
        Ok(Message::Other { named, .. }) => {
            assert_eq!(named.meta_version.as_deref(), Some("2026-07-28"));
            assert!(named.present.meta);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn params_are_read_without_reading_what_is_not_kept() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p\u0031","uri":7,"arguments":{"z":"1","a":{"deep":[1,2,{"x":null}]}},"requestState":"s","task":null,"taskId":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}},"notifications":{"taskIds":["a",{"taskId":"b"},3]},"ref":{"type":"ref/prompt","name":"q"},"other":[1,{"big":"x"}]}}"#;
    let params = Params::read(body).unwrap();
    assert_eq!(params.name.as_deref(), Some("p1"));
    assert_eq!(params.uri, None, "a number is not a URI");
    assert_eq!(
        params.arguments.as_deref().map(RawValue::get),
        Some(r#"{"z":"1","a":{"deep":[1,2,{"x":null}]}}"#)
    );
    assert_eq!(params.argument_keys(), ["a", "z"]);
    assert_eq!(params.request_state.as_deref(), Some("s"));
    assert!(!params.wants_task, "task: null asks for nothing");
    assert_eq!(params.task_id.as_deref(), Some("t"));
    assert_eq!(params.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(
        params.client_capabilities,
        Some(json!({"elicitation": {"url": {}}}))
    );
    assert_eq!(
        params.task_ids,
        [Some("a".to_string()), Some("b".to_string()), None]
    );
    assert_eq!(
        params.reference,
        Some(("ref/prompt".to_string(), Some("q".to_string())))
    );
    // `params` that is not an object, or none: nothing.
    for body in [
        &br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,{"name":"n"}]}"#[..],
        br#"{"jsonrpc":"2.0","id":1,"method":"x","params":"name"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#,
    ] {
        let params = Params::read(body).unwrap();
        assert_eq!(params.name, None);
        assert!(params.arguments.is_none());
        assert!(params.argument_keys().is_empty());
    }
    let task = Params::read(br#"{"params":{"task":{"ttl":5}}}"#).unwrap();
    assert!(task.wants_task);
}

/// `case_variant_of` spells the few non-ASCII characters whose Unicode case
/// mappings are ASCII itself (so the module has no case tables): checked
/// against the standard library's mappings over every code point, and on
/// keys built from each such character against every member name.
#[test]
fn case_variants_agree_with_unicode_case_mappings() {
    let ascii_only = |s: String| s.is_ascii().then_some(s);
    for c in (0x80..=0x10FFFF).filter_map(char::from_u32) {
        let upper = ascii_only(c.to_uppercase().collect());
        let lower = ascii_only(c.to_lowercase().collect());
        let mapped = upper.or(lower).map(|s| s.to_ascii_uppercase());
        assert_eq!(
            super::ascii_spelling(c).map(str::to_string),
            mapped,
            "{c:?} U+{:04X}",
            c as u32
        );
    }
    let members: Vec<&'static str> = super::ENVELOPE_MEMBERS
        .iter()
        .chain(super::PARAMS_MEMBERS.iter())
        .copied()
        .collect();
    // What the check stood for before: a member equal to the key's Unicode
    // uppercase, or (for an all-lowercase member) to its lowercase.
    let unicode = |key: &str| {
        members.iter().copied().find(|member| {
            key != *member
                && (key.to_lowercase() == *member || key.to_uppercase() == member.to_uppercase())
        })
    };
    for member in &members {
        for (at, _) in member.char_indices() {
            for c in [
                '\u{df}', '\u{131}', '\u{17f}', '\u{212a}', '\u{fb01}', '\u{fb06}', 'é',
            ] {
                let key = format!("{}{c}{}", &member[..at], &member[at + 1..]);
                let ours = super::case_variant_of(&key, &members);
                match unicode(&key) {
                    Some(found) => assert_eq!(ours, Some(found), "{key:?}"),
                    // Stricter only for KELVIN SIGN in a member that is not
                    // all lowercase (its lowercase is k, its uppercase itself).
                    None if c == '\u{212a}' => {}
                    None => assert_eq!(ours, None, "{key:?}"),
                }
            }
        }
    }
    assert_eq!(
        super::case_variant_of("noti\u{fb01}cations", &members),
        Some("notifications")
    );
    assert_eq!(
        super::case_variant_of("argumentſ", &members),
        Some("arguments")
    );
    assert_eq!(super::case_variant_of("namé", &members), None);
}

/// Bodies the fast path must agree with the walk on: each is also the seed
/// of the mutations below.
const FAST_PATH_SEEDS: [&str; 22] = [
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"script":"print(1)","timeout":30},"_meta":{"progressToken":1}}}"#,
    r#" { "jsonrpc" : "2.0" , "id" : "a-1" ,
        "method" : "tools/call" , "params" : { "name" : "t" , "arguments" : { } } } "#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"a\n\"b\\c\/d\b\f\r\t\u00e9\u20ac","n":[1,-0,0.5,-1.5e10,1E+2,2e-7,12345678901234567,null,true,false,{}]}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"\ud83d\ude00 x \ud83d","t":"\ude00"}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"t","arguments":{"k\u0031":1}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1e400,"b":123456789012345678901234567890,"c":1.7976931348623157e308,"d":0e99999,"e":-1e-400}}}"#,
    r#"{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":-3,"method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":[1,{"a":2}],"method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":"x\ny","method":"tools\/call","params":{"name":"caf\u00e9"}}"#,
    r#"{"jsonrpc":"2.0","id":null,"method":null,"params":null}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","Arguments":{},"argumentſ":{}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1,"a":2}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"t"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","uri":"file:///é","requestState":"s","task":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","x":[]}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":5}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"deep":[[[[[[[[[[{"a":[[[[1]]]]}]]]]]]]]]]}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":"tab	inside","b":1,}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"ключ":"значение","emoji":"😀","k":"ſ"}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"name"} trailing"#,
];

/// Bytes the mutations insert: JSON's punctuation, escapes, digits, the
/// letters of its literals, control characters and broken UTF-8.
const MUTATION_BYTES: &[u8] =
    b"{}[]\",:\\ \t\n0123456789.eE+-truefalsnu/bx\x00\x1f\x7f\xc3\xa9\xff\xed\xa0\x80\xf0\x9f";

/// Tiny deterministic generator (xorshift64), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut body = seed.to_vec();
    // Mostly one change: a body stays valid often enough to compare readings.
    let changes = if rng.below(3) == 0 {
        2 + rng.below(3)
    } else {
        1
    };
    for _ in 0..changes {
        let at = rng.below(body.len() + 1);
        let byte = MUTATION_BYTES[rng.below(MUTATION_BYTES.len())];
        match rng.below(5) {
            0 if at < body.len() => body[at] = byte,
            1 => body.insert(at, byte),
            2 if at < body.len() => {
                body.remove(at);
            }
            3 => {
                // Repeat a slice: duplicate members, deeper nesting.
                let end = (at + rng.below(24)).min(body.len());
                let slice = body[at..end].to_vec();
                body.splice(at..at, slice);
            }
            _ => {
                let escape: &[u8] = [
                    &b"\\u00e9"[..],
                    b"\\ud800",
                    b"\\udfff",
                    b"\\\"",
                    b"\\n",
                    b"\\u0041",
                ][rng.below(6)];
                body.splice(at..at, escape.iter().copied());
            }
        }
    }
    body
}

/// Wherever the fast path accepts a body, the walk accepts it and reads the
/// same: the seeds, and thousands of mutations of them, at three nesting
/// limits. The fast path must also have vouched for a good share, or the
/// check proves nothing.
#[test]
fn the_fast_path_reads_what_the_walk_reads() {
    let bench: [&[u8]; 2] = [
        include_bytes!("../../bench/bodies/call-1k.json"),
        include_bytes!("../../bench/bodies/call-64k.json"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut vouched, mut left) = (0, 0);
    let mut check = |body: &[u8], max_depth: usize| match fast_path_agrees(body, max_depth) {
        Ok(true) => vouched += 1,
        Ok(false) => left += 1,
        Err(disagreement) => panic!(
            "{disagreement}\nbody: {:?}\nmax_depth: {max_depth}",
            String::from_utf8_lossy(body)
        ),
    };
    for seed in FAST_PATH_SEEDS
        .iter()
        .map(|seed| seed.as_bytes())
        .chain(bench)
    {
        let rounds = if seed.len() > 4096 { 20 } else { 2_000 };
        for max_depth in [DEFAULT_MAX_DEPTH, 4, 2] {
            check(seed, max_depth);
            for _ in 0..rounds {
                check(&mutate(seed, &mut rng), max_depth);
            }
        }
    }
    assert!(
        vouched > 10_000 && left > 10_000,
        "vouched {vouched}, left {left}"
    );
}

/// The bodies agents send take the fast path (or the speed-up is lost
/// without a test failing); what it cannot vouch for goes to the walk.
#[test]
fn the_fast_path_takes_ordinary_bodies_and_leaves_the_rest() {
    let vouched = |body: &[u8]| fast_path_agrees(body, DEFAULT_MAX_DEPTH);
    assert_eq!(
        vouched(include_bytes!("../../bench/bodies/call-1k.json")),
        Ok(true)
    );
    assert_eq!(
        vouched(include_bytes!("../../bench/bodies/call-64k.json")),
        Ok(true)
    );
    for seed in &FAST_PATH_SEEDS[..3] {
        assert_eq!(vouched(seed.as_bytes()), Ok(true), "{seed}");
    }
    for left in [3, 4, 5, 11, 13, 14, 15, 19, 21] {
        let seed = FAST_PATH_SEEDS[left];
        assert_eq!(vouched(seed.as_bytes()), Ok(false), "{seed}");
    }
}

/// `is_plain_text` (eight bytes at a time) says what a byte-by-byte look
/// says: every byte value, at every place of texts up to 17 bytes long.
#[test]
fn plain_text_is_told_apart_from_text_that_needs_escapes() {
    let plain = |text: &[u8]| {
        text.iter()
            .all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    };
    for len in 0..=17 {
        for at in 0..len {
            for byte in 0..=255u8 {
                let mut text = vec![b'a'; len];
                text[at] = byte;
                assert_eq!(
                    super::scan::is_plain_text(&text),
                    plain(&text),
                    "{len} {at} {byte:#x}"
                );
            }
        }
        assert!(super::scan::is_plain_text(&vec![b'a'; len]));
    }
}

/// Prompt names a server could read as another name are refused: what
/// Unicode normalisation (NFKC) changes, and what is invisible; names in
/// any script stay usable.
#[test]
fn prompt_names_that_normalise_or_hide_characters_are_refused() {
    for name in [
        "\u{ff42}adPrompt",    // full-width b
        "\u{1d41b}adPrompt",   // mathematical bold b
        "\u{24e2}ecretPrompt", // circled s
        "\u{1d47}adPrompt",    // modifier letter small b
        "badPrompt\u{61c}",    // Arabic letter mark (a format character)
        "badPrompt\u{fe0f}",   // variation selector
        "bad\u{34f}Prompt",    // combining grapheme joiner
        "bad\u{e0001}Prompt",  // language tag
        "bad\u{3164}Prompt",   // Hangul filler
        "bad\u{115f}Prompt",   // Hangul choseong filler
        "bad\u{200e}Prompt",   // left-to-right mark
        "\u{fb01}le",          // ligature fi
        "\u{17f}ecret",        // long s
        "\u{212a}ey",          // Kelvin sign
        "bad\u{a0}prompt",     // no-break space
        "x\u{b2}",             // superscript two
        "\u{2160}",            // Roman numeral one
    ] {
        assert!(check_prompt_name(name).is_err(), "{name:?}");
    }
    for name in [
        "review code",
        "r\u{e9}sum\u{e9}",
        "\u{8981}\u{7d04}",
        "\u{c694}\u{c57d}",
        "\u{43e}\u{442}\u{447}\u{451}\u{442}",
        "\u{645}\u{644}\u{62e}\u{635}",
        "\u{5e1}\u{5d9}\u{5db}\u{5d5}\u{5dd}",
        "\u{938}\u{93e}\u{930}\u{93e}\u{902}\u{936}",
        "summary_v2.1-final",
    ] {
        assert_eq!(check_prompt_name(name), Ok(()), "{name:?}");
    }
}

/// The table is what its generator writes: sorted and disjoint, so that the
/// binary search finds every range.
#[test]
fn the_look_alike_table_is_sorted_and_disjoint() {
    let table = &super::look_alike::LOOK_ALIKE;
    assert!(table.len() > 100);
    for pair in table.windows(2) {
        assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:x?}");
    }
    for &(low, high) in table.iter() {
        for c in [low, high] {
            if let Some(c) = char::from_u32(c) {
                assert!(super::is_look_alike(c), "{c:?}");
            }
        }
        if let Some(after) = char::from_u32(high + 1) {
            let next_low = table
                .iter()
                .find(|range| range.0 > high)
                .map(|range| range.0);
            if next_low != Some(high + 1) {
                assert!(!super::is_look_alike(after), "{after:?}");
            }
        }
    }
}

/// A message refused for its structure still answers with its id when the
/// id can be read beyond doubt, so the client can match the refusal with
/// its request; a doubtful id stays null.
#[test]
fn a_structural_refusal_names_the_id_when_it_is_beyond_doubt() {
    let id_of = |body: &str| match invalid(body) {
        Invalid::Request { id, .. } => id,
        other => panic!("{body}: {other:?}"),
    };
    for (body, id) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
            json!(1),
        ),
        (
            r#"{"method":"tools/call","Method":"x","id":"a-1","jsonrpc":"2.0"}"#,
            json!("a-1"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            json!(7),
        ),
        (r#"{"jsonrpc":"2.0","id":8,"method":5}"#, json!(8)),
        (
            r#"{"jsonrpc":"1","id":"x","method":"tools/call","params":{"name":"a","name":"b"}}"#,
            json!("x"),
        ),
        // Doubtful: given twice, beside a loose variant, not a string or integer.
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call"}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"ID":2,"method":"tools/call"}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","method":"x"}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","method":"x"}"#,
            Value::Null,
        ),
    ] {
        assert_eq!(id_of(body), id, "{body}");
    }
}

/// A member the gate reads, spelt with what a lax reader drops (a NUL and
/// what follows it, invisible characters, blanks), is refused as a letter
/// case variant is: a reader of C strings sees `name` twice.
#[test]
fn a_member_spelt_with_characters_a_reader_drops_is_refused() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name\u0000":"deleteWorkspace"}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"read\",\"\u{200b}name\":\"deleteWorkspace\"}}",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method\u0000":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{},"arguments\u0000x":{"a":1}}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"read\",\"name\u{feff}\":\"x\"}}",
    ] {
        let refusal = invalid(body);
        assert!(
            format!("{refusal:?}").contains("characters a server may drop"),
            "{body}: {refusal:?}"
        );
    }
    // Other names with such characters are not the gate's to judge.
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","note\u0000":1}}"#;
    assert!(parse(body.as_bytes()).is_ok());
}
