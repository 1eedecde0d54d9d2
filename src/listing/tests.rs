use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn shows(_kind: Kind, name: &str) -> bool {
    name != "deleteWorkspace"
}

const TOOLS: &str = r#"[{"name":"asyncExecuteCode","inputSchema":{"type":"object"}},{"name":"deleteWorkspace","inputSchema":{"type":"object"}},{"name":"checkCodeExecStatus","inputSchema":{"type":"object"}}]"#;
/// TOOLS as the filter writes it for a caller who must not see
/// deleteWorkspace: the entries shown keep their text.
const SHOWN: &str = r#"[{"name":"asyncExecuteCode","inputSchema":{"type":"object"}},{"name":"checkCodeExecStatus","inputSchema":{"type":"object"}}]"#;

fn answer(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{TOOLS}}}}}"#)
}

fn filtered(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{SHOWN}}}}}"#)
}

fn rewritten(body: &str) -> String {
    match filter_json_body(body.as_bytes(), &shows) {
        Filtered::Rewritten(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("expected a rewrite of {body}, got {other:?}"),
    }
}

#[test]
fn a_listing_is_filtered_whatever_its_id() {
    // Servers normalise ids (-0, 1.0 and 2e0 come back as 0, 1 and 2), and a
    // replay has no request to match: the shape decides. The id goes back
    // as the server wrote it, however it is spelt: an integer past 2^64 is
    // not respelt as a double.
    for id in [
        "4",
        "\"4\"",
        "1.0",
        "2e0",
        "-0",
        "null",
        "{ \"a\" : 1 }",
        "103393333333333333333333333333",
        "18446744073709551616",
        "-9223372036854775809",
        "1.00000000000000000000000000001",
    ] {
        assert_eq!(rewritten(&answer(id)), filtered(id), "id {id}");
    }
    let no_id = format!(r#"{{"jsonrpc":"2.0","result":{{"tools":{TOOLS}}}}}"#);
    assert_eq!(
        rewritten(&no_id),
        format!(r#"{{"jsonrpc":"2.0","result":{{"tools":{SHOWN}}}}}"#)
    );
}

#[test]
fn every_listing_of_a_batch_is_filtered() {
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","id":9,"result":{{}}}}]"#,
        answer("1")
    );
    assert_eq!(
        rewritten(&batch),
        format!(
            r#"[{},{{"jsonrpc":"2.0","id":9,"result":{{}}}}]"#,
            filtered("1")
        )
    );
}

#[test]
fn entries_that_cannot_be_read_are_removed() {
    let body = r#"{"result":{"tools":[{"name":"ok"},{"name":7},{"title":"no name"},"x",{"name":"deleteWorkspace"}]}}"#;
    assert_eq!(rewritten(body), r#"{"result":{"tools":[{"name":"ok"}]}}"#);
    let not_a_list = r#"{"result":{"tools":{"name":"deleteWorkspace"}}}"#;
    assert_eq!(rewritten(not_a_list), r#"{"result":{"tools":[]}}"#);
}

#[test]
fn other_answers_pass_and_unreadable_ones_do_not() {
    let call = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"tools"}]}}"#;
    assert_eq!(filter_json_body(call, &shows), Filtered::Unchanged);
    assert_eq!(
        filter_json_body(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1}}"#, &shows),
        Filtered::Unchanged
    );
    assert_eq!(filter_json_body(b"", &shows), Filtered::Unchanged);
    assert_eq!(filter_json_body(b" \r\n", &shows), Filtered::Unchanged);
    for unreadable in [
        &b"oops"[..],
        br#"{"result":{"tools":[]}} trailing"#,
        // A lone surrogate: JavaScript's JSON.parse reads it, serde_json does not.
        br#"{"result":{"tools":[{"name":"deleteWorkspace","d":"\ud800"}]}}"#,
        &[0xff, b'{'][..],
    ] {
        assert_eq!(
            filter_json_body(unreadable, &shows),
            Filtered::Unreadable,
            "{}",
            String::from_utf8_lossy(unreadable)
        );
    }
}

const ERROR: &[u8] = br#"{"error":"unreadable"}"#;

fn filter_stream(stream: &str, pieces: usize) -> String {
    let mut filter = SseFilter::new(ERROR.to_vec());
    let bytes = stream.as_bytes();
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = bytes.chunks(pieces.max(1)).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        out.extend(filter.push(chunk, index + 1 == chunks.len(), &shows));
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_stream_keeps_other_events_byte_for_byte_and_rewrites_listings() {
    let stream = format!(
        "id: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n\
         id: 2\ndata: {}\n\n\
         : comment\n\n\
         data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\r\n\r\n",
        answer("7")
    );
    let expected = format!(
        "id: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n\
         id: 2\ndata: {}\n\n\
         : comment\n\n\
         data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\r\n\r\n",
        filtered("7")
    );
    // Whatever the pieces the stream arrives in, the output is the same,
    // and it is the expected one.
    for pieces in [1, 2, 3, 5, 17, 64, 4096] {
        assert_eq!(
            filter_stream(&stream, pieces),
            expected,
            "pieces of {pieces}"
        );
    }
}

#[test]
fn every_line_ending_the_event_stream_format_allows_is_understood() {
    // LF, CRLF, CR, and mixes of them; a blank line ends an event.
    for (separator, end) in [
        ("\n", "\n\n"),
        ("\r\n", "\r\n\r\n"),
        ("\r", "\r\r"),
        ("\n", "\n\r\n"),
        ("\r\n", "\r\n\n"),
        ("\r", "\r\n\r"),
    ] {
        let stream = format!("id: 5{separator}data: {}{end}data: {{}}{end}", answer("5"));
        let expected = format!("id: 5\ndata: {}\n\ndata: {{}}{end}", filtered("5"));
        for pieces in [1, 3, 4096] {
            assert_eq!(
                filter_stream(&stream, pieces),
                expected,
                "{separator:?} {end:?} in pieces of {pieces}"
            );
        }
    }
}

#[test]
fn data_lines_are_joined_and_fields_read_as_clients_read_them() {
    let listing = answer("2");
    let (a, b) = listing.split_at(listing.find(',').unwrap() + 1);
    // No space after the colon, and a second data line: clients join with LF.
    let stream = format!("data:{a}\ndata: {b}\n\n");
    assert_eq!(
        filter_stream(&stream, 7),
        format!("data: {}\n\n", filtered("2"))
    );
}

#[test]
fn what_is_shown_keeps_its_text_line_breaks_and_all() {
    // A shown entry spread over several data lines, with numbers a
    // double cannot hold and members out of key order: the client reads
    // back exactly what the server wrote, and only the hidden entry is gone.
    let stream = "id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":18446744073709551617,\n\
                  data: \"result\":{\"tools\":[{\"name\":\"a\",\n\
                  data:   \"inputSchema\":{\"type\":\"number\",\"maximum\":0.10000000000000000000001}},\n\
                  data: {\"name\":\"deleteWorkspace\"}],\"_meta\":{\"z\":1,\"a\":2}}}\n\n";
    let out = filter_stream(stream, 3);
    let sent = sse_messages(stream.as_bytes());
    let received = sse_messages(out.as_bytes());
    assert_eq!(received.len(), 1, "{out}");
    let received = String::from_utf8(received[0].clone()).unwrap();
    assert_eq!(
        received,
        "{\"jsonrpc\":\"2.0\",\"id\":18446744073709551617,\"result\":{\"tools\":[{\"name\":\"a\",\n  \
         \"inputSchema\":{\"type\":\"number\",\"maximum\":0.10000000000000000000001}}],\"_meta\":{\"z\":1,\"a\":2}}}",
        "sent {:?}",
        String::from_utf8_lossy(&sent[0])
    );
    assert!(out.starts_with("id: 7\n"), "{out}");
}

#[test]
fn a_member_given_twice_is_read_once_as_clients_read_it() {
    // The last of a repeated member counts (as in a `Value` and in
    // JSON.parse), and the first is not written back: a client that keeps
    // the first of two `result`s or `tools` finds nothing hidden either.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"deleteWorkspace"}}]}},"result":{{"tools":{TOOLS},"tools":{TOOLS}}}}}"#
    );
    assert_eq!(
        rewritten(&body),
        format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":{SHOWN}}}}}"#)
    );
    // A listing in a `result` that a later one replaces: gone with it.
    let body = r#"{"id":1,"result":{"tools":[{"name":"deleteWorkspace"}]},"result":5}"#;
    assert_eq!(rewritten(body), r#"{"id":1,"result":5}"#);
    let body = r#"{"id":1,"result":{"tools":[{"name":"deleteWorkspace"}],"tools":null}}"#;
    assert_eq!(rewritten(body), r#"{"id":1,"result":{"tools":[]}}"#);
    // An entry named twice could show a client the other name: removed.
    let body = r#"{"id":1,"result":{"tools":[{"name":"deleteWorkspace","name":"a"},{"name":"a","name":"a"},{"name":"a"}]}}"#;
    assert_eq!(
        rewritten(body),
        r#"{"id":1,"result":{"tools":[{"name":"a"}]}}"#
    );
}

#[test]
fn a_member_a_loose_reader_takes_for_a_listing_is_not_passed() {
    // Go's encoding/json matches member names in any letter case (ſ for s,
    // KELVIN SIGN for k); readers of C strings stop at a NUL. A member such a
    // reader takes for `result`, a listing member or an entry's name would
    // be read in place of what the filter read: it goes.
    for (body, expected) in [
        (
            r#"{"id":1,"result":{"tools":[],"TOOLS":[{"name":"deleteWorkspace"}]}}"#,
            r#"{"id":1,"result":{"tools":[]}}"#,
        ),
        (
            r#"{"id":1,"result":{"tools":[{"name":"a","Name":"deleteWorkspace"},{"name":"b"}]}}"#,
            r#"{"id":1,"result":{"tools":[{"name":"b"}]}}"#,
        ),
        (
            r#"{"id":1,"result":{"toolſ":[{"name":"deleteWorkspace"}]}}"#,
            r#"{"id":1,"result":{}}"#,
        ),
        (
            r#"{"id":1,"Result":{"tools":[{"name":"deleteWorkspace"}]}}"#,
            r#"{"id":1}"#,
        ),
        (
            r#"{"RESULT":{"tools":[{"name":"deleteWorkspace"}]},"result":{"tools":[]}}"#,
            r#"{"result":{"tools":[]}}"#,
        ),
        (
            r#"{"result\u0000":{"tools":[{"name":"deleteWorkspace"}]},"result":{"tools":[{"name":"a"}]}}"#,
            r#"{"result":{"tools":[{"name":"a"}]}}"#,
        ),
        (
            r#"{"id":1,"result":{"tasks":[{"taskId":"t","TASKID":"deleteWorkspace"},{"taskId":"u"}]}}"#,
            r#"{"id":1,"result":{"tasks":[{"taskId":"u"}]}}"#,
        ),
        (
            "{\"id\":1,\"result\":{\"resourceTemplates\":[],\"resourcetemplates\":[{\"uriTemplate\":\"x\"}],\"\u{212A}\":1}}",
            "{\"id\":1,\"result\":{\"resourceTemplates\":[],\"\u{212A}\":1}}",
        ),
    ] {
        assert_eq!(rewritten(body), expected, "{body}");
    }
    // Names that only look alike are other members, and pass.
    let body =
        r#"{"id":1,"result":{"tools":[{"name":"a","names":"deleteWorkspace"}],"toolsets":[1]}}"#;
    assert_eq!(rewritten(body), body);
    let body = r#"{"id":1,"results":{"tools":[{"name":"deleteWorkspace"}]}}"#;
    assert_eq!(
        filter_json_body(body.as_bytes(), &shows),
        Filtered::Unchanged
    );
}

#[test]
fn what_a_strict_reader_refuses_does_not_pass() {
    // Read as strictly as serde_json's `Value` reads: a number out of range,
    // a lone surrogate (also in a member's name), a second value.
    for body in [
        r#"{"id":1e400,"result":{}}"#,
        r#"{"id":1,"result":{"x":"\ud800"}}"#,
        r#"{"id":1,"result":{"\udc00":1}}"#,
        r#"{"id":1} {"id":2}"#,
        "{\"id\":1,\"result\":{\"tools\":[]}}\u{feff}",
    ] {
        assert_eq!(
            filter_json_body(body.as_bytes(), &shows),
            Filtered::Unreadable,
            "{body}"
        );
        assert!(serde_json::from_str::<Value>(body).is_err(), "{body}");
    }
}

#[test]
fn events_of_other_types_and_without_data_pass() {
    // The deprecated HTTP+SSE transport's endpoint event, and the empty
    // event servers send to prime resumption.
    let stream = "event: endpoint\ndata: /messages?session=1\n\nid: 0\ndata:\n\nid: 1\ndata: \n\nretry: 10\n\n";
    assert_eq!(filter_stream(stream, 1), stream);
    let other_type = format!("event: custom\ndata: {}\n\n", answer("1"));
    assert_eq!(filter_stream(&other_type, 3), other_type);
}

#[test]
fn an_empty_event_type_and_a_leading_bom_are_messages_as_clients_read_them() {
    // `event:` with no value dispatches as `message` (the EventSource
    // specification; eventsource-parser and the SDKs read it so).
    let stream = format!("event:\ndata: {}\n\n", answer("4"));
    assert_eq!(
        filter_stream(&stream, 5),
        format!("event:\ndata: {}\n\n", filtered("4"))
    );
    let stream = format!("event: \ndata: {}\n\n", answer("4"));
    assert_eq!(
        filter_stream(&stream, 5),
        format!("event: \ndata: {}\n\n", filtered("4"))
    );
    // A stream may start with a BOM, which readers skip (and only there:
    // elsewhere it is part of a field's name).
    let stream = format!("\u{feff}data: {}\n\n", answer("6"));
    for pieces in [1, 2, 4096] {
        assert_eq!(
            filter_stream(&stream, pieces),
            format!("\u{feff}data: {}\n\n", filtered("6"))
        );
    }
    let later = format!("data: {{}}\n\n\u{feff}data: {}\n\n", answer("6"));
    assert_eq!(filter_stream(&later, 3), later);
    assert_eq!(filter_stream("\u{feff}", 1), "\u{feff}");
    // The messages a task binding reads, the same way.
    let stream = format!("\u{feff}data: {}\n\nevent:\ndata: {{}}\n\n", answer("1"));
    assert_eq!(
        sse_messages(stream.as_bytes()),
        vec![answer("1").into_bytes(), b"{}".to_vec()]
    );
}

#[test]
fn an_event_larger_than_the_filter_holds_is_replaced_and_the_stream_goes_on() {
    // A listing event of more than 4 MiB, never held whole: the error in its
    // place, its remaining bytes dropped, the next events filtered as usual.
    let padding = "x".repeat(2 * MAX_EVENT_BYTES);
    let huge = format!(
        r#"data: {{"jsonrpc":"2.0","id":9,"result":{{"tools":[{{"name":"deleteWorkspace","description":"{padding}"}}]}}}}"#
    );
    for ending in ["\n\n", "\r\n\r\n", "\r\r"] {
        let stream = format!("{huge}{ending}id: 2\ndata: {}\n\n", answer("2"));
        for pieces in [65_536, 1_000_003] {
            let mut filter = SseFilter::new(ERROR.to_vec());
            let mut out = Vec::new();
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(pieces).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                out.extend(filter.push(chunk, index + 1 == chunks.len(), &shows));
                assert!(filter.pending.len() <= MAX_EVENT_BYTES + pieces);
            }
            let out = String::from_utf8(out).unwrap();
            let error = format!("data: {}\n\n", String::from_utf8(ERROR.to_vec()).unwrap());
            assert!(
                out.starts_with(&error),
                "{ending:?} {pieces}: {:?}",
                &out[..out.len().min(200)]
            );
            assert!(!out.contains("deleteWorkspace"), "{ending:?} {pieces}");
            assert!(
                out.ends_with(&format!("id: 2\ndata: {}\n\n", filtered("2"))),
                "{ending:?} {pieces}: {}",
                &out[..out.len().min(300)]
            );
        }
    }
}

#[test]
fn a_message_that_cannot_be_read_is_replaced_by_the_error() {
    let stream = "id: 3\ndata: {\"result\":{\"tools\":[{\"name\":\"deleteWorkspace\",\"x\":\"\\ud800\"}]}}\n\ndata: {}\n\n";
    assert_eq!(
        filter_stream(stream, 5),
        "id: 3\ndata: {\"error\":\"unreadable\"}\n\ndata: {}\n\n"
    );
}

#[test]
fn events_are_forwarded_as_soon_as_they_are_complete() {
    let mut filter = SseFilter::new(ERROR.to_vec());
    let event = format!("data: {}\n\n", answer("1"));
    let (head, tail) = event.split_at(20);
    let first = filter.push(
        format!("data: {{\"n\":1}}\n\n{head}").as_bytes(),
        false,
        &shows,
    );
    assert_eq!(first, b"data: {\"n\":1}\n\n");
    let second = filter.push(tail.as_bytes(), false, &shows);
    assert_eq!(
        String::from_utf8(second).unwrap(),
        format!("data: {}\n\n", filtered("1"))
    );
    // A CR at the end of a chunk: the event is complete only if no LF follows
    // (CRLF) or once the next line is blank.
    assert_eq!(filter.push(b"data: {}\r", false, &shows), b"");
    assert_eq!(filter.push(b"\n\r\n", false, &shows), b"data: {}\r\n\r\n");
}

#[test]
fn a_stream_that_ends_mid_event_is_filtered_too() {
    let mut filter = SseFilter::new(ERROR.to_vec());
    let listing = answer("1");
    assert_eq!(
        filter.push(format!("data: {listing}").as_bytes(), false, &shows),
        b""
    );
    assert_eq!(
        String::from_utf8(filter.push(b"", true, &shows)).unwrap(),
        format!("data: {}\n\n", filtered("1"))
    );
    let mut filter = SseFilter::new(ERROR.to_vec());
    assert_eq!(filter.push(b"data: {\"partial\"", false, &shows), b"");
    assert_eq!(filter.push(b":1}", true, &shows), b"data: {\"partial\":1}");
}

#[test]
fn every_kind_of_listing_is_filtered_and_marked_private() {
    let shows = |kind: Kind, name: &str| match kind {
        Kind::Prompt => name != "secret_prompt",
        Kind::Resource => !name.contains(".env") && !name.contains("private"),
        _ => true,
    };
    let prompts = r#"{"result":{"prompts":[{"name":"summarize"},{"name":"secret_prompt"}],"ttlMs":300000,"cacheScope":"public"}}"#;
    assert_eq!(
        match filter_json_body(prompts.as_bytes(), &shows) {
            Filtered::Rewritten(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("{other:?}"),
        },
        r#"{"result":{"prompts":[{"name":"summarize"}],"ttlMs":300000,"cacheScope":"private"}}"#
    );
    let resources =
        r#"{"result":{"resources":[{"uri":"file:///srv/public/a"},{"uri":"file:///srv/.env"}]}}"#;
    assert!(matches!(
        filter_json_body(resources.as_bytes(), &shows),
        Filtered::Rewritten(bytes) if !String::from_utf8_lossy(&bytes).contains(".env")
    ));
    let templates = r#"{"result":{"resourceTemplates":[{"uriTemplate":"file:///srv/public/{path}"},{"uriTemplate":"file:///srv/private/{path}"}]}}"#;
    assert!(matches!(
        filter_json_body(templates.as_bytes(), &shows),
        Filtered::Rewritten(bytes) if !String::from_utf8_lossy(&bytes).contains("private")
    ));
    let rewritten = |body: &str| match filter_json_body(body.as_bytes(), &shows) {
        Filtered::Rewritten(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("{other:?}"),
    };
    // A 2026-07-28 result without a scope (some clients read it as
    // public): marked private. A 2025-11-25 one knows no scope: none added.
    assert_eq!(
        rewritten(r#"{"result":{"tools":[{"name":"a"}],"resultType":"complete"}}"#),
        r#"{"result":{"tools":[{"name":"a"}],"resultType":"complete","cacheScope":"private"}}"#
    );
    assert_eq!(
        rewritten(r#"{"result":{"prompts":[],"ttlMs":0}}"#),
        r#"{"result":{"prompts":[],"ttlMs":0,"cacheScope":"private"}}"#
    );
    assert_eq!(
        rewritten(r#"{"result":{"tools":[{"name":"a"}]}}"#),
        r#"{"result":{"tools":[{"name":"a"}]}}"#
    );
    // A listing of tasks is no cacheable result; a scope a server gave it
    // anyway is made private all the same.
    assert_eq!(
        rewritten(r#"{"result":{"tasks":[],"resultType":"complete"}}"#),
        r#"{"result":{"tasks":[],"resultType":"complete"}}"#
    );
    assert_eq!(
        rewritten(r#"{"result":{"tasks":[],"cacheScope":"public"}}"#),
        r#"{"result":{"tasks":[],"cacheScope":"private"}}"#
    );
}
