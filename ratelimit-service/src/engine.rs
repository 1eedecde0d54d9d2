//! The engine: one call of `take.lua` per request, over one multiplexed
//! Redis connection that reconnects by itself.
//!
//! The script checks every counter of the request and takes from all of them
//! or from none, in one round trip and one atomic step of Redis, with Redis's
//! clock. EVALSHA; after a Redis restart (empty script cache) the client loads
//! the script again on the NOSCRIPT answer and retries once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::OnceCell;

use crate::metrics::Metrics;
use crate::request::{Op, Plan};

const TAKE: &str = include_str!("take.lua");

/// Redis's answer about one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The count in the current window before this call (windows), or the
    /// live leases before it (acquisitions).
    pub used: u64,
    /// The lease was already held (an acquisition that renews it).
    pub held: bool,
}

/// What a script call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Some counter lacked room: nothing was taken.
    pub limited: bool,
    /// Redis's clock when the script ran.
    pub now: Duration,
    /// One per counter of the plan, in order.
    pub counters: Vec<Seen>,
}

/// Why a check could not be made: gRPC `UNAVAILABLE`.
#[derive(Debug)]
pub struct Unavailable(pub String);

pub struct Engine {
    /// Filled once Redis has answered; until then every check is `Unavailable`.
    connection: Arc<OnceCell<ConnectionManager>>,
    script: Script,
    metrics: Arc<Metrics>,
    /// Whether the last call failed (to log changes, not every failure).
    failing: AtomicBool,
}

impl Engine {
    /// Connects in the background, retrying every second until Redis
    /// answers; checks made before that are `Unavailable`.
    pub fn start(client: redis::Client, timeout: Duration, metrics: Arc<Metrics>) -> Engine {
        let cell = Arc::new(OnceCell::new());
        let target = Arc::clone(&cell);
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                match connect(client.clone(), timeout).await {
                    Ok(manager) => {
                        let _ = target.set(manager);
                        eprintln!("mcp-ratelimit-service: redis connection established");
                        return;
                    }
                    Err(e) => {
                        if !logged {
                            eprintln!(
                                "mcp-ratelimit-service: redis not reachable ({e}); retrying every second, answering UNAVAILABLE meanwhile"
                            );
                            logged = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Engine {
            connection: cell,
            script: Script::new(TAKE),
            metrics,
            failing: AtomicBool::new(false),
        }
    }

    /// Runs the plan's script call.
    pub async fn take(&self, plan: &Plan) -> Result<Outcome, Unavailable> {
        let result = self.take_inner(plan).await;
        match &result {
            Err(Unavailable(e)) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!("mcp-ratelimit-service: redis error, answering UNAVAILABLE: {e}");
                }
            }
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("mcp-ratelimit-service: redis answers again");
                }
            }
        }
        result
    }

    async fn take_inner(&self, plan: &Plan) -> Result<Outcome, Unavailable> {
        let mut connection = self
            .connection
            .get()
            .ok_or_else(|| Unavailable("no connection to redis yet".into()))?
            .clone();
        let mut invocation = self.script.prepare_invoke();
        for counter in &plan.counters {
            invocation.key(counter.key.as_str());
            match &counter.op {
                Op::Window {
                    seconds, max, hits, ..
                } => invocation.arg("w").arg(*seconds).arg(*max).arg(*hits),
                Op::Acquire {
                    cap,
                    member,
                    lease_ms,
                } => invocation
                    .arg("a")
                    .arg(*cap)
                    .arg(member.as_str())
                    .arg(*lease_ms),
                Op::Release { member } => invocation.arg("r").arg(member.as_str()).arg("").arg(""),
            };
        }
        let started = Instant::now();
        let answer: Result<Vec<i64>, redis::RedisError> =
            invocation.invoke_async(&mut connection).await;
        self.metrics.redis_call(started.elapsed());
        let answer = answer.map_err(|e| Unavailable(e.to_string()))?;
        decode(&answer, plan.counters.len())
            .ok_or_else(|| Unavailable(format!("unexpected script answer {answer:?}")))
    }

    /// Whether Redis answers PING now (readiness).
    pub async fn ready(&self) -> bool {
        let Some(connection) = self.connection.get() else {
            return false;
        };
        let mut connection = connection.clone();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
        matches!(pong.as_deref(), Ok("PONG"))
    }
}

/// The script's answer: `{seconds, microseconds, limited, (used, held) per key}`.
fn decode(answer: &[i64], keys: usize) -> Option<Outcome> {
    if answer.len() != 3 + 2 * keys {
        return None;
    }
    let seconds = u64::try_from(answer[0]).ok()?;
    let micros = u32::try_from(answer[1]).ok().filter(|m| *m < 1_000_000)?;
    let counters = answer[3..]
        .chunks_exact(2)
        .map(|pair| {
            Some(Seen {
                used: u64::try_from(pair[0]).ok()?,
                held: pair[1] == 1,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Outcome {
        limited: answer[2] == 1,
        now: Duration::new(seconds, micros * 1_000),
        counters,
    })
}

/// A connection with timeouts and a short reconnect backoff. The manager
/// reconnects by itself after Redis goes away; calls made meanwhile fail
/// (and are answered UNAVAILABLE).
async fn connect(
    client: redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(2)
        .set_factor(100)
        .set_max_delay(1_000);
    ConnectionManager::new_with_config(client, config).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn script_answers_are_decoded() {
        let outcome = decode(&[1_700_000_000, 250_000, 1, 7, 0, 2, 1], 2).unwrap();
        assert!(outcome.limited);
        assert_eq!(outcome.now, Duration::new(1_700_000_000, 250_000_000));
        assert_eq!(
            outcome.counters,
            [
                Seen {
                    used: 7,
                    held: false
                },
                Seen {
                    used: 2,
                    held: true
                }
            ]
        );
        assert_eq!(decode(&[1, 0, 0, 5, 0], 2), None, "too short");
        assert_eq!(decode(&[1, 1_000_000, 0], 0), None, "microseconds");
        assert_eq!(decode(&[1, 0, 0, -1, 0], 1), None, "negative count");
    }
}
