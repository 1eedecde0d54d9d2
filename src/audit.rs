//! The audit line: one JSON object per decision, written to Envoy's log.
//! It names argument *keys* only; argument values never leave the request.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::decision::Outcome;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub grant: String,
    pub session: Option<String>,
    pub method: Option<String>,
    /// What was decided: `tool`, `prompt`, `resource`, `task`.
    pub kind: Option<crate::target::Kind>,
    /// Its name (a resource's normalised URI).
    pub target: Option<String>,
    /// The tool's name, for tools (as `target`; kept for readers of older lines).
    pub tool: Option<String>,
    /// For a meta-tool: the tool it runs.
    pub invokes: Option<String>,
    pub decision: Outcome,
    /// JSON pointer of the rule that decided, if one did.
    pub rule: Option<String>,
    pub argument_keys: Vec<String>,
    /// What the call takes from limits with a cost of their own (`cost`,
    /// `cost_from`); left out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<CostRecord>,
    /// `false` in monitor mode: the decision was logged, not applied.
    pub enforced: bool,
    /// The HTTP status the caller got (from the upstream, or from the gate),
    /// known at the end of the stream.
    pub status: Option<u16>,
    /// Milliseconds from the request headers to the end of the stream.
    pub duration_ms: Option<u64>,
    /// The policy's revision (`mcp_policy_info{revision}`), known at the end
    /// of the stream.
    pub revision: Option<String>,
    /// For a call that needed a person's approval: the approval and its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
}

/// What the audit line says of an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRecord {
    /// `approved` (used by this call), `denied`, `pending`, `refused` (the
    /// service refused the check), `unavailable` (the service failed).
    pub status: &'static str,
    /// The approval service's id of the approval.
    pub id: Option<String>,
    /// Who approved or denied it.
    pub approver: Option<String>,
}

impl ApprovalRecord {
    pub fn new(status: &'static str, id: Option<String>, approver: Option<String>) -> Self {
        ApprovalRecord {
            status,
            id,
            approver: approver.map(|approver| bounded(&approver)),
        }
    }
}

impl AuditRecord {
    pub fn new(now: Duration, grant: &str, session: Option<&str>, outcome: Outcome) -> Self {
        AuditRecord {
            time: humantime::format_rfc3339_millis(UNIX_EPOCH + now).to_string(),
            grant: bounded(grant),
            session: session.map(bounded),
            method: None,
            kind: None,
            target: None,
            tool: None,
            invokes: None,
            decision: outcome,
            rule: None,
            argument_keys: Vec::new(),
            costs: Vec::new(),
            enforced: true,
            status: None,
            duration_ms: None,
            approval: None,
            revision: None,
        }
    }

    /// Names what was decided (and the method that uses it, unless set).
    pub fn set_target(&mut self, kind: crate::target::Kind, name: &str) {
        use crate::target::Kind;
        self.kind = Some(kind);
        self.target = Some(name.to_string());
        if kind == Kind::Tool {
            self.tool = Some(name.to_string());
        }
        if self.method.is_none() {
            self.method = match kind {
                Kind::Tool => Some(crate::mcp::methods::TOOLS_CALL.to_string()),
                Kind::Prompt => Some(crate::mcp::methods::PROMPTS_GET.to_string()),
                Kind::Resource => Some(crate::mcp::methods::RESOURCES_READ.to_string()),
                Kind::Task => None,
            };
        }
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// The line as written to Envoy's log, prefixed so it can be grepped out of Envoy's output.
    pub fn to_log_line(&self) -> String {
        format!("{AUDIT_PREFIX}{}", self.to_json())
    }
}

/// Units a call takes from one counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostRecord {
    pub counter: String,
    pub cost: u64,
}

/// Longest grant or session value written as it is; longer ones (a header
/// may hold up to Envoy's header limit) are written as their SHA-256.
pub const MAX_AUDIT_VALUE_LEN: usize = 256;

/// A caller's value for the audit line: as it is if short, else `sha256:<hex>`.
pub fn bounded(value: &str) -> String {
    if value.len() <= MAX_AUDIT_VALUE_LEN {
        value.to_string()
    } else {
        format!("sha256:{}", crate::policy::sha256_hex(value.as_bytes()))
    }
}

/// Every audit line starts with this.
pub const AUDIT_PREFIX: &str = "mcp-policy audit ";

/// The filter state that holds the record as JSON at the end of the stream,
/// for Envoy's access log: `%FILTER_STATE(wasm.mcp_policy.audit:PLAIN)%`.
pub const AUDIT_FILTER_STATE: &str = "mcp_policy.audit";

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn audit_line_has_time_and_never_values() {
        let mut record = AuditRecord::new(
            Duration::from_millis(1_763_719_200_123),
            "alice",
            Some("s-1"),
            Outcome::Denied,
        );
        record.tool = Some("asyncExecuteCode".to_string());
        record.argument_keys = vec!["script".to_string()];
        let line = record.to_log_line();
        let json: serde_json::Value =
            serde_json::from_str(line.strip_prefix(AUDIT_PREFIX).unwrap()).unwrap();
        assert_eq!(json["time"], "2025-11-21T10:00:00.123Z");
        assert_eq!(json["decision"], "denied");
        assert_eq!(json["argument_keys"], serde_json::json!(["script"]));
        assert_eq!(json["session"], "s-1");
    }
}
