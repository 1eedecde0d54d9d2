//! Reads the whole request body and refuses it (403) if it names
//! `deleteWorkspace`; passes everything else. The floor of a body-reading
//! Wasm filter, for `make bench`.
//!
//! Its plugin configuration may ask for `N` more calls into Envoy per
//! request, all of one kind, made after the body is read: `clock N`
//! (`proxy_get_current_time_nanoseconds`, the cheapest call there is),
//! `property N` (`proxy_set_property`, as mcp-policy sets filter state) or
//! `metric N` (`proxy_increment_metric`), `headers N` (every request header
//! in one `proxy_get_header_map_pairs`, as mcp-policy reads them, into the
//! SDK's `Vec<(String, Vec<u8>)>`), `read N` (`proxy_get_property` of the
//! request path: a value Envoy hands back, as mcp-policy reads the response
//! code), `shared N` (a read and a compare-and-swap of one shared-data
//! key, as mcp-policy takes a local quota), `log N` (a 512-byte line at
//! info, which Envoy writes to its log, as the audit line); or `alloc N`: N
//! allocations of 64 bytes inside the VM, each written and freed, no call
//! into Envoy (what one allocation costs the module). `make bench` runs
//! each beside the plain filter (cells (6c), (6p), (6m), (6h), (6r), (6d),
//! (6l), (6a)).
//!
//! `mimic 1` makes, in the same callbacks and with values of the same
//! sizes, exactly the calls into Envoy mcp-policy makes for one allowed
//! `tools/call` of `make bench` (cell (2s); the list is the simulated host's
//! trace, `an_allowed_call_crosses_into_envoy_a_bounded_number_of_times` in
//! `src/exchange/tests.rs` keeps their number): request headers, a clock
//! read and every header; request body, the body, a clock read, the
//! counter's shared-data read and compare-and-swap, two counters, three
//! filter-state values; at the stream's end, `response.code`, a clock
//! read, the audit record as filter state and the audit line at info. Cell
//! (6x): with (6s) and (2s) it splits mcp-policy's cost into the calls its
//! features make and its own code.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { extra: Extra::None, count: 0 })
    });
}}

#[derive(Clone, Copy)]
enum Extra {
    None,
    Clock,
    Property,
    Metric(u32),
    Headers,
    Read,
    Shared,
    Log,
    Alloc,
    /// mcp-policy's calls for one allowed call: the two counters it bumps.
    Mimic(u32, u32),
}

struct Root {
    extra: Extra,
    count: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        let mut words = config.split_whitespace();
        let (kind, count) = (words.next(), words.next().and_then(|n| n.parse().ok()));
        self.count = count.unwrap_or(0);
        self.extra = match kind {
            None => Extra::None,
            Some("clock") => Extra::Clock,
            Some("property") => Extra::Property,
            Some("metric") => {
                match hostcalls::define_metric(MetricType::Counter, "trivial_calls") {
                    Ok(id) => Extra::Metric(id),
                    Err(_) => return false,
                }
            }
            Some("headers") => Extra::Headers,
            Some("read") => Extra::Read,
            Some("shared") => Extra::Shared,
            Some("log") => Extra::Log,
            Some("alloc") => Extra::Alloc,
            Some("mimic") => {
                let define = |name| hostcalls::define_metric(MetricType::Counter, name);
                match (define("trivial_decisions"), define("trivial_calls_by_tool")) {
                    (Ok(first), Ok(second)) => Extra::Mimic(first, second),
                    _ => return false,
                }
            }
            Some(_) => return false,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            extra: self.extra,
            count: self.count,
        }))
    }
}

struct Stream {
    extra: Extra,
    count: u32,
}

impl Context for Stream {}

impl HttpContext for Stream {
    /// Held until the body is read (as mcp-policy holds them): otherwise a
    /// route answered in this Envoy replies before the body arrives.
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Extra::Mimic(..) = self.extra {
            let ok = hostcalls::get_current_time().is_ok()
                && hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                    .is_ok_and(|headers| !headers.is_empty());
            if !ok {
                self.send_http_response(500, vec![], Some(b"host call failed"));
                return Action::Pause;
            }
        }
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        for i in 0..self.count {
            // Each result is used, so no call can be left out.
            let ok = match self.extra {
                Extra::None => true,
                Extra::Clock => hostcalls::get_current_time().is_ok(),
                Extra::Property => {
                    let value = [b'a' + (i % 26) as u8; 8];
                    hostcalls::set_property(vec!["trivial.crossing"], Some(&value)).is_ok()
                }
                Extra::Metric(id) => hostcalls::increment_metric(id, 1).is_ok(),
                Extra::Headers => hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                    .is_ok_and(|headers| !headers.is_empty()),
                Extra::Read => hostcalls::get_property(vec!["request", "path"])
                    .is_ok_and(|path| path.is_some_and(|path| !path.is_empty())),
                Extra::Shared => match hostcalls::get_shared_data("trivial.counter") {
                    Ok((value, cas)) => {
                        let next = value.map_or(0, |v| v.len() % 8 + 1);
                        hostcalls::set_shared_data("trivial.counter", Some(&vec![b'x'; next]), cas)
                            .is_ok()
                            || cas.is_some()
                    }
                    Err(_) => false,
                },
                Extra::Log => hostcalls::log(LogLevel::Info, LINE).is_ok(),
                Extra::Alloc => {
                    let block = std::hint::black_box(vec![i as u8; 64]);
                    block[63] == i as u8
                }
                Extra::Mimic(first, second) => mimic_request(first, second),
            };
            if !ok {
                self.send_http_response(500, vec![], Some(b"host call failed"));
                return Action::Pause;
            }
        }
        if body.windows(NEEDLE.len()).any(|window| window == NEEDLE) {
            self.send_http_response(403, vec![], Some(b"refused"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Extra::Mimic(..) = self.extra {
            // A failure here cannot answer the caller any more: it is logged,
            // and the cell's check (an answer per request) still holds.
            let ok = hostcalls::get_property(vec!["response", "code"])
                .is_ok_and(|code| code.is_some())
                && hostcalls::get_current_time().is_ok()
                && hostcalls::set_property(vec!["trivial.audit"], Some(AUDIT.as_bytes())).is_ok()
                && hostcalls::log(LogLevel::Info, AUDIT_LINE).is_ok();
            if !ok {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    "trivial-filter: a host call failed at the end",
                );
            }
        }
    }
}

/// The request side of mcp-policy's allowed call, after the body is read:
/// a clock read, the local quota (a shared-data read and a compare-and-swap
/// of a 32-byte value), two counters, three filter-state values.
fn mimic_request(first: u32, second: u32) -> bool {
    let quota = match hostcalls::get_shared_data(QUOTA_KEY) {
        Ok((value, cas)) => {
            let mut next = value.unwrap_or_else(|| vec![b'0'; 32]);
            next.resize(32, b'0');
            if let Some(first) = next.first_mut() {
                *first = first.wrapping_add(1);
            }
            hostcalls::set_shared_data(QUOTA_KEY, Some(&next), cas).is_ok() || cas.is_some()
        }
        Err(_) => false,
    };
    hostcalls::get_current_time().is_ok()
        && quota
        && hostcalls::increment_metric(first, 1).is_ok()
        && hostcalls::increment_metric(second, 1).is_ok()
        && hostcalls::set_property(vec!["trivial.grant"], Some(b"bench")).is_ok()
        && hostcalls::set_property(vec!["trivial.tool"], Some(b"asyncExecuteCode")).is_ok()
        && hostcalls::set_property(vec!["trivial.decision"], Some(b"allowed")).is_ok()
}

/// A key shaped like mcp-policy's counter slot for the bench's allowed call.
const QUOTA_KEY: &str = "trivial/v3/13/bench_allowed/g/22011";

/// mcp-policy's audit record for the allowed call of `make bench` (351 bytes).
macro_rules! audit_record {
    () => {
        concat!(
            "{\"time\":\"2026-12-02T12:00:00.000Z\",\"grant\":\"bench\",\"session\":null,",
            "\"method\":\"tools/call\",\"kind\":\"tool\",\"target\":\"asyncExecuteCode\",",
            "\"tool\":\"asyncExecuteCode\",\"invokes\":null,\"decision\":\"allowed\",\"rule\":null,",
            "\"argument_keys\":[\"script\",\"timeout\",\"environment\",\"workspace\",\"labels\"],",
            "\"enforced\":true,\"status\":200,\"duration_ms\":0,\"revision\":\"2c768a59da6a0f84\"}",
        )
    };
}

/// The audit record, as filter state.
const AUDIT: &str = audit_record!();

/// The audit line: the record after mcp-policy's prefix.
const AUDIT_LINE: &str = concat!("mcp-policy audit ", audit_record!());

const NEEDLE: &[u8] = b"deleteWorkspace";

/// 512 bytes, about an audit line's length.
const LINE: &str = concat!(
    "trivial-filter line {\"time\":\"2026-11-30T20:00:00.000Z\",\"grant\":\"bench\",",
    "\"method\":\"tools/call\",\"kind\":\"tool\",\"target\":\"asyncExecuteCode\",",
    "\"decision\":\"allowed\",\"rule\":\"/tools/asyncExecuteCode\",\"argument_keys\":",
    "[\"script\",\"timeout\"],\"enforced\":true,\"status\":200,\"duration_ms\":0,",
    "\"revision\":\"0123456789abcdef\",\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
);
