//! The approval side of the e2e tests: a real `redis-server`, the shipped
//! approval service binary on it, Debian's headless Chromium driven through
//! chromedriver (as `approval-service/tests/browser.rs` drives it).
//!
//! Every process binds 127.0.0.1 ports the OS picks and is killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::envoy::free_port;

/// A child process killed when dropped.
pub struct Process(Option<Child>);

impl Process {
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // A child that leads its own process group (chromedriver) takes
            // the group with it: the Chromium it started. For any other
            // child there is no such group, and this does nothing.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A program on PATH (redis-server, chromium, chromedriver: Debian packages).
fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("{name} not found on PATH (make test installs it)"))
}

fn redis_pid(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: usize = header.strip_prefix('$')?.trim().parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()?.lines().find_map(|line| {
        line.strip_prefix("process_id:")
            .map(|pid| pid.trim().to_string())
    })
}

/// `redis-server` without persistence on a free port (confirmed to be this
/// server's by its process id: it cannot be handed a bound socket).
pub struct Redis {
    pub port: u16,
    process: Process,
}

impl Redis {
    pub fn start() -> Redis {
        for _ in 0..20 {
            let port = free_port();
            let mut child = Command::new(on_path("redis-server"))
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("redis-server: {err}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Some(pid) = redis_pid(port) {
                    if pid == child.id().to_string() {
                        return Redis {
                            port,
                            process: Process(Some(child)),
                        };
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(Process(Some(child)));
        }
        panic!("no free port for redis-server in 20 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// An approver's sign-in token: (name, token).
pub const BOB: (&str, &str) = ("bob", "bob-approves-0123456789abcdef");

/// The shipped approval service (`$MCP_APPROVAL_SERVICE`, which `make test`
/// builds), on Redis, with a sign-in token for bob.
pub struct ApprovalService {
    /// The filter protocol's address (the Envoy cluster's endpoint).
    pub filter: SocketAddr,
    /// The approvers' page.
    pub page: SocketAddr,
    process: Process,
    _lines: Receiver<String>,
}

impl ApprovalService {
    pub fn start(redis: &Redis) -> ApprovalService {
        let binary = std::env::var("MCP_APPROVAL_SERVICE").unwrap_or_else(|_| {
            super::envoy::repo_root()
                .join("approval-service/target/release/mcp-approval-service")
                .display()
                .to_string()
        });
        let token = format!(
            "{}=sha256:{}",
            BOB.0,
            mcp_policy::policy::sha256_hex(BOB.1.as_bytes())
        );
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--filter-listen", "127.0.0.1:0"])
            .args(["--redis", &redis.url(), "--redis-timeout-ms", "500"])
            .args(["--approver-token", &token])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{binary}: {err} (make test builds it)"));
        let stderr = child.stderr.take().unwrap();
        let process = Process(Some(child));
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[approval-service] {line}");
                let _ = tx.send(line);
            }
        });
        let address = |line: &str| -> SocketAddr {
            line.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split([',', ' ']).next())
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut filter, mut page) = (None, None);
        while filter.is_none() || page.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("the approval service's start lines within 30 s");
            if line.contains("filter protocol listening on ") {
                filter = Some(address(&line));
            } else if line.contains("approvers' page listening on ") {
                page = Some(address(&line));
            }
        }
        ApprovalService {
            filter: filter.unwrap(),
            page: page.unwrap(),
            process,
            _lines: lines,
        }
    }

    /// The page's base URL (also the public URL the policy names).
    pub fn page_url(&self) -> String {
        format!("http://{}", self.page)
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// `mcp_approval_checks_total`, all results.
    pub async fn checks(&self) -> u64 {
        let url = format!("http://{}/metrics", self.filter);
        super::metrics::service_sum(&url, "mcp_approval_checks_total", &[]).await
    }
}

/// The Envoy cluster the policy's `approval_service.cluster` names, for the
/// harness's configuration (HTTP/1.1, like the service's filter listener).
pub fn approval_cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    )
}

/// chromedriver on a free port and a fresh browser profile, both gone when
/// dropped; a headless Chromium session signed in as bob.
pub struct Browser {
    driver: Process,
    profile: PathBuf,
    pub client: Client,
    page: String,
}

impl Browser {
    pub async fn signed_in(service: &ApprovalService) -> Browser {
        let port = free_port();
        // Its own process group: a failed test never closes its session,
        // and Chromium outlived a chromedriver killed alone.
        let driver = Command::new(on_path("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Process(Some(driver));
        let profile = std::env::temp_dir().join(format!(
            "mcp-policy-e2e-browser-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": on_path("chromium"),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        let browser = Browser {
            driver,
            profile,
            client,
            page: service.page_url(),
        };
        browser.sign_in().await;
        browser
    }

    async fn sign_in(&self) {
        self.client
            .goto(&format!("{}/approvals", self.page))
            .await
            .unwrap();
        let url = self.client.current_url().await.unwrap();
        assert!(url.path().ends_with("/login"), "not sent to sign in: {url}");
        self.client
            .find(Locator::Id("token"))
            .await
            .unwrap()
            .send_keys(BOB.1)
            .await
            .unwrap();
        self.click("#sign-in").await;
        self.text("#approver").await;
    }

    pub async fn text(&self, css: &str) -> String {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element.text().await.unwrap(),
            Err(err) => panic!(
                "no {css}: {err}\n{}",
                self.client.source().await.unwrap_or_default()
            ),
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
            .click()
            .await
            .unwrap();
    }

    /// Opens the link the agent was given; the page must show this call.
    pub async fn open(&self, url: &str, grant: &str, tool: &str, argument_text: &str) {
        self.client.goto(url).await.unwrap();
        assert!(
            self.text("#grant").await.contains(grant),
            "the page names the caller"
        );
        assert!(self.text("#target").await.contains(tool));
        let arguments = self.text("#arguments").await;
        assert!(
            arguments.contains(argument_text),
            "the approver sees the values: {arguments}"
        );
    }

    /// Opens the link and approves.
    pub async fn approve(&self, url: &str, grant: &str, tool: &str, argument_text: &str) {
        self.open(url, grant, tool, argument_text).await;
        self.click("#approve").await;
        let flash = self.text("#flash").await;
        assert!(flash.starts_with("Approved."), "{flash}");
    }

    /// Opens the link and denies with `reason`.
    pub async fn deny(
        &self,
        url: &str,
        grant: &str,
        tool: &str,
        argument_text: &str,
        reason: &str,
    ) {
        self.open(url, grant, tool, argument_text).await;
        self.client
            .find(Locator::Id("deny-reason"))
            .await
            .unwrap()
            .send_keys(reason)
            .await
            .unwrap();
        self.click("#deny").await;
        let flash = self.text("#flash").await;
        assert!(flash.starts_with("Denied."), "{flash}");
    }

    /// Waits until the pending list shows the approval, navigating there.
    pub async fn listed(&self, id: &str) {
        self.client
            .goto(&format!("{}/approvals", self.page))
            .await
            .unwrap();
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(&format!("#a-{id}")))
            .await
            .unwrap_or_else(|err| panic!("approval {id} not listed: {err}"));
    }

    pub async fn close(self) {
        let Browser {
            mut driver,
            profile,
            client,
            ..
        } = self;
        let _ = client.close().await;
        driver.stop();
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(&profile);
            if !profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
