//! The approvers' pages: plain server-rendered HTML, no script at all (the
//! list refreshes itself with a meta refresh), readable on a phone.
//!
//! Everything from a call is escaped, and characters that can make text
//! read differently than it runs (controls, bidirectional overrides,
//! zero-width characters) are shown as visible `⟨U+202E⟩` marks.

use std::fmt::Write as _;

use crate::canonical::{self, Json};
use crate::clock::{relative, rfc3339};
use crate::model::{Approval, HistoryEntry, Status};

/// HTML-escapes text (for element content and quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters shown as marks instead of themselves.
fn suspicious(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators: line
                                      // breaks to JavaScript, spaces on the page
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators,
                                      // bidi isolates, deprecated formats
            | '\u{061C}'              // Arabic letter mark
            | '\u{FEFF}'              // BOM / zero-width no-break space
            | '\u{00AD}'              // soft hyphen
            | '\u{034F}'              // combining grapheme joiner
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}' // Mongolian variation selectors, vowel separator
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FFF0}'..='\u{FFFB}' // interlinear annotation, unassigned specials
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical format controls
            | '\u{E0000}'..='\u{E0FFF}' // tags (hidden ASCII), variation selectors
        )
}

/// Escapes text and marks suspicious characters visibly.
pub fn show(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if suspicious(c) {
            let _ = write!(out, "<span class=\"mark\">⟨U+{:04X}⟩</span>", c as u32);
        } else {
            out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4;line-height:1.45}\
header{background:#23303d;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}\
header a{color:#fff}header .who{margin-left:auto;font-size:.9rem}\
header form{display:inline}header button{font-size:.8rem;padding:.2rem .5rem}\
main{max-width:56rem;margin:0 auto;padding:1rem}\
h1{font-size:1.3rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}\
.card{background:#fff;border:1px solid #d9d9d4;border-radius:8px;padding:.8rem 1rem;margin:0 0 .8rem}\
.card h2{margin:0 0 .3rem}\
.meta{color:#555;font-size:.9rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem .8rem;margin:0}\
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}\
h3.arg{overflow-wrap:anywhere}h3.arg .type{font-weight:400;font-size:.8rem;color:#555;border:1px solid #bbb;border-radius:3px;padding:0 .3rem}\
pre{background:#f0f0ec;border:1px solid #ddd;border-radius:6px;padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.9rem;margin:.2rem 0 .6rem}\
.mark{background:#ffd54f;color:#000;border-radius:3px;padding:0 2px;font-weight:700}\
.status{display:inline-block;border-radius:4px;padding:0 .4rem;font-weight:600;font-size:.85rem}\
.pending{background:#fff3c4}.approved,.used{background:#d7f5dd}.denied{background:#fbd5d5}.expired{background:#e4e4e4}\
.flash{background:#e7f0ff;border:1px solid #9bb9f0;border-radius:6px;padding:.5rem .8rem;margin-bottom:1rem}\
.error{background:#fde8e8;border-color:#e59a9a}\
form.decide{display:flex;flex-direction:column;gap:.4rem;margin:.4rem 0 1rem}\
textarea,input[type=text],input[type=password]{font:inherit;padding:.5rem;border:1px solid #bbb;border-radius:6px;width:100%}\
button{font:inherit;padding:.6rem 1rem;border-radius:6px;border:1px solid #777;cursor:pointer;min-height:2.6rem}\
button.approve{background:#1f7a36;color:#fff;border-color:#1f7a36}\
button.deny{background:#b3261e;color:#fff;border-color:#b3261e}\
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #ddd;vertical-align:top}\
@media (max-width:40rem){table,tbody,tr,td{display:block}thead{display:none}tr{border-bottom:1px solid #ccc;padding:.4rem 0}td{border:0;padding:.1rem 0}td[data-label]:not(:empty)::before{content:attr(data-label) \": \";font-weight:600}}\
";

/// What every page needs to know about the request.
pub struct Frame<'a> {
    /// Path prefix of every link (the public URL's path, no trailing slash).
    pub base: &'a str,
    /// The signed-in approver, with a CSRF token for the logout form when
    /// they signed in with a token.
    pub approver: Option<&'a str>,
    pub logout_csrf: Option<&'a str>,
    pub pending: Option<usize>,
}

pub fn page(frame: &Frame<'_>, title: &str, refresh: Option<u32>, body: &str) -> String {
    let base = escape(frame.base);
    let mut out = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(seconds) = refresh {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    let _ = write!(
        out,
        "<title>{} · MCP approvals</title><style>{STYLE}</style></head><body><header>\
         <strong>MCP approvals</strong><a href=\"{base}/approvals\">Pending{}</a>\
         <a href=\"{base}/history\">History</a>",
        escape(title),
        frame.pending.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    if let Some(approver) = frame.approver {
        let _ = write!(
            out,
            "<span class=\"who\">signed in as <strong id=\"approver\">{}</strong></span>",
            escape(approver)
        );
        if let Some(csrf) = frame.logout_csrf {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"{base}/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
                escape(csrf)
            );
        }
    }
    let _ = write!(out, "</header><main>{body}</main></body></html>");
    out
}

fn status_badge(status: Status) -> String {
    format!("<span class=\"status {0}\">{0}</span>", status.as_str())
}

fn target_text(kind: &str, name: &str) -> String {
    format!("{} <strong>{}</strong>", escape(kind), show(name))
}

/// The list of pending approvals, newest first; refreshes every 5 seconds.
pub fn list(frame: &Frame<'_>, approvals: &[Approval], now: u64) -> String {
    let mut body = String::from("<h1>Waiting for approval</h1>");
    if approvals.is_empty() {
        body.push_str("<p id=\"empty\">Nothing is waiting. This page refreshes by itself.</p>");
    }
    for approval in approvals {
        let call = &approval.call;
        let _ = write!(
            body,
            "<div class=\"card approval\" id=\"a-{id}\"><h2><a href=\"{base}/approvals/{id}\">{target}</a></h2>\
             <div>called by <strong>{grant}</strong>{caller}</div>\
             <div class=\"meta\">{reason}asked {asked}, expires {expires}</div></div>",
            id = approval.id,
            base = escape(frame.base),
            target = target_text(&call.target.kind, &call.target.name),
            grant = show(&call.grant),
            caller = call
                .caller
                .as_deref()
                .map(|c| format!(" (for {})", show(c)))
                .unwrap_or_default(),
            reason = call
                .reason
                .as_deref()
                .map(|r| format!("{} · ", show(r)))
                .unwrap_or_default(),
            asked = relative(approval.created_ms, now),
            expires = relative(approval.expires_ms, now),
        );
    }
    page(frame, "Pending", Some(5), &body)
}

/// The arguments, one block per top-level member; strings as text (a
/// script's lines as lines), other values as indented JSON.
fn arguments_html(arguments: &str) -> String {
    let Ok(value) = canonical::parse(arguments) else {
        return format!("<pre>{}</pre>", show(arguments));
    };
    match &value {
        Json::Object(members) if !members.is_empty() => {
            let mut out = String::new();
            for (key, value) in members {
                // The type beside the name: the text "false" and the value
                // false read alike, and a tool may take either one's way.
                let kind = match value {
                    Json::String(_) => "text",
                    Json::Number(_) => "number",
                    Json::Bool(_) => "true or false",
                    Json::Null => "null",
                    Json::Array(_) => "list",
                    Json::Object(_) => "object",
                };
                let _ = write!(
                    out,
                    "<h3 class=\"arg\">{} <span class=\"type\">{kind}</span></h3>",
                    show(key)
                );
                match value {
                    Json::String(text) => {
                        let _ = write!(out, "<pre class=\"arg-value\">{}</pre>", show(text));
                    }
                    other => {
                        let _ = write!(
                            out,
                            "<pre class=\"arg-value\">{}</pre>",
                            show(&other.pretty())
                        );
                    }
                }
            }
            out
        }
        other => format!("<pre class=\"arg-value\">{}</pre>", show(&other.pretty())),
    }
}

/// What an approver may do on the detail page.
pub struct DetailActions<'a> {
    pub csrf: &'a str,
    /// Approving is refused: the approver is this call's caller.
    pub own_call: bool,
}

pub fn detail(
    frame: &Frame<'_>,
    approval: &Approval,
    now: u64,
    actions: Option<DetailActions<'_>>,
    flash: Option<(&str, bool)>,
) -> String {
    let call = &approval.call;
    let status = approval.status_at(now);
    let mut body = String::new();
    if let Some((text, error)) = flash {
        let _ = write!(
            body,
            "<div class=\"flash{}\" id=\"flash\">{}</div>",
            if error { " error" } else { "" },
            escape(text)
        );
    }
    let _ = write!(
        body,
        "<h1>{} {}</h1><div class=\"card\"><dl>\
         <dt>Caller</dt><dd id=\"grant\">{}{}</dd>\
         <dt>Calls</dt><dd id=\"target\">{}</dd>\
         <dt>Rule</dt><dd id=\"rule\"><code>{}</code></dd>",
        status_badge(status),
        target_text(&call.target.kind, &call.target.name),
        show(&call.grant),
        call.caller
            .as_deref()
            .map(|c| format!(" (for <strong>{}</strong>)", show(c)))
            .unwrap_or_default(),
        target_text(&call.target.kind, &call.target.name),
        show(&call.rule),
    );
    if let Some(reason) = &call.reason {
        let _ = write!(body, "<dt>Why</dt><dd id=\"reason\">{}</dd>", show(reason));
    }
    let _ = write!(
        body,
        "<dt>Asked</dt><dd>{} ({})</dd>",
        rfc3339(approval.created_ms),
        relative(approval.created_ms, now)
    );
    let expiry_label = match status {
        Status::Pending => "Expires",
        Status::Approved => "Usable until",
        Status::Denied => "Denial reported until",
        Status::Used | Status::Expired => "Expiry",
    };
    let _ = write!(
        body,
        "<dt>{expiry_label}</dt><dd id=\"expires\">{} ({})</dd>",
        rfc3339(approval.expires_ms),
        relative(approval.expires_ms, now)
    );
    if call.separate_approver {
        body.push_str("<dt>Approver</dt><dd>must be someone other than the caller</dd>");
    }
    if let (Some(approver), Some(at)) = (&approval.approver, approval.decided_ms) {
        let _ = write!(
            body,
            "<dt>Decided</dt><dd id=\"decision\">{} by <strong>{}</strong> at {}{}</dd>",
            match approval.status {
                Status::Denied => "denied",
                _ => "approved",
            },
            escape(approver),
            rfc3339(at),
            approval
                .decision_reason
                .as_deref()
                .map(|r| format!(": {}", show(r)))
                .unwrap_or_default()
        );
    }
    if let Some(used) = approval.used_ms {
        let _ = write!(body, "<dt>Used</dt><dd id=\"used\">{}</dd>", rfc3339(used));
    }
    let _ = write!(
        body,
        "<dt>Policy</dt><dd>revision <code>{}</code></dd><dt>Digest</dt><dd><code>{}</code></dd></dl></div>\
         <h2>Arguments</h2><div class=\"card\" id=\"arguments\">{}</div>",
        show(&call.policy_revision),
        escape(&approval.digest),
        arguments_html(&call.arguments)
    );
    if let (Status::Pending, Some(actions)) = (status, actions) {
        let base = escape(frame.base);
        let csrf = escape(actions.csrf);
        let id = &approval.id;
        if actions.own_call {
            body.push_str("<p class=\"flash error\" id=\"own-call\">This is your own agent's call: someone else must approve it. You can deny it.</p>");
        } else {
            let _ = write!(
                body,
                "<h2>Approve</h2><form class=\"decide\" method=\"post\" action=\"{base}/approvals/{id}/approve\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label for=\"approve-reason\">Note (optional)</label>\
                 <textarea id=\"approve-reason\" name=\"reason\" rows=\"2\" maxlength=\"1000\"></textarea>\
                 <button class=\"approve\" id=\"approve\">Approve this call once</button></form>"
            );
        }
        let _ = write!(
            body,
            "<h2>Deny</h2><form class=\"decide\" method=\"post\" action=\"{base}/approvals/{id}/deny\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"deny-reason\">Reason (the agent is told)</label>\
             <textarea id=\"deny-reason\" name=\"reason\" rows=\"2\" maxlength=\"1000\" required></textarea>\
             <button class=\"deny\" id=\"deny\">Deny</button></form>"
        );
    }
    page(frame, "Approval", None, &body)
}

pub fn history(frame: &Frame<'_>, entries: &[HistoryEntry], now: u64) -> String {
    let mut body = String::from("<h1>Decisions</h1>");
    if entries.is_empty() {
        body.push_str("<p>No decisions yet.</p>");
    } else {
        body.push_str("<table id=\"history\"><thead><tr><th>When</th><th>What</th><th>Call</th><th>By</th><th>Reason</th></tr></thead><tbody>");
        for entry in entries {
            let s = &entry.summary;
            let _ = write!(
                body,
                "<tr class=\"entry\"><td>{} ({})</td><td><span class=\"status {event}\">{event}</span></td>\
                 <td><a href=\"{base}/approvals/{id}\">{target}</a> by {grant}</td><td data-label=\"by\">{approver}</td><td data-label=\"reason\">{reason}</td></tr>",
                rfc3339(entry.at_ms),
                relative(entry.at_ms, now),
                event = escape(&entry.event),
                base = escape(frame.base),
                id = escape(&entry.id),
                target = target_text(&s.target.kind, &s.target.name),
                grant = show(&s.grant),
                approver = entry.approver.as_deref().map(escape).unwrap_or_default(),
                reason = entry.reason.as_deref().map(show).unwrap_or_default(),
            );
        }
        body.push_str("</tbody></table>");
    }
    page(frame, "History", None, &body)
}

pub fn login(frame: &Frame<'_>, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(error) = error {
        let _ = write!(
            body,
            "<div class=\"flash error\" id=\"flash\">{}</div>",
            escape(error)
        );
    }
    let _ = write!(
        body,
        "<form class=\"decide card\" method=\"post\" action=\"{}/login\">\
         <label for=\"token\">Approver token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required>\
         <button id=\"sign-in\">Sign in</button></form>",
        escape(frame.base)
    );
    page(frame, "Sign in", None, &body)
}

pub fn message(frame: &Frame<'_>, title: &str, text: &str) -> String {
    let body = format!(
        "<h1>{}</h1><div class=\"flash error\" id=\"flash\">{}</div>",
        escape(title),
        escape(text)
    );
    page(frame, title, None, &body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::model::{Call, Target};

    fn approval(arguments: &str) -> Approval {
        Approval {
            id: "0".repeat(32),
            digest: "sha256:00".into(),
            call: Call {
                grant: "alice<script>".into(),
                caller: None,
                target: Target {
                    kind: "tool".into(),
                    name: "asyncExecuteCode".into(),
                },
                arguments: canonical::canonicalize(arguments).unwrap(),
                rule: "/tools/x/approve".into(),
                reason: None,
                ttl_seconds: 60,
                separate_approver: false,
                policy_revision: "r1".into(),
            },
            status: Status::Pending,
            created_ms: 1000,
            expires_ms: 61_000,
            approver: None,
            decision_reason: None,
            decided_ms: None,
            used_ms: None,
        }
    }

    fn frame() -> Frame<'static> {
        Frame {
            base: "",
            approver: Some("bob"),
            logout_csrf: None,
            pending: Some(1),
        }
    }

    #[test]
    fn escapes_and_marks_what_could_mislead() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let shown = show("if ok:\u{202E} }\u{2066}// \u{200B}x\u{1b}[2J");
        assert!(shown.contains("⟨U+202E⟩"), "{shown}");
        assert!(shown.contains("⟨U+200B⟩"), "{shown}");
        assert!(shown.contains("⟨U+001B⟩"), "{shown}");
        assert!(!shown.contains('\u{202E}'));
        assert_eq!(show("a\nb\tc"), "a\nb\tc");
        // Found by a review: a paragraph separator (a line break to
        // JavaScript, a space on the page), tags (hidden ASCII), joiners and
        // variation selectors, Hangul fillers.
        for c in [
            '\u{2029}',
            '\u{2028}',
            '\u{E0049}',
            '\u{E0020}',
            '\u{034F}',
            '\u{FE0F}',
            '\u{180E}',
            '\u{206A}',
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
        ] {
            let shown = show(&format!("a{c}b"));
            assert_eq!(
                shown,
                format!("a<span class=\"mark\">⟨U+{:04X}⟩</span>b", c as u32)
            );
        }
    }

    #[test]
    fn argument_values_are_shown_with_their_type() {
        let typed = arguments_html(r#"{"recursive":false,"limit":100,"force":null}"#);
        let text = arguments_html(r#"{"recursive":"false","limit":"100","force":"null"}"#);
        assert_ne!(typed, text);
        assert!(
            typed.contains("recursive <span class=\"type\">true or false</span>"),
            "{typed}"
        );
        assert!(
            text.contains("recursive <span class=\"type\">text</span>"),
            "{text}"
        );
        assert!(
            typed.contains("limit <span class=\"type\">number</span>"),
            "{typed}"
        );
        assert!(
            text.contains("force <span class=\"type\">text</span>"),
            "{text}"
        );
    }

    #[test]
    fn detail_shows_the_script_as_lines_and_escapes_everything() {
        let page = detail(
            &frame(),
            &approval(r#"{"code":"import os\n</pre><script>alert(1)</script>","n":1e2}"#),
            2000,
            Some(DetailActions {
                csrf: "tok\"en",
                own_call: false,
            }),
            None,
        );
        assert!(
            page.contains("import os\n&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("alice&lt;script&gt;"));
        assert!(page.contains("<pre class=\"arg-value\">100</pre>"));
        assert!(page.contains("value=\"tok&quot;en\""));
        assert!(page.contains("id=\"approve\""));
        assert!(page.contains("name=\"viewport\""));
    }

    #[test]
    fn own_call_has_no_approve_button_and_decided_calls_no_forms() {
        let own = detail(
            &frame(),
            &approval("{}"),
            2000,
            Some(DetailActions {
                csrf: "t",
                own_call: true,
            }),
            None,
        );
        assert!(!own.contains("id=\"approve\"") && own.contains("id=\"deny\""));
        let mut decided = approval("{}");
        decided.status = Status::Denied;
        let page = detail(
            &frame(),
            &decided,
            2000,
            Some(DetailActions {
                csrf: "t",
                own_call: false,
            }),
            None,
        );
        assert!(!page.contains("id=\"deny\""));
        // Past its expiry a pending approval shows as expired, without forms.
        let page = detail(
            &frame(),
            &approval("{}"),
            61_000,
            Some(DetailActions {
                csrf: "t",
                own_call: false,
            }),
            None,
        );
        assert!(page.contains("status expired") && !page.contains("id=\"approve\""));
    }

    #[test]
    fn list_refreshes_itself() {
        let page = list(&frame(), &[approval("{}")], 2000);
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(page.contains(&format!("href=\"/approvals/{}\"", "0".repeat(32))));
    }
}
