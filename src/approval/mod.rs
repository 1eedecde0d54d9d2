//! Require approval: a person approves the exact call before it reaches the
//! server (`"action": "approve"`, `approve_if`). Host-free pieces the gate
//! and the exchange use:
//!
//! - [`check_request`]: the approval service's `POST /v1/check` body and the
//!   call's digest (approval-service/README.md, "Filter protocol"), computed
//!   with [`canonical`], a copy of the service's reference code;
//! - [`verdict`]: the service's answer read into what the gate does;
//! - the gate's own `requestState` for MCP 2026-07-28 retries
//!   ([`gate_state`], [`verify_gate_state`]) and [`strip_retry_members`],
//!   which takes the gate's `requestState` and `inputResponses` out of a
//!   retry before the server sees it;
//! - which client can be shown a link in the protocol's own way
//!   ([`declares_url_elicitation`]).

pub mod canonical;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::policy::Approval;
use crate::response::Answering;
use crate::target::{Kind, Target};

/// The service's check path.
pub const CHECK_PATH: &str = "/v1/check";

/// Longest grant the service accepts as it is; longer ones (or ones with
/// control characters) are sent as their SHA-256, as the audit line writes them.
pub const MAX_GRANT_BYTES: usize = 256;

/// What a value sent or written as its digest starts with.
pub const DIGEST_PREFIX: &str = "sha256:";

/// How a pending approval reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAs {
    /// `-31004` "approval required", the link in `data` (every client).
    Error,
    /// MCP 2025-11-25, URL elicitation declared in the session's
    /// `initialize`: the URL-elicitation-required error `-32042`.
    UrlElicitationError,
    /// MCP 2026-07-28, URL elicitation declared in the request's `_meta`:
    /// an `InputRequiredResult` with a URL-mode `elicitation/create` and the
    /// gate's own `requestState`.
    InputRequired,
}

/// One held call the gate asks the approval service about, and what it
/// needs to answer the caller once the service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCheck {
    /// The `POST /v1/check` body.
    pub request: Vec<u8>,
    /// The call's digest (what the approval is bound to).
    pub digest: String,
    /// JSON pointer of what asked for approval.
    pub rule: String,
    /// The rule's approval reason, told to the agent too.
    pub reason: Option<String>,
    /// What the call takes once approved (local and global limits).
    pub charges: Vec<crate::ratelimit::HeldCharge>,
    /// The request's id.
    pub id: Value,
    /// What the call uses.
    pub target: Target<'static>,
    /// For a meta-tool's call, the tool it runs (what limit refusals name).
    pub invoked: Option<crate::target::Invoked>,
    pub answering: Answering,
    pub pending_as: PendingAs,
}

/// What the approval service said about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approved: this check used the approval; forward the call now.
    Approved {
        id: String,
        approver: Option<String>,
    },
    /// Denied by a person, with their reason.
    Denied {
        id: String,
        approver: Option<String>,
        reason: Option<String>,
    },
    /// Waiting for a person at `url`.
    Pending {
        id: String,
        url: String,
        retry_after_seconds: u64,
        expires_at: Option<String>,
    },
    /// The service is up and refused the check (400, 413, 429): the call is
    /// refused, whatever `failure_mode` says.
    Refused {
        status: u16,
        error: String,
        message: String,
    },
    /// No usable answer (down, timed out, 503, unreadable): `failure_mode`.
    Unavailable(String),
}

/// The fields of a check that are not the call's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub grant: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    /// The raw JSON text of the call's `arguments` (`None`: absent, sent as null).
    pub arguments: Option<&'a str>,
    /// JSON pointer of what asked.
    pub rule: &'a str,
    pub approval: &'a Approval,
    pub policy_revision: &'a str,
}

/// A grant as the service takes it: as it is when short and free of
/// control characters, else `sha256:<hex>`. A grant that itself starts with
/// `sha256:` is sent as its digest too, so that no grant can be spelled as
/// another's digest and share its approvals.
pub fn grant_for_service(grant: &str) -> String {
    if grant.len() <= MAX_GRANT_BYTES
        && !grant.is_empty()
        && !grant.chars().any(char::is_control)
        && !grant.starts_with(DIGEST_PREFIX)
    {
        grant.to_string()
    } else {
        format!(
            "sha256:{}",
            canonical::hex(&Sha256::digest(grant.as_bytes()))
        )
    }
}

/// The check's body and the call's digest. `Err`: the arguments have no
/// canonical form (a key twice, a lone surrogate, nesting over 64), so no
/// approver could be shown what would run.
pub fn check_request(call: &Call<'_>) -> Result<(String, Vec<u8>), String> {
    let arguments = match call.arguments {
        Some(text) => canonical::canonicalize(text).map_err(|err| err.to_string())?,
        None => "null".to_string(),
    };
    let grant = grant_for_service(call.grant);
    let input = canonical::DigestInput {
        arguments: &arguments,
        caller: None,
        grant: &grant,
        policy_revision: call.policy_revision,
        reason: call.approval.reason.as_deref(),
        rule: call.rule,
        separate_approver: call.approval.separate_approver,
        target_kind: call.kind.as_str(),
        target_name: call.name,
        ttl_seconds: call.approval.ttl_seconds,
    };
    let digest = canonical::digest(&input);
    let mut body = String::with_capacity(arguments.len() + 512);
    let field = |body: &mut String, name: &str, value: &str| {
        canonical::write_string(name, body);
        body.push(':');
        canonical::write_string(value, body);
        body.push(',');
    };
    body.push('{');
    field(&mut body, "digest", &digest);
    field(&mut body, "grant", &grant);
    body.push_str("\"target\":{");
    field(&mut body, "kind", call.kind.as_str());
    canonical::write_string("name", &mut body);
    body.push(':');
    canonical::write_string(call.name, &mut body);
    body.push_str("},\"arguments\":");
    body.push_str(&arguments);
    body.push(',');
    field(&mut body, "rule", call.rule);
    if let Some(reason) = &call.approval.reason {
        field(&mut body, "reason", reason);
    }
    body.push_str(&format!(
        "\"ttl_seconds\":{},\"separate_approver\":{},",
        call.approval.ttl_seconds, call.approval.separate_approver
    ));
    canonical::write_string("policy_revision", &mut body);
    body.push(':');
    canonical::write_string(call.policy_revision, &mut body);
    body.push('}');
    Ok((digest, body.into_bytes()))
}

/// An approval id as the service makes them: 32 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads the service's answer: `status` is the HTTP status (`None`: no
/// answer at all: a reset, a refused connection), `body` its body.
pub fn verdict(status: Option<u16>, body: &[u8]) -> Verdict {
    // Read as a `Value` (already in the module for request bodies): typed
    // structs cost the module kilobytes of serde code for three fields.
    let text =
        |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let Some(status) = status else {
        return Verdict::Unavailable("no answer from the approval service".to_string());
    };
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200 => {}
        400 | 413 | 429 => {
            let answer = answer.unwrap_or_default();
            return Verdict::Refused {
                status,
                error: text(&answer, "error").unwrap_or_default(),
                message: text(&answer, "message").unwrap_or_default(),
            };
        }
        other => {
            return Verdict::Unavailable(format!("the approval service answered HTTP {other}"))
        }
    }
    let Some(answer) = answer.filter(Value::is_object) else {
        return Verdict::Unavailable(
            "the approval service's answer is not a JSON object".to_string(),
        );
    };
    let Some(id) = text(&answer, "id").filter(|id| valid_id(id)) else {
        return Verdict::Unavailable(
            "the approval service's answer has no valid approval id".to_string(),
        );
    };
    match text(&answer, "status").as_deref() {
        Some("approved") => Verdict::Approved {
            id,
            approver: text(&answer, "approver"),
        },
        Some("denied") => Verdict::Denied {
            id,
            approver: text(&answer, "approver"),
            reason: text(&answer, "reason"),
        },
        Some("pending") => Verdict::Pending {
            id,
            url: text(&answer, "url").unwrap_or_default(),
            retry_after_seconds: answer
                .get("retry_after_seconds")
                .and_then(Value::as_u64)
                .unwrap_or(5)
                .max(1),
            expires_at: text(&answer, "expires_at"),
        },
        other => Verdict::Unavailable(format!(
            "the approval service answered an unknown status {other:?}"
        )),
    }
}

/// The link a person opens to decide: `<public_url>/approvals/<id>` when
/// the policy names the page, else the service's own link (if it is an
/// http(s) URL).
pub fn approval_link(public_url: Option<&str>, id: &str, service_url: &str) -> Option<String> {
    match public_url {
        Some(base) => Some(format!("{base}/approvals/{id}")),
        None => {
            let http = service_url.starts_with("https://") || service_url.starts_with("http://");
            let clean = !service_url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
            (http && clean).then(|| service_url.to_string())
        }
    }
}

/// What every `requestState` the gate makes starts with. A server's own
/// states never reach this code path with it: such a state is the gate's, or
/// forged.
pub const STATE_PREFIX: &str = "mcp-policy-approval.";

/// The gate's `requestState` for a pending approval: the approval id and a
/// tag binding it to the call's digest (grant, target, arguments, rule,
/// policy revision). Stateless, so any replica can verify it; it carries no
/// authority (the approval service decides), it only lets the gate tell its
/// own retries from the server's.
pub fn gate_state(approval_id: &str, digest: &str) -> String {
    format!(
        "{STATE_PREFIX}{approval_id}.{}",
        state_tag(approval_id, digest)
    )
}

fn state_tag(approval_id: &str, digest: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"mcp-policy approval state v1\0");
    hasher.update(approval_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(digest.as_bytes());
    let hash = hasher.finalize();
    canonical::hex(&hash[..16])
}

/// Whether a `requestState` claims to be the gate's.
pub fn is_gate_state(state: &str) -> bool {
    state.starts_with(STATE_PREFIX)
}

/// The approval id of a gate-made `requestState` issued for the call with
/// this digest; `None` if it was not (forged, or another call's).
pub fn verify_gate_state<'s>(state: &'s str, digest: &str) -> Option<&'s str> {
    let (id, tag) = state.strip_prefix(STATE_PREFIX)?.split_once('.')?;
    (valid_id(id) && tag == state_tag(id, digest)).then_some(id)
}

/// Whether client capabilities (`initialize`'s `capabilities`, or a
/// 2026-07-28 request's `_meta` client capabilities) declare URL-mode
/// elicitation: `{"elicitation": {"url": {}}}` (`{"elicitation": {}}` is
/// form mode only).
pub fn declares_url_elicitation(capabilities: Option<&Value>) -> bool {
    capabilities
        .and_then(|capabilities| capabilities.get("elicitation"))
        .and_then(|elicitation| elicitation.get("url"))
        .is_some_and(Value::is_object)
}

/// Whether an `initialize` request body declares URL-mode elicitation.
pub fn initialize_declares_url_elicitation(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|message| {
            declares_url_elicitation(
                message
                    .get("params")
                    .and_then(|params| params.get("capabilities")),
            )
        })
}

/// The name of the gate's input request in an `InputRequiredResult`.
pub const INPUT_KEY: &str = "approval";

/// What a 2026-07-28 retry carries for the gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retry {
    /// `params.requestState`.
    pub request_state: Option<String>,
    /// `params.inputResponses.approval.action` (`accept`, `decline`, `cancel`).
    pub action: Option<String>,
    /// The request's `_meta` client capabilities declare URL elicitation.
    pub url_elicitation: bool,
}

/// Reads what the gate needs of a (validated) request body to answer a
/// pending approval.
pub fn retry_of(body: &[u8]) -> Retry {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return Retry::default();
    };
    let params = message.get("params");
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    Retry {
        request_state: text(params.and_then(|p| p.get("requestState"))),
        action: text(
            params
                .and_then(|p| p.get("inputResponses"))
                .and_then(|responses| responses.get(INPUT_KEY))
                .and_then(|response| response.get("action")),
        ),
        url_elicitation: declares_url_elicitation(
            params
                .and_then(|p| p.get("_meta"))
                .and_then(|meta| meta.get(crate::mcp::META_CLIENT_CAPABILITIES)),
        ),
    }
}

/// The body with `params.requestState` and `params.inputResponses` blanked
/// out with spaces (and the commas that separated them), byte for byte the
/// same length, so `content-length` stays true and every other byte reaches
/// the server as the caller sent it. `None`: nothing to remove, or a body
/// that is not a JSON object with an object `params`.
pub fn strip_retry_members(body: &[u8]) -> Option<Vec<u8>> {
    let mut scan = Scan { bytes: body, at: 0 };
    let top = scan.object_members()?;
    let params = top.members.iter().find(|member| member.key == "params")?;
    let mut inner = Scan {
        bytes: body,
        at: params.value_start,
    };
    let members = inner.object_members()?;
    let dropped: Vec<bool> = members
        .members
        .iter()
        .map(|member| member.key == "requestState" || member.key == "inputResponses")
        .collect();
    if !dropped.contains(&true) {
        return None;
    }
    let mut out = body.to_vec();
    let mut blank = |from: usize, to: usize| {
        for byte in out.iter_mut().take(to).skip(from) {
            *byte = b' ';
        }
    };
    for (member, drop) in members.members.iter().zip(&dropped) {
        if *drop {
            blank(member.start, member.end);
        }
    }
    // Comma `i` sits between members `i` and `i + 1`: it stays only before a
    // kept member that follows another kept member.
    for (index, comma) in members.commas.iter().enumerate() {
        let next_kept = !dropped.get(index + 1).copied().unwrap_or(true);
        let kept_before = dropped.iter().take(index + 1).any(|drop| !drop);
        if !(next_kept && kept_before) {
            blank(*comma, comma + 1);
        }
    }
    Some(out)
}

/// One member of an object: its decoded key, where it starts (the key's
/// quote) and ends (after its value), and where its value starts.
struct Member {
    key: String,
    start: usize,
    value_start: usize,
    end: usize,
}

struct Members {
    members: Vec<Member>,
    /// Positions of the commas between members.
    commas: Vec<usize>,
}

/// A scanner over JSON text the gate has already validated.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The members of the object starting here (after whitespace).
    fn object_members(&mut self) -> Option<Members> {
        self.whitespace();
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        let mut members = Members {
            members: Vec::new(),
            commas: Vec::new(),
        };
        self.whitespace();
        if self.peek()? == b'}' {
            return Some(members);
        }
        loop {
            self.whitespace();
            let start = self.at;
            self.string()?;
            let key: String = serde_json::from_slice(self.bytes.get(start..self.at)?).ok()?;
            self.whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.whitespace();
            let value_start = self.at;
            self.value()?;
            members.members.push(Member {
                key,
                start,
                value_start,
                end: self.at,
            });
            self.whitespace();
            match self.peek()? {
                b',' => {
                    members.commas.push(self.at);
                    self.at += 1;
                }
                b'}' => return Some(members),
                _ => return None,
            }
        }
    }

    fn string(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// Skips one value (nesting was bounded when the body was validated).
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while let Some(byte) = self.peek() {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
