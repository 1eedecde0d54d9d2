//! A real Envoy with the built module, started per test on free loopback
//! ports. On a failing test its log is printed (the module's audit lines and
//! errors are in it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// A free loopback port (bound and released; Envoy binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$ENVOY_BIN`, the one `make` installs in `.venv`, or `envoy` on PATH.
pub fn envoy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(path);
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("envoy")
}

/// The module Envoy loads: `$MCP_POLICY_WASM` or the release build.
pub fn wasm_module() -> PathBuf {
    let path = std::env::var("MCP_POLICY_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/wasm32-wasip1/release/mcp_policy.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build it with `make wasm` (make test does)",
        path.display()
    );
    path
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

fn spawn(dir: &Path, config: &str, workers: u32) -> Child {
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).unwrap_or_else(|err| panic!("write config: {err}"));
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap_or_else(|err| panic!("{err}"));
    let binary = envoy_binary();
    Command::new(&binary)
        .arg("-c")
        .arg(&config_path)
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
    /// Starts Envoy and waits until its listener is ready.
    pub async fn start(options: EnvoyOptions) -> Envoy {
        let dir = scratch_dir();
        let (port, admin_port) = (free_port(), free_port());
        let config = options.config_override.clone().unwrap_or_else(|| {
            config_yaml(port, admin_port, options.upstream_port, &options.policy)
        });
        let child = spawn(&dir, &config, options.workers);
        let mut envoy = Envoy {
            child,
            port,
            admin_port,
            dir,
        };
        envoy.wait_ready().await;
        envoy
    }

    /// Starts Envoy with the configuration `config(port, admin_port)` returns.
    pub async fn start_with_config(config: impl FnOnce(u16, u16) -> String, workers: u32) -> Envoy {
        let dir = scratch_dir();
        let (port, admin_port) = (free_port(), free_port());
        let child = spawn(&dir, &config(port, admin_port), workers);
        let mut envoy = Envoy {
            child,
            port,
            admin_port,
            dir,
        };
        envoy.wait_ready().await;
        envoy
    }

    /// Starts Envoy with a configuration it must refuse; returns its exit
    /// status and log.
    pub fn start_expecting_refusal(policy: &str) -> (ExitStatus, String) {
        let dir = scratch_dir();
        let config = config_yaml(free_port(), free_port(), free_port(), policy);
        let mut child = spawn(&dir, &config, 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
                panic!("Envoy did not refuse the configuration within 60 s; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (status, log)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        let ready_url = format!("http://127.0.0.1:{}/ready", self.admin_port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Envoy exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if let Ok(response) = client.get(&ready_url).send().await {
                if response.status().is_success()
                    && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("Envoy not ready within 60 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Envoy's process id (for resident memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident memory in KiB, from /proc.
    pub fn resident_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The MCP endpoint through Envoy.
    pub fn mcp_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The audit records the filter logged, parsed. They are written when a
    /// stream ends, which can be just after the client has its answer: wait
    /// until the count has been stable for 150 ms.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let read = || -> Vec<serde_json::Value> {
            self.log()
                .lines()
                .filter_map(|line| line.split_once(mcp_policy::audit::AUDIT_PREFIX))
                .filter_map(|(_, json)| serde_json::from_str(json).ok())
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut records = read();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let again = read();
            if again.len() == records.len() || Instant::now() > deadline {
                return again;
            }
            records = again;
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
    /// `mcp_policy_tool_allowed{mcp_tool="x"}`; 0 if absent.
    pub async fn prometheus_series(&self, series: &str) -> u64 {
        let scrape = self.admin("/stats/prometheus").await;
        scrape
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// GET on the admin interface.
    pub async fn admin(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(err) => panic!("admin {url}: {err}"),
        }
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
