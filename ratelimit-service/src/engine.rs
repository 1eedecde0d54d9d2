//! limitador behind one call: check a [`Plan`] and, when every counter has
//! room, take its hits from each.
//!
//! Counting, expiry and atomicity are limitador's (and Redis's). What this
//! module adds: registering each limit the first time a request names it,
//! a bound on how many limits it registers, and the choice of limitador call.
//!
//! * Redis, `hold` admission (the default): limitador's `reserve`, one Lua
//!   script that checks every counter (value + live reservations + hits) and,
//!   if all have room, holds the hits against each, atomically in Redis. The
//!   hold is never committed: it is kept until the counter's window ends
//!   (limitador clamps a reservation to its counter's window), so the live
//!   holds *are* the count. Exactly `max` per window, whatever the number of
//!   service processes and however the calls overlap; one round trip. The
//!   script reads every live hold of the counter, so a check costs O(max).
//! * Redis, `reserve` admission: `reserve`, then `commit_reservation`, which
//!   adds the hits to the counter and, in a second round trip, releases the
//!   hold. Never admits past `max`; between the two steps the hits count
//!   twice, so a concurrent call may be refused while a unit is free.
//! * Redis, `check-and-update` admission: limitador's
//!   `check_rate_limited_and_update`, what Kuadrant's Limitador server runs for
//!   `ShouldRateLimit`: a read of every counter, then increments. One round trip
//!   fewer, but the read and the increments are not one step, so concurrent
//!   calls can all pass the read and together go past `max`.
//! * In memory: limitador's `InMemoryStorage` with
//!   `check_rate_limited_and_update`; limitador's in-memory check and update
//!   are two steps too, so calls are serialized by one lock in this process.
//!   Counts are this process's only.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limitador::counter::Counter;
use limitador::errors::LimitadorError;
use limitador::reservation::ReservationLimits;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::storage::AsyncStorage;
use limitador::{AsyncRateLimiter, AsyncRateLimiterBuilder, RateLimiter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::request::Plan;

/// How long a `reserve` admission's reservation holds its hits if this
/// process dies between `reserve` and `commit_reservation` (never longer than
/// the counter's window).
const RESERVATION_TTL: Duration = Duration::from_secs(10);

/// A `hold` admission's reservation lasts as long as its counter's window:
/// limitador clamps every reservation to the window's remaining time, so this
/// is only the ceiling, the longest window the protocol has (a day).
const HOLD_FOR_THE_WINDOW: Duration = Duration::from_secs(86_400);

/// Counters of this process's in-memory storage (limitador's cache size).
const IN_MEMORY_COUNTERS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Hold,
    Reserve,
    CheckAndUpdate,
}

/// What a check found.
pub struct Outcome {
    /// Some counter had no room: nothing was taken.
    pub limited: bool,
    /// One per limit of the plan, annotated with `remaining` and `expires_in`.
    pub counters: Vec<Counter>,
}

/// Why a check could not be made.
#[derive(Debug)]
pub enum Failure {
    /// The store cannot be reached (or answered an error): gRPC `UNAVAILABLE`.
    Unavailable(String),
    /// More distinct limits than `--max-limits`: gRPC `RESOURCE_EXHAUSTED`.
    TooManyLimits(usize),
    /// limitador could not evaluate a limit (a bug here): gRPC `INTERNAL`.
    Internal(String),
}

impl From<LimitadorError> for Failure {
    fn from(e: LimitadorError) -> Self {
        match e {
            LimitadorError::StorageError(e) => Failure::Unavailable(e.to_string()),
            other => Failure::Internal(other.to_string()),
        }
    }
}

/// The limits registered so far.
#[derive(Default)]
struct Registry {
    /// Limit keys, per namespace.
    keys: HashMap<String, HashSet<String>>,
    count: usize,
}

enum Store {
    /// Filled once Redis has answered; until then every check is `Unavailable`.
    Redis(Arc<OnceCell<AsyncRateLimiter>>, Admission),
    Memory(Mutex<RateLimiter>),
}

pub struct Engine {
    store: Store,
    known: Mutex<Registry>,
    max_limits: usize,
    /// Whether the last storage call failed (to log changes, not every failure).
    failing: AtomicBool,
}

impl Engine {
    pub fn in_memory(max_limits: usize) -> Engine {
        Engine::new(
            Store::Memory(Mutex::new(RateLimiter::new(IN_MEMORY_COUNTERS))),
            max_limits,
        )
    }

    /// A Redis-backed engine. Connects in the background, retrying until
    /// Redis answers; checks made before that are `Unavailable`.
    pub fn redis(
        client: redis::Client,
        timeout: Duration,
        admission: Admission,
        max_limits: usize,
    ) -> Engine {
        let cell = Arc::new(OnceCell::new());
        let target = Arc::clone(&cell);
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                match connect(client.clone(), timeout).await {
                    Ok(storage) => {
                        let limiter = AsyncRateLimiterBuilder::new(
                            AsyncStorage::with_counter_storage(Box::new(storage)),
                        )
                        .reservation_limits(ReservationLimits {
                            max_fraction: 1.0,
                            max_ttl: HOLD_FOR_THE_WINDOW,
                        })
                        .build();
                        let _ = target.set(limiter);
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
        Engine::new(Store::Redis(cell, admission), max_limits)
    }

    fn new(store: Store, max_limits: usize) -> Engine {
        Engine {
            store,
            known: Mutex::new(Registry::default()),
            max_limits,
            failing: AtomicBool::new(false),
        }
    }

    /// Checks `plan` and, if every counter has room, takes its hits from each.
    pub async fn check(&self, plan: &Plan) -> Result<Outcome, Failure> {
        let result = self.check_inner(plan).await;
        match &result {
            Err(Failure::Unavailable(e)) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!("mcp-ratelimit-service: storage error, answering UNAVAILABLE: {e}");
                }
            }
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("mcp-ratelimit-service: storage answers again");
                }
            }
            Err(_) => {}
        }
        result
    }

    async fn check_inner(&self, plan: &Plan) -> Result<Outcome, Failure> {
        let ns = plan.namespace.as_str().into();
        let ctx = plan.context();
        match &self.store {
            Store::Redis(cell, admission) => {
                let limiter = cell
                    .get()
                    .ok_or_else(|| Failure::Unavailable("no connection to redis yet".into()))?;
                self.register(plan, |limit| {
                    limiter.add_limit(limit);
                })?;
                match admission {
                    Admission::Hold => {
                        let held = limiter
                            .reserve(&ns, &ctx, plan.hits, Some(HOLD_FOR_THE_WINDOW))
                            .await?;
                        Ok(Outcome {
                            limited: held.limited,
                            counters: held.counters,
                        })
                    }
                    Admission::Reserve => {
                        let reserved = limiter
                            .reserve(&ns, &ctx, plan.hits, Some(RESERVATION_TTL))
                            .await?;
                        if !reserved.limited {
                            limiter
                                .commit_reservation(
                                    &ns,
                                    &ctx,
                                    reserved.reservation_id.as_ref(),
                                    plan.hits,
                                )
                                .await?;
                        }
                        Ok(Outcome {
                            limited: reserved.limited,
                            counters: reserved.counters,
                        })
                    }
                    Admission::CheckAndUpdate => {
                        let result = limiter
                            .check_rate_limited_and_update(&ns, &ctx, plan.hits)
                            .await?;
                        Ok(Outcome {
                            limited: result.limited,
                            counters: result.counters,
                        })
                    }
                }
            }
            Store::Memory(limiter) => {
                let limiter = limiter
                    .lock()
                    .map_err(|_| Failure::Internal("in-memory limiter lock poisoned".into()))?;
                self.register(plan, |limit| {
                    limiter.add_limit(limit);
                })?;
                let result = limiter.check_rate_limited_and_update(&ns, &ctx, plan.hits)?;
                Ok(Outcome {
                    limited: result.limited,
                    counters: result.counters,
                })
            }
        }
    }

    /// Registers the plan's limits not yet registered, within `max_limits`.
    fn register(
        &self,
        plan: &Plan,
        mut add: impl FnMut(limitador::limit::Limit),
    ) -> Result<(), Failure> {
        let mut known = self
            .known
            .lock()
            .map_err(|_| Failure::Internal("limit registry lock poisoned".into()))?;
        let Registry { keys, count } = &mut *known;
        let keys = keys.entry(plan.namespace.clone()).or_default();
        for wanted in &plan.wanted {
            if keys.contains(&wanted.key) {
                continue;
            }
            if *count >= self.max_limits {
                return Err(Failure::TooManyLimits(self.max_limits));
            }
            let limit = wanted
                .limit(&plan.namespace)
                .map_err(|e| Failure::Internal(e.0))?;
            add(limit);
            keys.insert(wanted.key.clone());
            *count += 1;
        }
        Ok(())
    }
}

/// limitador's async Redis storage over a connection with timeouts and a
/// short reconnect backoff. The connection manager reconnects by itself after
/// Redis goes away; calls made meanwhile fail (and are answered UNAVAILABLE).
async fn connect(
    client: redis::Client,
    timeout: Duration,
) -> Result<AsyncRedisStorage, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(2)
        .set_factor(100)
        .set_max_delay(1_000);
    let manager = ConnectionManager::new_with_config(client, config).await?;
    AsyncRedisStorage::new_with_conn_manager(manager).await
}
