//! `mcp-policy check`: a policy validated by the filter's own code
//! ([`Policy::from_json`]), every error with its path and source position.
//!
//! The filter stops at the first error. To report more, the document is also
//! cut into independent parts: each top-level field, each tool rule, each
//! field of a grant and each tool rule of a grant. Each part is put back into
//! a minimal document at the same path and validated by `Policy::from_json`
//! too: what it finds is wrong in the document itself, found by the filter's
//! own code, under the path the filter names. Errors that need two parts at
//! once (a counter given two windows in two rules, a name given twice) are
//! reported only when they are the whole document's first.

use serde_json::value::RawValue;

use super::locate::{self, index_of_position, offset_in, position_of_index, Position};
use crate::policy::{ConfigError, Policy, ROOT};

/// One error in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Dotted JSON path, as the filter names it.
    pub path: String,
    pub message: String,
    /// Where in the source, when it can be told.
    pub position: Option<Position>,
}

/// Validates a policy document: the policy, or every error found (at least one).
pub fn check(source: &[u8]) -> Result<Policy, Vec<Finding>> {
    let first = match Policy::from_json(source) {
        Ok(policy) => return Ok(policy),
        Err(error) => error,
    };
    let Ok(text) = std::str::from_utf8(source) else {
        return Err(vec![finding(&first, None)]);
    };
    let mut findings = vec![finding(&first, Some(text))];
    for part in parts(text) {
        let Err(error) = Policy::from_json(part.document.as_bytes()) else {
            continue;
        };
        let known = findings
            .iter()
            .any(|seen| seen.path == error.path && seen.message == error.message);
        if !known {
            findings.push(Finding {
                position: part
                    .source_position(text, &error)
                    .or_else(|| locate::locate(text, &error.path, ROOT)),
                path: error.path,
                message: error.message,
            });
        }
    }
    // Source order; errors without a position last.
    findings.sort_by_key(|finding| (finding.position.is_none(), finding.position));
    Err(findings)
}

/// A finding for an error of the whole document; its position from the
/// reader, else from the path.
fn finding(error: &ConfigError, text: Option<&str>) -> Finding {
    let position = match (error.line, error.column) {
        (Some(line), Some(column)) => Some(Position { line, column }),
        _ => text.and_then(|text| locate::locate(text, &error.path, ROOT)),
    };
    Finding {
        path: error.path.clone(),
        message: error.message.clone(),
        position,
    }
}

/// One independent part of the document, wrapped in a minimal policy.
struct Part {
    document: String,
    /// Where the part's text starts in `document` and in the source.
    start_in_document: usize,
    start_in_source: usize,
    length: usize,
}

impl Part {
    /// The source position of an error the reader found inside this part.
    fn source_position(&self, text: &str, error: &ConfigError) -> Option<Position> {
        let position = Position {
            line: error.line?,
            column: error.column?,
        };
        let index = index_of_position(&self.document, position)?;
        let within = index.checked_sub(self.start_in_document)?;
        (within <= self.length).then(|| position_of_index(text, self.start_in_source + within))
    }
}

/// The independent parts of a document that is one JSON object; none if it
/// is not (then only the filter's first error is known).
fn parts(text: &str) -> Vec<Part> {
    let Some(root) = serde_json::from_str::<&RawValue>(text)
        .ok()
        .and_then(locate::members)
    else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    for (key, value) in root {
        match (key.as_str(), locate::members(value)) {
            ("tools", Some(rules)) => {
                for (name, rule) in rules {
                    parts.extend(part(text, &[&key, &name], rule));
                }
            }
            ("grants", Some(grants)) => {
                for (label, grant) in grants {
                    parts.extend(grant_parts(text, &label, grant));
                }
            }
            _ => parts.extend(part(text, &[&key], value)),
        }
    }
    parts
}

/// The parts of one grant: its fields, its `tools` cut into rules.
fn grant_parts(text: &str, label: &str, grant: &RawValue) -> Vec<Part> {
    let Some(fields) = locate::members(grant) else {
        return part(text, &["grants", label], grant).into_iter().collect();
    };
    let mut parts = Vec::new();
    for (field, value) in fields {
        match locate::members(value).filter(|_| field == "tools") {
            Some(rules) => {
                for (name, rule) in rules {
                    parts.extend(part(text, &["grants", label, &field, &name], rule));
                }
            }
            None => parts.extend(part(text, &["grants", label, &field], value)),
        }
    }
    parts
}

/// `value` at `keys` in a document that is otherwise the smallest valid
/// policy (`version` and `default` stand in unless they are the part).
fn part(text: &str, keys: &[&str], value: &RawValue) -> Option<Part> {
    let start_in_source = offset_in(text, value)?;
    let mut document = String::from("{");
    for (field, stand_in) in [("version", r#""1""#), ("default", r#""deny""#)] {
        if keys.first() != Some(&field) {
            document.push_str(&format!(r#""{field}":{stand_in},"#));
        }
    }
    for key in keys {
        // Serializing a string cannot fail.
        document.push_str(&serde_json::to_string(key).ok()?);
        document.push(':');
        document.push('{');
    }
    // The last key holds the value itself, not an object.
    document.pop();
    let start_in_document = document.len();
    document.push_str(value.get());
    document.push_str(&"}".repeat(keys.len()));
    Some(Part {
        document,
        start_in_document,
        start_in_source,
        length: value.get().len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match check(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(findings) => findings
                .iter()
                .map(|finding| match finding.position {
                    Some(position) => {
                        format!("{position}: {}: {}", finding.path, finding.message)
                    }
                    None => format!("{}: {}", finding.path, finding.message),
                })
                .collect(),
        }
    }

    #[test]
    fn reports_an_error_in_every_independent_part() {
        let text = r#"{
  "version": "1",
  "default": "block",
  "tools": {
    "a": {"limits": [{"counter": "c", "window": "fortnight", "max": 1, "scope": "grant"}]},
    "b": {"deny_if": {"args.s": {"regex": "("}}},
    "c": {"reason": "x", "on_deny": "y"}
  },
  "grants": {"ci": {"default": "maybe", "tools": {"d": {"action": "nope"}}}},
  "max_json_depth": 500
}"#;
        assert_eq!(
            errors(text),
            [
                "3:20: default: unknown variant `block`, expected `allow` or `deny`",
                r#"5:59: tools.a.limits[0].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds)"#,
                r#"6:43: tools.b.deny_if.args.s.regex: invalid regex "(": unclosed group"#,
                "7:37: tools.c.on_deny: a rule has either `reason` or `on_deny` (the same thing), not both",
                "9:38: grants.ci.default: unknown variant `maybe`, expected `allow` or `deny`",
                "9:72: grants.ci.tools.d.action: unknown variant `nope`, expected `allow` or `deny`",
                "10:21: max_json_depth: at most 127 (the JSON reader's own limit), got 500",
            ]
        );
    }

    #[test]
    fn a_valid_policy_has_no_errors_and_bad_json_has_one() {
        assert!(check(br#"{"version":"1","default":"deny"}"#).is_ok());
        assert_eq!(
            errors("{\"version\": \"1\",\n \"default\": }"),
            ["2:13: default: expected value"]
        );
    }

    #[test]
    fn a_conflict_between_two_parts_is_reported_once() {
        let text = r#"{"version":"1","default":"deny",
"all_tools":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]},
"tools":{"t":{"limits":[{"counter":"c","window":3600,"max":1,"scope":"grant"}]}}}"#;
        assert_eq!(
            errors(text),
            [
                r#"3:49: tools.t.limits[0].window: counter "c" has window 3600s here but 60s at all_tools.limits[0]; a counter has one window"#
            ]
        );
    }
}
