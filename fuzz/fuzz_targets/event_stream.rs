//! An event stream cut into random pieces, checked against an independent
//! reading of the event-stream format (below, written from the
//! specification, not from the filter):
//! - the output does not depend on where the cuts fall;
//! - no message the reader finds in the output lists the hidden tool (or
//!   prompt, resource, task: every listing the library filters);
//! - a stream with no listing and only readable messages passes byte for byte;
//! - the output holds the input's messages, one for one and in order: the
//!   same bytes for a message without a `result` (or only blanks), the
//!   error for one that is not JSON, and for a result the same `jsonrpc`,
//!   `id` and `result` members (so an answer dropped or swapped for another
//!   fails, which the first three allow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy::listing::SseFilter;
use mcp_policy::target::Kind;
use serde_json::Value;

fn shows(_kind: Kind, name: &str) -> bool {
    name != "hidden"
}

/// The data of every message event, as an EventSource client reads it.
fn messages(stream: &[u8]) -> Vec<Vec<u8>> {
    // A BOM that starts the stream is skipped.
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    // Every line ending (CRLF, then lone CR) as LF.
    let mut text = Vec::with_capacity(stream.len());
    let mut bytes = stream.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if byte == b'\r' {
            bytes.next_if_eq(&&b'\n');
            text.push(b'\n');
        } else {
            text.push(byte);
        }
    }
    let mut out = Vec::new();
    let (mut data, mut kind): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    for line in text.split(|byte| *byte == b'\n') {
        if line.is_empty() {
            if let Some(data) = data.take() {
                if kind
                    .as_deref()
                    .is_none_or(|kind| kind.is_empty() || kind == b"message")
                {
                    out.push(data);
                }
            }
            kind = None;
            continue;
        }
        let (field, value) = match line.iter().position(|byte| *byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => match &mut data {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            },
            b"event" => kind = Some(value.to_vec()),
            _ => {}
        }
    }
    // An event cut off by the end counts too (a lenient client).
    if let Some(data) = data {
        if kind
            .as_deref()
            .is_none_or(|kind| kind.is_empty() || kind == b"message")
        {
            out.push(data);
        }
    }
    out
}

/// The parts of a message the filter must keep: per message (of a batch),
/// `jsonrpc`, `id` and the names of the `result` members.
fn envelope(message: &Value) -> Value {
    let one = |message: &Value| {
        let members: Vec<&String> = message["result"]
            .as_object()
            .map(|result| result.keys().collect())
            .unwrap_or_default();
        serde_json::json!([message.get("jsonrpc"), message.get("id"), members])
    };
    match message {
        Value::Array(batch) => Value::Array(batch.iter().map(one).collect()),
        message => one(message),
    }
}

fn has_result(message: &Value) -> bool {
    match message {
        Value::Array(batch) => batch.iter().any(has_result),
        message => message.get("result").is_some(),
    }
}

/// Every listing member of a result and the key that names its entries
/// (`tools`/`name`, `resources`/`uri`, `tasks`/`taskId`, ...), from the
/// library's one table of them.
fn listing_members() -> impl Iterator<Item = (&'static str, &'static str)> {
    Kind::ALL
        .iter()
        .flat_map(|kind| kind.listing_members().iter().copied())
}

fn any_message(message: &Value, one: impl Fn(&Value) -> bool) -> bool {
    match message {
        Value::Array(batch) => batch.iter().any(one),
        message => one(message),
    }
}

fn lists_hidden(message: &Value) -> bool {
    any_message(message, |message| {
        listing_members().any(|(member, key)| {
            message["result"][member]
                .as_array()
                .is_some_and(|entries| entries.iter().any(|entry| entry[key] == "hidden"))
        })
    })
}

/// Whether a message is (or a batch holds) a result with a listing member.
fn is_listing(message: &Value) -> bool {
    any_message(message, |message| {
        message["result"]
            .as_object()
            .is_some_and(|result| listing_members().any(|(member, _)| result.contains_key(member)))
    })
}

fuzz_target!(|data: &[u8]| {
    // First byte: the piece size; the rest: the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(size.max(1));
    let whole = SseFilter::new(b"{\"error\":1}".to_vec()).push(stream, true, &shows);
    let mut filter = SseFilter::new(b"{\"error\":1}".to_vec());
    let mut pieces = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        pieces.extend(filter.push(chunk, index + 1 == chunks.len(), &shows));
    }
    if stream.is_empty() {
        pieces.extend(filter.push(b"", true, &shows));
    }
    assert_eq!(pieces, whole, "output depends on how the stream was split");
    for message in messages(&whole) {
        if let Ok(message) = serde_json::from_slice::<Value>(&message) {
            assert!(!lists_hidden(&message), "a hidden tool passed");
        }
    }
    let (sent, received) = (messages(stream), messages(&whole));
    assert_eq!(sent.len(), received.len(), "messages lost or added");
    for (sent, received) in sent.iter().zip(&received) {
        if sent.iter().all(u8::is_ascii_whitespace) {
            assert_eq!(sent, received, "a blank message changed");
            continue;
        }
        let Ok(sent) = serde_json::from_slice::<Value>(sent) else {
            assert_eq!(received, b"{\"error\":1}", "an unreadable message passed");
            continue;
        };
        let received: Value =
            serde_json::from_slice(received).expect("a readable message stays readable");
        if has_result(&sent) {
            assert_eq!(envelope(&sent), envelope(&received), "an answer changed");
        } else {
            assert_eq!(sent, received, "a message without a result changed");
        }
    }
    // Only blank or readable messages, none of them a listing (read as JSON,
    // so an escaped member name counts too).
    let plain = messages(stream).iter().all(|data| {
        data.iter().all(u8::is_ascii_whitespace)
            || serde_json::from_slice::<Value>(data).is_ok_and(|message| !is_listing(&message))
    });
    if plain {
        assert_eq!(
            whole, stream,
            "a stream without a listing must pass unchanged"
        );
    }
});
