//! One HTTP stream: hold the request until its body is complete, then forward
//! it or answer in its place.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{EnvoyClock, EnvoyMetrics, EnvoySharedData};
use crate::gate::{self, Inspection};
use crate::host::Metrics;
use crate::policy::{Policy, ANONYMOUS_GRANT};
use crate::ratelimit::CallerScope;
use crate::response::CONTENT_TYPE;

/// The MCP Streamable HTTP session header.
const SESSION_HEADER: &str = "mcp-session-id";

pub struct PolicyStream {
    policy: Rc<Policy>,
    metrics: Rc<EnvoyMetrics>,
    /// Whether this request's body is held and inspected.
    inspecting: bool,
    grant: String,
    session: Option<String>,
    /// Body bytes Envoy has buffered so far.
    buffered: usize,
}

impl PolicyStream {
    pub fn new(policy: Rc<Policy>, metrics: Rc<EnvoyMetrics>) -> Self {
        PolicyStream {
            policy,
            metrics,
            inspecting: false,
            grant: ANONYMOUS_GRANT.to_string(),
            session: None,
            buffered: 0,
        }
    }

    fn caller(&self) -> CallerScope<'_> {
        CallerScope {
            grant: &self.grant,
            session: self.session.as_deref(),
        }
    }

    /// Logs, counts and applies an inspection; returns the filter action.
    fn apply(&mut self, inspection: Inspection) -> Action {
        if let Some(audit) = &inspection.audit {
            log::info!("{}", audit.to_log_line());
            self.metrics.record(audit.decision);
        }
        match inspection.reply {
            Some(reply) => {
                self.inspecting = false;
                self.send_http_response(
                    u32::from(reply.status),
                    vec![("content-type", CONTENT_TYPE)],
                    Some(&reply.body),
                );
                Action::Pause
            }
            None => Action::Continue,
        }
    }

    /// Inspects the complete, buffered body (at most `size` bytes of it).
    fn decide_buffered_body(&mut self, size: usize) -> Action {
        self.inspecting = false;
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let inspection = gate::inspect_body(
            &self.policy,
            &EnvoySharedData,
            &EnvoyClock,
            self.caller(),
            &body,
        );
        self.apply(inspection)
    }

    fn over_limit(&self, size: u64) -> bool {
        size > self.policy.max_body_bytes
    }
}

impl Context for PolicyStream {}

impl HttpContext for PolicyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let is_post = self.get_http_request_header(":method").as_deref() == Some("POST");
        if !is_post || end_of_stream {
            // GET streams, DELETE, and bodiless requests carry no tool call.
            return Action::Continue;
        }
        if let Some(header) = &self.policy.identity_header {
            if let Some(grant) = self.get_http_request_header(header) {
                if !grant.is_empty() {
                    self.grant = grant;
                }
            }
        }
        self.session = self
            .get_http_request_header(SESSION_HEADER)
            .filter(|session| !session.is_empty());
        self.inspecting = true;

        let declared = self
            .get_http_request_header("content-length")
            .and_then(|length| length.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| self.over_limit(length)) {
            let inspection = gate::body_too_large(&self.policy, &EnvoyClock, self.caller());
            return self.apply(inspection);
        }
        // Hold the headers until the body is decided (needs
        // allow_on_headers_stop_iteration in Envoy 1.40).
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.inspecting {
            return Action::Continue;
        }
        self.buffered = body_size;
        if self.over_limit(body_size as u64) {
            let inspection = gate::body_too_large(&self.policy, &EnvoyClock, self.caller());
            return self.apply(inspection);
        }
        if !end_of_stream {
            // Buffer until the whole body is here.
            return Action::Pause;
        }
        self.decide_buffered_body(body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A body followed by trailers never reaches end_of_stream in the body
        // callback: decide here, or it would be forwarded unread.
        if !self.inspecting {
            return Action::Continue;
        }
        self.decide_buffered_body(self.buffered)
    }
}
