//! Real processes for the tests: `redis-server` and the service binary, on
//! 127.0.0.1 ports that are theirs, stopped when dropped. And two small
//! clients to look inside: RESP for Redis, HTTP/1.1 for `/metrics`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use tonic::transport::Channel;

pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;

pub const DOMAIN: &str = "mcp-policy";

/// A port nothing listened on a moment ago.
fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A `redis-server` on 127.0.0.1 without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port. redis-server cannot be handed a bound
    /// socket, so the port is picked by binding port 0, then confirmed: the
    /// server that answers must report this child's process id. A port taken
    /// meanwhile (the server exits, or another answers) means another try.
    pub fn start() -> Redis {
        for _ in 0..20 {
            let mut redis = Redis {
                port: unused_port(),
                child: None,
            };
            if redis.try_start() {
                return redis;
            }
        }
        panic!("could not start redis-server on a free port in 20 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on its port (after [`Redis::stop`]).
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not restart on {}",
            self.port
        );
    }

    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "redis is already running");
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "cannot run redis-server: install it (`make ratelimit-test` does: apt-get install redis-server)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // the port was taken
            }
            if let Ok(Resp::Bulk(info)) = command(self.port, &["INFO", "server"]) {
                let pid = format!("process_id:{}", child.id());
                if info.lines().any(|line| line.trim() == pid) {
                    self.child = Some(child);
                    return true;
                }
                let _ = child.kill();
                let _ = child.wait();
                return false; // another server answers on this port
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills it and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command, its answer (panics if Redis cannot be reached).
    pub fn cmd(&self, args: &[&str]) -> Resp {
        command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// The keys this service wrote.
    pub fn keys(&self) -> Vec<String> {
        match self.cmd(&["KEYS", "mcprl:*"]) {
            Resp::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Resp::Bulk(key) => key,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("KEYS: {other:?}"),
        }
    }

    /// `usec_per_call` and `calls` of a command in INFO commandstats.
    pub fn command_stats(&self, name: &str) -> Option<(u64, f64)> {
        let Resp::Bulk(info) = self.cmd(&["INFO", "commandstats"]) else {
            panic!("INFO")
        };
        let line = info
            .lines()
            .find(|line| line.starts_with(&format!("cmdstat_{name}:")))?;
        let field = |field: &str| -> Option<f64> {
            line.split([':', ','])
                .find_map(|part| part.strip_prefix(&format!("{field}=")))?
                .parse()
                .ok()
        };
        Some((field("calls")? as u64, field("usec_per_call")?))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RESP answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(String),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            Resp::Bulk(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
            other => panic!("not an integer: {other:?}"),
        }
    }
}

/// Sends one command to Redis on `port` and reads the answer.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_resp(&mut BufReader::new(stream))
}

fn read_resp(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Resp::Simple(rest.into()),
        "-" => Resp::Error(rest.into()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Nil
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                Resp::Bulk(String::from_utf8_lossy(&buf).into_owned())
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_resp(reader)?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// The service binary, started with both listeners on port 0 and the given flags.
pub struct Service {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line received so far (lines can come in any order:
    /// the Redis connection is made while the listeners start).
    seen: RefCell<Vec<String>>,
}

impl Service {
    /// Started against Redis; waits until it has connected.
    pub fn redis(redis: &Redis) -> Service {
        let service = Service::start(&["--redis".to_string(), redis.url()]);
        service.wait_for_line("redis connection established");
        service
    }

    pub fn start(args: &[String]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-ratelimit-service"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--redis-timeout-ms",
                "2000",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mcp-ratelimit-service");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[service] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let unset: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut service = Service {
            addr: unset,
            http: unset,
            child,
            lines,
            seen: RefCell::new(Vec::new()),
        };
        let line = service.wait_for_line("listening on ");
        let after = |marker: &str| -> SocketAddr {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split([',', ' ']).next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
        };
        service.addr = after("listening on ");
        service.http = after("http on ");
        service
    }

    /// Waits for a stderr line containing `needle` (printed at any time since
    /// the start) and returns it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        if let Some(line) = self.seen.borrow().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.borrow_mut().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no line with {needle:?} within 20 s"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the service exited before printing {needle:?}")
                }
            }
        }
    }

    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the service")
    }

    /// `GET path` on the HTTP listener: status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.http).expect("connect to the HTTP listener");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of one series in `/metrics`, e.g. `mcp_ratelimit_checks_total{result="ok"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
            .parse()
            .expect("a number")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
    }
}

/// One window descriptor as the mcp-policy filter sends it.
pub fn descriptor(
    counter: &str,
    scope: &str,
    max: u32,
    unit: RateLimitUnit,
) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![entry("counter", counter), entry("scope", scope)],
        limit: Some(RateLimitOverride {
            requests_per_unit: max,
            unit: unit as i32,
        }),
        hits_addend: None,
        is_negative_hits: false,
    }
}

/// A window descriptor that takes `cost` units.
pub fn costing(
    counter: &str,
    scope: &str,
    max: u32,
    unit: RateLimitUnit,
    cost: u64,
) -> RateLimitDescriptor {
    let mut d = descriptor(counter, scope, max, unit);
    d.hits_addend = Some(UInt64Value { value: cost });
    d
}

/// Acquires a slot of a concurrency counter for `lease`, for `lease_ms`.
pub fn acquire(
    counter: &str,
    scope: &str,
    cap: u32,
    lease: &str,
    lease_ms: u64,
) -> RateLimitDescriptor {
    let mut d = descriptor(counter, scope, cap, RateLimitUnit::Second);
    d.entries.push(entry("lease", lease));
    d.entries.push(entry("lease_ms", &lease_ms.to_string()));
    d
}

/// Gives `lease`'s slot back.
pub fn release(counter: &str, scope: &str, lease: &str) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![
            entry("counter", counter),
            entry("scope", scope),
            entry("lease", lease),
            entry("release", "true"),
        ],
        limit: None,
        hits_addend: Some(UInt64Value { value: 0 }),
        is_negative_hits: false,
    }
}

pub fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors,
        hits_addend: 0,
    }
}

/// A counter name no other test (or earlier run against the same Redis) uses.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = now().as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// This machine's clock (Redis runs on it too).
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// Sleeps until at least `margin` is left in the current window of
/// `seconds`, so that what follows does not cross a window boundary by
/// accident; returns the window's start.
pub fn at_least_left_in_window(seconds: u64, margin: Duration) -> u64 {
    let window = Duration::from_secs(seconds);
    let now = now();
    let start = now.as_secs() - now.as_secs() % seconds;
    let end = Duration::from_secs(start) + window;
    if end - now >= margin {
        return start;
    }
    std::thread::sleep(end - now + Duration::from_millis(20));
    start + seconds
}

pub async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    request: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(request)
        .await
        .expect("ShouldRateLimit")
        .into_inner()
}

pub fn code(response: &RateLimitResponse) -> Code {
    Code::try_from(response.overall_code).expect("a known code")
}
