//! The proxy-wasm glue, the only code that talks to Envoy: it maps Envoy's
//! callbacks to [`crate::exchange::Event`]s and the exchange's
//! [`crate::exchange::Effect`]s to host calls. It decides nothing.
//! Compiled only for the module Envoy loads.

mod host;
mod root;
mod stream;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic at critical level.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::PolicyRoot::default())
    });
}}
