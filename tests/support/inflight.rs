//! A slow MCP upstream that counts the calls in flight at it: a call is in
//! flight from the moment its whole request has arrived until the upstream
//! has stopped working on it (it answered, it reset the connection itself,
//! or Envoy closed the connection because the caller went away). It speaks
//! HTTP/1.1 by hand so that it sees a closed connection at once: a call
//! Envoy abandons stops counting when its connection closes, not when a
//! framework notices.
//!
//! How each call ends is the upstream's choice, by the order calls arrive
//! ([`Ending`]), so every way of ending is exercised whatever calls get
//! through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream ends one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Answer with a result after `hold`.
    Answer,
    /// Close the connection without answering after `hold` (Envoy answers
    /// the caller 503: the connection was terminated before a response).
    Reset,
    /// Never answer: the caller gives up and goes away.
    Hang,
}

/// What the upstream saw.
#[derive(Debug, Default)]
pub struct Counts {
    pub inflight: AtomicUsize,
    /// The most calls in flight at once.
    pub most: AtomicUsize,
    pub arrived: AtomicUsize,
    pub answered: AtomicUsize,
    pub reset: AtomicUsize,
    /// Calls whose connection Envoy closed while the upstream worked on them.
    pub abandoned: AtomicUsize,
    /// Every request body, in order of arrival.
    pub bodies: Mutex<Vec<Value>>,
}

impl Counts {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

type Plan = Arc<dyn Fn(usize, &Value) -> (Ending, Duration) + Send + Sync>;

/// The running upstream; stops when dropped.
pub struct InflightUpstream {
    pub port: u16,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl InflightUpstream {
    /// Serves on a port the OS picks; `plan` says how the `n`-th call to
    /// arrive (from 0) ends, and after how long.
    pub async fn start(
        plan: impl Fn(usize, &Value) -> (Ending, Duration) + Send + Sync + 'static,
    ) -> InflightUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let plan: Plan = Arc::new(plan);
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared), Arc::clone(&plan)));
            }
        });
        InflightUpstream { port, counts, task }
    }

    /// Every call answered after `hold`.
    pub async fn answering_after(hold: Duration) -> InflightUpstream {
        InflightUpstream::start(move |_, _| (Ending::Answer, hold)).await
    }

    pub fn inflight(&self) -> usize {
        Counts::get(&self.counts.inflight)
    }

    pub fn most(&self) -> usize {
        Counts::get(&self.counts.most)
    }

    pub fn arrived(&self) -> usize {
        Counts::get(&self.counts.arrived)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.counts.bodies.lock().unwrap().clone()
    }

    /// Waits until no call is in flight (at most 20 s).
    pub async fn wait_idle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.inflight() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} calls still in flight at the upstream",
                self.inflight()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for InflightUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request: the JSON body, or `None` when the connection ended first.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Value> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            line.strip_prefix(&format!("{name}:"))
                .map(|value| value.trim().to_string())
        })
    };
    let mut body = Vec::new();
    let mut rest = buffer.split_off(head_end);
    buffer.clear();
    if let Some(length) = header("content-length").and_then(|length| length.parse::<usize>().ok()) {
        while rest.len() < length {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            rest.extend_from_slice(&chunk[..read]);
        }
        body = rest.drain(..length).collect();
    } else if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        loop {
            let line_end = loop {
                if let Some(end) = find(&rest, b"\r\n") {
                    break end;
                }
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                rest.extend_from_slice(&chunk[..read]);
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            while rest.len() < line_end + 2 + size + 2 {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                rest.extend_from_slice(&chunk[..read]);
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    *buffer = rest;
    Some(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn serve(mut stream: TcpStream, counts: Arc<Counts>, plan: Plan) {
    let mut buffer = Vec::new();
    while let Some(body) = read_request(&mut stream, &mut buffer).await {
        let index = counts.arrived.fetch_add(1, Ordering::SeqCst);
        let now = counts.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most.fetch_max(now, Ordering::SeqCst);
        counts.bodies.lock().unwrap().push(body.clone());
        let (ending, hold) = plan(index, &body);
        let hold = if ending == Ending::Hang {
            Duration::from_secs(3_600)
        } else {
            hold
        };
        // Work on the call, watching the connection: Envoy closes it when
        // the caller goes away.
        let mut probe = [0u8; 1];
        let abandoned = tokio::select! {
            _ = tokio::time::sleep(hold) => false,
            read = stream.read(&mut probe) => matches!(read, Ok(0) | Err(_)),
        };
        // No longer in flight before anything goes back to Envoy.
        counts.inflight.fetch_sub(1, Ordering::SeqCst);
        if abandoned {
            counts.abandoned.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if ending == Ending::Reset {
            // Closed without an answer: Envoy answers 503 (upstream reset).
            counts.reset.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let id = body.get("id").cloned().unwrap_or(Value::Null);
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}]}})
            .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        counts.answered.fetch_add(1, Ordering::SeqCst);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
