//! The host calls the stream makes, without the SDK's panics.
//!
//! proxy-wasm's `HttpContext` helpers `unwrap` every host status, and its
//! string accessors `unwrap` UTF-8 decoding: a header value with one byte
//! above 0x7f (legal in HTTP) would panic the VM, an outage for every
//! request on that worker. These wrappers read bytes, and log a failed call
//! instead of panicking; each caller decides what a failure means.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes, MapType};

/// The request's headers, read with one host call. Values stay bytes until
/// the gate reads one. (Header names are tokens: Envoy's codecs refuse any
/// other byte in a name before the filter runs.)
pub struct RequestHeaders(Vec<(String, Bytes)>);

impl RequestHeaders {
    pub fn read() -> RequestHeaders {
        match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(headers) => RequestHeaders(headers),
            Err(status) => {
                log::warn!("mcp-policy: cannot read the request headers: {status:?}");
                RequestHeaders(Vec::new())
            }
        }
    }

    /// The first value of `name` (as Envoy's single-header read returns), if
    /// it is text. Envoy keeps names in lower case; the lookup ignores case
    /// anyway, as Envoy's does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first of `names` that is present but not UTF-8.
    pub fn first_unreadable<'n>(
        &self,
        mut names: impl Iterator<Item = &'n str>,
    ) -> Option<&'n str> {
        names.find(|name| {
            self.raw(name)
                .is_some_and(|value| std::str::from_utf8(value).is_err())
        })
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// A response header as text; `None` when absent, unreadable or not UTF-8.
pub fn response_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name) {
        Ok(value) => value.and_then(|bytes| String::from_utf8(bytes).ok()),
        Err(status) => {
            log::warn!("mcp-policy: cannot read response header {name}: {status:?}");
            None
        }
    }
}

/// Removes a request (or response) header.
pub fn remove_header(map: MapType, name: &str) {
    if let Err(status) = hostcalls::set_map_value(map, name, None) {
        log::warn!("mcp-policy: cannot remove header {name}: {status:?}");
    }
}

/// Up to `size` bytes of a buffer; empty when it cannot be read.
pub fn buffer(kind: BufferType, size: usize) -> Bytes {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            log::warn!("mcp-policy: cannot read {kind:?}: {status:?}");
            Vec::new()
        }
    }
}

/// Replaces the first `size` bytes of a buffer.
pub fn replace_buffer(kind: BufferType, size: usize, value: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(kind, 0, size, value) {
        log::warn!("mcp-policy: cannot replace {kind:?}: {status:?}");
    }
}

/// A property (`["response", "code"]`, metadata, …); `None` when absent or
/// unreadable.
pub fn property(path: Vec<&str>) -> Option<Bytes> {
    match hostcalls::get_property(path) {
        Ok(value) => value,
        Err(status) => {
            log::warn!("mcp-policy: cannot read a property: {status:?}");
            None
        }
    }
}

/// Answers in place of the upstream. `false` if Envoy refused the call.
pub fn send_response(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) -> bool {
    match hostcalls::send_http_response(status, headers, Some(body)) {
        Ok(()) => true,
        Err(err) => {
            log::error!("mcp-policy: cannot send the answer: {err:?}");
            false
        }
    }
}
