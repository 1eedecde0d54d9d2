//! The processes around the filter, for tests that need them whole: Redis,
//! the rate-limit service, the approval service and Prometheus. Each is
//! killed when its value is dropped. Ports: the services bind port 0 and
//! print what they got; Redis and Prometheus cannot report theirs, so Redis
//! gets a free port confirmed to be its own, and Prometheus's listening port
//! is read back from /proc.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::envoy::{free_port, repo_root};

/// A child process, killed and waited for when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary from an environment variable, else its default path.
fn binary(variable: &str, default: &str) -> PathBuf {
    std::env::var(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(default))
}

fn redis_info(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: usize = header.strip_prefix('$')?.trim().parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

/// redis-server on a free loopback port, once it answers as itself (its
/// process id): it cannot be handed a bound socket.
pub fn start_redis() -> (Process, u16) {
    for _ in 0..20 {
        let port = free_port();
        let mut process = Process(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("redis-server: {err} (make test installs it)")),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.0.try_wait() {
                break;
            }
            if let Some(info) = redis_info(port) {
                let mine = format!("process_id:{}", process.id());
                if info.lines().any(|line| line.trim() == mine) {
                    return (process, port);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free port for redis-server in 20 tries");
}

/// A process's standard error, line by line, echoed with `name`.
fn lines_of(child: &mut Child, name: &'static str) -> Receiver<String> {
    let stderr = child
        .stderr
        .take()
        .unwrap_or_else(|| panic!("{name}: no stderr"));
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{name}] {line}");
            let _ = tx.send(line);
        }
    });
    lines
}

/// The first line containing `marker`, within 20 s.
fn wait_for_line(lines: &Receiver<String>, marker: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{what}: no line with {marker:?} within 20 s"));
        if line.contains(marker) {
            return line;
        }
    }
}

/// The port of the `ADDRESS:PORT` after `marker` in `line`.
fn port_after(line: &str, marker: &str) -> u16 {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port after {marker:?}: {line}"))
}

/// mcp-ratelimit-service on ports it binds itself.
pub struct RateLimitService {
    pub process: Process,
    pub grpc_port: u16,
    pub http_port: u16,
    _lines: Receiver<String>,
}

impl RateLimitService {
    pub fn start(redis_port: u16) -> RateLimitService {
        let binary = binary(
            "MCP_RATELIMIT_SERVICE",
            "ratelimit-service/target/release/mcp-ratelimit-service",
        );
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
            .args(["--redis-timeout-ms", "200"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{}: {err} (make test builds it)", binary.display()));
        let lines = lines_of(&mut child, "ratelimit-service");
        let process = Process(child);
        let line = wait_for_line(&lines, "listening on ", "mcp-ratelimit-service");
        RateLimitService {
            process,
            grpc_port: port_after(&line, "listening on "),
            http_port: port_after(&line, "http on "),
            _lines: lines,
        }
    }
}

/// mcp-approval-service in memory, on ports it binds itself.
pub struct ApprovalService {
    pub process: Process,
    /// The filter protocol and `/metrics`.
    pub filter_port: u16,
    _lines: Receiver<String>,
}

impl ApprovalService {
    pub fn start() -> ApprovalService {
        let binary = binary(
            "MCP_APPROVAL_SERVICE",
            "approval-service/target/release/mcp-approval-service",
        );
        let token = Command::new(&binary)
            .args(["new-token", "tester"])
            .output()
            .unwrap_or_else(|err| panic!("{}: {err} (make test builds it)", binary.display()));
        let printed = String::from_utf8_lossy(&token.stdout).to_string();
        let flag = printed
            .lines()
            .find_map(|line| line.strip_prefix("--approver-token "))
            .unwrap_or_else(|| panic!("new-token printed {printed:?}"))
            .to_string();
        let mut child = Command::new(&binary)
            .args([
                "--memory",
                "--listen",
                "127.0.0.1:0",
                "--filter-listen",
                "127.0.0.1:0",
            ])
            .args(["--approver-token", &flag])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{}: {err}", binary.display()));
        let lines = lines_of(&mut child, "approval-service");
        let process = Process(child);
        let line = wait_for_line(
            &lines,
            "filter protocol listening on ",
            "mcp-approval-service",
        );
        ApprovalService {
            process,
            filter_port: port_after(&line, "filter protocol listening on "),
            _lines: lines,
        }
    }
}

/// The ports a process listens on (TCP, IPv4 and IPv6), from /proc.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let target = target.to_string_lossy().to_string();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    inodes.push(inode.to_string());
                }
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A (LISTEN), inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                if let Some(port) = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// A real Prometheus (Debian's `prometheus`, or `$PROMETHEUS_BIN`) with a
/// configuration of the test's, its data in a scratch directory, on a
/// loopback port it picks itself (read back from /proc).
pub struct Prometheus {
    pub process: Process,
    pub port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml) in `dir`, which
    /// also gets its data; `rules` are copied beside the configuration.
    pub fn start(dir: &Path, config: &str) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap_or_else(|err| panic!("{err}"));
        let log =
            std::fs::File::create(dir.join("prometheus.log")).unwrap_or_else(|err| panic!("{err}"));
        let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_string());
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|err| panic!("{err}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{binary}: {err} (make test installs Debian's prometheus package)")
            });
        let process = Process(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ports = listening_ports(process.id());
            if let Some(port) = ports.first() {
                let ready =
                    TcpStream::connect(("127.0.0.1", *port))
                        .and_then(|mut stream| {
                            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                            stream.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n")?;
                            let mut answer = String::new();
                            stream.read_to_string(&mut answer)?;
                            Ok(answer.starts_with("HTTP/1.0 200")
                                || answer.starts_with("HTTP/1.1 200"))
                        })
                        .unwrap_or(false);
                if ready {
                    return Prometheus {
                        process,
                        port: *port,
                        dir: dir.to_path_buf(),
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 60 s; log:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's `data.result`; panics unless Prometheus says success.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let encoded: String = expr
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        );
        let answer: serde_json::Value = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{url}: {err}"))
            .json()
            .await
            .unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
