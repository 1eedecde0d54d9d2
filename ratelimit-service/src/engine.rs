//! The engine: one call of `take.lua` per request, over one multiplexed
//! Redis connection that reconnects by itself, or a Redis Cluster
//! connection (one per node, following the cluster's slot map).
//!
//! The script checks every counter of the request and takes from all of them
//! or from none, in one round trip and one atomic step of Redis, with Redis's
//! clock. EVALSHA; after a Redis restart (empty script cache) the client loads
//! the script again on the NOSCRIPT answer (on every primary, in a cluster)
//! and retries once. Every key of a request is in one hash slot (keys.rs), so
//! in a cluster the call goes to the node serving that slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
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

/// Where the counters are.
#[derive(Debug, Clone)]
pub enum Target {
    /// One Redis (standalone, or a primary behind a stable address).
    Single(redis::Client),
    /// A Redis Cluster, by some of its nodes (the rest are discovered).
    Cluster(Vec<redis::ConnectionInfo>),
}

#[derive(Clone)]
enum Connection {
    Single(Box<ConnectionManager>),
    Cluster(ClusterConnection),
}

pub struct Engine {
    /// Filled once Redis has answered; until then every check is `Unavailable`.
    connection: Arc<OnceCell<Connection>>,
    script: Script,
    metrics: Arc<Metrics>,
    /// Whether the last call failed (to log changes, not every failure).
    failing: AtomicBool,
}

impl Engine {
    /// Connects in the background, retrying every second until Redis
    /// answers; checks made before that are `Unavailable`.
    pub fn start(target: Target, timeout: Duration, metrics: Arc<Metrics>) -> Engine {
        let cell = Arc::new(OnceCell::new());
        let cell_target = Arc::clone(&cell);
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                match connect(&target, timeout).await {
                    Ok(connection) => {
                        let _ = cell_target.set(connection);
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
        let connection = self
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
        let invoke = |connection: Connection| {
            let invocation = &invocation;
            async move {
                match connection {
                    Connection::Single(mut single) => invocation.invoke_async(&mut *single).await,
                    Connection::Cluster(mut cluster) => invocation.invoke_async(&mut cluster).await,
                }
            }
        };
        let mut answer: Result<Vec<i64>, redis::RedisError> = invoke(connection.clone()).await;
        // A Redis that restarted while the connection idled: the first call
        // finds the old connection dead (broken pipe), and the manager only
        // then reconnects. Once more, on the new connection, rather than
        // refuse a call while Redis answers. (Had the first reached Redis
        // before the connection dropped, the call is counted twice:
        // stricter, never looser.)
        if answer
            .as_ref()
            .is_err_and(redis::RedisError::is_connection_dropped)
        {
            answer = invoke(connection).await;
        }
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
        let pong: Result<String, _> = match connection.clone() {
            Connection::Single(mut single) => redis::cmd("PING").query_async(&mut *single).await,
            // Every primary (PING goes to all of them): ready only if all answer.
            Connection::Cluster(mut cluster) => redis::cmd("PING").query_async(&mut cluster).await,
        };
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
/// (one Redis) or the cluster connection reconnects by itself after a node
/// goes away; calls made meanwhile fail (and are answered UNAVAILABLE). A
/// cluster connection also follows slots that move (MOVED, ASK, failovers).
async fn connect(target: &Target, timeout: Duration) -> Result<Connection, redis::RedisError> {
    match target {
        Target::Single(client) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_number_of_retries(2)
                .set_factor(100)
                .set_max_delay(1_000);
            ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map(|manager| Connection::Single(Box::new(manager)))
        }
        Target::Cluster(nodes) => ClusterClientBuilder::new(nodes.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .max_retry_wait(1_000)
            .build()?
            .get_async_connection()
            .await
            .map(Connection::Cluster),
    }
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
