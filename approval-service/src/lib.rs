//! `mcp-approval-service`: approvals for mcp-policy's `approve` rules. The
//! filter asks over HTTP whether a held call is approved (`POST /v1/check`);
//! people approve or deny on a web page or through a JSON API. See README.md.

pub mod app;
pub mod auth;
pub mod canonical;
pub mod clock;
pub mod html;
pub mod metrics;
pub mod model;
pub mod store;
