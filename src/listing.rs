//! Hiding tools from `tools/list` answers, in a JSON body or in an event
//! stream (Streamable HTTP). In a stream only the event that answers the
//! `tools/list` request is rewritten; every other event passes unchanged, in
//! order, as soon as it is complete.

use serde_json::Value;

/// Removes the tools `keep` rejects from `message` if it is the answer to
/// the `tools/list` request `id`. Returns whether it was that answer.
pub fn filter_message(message: &mut Value, id: &Value, keep: &dyn Fn(&str) -> bool) -> bool {
    if message.get("id") != Some(id) {
        return false;
    }
    let Some(tools) = message
        .get_mut("result")
        .and_then(|result| result.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(keep));
    true
}

/// Filters a JSON response body. `None`: not the answer, leave it unchanged.
pub fn filter_json_body(body: &[u8], id: &Value, keep: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    filter_message(&mut message, id, keep).then(|| message.to_string().into_bytes())
}

/// Rewrites one event stream as it flows.
#[derive(Debug)]
pub struct SseFilter {
    id: Value,
    /// The start of an event whose end has not arrived yet.
    pending: Vec<u8>,
    /// The answer was found: everything after it passes untouched.
    done: bool,
}

impl SseFilter {
    pub fn new(id: Value) -> Self {
        SseFilter {
            id,
            pending: Vec::new(),
            done: false,
        }
    }

    /// Takes the next piece of the stream; returns the bytes to forward now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        keep: &dyn Fn(&str) -> bool,
    ) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        if self.done {
            return std::mem::take(&mut self.pending);
        }
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some((end, next)) = event_end(&self.pending[start..]) {
            let event = &self.pending[start..start + end];
            let separator = &self.pending[start + end..start + next];
            if self.done {
                out.extend_from_slice(event);
            } else {
                match self.rewrite(event, keep) {
                    Some(rewritten) => {
                        out.extend_from_slice(&rewritten);
                        self.done = true;
                    }
                    None => out.extend_from_slice(event),
                }
            }
            out.extend_from_slice(separator);
            start += next;
        }
        self.pending.drain(..start);
        if end_of_stream || self.done {
            // Nothing more will complete the rest, or nothing more needs reading.
            out.append(&mut self.pending);
        }
        out
    }

    /// The event with its data replaced, if it carries the answer.
    fn rewrite(&self, event: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(event).ok()?;
        let lines: Vec<&str> = text
            .split(['\n'])
            .map(|line| line.trim_end_matches('\r'))
            .collect();
        let data: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|value| value.strip_prefix(' ').unwrap_or(value))
            .collect();
        if data.is_empty() {
            return None;
        }
        let mut message: Value = serde_json::from_str(&data.join("\n")).ok()?;
        if !filter_message(&mut message, &self.id, keep) {
            return None;
        }
        let mut rewritten = Vec::with_capacity(event.len());
        let mut wrote_data = false;
        for line in lines {
            if line.starts_with("data:") {
                if !wrote_data {
                    rewritten.extend_from_slice(b"data: ");
                    rewritten.extend_from_slice(message.to_string().as_bytes());
                    rewritten.push(b'\n');
                    wrote_data = true;
                }
            } else {
                rewritten.extend_from_slice(line.as_bytes());
                rewritten.push(b'\n');
            }
        }
        // The separator that follows supplies the last line ending.
        rewritten.pop();
        Some(rewritten)
    }
}

/// Where the first complete event in `bytes` ends: (end of its text, start
/// of the next event). Events end at a blank line, in any of SSE's line
/// endings.
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut index = 0;
    while index < bytes.len() {
        let rest = &bytes[index..];
        for separator in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if rest.starts_with(separator) {
                // The event keeps its own last line ending out; the separator
                // (one line ending + the blank line) follows it.
                return Some((index, index + separator.len()));
            }
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests;
