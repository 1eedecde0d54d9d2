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
}

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
