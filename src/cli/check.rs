//! `mcp-policy check`: a policy validated by the filter's own code
//! ([`Policy::from_json`]), every error it reports with its path and source
//! position.
//!
//! `Policy::from_json` reads each part of the document on its own and checks
//! on past an error, so it reports every error it can find (see its
//! documentation for what stops it). Errors the reader found carry their line
//! and column; for errors found after reading (a regex, an argument path, a
//! counter given two windows), the position is that of the value the error's
//! path names.

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

/// Validates a policy document: the policy, or every error found (at least
/// one), in source order (errors without a position last).
pub fn check(source: &[u8]) -> Result<Policy, Vec<Finding>> {
    let errors = match Policy::from_json(source) {
        Ok(policy) => return Ok(policy),
        Err(errors) => errors,
    };
    let text = std::str::from_utf8(source).ok();
    let mut findings: Vec<Finding> = errors.iter().map(|error| finding(error, text)).collect();
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
}
