//! Envoy with the built module in front of a recording demo MCP server.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::demo_server::{self, Recorder, ServeOptions};
use super::envoy::{Envoy, EnvoyOptions};
use super::mcp_client::{McpClient, RpcError};

/// A recording demo MCP server on a free port: its port, what it records,
/// and its task (abort it when done).
pub async fn recording_upstream(
    serve: ServeOptions,
) -> (u16, Recorder, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = Recorder::default();
    let server = tokio::spawn(demo_server::serve_with_options(
        listener,
        upstream.clone(),
        serve,
    ));
    (port, upstream, server)
}

/// Envoy in front of a recording demo server.
pub struct Stack {
    pub envoy: Envoy,
    pub upstream: Recorder,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Stack {
    pub async fn start(policy: &str) -> Stack {
        Stack::start_with_workers(policy, 1).await
    }

    pub async fn start_with_workers(policy: &str, workers: u32) -> Stack {
        Stack::start_with(policy, workers, ServeOptions::default()).await
    }

    /// With a demo server that answers in plain JSON (stateless) instead of event streams.
    pub async fn start_json_upstream(policy: &str) -> Stack {
        let options = ServeOptions {
            json_responses: true,
            ..ServeOptions::default()
        };
        Stack::start_with(policy, 1, options).await
    }

    pub async fn start_with(policy: &str, workers: u32, serve: ServeOptions) -> Stack {
        let (upstream_port, upstream, server) = recording_upstream(serve).await;
        let mut options = EnvoyOptions::new(policy, upstream_port);
        options.workers = workers;
        let envoy = Envoy::start(options).await;
        Stack {
            envoy,
            upstream,
            server,
        }
    }

    /// An MCP client through Envoy naming its grant in `x-agent-id`.
    pub async fn client(&self, grant: &str) -> McpClient {
        self.client_with(&[("x-agent-id", grant)]).await
    }

    /// An MCP client through Envoy sending these headers on every request.
    pub async fn client_with(&self, headers: &[(&str, &str)]) -> McpClient {
        McpClient::connect(&self.envoy.mcp_url(), headers)
            .await
            .unwrap_or_else(|err| panic!("connect through Envoy: {err}\n{}", self.envoy.log()))
    }

    /// A raw POST through Envoy; returns status and parsed JSON body.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.envoy.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Whether a request carrying this body (or the start of it) reached
    /// the upstream: one with exactly this body, or one whose body had not
    /// arrived whole, so that what came of it may be this body's start.
    pub fn upstream_saw_body(&self, body: &[u8]) -> bool {
        self.upstream.http_requests().iter().any(|request| {
            request.body == body || (request.incomplete && body.starts_with(&request.body))
        })
    }
}

impl Drop for Stack {
    /// A request the upstream saw cut off mid-body is a request the gate let
    /// start: no test through a `Stack` expects one, so it fails the test.
    fn drop(&mut self) {
        self.server.abort();
        let cut_off = self.upstream.cut_off_requests();
        if !cut_off.is_empty() && !std::thread::panicking() {
            panic!(
                "the upstream saw {} request(s) start and then get cut off mid-body: {cut_off:?}",
                cut_off.len()
            );
        }
    }
}

pub fn error_of(result: Result<Value, RpcError>) -> RpcError {
    match result {
        Err(err) => err,
        Ok(ok) => panic!("expected a JSON-RPC error, got {ok}"),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
