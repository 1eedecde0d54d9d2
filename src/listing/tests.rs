use serde_json::json;

use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn keep(name: &str) -> bool {
    name != "deleteWorkspace"
}

fn list_answer(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
        {"name":"asyncExecuteCode","inputSchema":{"type":"object"}},
        {"name":"deleteWorkspace","inputSchema":{"type":"object"}},
        {"name":"checkCodeExecStatus","inputSchema":{"type":"object"}}]}})
    .to_string()
}

fn names(message: &Value) -> Vec<&str> {
    message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

#[test]
fn json_answer_loses_hidden_tools() {
    let body = filter_json_body(list_answer(4).as_bytes(), &json!(4), &keep).unwrap();
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        names(&message),
        vec!["asyncExecuteCode", "checkCodeExecStatus"]
    );
    // Another id, or not JSON: left alone.
    assert_eq!(
        filter_json_body(list_answer(4).as_bytes(), &json!(5), &keep),
        None
    );
    assert_eq!(filter_json_body(b"oops", &json!(4), &keep), None);
    assert_eq!(
        filter_json_body(list_answer(4).as_bytes(), &json!("4"), &keep),
        None
    );
}

#[test]
fn stream_rewrites_only_the_answer_and_keeps_order() {
    let stream = format!(
        "id: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\nid: 2\ndata: {}\n\n: comment\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n",
        list_answer(7)
    );
    let mut filter = SseFilter::new(json!(7));
    let out = filter.push(stream.as_bytes(), false, &keep);
    let out = String::from_utf8(out).unwrap();
    let events: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(
        events[0],
        "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}"
    );
    assert!(events[1].starts_with("id: 2\ndata: "), "{}", events[1]);
    let answer: Value =
        serde_json::from_str(events[1].strip_prefix("id: 2\ndata: ").unwrap()).unwrap();
    assert_eq!(
        names(&answer),
        vec!["asyncExecuteCode", "checkCodeExecStatus"]
    );
    assert_eq!(events[2], ": comment");
    assert_eq!(
        events[3],
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}"
    );
}

#[test]
fn the_decision_does_not_depend_on_how_the_stream_is_split() {
    let stream = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":99}}\r\n\r\nevent: message\r\ndata: {}\r\n\r\ndata: {{\"after\":true}}\r\n\r\n",
        list_answer(3)
    );
    let whole = SseFilter::new(json!(3)).push(stream.as_bytes(), true, &keep);
    for piece in [1, 2, 5, 17, 64] {
        let mut filter = SseFilter::new(json!(3));
        let mut out = Vec::new();
        let bytes = stream.as_bytes();
        for (index, chunk) in bytes.chunks(piece).enumerate() {
            let last = (index + 1) * piece >= bytes.len();
            out.extend(filter.push(chunk, last, &keep));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(whole.clone()).unwrap(),
            "pieces of {piece}"
        );
    }
    assert!(!String::from_utf8(whole)
        .unwrap()
        .contains("deleteWorkspace"));
}

#[test]
fn events_before_the_answer_are_forwarded_as_soon_as_complete() {
    let mut filter = SseFilter::new(json!(1));
    // A complete notification and the first half of the answer.
    let answer = format!("data: {}\n\n", list_answer(1));
    let (head, tail) = answer.split_at(20);
    let first = filter.push(
        format!("data: {{\"n\":1}}\n\n{head}").as_bytes(),
        false,
        &keep,
    );
    assert_eq!(first, b"data: {\"n\":1}\n\n");
    let second = filter.push(tail.as_bytes(), false, &keep);
    assert!(String::from_utf8(second).unwrap().starts_with("data: {"));
    // After the answer everything flows through untouched, even partial events.
    assert_eq!(
        filter.push(b"data: {\"later", false, &keep),
        b"data: {\"later"
    );
}

#[test]
fn multi_line_data_is_joined_before_parsing() {
    let mut filter = SseFilter::new(json!(2));
    let answer = list_answer(2);
    // Split where a line break is JSON whitespace: SSE joins data lines with "\n".
    let (a, b) = answer.split_at(answer.find(',').unwrap() + 1);
    let out = filter.push(format!("data: {a}\ndata: {b}\n\n").as_bytes(), true, &keep);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("deleteWorkspace"), "{out}");
    assert_eq!(out.matches("data:").count(), 1);
}

#[test]
fn a_stream_that_ends_mid_event_flushes_what_it_has() {
    let mut filter = SseFilter::new(json!(1));
    assert_eq!(filter.push(b"data: {\"partial\"", false, &keep), b"");
    assert_eq!(filter.push(b":1}", true, &keep), b"data: {\"partial\":1}");
}
