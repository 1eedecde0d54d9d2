//! One HTTP stream: find the caller, hold the request until its body is
//! complete, then forward it or answer in its place; filter `tools/list`
//! answers on the way back.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use serde_json::Value;

use super::calls::{self, RequestHeaders};
use super::host::{EnvoyClock, EnvoyMetrics, EnvoySharedData};
use crate::audit::AuditRecord;
use crate::gate::{self, GlobalCheck, Inspection, McpHeaders};
use crate::host::{Clock, Metrics};
use crate::listing::{self, SseFilter};
use crate::policy::{Identity, Policy, ANONYMOUS_GRANT};
use crate::ratelimit::{self, CallerScope, Reservation};
use crate::response::CONTENT_TYPE;

/// The MCP Streamable HTTP session header.
const SESSION_HEADER: &str = "mcp-session-id";
/// Where Envoy's jwt_authn filter puts verified payloads.
const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";

pub struct PolicyStream {
    policy: Rc<Policy>,
    metrics: Rc<EnvoyMetrics>,
    /// Whether this request's body is held and inspected.
    inspecting: bool,
    grant: String,
    session: Option<String>,
    /// Body bytes Envoy has buffered so far.
    buffered: usize,
    /// Set when the answer is a `tools/list` result to filter for this caller.
    listing: Option<Listing>,
    /// `Mcp-Method` and `Mcp-Name`, checked against the body.
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    /// Quota taken for the forwarded call, given back if it did not happen.
    reservations: Vec<Reservation>,
    /// Whether response headers arrived (the upstream, or Envoy for it, answered).
    answered: bool,
    /// The decision's audit record, written at the end of the stream with the
    /// outcome the caller saw.
    audit: Option<AuditRecord>,
    /// When the request headers arrived.
    started: Duration,
    /// A call held while the rate-limit service decides its global limits:
    /// the gRPC token, what was asked, and the decision's audit record so far.
    pending_global: Option<(u32, GlobalCheck, AuditRecord)>,
}

/// A `tools/list` answer being filtered.
enum Listing {
    /// Request seen; response not started.
    Requested(Value),
    /// A JSON body, filtered once complete.
    Json(Value),
    /// An event stream, filtered as it flows.
    Stream(SseFilter),
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
            listing: None,
            mcp_method: None,
            mcp_name: None,
            reservations: Vec::new(),
            answered: false,
            audit: None,
            started: Duration::ZERO,
            pending_global: None,
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
        if let Some(audit) = inspection.audit {
            self.metrics.record(audit.decision, audit.tool.as_deref());
            self.export_decision(&audit);
            self.audit = Some(audit);
        }
        match inspection.reply {
            Some(reply) => {
                self.inspecting = false;
                // If Envoy refuses the answer the request stays held: nothing
                // of it is forwarded.
                calls::send_response(
                    u32::from(reply.status),
                    vec![("content-type", CONTENT_TYPE)],
                    &reply.body,
                );
                Action::Pause
            }
            None => Action::Continue,
        }
    }

    /// The decision as filter state, for Envoy's access log and CEL:
    /// `%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%` and so on.
    fn export_decision(&self, audit: &AuditRecord) {
        let fields = [
            ("mcp_policy.grant", Some(audit.grant.as_str())),
            ("mcp_policy.tool", audit.tool.as_deref()),
            ("mcp_policy.decision", Some(audit.decision.as_str())),
            ("mcp_policy.rule", audit.rule.as_deref()),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
                    log::debug!("mcp-policy: cannot set {name}: {status:?}");
                }
            }
        }
    }

    /// Sets `grant` from the policy's identity source. `false`: refused
    /// (the answer has been sent).
    fn identify(&mut self, headers: &RequestHeaders) -> bool {
        let policy = Rc::clone(&self.policy);
        match &policy.identity {
            Identity::Anonymous => true,
            Identity::Header(header) => {
                let value = headers.get(header);
                self.grant = Identity::grant_from_value(value).to_string();
                true
            }
            Identity::JwtClaim {
                provider_metadata,
                claim,
            } => {
                let value = calls::property(vec![
                    "metadata",
                    "filter_metadata",
                    JWT_AUTHN_METADATA,
                    provider_metadata,
                    claim,
                ]);
                let value = value.and_then(|bytes| {
                    let text = Identity::claim_text(&bytes);
                    if text.is_none() {
                        log::warn!(
                            "mcp-policy: JWT claim `{claim}` is not a string or an integer: the caller is anonymous"
                        );
                    }
                    text
                });
                self.grant = Identity::grant_from_value(value.as_deref()).to_string();
                true
            }
            Identity::BearerTokens(tokens) => {
                let authorization = headers.get("authorization");
                match Identity::grant_for_bearer(tokens, authorization) {
                    Ok(grant) => {
                        self.grant = grant.to_string();
                        // The token is for this gate, not for the server.
                        calls::remove_header(MapType::HttpRequestHeaders, "authorization");
                        true
                    }
                    Err(error) => {
                        // In monitor mode there is no reply: recorded, let through.
                        let inspection =
                            gate::unauthorized(&policy, &EnvoyClock, self.caller(), &error);
                        let refused = inspection.reply.is_some();
                        self.apply(inspection);
                        !refused
                    }
                }
            }
        }
    }

    /// Inspects the complete, buffered body (at most `size` bytes of it).
    fn decide_buffered_body(&mut self, size: usize) -> Action {
        self.inspecting = false;
        // An unreadable body reads as empty: refused as malformed, never forwarded unread.
        let body = calls::buffer(BufferType::HttpRequestBody, size);
        let headers = McpHeaders {
            method: self.mcp_method.as_deref(),
            name: self.mcp_name.as_deref(),
        };
        let mut inspection = gate::inspect_request(
            &self.policy,
            &EnvoySharedData,
            &EnvoyClock,
            self.caller(),
            headers,
            &body,
        );
        self.reservations = std::mem::take(&mut inspection.reservations);
        if let Some(check) = inspection.global_check.take() {
            if let Some(audit) = inspection.audit.take() {
                return self.ask_rate_limit_service(check, audit);
            }
        }
        if let Some(id) = inspection.filter_listing.clone() {
            // Encoded answers could not be filtered: ask for identity.
            calls::remove_header(MapType::HttpRequestHeaders, "accept-encoding");
            self.listing = Some(Listing::Requested(id));
        }
        self.apply(inspection)
    }

    /// Holds the call and asks the rate-limit service about its global
    /// limits; the answer arrives in `on_grpc_call_response`.
    fn ask_rate_limit_service(&mut self, check: GlobalCheck, audit: AuditRecord) -> Action {
        let Some(service) = self.policy.rate_limit_service.clone() else {
            return self.finish_global_check(
                &check,
                audit,
                Err("no rate_limit_service".to_string()),
            );
        };
        let dispatched = hostcalls::dispatch_grpc_call(
            &service.cluster,
            ratelimit::service::SERVICE,
            ratelimit::service::METHOD,
            Vec::new(),
            Some(&check.request),
            Duration::from_millis(service.timeout_ms),
        );
        match dispatched {
            Ok(token) => {
                self.pending_global = Some((token, check, audit));
                Action::Pause
            }
            Err(status) => self.finish_global_check(
                &check,
                audit,
                Err(format!(
                    "cannot call cluster {:?}: {status:?}",
                    service.cluster
                )),
            ),
        }
    }

    /// Applies the rate-limit service's answer (or failure) to a held call.
    fn finish_global_check(
        &mut self,
        check: &GlobalCheck,
        mut audit: AuditRecord,
        answer: Result<&[u8], String>,
    ) -> Action {
        let now = EnvoyClock.unix_time().as_secs();
        let reply = gate::complete_global_check(&self.policy, check, answer, now, &mut audit);
        if reply.is_some() {
            self.release_quota("the rate-limit service refused or failed");
        }
        self.apply(Inspection {
            reply,
            reservations: Vec::new(),
            audit: Some(audit),
            filter_listing: None,
            global_check: None,
        })
    }

    /// Gives back the quota of a call that did not happen.
    fn release_quota(&mut self, why: &str) {
        if self.reservations.is_empty() {
            return;
        }
        let failed = ratelimit::release(&EnvoySharedData, &self.reservations);
        self.reservations.clear();
        if failed.is_empty() {
            log::info!("mcp-policy: quota given back ({why})");
        } else {
            log::warn!("mcp-policy: could not give back quota ({why}) for {failed:?}");
        }
    }

    /// The request headers the gate reads.
    fn headers_read(&self) -> impl Iterator<Item = &str> {
        let identity = match &self.policy.identity {
            Identity::Header(header) => Some(header.as_str()),
            Identity::BearerTokens(_) => Some("authorization"),
            Identity::Anonymous | Identity::JwtClaim { .. } => None,
        };
        [
            SESSION_HEADER,
            ":method",
            "mcp-method",
            "mcp-name",
            "content-encoding",
            "content-length",
        ]
        .into_iter()
        .chain(identity)
    }

    fn over_limit(&self, size: u64) -> bool {
        size > self.policy.max_body_bytes
    }
}

impl Context for PolicyStream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some((token, check, audit)) = self.pending_global.take() else {
            return;
        };
        if token != token_id {
            self.pending_global = Some((token, check, audit));
            return;
        }
        let body = if status_code == 0 {
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size)
                .map_err(|status| format!("cannot read the answer: {status:?}"))
                .map(Option::unwrap_or_default)
        } else {
            Err(format!("gRPC status {status_code}"))
        };
        let action = match &body {
            Ok(bytes) => self.finish_global_check(&check, audit, Ok(bytes)),
            Err(err) => self.finish_global_check(&check, audit, Err(err.clone())),
        };
        if action == Action::Continue {
            if let Err(status) = hostcalls::resume_http_request() {
                log::warn!("mcp-policy: cannot resume the request: {status:?}");
            }
        }
    }
}

impl HttpContext for PolicyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started = EnvoyClock.unix_time();
        // One host call for every header this stream needs (each single
        // header read is a call out of the VM and usually one back in).
        let headers = RequestHeaders::read();
        // A header the gate reads must be text, or the gate cannot decide on it.
        if let Some(name) = headers.first_unreadable(self.headers_read()) {
            let inspection =
                gate::unreadable_header(&self.policy, &EnvoyClock, self.caller(), name);
            self.inspecting = false;
            return self.apply(inspection);
        }
        self.session = headers
            .get(SESSION_HEADER)
            .filter(|session| !session.is_empty())
            .map(str::to_string);
        // Every request, GET streams included, belongs to an identified caller.
        if !self.identify(&headers) {
            return Action::Pause;
        }
        let is_post = headers.get(":method") == Some("POST");
        if !is_post || end_of_stream {
            // GET streams, DELETE, and bodiless requests carry no tool call.
            return Action::Continue;
        }
        self.inspecting = true;
        self.mcp_method = headers.get("mcp-method").map(str::to_string);
        self.mcp_name = headers.get("mcp-name").map(str::to_string);

        // A body the gate cannot read must not reach a server that can.
        if let Some(encoding) = headers.get("content-encoding") {
            if !encoding.trim().eq_ignore_ascii_case("identity") {
                let inspection =
                    gate::unsupported_encoding(&self.policy, &EnvoyClock, self.caller(), encoding);
                self.inspecting = false;
                return self.apply(inspection);
            }
        }

        let declared = headers
            .get("content-length")
            .and_then(|length| length.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| self.over_limit(length)) {
            let inspection = gate::body_too_large(&self.policy, &EnvoyClock, self.caller());
            self.inspecting = false;
            return self.apply(inspection);
        }
        if !self.policy.hold_request_headers {
            // Envoy without allow_on_headers_stop_iteration turns a pause here
            // into "stop everything" and never delivers the body: let the
            // headers go and hold the body instead.
            return Action::Continue;
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
            self.inspecting = false;
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

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.answered = true;
        if !self.reservations.is_empty() {
            // Read only when there is quota to give back: a host call.
            let status = calls::response_header(":status")
                .and_then(|status| status.parse::<u16>().ok())
                .unwrap_or(0);
            if status >= 500 {
                // The upstream failed or could not be reached: the call did not happen.
                self.release_quota(&format!("upstream answered {status}"));
            }
        }
        let Some(Listing::Requested(id)) = self.listing.take() else {
            return Action::Continue;
        };
        let content_type = calls::response_header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        self.listing = if content_type.starts_with("text/event-stream") {
            Some(Listing::Stream(SseFilter::new(id)))
        } else if content_type.starts_with("application/json") {
            Some(Listing::Json(id))
        } else {
            None
        };
        if self.listing.is_some() {
            // The body changes length.
            calls::remove_header(MapType::HttpResponseHeaders, "content-length");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.listing {
            None | Some(Listing::Requested(_)) => Action::Continue,
            Some(Listing::Json(id)) => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let id = id.clone();
                self.listing = None;
                let body = calls::buffer(BufferType::HttpResponseBody, body_size);
                let view = self.policy.view(&self.grant);
                if let Some(filtered) =
                    listing::filter_json_body(&body, &id, &|tool| view.lists(tool))
                {
                    calls::replace_buffer(BufferType::HttpResponseBody, body_size, &filtered);
                }
                Action::Continue
            }
            Some(Listing::Stream(_)) => {
                let chunk = calls::buffer(BufferType::HttpResponseBody, body_size);
                let policy = Rc::clone(&self.policy);
                let view = policy.view(&self.grant);
                let out = match &mut self.listing {
                    Some(Listing::Stream(filter)) => {
                        filter.push(&chunk, end_of_stream, &|tool| view.lists(tool))
                    }
                    _ => chunk,
                };
                calls::replace_buffer(BufferType::HttpResponseBody, body_size, &out);
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        if !self.answered {
            // Reset before any response: the call may never have run.
            self.release_quota("request reset before a response");
        }
        if let Some(mut audit) = self.audit.take() {
            audit.status = calls::property(vec!["response", "code"])
                .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
                .map(u64::from_le_bytes)
                .and_then(|code| u16::try_from(code).ok());
            let elapsed = EnvoyClock.unix_time().saturating_sub(self.started);
            audit.duration_ms = u64::try_from(elapsed.as_millis()).ok();
            log::info!("{}", audit.to_log_line());
        }
    }
}
