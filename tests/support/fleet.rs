//! A fleet for end-to-end tests of global limits: a real redis-server on a
//! port it confirms is its own, processes of the shipped rate-limit service
//! on it, and Envoy configurations whose `ratelimit` cluster spreads checks
//! over them. (The same helpers as tests/e2e_fleet.rs, shared.)
//!
//! Needs `redis-server` on PATH and the service binary in
//! `$MCP_RATELIMIT_SERVICE` (`make test` builds and installs both).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::envoy::{config_yaml, free_port};
use super::stack::unix_now;

/// A child process killed when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `INFO server` of the Redis on `port`, if one answers.
fn redis_info(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: usize = header.strip_prefix('$')?.trim().parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

/// redis-server on `port`, once it answers as itself (its process id); None
/// if it could not have the port.
pub fn try_start_redis(port: u16) -> Option<Process> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("redis-server: {err} (make test installs it)"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if let Some(info) = redis_info(port) {
            let mine = format!("process_id:{}", child.id());
            let process = Process(child);
            return info
                .lines()
                .any(|line| line.trim() == mine)
                .then_some(process);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(Process(child));
    None
}

/// redis-server on a free port. It cannot be handed a bound socket, so the
/// port is picked, then confirmed to be this server's.
pub fn start_redis() -> (Process, u16) {
    for _ in 0..20 {
        let port = free_port();
        if let Some(process) = try_start_redis(port) {
            return (process, port);
        }
    }
    panic!("no free port for redis-server in 20 tries");
}

/// One process of the rate-limit service, on ports it binds itself (port 0,
/// read back from its start line).
pub struct RateLimitService {
    _process: Process,
    pub grpc_port: u16,
    pub http_port: u16,
    _lines: Receiver<String>,
}

impl RateLimitService {
    pub fn start(redis_port: u16) -> RateLimitService {
        let binary = std::env::var("MCP_RATELIMIT_SERVICE").unwrap_or_else(|_| {
            "ratelimit-service/target/release/mcp-ratelimit-service".to_string()
        });
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{binary}: {err} (make test builds it)"));
        let stderr = child.stderr.take().unwrap();
        let process = Process(child);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[ratelimit-service] {line}");
                let _ = tx.send(line);
            }
        });
        let port_after = |line: &str, marker: &str| -> u16 {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split([' ', ',']).next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or_else(|| panic!("no port after {marker:?}: {line}"))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("the service's start line within 20 s");
            if line.contains("listening on ") {
                return RateLimitService {
                    _process: process,
                    grpc_port: port_after(&line, "listening on "),
                    http_port: port_after(&line, "http on "),
                    _lines: lines,
                };
            }
        }
    }

    /// `mcp_ratelimit_checks_total`, all results.
    /// `mcp_ratelimit_descriptors_total` of one kind (`window`, `acquire`,
    /// `release`), all codes.
    pub async fn descriptors(&self, kind: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.http_port);
        super::metrics::service_sum(&url, "mcp_ratelimit_descriptors_total", &[("kind", kind)])
            .await
    }

    pub async fn checks(&self) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.http_port);
        super::metrics::service_sum(&url, "mcp_ratelimit_checks_total", &[]).await
    }
}

/// The harness's Envoy configuration plus the rate-limit service cluster
/// (gRPC), round robin over every service process.
pub fn config_with_service(
    port: u16,
    admin_port: u16,
    upstream_port: u16,
    service_ports: &[u16],
    policy: &str,
) -> String {
    let mut config = config_yaml(port, admin_port, upstream_port, policy);
    config.push_str(
        r#"  - name: ratelimit
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: ratelimit
      endpoints:
      - lb_endpoints:
"#,
    );
    for service_port in service_ports {
        config.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {service_port} }} }} }}\n"
        ));
    }
    config
}

/// A window for global limits, chosen from the clock so that no test run
/// straddles its end (the service's windows are aligned to the epoch, and a
/// count that starts over mid-test lets more calls through): a day, unless
/// it ends within five minutes; then an hour; else wait for the day to turn.
pub fn global_window() -> &'static str {
    const LONGEST_TEST_SECONDS: u64 = 300;
    let now = unix_now();
    for (name, seconds) in [("day", 86_400), ("hour", 3_600)] {
        if seconds - now % seconds > LONGEST_TEST_SECONDS {
            return name;
        }
    }
    std::thread::sleep(Duration::from_secs(86_400 - now % 86_400 + 1));
    "day"
}
