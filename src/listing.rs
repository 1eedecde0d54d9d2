//! Hiding entries from listings (`tools/list` answers) on their way back to
//! the caller, in a JSON body or in an event stream (Streamable HTTP, and the
//! GET streams that replay answers on resumption).
//!
//! An answer is recognised by its *shape*, not by matching its id to a
//! request: a JSON-RPC message (or each message of a batch) whose `result`
//! holds a listing member (`tools`) is a listing, whatever its id and
//! however the server wrote that id. So a server that normalises ids
//! (`1.0` → `1`), a replay on a GET stream and an answer on the deprecated
//! HTTP+SSE transport's GET stream are all filtered the same way.
//!
//! Fail closed: a message the filter must read but cannot parse is replaced
//! by a JSON-RPC error, never passed on.

use serde_json::Value;

use crate::target::Kind;

/// Whether the caller may see the entry of `kind` named `name`.
pub type Shows<'a> = &'a dyn Fn(Kind, &str) -> bool;

/// Removes the entries `shows` rejects from every listing in `message`: a
/// JSON-RPC message or a batch of them. Returns whether there was a listing.
/// An entry without a readable name is removed (it cannot be shown safely),
/// and a listing member that is not an array is emptied.
pub fn filter_message(message: &mut Value, shows: Shows<'_>) -> bool {
    match message {
        Value::Array(messages) => {
            // Every message of the batch, not only up to the first listing.
            let mut found = false;
            for message in messages {
                found |= filter_one(message, shows);
            }
            found
        }
        message => filter_one(message, shows),
    }
}

fn filter_one(message: &mut Value, shows: Shows<'_>) -> bool {
    let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut found = false;
    // A listing of tools, prompts, resources or templates: a cacheable
    // result (MCP 2026-07-28; a listing of tasks is not one).
    let mut cacheable = false;
    for kind in Kind::ALL {
        for (member, key) in kind.listing_members() {
            let Some(entries) = result.get_mut(*member) else {
                continue;
            };
            found = true;
            cacheable |= kind != Kind::Task;
            match entries.as_array_mut() {
                Some(entries) => entries.retain(|entry| {
                    entry
                        .get(*key)
                        .and_then(Value::as_str)
                        .is_some_and(|name| shows(kind, name))
                }),
                None => *entries = Value::Array(Vec::new()),
            }
        }
    }
    // A listing filtered for one caller must not be served to another from
    // a shared cache (MCP 2026-07-28 results carry `cacheScope`): marked
    // private, also where a 2026-07-28 result (one with `resultType` or
    // `ttlMs`) left the scope out, which some clients read as the schema's
    // default, public. Older results are left without one.
    let current = ["cacheScope", "resultType", "ttlMs"]
        .iter()
        .any(|member| result.contains_key(*member));
    if (found && result.contains_key("cacheScope")) || (cacheable && current) {
        result.insert(
            "cacheScope".to_string(),
            Value::String("private".to_string()),
        );
    }
    found
}

/// What became of a body or an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Not a listing (or empty): pass it as it is.
    Unchanged,
    /// A listing, rewritten for the caller.
    Rewritten(Vec<u8>),
    /// Not readable as JSON: it must not pass.
    Unreadable,
}

/// Filters a JSON response body.
pub fn filter_json_body(body: &[u8], shows: Shows<'_>) -> Filtered {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Filtered::Unchanged;
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
        return Filtered::Unreadable;
    };
    if filter_message(&mut message, shows) {
        Filtered::Rewritten(crate::response::json_bytes(&message))
    } else {
        Filtered::Unchanged
    }
}

/// Rewrites one event stream as it flows. Events are parsed as the
/// EventSource specification says (lines end in CRLF, LF or CR; an event ends
/// at a blank line; `field: value` with one optional space), so that the
/// filter sees exactly the events a client sees. Events of a type other than
/// `message` pass unchanged; a `message` event whose data is not JSON is
/// replaced by an error event.
#[derive(Debug)]
pub struct SseFilter {
    /// Bytes received and not yet forwarded: the start of an event.
    pending: Vec<u8>,
    /// Past [`MAX_EVENT_BYTES`]: the rest of the event is dropped as it
    /// comes, up to the blank line that ends it.
    skipping: Option<Skip>,
    /// Nothing read yet: a BOM here is skipped, as readers skip it.
    at_start: bool,
    /// Where the scan for line ends resumes in `pending`.
    scanned: usize,
    /// Start of the current line in `pending`.
    line_start: usize,
    /// The JSON-RPC error that replaces an unreadable message.
    unreadable: Vec<u8>,
}

impl SseFilter {
    /// `unreadable`: the JSON-RPC error message sent in place of a message
    /// event that cannot be read.
    pub fn new(unreadable: Vec<u8>) -> Self {
        SseFilter {
            pending: Vec::new(),
            skipping: None,
            at_start: true,
            scanned: 0,
            line_start: 0,
            unreadable,
        }
    }

    /// Takes the next piece of the stream; returns the bytes to forward now.
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool, shows: Shows<'_>) -> Vec<u8> {
        let mut chunk = chunk;
        if let Some(skip) = &mut self.skipping {
            match skip.advance(chunk) {
                Some(end) => {
                    self.skipping = None;
                    chunk = &chunk[end..];
                }
                None => return Vec::new(),
            }
        }
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        if self.at_start {
            if self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) && !end_of_stream {
                // Perhaps a BOM still arriving.
                return out;
            }
            self.at_start = false;
            if self.pending.starts_with(BOM) {
                // Forwarded as it came; the events after it are read without it.
                out.extend(self.pending.drain(..BOM.len()));
            }
        }
        let mut event_start = 0;
        let mut index = self.scanned;
        while index < self.pending.len() {
            let byte = self.pending[index];
            if byte != b'\n' && byte != b'\r' {
                index += 1;
                continue;
            }
            let line_end = index;
            let terminator = if byte == b'\r' {
                match self.pending.get(index + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A CR at the end: an LF may follow in the next chunk.
                    None if end_of_stream => 1,
                    None => break,
                }
            } else {
                1
            };
            index += terminator;
            let blank = line_end == self.line_start;
            self.line_start = index;
            if blank {
                self.dispatch(&self.pending[event_start..index], shows, &mut out);
                event_start = index;
            }
        }
        self.pending.drain(..event_start);
        self.scanned = index - event_start;
        self.line_start -= event_start;
        if self.pending.len() > MAX_EVENT_BYTES {
            // One event this large is not held whole in the VM: the error
            // goes in its place, and the rest of it is dropped as it comes.
            let mut skip = Skip::default();
            if skip.advance(&self.pending[self.line_start..]).is_none() {
                self.skipping = Some(skip);
            }
            self.pending.clear();
            self.scanned = 0;
            self.line_start = 0;
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&self.unreadable);
            out.extend_from_slice(b"\n\n");
        }
        if end_of_stream && !self.pending.is_empty() {
            // An event cut off by the end of the stream: clients discard it,
            // but a lenient one might not, so it is filtered like the others.
            let rest = std::mem::take(&mut self.pending);
            self.dispatch(&rest, shows, &mut out);
            self.scanned = 0;
            self.line_start = 0;
        }
        out
    }

    /// Appends `event` (its bytes up to and including the blank line that
    /// ends it), rewritten if it is a listing, to `out`.
    fn dispatch(&self, event: &[u8], shows: Shows<'_>, out: &mut Vec<u8>) {
        let fields = parse_event(event);
        let is_message = fields.is_message();
        // Events without data, or with empty data (servers prime resumption
        // with one), carry no message.
        let data = fields
            .data
            .filter(|data| is_message && !data.iter().all(u8::is_ascii_whitespace));
        let Some(data) = data else {
            out.extend_from_slice(event);
            return;
        };
        let replacement = match serde_json::from_slice::<Value>(&data) {
            Ok(mut message) => {
                if !filter_message(&mut message, shows) {
                    out.extend_from_slice(event);
                    return;
                }
                crate::response::json_bytes(&message)
            }
            Err(_) => self.unreadable.clone(),
        };
        for line in fields.other_lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&replacement);
        out.extend_from_slice(b"\n\n");
    }
}

/// The largest event the filter holds whole.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// Where a dropped event ends: at a blank line (CRLF, LF or CR).
#[derive(Debug, Default)]
struct Skip {
    /// Bytes of the current line so far.
    line: usize,
    /// The last byte was a CR (an LF after it ends the same line).
    after_cr: bool,
}

impl Skip {
    /// The index just past the blank line that ends the event, if `bytes`
    /// holds it.
    fn advance(&mut self, bytes: &[u8]) -> Option<usize> {
        for (index, byte) in bytes.iter().enumerate() {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' if self.line == 0 => return Some(index + 1),
                b'\n' | b'\r' => {
                    self.line = 0;
                    self.after_cr = *byte == b'\r';
                }
                _ => self.line += 1,
            }
        }
        None
    }
}

/// The data of every message event of a complete event stream (an event
/// cut off at the end counts too), as a client would read them.
pub fn sse_messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let stream = stream.strip_prefix(BOM).unwrap_or(stream);
    let mut messages = Vec::new();
    let mut start = 0;
    let mut previous_blank = true;
    let mut position = 0;
    let flush = |event: &[u8], messages: &mut Vec<Vec<u8>>| {
        let fields = parse_event(event);
        let is_message = fields.is_message();
        if let Some(data) = fields.data.filter(|_| is_message) {
            messages.push(data);
        }
    };
    for line in lines(stream) {
        position += line.len();
        // Skip the line ending that follows (CRLF, LF or CR).
        match stream.get(position) {
            Some(b'\r') if stream.get(position + 1) == Some(&b'\n') => position += 2,
            Some(_) => position += 1,
            None => {}
        }
        if line.is_empty() && !previous_blank {
            flush(&stream[start..position], &mut messages);
            start = position;
        } else if line.is_empty() {
            start = position;
        }
        previous_blank = line.is_empty();
    }
    if start < stream.len() {
        flush(&stream[start..], &mut messages);
    }
    messages
}

/// The fields of one event that matter here.
struct EventFields<'a> {
    /// The `event` field's value, if given.
    event_type: Option<String>,
    /// The data lines joined with LF, if any data line was given.
    data: Option<Vec<u8>>,
    /// Every non-empty line that is not a data line (id, event, retry,
    /// comments), to keep them in a rewritten event.
    other_lines: Vec<&'a [u8]>,
}

impl EventFields<'_> {
    /// A message event: no type, or an empty one (the EventSource
    /// specification dispatches both as `message`, and so do clients).
    fn is_message(&self) -> bool {
        self.event_type
            .as_deref()
            .is_none_or(|kind| kind.is_empty() || kind == "message")
    }
}

/// UTF-8's byte order mark, which an event stream may start with and its
/// readers skip there (only there: elsewhere it is part of a field name).
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn parse_event(event: &[u8]) -> EventFields<'_> {
    let mut fields = EventFields {
        event_type: None,
        data: None,
        other_lines: Vec::new(),
    };
    for line in lines(event) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = match line.iter().position(|byte| *byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => match &mut fields.data {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => fields.data = Some(value.to_vec()),
            },
            b"event" => {
                fields.event_type = Some(String::from_utf8_lossy(value).into_owned());
                fields.other_lines.push(line);
            }
            _ => fields.other_lines.push(line),
        }
    }
    fields
}

/// The lines of `bytes`, split at CRLF, LF or CR.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest
            .iter()
            .position(|byte| *byte == b'\n' || *byte == b'\r')
        {
            Some(end) => {
                let line = &rest[..end];
                let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests;
