//! Reads the whole request body and refuses it (403) if it names
//! `deleteWorkspace`; passes everything else. The floor of a body-reading
//! Wasm filter, for `make bench`.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }
}

struct Stream;

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
        if body.windows(NEEDLE.len()).any(|window| window == NEEDLE) {
            self.send_http_response(403, vec![], Some(b"refused"));
            return Action::Pause;
        }
        Action::Continue
    }
}

const NEEDLE: &[u8] = b"deleteWorkspace";
