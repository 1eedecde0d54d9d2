//! `mcp-ratelimit-service`: Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) for
//! mcp-policy's global limits: one Redis script call per request takes or
//! refuses all of its counters at once. See README.md.

mod engine;
mod http;
mod keys;
mod metrics;
mod request;
mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tonic::transport::server::TcpIncoming;

use crate::engine::{Engine, Target};
use crate::metrics::Metrics;
use crate::service::Service;
use redis::IntoConnectionInfo;

const USAGE: &str = "\
usage: mcp-ratelimit-service [--listen ADDR] [--http-listen ADDR] [--redis URL[,URL...]]
                             [--redis-cluster] [--redis-timeout-ms N] [--check]

Envoy rate-limit service (envoy.service.ratelimit.v3) for mcp-policy's global
limits. Each ShouldRateLimit call is one Redis script call that takes from all
of its counters or from none: fixed windows aligned to the Unix epoch on
Redis's clock, concurrency leases, costs (hits_addend). Descriptors:
[(\"counter\", NAME), (\"scope\", VALUE)] with a limit override
{requests_per_unit, unit}; README.md has the whole wire contract.

  --listen ADDR          gRPC address (default 127.0.0.1:8089; port 0 picks a free port)
  --http-listen ADDR     /metrics, /healthz, /readyz (default 127.0.0.1:9089; port 0 picks one)
  --redis URL            Redis holding the counters, shared by every service process
                         (default redis://127.0.0.1:6379; redis://[user:pass@]host:port/db)
  --redis-cluster        --redis names nodes of a Redis Cluster (comma-separated; one is
                         enough, the others are discovered)
  --redis-timeout-ms N   connect and response timeout for Redis (default 1000)
  --check                check the arguments and exit (0 if the service would start with them)
";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    http_listen: SocketAddr,
    redis: String,
    cluster: bool,
    redis_timeout: Duration,
    check: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = "127.0.0.1:8089".to_string();
    let mut http_listen = "127.0.0.1:9089".to_string();
    let mut redis = "redis://127.0.0.1:6379".to_string();
    let mut redis_timeout_ms: u64 = 1000;
    let mut check = false;
    let mut cluster = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value("--listen")?,
            "--http-listen" => http_listen = value("--http-listen")?,
            "--redis" => redis = value("--redis")?,
            "--redis-timeout-ms" => {
                redis_timeout_ms = value("--redis-timeout-ms")?
                    .parse()
                    .map_err(|e| format!("--redis-timeout-ms: {e}"))?
            }
            "--check" => check = true,
            "--redis-cluster" => cluster = true,
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
    let listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let http_listen = http_listen
        .parse()
        .map_err(|e| format!("--http-listen {http_listen:?}: {e}"))?;
    let args = Args {
        listen,
        http_listen,
        redis,
        cluster,
        redis_timeout: Duration::from_millis(redis_timeout_ms.max(1)),
        check,
    };
    args.target()?;
    Ok(args)
}

impl Args {
    /// The Redis (or Redis Cluster) of `--redis`.
    fn target(&self) -> Result<Target, String> {
        let invalid = |url: &str, e: redis::RedisError| format!("--redis {url:?}: {e}");
        if self.cluster {
            let nodes = self
                .redis
                .split(',')
                .map(|url| {
                    url.trim()
                        .into_connection_info()
                        .map_err(|e| invalid(url, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Target::Cluster(nodes))
        } else if self.redis.contains(',') {
            Err(format!(
                "--redis {:?}: several addresses are for a Redis Cluster (--redis-cluster)",
                self.redis
            ))
        } else {
            redis::Client::open(self.redis.as_str())
                .map(Target::Single)
                .map_err(|e| invalid(&self.redis, e))
        }
    }
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
    if args.check {
        println!(
            "mcp-ratelimit-service: arguments ok (gRPC {}, http {}, redis {}{})",
            args.listen,
            args.http_listen,
            args.redis,
            if args.cluster { " (cluster)" } else { "" }
        );
        return ExitCode::SUCCESS;
    }
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
    let target = args.target()?;
    let metrics = Arc::new(Metrics::default());
    let engine = Arc::new(Engine::start(
        target,
        args.redis_timeout,
        Arc::clone(&metrics),
    ));
    let grpc = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.http_listen))?;
    let grpc_addr = grpc
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let http_addr = http
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.http_listen))?;
    eprintln!(
        "mcp-ratelimit-service {} listening on {grpc_addr} (gRPC), http on {http_addr} (/metrics /healthz /readyz), redis {}{}",
        env!("CARGO_PKG_VERSION"),
        args.redis,
        if args.cluster { " (cluster)" } else { "" }
    );
    let router = http::router(
        Arc::clone(&engine),
        Arc::clone(&metrics),
        args.redis_timeout,
    );
    let http_server = axum::serve(http, router).with_graceful_shutdown(shutdown());
    let grpc_server = tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Service::new(engine, metrics)))
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc), shutdown());
    let (grpc_result, http_result) = tokio::join!(grpc_server, http_server);
    grpc_result.map_err(|e| format!("gRPC server: {e}"))?;
    http_result.map_err(|e| format!("HTTP server: {e}"))
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen.to_string(), "127.0.0.1:8089");
        assert_eq!(args.http_listen.to_string(), "127.0.0.1:9089");
        assert_eq!(args.redis, "redis://127.0.0.1:6379");
        assert_eq!(args.redis_timeout, Duration::from_secs(1));
        assert!(!args.check);
    }

    #[test]
    fn flags() {
        let args = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--http-listen",
            "[::]:9090",
            "--redis",
            "redis://user:pass@redis.example:6380/2",
            "--redis-timeout-ms",
            "250",
            "--check",
        ])
        .unwrap();
        assert_eq!(args.listen.port(), 0);
        assert_eq!(args.http_listen.port(), 9090);
        assert_eq!(args.redis_timeout, Duration::from_millis(250));
        assert!(args.check);
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--http-listen"]).is_err());
        assert!(parse(&["--redis", "http://not-redis"]).is_err());
        assert!(
            parse(&["--redis", "redis://a:1,redis://b:2"]).is_err(),
            "a list without --redis-cluster"
        );
        let cluster = parse(&[
            "--redis-cluster",
            "--redis",
            "redis://a:7000, redis://b:7001",
        ])
        .unwrap();
        assert!(matches!(cluster.target(), Ok(Target::Cluster(nodes)) if nodes.len() == 2));
        assert!(parse(&["--redis-cluster", "--redis", "redis://a:7000,nonsense://"]).is_err());
        assert!(parse(&["--redis-timeout-ms", "soon"]).is_err());
        assert!(parse(&["--in-memory"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
