//! An upstream whose answers each test scripts, for the answers a real MCP
//! server can give but the demo server does not (normalised ids, replays on
//! GET streams, encodings it was not asked for, errors, slow answers). It
//! records every request as soon as its headers arrive, then its body as it
//! comes, so a request that started and never completed is seen as such.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;

/// One request as the upstream saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived to its end.
    pub complete: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// How the upstream answers one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Wait this long after the request is complete before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn json(body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            headers: vec![("content-type", "application/json".to_string())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn events(body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            headers: vec![("content-type", "text/event-stream".to_string())],
            ..Answer::json(body)
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::json("{}")
        }
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// The running upstream; stops when dropped.
pub struct Scripted {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    /// Serves on a port the OS picks, answering each request with `script`.
    pub async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: Request| {
            let (seen, script) = (Arc::clone(&record), Arc::clone(&script));
            async move { Ok::<_, Infallible>(answer(request, seen, script).await) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Scripted { port, seen, task }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `count` requests have arrived whole (at most 10 s).
    pub async fn wait_complete(&self, count: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            if seen.iter().filter(|seen| seen.complete).count() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the upstream saw {} complete requests, expected {count}: {seen:?}",
                seen.iter().filter(|seen| seen.complete).count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(request: Request, seen: Arc<Mutex<Vec<Seen>>>, script: Script) -> Response {
    let (parts, body) = request.into_parts();
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            ..Seen::default()
        });
        seen.len() - 1
    };
    let mut stream = body.into_data_stream();
    let mut complete = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => seen.lock().unwrap()[index].body.extend_from_slice(&chunk),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let request = {
        let mut seen = seen.lock().unwrap();
        seen[index].complete = complete;
        seen[index].clone()
    };
    let answer = script(&request);
    tokio::time::sleep(answer.delay).await;
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    response
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
