//! Shared helpers for the native e2e tests (`mod support;`).
#![allow(dead_code)]

pub mod approval;
pub mod mcp_client;

#[path = "../../examples/demo_server/server.rs"]
pub mod demo_server;
pub mod envoy;
pub mod fleet;
pub mod inflight;
pub mod metrics;
pub mod scripted;
pub mod services;
pub mod stack;
