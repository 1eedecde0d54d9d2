//! A simulated Envoy: drives an [`Exchange`] through a stream's life the way
//! Envoy 1.40 calls a proxy-wasm HTTP filter, and applies its effects with
//! Envoy's rules. An effect Envoy would refuse (the proxy-wasm SDK then
//! panics, and the VM is gone for every later request on that worker) panics
//! here, so a unit test fails where production would break.
//!
//! What it models:
//! - request headers go upstream when the headers callback continues (or, if
//!   it paused, when a later callback continues or the request is resumed);
//!   from then on they cannot change;
//! - the request body is buffered while callbacks pause and goes upstream
//!   when one continues; the upstream sees exactly what was let through
//!   (see [`Upstream`]);
//! - the request body can be replaced only in the request body and trailers
//!   callbacks, while Envoy holds it;
//! - HTTP calls (`dispatch_http_call`) need `:method`, `:path` and
//!   `:authority`; their answer's headers and body can be read only in the
//!   answer's callback, and only when there is an answer (a failed call has
//!   no headers: reading them is refused);
//! - the gate's local reply is possible until the response starts
//!   downstream; it then runs through the response callbacks like any answer;
//! - response headers change only in their callback, a response chunk only
//!   in its own; a paused response body is buffered;
//! - stream properties (`response.code`, `response.code_details`,
//!   `response.flags`) are set as Envoy sets them for answers from the
//!   server, answers Envoy makes itself, and resets;
//! - shared data with Envoy's compare-and-swap ([`MemorySharedData`]).
//!
//! A test harness, compiled into the library so benches and fuzzers can use
//! it; the module Envoy loads never references it and the linker drops it.
#![allow(clippy::panic)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::{Action, Effect, Event, Exchange, Headers, Host, HttpCall, Level, Plugin, ServiceCall};
use crate::host::SharedStore;
use crate::memory::MemorySharedData;

/// Envoy response flags the simulator sets (`response.flags`).
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28;
}

/// One Envoy process: a plugin configuration, its shared data, clock,
/// counters and log.
pub struct SimEnvoy {
    pub plugin: Rc<Plugin>,
    pub store: MemorySharedData,
    now: RefCell<Duration>,
    counters: RefCell<Vec<u64>>,
    logs: RefCell<Vec<(Level, String)>>,
    next_token: RefCell<u32>,
    /// Envoy's log level for the filter (`/logging?wasm=warning` changes it).
    log_level: RefCell<Level>,
    /// How often the filter read it.
    log_level_reads: RefCell<usize>,
    next_random: RefCell<u128>,
}

impl SimEnvoy {
    /// Envoy with this policy; panics if the policy does not load.
    pub fn new(policy: &str) -> SimEnvoy {
        let plugin = match Plugin::configure(policy.as_bytes()) {
            Ok(plugin) => plugin,
            Err(err) => panic!("the policy does not load: {err}"),
        };
        let counters = vec![0; plugin.metrics.len()];
        SimEnvoy {
            plugin: Rc::new(plugin),
            store: MemorySharedData::default(),
            now: RefCell::new(Duration::from_secs(1_800_000_000)),
            counters: RefCell::new(counters),
            logs: RefCell::new(Vec::new()),
            next_token: RefCell::new(1),
            log_level: RefCell::new(Level::Info),
            log_level_reads: RefCell::new(0),
            next_random: RefCell::new(0),
        }
    }

    /// Sets Envoy's log level for the filter.
    pub fn set_log_level(&self, level: Level) {
        *self.log_level.borrow_mut() = level;
    }

    /// How often the filter read Envoy's log level.
    pub fn log_level_reads(&self) -> usize {
        *self.log_level_reads.borrow()
    }

    pub fn set_time(&self, seconds: u64) {
        *self.now.borrow_mut() = Duration::from_secs(seconds);
    }

    /// A new HTTP stream.
    pub fn stream(&self) -> SimStream<'_> {
        SimStream {
            exchange: Exchange::new(Rc::clone(&self.plugin)),
            state: StreamState::new(self),
        }
    }

    /// The sum of the counters of `metric` whose labels include every
    /// `(label, value)` of `selector`, as a Prometheus query would add them
    /// up: `sum(mcp_policy_decisions_total{decision="allowed"})` is
    /// `sum(DECISIONS, &[("decision", "allowed")])`.
    pub fn sum(&self, metric: &str, selector: &[(&str, &str)]) -> u64 {
        let catalog = &self.plugin.metrics;
        let counters = self.counters.borrow();
        (0..catalog.len())
            .filter(|index| {
                catalog
                    .series(*index)
                    .is_some_and(|series| series.matches(metric, selector))
            })
            .map(|index| counters.get(index).copied().unwrap_or(0))
            .sum()
    }

    /// Every line logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }

    /// The audit lines logged so far, as JSON.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .borrow()
            .iter()
            .filter_map(|(_, line)| line.strip_prefix(crate::audit::AUDIT_PREFIX))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }
}

/// What reached the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// The request headers, once they went upstream.
    pub headers: Option<Headers>,
    /// The body bytes that went upstream.
    pub body: Vec<u8>,
    /// Whether the request went upstream whole (end of stream).
    pub complete: bool,
}

impl Upstream {
    /// Whether any part of the request reached the server.
    pub fn started(&self) -> bool {
        self.headers.is_some()
    }
}

/// What the caller received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Downstream {
    pub status: Option<u16>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The answer came from the gate (a local reply).
    pub from_gate: bool,
}

impl Downstream {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// An HTTP call's answer: headers (none: the call failed) and body.
type HttpAnswer = (Vec<(String, Vec<u8>)>, Vec<u8>);

/// Which callback Envoy is in: what it permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Async,
    End,
}

struct StreamState<'e> {
    envoy: &'e SimEnvoy,
    /// The store as this stream sees it, counting calls.
    store: CountingStore<'e>,
    /// Host calls made for this stream: reads, store calls, effects.
    host_calls: std::cell::Cell<usize>,
    phase: Phase,
    request_headers: Headers,
    /// The request headers went upstream.
    request_headers_sent: bool,
    /// The downstream request ended (end of stream seen).
    request_ended: bool,
    /// Body bytes Envoy holds for the filter.
    request_buffer: Vec<u8>,
    /// A request callback paused and nothing resumed it.
    request_held: bool,
    upstream: Upstream,
    response_headers: Vec<(String, Vec<u8>)>,
    response_headers_sent: bool,
    response_buffer: Vec<u8>,
    downstream: Downstream,
    /// The gate's answer, when it sent one.
    local_reply: Option<(u16, Vec<u8>)>,
    calls: Vec<(u32, ServiceCall)>,
    answer: Vec<u8>,
    fail_dispatch: bool,
    http_calls: Vec<(u32, HttpCall)>,
    /// The HTTP call's answer being delivered: its headers and body.
    http_answer: Option<HttpAnswer>,
    properties: HashMap<String, Vec<u8>>,
    filter_state: Vec<(String, String)>,
}

impl<'e> StreamState<'e> {
    fn new(envoy: &'e SimEnvoy) -> Self {
        StreamState {
            envoy,
            store: CountingStore {
                inner: &envoy.store,
                calls: std::cell::Cell::new(0),
            },
            host_calls: std::cell::Cell::new(0),
            phase: Phase::Idle,
            request_headers: Headers::default(),
            request_headers_sent: false,
            request_ended: false,
            request_buffer: Vec::new(),
            request_held: false,
            upstream: Upstream::default(),
            response_headers: Vec::new(),
            response_headers_sent: false,
            response_buffer: Vec::new(),
            downstream: Downstream::default(),
            local_reply: None,
            calls: Vec::new(),
            answer: Vec::new(),
            fail_dispatch: false,
            http_calls: Vec::new(),
            http_answer: None,
            properties: HashMap::new(),
            filter_state: Vec::new(),
        }
    }

    fn set_int(&mut self, path: &str, value: u64) {
        self.properties
            .insert(path.to_string(), value.to_le_bytes().to_vec());
    }

    /// Sends what Envoy holds of the request upstream.
    fn flush_request(&mut self) {
        if !self.request_headers_sent {
            self.request_headers_sent = true;
            self.upstream.headers = Some(self.request_headers.clone());
        }
        self.upstream.body.append(&mut self.request_buffer);
        if self.request_ended {
            self.upstream.complete = true;
        }
        self.request_held = false;
    }
}

impl Host for StreamState<'_> {
    fn now(&self) -> Duration {
        self.host_calls.set(self.host_calls.get() + 1);
        *self.envoy.now.borrow()
    }

    fn store(&self) -> &dyn SharedStore {
        &self.store
    }

    fn request_headers(&mut self) -> Headers {
        self.host_calls.set(self.host_calls.get() + 1);
        self.request_headers.clone()
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        self.host_calls.set(self.host_calls.get() + 1);
        if !matches!(self.phase, Phase::RequestBody | Phase::RequestTrailers) {
            panic!(
                "the request body is read outside the request body and trailers callbacks ({:?})",
                self.phase
            );
        }
        self.request_buffer[..size.min(self.request_buffer.len())].to_vec()
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.host_calls.set(self.host_calls.get() + 1);
        crate::exchange::joined_values(
            self.response_headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_slice())),
            name,
        )
    }

    fn response_body(&mut self, size: usize) -> Vec<u8> {
        self.host_calls.set(self.host_calls.get() + 1);
        if !matches!(self.phase, Phase::ResponseBody | Phase::ResponseTrailers) {
            panic!(
                "the response body is read outside the response body and trailers callbacks ({:?})",
                self.phase
            );
        }
        self.response_buffer[..size.min(self.response_buffer.len())].to_vec()
    }

    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.properties.get(&path.join(".")).cloned()
    }

    fn dispatch_grpc(&mut self, call: &ServiceCall) -> Result<u32, String> {
        self.host_calls.set(self.host_calls.get() + 1);
        if self.fail_dispatch {
            return Err("BadArgument".to_string());
        }
        let mut next = self.envoy.next_token.borrow_mut();
        let token = *next;
        *next += 1;
        self.calls.push((token, call.clone()));
        Ok(token)
    }

    fn service_answer(&mut self, size: usize) -> Vec<u8> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.answer[..size.min(self.answer.len())].to_vec()
    }

    fn dispatch_http(&mut self, call: &HttpCall) -> Result<u32, String> {
        if self.fail_dispatch {
            return Err("BadArgument".to_string());
        }
        // Envoy builds the request from headers the glue sends: the path must be absolute.
        if !call.path.starts_with('/') || call.cluster.is_empty() {
            panic!("Envoy refuses an HTTP call without :path or :authority: {call:?}");
        }
        let mut next = self.envoy.next_token.borrow_mut();
        let token = *next;
        *next += 1;
        self.http_calls.push((token, call.clone()));
        Ok(token)
    }

    fn http_answer_header(&mut self, name: &str) -> Option<Vec<u8>> {
        if self.phase != Phase::Async {
            panic!("an HTTP call's answer is read outside its callback");
        }
        match &self.http_answer {
            Some((headers, _)) if !headers.is_empty() => headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone()),
            // Envoy answers BadArgument (the SDK panics): there is no answer.
            _ => panic!("reading the headers of an HTTP call that has no answer"),
        }
    }

    fn http_answer_body(&mut self, size: usize) -> Vec<u8> {
        if self.phase != Phase::Async {
            panic!("an HTTP call's answer is read outside its callback");
        }
        match &self.http_answer {
            Some((headers, body)) if !headers.is_empty() => body[..size.min(body.len())].to_vec(),
            _ => panic!("reading the body of an HTTP call that has no answer"),
        }
    }

    fn random(&mut self) -> u128 {
        let mut next = self.envoy.next_random.borrow_mut();
        *next += 1;
        *next
    }

    fn log_level(&mut self) -> Level {
        self.host_calls.set(self.host_calls.get() + 1);
        *self.envoy.log_level_reads.borrow_mut() += 1;
        *self.envoy.log_level.borrow()
    }
}

/// The shared store, counting the calls one stream makes to it.
struct CountingStore<'e> {
    inner: &'e MemorySharedData,
    calls: std::cell::Cell<usize>,
}

impl SharedStore for CountingStore<'_> {
    fn get(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, crate::host::Cas)>, crate::host::StoreError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.get(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<crate::host::Cas>,
    ) -> Result<(), crate::host::StoreError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.compare_and_swap(key, value, expected)
    }
}

/// One HTTP stream through the simulated Envoy.
pub struct SimStream<'e> {
    pub exchange: Exchange,
    state: StreamState<'e>,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Request and response completed.
    Completed,
    /// The client reset the stream (HTTP/2 RST_STREAM) or closed the connection.
    ClientGone,
    /// The server reset the stream or closed the connection.
    ServerReset,
}

impl<'e> SimStream<'e> {
    /// Whatever reached the server so far.
    pub fn upstream(&self) -> &Upstream {
        &self.state.upstream
    }

    /// Whatever the caller received so far.
    pub fn downstream(&self) -> &Downstream {
        &self.state.downstream
    }

    /// Calls across the Envoy/wasm boundary made for this stream so far:
    /// reads, shared-data calls and effects (each one host call in Envoy).
    pub fn host_calls(&self) -> usize {
        self.state.host_calls.get() + self.state.store.calls.get()
    }

    /// The gRPC calls the exchange started.
    pub fn calls(&self) -> &[(u32, ServiceCall)] {
        &self.state.calls
    }

    /// The HTTP calls the exchange started.
    pub fn http_calls(&self) -> &[(u32, HttpCall)] {
        &self.state.http_calls
    }

    /// Filter state set on the stream.
    pub fn filter_state(&self, name: &str) -> Option<&str> {
        self.state
            .filter_state
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Sets a stream property as Envoy would have it (`path` joined with
    /// dots), e.g. a JWT claim jwt_authn put in the dynamic metadata.
    pub fn set_property(&mut self, path: &[&str], value: &[u8]) {
        self.state.properties.insert(path.join("."), value.to_vec());
    }

    /// Makes the next gRPC dispatch fail (Envoy refuses the cluster).
    pub fn fail_dispatch(&mut self) {
        self.state.fail_dispatch = true;
    }

    /// Runs one event and applies its effects with Envoy's rules.
    fn run(&mut self, phase: Phase, event: Event) -> Action {
        self.state.phase = phase;
        let step = self.exchange.on(event, &mut self.state);
        for effect in step.effects {
            self.apply(effect);
        }
        step.action
    }

    fn apply(&mut self, effect: Effect) {
        let state = &mut self.state;
        state.host_calls.set(state.host_calls.get() + 1);
        match effect {
            Effect::RemoveRequestHeader(name) => {
                if state.request_headers_sent {
                    panic!("Envoy refuses: removing request header {name:?} after the headers went upstream");
                }
                if !matches!(
                    state.phase,
                    Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers
                ) {
                    panic!(
                        "Envoy refuses: removing request header {name:?} in {:?}",
                        state.phase
                    );
                }
                state
                    .request_headers
                    .0
                    .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
            }
            Effect::RemoveResponseHeader(name) => {
                if state.phase != Phase::ResponseHeaders {
                    panic!(
                        "Envoy refuses: removing response header {name:?} in {:?}",
                        state.phase
                    );
                }
                state
                    .response_headers
                    .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
            }
            Effect::ReplaceRequestBody { size, body } => {
                if !matches!(state.phase, Phase::RequestBody | Phase::RequestTrailers) {
                    panic!(
                        "Envoy refuses: replacing the request body in {:?}",
                        state.phase
                    );
                }
                if size != state.request_buffer.len() {
                    panic!(
                        "replacing {size} bytes of a request buffer of {}",
                        state.request_buffer.len()
                    );
                }
                if body.len() != size
                    && state.request_headers_sent
                    && state
                        .request_headers
                        .0
                        .iter()
                        .any(|(key, _)| key == "content-length")
                {
                    panic!("a request body of another length after content-length went upstream");
                }
                state.request_buffer = body;
            }
            Effect::ReplaceResponseBody { size, body } => {
                if !matches!(state.phase, Phase::ResponseBody | Phase::ResponseTrailers) {
                    panic!(
                        "Envoy refuses: replacing the response body in {:?}",
                        state.phase
                    );
                }
                if size != state.response_buffer.len() {
                    panic!(
                        "replacing {size} bytes of a response buffer of {}",
                        state.response_buffer.len()
                    );
                }
                state.response_buffer = body;
            }
            Effect::Reply { status, body } => {
                if state.response_headers_sent {
                    panic!("Envoy refuses: a local reply after the response started");
                }
                if state.local_reply.is_some() {
                    panic!("Envoy refuses: a second local reply");
                }
                state.local_reply = Some((status, body));
            }
            Effect::ResumeRequest => {
                if !state.request_held || state.local_reply.is_some() {
                    panic!("resuming a request that is not held");
                }
                state.flush_request();
            }
            Effect::FilterState { name, value } => {
                state.filter_state.push((name.to_string(), value));
            }
            Effect::Count(index) => {
                let mut counters = state.envoy.counters.borrow_mut();
                match counters.get_mut(index) {
                    Some(counter) => *counter += 1,
                    None => panic!("no counter {index}"),
                }
            }
            Effect::Log { level, line } => state.envoy.logs.borrow_mut().push((level, line)),
        }
    }

    /// Envoy's local reply for the gate, once the callback that sent it
    /// returned: it runs through the response callbacks.
    fn deliver_local_reply(&mut self) {
        let Some((status, body)) = self.state.local_reply.clone() else {
            return;
        };
        if self.state.downstream.from_gate {
            return;
        }
        self.state.downstream.from_gate = true;
        self.state.set_int("response.code", u64::from(status));
        self.state.properties.insert(
            "response.code_details".to_string(),
            b"wasm_local_reply".to_vec(),
        );
        let headers = vec![
            (":status".to_string(), status.to_string().into_bytes()),
            ("content-type".to_string(), b"application/json".to_vec()),
        ];
        self.respond(headers, &[&body]);
    }

    /// Request headers arrive from the caller.
    pub fn request_headers(&mut self, headers: &[(&str, &[u8])], end_of_stream: bool) -> Action {
        self.state.request_headers = Headers(
            headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_vec()))
                .collect(),
        );
        self.state.request_ended = end_of_stream;
        let action = self.run(
            Phase::RequestHeaders,
            Event::RequestHeaders { end_of_stream },
        );
        match action {
            Action::Continue if self.state.local_reply.is_none() => self.state.flush_request(),
            _ => self.state.request_held = true,
        }
        self.deliver_local_reply();
        action
    }

    /// A piece of the request body arrives.
    pub fn request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        if self.state.local_reply.is_some() {
            // Envoy stops decoding once a local reply is sent.
            return Action::Pause;
        }
        self.state.request_buffer.extend_from_slice(chunk);
        self.state.request_ended = end_of_stream;
        let size = self.state.request_buffer.len();
        let action = self.run(
            Phase::RequestBody,
            Event::RequestBody {
                size,
                end_of_stream,
            },
        );
        match action {
            Action::Continue if self.state.local_reply.is_none() => self.state.flush_request(),
            _ => self.state.request_held = true,
        }
        self.deliver_local_reply();
        action
    }

    /// Request trailers arrive (the request ends with them).
    pub fn request_trailers(&mut self) -> Action {
        if self.state.local_reply.is_some() {
            return Action::Pause;
        }
        self.state.request_ended = true;
        let action = self.run(Phase::RequestTrailers, Event::RequestTrailers);
        match action {
            Action::Continue if self.state.local_reply.is_none() => self.state.flush_request(),
            _ => self.state.request_held = true,
        }
        self.deliver_local_reply();
        action
    }

    /// The whole request: headers, then the body in `chunks` (none: a
    /// bodiless request).
    pub fn send(&mut self, headers: &[(&str, &[u8])], chunks: &[&[u8]]) {
        self.request_headers(headers, chunks.is_empty());
        for (index, chunk) in chunks.iter().enumerate() {
            self.request_body(chunk, index + 1 == chunks.len());
        }
    }

    /// The service answers the gRPC call `token` (status 0: OK).
    pub fn service_answers(&mut self, token: u32, status: u32, message: &[u8]) {
        self.state.answer = message.to_vec();
        self.run(
            Phase::Async,
            Event::ServiceAnswer {
                token,
                status,
                size: message.len(),
            },
        );
        self.deliver_local_reply();
    }

    /// The approval service answers the HTTP call `token`: `status` and a
    /// JSON body, or `None`: the call failed without an answer (reset,
    /// refused connection), as Envoy reports it (no headers, no body).
    pub fn http_answers(&mut self, token: u32, status: Option<u16>, body: &[u8]) {
        let headers = match status {
            Some(status) => vec![
                (":status".to_string(), status.to_string().into_bytes()),
                ("content-type".to_string(), b"application/json".to_vec()),
            ],
            None => Vec::new(),
        };
        let (header_count, size) = (headers.len(), if status.is_some() { body.len() } else { 0 });
        self.state.http_answer = Some((headers, body.to_vec()));
        self.run(
            Phase::Async,
            Event::HttpAnswer {
                token,
                headers: header_count,
                size,
            },
        );
        self.state.http_answer = None;
        self.deliver_local_reply();
    }

    /// The server answers: status, headers, and the body in chunks. The
    /// request must have reached it.
    pub fn server_answers(&mut self, status: u16, headers: &[(&str, &[u8])], chunks: &[&[u8]]) {
        if !self.state.upstream.started() {
            panic!("the server answers a request that never reached it");
        }
        self.state.set_int("response.code", u64::from(status));
        self.state.properties.insert(
            "response.code_details".to_string(),
            b"via_upstream".to_vec(),
        );
        let mut all = vec![(":status".to_string(), status.to_string().into_bytes())];
        all.extend(
            headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_vec())),
        );
        self.respond(all, chunks);
    }

    /// Envoy answers itself (the server could not be reached, the route
    /// timed out, ...): `details` and `flags` as Envoy records them.
    pub fn envoy_answers(&mut self, status: u16, details: &str, response_flags: u64) {
        self.state.set_int("response.code", u64::from(status));
        self.state.set_int("response.flags", response_flags);
        self.state.properties.insert(
            "response.code_details".to_string(),
            details.as_bytes().to_vec(),
        );
        let body = details.as_bytes().to_vec();
        let headers = vec![
            (":status".to_string(), status.to_string().into_bytes()),
            ("content-type".to_string(), b"text/plain".to_vec()),
        ];
        self.respond(headers, &[&body]);
    }

    /// Response headers only, for tests that stream the body by hand.
    pub fn response_headers(
        &mut self,
        status: u16,
        headers: &[(&str, &[u8])],
        end_of_stream: bool,
    ) -> Action {
        self.state.set_int("response.code", u64::from(status));
        self.state
            .properties
            .entry("response.code_details".to_string())
            .or_insert_with(|| b"via_upstream".to_vec());
        self.state.response_headers =
            std::iter::once((":status".to_string(), status.to_string().into_bytes()))
                .chain(
                    headers
                        .iter()
                        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_vec())),
                )
                .collect();
        let action = self.run(
            Phase::ResponseHeaders,
            Event::ResponseHeaders { end_of_stream },
        );
        if action != Action::Continue {
            panic!("the gate never holds response headers");
        }
        self.state.response_headers_sent = true;
        self.state.downstream.status = Some(status);
        self.state.downstream.headers = self.state.response_headers.clone();
        action
    }

    /// One response chunk.
    pub fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        self.state.response_buffer.extend_from_slice(chunk);
        let size = self.state.response_buffer.len();
        let action = self.run(
            Phase::ResponseBody,
            Event::ResponseBody {
                size,
                end_of_stream,
            },
        );
        if action == Action::Continue {
            let buffered = std::mem::take(&mut self.state.response_buffer);
            self.state.downstream.body.extend_from_slice(&buffered);
        } else if end_of_stream {
            panic!("the gate holds a response that has ended: it would never be sent");
        }
        action
    }

    /// Response trailers (the response ends with them).
    pub fn response_trailers(&mut self) {
        self.run(Phase::ResponseTrailers, Event::ResponseTrailers);
        let buffered = std::mem::take(&mut self.state.response_buffer);
        self.state.downstream.body.extend_from_slice(&buffered);
    }

    fn respond(&mut self, headers: Vec<(String, Vec<u8>)>, chunks: &[&[u8]]) {
        let status = headers
            .first()
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .and_then(|status| status.parse().ok())
            .unwrap_or(0);
        let rest: Vec<(&str, &[u8])> = headers
            .iter()
            .skip(1)
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        self.response_headers(status, &rest, chunks.is_empty());
        for (index, chunk) in chunks.iter().enumerate() {
            self.response_body(chunk, index + 1 == chunks.len());
        }
    }

    /// The stream ends; `how` sets the properties Envoy would.
    pub fn end(&mut self, how: End) {
        match how {
            End::Completed => {}
            End::ClientGone => {
                let previous = self.int_property("response.flags");
                self.state
                    .set_int("response.flags", previous | flags::DOWNSTREAM_REMOTE_RESET);
            }
            End::ServerReset => {
                let previous = self.int_property("response.flags");
                self.state
                    .set_int("response.flags", previous | flags::UPSTREAM_REMOTE_RESET);
                self.state.properties.insert(
                    "response.code_details".to_string(),
                    b"upstream_reset_after_response_started{remote_reset}".to_vec(),
                );
            }
        }
        self.run(Phase::End, Event::StreamEnd);
    }

    fn int_property(&self, path: &str) -> u64 {
        self.state
            .properties
            .get(path)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }
}
