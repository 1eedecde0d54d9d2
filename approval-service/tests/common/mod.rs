//! Real processes for the tests: `redis-server` and the service binary, on
//! 127.0.0.1 ports the OS picks, killed when dropped; and the filter's side
//! of the protocol, built as the filter will build it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use mcp_approval_service::canonical;
use mcp_approval_service::model::{Call, Target};
use serde_json::{json, Value};

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A `redis-server` on 127.0.0.1 without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server: install it (`make approval-test` does: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one command with redis-cli-free RESP, returns the raw reply line.
    pub fn command(&self, parts: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut request = format!("*{}\r\n", parts.len());
        for part in parts {
            request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Which store a service runs on.
pub enum Backend<'a> {
    Memory,
    Redis(&'a Redis),
    /// Redis, started only after the service.
    RedisNotYetUp(&'a Redis),
}

/// The service binary on free ports.
pub struct Service {
    /// The filter protocol's address.
    pub filter: SocketAddr,
    /// The approvers' page and API.
    pub page: SocketAddr,
    child: Child,
    lines: Receiver<String>,
    seen: RefCell<Vec<String>>,
}

/// Approver tokens the tests use: (name, token).
pub const ALICE: (&str, &str) = ("alice", "alice-token-0123456789abcdef");
pub const BOB: (&str, &str) = ("bob", "bob-token-0123456789abcdef");

pub fn token_flag((name, token): (&str, &str)) -> String {
    format!("{name}={}", mcp_approval_service::auth::token_hash(token))
}

impl Service {
    /// Started with tokens for alice and bob and `extra` flags; waits until ready.
    pub fn start(backend: &Backend<'_>, extra: &[&str]) -> Service {
        let mut args: Vec<String> = vec![
            "--approver-token".into(),
            token_flag(ALICE),
            "--approver-token".into(),
            token_flag(BOB),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Service::spawn(backend, &args)
    }

    /// In memory, with no approver tokens (header sign-in only).
    pub fn start_without_tokens(extra: &[&str]) -> Service {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Service::spawn(&Backend::Memory, &args)
    }

    fn spawn(backend: &Backend<'_>, extra: &[String]) -> Service {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--filter-listen".into(),
            "127.0.0.1:0".into(),
        ];
        match backend {
            Backend::Memory => args.push("--memory".into()),
            Backend::Redis(redis) | Backend::RedisNotYetUp(redis) => {
                args.extend([
                    "--redis".into(),
                    redis.url(),
                    "--redis-timeout-ms".into(),
                    "500".into(),
                ]);
            }
        }
        args.extend(extra.iter().cloned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-approval-service"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mcp-approval-service");
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
        let mut service = Service {
            filter: "127.0.0.1:0".parse().unwrap(),
            page: "127.0.0.1:0".parse().unwrap(),
            child,
            lines,
            seen: RefCell::new(Vec::new()),
        };
        let line = service.wait_for_line("filter protocol listening on ");
        service.filter = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .unwrap()
            .parse()
            .unwrap();
        if !matches!(backend, Backend::RedisNotYetUp(_)) {
            service.wait_for_page();
        }
        service
    }

    /// Waits for the approvers' page to listen (it waits for the signing secret).
    pub fn wait_for_page(&mut self) {
        let line = self.wait_for_line("approvers' page listening on ");
        self.page = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .unwrap()
            .parse()
            .unwrap();
    }

    /// Waits for a stderr line containing `needle` (printed at any time since start).
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

    pub fn page_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.page)
    }

    pub fn filter_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.filter)
    }

    /// `POST /v1/check`: (HTTP status, body).
    pub async fn check(&self, call: &Call) -> (u16, Value) {
        self.check_raw(check_body(call).to_string()).await
    }

    pub async fn check_raw(&self, body: String) -> (u16, Value) {
        let response = http()
            .post(self.filter_url("/v1/check"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("check");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A JSON API call as an approver with a bearer token.
    pub async fn api(
        &self,
        approver: (&str, &str),
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = http()
            .request(method.parse().unwrap(), self.page_url(path))
            .header("authorization", format!("Bearer {}", approver.1));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("api call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn approve(&self, approver: (&str, &str), id: &str) -> (u16, Value) {
        self.api(
            approver,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(json!({})),
        )
        .await
    }

    pub async fn deny(&self, approver: (&str, &str), id: &str, reason: &str) -> (u16, Value) {
        self.api(
            approver,
            "POST",
            &format!("/api/v1/approvals/{id}/deny"),
            Some(json!({ "reason": reason })),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        http()
            .get(self.filter_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric's value (the line starting with `series `).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{series} ")))
            .map(|value| value.parse().unwrap())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A call as the filter would describe it.
pub fn call(grant: &str, arguments: Value) -> Call {
    Call {
        grant: grant.into(),
        caller: Some(grant.into()),
        target: Target {
            kind: "tool".into(),
            name: "asyncExecuteCode".into(),
        },
        arguments: canonical::canonicalize(&arguments.to_string()).unwrap(),
        rule: "/tools/asyncExecuteCode/approve_if/0".into(),
        reason: Some("scripts that start processes need a look".into()),
        ttl_seconds: 600,
        separate_approver: false,
        policy_revision: "r1".into(),
    }
}

/// The check body the filter sends for `call`.
pub fn check_body(call: &Call) -> Value {
    json!({
        "digest": call.digest(),
        "grant": call.grant,
        "caller": call.caller,
        "target": call.target,
        "arguments": serde_json::from_str::<Value>(&call.arguments).unwrap(),
        "rule": call.rule,
        "reason": call.reason,
        "ttl_seconds": call.ttl_seconds,
        "separate_approver": call.separate_approver,
        "policy_revision": call.policy_revision,
    })
}
