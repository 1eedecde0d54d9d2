//! `mcp-policy check`: a policy validated by the filter's own code
//! ([`Policy::from_json`]), every error it reports with its path and source
//! position.
//!
//! `Policy::from_json` reads each part of the document on its own and checks
//! on past an error, but a part stops at its first error, and some errors
//! stop the whole document (an unknown or missing top-level field, a name
//! given twice). So that every error is reported at once, `check` then
//! repairs what was reported in a copy of the document (drops an unknown
//! field, puts a valid value in place of a bad or missing one) and reads the
//! copy again, until no new error turns up; errors of the copy that concern
//! a repaired value are not the document's and are left out. Errors the
//! reader found in the document itself carry their line and column; the
//! others are placed at the value their path names.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::locate::{self, Position};
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

/// Most rounds of repairing and reading again.
const MAX_ROUNDS: usize = 32;
/// Counter names put in place of bad ones start with this.
const PLACEHOLDER: &str = "mcp-policy-check-placeholder";

/// Validates a policy document: the policy, or every error found (at least
/// one), in source order (errors without a position last).
pub fn check(source: &[u8]) -> Result<Policy, Vec<Finding>> {
    let errors = match Policy::from_json(source) {
        Ok(policy) => return Ok(policy),
        Err(errors) => errors,
    };
    let text = std::str::from_utf8(source).ok();
    let mut findings: Vec<Finding> = errors.iter().map(|error| finding(error, text)).collect();
    if let Some(text) = text {
        findings.extend(hidden_errors(text, errors.iter().cloned().collect()));
    }
    // Stable: errors at one position keep the filter's order.
    findings.sort_by_key(|finding| (finding.position.is_none(), finding.position));
    Err(findings)
}

/// A finding for one error; its position from the reader, else from the path.
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

/// The errors the first reading could not see: behind another error of the
/// same part, or of the whole document.
fn hidden_errors(text: &str, mut errors: Vec<ConfigError>) -> Vec<Finding> {
    let Ok(mut document) = serde_json::from_str::<Value>(text) else {
        // Not JSON: nothing can be read past the first error.
        return Vec::new();
    };
    let mut seen: BTreeSet<(String, String)> = errors
        .iter()
        .map(|error| (error.path.clone(), error.message.clone()))
        .collect();
    let mut repaired: Vec<String> = Vec::new();
    let mut found = Vec::new();
    for round in 0..MAX_ROUNDS {
        let mut changed = round == 0; // the copy itself has no duplicate names
        for error in &errors {
            if let Some(path) = repair(&mut document, error, round) {
                repaired.push(path);
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let copy = serde_json::to_vec(&document).unwrap_or_default();
        errors = match Policy::from_json(&copy) {
            Ok(_) => break,
            Err(again) => again
                .into_iter()
                .filter(|error| seen.insert((error.path.clone(), error.message.clone())))
                .filter(|error| !concerns_repaired(error, &repaired))
                .collect(),
        };
        for error in &errors {
            found.push(Finding {
                path: error.path.clone(),
                message: error.message.clone(),
                position: locate::locate(text, &error.path, ROOT),
            });
        }
    }
    found
}

/// Whether an error of the copy is about a value `check` put there.
fn concerns_repaired(error: &ConfigError, repaired: &[String]) -> bool {
    error.message.contains(PLACEHOLDER)
        || repaired.iter().any(|path| {
            error.path == *path
                || error.path.starts_with(&format!("{path}."))
                || error.path.starts_with(&format!("{path}["))
                || mentions(&error.message, path)
                || names_field(&error.message, path)
        })
}

/// Whether a message names the field at the end of `path` as a word: what
/// the copy says of a field `check` removed or replaced (`a limit needs …
/// or `concurrent``, `add a top-level approval_service`, `no rule asks for
/// approval (… or approve_if)`) follows from the repair, not the document.
fn names_field(message: &str, path: &str) -> bool {
    // The copy never adds a field: an unknown one is the document's.
    if message.starts_with("unknown field") {
        return false;
    }
    let Some(field) = path.rsplit(['.', '[']).next() else {
        return false;
    };
    if field.is_empty() || field.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word == field)
}

/// Whether a message names `path` or the part that holds it as another
/// place (`... but 60s at tools.a.limits[0]`).
fn mentions(message: &str, path: &str) -> bool {
    let part = path.rsplit_once(['.', '[']).map_or(path, |(part, _)| part);
    message.contains(&format!("at {path}")) || message.contains(&format!("at {part}"))
}

/// Repairs what `error` reports in `document`; the path repaired, if any.
fn repair(document: &mut Value, error: &ConfigError, round: usize) -> Option<String> {
    let path = if error.path == ROOT {
        ""
    } else {
        error.path.as_str()
    };
    if let Some(field) = quoted_after(&error.message, "missing field `") {
        let tokens = resolve(document, path)?;
        let parent = pointer_mut(document, &tokens)?.as_object_mut()?;
        parent.insert(field.to_string(), placeholder(field, round)?);
        return Some(join(path, field));
    }
    let tokens = resolve(document, path)?;
    let (last, parent_tokens) = tokens.split_last()?;
    let parent = pointer_mut(document, parent_tokens)?;
    match (parent, last) {
        (Value::Object(map), Token::Key(key)) => {
            if error.message.starts_with("unknown field") {
                map.remove(key);
            } else {
                match placeholder(key, round) {
                    Some(value) if map.get(key) != Some(&value) => {
                        map.insert(key.clone(), value);
                    }
                    _ => {
                        map.remove(key)?;
                    }
                }
            }
        }
        (Value::Array(items), Token::Index(index)) => {
            let container = parent_tokens.last();
            let value = match container {
                Some(Token::Key(key)) if key == "limits" => placeholder("limit", round)?,
                _ => json!("placeholder"),
            };
            let item = items.get_mut(*index)?;
            if *item == value {
                return None;
            }
            *item = value;
        }
        _ => return None,
    }
    Some(path.to_string())
}

/// A value of the right type for a field of this name.
fn placeholder(field: &str, round: usize) -> Option<Value> {
    let counter = format!("{PLACEHOLDER}-{round}-{}", field.len());
    Some(match field {
        "version" => json!("1"),
        "default" | "default_prompts" | "default_resources" | "action" => json!("deny"),
        "window" => json!("minute"),
        "max" | "lt" | "lte" | "gt" | "gte" => json!(1),
        "scope" => json!("grant"),
        "counter" => json!(counter),
        "store" => json!("local"),
        "reason" | "on_deny" | "contains" => json!("placeholder"),
        "regex" => json!("placeholder"),
        "under" => json!("/"),
        "exists" | "hold_request_headers" => json!(true),
        "max_length" => json!(0),
        "in" | "not_in" | "hide" | "limits" => json!([]),
        "mode" => json!("enforce"),
        "list" => json!("show_denied"),
        "deny_as" => json!("error"),
        "failure_mode" => json!("closed"),
        "max_body_bytes" => json!(1_048_576),
        "max_json_depth" => json!(64),
        "max_callers_per_counter" => json!(65_536),
        "tools" | "prompts" | "resources" | "grants" | "annotations" | "methods" | "require"
        | "deny_if" | "all_tools" => json!({}),
        "limit" => json!({"counter": counter, "window": "minute", "max": 1, "scope": "grant"}),
        _ => return None,
    })
}

/// The text between `prefix` and the next backquote.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    Index(usize),
}

/// The steps a dotted path (`tools.a.b.limits[0].window`) takes through
/// `value`; keys may contain dots, so every key that fits is tried.
fn resolve(value: &Value, rest: &str) -> Option<Vec<Token>> {
    if rest.is_empty() {
        return Some(Vec::new());
    }
    if let Some(indexed) = rest.strip_prefix('[') {
        let (index, after) = indexed.split_once(']')?;
        let index: usize = index.parse().ok()?;
        let element = value.as_array()?.get(index)?;
        let mut tokens = vec![Token::Index(index)];
        tokens.extend(resolve(element, after.strip_prefix('.').unwrap_or(after))?);
        return Some(tokens);
    }
    for (key, member) in value.as_object()? {
        let Some(after) = rest.strip_prefix(key.as_str()) else {
            continue;
        };
        let next = if after.is_empty() || after.starts_with('[') {
            after
        } else if let Some(after_dot) = after.strip_prefix('.') {
            after_dot
        } else {
            continue;
        };
        if let Some(more) = resolve(member, next) {
            let mut tokens = vec![Token::Key(key.clone())];
            tokens.extend(more);
            return Some(tokens);
        }
    }
    // The last step may name a member that is not there (an unknown field
    // is reported at its own path, which exists; a missing one is not).
    None
}

fn pointer_mut<'a>(mut value: &'a mut Value, tokens: &[Token]) -> Option<&'a mut Value> {
    for token in tokens {
        value = match token {
            Token::Key(key) => value.as_object_mut()?.get_mut(key)?,
            Token::Index(index) => value.as_array_mut()?.get_mut(*index)?,
        };
    }
    Some(value)
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
    fn reports_every_error_in_source_order() {
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
                r#"6:43: tools.b.deny_if.args.s.regex: invalid regex "(": found open group without closing ')'"#,
                "7:37: tools.c.on_deny: a rule has either `reason` or `on_deny` (the same thing), not both",
                "9:38: grants.ci.default: unknown variant `maybe`, expected `allow` or `deny`",
                "9:72: grants.ci.tools.d.action: unknown variant `nope`, expected one of `allow`, `deny`, `approve`",
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
    fn a_conflict_between_two_parts_is_reported_with_the_other_errors() {
        let text = r#"{"version":"1","default":"deny",
"all_tools":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]},
"tools":{"t":{"limits":[{"counter":"c","window":3600,"max":1,"scope":"grant"},
{"counter":"d","window":60,"max":0,"scope":"grant"}]}}}"#;
        assert_eq!(
            errors(text),
            [
                r#"3:49: tools.t.limits[0].window: counter "c" has window 3600s here but 60s at all_tools.limits[0]; a counter has one window"#,
                "4:34: tools.t.limits[1].max: must be a positive integer, got 0",
            ]
        );
    }

    #[test]
    fn errors_behind_other_errors_are_found_too() {
        // An unknown top-level field stops the whole document; an unknown
        // field stops its rule; a limit stops at its first bad value.
        let text = r#"{"version":"1","default":"deny","toolz":{},
"tools":{"a":{"actoin":"deny","limits":[{"counter":"c","window":"fortnight","max":0,"scope":"grunt"}]},
         "b":{"deny_if":{"args.x":{"regex":"(","bogus":1}}}},
"grants":{"g":{"default":"maybe","toolz":{}}}}"#;
        let found = errors(text);
        let expected = [
            "1:39: toolz: unknown field `toolz`",
            "2:24: tools.a.actoin: unknown field `actoin`",
            r#"2:65: tools.a.limits[0].window: unknown window "fortnight""#,
            "2:83: tools.a.limits[0].max: must be a positive integer, got 0",
            "2:93: tools.a.limits[0].scope: unknown variant `grunt`",
            r#"3:44: tools.b.deny_if.args.x.regex: invalid regex "(""#,
            "3:56: tools.b.deny_if.args.x.bogus: unknown field `bogus`",
            "4:26: grants.g.default: unknown variant `maybe`",
            "4:42: grants.g.toolz: unknown field `toolz`",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found}\nis not\n{expected}");
        }
        assert!(!found.iter().any(|error| error.contains(PLACEHOLDER)));
    }

    #[test]
    fn what_follows_from_a_repair_is_not_reported() {
        // Each document has one error; removing or replacing the bad value
        // in the copy would make another appear, which is not the document's.
        for (text, only) in [
            (
                r#"{"version":"1","default":"deny","approval_service":{"cluster":"a","cluster":"b"},"tools":{"a":{"action":"approve"}}}"#,
                "approval_service: duplicate field `cluster`",
            ),
            (
                r#"{"version":"1","default":"deny","tools":{"a":{"limits":[{"counter":"c","concurrent":1025,"scope":"grant"}]}}}"#,
                "tools.a.limits[0].concurrent: at most 1024, got 1025",
            ),
            (
                r#"{"version":"1","default":"deny","identity":{"header":"x agent"}}"#,
                "identity.header: invalid header name",
            ),
            (
                r#"{"version":"1","default":"deny","approval_service":{"cluster":"c"},"tools":{"a":{"action":"deny","approve_if":{"args.x":{"exists":true}}}}}"#,
                "tools.a.approve_if: a rule with \"action\": \"deny\" refuses every call",
            ),
        ] {
            let found = errors(text);
            assert_eq!(found.len(), 1, "{text}: {found:#?}");
            assert!(found[0].contains(only), "{found:#?}");
        }
    }

    #[test]
    fn a_missing_field_is_reported_once_and_the_rest_is_read() {
        let text = r#"{"default":"deny","tools":{"a":{"limits":[{"counter":"c","max":1,"scope":"grant","window":"fortnight"}]}}}"#;
        let found = errors(text);
        assert!(
            found
                .iter()
                .any(|e| e.contains("policy: missing field `version`")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|e| e.contains("unknown window")),
            "{found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
