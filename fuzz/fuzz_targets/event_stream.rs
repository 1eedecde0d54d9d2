//! An event stream cut into random pieces, checked against an independent
//! reading of the event-stream format (below, written from the
//! specification, not from the filter):
//! - the output does not depend on where the cuts fall;
//! - no message the reader finds in the output lists the hidden tool (or
//!   prompt, resource, task: every listing the library filters), whichever
//!   way a client finds members: by exact name or loosely (letter case, as
//!   Go's encoding/json; up to a NUL, as C), the first of a repeated member
//!   or the last;
//! - a stream in which no reader finds a listing, with only readable
//!   messages, passes byte for byte;
//! - the output holds the input's messages, one for one and in order: the
//!   same bytes for a message no reader takes for a listing (or only
//!   blanks), the error for one that is not JSON, and for a listing the
//!   same `jsonrpc` and `id`, as written, and `result` members (so an
//!   answer dropped, swapped for another or respelt fails, which the first
//!   three allow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy::listing::SseFilter;
use mcp_policy::target::Kind;
use serde_json::Value;

/// A JSON value with every member of an object kept, a repeated one too,
/// in order: what any reader may make of it.
enum Tree {
    Object(Vec<(String, Tree)>),
    Array(Vec<Tree>),
    Str(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Tree;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("JSON")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Tree, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Tree>()? {
                    members.push(member);
                }
                Ok(Tree::Object(members))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Tree, S::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Tree>()? {
                    items.push(item);
                }
                Ok(Tree::Array(items))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Str(v.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How a client finds a member by name: exactly or loosely (as Go's
/// encoding/json matches names, in any letter case by Unicode's mappings,
/// and as a reader of C strings, up to a NUL), taking the first match or
/// the last.
#[derive(Clone, Copy, Debug)]
struct Reader {
    loose: bool,
    first: bool,
}

const READERS: [Reader; 4] = [
    Reader {
        loose: false,
        first: false,
    },
    Reader {
        loose: false,
        first: true,
    },
    Reader {
        loose: true,
        first: false,
    },
    Reader {
        loose: true,
        first: true,
    },
];

/// Whether a loose reader takes `key` for `name` (written from the
/// standard library's case mappings, not from the filter's table).
fn loosely(key: &str, name: &str) -> bool {
    let fold = |text: &str| -> String {
        text.split('\0')
            .next()
            .unwrap_or("")
            .chars()
            .flat_map(char::to_lowercase)
            .flat_map(char::to_uppercase)
            .collect()
    };
    fold(key) == fold(name)
}

fn member<'t>(tree: &'t Tree, name: &str, reader: Reader) -> Option<&'t Tree> {
    let Tree::Object(members) = tree else {
        return None;
    };
    let mut found = members
        .iter()
        .filter(|(key, _)| key == name || (reader.loose && loosely(key, name)))
        .map(|(_, value)| value);
    if reader.first {
        found.next()
    } else {
        found.next_back()
    }
}

fn each_message(tree: &Tree) -> Vec<&Tree> {
    match tree {
        Tree::Array(batch) => batch.iter().collect(),
        message => vec![message],
    }
}

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
/// `jsonrpc` and `id` as written (so an id respelt fails), and the names
/// of the `result` members but those a loose reader takes for a listing
/// member (the filter drops them).
fn envelope(message: &[u8]) -> Vec<(Option<String>, Option<String>, Vec<String>)> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    type Members<'a> = BTreeMap<String, &'a RawValue>;
    let one = |message: &Members| {
        let text = |name: &str| message.get(name).map(|raw| raw.get().to_string());
        let members = message
            .get("result")
            .and_then(|result| serde_json::from_str::<Members>(result.get()).ok())
            .map(|result| {
                result
                    .into_keys()
                    .filter(|key| {
                        listing_members().any(|(name, _)| key == name)
                            || !listing_members().any(|(name, _)| loosely(key, name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (text("jsonrpc"), text("id"), members)
    };
    if let Ok(batch) = serde_json::from_slice::<Vec<Members>>(message) {
        return batch.iter().map(one).collect();
    }
    serde_json::from_slice::<Members>(message)
        .map(|message| vec![one(&message)])
        .unwrap_or_default()
}

/// Every listing member of a result and the key that names its entries
/// (`tools`/`name`, `resources`/`uri`, `tasks`/`taskId`, ...), from the
/// library's one table of them.
fn listing_members() -> impl Iterator<Item = (&'static str, &'static str)> {
    Kind::ALL
        .iter()
        .flat_map(|kind| kind.listing_members().iter().copied())
}

/// Whether a reader finds the hidden entry in a listing of the message.
fn lists_hidden(tree: &Tree, reader: Reader) -> bool {
    each_message(tree).into_iter().any(|message| {
        let Some(result) = member(message, "result", reader) else {
            return false;
        };
        listing_members().any(|(name, key)| {
            match member(result, name, reader) {
            Some(Tree::Array(entries)) => entries.iter().any(|entry| {
                matches!(member(entry, key, reader), Some(Tree::Str(name)) if name == "hidden")
            }),
            _ => false,
        }
        })
    })
}

/// Whether some reader may find a listing in the message: a member a loose
/// reader takes for `result` (any of them) holding one it takes for a
/// listing member.
fn may_list(tree: &Tree) -> bool {
    each_message(tree).into_iter().any(|message| match message {
        Tree::Object(members) => members.iter().any(|(key, result)| {
            loosely(key, "result")
                && matches!(result, Tree::Object(inner) if inner.iter().any(|(key, _)| {
                    listing_members().any(|(name, _)| loosely(key, name))
                }))
        }),
        _ => false,
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
        if let Ok(message) = serde_json::from_slice::<Tree>(&message) {
            for reader in READERS {
                assert!(
                    !lists_hidden(&message, reader),
                    "a hidden tool passed to {reader:?}"
                );
            }
        }
    }
    let (sent, received) = (messages(stream), messages(&whole));
    assert_eq!(sent.len(), received.len(), "messages lost or added");
    // A message no reader may take for a listing passes byte for byte.
    let may_be_listing =
        |data: &[u8]| serde_json::from_slice::<Tree>(data).is_ok_and(|message| may_list(&message));
    for (sent, received) in sent.iter().zip(&received) {
        if sent.iter().all(u8::is_ascii_whitespace) {
            assert_eq!(sent, received, "a blank message changed");
            continue;
        }
        if serde_json::from_slice::<Value>(sent).is_err() {
            assert_eq!(received, b"{\"error\":1}", "an unreadable message passed");
            continue;
        }
        serde_json::from_slice::<Value>(received).expect("a readable message stays readable");
        if may_be_listing(sent) {
            assert_eq!(envelope(sent), envelope(received), "an answer changed");
        } else {
            assert_eq!(sent, received, "a message without a listing changed");
        }
    }
    // Only blank or readable messages, none of them one a reader may take
    // for a listing (read as JSON, so an escaped member name counts too).
    let plain = messages(stream).iter().all(|data| {
        data.iter().all(u8::is_ascii_whitespace)
            || (serde_json::from_slice::<Value>(data).is_ok() && !may_be_listing(data))
    });
    if plain {
        assert_eq!(
            whole, stream,
            "a stream without a listing must pass unchanged"
        );
    }
});
