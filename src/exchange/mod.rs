//! One HTTP stream through the gate, host-free: a state machine that takes
//! the stream's events (request headers, body, trailers, the rate-limit
//! service's and the approval service's answers, the response's headers and
//! body, the end of the stream) and returns effects (continue or pause,
//! answer in place of the server, remove a header, rewrite the request body
//! or a response chunk, set filter state, bump a counter, write a log line). Reads go through [`Host`]; nothing here
//! imports proxy-wasm. The glue in `src/filter/` maps Envoy's callbacks to
//! [`Event`]s and [`Effect`]s to host calls, and decides nothing.
//!
//! The exchange knows what Envoy permits at each point and never asks for
//! anything else (the proxy-wasm SDK panics on a refused host call, and a
//! panic poisons the VM for every later request on that worker):
//! - request headers change only until they have gone upstream;
//! - the request body changes only in its own callbacks (body, trailers),
//!   while Envoy buffers it;
//! - a local reply is possible only until the response has started;
//! - response headers change only in the response-headers callback, and a
//!   response chunk only in its own callback.
//!
//! [`sim`] is a simulated Envoy that applies effects with those rules, so
//! every lifecycle path is a native unit test.

pub mod sim;

use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use crate::approval::{self, ApprovalCheck};
use crate::audit::{AuditRecord, AUDIT_FILTER_STATE};
use crate::bindings::{self, HandedOut, Table};
use crate::gate::{self, GlobalCheck, Inspection, McpHeaders};
use crate::host::{Clock, SharedStore};
use crate::listing::{self, Filtered, SseFilter};
use crate::metrics::Catalog;
use crate::policy::{Identity, Mode, Policy, ANONYMOUS_GRANT};
use crate::ratelimit::{self, CallerScope, Reservation};
use crate::response::{self, Reply};
use crate::target::{Kind, Target};

/// A validated policy and the counters it exports: what one plugin
/// configuration gives every stream.
#[derive(Debug)]
pub struct Plugin {
    pub policy: Policy,
    pub metrics: Catalog,
    /// Envoy's log level for the filter as last read, and the second (of a
    /// clock a stream had read anyway) it was read in: see
    /// [`Plugin::logs_at`].
    log_level: std::cell::Cell<Option<(u64, Level)>>,
    /// The key of counter tables' owner digests, once read from the store
    /// ([`ratelimit::table_key`]).
    table_key: std::cell::Cell<Option<[u8; ratelimit::TABLE_KEY_LEN]>>,
    /// When this VM last logged a call it could not decide, and how many it
    /// has not logged since: at most one line per
    /// [`UNDECIDED_LOG_SECONDS`] (callers who fill a counter's table would
    /// otherwise write one per call).
    undecided_logged: std::cell::Cell<Option<(u64, u64)>>,
}

/// The fewest seconds between two log lines of calls the gate could not decide.
pub const UNDECIDED_LOG_SECONDS: u64 = 10;

impl Plugin {
    /// Reads the plugin configuration (the policy document).
    pub fn configure(config: &[u8]) -> Result<Plugin, String> {
        if config.is_empty() {
            return Err("no plugin configuration (the policy document)".to_string());
        }
        let policy = Policy::from_json(config).map_err(|err| err.to_string())?;
        let metrics = Catalog::for_policy(&policy);
        Ok(Plugin {
            policy,
            metrics,
            log_level: std::cell::Cell::new(None),
            table_key: std::cell::Cell::new(None),
            undecided_logged: std::cell::Cell::new(None),
        })
    }

    /// Whether Envoy would write a line at `level`, so lines nobody reads
    /// are not formatted. Envoy's level can change at run time
    /// (`/logging?wasm=warning`), and reading it is a call into Envoy, so
    /// it is read at most once a second per VM (one plugin per worker), by
    /// `now`, a clock the stream read anyway: a change takes effect within
    /// a second.
    fn logs_at(&self, host: &mut dyn Host, now: Duration, level: Level) -> bool {
        let second = now.as_secs();
        let current = match self.log_level.get() {
            Some((read, current)) if read == second => current,
            _ => {
                let current = host.log_level();
                self.log_level.set(Some((second, current)));
                current
            }
        };
        level >= current
    }

    /// The line logged when the policy is loaded.
    pub fn loaded_line(&self) -> String {
        let policy = &self.policy;
        format!(
            "mcp-policy: policy loaded: {} tools, {} grants, default {:?}, mode {:?}, revision {}",
            policy.base().tool_names().count(),
            policy.grant_names().count(),
            policy.base().default,
            policy.mode,
            policy.revision
        )
    }
}

/// What the exchange reads from its host.
pub trait Host {
    /// Wall-clock time since the Unix epoch.
    fn now(&self) -> Duration;
    /// The store counters live in (Envoy's shared data).
    fn store(&self) -> &dyn SharedStore;
    /// Every request header, read at once.
    fn request_headers(&mut self) -> Headers;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&mut self, size: usize) -> Vec<u8>;
    /// A response header's value: every value of the header, joined with
    /// `, ` (RFC 9110 §5.3), so that a second `content-encoding` is seen.
    fn response_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// The first `size` bytes of the buffered response body (or chunk).
    fn response_body(&mut self, size: usize) -> Vec<u8>;
    /// A stream property (`["response", "code"]`, metadata, ...).
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>>;
    /// Starts a gRPC call; the answer comes back as [`Event::ServiceAnswer`]
    /// with the returned token. A call outlives the stream that starts it
    /// (proxy-wasm-cpp-host makes every gRPC call on the plugin's root
    /// context), so one started at [`Event::StreamEnd`] is still sent; its
    /// answer then goes nowhere.
    fn dispatch_grpc(&mut self, call: &ServiceCall) -> Result<u32, String>;
    /// 128 random bits, different for every call (lease ids).
    fn random(&mut self) -> u128;
    /// The first `size` bytes of a gRPC answer.
    fn service_answer(&mut self, size: usize) -> Vec<u8>;
    /// Envoy's log level for the filter (it can change at run time).
    fn log_level(&mut self) -> Level;
    /// Starts an HTTP call; the answer comes back as [`Event::HttpAnswer`]
    /// with the returned token.
    fn dispatch_http(&mut self, call: &HttpCall) -> Result<u32, String>;
    /// A header of the HTTP call's answer (only while it has headers).
    fn http_answer_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// The first `size` bytes of the HTTP call's answer body.
    fn http_answer_body(&mut self, size: usize) -> Vec<u8>;
}

/// Every value of header `name` among `headers`, joined with `, `.
pub fn joined_values<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    name: &str,
) -> Option<Vec<u8>> {
    let mut joined: Option<Vec<u8>> = None;
    for (_, value) in headers.filter(|(key, _)| key.eq_ignore_ascii_case(name)) {
        match &mut joined {
            Some(joined) => {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value);
            }
            None => joined = Some(value.to_vec()),
        }
    }
    joined
}

/// An HTTP/1.1 `POST` of JSON to a service cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub cluster: String,
    pub path: &'static str,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// A gRPC call to a service cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    pub cluster: String,
    pub service: &'static str,
    pub method: &'static str,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// What happened on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    RequestHeaders {
        end_of_stream: bool,
    },
    /// `size`: the body bytes Envoy holds (everything since the last
    /// `Continue`, because the exchange pauses until the body is complete).
    RequestBody {
        size: usize,
        end_of_stream: bool,
    },
    RequestTrailers,
    ResponseHeaders {
        end_of_stream: bool,
    },
    ResponseBody {
        size: usize,
        end_of_stream: bool,
    },
    ResponseTrailers,
    /// A gRPC call answered: `status` 0 is OK.
    ServiceAnswer {
        token: u32,
        status: u32,
        size: usize,
    },
    /// An HTTP call answered: `headers` of them (0: no answer at all, the
    /// call failed), a body of `size` bytes.
    HttpAnswer {
        token: u32,
        headers: usize,
        size: usize,
    },
    /// The stream is over, however it ended (completed, reset by either
    /// side, timed out); Envoy's access-log time.
    StreamEnd,
}

/// Whether Envoy goes on with the stream or holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// Log levels the exchange writes at, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// A change the host makes for the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    RemoveRequestHeader(&'static str),
    RemoveResponseHeader(&'static str),
    /// Replace the current response chunk (the `size` bytes Envoy holds).
    ReplaceResponseBody {
        size: usize,
        body: Vec<u8>,
    },
    /// Replace the buffered request body (the `size` bytes Envoy holds).
    ReplaceRequestBody {
        size: usize,
        body: Vec<u8>,
    },
    /// Answer in place of the server (`content-type: application/json`).
    Reply {
        status: u16,
        body: Vec<u8>,
    },
    /// Let a held request go on (after the rate-limit service allowed it).
    ResumeRequest,
    /// Filter state for Envoy's access log and CEL (`wasm.<name>`).
    FilterState {
        name: &'static str,
        value: String,
    },
    /// Bump counter `index` of the plugin's [`Catalog`].
    Count(usize),
    Log {
        level: Level,
        line: String,
    },
}

/// The answer to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub effects: Vec<Effect>,
}

/// Request headers as Envoy gives them: names in lower case, values as
/// bytes (a value need not be UTF-8; only those the gate reads must be).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name`, if it is text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    pub fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The first of `names` the gate cannot decide on, and why: a value
    /// that is not UTF-8 text, or a header given more than once (for
    /// `Content-Type`, also as Envoy passes it on: joined with a comma).
    fn first_unusable<'n>(
        &self,
        mut names: impl Iterator<Item = &'n str>,
    ) -> Option<(&'n str, &'static str)> {
        names.find_map(|name| {
            let mut values = self
                .0
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name));
            let first = values.next()?;
            match std::str::from_utf8(&first.1) {
                _ if values.next().is_some() => Some((name, "is given more than once")),
                Err(_) => Some((name, "is not UTF-8 text")),
                Ok(value) if name == "content-type" && crate::mcp::joins_media_types(value) => {
                    Some((name, "is given more than once"))
                }
                Ok(_) => None,
            }
        })
    }
}

/// The MCP Streamable HTTP session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Where Envoy's jwt_authn filter puts verified payloads.
pub const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";

/// Request headers by which a caller steers Envoy's router: retries make
/// one allowed call run several times, and a short timeout turns a call that
/// ran into an error. The exchange removes them from every request (Envoy
/// honours them from callers it treats as internal, and the gate must not
/// depend on how the listener is configured).
pub const ROUTER_HEADERS: [&str; 11] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-stream-duration-ms",
];

/// Envoy response flags (`response.flags`, the legacy bit set) that mean
/// the request never reached the server: no healthy upstream (UH), the
/// connection could not be made (UF), the upstream's circuit breaker was
/// full (UO), no route (NR), no cluster (NC), DNS failed (DF).
pub const NOT_REACHED_FLAGS: u64 = 0x2 | 0x20 | 0x80 | 0x100 | (1 << 24) | (1 << 26);
/// Flags that mean the request may have reached the server: upstream
/// request timeout (UT), upstream reset (UR), connection terminated (UC),
/// retries exhausted (URX), max stream duration (UMSDR), protocol error (UPE).
pub const REACHED_FLAGS: u64 = 0x4 | 0x10 | 0x40 | (1 << 15) | (1 << 19) | (1 << 23);

/// A held call waiting for the rate-limit service.
#[derive(Debug)]
struct Pending {
    token: u32,
    check: GlobalCheck,
    audit: AuditRecord,
    /// The lease id of the slots the request asks for.
    lease: String,
}

/// Concurrency slots the rate-limit service leased to this exchange, to be
/// given back when it ends.
#[derive(Debug)]
struct GlobalLeases {
    check: GlobalCheck,
    lease: String,
}

/// A held call waiting for the approval service.
#[derive(Debug)]
struct PendingApproval {
    token: u32,
    check: ApprovalCheck,
    audit: AuditRecord,
}

/// Rewriting answers on the way back, for a caller that must not see
/// everything the server lists.
#[derive(Debug)]
enum Listing {
    /// Nothing to rewrite.
    Off,
    /// The answer may carry a listing; the response has not started.
    /// `id`: the request's id, for an error in place of an unreadable answer.
    Expected { id: Value },
    /// A JSON answer, rewritten once complete.
    Json { id: Value },
    /// An event stream, rewritten event by event.
    Stream(SseFilter),
    /// An encoded answer the filter cannot read: replaced by an error.
    Blocked { id: Value, stream: bool, sent: bool },
}

/// One HTTP stream.
#[derive(Debug)]
pub struct Exchange {
    plugin: Rc<Plugin>,
    grant: String,
    /// The session the caller counts under (none at 2026-07-28).
    session: Option<String>,
    /// `Mcp-Session-Id` as sent.
    session_header: Option<String>,
    /// The caller's role (`grant_roles`, or the JWT's role claim).
    role: Option<String>,
    /// When the request headers arrived.
    started: Duration,
    /// Whether the request body is being held until it is complete.
    inspecting: bool,
    /// Body bytes Envoy holds (request, then response).
    request_buffered: usize,
    response_buffered: usize,
    /// Bytes at the start of Envoy's response buffer the observer has read
    /// already: a held JSON answer is handed over whole at every callback.
    response_observed: usize,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    /// `MCP-Protocol-Version`.
    protocol_version: Option<String>,
    /// The request is a `POST` (in any letter case): a server answers its
    /// body. Any other request is answered as a `GET` stream is, whatever
    /// body it carries (servers ignore a `GET`'s body).
    post: bool,
    /// The request headers went upstream: Envoy refuses changes to them now.
    request_headers_sent: bool,
    /// The request (headers and body) was let go towards the server.
    forwarded: bool,
    /// The gate answered in place of the server.
    replied: bool,
    /// The gate refused the request after the server had started
    /// answering: no reply is possible, and the request stays held for
    /// good (none of its body may go on).
    held_for_good: bool,
    /// The response started downstream: no local reply is possible now.
    response_started: bool,
    /// Local quota taken for the call: window units (kept once the call ran)
    /// and concurrency slots (given back when the exchange ends).
    reservations: Vec<Reservation>,
    /// The digest of the key this request's id is claimed under in its
    /// session while it is in flight ([`Table::InFlight`]).
    in_flight: Option<[u8; crate::ratelimit::OWNER_DIGEST_LEN]>,
    pending: Option<Pending>,
    pending_approval: Option<PendingApproval>,
    /// An `initialize` declaring URL-mode elicitation: remember it for the
    /// session the answer names.
    remember_url_elicitation: bool,
    /// Slots leased by the rate-limit service, or asked for (`pending`).
    global_leases: Option<GlobalLeases>,
    listing: Listing,
    /// The answers are read because the stream may replay other requests'
    /// answers (a GET, a request that is not a POST), not because this
    /// request is a listing.
    replays: bool,
    /// The request's `Accept` names `text/event-stream`: a client that
    /// reads the answer as events (MCP clients' GET streams say so).
    accepts_events: bool,
    /// A forwarded use whose answer may hand out a task or a `requestState`.
    observer: Option<Observer>,
    /// The decision's record, written when the stream ends.
    audit: Option<AuditRecord>,
}

/// An answer watched (not held) for what it hands out.
#[derive(Debug)]
struct Observer {
    target: Target<'static>,
    /// Whom a `requestState` in the answer belongs to (none: not bound).
    state_owner: Option<[u8; crate::ratelimit::OWNER_DIGEST_LEN]>,
    /// The answer's bytes so far (up to [`MAX_OBSERVED_BYTES`]).
    seen: Vec<u8>,
    stream: bool,
    /// The answer is encoded, or too large: nothing can be read of it.
    blind: bool,
}

/// Largest approval service answer the gate reads (its answers are small).
pub const MAX_APPROVAL_ANSWER_BYTES: usize = 64 * 1024;

/// Largest answer the gate reads for task ids and request states.
pub const MAX_OBSERVED_BYTES: usize = 1 << 20;

impl Exchange {
    pub fn new(plugin: Rc<Plugin>) -> Exchange {
        Exchange {
            plugin,
            grant: ANONYMOUS_GRANT.to_string(),
            session: None,
            session_header: None,
            role: None,
            started: Duration::ZERO,
            inspecting: false,
            request_buffered: 0,
            response_buffered: 0,
            response_observed: 0,
            mcp_method: None,
            mcp_name: None,
            protocol_version: None,
            post: false,
            request_headers_sent: false,
            forwarded: false,
            replied: false,
            held_for_good: false,
            response_started: false,
            reservations: Vec::new(),
            in_flight: None,
            pending: None,
            pending_approval: None,
            remember_url_elicitation: false,
            global_leases: None,
            listing: Listing::Off,
            replays: false,
            accepts_events: false,
            observer: None,
            audit: None,
        }
    }

    /// Takes one event; returns what Envoy should do.
    pub fn on(&mut self, event: Event, host: &mut dyn Host) -> Step {
        let mut effects = Vec::new();
        self.use_table_key(host, &mut effects);
        let action = match event {
            Event::RequestHeaders { end_of_stream } => {
                self.request_headers(end_of_stream, host, &mut effects)
            }
            Event::RequestBody {
                size,
                end_of_stream,
            } => self.request_body(size, end_of_stream, host, &mut effects),
            Event::RequestTrailers => {
                if self.inspecting {
                    self.decide(self.request_buffered, host, &mut effects)
                } else {
                    self.held_or_continue()
                }
            }
            Event::ServiceAnswer {
                token,
                status,
                size,
            } => {
                self.service_answer(token, status, size, host, &mut effects);
                Action::Continue
            }
            Event::HttpAnswer {
                token,
                headers,
                size,
            } => {
                self.approval_answer(token, headers, size, host, &mut effects);
                Action::Continue
            }
            Event::ResponseHeaders { end_of_stream } => {
                self.response_headers(end_of_stream, host, &mut effects)
            }
            Event::ResponseBody {
                size,
                end_of_stream,
            } => self.response_body(size, end_of_stream, host, &mut effects),
            Event::ResponseTrailers => {
                self.response_trailers(host, &mut effects);
                Action::Continue
            }
            Event::StreamEnd => {
                self.stream_end(host, &mut effects);
                Action::Continue
            }
        };
        Step { action, effects }
    }

    fn policy(&self) -> &Policy {
        &self.plugin.policy
    }

    fn caller(&self) -> CallerScope<'_> {
        CallerScope {
            grant: &self.grant,
            session: self.session.as_deref(),
            role: self.role.as_deref(),
        }
    }

    /// Whether the answers of a stream that may carry other requests'
    /// answers (a GET, where servers replay answers on resumption and the
    /// legacy SSE transport sends them all; any request that is not a POST)
    /// are read as listings. Always, where the policy is enforced: besides
    /// the entries a caller's view hides, a `tasks/list` answer may show
    /// other grants' tasks to any caller.
    fn reads_replayed_answers(&self) -> bool {
        self.policy().mode == Mode::Enforce
    }

    /// Whether this caller's listings are read at all: when some caller's
    /// are rewritten, every caller's are marked private (the gate's
    /// decision for a listing request says the same).
    fn reads_listings(&self) -> bool {
        let policy = self.policy();
        policy.mode == Mode::Enforce && policy.listings_vary()
    }

    /// Ends this request's claim on its id once the server's answer is
    /// complete (before the caller can read it and send the id again). An
    /// answer Envoy made (a timeout, an unreachable server) does not end
    /// it: the server may still be working on the request, and would send
    /// its answer to whichever stream sent the id last.
    fn release_answered(&mut self, host: &mut dyn Host) {
        if self.in_flight.is_some()
            && host.property(&["response", "code_details"]).as_deref() == Some(b"via_upstream")
        {
            self.release_in_flight(host);
        }
    }

    fn release_in_flight(&mut self, host: &mut dyn Host) {
        if let Some(key) = self.in_flight.take() {
            bindings::release(host.store(), Table::InFlight, &key, host.now().as_secs());
        }
    }

    /// A request callback after the request was decided: held while the
    /// gate answers or waits, otherwise on its way.
    fn held_or_continue(&self) -> Action {
        if self.replied
            || self.held_for_good
            || self.pending.is_some()
            || self.pending_approval.is_some()
        {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn request_headers(
        &mut self,
        end_of_stream: bool,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        self.started = host.now();
        let plugin = Rc::clone(&self.plugin);
        let policy = &plugin.policy;
        let headers = host.request_headers();
        self.accepts_events = headers.raw("accept").is_some_and(|accept| {
            accept
                .windows(b"text/event-stream".len())
                .any(|window| window.eq_ignore_ascii_case(b"text/event-stream"))
        });
        for name in ROUTER_HEADERS {
            if headers.raw(name).is_some() {
                effects.push(Effect::RemoveRequestHeader(name));
            }
        }
        // A header the gate reads must be text, and given once (the server,
        // or a proxy on the way, might read another of its values), or the
        // gate cannot decide on it.
        if let Some((name, why)) = headers.first_unusable(headers_read(&policy.identity)) {
            let inspection = gate::refused_as_invalid(
                policy,
                &At(host.now()),
                self.caller(),
                response::unusable_header(name, why),
            );
            return self.apply(inspection, effects);
        }
        // MCP 2026-07-28 has no sessions: a session id sent with it names
        // nothing the server keeps, so any would do; such a request counts
        // under its grant, as one without the header does.
        let current = headers
            .get("mcp-protocol-version")
            .is_some_and(gate::is_current);
        self.session_header = headers
            .get(SESSION_HEADER)
            .filter(|session| !session.is_empty())
            .map(str::to_string);
        self.session = self.session_header.clone().filter(|_| !current);
        // Every request, GET streams included, belongs to an identified caller.
        if let Err(action) = self.identify(&headers, host, effects) {
            return action;
        }
        if self.audit.is_some() {
            // Monitor mode let an unidentified caller through: enforcement
            // would have stopped here, so nothing more is decided or counted.
            return self.forward();
        }
        if end_of_stream {
            return self.forward_bodiless(effects);
        }
        // Every request with a body is inspected, whatever its method and
        // however it is spelled: a server may route methods loosely.
        self.inspecting = true;
        self.post = headers
            .get(":method")
            .is_some_and(|method| method.eq_ignore_ascii_case("POST"));
        self.mcp_method = headers.get("mcp-method").map(str::to_string);
        self.mcp_name = headers.get("mcp-name").map(str::to_string);
        self.protocol_version = headers.get("mcp-protocol-version").map(str::to_string);
        // A body the gate cannot read must not reach a server that can.
        if let Some(encoding) = headers.get("content-encoding") {
            if !encoding.trim().eq_ignore_ascii_case("identity") {
                let inspection = gate::refused_as_invalid(
                    policy,
                    &At(host.now()),
                    self.caller(),
                    response::unsupported_encoding(encoding),
                );
                return self.apply(inspection, effects);
            }
        }
        if let Some(charset) = headers
            .get("content-type")
            .and_then(crate::mcp::unaccepted_charset)
        {
            let inspection = gate::refused_as_invalid(
                policy,
                &At(host.now()),
                self.caller(),
                response::unsupported_charset(charset),
            );
            return self.apply(inspection, effects);
        }
        let declared = headers
            .get("content-length")
            .and_then(|length| length.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > policy.max_body_bytes) {
            let inspection = gate::body_too_large(policy, &At(host.now()), self.caller());
            return self.apply(inspection, effects);
        }
        if policy.hold_request_headers {
            // Hold the headers until the body is decided (needs Envoy's
            // allow_on_headers_stop_iteration).
            return Action::Pause;
        }
        // The headers go upstream now, before the body is known: an answer
        // that may need reading (a listing, a task or request state it hands
        // out) must come back unencoded.
        effects.push(Effect::RemoveRequestHeader("accept-encoding"));
        self.request_headers_sent = true;
        Action::Continue
    }

    /// A request without a body: no call to decide (a GET stream, where the
    /// server replays answers on resumption, a DELETE, an empty POST). Its
    /// answers are rewritten all the same.
    fn forward_bodiless(&mut self, effects: &mut Vec<Effect>) -> Action {
        self.inspecting = false;
        if self.reads_replayed_answers() {
            if !self.request_headers_sent {
                effects.push(Effect::RemoveRequestHeader("accept-encoding"));
            }
            self.listing = Listing::Expected { id: Value::Null };
            self.replays = true;
        }
        self.forward()
    }

    /// Sets the caller's grant from the policy's identity source. `Err`: the
    /// request is refused (the answer is in `effects`).
    fn identify(
        &mut self,
        headers: &Headers,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Action> {
        let plugin = Rc::clone(&self.plugin);
        let policy = &plugin.policy;
        match &policy.identity {
            Identity::Anonymous => {}
            Identity::Header(header) => {
                self.grant = Identity::grant_from_value(headers.get(header)).to_string();
            }
            Identity::JwtClaim {
                provider_metadata,
                claim,
                role_claim,
            } => {
                let mut read_claim = |claim: &str, otherwise: &str| {
                    let path = [
                        "metadata",
                        "filter_metadata",
                        JWT_AUTHN_METADATA,
                        provider_metadata,
                        claim,
                    ];
                    host.property(&path).and_then(|bytes| {
                        let text = Identity::claim_text(&bytes);
                        if text.is_none() {
                            effects.push(Effect::Log {
                                level: Level::Warn,
                                line: format!("mcp-policy: JWT claim `{claim}` is not a string or an integer: {otherwise}"),
                            });
                        }
                        text
                    })
                };
                let value = read_claim(claim, "the caller is anonymous");
                self.grant = Identity::grant_from_value(value.as_deref()).to_string();
                if let Some(role_claim) = role_claim {
                    let claimed = read_claim(role_claim, "the caller has no role");
                    self.role = policy
                        .role_of(&self.grant, claimed.as_deref())
                        .map(str::to_string);
                }
            }
            Identity::BearerTokens(tokens) => {
                match Identity::grant_for_bearer(tokens, headers.get("authorization")) {
                    Ok(grant) => {
                        self.grant = grant.to_string();
                        // The token is for this gate, not for the server.
                        effects.push(Effect::RemoveRequestHeader("authorization"));
                    }
                    Err(error) => {
                        let mut inspection =
                            gate::unauthorized(policy, &At(host.now()), self.caller(), &error);
                        if let Some(audit) = inspection.audit.take() {
                            self.record(audit, effects);
                        }
                        // In monitor mode there is no reply: recorded, let through.
                        if let Some(reply) = inspection.reply {
                            return Err(self.reply(reply, effects));
                        }
                    }
                }
            }
        }
        if self.role.is_none() {
            self.role = policy.role_of(&self.grant, None).map(str::to_string);
        }
        Ok(())
    }

    fn request_body(
        &mut self,
        size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        if !self.inspecting {
            return self.held_or_continue();
        }
        if end_of_stream && size == 0 {
            // The body ended empty (an empty DATA frame ending an HTTP/2
            // stream, a chunked body of no chunks): bodiless after all.
            return self.forward_bodiless(effects);
        }
        self.request_buffered = size;
        if size as u64 > self.policy().max_body_bytes {
            let plugin = Rc::clone(&self.plugin);
            let inspection = gate::body_too_large(&plugin.policy, &At(host.now()), self.caller());
            return self.apply(inspection, effects);
        }
        if !end_of_stream {
            // Buffer until the whole body is here.
            return Action::Pause;
        }
        self.decide(size, host, effects)
    }

    /// Decides the complete, buffered body (`size` bytes of it).
    fn decide(&mut self, size: usize, host: &mut dyn Host, effects: &mut Vec<Effect>) -> Action {
        self.inspecting = false;
        // An unreadable body reads as empty: refused as malformed, never forwarded unread.
        let body = host.request_body(size);
        let plugin = Rc::clone(&self.plugin);
        let policy = &plugin.policy;
        let headers = McpHeaders {
            method: self.mcp_method.as_deref(),
            name: self.mcp_name.as_deref(),
            protocol_version: self.protocol_version.as_deref(),
            session: self.session_header.as_deref(),
        };
        let mut inspection = gate::inspect_request(
            policy,
            host.store(),
            &At(host.now()),
            self.caller(),
            headers,
            &body,
        );
        self.reservations = std::mem::take(&mut inspection.reservations);
        self.in_flight = inspection.in_flight.take();
        if let Some(line) = inspection.warning.take() {
            self.log_undecided(line, host.now().as_secs(), effects);
        }
        // Not a POST: answered as a GET stream is (where servers replay
        // answers on resumption, and ignore the body), so every answer is
        // read as a listing could be, as for a request without a body.
        if !self.post
            && inspection.reply.is_none()
            && inspection.filter_listing.is_none()
            && self.reads_replayed_answers()
        {
            inspection.filter_listing = Some(Value::Null);
            self.replays = true;
        }
        if let Some(target) = inspection.observe.take() {
            if !self.request_headers_sent {
                // What the answer hands out must be readable.
                effects.push(Effect::RemoveRequestHeader("accept-encoding"));
            }
            self.observer = Some(Observer {
                target,
                state_owner: inspection.state_owner,
                seen: Vec::new(),
                stream: false,
                blind: false,
            });
        }
        if let Some(id) = inspection.filter_listing.take() {
            if !self.request_headers_sent {
                // Encoded answers could not be read: ask for identity.
                effects.push(Effect::RemoveRequestHeader("accept-encoding"));
            }
            // An answer that started before the decision is already being
            // read as a listing (or is past reading): left as it is.
            if !self.response_started {
                self.listing = Listing::Expected { id };
            }
        }
        self.remember_url_elicitation = inspection.remember_url_elicitation;
        if let Some(body) = inspection.rewrite_body.take() {
            // Same length as what Envoy holds: content-length stays true.
            effects.push(Effect::ReplaceRequestBody { size, body });
        }
        if let Some(check) = inspection.approval.take() {
            if let Some(audit) = inspection.audit.take() {
                return self.ask_approval_service(check, audit, host, effects);
            }
        }
        if let Some(check) = inspection.global_check.take() {
            if let Some(audit) = inspection.audit.take() {
                return self.ask_rate_limit_service(check, audit, host, effects);
            }
        }
        self.apply(inspection, effects)
    }

    /// Holds the call and asks the rate-limit service about its global limits.
    fn ask_rate_limit_service(
        &mut self,
        check: GlobalCheck,
        audit: AuditRecord,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let Some(service) = self.policy().rate_limit_service.clone() else {
            let answer = Err("no rate_limit_service".to_string());
            return self.finish_global_check(&check, audit, answer, host, effects);
        };
        let lease = ratelimit::service::lease_id(host.random());
        let call = ServiceCall {
            cluster: service.cluster.clone(),
            service: ratelimit::service::SERVICE,
            method: ratelimit::service::METHOD,
            message: check.request(&service, &lease),
            timeout: Duration::from_millis(service.timeout_ms),
        };
        match host.dispatch_grpc(&call) {
            Ok(token) => {
                self.pending = Some(Pending {
                    token,
                    check,
                    audit,
                    lease,
                });
                Action::Pause
            }
            Err(err) => {
                let answer = Err(format!("cannot call cluster {:?}: {err}", service.cluster));
                self.finish_global_check(&check, audit, answer, host, effects)
            }
        }
    }

    fn service_answer(
        &mut self,
        token: u32,
        status: u32,
        size: usize,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) {
        let Some(pending) = self.pending.take_if(|pending| pending.token == token) else {
            return;
        };
        let answer = if status == 0 {
            Ok(host.service_answer(size))
        } else {
            Err(format!("gRPC status {status}"))
        };
        let answer = answer.as_deref().map_err(Clone::clone);
        let refused = answer.as_ref().is_ok_and(|bytes| {
            matches!(
                ratelimit::service::verdict(bytes, &pending.check.descriptors, 0),
                ratelimit::service::Verdict::OverLimit { .. }
            )
        });
        let action = self.finish_global_check(&pending.check, pending.audit, answer, host, effects);
        // Slots the service may hold for this exchange: given back when it
        // ends. An answer of over limit took nothing; any other may have
        // (a timeout, a failure after Redis ran the script).
        if !refused {
            self.global_leases = Some(GlobalLeases {
                check: pending.check,
                lease: pending.lease,
            });
        }
        if action == Action::Continue {
            effects.push(Effect::ResumeRequest);
        }
    }

    /// Holds the call and asks the approval service whether a person approved it.
    fn ask_approval_service(
        &mut self,
        check: ApprovalCheck,
        audit: AuditRecord,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let Some(service) = self.policy().approval_service.clone() else {
            let verdict = approval::Verdict::Unavailable("no approval_service".to_string());
            return self.finish_approval(&check, audit, verdict, host, effects);
        };
        let call = HttpCall {
            cluster: service.cluster.clone(),
            path: approval::CHECK_PATH,
            body: check.request.clone(),
            timeout: Duration::from_millis(service.timeout_ms),
        };
        match host.dispatch_http(&call) {
            Ok(token) => {
                self.pending_approval = Some(PendingApproval {
                    token,
                    check,
                    audit,
                });
                Action::Pause
            }
            Err(err) => {
                let verdict = approval::Verdict::Unavailable(format!(
                    "cannot call cluster {:?}: {err}",
                    service.cluster
                ));
                self.finish_approval(&check, audit, verdict, host, effects)
            }
        }
    }

    fn approval_answer(
        &mut self,
        token: u32,
        headers: usize,
        size: usize,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) {
        let Some(pending) = self
            .pending_approval
            .take_if(|pending| pending.token == token)
        else {
            return;
        };
        // Without headers there is no answer to read (Envoy has none).
        let status = if headers > 0 {
            host.http_answer_header(":status")
                .and_then(|status| String::from_utf8(status).ok())
                .and_then(|status| status.trim().parse::<u16>().ok())
        } else {
            None
        };
        let body = if headers > 0 && size > 0 {
            host.http_answer_body(size.min(MAX_APPROVAL_ANSWER_BYTES))
        } else {
            Vec::new()
        };
        let verdict = approval::verdict(status, &body);
        let action = self.finish_approval(&pending.check, pending.audit, verdict, host, effects);
        if action == Action::Continue {
            effects.push(Effect::ResumeRequest);
        }
    }

    /// Applies the approval service's answer (or failure) to a held call:
    /// answer the caller, or go on to the limits (and perhaps the
    /// rate-limit service) and forward.
    fn finish_approval(
        &mut self,
        check: &ApprovalCheck,
        mut audit: AuditRecord,
        verdict: approval::Verdict,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let plugin = Rc::clone(&self.plugin);
        let mut inspection = gate::complete_approval(
            &plugin.policy,
            host.store(),
            host.now(),
            self.caller(),
            check,
            verdict,
            &mut audit,
        );
        self.reservations = std::mem::take(&mut inspection.reservations);
        if let Some(line) = inspection.warning.take() {
            self.log_undecided(line, host.now().as_secs(), effects);
        }
        if let Some(global) = inspection.global_check.take() {
            return self.ask_rate_limit_service(global, audit, host, effects);
        }
        inspection.audit = Some(audit);
        self.apply(inspection, effects)
    }

    /// Logs a call the gate could not decide, at most once per
    /// [`UNDECIDED_LOG_SECONDS`] for the VM (with how many were not logged
    /// since the last line).
    fn log_undecided(&self, line: String, now: u64, effects: &mut Vec<Effect>) {
        let logged = &self.plugin.undecided_logged;
        match logged.get() {
            Some((at, skipped)) if now < at.saturating_add(UNDECIDED_LOG_SECONDS) => {
                logged.set(Some((at, skipped.saturating_add(1))));
            }
            earlier => {
                let skipped = earlier.map_or(0, |(_, skipped)| skipped);
                let line = if skipped == 0 {
                    line
                } else {
                    format!("{line} ({skipped} more not logged since the last such line)")
                };
                logged.set(Some((now, 0)));
                effects.push(Effect::Log {
                    level: Level::Warn,
                    line,
                });
            }
        }
    }

    /// Keys this VM's owner digests with the Envoy's table key, read once
    /// per plugin (the first stream of a VM reads or writes it). Until it
    /// can be read, digests stay unkeyed and each event tries again.
    fn use_table_key(&self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let key = match self.plugin.table_key.get() {
            Some(key) => key,
            None => {
                let read = {
                    let random = host.random();
                    ratelimit::table_key(host.store(), || random)
                };
                match read {
                    Ok(key) => {
                        self.plugin.table_key.set(Some(key));
                        key
                    }
                    Err(err) => {
                        effects.push(Effect::Log {
                            level: Level::Warn,
                            line: format!("mcp-policy: counter tables' key unreadable: {err}"),
                        });
                        return;
                    }
                }
            }
        };
        ratelimit::use_table_key(key);
    }

    /// Applies the rate-limit service's answer (or failure) to a held call.
    fn finish_global_check(
        &mut self,
        check: &GlobalCheck,
        mut audit: AuditRecord,
        answer: Result<&[u8], String>,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let now = host.now().as_secs();
        let gate::GlobalOutcome { reply, refused } =
            gate::complete_global_check(self.policy(), check, answer, now, &mut audit);
        if refused {
            self.release_quota("the rate-limit service refused or failed", host, effects);
        }
        let inspection = Inspection {
            reply,
            audit: Some(audit),
            ..Inspection::default()
        };
        self.apply(inspection, effects)
    }

    /// Records a decision: counters, filter state, and the audit record
    /// written when the stream ends.
    fn record(&mut self, audit: AuditRecord, effects: &mut Vec<Effect>) {
        for index in self
            .plugin
            .metrics
            .counters(&self.plugin.policy, &audit, self.role.as_deref())
        {
            effects.push(Effect::Count(index));
        }
        filter_state(&audit, effects);
        self.audit = Some(audit);
    }

    /// Records an inspection and carries it out: answer in place of the
    /// server, or let the request go on.
    fn apply(&mut self, inspection: Inspection, effects: &mut Vec<Effect>) -> Action {
        if let Some(audit) = inspection.audit {
            self.record(audit, effects);
        }
        match inspection.reply {
            Some(reply) => self.reply(reply, effects),
            None => self.forward(),
        }
    }

    /// The request goes on towards the server.
    fn forward(&mut self) -> Action {
        self.inspecting = false;
        self.forwarded = true;
        self.request_headers_sent = true;
        Action::Continue
    }

    /// Answers in place of the server and holds the request for good.
    fn reply(&mut self, reply: Reply, effects: &mut Vec<Effect>) -> Action {
        self.inspecting = false;
        if self.response_started {
            // The server answered already (it may, once the headers went
            // upstream): Envoy cannot send another answer. The body stays
            // held, so the call never reaches the server whole.
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!(
                    "mcp-policy: refused a request after the server had started answering; its body was not forwarded (HTTP {})",
                    reply.status
                ),
            });
            // The answer already started is read to its end (a listing
            // stays filtered); the request's later pieces stay held.
            self.held_for_good = true;
            return Action::Pause;
        }
        // Nothing of the server's comes back: no answer to read, and the
        // gate's own answer (which Envoy passes through this filter's
        // response callbacks) hands out nothing to bind.
        self.listing = Listing::Off;
        self.observer = None;
        self.replied = true;
        effects.push(Effect::Reply {
            status: reply.status,
            body: reply.body,
        });
        Action::Pause
    }

    fn response_headers(
        &mut self,
        end_of_stream: bool,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        if end_of_stream {
            self.release_answered(host);
        }
        if self.replied {
            // The gate's own answer on its way out.
            return Action::Continue;
        }
        self.response_started = true;
        if std::mem::take(&mut self.remember_url_elicitation) {
            self.remember_session_capability(host, effects);
        }
        // Headers not held: the server may answer before the body is
        // decided, so before the gate knows whether this is a listing. It
        // is read as one could be (an answer that lists nothing passes).
        if self.inspecting
            && matches!(self.listing, Listing::Off)
            && !self.plugin.policy.hold_request_headers
            && self.reads_listings()
        {
            self.listing = Listing::Expected { id: Value::Null };
        }
        let listing = matches!(self.listing, Listing::Expected { .. });
        if self.observer.is_none() && !listing {
            return Action::Continue;
        }
        // Read once for the observer and the listing: each read fetches
        // every response header from Envoy.
        let text = |value: Option<Vec<u8>>| {
            value
                .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_ascii_lowercase())
                .unwrap_or_default()
        };
        let content_type = text(host.response_header("content-type"));
        let json = content_type.starts_with("application/json")
            || content_type
                .split(';')
                .next()
                .is_some_and(|media| media.trim_end().ends_with("+json"));
        // A client that asked for events reads a successful answer to its
        // GET as an event stream whatever its Content-Type says (the
        // TypeScript SDK does not look at it), so the filter reads it as
        // one too. Any other answer that is neither JSON nor an event
        // stream (a 405 in text, a page, a download for a client that did
        // not ask for events) carries no message a client reads.
        let stream = content_type.starts_with("text/event-stream")
            || (self.replays
                && self.accepts_events
                && !json
                && text(host.response_header(":status")).starts_with('2'));
        let encoding = text(host.response_header("content-encoding"));
        let encoded = !encoding.is_empty() && encoding != "identity";
        if let Some(observer) = &mut self.observer {
            observer.stream = stream;
            observer.blind = encoded;
        }
        let Listing::Expected { id } = std::mem::replace(&mut self.listing, Listing::Off) else {
            return Action::Continue;
        };
        if end_of_stream {
            return Action::Continue;
        }
        if self.replays && !stream && !json {
            return Action::Continue;
        }
        // The body may change length.
        effects.push(Effect::RemoveResponseHeader("content-length"));
        self.listing = if encoded {
            // Asked for identity, got an encoding: the filter cannot read
            // it, so the caller gets an error instead.
            effects.push(Effect::RemoveResponseHeader("content-encoding"));
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!("mcp-policy: an answer that may list hidden entries came {encoding}-encoded; replaced by an error"),
            });
            Listing::Blocked {
                id,
                stream,
                sent: false,
            }
        } else if stream {
            Listing::Stream(SseFilter::new(response::unreadable_answer(&id)))
        } else {
            Listing::Json { id }
        };
        Action::Continue
    }

    fn response_body(
        &mut self,
        size: usize,
        end_of_stream: bool,
        host: &mut dyn Host,
        effects: &mut Vec<Effect>,
    ) -> Action {
        if end_of_stream {
            self.release_answered(host);
        }
        self.response_buffered = size;
        let observed = std::mem::take(&mut self.response_observed);
        if matches!(self.listing, Listing::Json { .. })
            && !end_of_stream
            && self
                .observer
                .as_ref()
                .is_some_and(|observer| !observer.blind)
        {
            // Held below: the next callback hands this buffer over again,
            // and the observer reads it now. (An observer that comes later
            // reads the held buffer from its start.)
            self.response_observed = size;
        }
        if let Some(observer) = &mut self.observer {
            if !observer.blind {
                let buffer = host.response_body(size);
                let chunk = buffer.get(observed..).unwrap_or_default();
                if observer.seen.len() + chunk.len() > MAX_OBSERVED_BYTES {
                    observer.blind = true;
                    observer.seen = Vec::new();
                } else {
                    observer.seen.extend_from_slice(chunk);
                }
            }
            if end_of_stream {
                self.bind_handed_out(host, effects);
            } else if observer.stream {
                // An event stream stays open after the answer: bind what its
                // complete events hand out now, before the caller reads them
                // (it may ask about the task before the stream ends).
                self.bind_complete_events(host, effects);
            }
        }
        if matches!(self.listing, Listing::Json { .. }) {
            if !end_of_stream {
                // Buffer until the whole answer is here.
                return Action::Pause;
            }
            self.finish_json(size, host, effects);
            return Action::Continue;
        }
        if matches!(self.listing, Listing::Off | Listing::Expected { .. }) {
            return Action::Continue;
        }
        let chunk = match self.listing {
            Listing::Stream(_) => host.response_body(size),
            _ => Vec::new(),
        };
        let view = self
            .plugin
            .policy
            .view_as(&self.grant, self.role.as_deref());
        let (store, now) = (host.store(), host.now().as_secs());
        let owner = bindings::grant_owner(&self.grant);
        let shows = |kind: Kind, name: &str| match kind {
            Kind::Task => bindings::owner(store, Table::Tasks, name, now) == Some(owner),
            kind => view.shows(kind, name),
        };
        match &mut self.listing {
            Listing::Off | Listing::Expected { .. } | Listing::Json { .. } => {}
            Listing::Stream(filter) => {
                let out = filter.push(&chunk, end_of_stream, &shows);
                if out != chunk {
                    effects.push(Effect::ReplaceResponseBody { size, body: out });
                }
            }
            Listing::Blocked { id, stream, sent } => {
                let body = match (*stream, *sent, end_of_stream) {
                    (true, false, _) => {
                        *sent = true;
                        let mut event = b"data: ".to_vec();
                        event.extend_from_slice(&response::unreadable_answer(id));
                        event.extend_from_slice(b"\n\n");
                        event
                    }
                    (false, false, true) => {
                        *sent = true;
                        response::unreadable_answer(id)
                    }
                    _ => Vec::new(),
                };
                effects.push(Effect::ReplaceResponseBody { size, body });
            }
        }
        Action::Continue
    }

    fn response_trailers(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        self.release_answered(host);
        if self.observer.is_some() {
            self.bind_handed_out(host, effects);
        }
        // A JSON answer followed by trailers never sees end_of_stream in the
        // body callback: finish it here.
        if matches!(self.listing, Listing::Json { .. }) {
            self.finish_json(self.response_buffered, host, effects);
        }
    }

    /// Rewrites a complete JSON answer.
    fn finish_json(&mut self, size: usize, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let Listing::Json { id } = std::mem::replace(&mut self.listing, Listing::Off) else {
            return;
        };
        let body = host.response_body(size);
        let view = self
            .plugin
            .policy
            .view_as(&self.grant, self.role.as_deref());
        let (store, now) = (host.store(), host.now().as_secs());
        let owner = bindings::grant_owner(&self.grant);
        let shows = |kind: Kind, name: &str| match kind {
            Kind::Task => bindings::owner(store, Table::Tasks, name, now) == Some(owner),
            kind => view.shows(kind, name),
        };
        match listing::filter_json_body(&body, &shows) {
            Filtered::Unchanged => {}
            Filtered::Rewritten(body) => effects.push(Effect::ReplaceResponseBody { size, body }),
            Filtered::Unreadable => {
                effects.push(Effect::Log {
                    level: Level::Warn,
                    line: "mcp-policy: an answer that may list hidden entries is not JSON; replaced by an error".to_string(),
                });
                effects.push(Effect::ReplaceResponseBody {
                    size,
                    body: response::unreadable_answer(&id),
                });
            }
        }
    }

    /// An `initialize` whose client declared URL-mode elicitation was
    /// answered: its session's client can be shown links (MCP 2025-11-25).
    fn remember_session_capability(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let Some(session) = host
            .response_header(SESSION_HEADER)
            .and_then(|value| String::from_utf8(value).ok())
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
        else {
            return;
        };
        let now = host.now().as_secs();
        let bound = bindings::bind(
            host.store(),
            Table::UrlElicitation,
            &session,
            &bindings::grant_owner(&self.grant),
            now,
            bindings::SESSION_CAPABILITY_TTL_SECONDS,
        );
        if let Err(err) = bound {
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!("mcp-policy: could not remember a session's URL elicitation: {err}"),
            });
        }
    }

    /// Binds what the watched answer handed out to its caller: a task to the
    /// grant, a `requestState` to the grant and target.
    fn bind_handed_out(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let Some(observer) = self.observer.take() else {
            return;
        };
        if observer.blind {
            if observer.target.kind == Kind::Tool {
                effects.push(Effect::Log {
                    level: Level::Debug,
                    line:
                        "mcp-policy: a tool's answer was encoded or too large to read for task ids"
                            .to_string(),
                });
            }
            return;
        }
        let now = host.now().as_secs();
        if observer.target.name.is_empty() {
            // A tools/list answer: remember what the server says of its tools.
            let listed = bindings::listed_hints(&observer.seen, observer.stream);
            for err in bindings::remember_hints(host.store(), &listed, now) {
                effects.push(Effect::Log {
                    level: Level::Warn,
                    line: format!("mcp-policy: {err}"),
                });
            }
            return;
        }
        for handed in bindings::handed_out(&observer.seen, observer.stream) {
            let bound = match &handed {
                // The latest creation wins: a server that hands out an id
                // again (numbering afresh after a restart) made a new task,
                // this caller's, whoever held the old one.
                HandedOut::Task { id, ttl_seconds } => bindings::set(
                    host.store(),
                    Table::Tasks,
                    id,
                    &bindings::grant_owner(&self.grant),
                    now,
                    *ttl_seconds,
                ),
                // The gate's own state (an approval's) is never the server's.
                HandedOut::RequestState(state) if crate::approval::is_gate_state(state) => Ok(()),
                HandedOut::RequestState(state) => match &observer.state_owner {
                    Some(owner) => bindings::bind_state(host.store(), state, owner, now),
                    None => Ok(()),
                },
            };
            if let Err(err) = bound {
                effects.push(Effect::Log {
                    level: Level::Warn,
                    line: format!("mcp-policy: could not bind {handed:?} to its caller: {err}"),
                });
            }
        }
    }

    /// Binds what the complete events seen so far hand out, and keeps only
    /// the unfinished rest.
    fn bind_complete_events(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let Some(observer) = &mut self.observer else {
            return;
        };
        let Some(end) = last_event_end(&observer.seen) else {
            return;
        };
        let rest = observer.seen.split_off(end);
        let complete = std::mem::replace(&mut observer.seen, rest);
        let (stream, target, blind) = (observer.stream, observer.target.clone(), observer.blind);
        let state_owner = observer.state_owner;
        // Bind with a one-off observer over the complete events.
        let kept = self.observer.replace(Observer {
            target,
            state_owner,
            seen: complete,
            stream,
            blind,
        });
        self.bind_handed_out(host, effects);
        self.observer = kept;
    }

    fn stream_end(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        // A request that never reached the server whole frees its id. One
        // that did and got no complete answer (the caller left, the server
        // reset it, Envoy timed out) keeps it a while: the server may still
        // answer it, on whichever stream sent the id last.
        if !self.forwarded {
            self.release_in_flight(host);
        } else if let Some(key) = self.in_flight.take() {
            let until = host.now().as_secs() + bindings::ABANDONED_CLAIM_SECONDS;
            bindings::shorten(
                host.store(),
                Table::InFlight,
                &key,
                host.now().as_secs(),
                until,
            );
        }
        // An answer cut off (the caller left): bind what it handed out so far.
        if self.forwarded && self.observer.is_some() {
            self.bind_handed_out(host, effects);
        }
        if let Some(pending) = self.pending.take() {
            // The caller left while the rate-limit service decided: the call
            // was never forwarded. Slots it asked for are given back (if the
            // release reaches the service before the acquisition, the lease
            // ends by itself). Recorded (and counted) once, as what it is.
            let mut audit = pending.audit;
            audit.decision = crate::decision::Outcome::Abandoned;
            audit.enforced = true;
            self.record(audit, effects);
            self.global_leases = Some(GlobalLeases {
                check: pending.check,
                lease: pending.lease,
            });
        }
        if let Some(pending) = self.pending_approval.take() {
            // The caller left while the approval service decided: nothing
            // was forwarded, and nobody was told to wait. Recorded (and
            // counted) once, as what it is.
            let mut audit = pending.audit;
            audit.decision = crate::decision::Outcome::Abandoned;
            audit.enforced = true;
            self.record(audit, effects);
        }
        self.warn_if_leases_ran_out(host, effects);
        let mut code = None;
        if !self.reservations.is_empty() {
            if !self.forwarded {
                self.release_quota("the call was not forwarded", host, effects);
            } else if let Some(why) = self.did_not_run(host, &mut code) {
                self.release_quota(&why, host, effects);
            } else {
                self.end_slots(host, effects);
            }
        }
        self.release_global_slots(host, effects);
        if let Some(mut audit) = self.audit.take() {
            let code = *code.get_or_insert_with(|| int_property(host, &["response", "code"]));
            audit.status = code.and_then(|code| u16::try_from(code).ok());
            let now = host.now();
            let elapsed = now.saturating_sub(self.started);
            audit.duration_ms = u64::try_from(elapsed.as_millis()).ok();
            audit.revision = Some(self.plugin.metrics.revision().to_string());
            // The record as filter state, for an access log that writes it
            // as it is (one JSON object per line), whatever Envoy's log
            // level; the log line only when Envoy would write it.
            // Serialised once for both.
            let json = audit.to_json();
            let line = self.plugin.logs_at(host, now, Level::Info).then(|| {
                let mut line = String::with_capacity(crate::audit::AUDIT_PREFIX.len() + json.len());
                line.push_str(crate::audit::AUDIT_PREFIX);
                line.push_str(&json);
                line
            });
            effects.push(Effect::FilterState {
                name: AUDIT_FILTER_STATE,
                value: json,
            });
            if let Some(line) = line {
                effects.push(Effect::Log {
                    level: Level::Info,
                    line,
                });
            }
        }
    }

    /// Why a forwarded call provably did not run, if it did not: Envoy could
    /// not reach the server, or the server itself answered 429 or 503 (it
    /// did not take the call). Anything else counts: any other answer, a
    /// timeout, a reset by either side, a client that went away.
    /// `code`: the response code, read once per stream.
    fn did_not_run(&self, host: &mut dyn Host, code: &mut Option<Option<u64>>) -> Option<String> {
        let code = code
            .get_or_insert_with(|| int_property(host, &["response", "code"]))
            .unwrap_or(0);
        if (200..300).contains(&code) {
            // An answer: the call ran (Envoy answers 2xx itself only from a
            // direct_response route, and then the gate keeps the quota).
            return None;
        }
        let details = host.property(&["response", "code_details"]);
        if details.as_deref() == Some(b"via_upstream") {
            return matches!(code, 429 | 503).then(|| format!("the server answered {code}"));
        }
        let flags = int_property(host, &["response", "flags"]).unwrap_or(0);
        (flags & REACHED_FLAGS == 0 && flags & NOT_REACHED_FLAGS != 0)
            .then(|| format!("Envoy could not reach the server (response flags {flags:#x})"))
    }

    /// Gives back the concurrency slots of a call that ran (its window units stay).
    fn end_slots(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let failed = ratelimit::end_calls(host.store(), &self.reservations);
        self.reservations.clear();
        if !failed.is_empty() {
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!(
                    "mcp-policy: could not give back concurrency slots {failed:?}; they end with their lease"
                ),
            });
        }
    }

    /// Sends the rate-limit service the release of the slots it leased to
    /// this exchange. Its answer is not awaited (the stream is gone); if the
    /// release is lost, the lease ends by itself.
    fn release_global_slots(&mut self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        let Some(leases) = self.global_leases.take() else {
            return;
        };
        let Some(service) = self.policy().rate_limit_service.clone() else {
            return;
        };
        let Some(message) = leases.check.release(&service, &leases.lease) else {
            return;
        };
        let call = ServiceCall {
            cluster: service.cluster.clone(),
            service: ratelimit::service::SERVICE,
            method: ratelimit::service::METHOD,
            message,
            timeout: Duration::from_millis(service.timeout_ms),
        };
        if let Err(err) = host.dispatch_grpc(&call) {
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!(
                    "mcp-policy: could not release concurrency slots through cluster {:?} ({err}); they end with their lease",
                    service.cluster
                ),
            });
        }
    }

    /// A call that outlived the lease of a slot it held was not counted
    /// after the lease ended: said in the log, so `lease_seconds` can be raised.
    fn warn_if_leases_ran_out(&self, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        // The clock is read only for calls that hold slots (one crossing
        // into Envoy less for every other call).
        let holds_slots = self
            .reservations
            .iter()
            .any(|reservation| matches!(reservation, Reservation::Slot(_)))
            || self.global_leases.is_some();
        if !self.forwarded || !holds_slots {
            return;
        }
        let now = host.now();
        let elapsed = now.saturating_sub(self.started).as_secs();
        let local = self
            .reservations
            .iter()
            .filter_map(|reservation| match reservation {
                Reservation::Slot(lease) if lease.expires <= now.as_secs() => {
                    Some(lease.key.as_str())
                }
                _ => None,
            });
        let global = self.global_leases.iter().flat_map(|leases| {
            leases
                .check
                .descriptors
                .iter()
                .filter_map(move |descriptor| match descriptor.limit.kind {
                    crate::policy::LimitKind::Concurrent { lease_seconds, .. }
                        if elapsed >= lease_seconds =>
                    {
                        Some(descriptor.limit.counter.as_str())
                    }
                    _ => None,
                })
        });
        let ran_out: Vec<&str> = local.chain(global).collect();
        if !ran_out.is_empty() {
            effects.push(Effect::Log {
                level: Level::Warn,
                line: format!(
                    "mcp-policy: a call lasted {elapsed}s, longer than the lease of its concurrency slots {ran_out:?}: it was not counted in flight after the lease ended (raise lease_seconds)"
                ),
            });
        }
    }

    /// Gives back the quota of a call that did not happen.
    fn release_quota(&mut self, why: &str, host: &mut dyn Host, effects: &mut Vec<Effect>) {
        if self.reservations.is_empty() {
            return;
        }
        let failed = ratelimit::release(host.store(), &self.reservations);
        self.reservations.clear();
        let (level, line) = if failed.is_empty() {
            (Level::Info, format!("mcp-policy: quota given back ({why})"))
        } else {
            (
                Level::Warn,
                format!("mcp-policy: could not give back quota ({why}) for {failed:?}"),
            )
        };
        effects.push(Effect::Log { level, line });
    }
}

/// Where the last complete event of an event stream ends (after its blank
/// line), if one is complete.
fn last_event_end(stream: &[u8]) -> Option<usize> {
    let separators: [&[u8]; 3] = [b"\n\n", b"\r\n\r\n", b"\r\r"];
    separators
        .iter()
        .filter_map(|separator| {
            stream
                .windows(separator.len())
                .rposition(|window| window == *separator)
                .map(|at| at + separator.len())
        })
        .max()
}

/// The request headers the gate reads (each must be text if present).
fn headers_read(identity: &Identity) -> impl Iterator<Item = &str> {
    let identity = match identity {
        Identity::Header(header) => Some(header.as_str()),
        Identity::BearerTokens(_) => Some("authorization"),
        Identity::Anonymous | Identity::JwtClaim { .. } => None,
    };
    [
        SESSION_HEADER,
        "mcp-method",
        "mcp-name",
        "mcp-protocol-version",
        "content-encoding",
        "content-length",
        "content-type",
    ]
    .into_iter()
    .chain(identity)
}

/// The decision as filter state, for Envoy's access log and CEL:
/// `%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%`.
fn filter_state(audit: &AuditRecord, effects: &mut Vec<Effect>) {
    let fields = [
        ("mcp_policy.grant", Some(audit.grant.as_str())),
        ("mcp_policy.tool", audit.tool.as_deref()),
        ("mcp_policy.decision", Some(audit.decision.as_str())),
        ("mcp_policy.rule", audit.rule.as_deref()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            effects.push(Effect::FilterState {
                name,
                value: value.to_string(),
            });
        }
    }
}

/// An integer property (Envoy passes them as 8 little-endian bytes).
fn int_property(host: &mut dyn Host, path: &[&str]) -> Option<u64> {
    host.property(path)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_le_bytes)
}

/// The host's clock at one instant, for the core's functions that take a [`Clock`].
struct At(Duration);

impl Clock for At {
    fn unix_time(&self) -> Duration {
        self.0
    }
}

#[cfg(test)]
mod approval_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod quota_tests;
