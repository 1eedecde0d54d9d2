//! `mcp-ratelimit-service`: Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) on
//! limitador, for mcp-policy's global limits. See README.md.

mod engine;
mod request;
mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tonic::transport::server::TcpIncoming;

use crate::engine::{Admission, Engine};
use crate::service::Service;

const USAGE: &str = "\
usage: mcp-ratelimit-service [--listen ADDR] [--redis URL | --in-memory]
                             [--admission hold|reserve|check-and-update]
                             [--redis-timeout-ms N] [--max-limits N]

Envoy rate-limit service (envoy.service.ratelimit.v3) for mcp-policy's global
limits, on limitador. Descriptors are [(\"counter\", NAME), (\"scope\", VALUE)]
with a limit override {requests_per_unit, unit}; the request's domain is the
limitador namespace.

  --listen ADDR          gRPC address (default 127.0.0.1:8089; port 0 picks a free port)
  --redis URL            Redis holding the counters, shared by every service process
                         (default redis://127.0.0.1:6379)
  --in-memory            counters in this process only (for trying it without Redis)
  --admission MODE       hold (default): limitador's reserve, held for the counter's window;
                         exactly max per window, a check costs O(max) in Redis
                         reserve: limitador's reserve + commit, never past max, may refuse
                         early under concurrency
                         check-and-update: limitador's check_rate_limited_and_update,
                         one Redis round trip fewer, may go past max under concurrency
  --redis-timeout-ms N   connect and response timeout for Redis (default 1000)
  --max-limits N         distinct limit definitions registered at most (default 10000)
";

struct Args {
    listen: SocketAddr,
    redis: Option<String>,
    admission: Admission,
    redis_timeout: Duration,
    max_limits: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = "127.0.0.1:8089".to_string();
    let mut redis = Some("redis://127.0.0.1:6379".to_string());
    let mut in_memory = false;
    let mut redis_given = false;
    let mut admission = Admission::Hold;
    let mut redis_timeout_ms: u64 = 1000;
    let mut max_limits: usize = 10_000;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value("--listen")?,
            "--redis" => {
                redis = Some(value("--redis")?);
                redis_given = true;
            }
            "--in-memory" => in_memory = true,
            "--admission" => {
                admission = match value("--admission")?.as_str() {
                    "hold" => Admission::Hold,
                    "reserve" => Admission::Reserve,
                    "check-and-update" => Admission::CheckAndUpdate,
                    other => return Err(format!("unknown --admission {other:?}")),
                }
            }
            "--redis-timeout-ms" => {
                redis_timeout_ms = value("--redis-timeout-ms")?
                    .parse()
                    .map_err(|e| format!("--redis-timeout-ms: {e}"))?
            }
            "--max-limits" => {
                max_limits = value("--max-limits")?
                    .parse()
                    .map_err(|e| format!("--max-limits: {e}"))?
            }
            "-h" | "--help" => return Err(String::new()),
            "-V" | "--version" => {
                return Err(format!(
                    "mcp-ratelimit-service {}",
                    env!("CARGO_PKG_VERSION")
                ))
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if in_memory && redis_given {
        return Err("--in-memory and --redis exclude each other".into());
    }
    if in_memory {
        redis = None;
    }
    let listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    Ok(Args {
        listen,
        redis,
        admission,
        redis_timeout: Duration::from_millis(redis_timeout_ms.max(1)),
        max_limits,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) if message.starts_with("mcp-ratelimit-service ") => {
            println!("{message}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("mcp-ratelimit-service: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-ratelimit-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcp-ratelimit-service: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let (engine, storage) = match &args.redis {
        Some(url) => {
            let client =
                redis::Client::open(url.as_str()).map_err(|e| format!("--redis {url:?}: {e}"))?;
            let admission = match args.admission {
                Admission::Hold => "hold",
                Admission::Reserve => "reserve",
                Admission::CheckAndUpdate => "check-and-update",
            };
            (
                Engine::redis(client, args.redis_timeout, args.admission, args.max_limits),
                format!("redis {url} (admission: {admission})"),
            )
        }
        None => (
            Engine::in_memory(args.max_limits),
            "in memory (counts are this process's only)".to_string(),
        ),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "mcp-ratelimit-service {} listening on {local}, counters: {storage}",
        env!("CARGO_PKG_VERSION")
    );
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Service::new(Arc::new(engine))))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown())
        .await
        .map_err(|e| format!("gRPC server: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen.to_string(), "127.0.0.1:8089");
        assert_eq!(args.redis.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(args.admission, Admission::Hold);
    }

    #[test]
    fn flags() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--max-limits",
            "5",
        ])
        .unwrap();
        assert_eq!(args.listen.port(), 0);
        assert!(args.redis.is_none());
        assert_eq!(args.max_limits, 5);
        assert!(parse(&["--in-memory", "--redis", "redis://x"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--admission", "guess"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
