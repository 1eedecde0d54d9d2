//! The audit line: one JSON object per decision, written to Envoy's log.
//! It names argument *keys* only; argument values never leave the request.

use std::time::Duration;

use crate::decision::Outcome;
use crate::response::{write_decimal, write_field, write_str};

/// One decision's record. Written by hand ([`AuditRecord::to_json`]), in
/// the order of these fields: serde_json's derived writer cost a tenth of an
/// allowed call's instructions (it looks at every byte of every string in
/// turn and formats the time through `fmt`). The tests hold the hand-written
/// bytes to what serde_json writes for the same record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct AuditRecord {
    /// When the decision was made, since the Unix epoch; written as RFC
    /// 3339, UTC, milliseconds.
    #[cfg_attr(test, serde(serialize_with = "tests::humantime_millis"))]
    pub time: Duration,
    pub grant: String,
    pub session: Option<String>,
    #[cfg_attr(test, serde(serialize_with = "tests::bounded_serde"))]
    pub method: Option<String>,
    /// What was decided: `tool`, `prompt`, `resource`, `task`.
    pub kind: Option<crate::target::Kind>,
    /// Its name (a resource's normalised URI).
    #[cfg_attr(test, serde(serialize_with = "tests::bounded_serde"))]
    pub target: Option<String>,
    /// The tool's name, for tools (as `target`; kept for readers of older lines).
    #[cfg_attr(test, serde(serialize_with = "tests::bounded_serde"))]
    pub tool: Option<String>,
    /// For a meta-tool: the tool it runs.
    #[cfg_attr(test, serde(serialize_with = "tests::bounded_serde"))]
    pub invokes: Option<String>,
    pub decision: Outcome,
    /// JSON pointer of the rule that decided, if one did.
    pub rule: Option<String>,
    pub argument_keys: Vec<String>,
    /// Keys past the first [`MAX_AUDIT_ARGUMENT_KEYS`], not written; left
    /// out when none.
    #[cfg_attr(test, serde(skip_serializing_if = "tests::is_zero"))]
    pub argument_keys_omitted: u64,
    /// What the call takes from limits with a cost of their own (`cost`,
    /// `cost_from`); left out when none.
    #[cfg_attr(test, serde(skip_serializing_if = "Vec::is_empty"))]
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
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub approval: Option<ApprovalRecord>,
}

/// What the audit line says of an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
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
            time: now,
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
            argument_keys_omitted: 0,
            costs: Vec::new(),
            enforced: true,
            status: None,
            duration_ms: None,
            approval: None,
            revision: None,
        }
    }

    /// Names what was decided (and the method that uses it, unless set).
    /// Kept whole (metrics look the policy's names up by it); a name over
    /// [`MAX_AUDIT_VALUE_LEN`] bytes (a long resource URI) is written as
    /// its SHA-256.
    pub fn set_target(&mut self, kind: crate::target::Kind, name: &str) {
        use crate::target::Kind;
        self.kind = Some(kind);
        if kind == Kind::Tool {
            self.tool = Some(name.to_string());
        }
        self.target = Some(name.to_string());
        if self.method.is_none() {
            self.method = match kind {
                Kind::Tool => Some(crate::mcp::methods::TOOLS_CALL.to_string()),
                Kind::Prompt => Some(crate::mcp::methods::PROMPTS_GET.to_string()),
                Kind::Resource => Some(crate::mcp::methods::RESOURCES_READ.to_string()),
                Kind::Task => None,
            };
        }
    }

    /// The call's argument keys: the first [`MAX_AUDIT_ARGUMENT_KEYS`],
    /// each bounded as other caller values are; how many more is counted.
    pub fn set_argument_keys(&mut self, mut keys: Vec<String>) {
        self.argument_keys_omitted = 0;
        if keys.len() > MAX_AUDIT_ARGUMENT_KEYS {
            self.argument_keys_omitted = (keys.len() - MAX_AUDIT_ARGUMENT_KEYS) as u64;
            keys.truncate(MAX_AUDIT_ARGUMENT_KEYS);
        }
        for key in &mut keys {
            if written_as_digest(key) {
                *key = bounded(key);
            }
        }
        self.argument_keys = keys;
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"{\"time\":\"");
        write_rfc3339_millis(&mut out, self.time);
        out.extend_from_slice(b"\",\"grant\":");
        write_str(&mut out, &self.grant);
        out.extend_from_slice(b",\"session\":");
        write_field(&mut out, self.session.as_deref().into());
        out.extend_from_slice(b",\"method\":");
        write_bounded(&mut out, self.method.as_deref());
        out.extend_from_slice(b",\"kind\":");
        write_field(&mut out, self.kind.map(crate::target::Kind::as_str).into());
        out.extend_from_slice(b",\"target\":");
        write_bounded(&mut out, self.target.as_deref());
        out.extend_from_slice(b",\"tool\":");
        write_bounded(&mut out, self.tool.as_deref());
        out.extend_from_slice(b",\"invokes\":");
        write_bounded(&mut out, self.invokes.as_deref());
        out.extend_from_slice(b",\"decision\":");
        write_str(&mut out, self.decision.as_str());
        out.extend_from_slice(b",\"rule\":");
        write_field(&mut out, self.rule.as_deref().into());
        out.extend_from_slice(b",\"argument_keys\":[");
        for (index, key) in self.argument_keys.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(&mut out, key);
        }
        out.push(b']');
        if self.argument_keys_omitted > 0 {
            out.extend_from_slice(b",\"argument_keys_omitted\":");
            write_decimal(&mut out, self.argument_keys_omitted);
        }
        if !self.costs.is_empty() {
            out.extend_from_slice(b",\"costs\":[");
            for (index, cost) in self.costs.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"counter\":");
                write_str(&mut out, &cost.counter);
                out.extend_from_slice(b",\"cost\":");
                write_decimal(&mut out, cost.cost);
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(if self.enforced {
            b",\"enforced\":true,\"status\":"
        } else {
            b",\"enforced\":false,\"status\":"
        });
        write_field(&mut out, self.status.map(u64::from).into());
        out.extend_from_slice(b",\"duration_ms\":");
        write_field(&mut out, self.duration_ms.into());
        out.extend_from_slice(b",\"revision\":");
        write_field(&mut out, self.revision.as_deref().into());
        if let Some(approval) = &self.approval {
            out.extend_from_slice(b",\"approval\":{\"status\":");
            write_str(&mut out, approval.status);
            out.extend_from_slice(b",\"id\":");
            write_field(&mut out, approval.id.as_deref().into());
            out.extend_from_slice(b",\"approver\":");
            write_field(&mut out, approval.approver.as_deref().into());
            out.push(b'}');
        }
        out.push(b'}');
        // Every piece written is UTF-8: the record's strings, escapes, digits.
        String::from_utf8(out).unwrap_or_else(|_| "{}".to_string())
    }

    /// The line as written to Envoy's log, prefixed so it can be grepped out of Envoy's output.
    pub fn to_log_line(&self) -> String {
        format!("{AUDIT_PREFIX}{}", self.to_json())
    }
}

/// `since_epoch` as RFC 3339 in UTC with milliseconds
/// (`2025-11-21T10:00:00.123Z`, the fraction cut, not rounded).
pub fn rfc3339_millis(since_epoch: Duration) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_millis(&mut out, since_epoch);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes [`rfc3339_millis`]: the civil date of the day number by Howard
/// Hinnant's `civil_from_days`, in 400-year eras (146 097 days each).
fn write_rfc3339_millis(out: &mut Vec<u8>, since_epoch: Duration) {
    let seconds = since_epoch.as_secs();
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    // Days since 0000-03-01, so that a leap day ends each year.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let of_era = shifted % 146_097;
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut digits = [0u8; 20];
    let year_digits = crate::ratelimit::decimal(year, &mut digits);
    for _ in year_digits.len()..4 {
        out.push(b'0');
    }
    out.extend_from_slice(year_digits);
    let two = |out: &mut Vec<u8>, separator: u8, value: u64| {
        out.push(separator);
        out.push(b'0' + (value / 10 % 10) as u8);
        out.push(b'0' + (value % 10) as u8);
    };
    two(out, b'-', month);
    two(out, b'-', day);
    two(out, b'T', of_day / 3_600);
    two(out, b':', of_day / 60 % 60);
    two(out, b':', of_day % 60);
    let millis = u64::from(since_epoch.subsec_millis());
    out.push(b'.');
    out.push(b'0' + (millis / 100) as u8);
    out.push(b'0' + (millis / 10 % 10) as u8);
    out.push(b'0' + (millis % 10) as u8);
    out.push(b'Z');
}

/// Units a call takes from one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct CostRecord {
    pub counter: String,
    pub cost: u64,
}

/// Longest grant or session value written as it is; longer ones (a header
/// may hold up to Envoy's header limit) are written as their SHA-256.
pub const MAX_AUDIT_VALUE_LEN: usize = 256;

/// A caller's value, or null, as the line writes it ([`bounded`]).
fn write_bounded(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) if written_as_digest(value) => write_str(out, &bounded(value)),
        value => write_field(out, value.into()),
    }
}

/// Argument keys written in an audit line; the rest are counted.
pub const MAX_AUDIT_ARGUMENT_KEYS: usize = 64;

fn written_as_digest(value: &str) -> bool {
    value.len() > MAX_AUDIT_VALUE_LEN || value.starts_with(crate::approval::DIGEST_PREFIX)
}

/// A caller's value for the audit line: as it is if short, else `sha256:<hex>`
/// (a value that starts with `sha256:` too, so that a line's reader never
/// takes a value for another's digest).
pub fn bounded(value: &str) -> String {
    if !written_as_digest(value) {
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

    pub(super) fn is_zero(number: &u64) -> bool {
        *number == 0
    }

    pub(super) fn bounded_serde<S: serde::Serializer>(
        value: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::Serialize;
        value.as_deref().map(bounded).serialize(serializer)
    }

    /// What a caller writes into a request reaches the line bounded: 64
    /// argument keys at most (the rest counted), each value over 256 bytes
    /// as its SHA-256.
    #[test]
    fn caller_values_are_bounded() {
        let mut record = AuditRecord::new(Duration::ZERO, "alice", None, Outcome::Denied);
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        record.set_argument_keys(keys);
        record.set_target(
            crate::target::Kind::Resource,
            &format!("file:///{}", "a".repeat(10_000)),
        );
        let mut long_key = vec!["x".repeat(1_000)];
        long_key.push("short".to_string());
        let line = record.to_json();
        assert!(line.len() < 2_000, "{}", line.len());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["argument_keys"].as_array().unwrap().len(), 64);
        assert_eq!(json["argument_keys_omitted"], 20_000 - 64);
        assert!(json["target"].as_str().unwrap().starts_with("sha256:"));
        record.set_argument_keys(long_key);
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert!(json["argument_keys"][0]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert_eq!(json["argument_keys"][1], "short");
    }

    /// A value spelled as a digest is written as its own digest, so that it
    /// never reads as the digest of a long value.
    #[test]
    fn no_value_reads_as_another_values_digest() {
        let long = "a".repeat(MAX_AUDIT_VALUE_LEN + 1);
        let digest = bounded(&long);
        assert!(digest.starts_with("sha256:"));
        let mut record = AuditRecord::new(Duration::ZERO, &digest, None, Outcome::Denied);
        record.set_target(crate::target::Kind::Tool, &digest);
        record.set_argument_keys(vec![digest.clone()]);
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        for written in [&json["grant"], &json["target"], &json["argument_keys"][0]] {
            let written = written.as_str().unwrap();
            assert!(
                written.starts_with("sha256:") && written != digest,
                "{written}"
            );
        }
    }

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

    /// The record's form, pinned: the order of its members is what readers
    /// of the lines see (the comparison with serde_json below would follow
    /// a reordered struct).
    #[test]
    fn the_record_is_written_in_its_documented_form() {
        let mut record = AuditRecord::new(
            Duration::from_millis(1_763_719_050_120),
            "alice",
            Some("3ead"),
            Outcome::RateLimited,
        );
        record.set_target(crate::target::Kind::Tool, "asyncExecuteCode");
        record.rule = Some("/tools/asyncExecuteCode/limits/0".to_string());
        record.argument_keys = vec!["script".to_string(), "timeout".to_string()];
        record.costs = vec![CostRecord {
            counter: "rows".to_string(),
            cost: 4000,
        }];
        record.status = Some(200);
        record.duration_ms = Some(3);
        record.revision = Some("697bda2df09ddb33".to_string());
        record.approval = Some(ApprovalRecord::new(
            "approved",
            Some("3f0c".to_string()),
            None,
        ));
        assert_eq!(
            record.to_json(),
            concat!(
                r#"{"time":"2025-11-21T09:57:30.120Z","grant":"alice","session":"3ead","#,
                r#""method":"tools/call","kind":"tool","target":"asyncExecuteCode","#,
                r#""tool":"asyncExecuteCode","invokes":null,"decision":"rate_limited","#,
                r#""rule":"/tools/asyncExecuteCode/limits/0","argument_keys":["script","timeout"],"#,
                r#""costs":[{"counter":"rows","cost":4000}],"enforced":true,"status":200,"#,
                r#""duration_ms":3,"revision":"697bda2df09ddb33","#,
                r#""approval":{"status":"approved","id":"3f0c","approver":null}}"#
            )
        );
    }

    /// The oracle: humantime's RFC 3339 with milliseconds, as the record's
    /// time was written before it was written by hand.
    pub(super) fn humantime_millis<S: serde::Serializer>(
        time: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let time = std::time::UNIX_EPOCH + *time;
        serializer.serialize_str(&humantime::format_rfc3339_millis(time).to_string())
    }

    /// Seconds of days that try the calendar: the epoch, leap days (2000 is
    /// a leap year, 2100 is not), the ends of months and years, the last
    /// second humantime writes (9999-12-31T23:59:59), and a spread between.
    fn times() -> Vec<Duration> {
        let mut seconds = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,   // 2000-02-29
            951_868_800,   // 2000-03-01
            1_709_164_800, // 2024-02-29
            1_735_689_599, // 2024-12-31T23:59:59
            4_107_542_400, // 2100-03-01
            4_107_456_000, // 2100-02-28
            253_402_300_799,
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            seconds.push((state >> 11) % 253_402_300_800);
        }
        let mut times = Vec::new();
        for (index, second) in seconds.into_iter().enumerate() {
            let nanos = [0, 1, 999_999, 1_000_000, 123_456_789, 999_999_999][index % 6];
            times.push(Duration::new(second, nanos));
        }
        times
    }

    #[test]
    fn time_is_written_as_humantime_writes_it() {
        for time in times() {
            let expected =
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + time).to_string();
            assert_eq!(rfc3339_millis(time), expected, "{time:?}");
        }
    }

    /// Every field's every shape (absent, present, texts that need escapes,
    /// the largest numbers), each record written by hand and by serde_json:
    /// the same bytes.
    #[test]
    fn every_record_is_written_as_serde_json_writes_it() {
        let texts = [
            "",
            "alice",
            "a \"quoted\" name",
            "back\\slash",
            "line\nbreak\ttab\u{0}nul\u{1f}",
            "\u{2028}\u{2029} \u{1F600} é",
            "/tools/x~1y/limits/0",
        ];
        let long = "x".repeat(300);
        let times = times();
        let mut written = 0;
        for (index, text) in texts.iter().chain([&long.as_str()]).enumerate() {
            for outcome in Outcome::ALL {
                for variant in 0..4 {
                    let other = texts[(index + variant + 1) % texts.len()];
                    let mut record = AuditRecord::new(
                        times[(index * 31 + variant) % times.len()],
                        text,
                        (variant % 2 == 0).then_some(other),
                        outcome,
                    );
                    if variant > 0 {
                        let kind = crate::target::Kind::ALL[(index + variant) % 4];
                        record.set_target(kind, other);
                        record.invokes = (variant == 2).then(|| text.to_string());
                        record.rule = Some(other.to_string());
                        record.argument_keys =
                            texts[..variant * 2].iter().map(|t| t.to_string()).collect();
                        record.argument_keys_omitted = (variant == 3) as u64 * 7;
                    }
                    if variant == 3 {
                        record.costs = vec![
                            CostRecord {
                                counter: text.to_string(),
                                cost: 0,
                            },
                            CostRecord {
                                counter: other.to_string(),
                                cost: u64::MAX,
                            },
                        ];
                        record.approval = Some(ApprovalRecord::new(
                            "approved",
                            Some(text.to_string()),
                            None,
                        ));
                    }
                    if variant == 1 {
                        record.approval = Some(ApprovalRecord::new(
                            "pending",
                            None,
                            Some(other.to_string()),
                        ));
                    }
                    record.enforced = variant != 2;
                    record.status = [None, Some(200), Some(0), Some(u16::MAX)][variant];
                    record.duration_ms = [None, Some(0), Some(3), Some(u64::MAX)][variant];
                    record.revision = (variant > 1).then(|| "697bda2df09ddb33".to_string());
                    let expected = serde_json::to_string(&record).unwrap();
                    assert_eq!(record.to_json(), expected);
                    written += 1;
                }
            }
        }
        assert!(written > 250, "{written} records");
    }
}
