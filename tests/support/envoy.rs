//! A real Envoy with the built module, started per test. Envoy binds its own
//! listener and admin ports (port 0) and the harness reads them back, so no
//! port is ever chosen here and then lost to another process. On a failing
//! test its log is printed (the module's audit lines and errors are in it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The Envoy release the README's claims were measured on: `make test`
/// installs it, and the tests refuse another.
pub const ENVOY_RELEASE: &str = "1.40.";

/// How to start Envoy.
pub struct EnvoyOptions {
    /// The policy document, given to the filter as its plugin configuration.
    pub policy: String,
    pub upstream_port: u16,
    /// Envoy worker threads (`--concurrency`).
    pub workers: u32,
    /// Overrides the whole YAML (ports are substituted by the caller).
    pub config_override: Option<String>,
}

impl EnvoyOptions {
    pub fn new(policy: &str, upstream_port: u16) -> Self {
        EnvoyOptions {
            policy: policy.to_string(),
            upstream_port,
            workers: 1,
            config_override: None,
        }
    }
}

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    dir: PathBuf,
}

/// A loopback port free when asked, and released at once: another process
/// may take it before the caller uses it. The suite does not use it any
/// more: Envoy binds port 0 (see [`Envoy::start`]), servers in the tests bind
/// port 0 and report their address, and an address where nothing listens is
/// a [`ClosedPort`]. Kept for code outside the suite that still calls it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

/// A loopback port where nothing listens, held for as long as the value
/// lives: the socket is bound but never listens, so a connection to it is
/// refused, and no other socket can bind the port meanwhile (it has neither
/// `SO_REUSEADDR` nor `SO_REUSEPORT`).
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ClosedPort {
    pub fn reserve() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4()
            .and_then(|socket| {
                socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                Ok(socket)
            })
            .unwrap_or_else(|err| panic!("cannot reserve a loopback port: {err}"));
        let port = socket
            .local_addr()
            .unwrap_or_else(|err| panic!("reserved port: {err}"))
            .port();
        ClosedPort { socket, port }
    }

    /// The address, as `127.0.0.1:PORT`.
    pub fn address(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|err| panic!("reserved port: {err}"))
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$ENVOY_BIN`, the one `make` installs in `.venv`, or
/// `envoy` on PATH. It must be Envoy 1.40 (checked once per test binary).
pub fn envoy_binary() -> PathBuf {
    let binary = if let Ok(path) = std::env::var("ENVOY_BIN") {
        PathBuf::from(path)
    } else if repo_root().join(".venv/bin/envoy").exists() {
        repo_root().join(".venv/bin/envoy")
    } else {
        PathBuf::from("envoy")
    };
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(err) = CHECKED.get_or_init(|| check_envoy_release(&binary)) {
        panic!("{err}");
    }
    binary
}

/// `envoy --version` prints e.g. `envoy  version: 9e55…/1.40.0/Clean/RELEASE/BoringSSL`.
fn check_envoy_release(binary: &Path) -> Result<(), String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|err| {
            format!(
            "cannot run {} --version: {err} (make test installs Envoy {ENVOY_RELEASE}x in .venv)",
            binary.display()
        )
        })?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && version.contains(&format!("/{ENVOY_RELEASE}")) {
        Ok(())
    } else {
        Err(format!(
            "{} is not Envoy {ENVOY_RELEASE}x, which the tests and the README rely on: {version:?} \
             (set ENVOY_BIN, or run `make envoy` for the .venv one)",
            binary.display()
        ))
    }
}

/// The module Envoy loads: `$MCP_POLICY_WASM` or the release build. It must
/// exist and be newer than every source it is built from, so that a plain
/// `cargo test` never tests an old module.
pub fn wasm_module() -> PathBuf {
    let path = std::env::var("MCP_POLICY_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/wasm32-wasip1/release/mcp_policy.wasm"));
    check_module_is_fresh(&path);
    path
}

/// Panics unless `module` exists and no file under `src/` was modified after
/// it. (Not `Cargo.toml` or `Cargo.lock`: a change there that does not touch
/// the module's dependencies, a new dev-dependency say, leaves the module as
/// it was, and `make wasm` would not rewrite it.)
pub fn check_module_is_fresh(module: &Path) {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    };
    assert!(
        module.exists(),
        "{} is missing: build it with `make wasm` (make test does)",
        module.display()
    );
    let built = modified(module);
    let root = repo_root();
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        {
            let path = entry
                .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
                .path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    let newest: Option<(SystemTime, PathBuf)> = sources
        .into_iter()
        .map(|path| (modified(&path), path))
        .max_by_key(|(time, _)| *time);
    if let Some((time, source)) = newest {
        assert!(
            time <= built,
            "{} is older than {} (changed after the module was built): build it again with \
             `make wasm` (make test does) or point MCP_POLICY_WASM at a fresh build",
            module.display(),
            source.display()
        );
    }
}

/// The Envoy configuration the tests run: the same filter settings as
/// envoy/envoy.yaml, on the given ports.
pub fn config_yaml(port: u16, admin_port: u16, upstream_port: u16, policy: &str) -> String {
    let wasm = wasm_module();
    // JSON string syntax is valid YAML double-quoted syntax.
    let policy = serde_json::to_string(policy).unwrap_or_default();
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
stats_config:
  stats_tags:
{stats_tags}static_resources:
  listeners:
  - name: mcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    per_connection_buffer_limit_bytes: 2097152
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          codec_type: AUTO
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  access_log: "mcp"
                  method: "%REQ(:METHOD)%"
                  status: "%RESPONSE_CODE%"
                  duration_ms: "%DURATION%"
                  grant: "%FILTER_STATE(wasm.mcp_policy.grant:PLAIN)%"
                  tool: "%FILTER_STATE(wasm.mcp_policy.tool:PLAIN)%"
                  decision: "%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%"
                  rule: "%FILTER_STATE(wasm.mcp_policy.rule:PLAIN)%"
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: mcp_server, timeout: 0s }}
          http_filters:
          - name: mcp-policy
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: mcp-policy
                root_id: mcp-policy
                allow_on_headers_stop_iteration: true
                vm_config:
                  vm_id: mcp-policy
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {policy}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: mcp_server
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: mcp_server
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }} }} }}
"#,
        wasm = wasm.display(),
        stats_tags = mcp_policy::metrics::stats_tags()
            .iter()
            .map(|(tag, regex)| format!("  - tag_name: {tag}\n    regex: '{regex}'\n"))
            .collect::<String>()
    )
}

static STARTED: AtomicU32 = AtomicU32::new(0);

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-policy-e2e-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    dir
}

/// Where Envoy writes its admin address (`--admin-address-path`).
const ADMIN_ADDRESS_FILE: &str = "admin-address";

fn spawn(dir: &Path, config: &str, workers: u32) -> Child {
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).unwrap_or_else(|err| panic!("write config: {err}"));
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap_or_else(|err| panic!("{err}"));
    let binary = envoy_binary();
    Command::new(&binary)
        .arg("-c")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(dir.join(ADMIN_ADDRESS_FILE))
        .args(["--concurrency", &workers.to_string()])
        .args(["--disable-hot-restart", "--log-level", "info"])
        // Access log lines reach the log file within 50 ms (default: 10 s).
        .args(["--file-flush-interval-msec", "50"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap_or_else(|err| panic!("{err}")))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot start {}: {err} (make test installs Envoy in .venv)",
                binary.display()
            )
        })
}

impl Envoy {
    /// Starts Envoy and waits until its listener is ready. Envoy binds the
    /// listener and admin ports (port 0); `port` and `admin_port` are the
    /// ones it got.
    pub async fn start(options: EnvoyOptions) -> Envoy {
        let config = options
            .config_override
            .clone()
            .unwrap_or_else(|| config_yaml(0, 0, options.upstream_port, &options.policy));
        Envoy::start_with_config(|_, _| config, options.workers).await
    }

    /// Starts Envoy with the configuration `config(port, admin_port)`
    /// returns. It is called with 0 for both: Envoy binds them, and the
    /// harness reads back what it got (the admin address from
    /// `--admin-address-path`, the listener's from the admin `/listeners`).
    pub async fn start_with_config(config: impl FnOnce(u16, u16) -> String, workers: u32) -> Envoy {
        let dir = scratch_dir();
        let child = spawn(&dir, &config(0, 0), workers);
        let mut envoy = Envoy {
            child,
            port: 0,
            admin_port: 0,
            dir,
        };
        envoy.wait_ready().await;
        envoy
    }

    /// Starts Envoy with a configuration it must refuse; returns its exit
    /// status and log.
    pub fn start_expecting_refusal(policy: &str) -> (ExitStatus, String) {
        let dir = scratch_dir();
        let upstream = ClosedPort::reserve();
        let config = config_yaml(0, 0, upstream.port, policy);
        let mut child = spawn(&dir, &config, 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
                panic!("Envoy did not refuse the configuration within 60 s; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (status, log)
    }

    /// Waits for the admin address Envoy writes, for `/ready`, and for a
    /// listener bound to a real port that accepts connections.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Envoy exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if self.admin_port == 0 {
                self.admin_port = std::fs::read_to_string(self.dir.join(ADMIN_ADDRESS_FILE))
                    .ok()
                    .and_then(|address| address.trim().parse::<SocketAddr>().ok())
                    .map_or(0, |address| address.port());
            }
            if self.admin_port != 0 && self.port == 0 {
                let ready = client
                    .get(format!("http://127.0.0.1:{}/ready", self.admin_port))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if ready {
                    self.port = self.listener_port().await.unwrap_or(0);
                }
            }
            if self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "Envoy not ready within 60 s (admin port {}, listener port {}); log:\n{}",
                    self.admin_port,
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port of the listener named `mcp` (the harness's and the shipped
    /// configurations'), or of the only listener, from the admin `/listeners`.
    async fn listener_port(&self) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}/listeners?format=json", self.admin_port);
        let listeners: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        let statuses = listeners["listener_statuses"].as_array()?;
        let status = match statuses.iter().find(|status| status["name"] == "mcp") {
            Some(status) => status,
            None if statuses.len() == 1 => &statuses[0],
            None => panic!("which listener is the MCP one? {listeners}"),
        };
        let port = status["local_address"]["socket_address"]["port_value"].as_u64()?;
        u16::try_from(port).ok().filter(|port| *port != 0)
    }

    /// Envoy's process id (for resident memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident memory in KiB, from /proc.
    pub fn resident_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}:\n{status}"))
    }

    /// The MCP endpoint through Envoy.
    pub fn mcp_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The audit records the filter logged, parsed, once every request Envoy
    /// has finished is logged (see [`Envoy::settle`]).
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.settle();
        self.log()
            .lines()
            .filter_map(|line| line.split_once(mcp_policy::audit::AUDIT_PREFIX))
            .map(|(_, json)| {
                serde_json::from_str(json)
                    .unwrap_or_else(|err| panic!("an audit line is not JSON ({err}): {json}"))
            })
            .collect()
    }

    /// The audit records logged after the first `seen` (what
    /// `audit_records().len()` was before the requests of interest).
    pub fn audit_records_after(&self, seen: usize) -> Vec<serde_json::Value> {
        let records = self.audit_records();
        assert!(
            records.len() >= seen,
            "{} audit records, fewer than the {seen} seen before",
            records.len()
        );
        records[seen..].to_vec()
    }

    /// Waits until every request Envoy has finished has its access-log line
    /// in the log: as many lines (of the harness's format, `access_log:
    /// "mcp"`) as requests started minus requests still active, from the
    /// admin stats of every HTTP connection manager but the admin's. The
    /// filter writes its audit line in `on_log`, which Envoy runs before its
    /// access loggers, and to stderr at once (the access log is flushed every
    /// 50 ms): once a request's access-log line is there, so is its audit
    /// line. A positive marker, so "no audit line" is only concluded after
    /// the request is known to be over.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (started, active) = self.downstream_requests();
            let logged = self.access_log_lines();
            if logged >= started.saturating_sub(active) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after 10 s, {logged} access-log lines for {started} requests started and {active} active; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests started and still active, over the HTTP connection managers
    /// but the admin interface's.
    fn downstream_requests(&self) -> (u64, u64) {
        let stats = self.admin_blocking("/stats?filter=^http\\..*\\.downstream_rq_(total|active)$");
        let (mut started, mut active) = (0, 0);
        for line in stats.lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            if name.starts_with("http.admin.") {
                continue;
            }
            let value: u64 = value
                .trim()
                .parse()
                .unwrap_or_else(|err| panic!("stat {line:?}: {err}"));
            if name.ends_with(".downstream_rq_total") {
                started += value;
            } else if name.ends_with(".downstream_rq_active") {
                active += value;
            }
        }
        (started, active)
    }

    fn access_log_lines(&self) -> u64 {
        self.log()
            .lines()
            .filter(|line| line.starts_with('{'))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["access_log"] == "mcp")
            .count() as u64
    }

    /// GET on the admin interface without an async runtime (HTTP/1.1, one
    /// connection); panics unless it answers 200.
    fn admin_blocking(&self, path: &str) -> String {
        let fail = |err: &dyn std::fmt::Display| -> ! {
            panic!("admin GET {path} on port {}: {err}", self.admin_port)
        };
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap_or_else(|err| fail(&err));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
        )
        .unwrap_or_else(|err| fail(&err));
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|err| fail(&err));
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| fail(&format!("no header end in {answer:?}")));
        if !head.starts_with("HTTP/1.1 200") {
            fail(&format!("answered {head:?}"));
        }
        let chunked = head
            .lines()
            .any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
        if !chunked {
            return body.to_string();
        }
        let mut text = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest
                .split_once("\r\n")
                .unwrap_or_else(|| fail(&format!("bad chunk in {body:?}")));
            let size = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|err| fail(&format!("chunk size {size:?}: {err}")));
            if size == 0 {
                return text;
            }
            let chunk = after
                .get(..size)
                .unwrap_or_else(|| fail(&format!("short chunk in {body:?}")));
            text.push_str(chunk);
            rest = after.get(size + 2..).unwrap_or("");
        }
    }

    /// Envoy's access log entries (JSON lines the harness's config writes to
    /// stdout), once at least `expected` have been flushed (or 5 s passed).
    pub fn access_log(&self, expected: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let entries: Vec<serde_json::Value> = self
                .log()
                .lines()
                .filter(|line| line.starts_with('{'))
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|entry| entry["access_log"] == "mcp")
                .collect();
            if entries.len() >= expected || Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A labelled series from `/stats/prometheus`, e.g.
    /// `mcp_policy_tool_allowed{mcp_tool="x"}`; it must be exported.
    pub async fn prometheus_series(&self, series: &str) -> u64 {
        let scrape = self.admin("/stats/prometheus").await;
        let line = scrape
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| *name == series);
        match line {
            Some((_, value)) => value
                .trim()
                .parse()
                .unwrap_or_else(|err| panic!("{series} {value:?}: {err}")),
            None => {
                let ours: Vec<&str> = scrape
                    .lines()
                    .filter(|line| line.contains("mcp_policy"))
                    .collect();
                panic!(
                    "{series} is not in /stats/prometheus; lines naming mcp_policy:\n{}",
                    ours.join("\n")
                )
            }
        }
    }

    /// GET on the admin interface; panics unless it answers 2xx with a body.
    pub async fn admin(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let response = reqwest::get(&url)
            .await
            .unwrap_or_else(|err| panic!("admin {url}: {err}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("admin {url}: reading the answer: {err}"));
        assert!(status.is_success(), "admin {url} answered {status}: {text}");
        text
    }

    /// A counter's value from `/stats/prometheus`; it must be exported.
    pub async fn prometheus_counter(&self, name: &str) -> u64 {
        let scrape = self.admin("/stats/prometheus").await;
        let value = scrape
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(' '))
            .find(|(metric, _)| metric.trim_end_matches("{}") == name)
            .and_then(|(_, value)| value.trim().parse().ok());
        value.unwrap_or_else(|| {
            let ours: Vec<&str> = scrape
                .lines()
                .filter(|line| line.contains("policy") || line.contains("wasm"))
                .collect();
            panic!(
                "{name} is not in /stats/prometheus; lines naming mcp:\n{}",
                ours.join("\n")
            )
        })
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- Envoy log ({}) -----\n{}\n----- end of Envoy log -----",
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
