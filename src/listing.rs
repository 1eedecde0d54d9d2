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

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::target::Kind;

/// Whether the caller may see the entry of `kind` named `name`.
pub type Shows<'a> = &'a dyn Fn(Kind, &str) -> bool;

/// The members of a JSON object, each as the server wrote it, in its order.
/// A member given twice counts by its last value, as in a `Value` (and in
/// most clients).
#[derive(Default)]
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The value of `key` (the last, if given more than once).
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| *value)
    }

    /// Whether each member is the last of its name (sorted by name, then
    /// place: a heap sort, O(n log n) however many members a server sends).
    fn last_of_name(&self) -> Vec<bool> {
        let mut order: Vec<usize> = (0..self.0.len()).collect();
        let members = &self.0;
        crate::sort::sort_by(&mut order, |a, b| (&members[*a].0, a) < (&members[*b].0, b));
        let mut last = vec![true; members.len()];
        for pair in order.windows(2) {
            if members[pair[0]].0 == members[pair[1]].0 {
                last[pair[0]] = false;
            }
        }
        last
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Members<'a>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// `message` (a JSON-RPC message or a batch of them, already read as valid
/// JSON) without the entries `shows` rejects, or None if it holds no
/// listing. An entry without a readable name is removed (it cannot be shown
/// safely), and a listing member that is not an array is emptied.
///
/// Everything else passes as the server wrote it: the id, the other members
/// and the entries shown keep their text and their order (a number is never
/// read and written back, so an id past 2^64 or a schema's
/// `0.1000000000000000001` reaches the client as it was sent), and a
/// batch's other messages pass as they were. A member given twice on the
/// way to a listing is written once, with the value the filter read (the
/// last). Err: not readable (fail closed).
fn rewrite(message: &[u8], shows: Shows<'_>) -> Result<Option<Vec<u8>>, serde_json::Error> {
    if first_byte(message) != Some(b'[') {
        return rewrite_one(message, shows);
    }
    // Every message of a batch, not only up to the first listing.
    let messages: Vec<&RawValue> = serde_json::from_slice(message)?;
    let mut found = false;
    let mut parts = Vec::with_capacity(messages.len());
    for message in messages {
        let message = message.get().as_bytes();
        let part = match rewrite_one(message, shows)? {
            Some(rewritten) => {
                found = true;
                Cow::Owned(rewritten)
            }
            None => Cow::Borrowed(message),
        };
        parts.push(part);
    }
    Ok(found.then(|| array(parts.iter().map(|part| &part[..]))))
}

fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter()
        .copied()
        .find(|byte| !byte.is_ascii_whitespace())
}

fn rewrite_one(message: &[u8], shows: Shows<'_>) -> Result<Option<Vec<u8>>, serde_json::Error> {
    if first_byte(message) != Some(b'{') {
        return Ok(None);
    }
    let message: Members = serde_json::from_slice(message)?;
    // A listing given in any `result` member a client may read (one of a
    // repeated `result`, or one only a loose reader takes for it) is one:
    // the message goes out with the last `result` alone, as the filter
    // reads it, so no client finds the entries elsewhere.
    let last = message.0.iter().rposition(|(key, _)| key == "result");
    let (mut listing, mut result) = (false, None);
    for (index, (key, value)) in message.0.iter().enumerate() {
        if !reads_as(key, "result") {
            continue;
        }
        if let Some(members) = object(value)? {
            listing |= members.0.iter().any(|(key, _)| listing_member(key));
            if Some(index) == last {
                result = Some(members);
            }
        }
    }
    if !listing {
        return Ok(None);
    }
    let result = match result {
        Some(result) => Some(rewrite_result(&result, shows)?),
        None => None,
    };
    let loose = |key: &str| key != "result" && reads_as(key, "result");
    Ok(Some(write_object(&message, &[("result", result)], loose)))
}

/// A result holding a listing, without the entries `shows` rejects.
fn rewrite_result(result: &Members<'_>, shows: Shows<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let mut replaced: Vec<(&str, Option<Vec<u8>>)> = Vec::new();
    // A listing of tools, prompts, resources or templates: a cacheable
    // result (MCP 2026-07-28; a listing of tasks is not one).
    let mut cacheable = false;
    for kind in Kind::ALL {
        for (member, key) in kind.listing_members() {
            if result.0.iter().any(|(name, _)| reads_as(name, member)) {
                cacheable |= kind != Kind::Task;
            }
            let Some(entries) = result.get(member) else {
                continue;
            };
            let mut shown = Vec::new();
            if entries.get().starts_with('[') {
                for entry in serde_json::from_slice::<Vec<&RawValue>>(entries.get().as_bytes())? {
                    if named(entry, key)?.is_some_and(|name| shows(kind, &name)) {
                        shown.push(entry.get().as_bytes());
                    }
                }
            }
            replaced.push((member, Some(array(shown.into_iter()))));
        }
    }
    // A listing filtered for one caller must not be served to another from
    // a shared cache (MCP 2026-07-28 results carry `cacheScope`): marked
    // private, also where a 2026-07-28 result (one with `resultType` or
    // `ttlMs`) left the scope out, which some clients read as the schema's
    // default, public. Older results are left without one.
    let current = ["cacheScope", "resultType", "ttlMs"]
        .iter()
        .any(|member| result.get(member).is_some());
    if result.get("cacheScope").is_some() || (cacheable && current) {
        replaced.push(("cacheScope", Some(b"\"private\"".to_vec())));
    }
    // A member only a loose reader takes for a listing goes: it would be
    // read in place of the filtered one.
    let loose = |key: &str| !is_listing_member(key) && listing_member(key);
    Ok(write_object(result, &replaced, loose))
}

/// Whether a reader of JSON may take the member `key` for `member`: it is
/// `member`, or it is read so by a reader that matches names loosely, as
/// Go's encoding/json does (any letter case, `ſ` for s, KELVIN SIGN for k:
/// [`crate::mcp::case_variant_of`]) or a reader of C strings (up to a NUL).
fn reads_as(key: &str, member: &'static str) -> bool {
    let cut = key.split('\0').next().unwrap_or(key);
    cut == member || crate::mcp::case_variant_of(cut, &[member]).is_some()
}

/// Every listing member's name (`tools`, `resourceTemplates`, ...).
fn listing_members() -> impl Iterator<Item = &'static str> {
    Kind::ALL
        .iter()
        .flat_map(|kind| kind.listing_members().iter().map(|(member, _)| *member))
}

/// Whether `key` is exactly a listing member.
fn is_listing_member(key: &str) -> bool {
    listing_members().any(|member| key == member)
}

/// Whether a reader may take `key` for a listing member.
fn listing_member(key: &str) -> bool {
    listing_members().any(|member| reads_as(key, member))
}

/// The members of `value` if it is an object.
fn object(value: &RawValue) -> Result<Option<Members<'_>>, serde_json::Error> {
    if !value.get().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_slice(value.get().as_bytes()).map(Some)
}

/// The string `entry.key`, if `entry` is an object that has one (and only
/// one: an entry named twice, or with a member a loose reader takes for its
/// name, may show a client a name the filter did not read).
fn named(entry: &RawValue, key: &'static str) -> Result<Option<String>, serde_json::Error> {
    if !entry.get().starts_with('{') {
        return Ok(None);
    }
    let mut reader = serde_json::Deserializer::from_slice(entry.get().as_bytes());
    serde::de::Deserializer::deserialize_map(&mut reader, Name(key))
}

/// Reads an entry for its name (the other members are skipped, not kept:
/// the entry was read whole before).
struct Name(&'static str);

impl<'de> serde::de::Visitor<'de> for Name {
    type Value = Option<String>;
    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an entry")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut members: A,
    ) -> Result<Option<String>, A::Error> {
        let (mut name, mut names, mut loose) = (None, 0, false);
        while let Some(member) = members.next_key_seed(Key(Role::Entry(self.0)))? {
            match member {
                (Role::Name, _) => {
                    names += 1;
                    name = members.next_value::<Value>()?.as_str().map(str::to_string);
                }
                (role, _) => {
                    loose |= role == Role::LooseName;
                    members.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(name.filter(|_| names == 1 && !loose))
    }
}

fn array<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![b'['];
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    out
}

/// `members` in their order, each name once (where its last value was),
/// without those `dropped` names, a value in `replaced` written in place of
/// the one there (None: as it was) and one whose name is not among
/// `members` added at the end.
fn write_object(
    members: &Members<'_>,
    replaced: &[(&str, Option<Vec<u8>>)],
    dropped: impl Fn(&str) -> bool,
) -> Vec<u8> {
    let mut out = vec![b'{'];
    let member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        crate::response::write_str(out, key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    let last = members.last_of_name();
    for ((key, value), last) in members.0.iter().zip(last) {
        if !last || dropped(key) {
            continue;
        }
        let value = match replaced.iter().find(|(name, _)| name == key) {
            Some((_, Some(new))) => &new[..],
            _ => value.get().as_bytes(),
        };
        member(&mut out, key, value);
    }
    for (key, value) in replaced {
        if let (None, Some(value)) = (members.get(key), value) {
            member(&mut out, key, value);
        }
    }
    out.push(b'}');
    out
}

/// Whether `body` is JSON (the whole of it, as a client reads it), and if
/// so, its rewrite for the caller (None: no listing in it).
fn filter_text(body: &[u8], shows: Shows<'_>) -> Result<Option<Vec<u8>>, ()> {
    // Read whole first, as strictly as a client would (numbers in range,
    // no lone surrogates), so that nothing the filter did not read passes;
    // only a message that may hold a listing is read again, to rewrite.
    let mut reader = serde_json::Deserializer::from_slice(body);
    let listing = serde::de::DeserializeSeed::deserialize(Scan(Role::Top), &mut reader)
        .and_then(|listing| reader.end().map(|()| listing))
        .map_err(drop)?;
    if !listing {
        return Ok(None);
    }
    rewrite(body, shows).map_err(drop)
}

/// Where a value stands in a JSON-RPC message, for [`Scan`].
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// The whole body or event: a message or a batch of them.
    Top,
    Message,
    /// A member of a message a reader may take for its `result`.
    Result,
    /// A listing's entry, named by the member given.
    Entry(&'static str),
    /// That member.
    Name,
    /// A member a loose reader takes for it.
    LooseName,
    Other,
}

/// Reads a value as strictly as `serde_json::Value` does (the same parser,
/// storing nothing) and says whether it may hold a listing: a member a
/// reader may take for `result` (any of them, when repeated) holding one a
/// reader may take for a listing member.
struct Scan(Role);

impl<'de> serde::de::DeserializeSeed<'de> for Scan {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<bool, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Scan {
    type Value = bool;
    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<bool, A::Error> {
        let role = if self.0 == Role::Top {
            Role::Message
        } else {
            Role::Other
        };
        let mut found = false;
        while let Some(listing) = items.next_element_seed(Scan(role))? {
            found |= listing;
        }
        Ok(found)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut members: A) -> Result<bool, A::Error> {
        let role = if self.0 == Role::Top {
            Role::Message
        } else {
            self.0
        };
        let mut found = false;
        while let Some((member, listing_member)) = members.next_key_seed(Key(role))? {
            let listing = members.next_value_seed(Scan(member))?;
            found |= listing_member || (member == Role::Result && listing);
        }
        Ok(found)
    }
}

/// A member's name in an object of a role: the role of its value, and
/// whether it may be read as a listing member.
struct Key(Role);

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = (Role, bool);
    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<(Role, bool), D::Error> {
        reader.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = (Role, bool);
    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a member name")
    }
    fn visit_str<E>(self, key: &str) -> Result<(Role, bool), E> {
        Ok(match self.0 {
            Role::Message if reads_as(key, "result") => (Role::Result, false),
            Role::Result => (Role::Other, listing_member(key)),
            Role::Entry(name) if key == name => (Role::Name, false),
            Role::Entry(name) if reads_as(key, name) => (Role::LooseName, false),
            _ => (Role::Other, false),
        })
    }
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
    match filter_text(body, shows) {
        Ok(Some(rewritten)) => Filtered::Rewritten(rewritten),
        Ok(None) => Filtered::Unchanged,
        Err(()) => Filtered::Unreadable,
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
        let replacement = match filter_text(&data, shows) {
            Ok(Some(rewritten)) => rewritten,
            Ok(None) => {
                out.extend_from_slice(event);
                return;
            }
            Err(()) => self.unreadable.clone(),
        };
        for line in fields.other_lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        // What was kept keeps its text, line breaks too (data of several
        // lines): each line goes out as a data line, so the client joins
        // them back as they were.
        let mut rest = &replacement[..];
        if !rest.contains(&b'\n') && !rest.contains(&b'\r') {
            // The usual case, found with memchr.
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(rest);
            out.extend_from_slice(b"\n\n");
            return;
        }
        loop {
            let end = rest
                .iter()
                .position(|byte| *byte == b'\n' || *byte == b'\r');
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
            out.push(b'\n');
            match end {
                Some(end) => rest = &rest[end + 1..],
                None => break,
            }
        }
        out.push(b'\n');
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
