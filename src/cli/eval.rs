//! `mcp-policy eval`: one request body through the filter's request path
//! ([`gate::inspect_body`]) with fresh in-memory counters and the real clock.

use std::fmt::Write as _;

use super::store::{MemorySharedData, SystemClock};
use crate::decision::Outcome;
use crate::gate::{self, Inspection};
use crate::host::Clock as _;
use crate::policy::{Mode, Policy};
use crate::ratelimit::CallerScope;
use crate::response::CONTENT_TYPE;

/// The headers a client of a protocol revision sends with a body: the
/// version, and from 2026-07-28 the method and name the body holds.
#[derive(Debug, Default)]
pub struct Mirrored {
    version: String,
    method: Option<String>,
    name: Option<String>,
}

impl Mirrored {
    pub fn of(version: &str, body: &[u8]) -> Mirrored {
        let mut mirrored = Mirrored {
            version: version.to_string(),
            ..Mirrored::default()
        };
        if gate::is_current(version) {
            use crate::mcp::methods::{NAMED_BY_NAME, NAMED_BY_TASK_ID, NAMED_BY_URI};
            if let Ok(message) = serde_json::from_slice::<serde_json::Value>(body) {
                let method = message["method"].as_str();
                mirrored.method = method.map(str::to_string);
                // `Mcp-Name` as the gate requires it, by the method's group.
                let member = match method {
                    Some(m) if m == crate::mcp::TOOLS_CALL || NAMED_BY_NAME.contains(&m) => {
                        Some("name")
                    }
                    Some(m) if NAMED_BY_URI.contains(&m) => Some("uri"),
                    Some(m) if NAMED_BY_TASK_ID.contains(&m) => Some("taskId"),
                    _ => None,
                };
                mirrored.name = member
                    .and_then(|member| message["params"][member].as_str())
                    .map(str::to_string);
            }
        }
        mirrored
    }

    fn headers(&self) -> gate::McpHeaders<'_> {
        gate::McpHeaders {
            method: self.method.as_deref(),
            name: self.name.as_deref(),
            protocol_version: Some(&self.version),
            session: None,
        }
    }
}

/// Decides `body` `calls` times in a row against the same counters (they
/// start empty) and describes the last decision; earlier ones are listed
/// by outcome. Each call's id is released before the next sends it again,
/// but its concurrency slots are not: the calls are as many calls in
/// flight at once, so `--calls` shows a `concurrent` cap's answer too.
pub fn eval(
    policy: &Policy,
    body: &[u8],
    caller: CallerScope<'_>,
    calls: u32,
    mirrored: Option<&Mirrored>,
) -> String {
    let store = MemorySharedData::default();
    let headers = mirrored.map(Mirrored::headers).unwrap_or_default();
    // Writing to a String cannot fail: the `fmt::Result` is dropped.
    let mut out = String::new();
    let mut last = None;
    for call in 1..=calls.max(1) {
        // The filter counts the body's bytes as they arrive and answers 413
        // once they pass max_body_bytes, before the body is read.
        let inspection = if body.len() as u64 > policy.max_body_bytes {
            gate::body_too_large(policy, &SystemClock, caller)
        } else {
            gate::inspect_request(policy, &store, &SystemClock, caller, headers, body)
        };
        // Each call answered before the next (which sends its id again).
        inspection.answered(&store, SystemClock.unix_time().as_secs());
        if calls > 1 {
            let outcome = inspection
                .outcome()
                .map_or("not decided", |outcome| outcome.as_str());
            let _ = writeln!(out, "call {call:<5} {outcome}");
        }
        last = Some(inspection);
    }
    if let Some(inspection) = last {
        if calls > 1 {
            out.push('\n');
        }
        out.push_str(&describe(policy, &inspection));
    }
    out
}

/// The decision, the rule, the audit line and the answer, one per line.
fn describe(policy: &Policy, inspection: &Inspection) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    match &inspection.audit {
        Some(audit) => {
            lines.push(("decision", audit.decision.as_str().to_string()));
            lines.push((
                "rule",
                audit.rule.clone().unwrap_or_else(|| "(none)".to_string()),
            ));
            // The filter writes the revision when the stream ends; so here.
            let mut audit = audit.clone();
            // As the filter exports it.
            audit.revision = Some(crate::metrics::exported_revision(&policy.revision));
            lines.push(("audit", audit.to_json()));
        }
        None => {
            lines.push((
                "decision",
                "(none: the gate passes this method through undecided)".to_string(),
            ));
            lines.push((
                "audit",
                "(none: the filter logs no line for it)".to_string(),
            ));
        }
    }
    for reservation in &inspection.reservations {
        lines.push(("counted", reservation.key().to_string()));
    }
    if let Some(check) = &inspection.approval {
        // The approval service is not asked here: say what would be.
        let cluster = policy
            .approval_service
            .as_ref()
            .map_or("", |service| service.cluster.as_str());
        lines.push((
            "approval",
            format!(
                "needed ({}): the filter holds the call and asks the approval service (cluster {cluster}) about digest {}",
                check.rule, check.digest
            ),
        ));
        lines.push((
            "answer",
            "until a person approves it: -31004 with the link (-32042 or an input_required result where the client declared URL elicitation); once approved: forwarded, then the limits".to_string(),
        ));
        return lines
            .iter()
            .map(|(label, value)| format!("{label:<10}{value}\n"))
            .collect();
    }
    match &inspection.reply {
        Some(reply) => {
            lines.push((
                "answer",
                format!("HTTP {}, content-type: {CONTENT_TYPE}", reply.status),
            ));
            lines.push(("body", String::from_utf8_lossy(&reply.body).into_owned()));
        }
        None => {
            let mut answer = "forwarded unchanged".to_string();
            let refused = inspection
                .outcome()
                .is_some_and(|outcome| outcome != Outcome::Allowed);
            if refused && policy.mode == Mode::Monitor {
                answer.push_str(" (mode monitor: the decision is logged, not enforced)");
            } else if refused {
                answer.push_str(" (failure_mode open: the gate could not decide)");
            }
            if inspection.filter_listing.is_some() {
                answer.push_str(
                    "; the listing answer is rewritten to leave out what this grant may not see",
                );
            }
            lines.push(("answer", answer));
        }
    }
    lines
        .iter()
        .map(|(label, value)| format!("{label:<10}{value}\n"))
        .collect()
}
