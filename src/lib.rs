//! mcp-policy: allow / deny / rate-limit rules on MCP tool calls, enforced
//! inside Envoy by a proxy-wasm filter.
//!
//! The core is plain Rust with no proxy-wasm imports, tested natively and in
//! wasm: [`mcp`] reads a request body, [`policy`] holds the validated policy,
//! [`decision`] decides a tool call, [`ratelimit`] counts calls in a
//! [`host::SharedStore`], [`response`] renders the answer, [`audit`] the log
//! line, and [`gate`] ties them together for one request. [`memory`] is Envoy's
//! shared data in memory, for tests, the CLI, benchmarks and fuzzers. `filter` is the thin
//! proxy-wasm glue, compiled only into the module Envoy loads.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod approval;
pub mod arguments;
pub mod audit;
pub mod bindings;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod decision;
pub mod exchange;
pub mod gate;
pub mod host;
pub mod listing;
pub mod lookup;
pub mod mcp;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod response;
pub mod sort;
pub mod target;
pub mod uri;

#[cfg(test)]
pub mod testing;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
