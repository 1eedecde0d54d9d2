//! The filter protocol's request, its validation, and the approval records
//! both stores keep.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::canonical::{self, DigestInput};

/// Bounds on a check's fields (bytes of UTF-8).
pub const MAX_GRANT: usize = 256;
pub const MAX_CALLER: usize = 256;
pub const MAX_TARGET_NAME: usize = 1024;
pub const MAX_RULE: usize = 512;
pub const MAX_REASON: usize = 2048;
pub const MAX_REVISION: usize = 128;
/// Bounds on what approvers write.
pub const MAX_DECISION_REASON: usize = 1000;
pub const MAX_APPROVER: usize = 256;

/// `POST /v1/check` as the filter sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub digest: String,
    pub grant: String,
    #[serde(default)]
    pub caller: Option<String>,
    pub target: Target,
    pub arguments: Box<RawValue>,
    pub rule: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub ttl_seconds: u64,
    #[serde(default)]
    pub separate_approver: bool,
    pub policy_revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: String,
    pub name: String,
}

/// The call an approval is for: a check's fields, validated, its arguments
/// in canonical JSON. Never changes once the approval exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub grant: String,
    pub caller: Option<String>,
    pub target: Target,
    /// Canonical JSON text.
    pub arguments: String,
    pub rule: String,
    pub reason: Option<String>,
    pub ttl_seconds: u64,
    pub separate_approver: bool,
    pub policy_revision: String,
}

/// Why a check is refused before it reaches the store (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Field(String),
    DigestMismatch { expected: String },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Field(text) => f.write_str(text),
            Invalid::DigestMismatch { expected } => {
                write!(f, "digest does not match the call (expected {expected})")
            }
        }
    }
}

fn text_field(name: &str, value: &str, max: usize, required: bool) -> Result<(), Invalid> {
    if required && value.is_empty() {
        return Err(Invalid::Field(format!("{name} is empty")));
    }
    if value.len() > max {
        return Err(Invalid::Field(format!("{name} is longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::Field(format!(
            "{name} contains control characters"
        )));
    }
    Ok(())
}

/// A well-formed digest: `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl CheckRequest {
    /// Checks every field and the digest; returns the digest and the call.
    pub fn validate(&self, max_ttl_seconds: u64) -> Result<(String, Call), Invalid> {
        if !valid_digest(&self.digest) {
            return Err(Invalid::Field(
                "digest must be sha256: and 64 lowercase hex digits".into(),
            ));
        }
        text_field("grant", &self.grant, MAX_GRANT, true)?;
        if let Some(caller) = &self.caller {
            text_field("caller", caller, MAX_CALLER, true)?;
        }
        if !matches!(self.target.kind.as_str(), "tool" | "prompt" | "resource") {
            return Err(Invalid::Field(
                "target.kind must be tool, prompt or resource".into(),
            ));
        }
        text_field("target.name", &self.target.name, MAX_TARGET_NAME, true)?;
        text_field("rule", &self.rule, MAX_RULE, true)?;
        if let Some(reason) = &self.reason {
            // Reasons may span lines; other control characters are refused.
            if reason.len() > MAX_REASON {
                return Err(Invalid::Field(format!(
                    "reason is longer than {MAX_REASON} bytes"
                )));
            }
            if reason.chars().any(|c| c.is_control() && c != '\n') {
                return Err(Invalid::Field("reason contains control characters".into()));
            }
        }
        text_field("policy_revision", &self.policy_revision, MAX_REVISION, true)?;
        if self.ttl_seconds == 0 || self.ttl_seconds > max_ttl_seconds {
            return Err(Invalid::Field(format!(
                "ttl_seconds must be 1 to {max_ttl_seconds}"
            )));
        }
        let arguments = canonical::canonicalize(self.arguments.get())
            .map_err(|err| Invalid::Field(format!("arguments: {err}")))?;
        let call = Call {
            grant: self.grant.clone(),
            caller: self.caller.clone(),
            target: self.target.clone(),
            arguments,
            rule: self.rule.clone(),
            reason: self.reason.clone(),
            ttl_seconds: self.ttl_seconds,
            separate_approver: self.separate_approver,
            policy_revision: self.policy_revision.clone(),
        };
        let expected = call.digest();
        if expected != self.digest {
            return Err(Invalid::DigestMismatch { expected });
        }
        Ok((expected, call))
    }
}

impl Call {
    pub fn digest_input(&self) -> DigestInput<'_> {
        DigestInput {
            arguments: &self.arguments,
            caller: self.caller.as_deref(),
            grant: &self.grant,
            policy_revision: &self.policy_revision,
            reason: self.reason.as_deref(),
            rule: &self.rule,
            separate_approver: self.separate_approver,
            target_kind: &self.target.kind,
            target_name: &self.target.name,
            ttl_seconds: self.ttl_seconds,
        }
    }

    pub fn digest(&self) -> String {
        canonical::digest(&self.digest_input())
    }

    /// The small part kept in the history after the approval is gone.
    pub fn summary(&self) -> Summary {
        Summary {
            grant: self.grant.clone(),
            caller: self.caller.clone(),
            target: self.target.clone(),
            rule: self.rule.clone(),
        }
    }

    /// Whether `approver` is the caller of this call for `separate_approver`:
    /// equal to its `caller` or its `grant`, ignoring ASCII case and
    /// surrounding whitespace.
    pub fn is_own_call(&self, approver: &str) -> bool {
        let approver = normalize_identity(approver);
        normalize_identity(&self.grant) == approver
            || self
                .caller
                .as_deref()
                .is_some_and(|caller| normalize_identity(caller) == approver)
    }
}

pub fn normalize_identity(identity: &str) -> String {
    identity.trim().to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub grant: String,
    pub caller: Option<String>,
    pub target: Target,
    pub rule: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for an approver until `expires_ms`.
    Pending,
    /// Approved; the next check of its digest before `expires_ms` uses it.
    Approved,
    /// Denied; checks of its digest are told so until `expires_ms`.
    Denied,
    /// Approved and used by one check.
    Used,
    /// Expired while pending.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Used => "used",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "used" => Status::Used,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// One approval, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub digest: String,
    pub call: Call,
    pub status: Status,
    pub created_ms: u64,
    /// Pending: when it lapses. Approved: until when it can be used.
    /// Denied: until when checks are told so.
    pub expires_ms: u64,
    pub approver: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_ms: Option<u64>,
    pub used_ms: Option<u64>,
}

impl Approval {
    /// Its status at `now`: a pending or approved (unused) approval past its
    /// expiry is expired, even before a store has pruned it.
    pub fn status_at(&self, now: u64) -> Status {
        if matches!(self.status, Status::Pending | Status::Approved) && self.expires_ms <= now {
            Status::Expired
        } else {
            self.status
        }
    }
}

/// What a check found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An approval existed and is now used (this is its one use).
    Approved,
    Denied,
    /// Waiting; `created` when this check made it.
    Pending {
        created: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub answer: Answer,
    pub id: String,
    pub expires_ms: u64,
    pub approver: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_ms: Option<u64>,
    /// The store's clock when it answered.
    pub now_ms: u64,
}

/// A decision an approver makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn status(self) -> Status {
        match self {
            Verdict::Approve => Status::Approved,
            Verdict::Deny => Status::Denied,
        }
    }
}

/// One line of the decision history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: String,
    /// approved, denied, used or expired.
    pub event: String,
    pub at_ms: u64,
    #[serde(default)]
    pub approver: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub summary: Summary,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    /// A valid check body for `arguments`, its digest computed.
    pub fn check_body(arguments: &str, grant: &str, separate: bool) -> String {
        let call = Call {
            grant: grant.into(),
            caller: Some(format!("{grant}@example.com")),
            target: Target {
                kind: "tool".into(),
                name: "asyncExecuteCode".into(),
            },
            arguments: canonical::canonicalize(arguments).unwrap(),
            rule: "/tools/asyncExecuteCode/approve_if/0".into(),
            reason: Some("risky".into()),
            ttl_seconds: 60,
            separate_approver: separate,
            policy_revision: "r1".into(),
        };
        serde_json::json!({
            "digest": call.digest(),
            "grant": call.grant,
            "caller": call.caller,
            "target": call.target,
            "arguments": serde_json::from_str::<serde_json::Value>(arguments).unwrap(),
            "rule": call.rule,
            "reason": call.reason,
            "ttl_seconds": call.ttl_seconds,
            "separate_approver": call.separate_approver,
            "policy_revision": call.policy_revision,
        })
        .to_string()
    }

    fn parse(body: &str) -> Result<(String, Call), Invalid> {
        serde_json::from_str::<CheckRequest>(body)
            .unwrap()
            .validate(86_400)
    }

    #[test]
    fn a_valid_check_passes_and_its_digest_is_recomputed() {
        let body = check_body(r#"{"code":"print(1)","n":1.0}"#, "alice", false);
        let (digest, call) = parse(&body).unwrap();
        assert_eq!(call.arguments, r#"{"code":"print(1)","n":1}"#);
        // Pinned: the filter computes the same value for this call
        // (src/approval/canonical.rs pins its digests the same way).
        assert_eq!(
            digest,
            "sha256:c419bc628d9eb1a26df701802f01582308e62f53f4f8e3299ec58c2ea738c509"
        );
        assert_eq!(digest, call.digest());
    }

    #[test]
    fn every_field_is_covered_by_the_digest() {
        let body = check_body(r#"{"code":"print(1)"}"#, "alice", false);
        let original: serde_json::Value = serde_json::from_str(&body).unwrap();
        for (pointer, value) in [
            ("/grant", serde_json::json!("bob")),
            ("/caller", serde_json::json!("bob@example.com")),
            ("/target/kind", serde_json::json!("prompt")),
            ("/target/name", serde_json::json!("other")),
            ("/arguments/code", serde_json::json!("print(2)")),
            ("/rule", serde_json::json!("/tools/x/approve")),
            ("/reason", serde_json::json!("other")),
            ("/ttl_seconds", serde_json::json!(61)),
            ("/separate_approver", serde_json::json!(true)),
            ("/policy_revision", serde_json::json!("r2")),
        ] {
            let mut changed = original.clone();
            *changed.pointer_mut(pointer).unwrap() = value;
            let err = parse(&changed.to_string()).unwrap_err();
            assert!(
                matches!(err, Invalid::DigestMismatch { .. }),
                "{pointer}: {err}"
            );
        }
    }

    #[test]
    fn bad_fields_are_refused() {
        let body = check_body(r#"{"code":"x"}"#, "alice", false);
        let original: serde_json::Value = serde_json::from_str(&body).unwrap();
        for (pointer, value) in [
            ("/digest", serde_json::json!("sha256:00")),
            ("/digest", serde_json::json!("md5:00")),
            ("/grant", serde_json::json!("")),
            ("/grant", serde_json::json!("a".repeat(MAX_GRANT + 1))),
            ("/grant", serde_json::json!("a\u{0}b")),
            ("/target/kind", serde_json::json!("sampling")),
            ("/target/name", serde_json::json!("")),
            ("/rule", serde_json::json!("")),
            ("/reason", serde_json::json!("a\u{1b}[31m")),
            ("/ttl_seconds", serde_json::json!(0)),
            ("/ttl_seconds", serde_json::json!(86_401)),
            ("/policy_revision", serde_json::json!("")),
        ] {
            let mut changed = original.clone();
            *changed.pointer_mut(pointer).unwrap() = value.clone();
            let err = parse(&changed.to_string()).unwrap_err();
            assert!(matches!(err, Invalid::Field(_)), "{pointer}={value}: {err}");
        }
        // Unknown fields are refused: they would not be covered by the digest.
        let mut extra = original.clone();
        extra["session"] = serde_json::json!("abc");
        assert!(serde_json::from_str::<CheckRequest>(&extra.to_string()).is_err());
        // Duplicate keys in the arguments are refused.
        let duplicate = body.replace(
            r#""arguments":{"code":"x"}"#,
            r#""arguments":{"code":"x","code":"y"}"#,
        );
        assert_ne!(duplicate, body);
        let err = parse(&duplicate).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn own_calls_compare_caller_and_grant_ignoring_case() {
        let (_, call) = parse(&check_body("{}", "Alice", true)).unwrap();
        assert!(call.is_own_call("alice"));
        assert!(call.is_own_call(" ALICE@example.com "));
        assert!(!call.is_own_call("bob"));
        assert!(!call.is_own_call("alice@example.org"));
    }
}
