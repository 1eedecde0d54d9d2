//! Where approvals live: Redis (every service process and Envoy replica
//! agrees) or this process's memory (`--memory`). Both follow the same rules;
//! README.md ("Filter protocol") states them.

mod memory;
mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::canonical::hex;
use crate::clock;
use crate::model::{Approval, Call, CheckOutcome, HistoryEntry, Status, Verdict};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

/// How long a record stays readable (detail page, expired history line)
/// after its expiry.
pub const GRACE_MS: u64 = 600_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Pending approvals at most, all grants together.
    pub max_pending: usize,
    /// Pending approvals at most per grant.
    pub max_pending_per_grant: usize,
    /// History lines kept.
    pub history: usize,
    pub grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Redis unreachable, timed out or answered an error.
    Unavailable(String),
    TooManyPending,
    TooManyPendingForGrant,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(text) => write!(f, "store unavailable: {text}"),
            StoreError::TooManyPending => f.write_str("too many pending approvals"),
            StoreError::TooManyPendingForGrant => {
                f.write_str("too many pending approvals for this grant")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    NotFound,
    /// Already decided, used or expired.
    NotPending(Status),
    Unavailable(String),
}

pub enum Backend {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

pub struct Store {
    backend: Backend,
    /// Redis calls that failed (unreachable, timeout, error), for /metrics.
    errors: AtomicU64,
}

/// 128 random bits, hex: an approval id.
pub fn new_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| StoreError::Unavailable(err.to_string()))?;
    Ok(hex(&bytes))
}

/// An approval id: 32 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    pub fn memory(limits: Limits) -> Store {
        Store {
            backend: Backend::Memory(MemoryStore::new(limits)),
            errors: AtomicU64::new(0),
        }
    }

    pub fn redis(
        url: &str,
        prefix: &str,
        timeout: Duration,
        limits: Limits,
    ) -> Result<Store, String> {
        Ok(Store {
            backend: Backend::Redis(Box::new(RedisStore::new(url, prefix, timeout, limits)?)),
            errors: AtomicU64::new(0),
        })
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn count<T, E>(
        &self,
        result: Result<T, E>,
        is_unavailable: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        if let Err(err) = &result {
            if is_unavailable(err) {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.count(result, |err| matches!(err, StoreError::Unavailable(_)))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => self.counted(redis.ping().await),
        }
    }

    /// The secret that signs cookies and CSRF tokens: in Redis the first
    /// process's `fresh` value, shared by all; in memory `fresh` itself.
    pub async fn shared_secret(&self, fresh: &str) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Memory(_) => Ok(fresh.to_owned()),
            Backend::Redis(redis) => self.counted(redis.shared_secret(fresh).await),
        }
    }

    /// Create-or-get for `digest`, using an approved approval once.
    pub async fn check(&self, digest: &str, call: &Call) -> Result<CheckOutcome, StoreError> {
        let id = new_id()?;
        match &self.backend {
            Backend::Memory(memory) => memory.check(digest, call, &id, clock::now_ms()),
            Backend::Redis(redis) => self.counted(redis.check(digest, call, &id).await),
        }
    }

    /// The approval and the store's clock.
    pub async fn get(&self, id: &str) -> Result<(Option<Approval>, u64), StoreError> {
        match &self.backend {
            Backend::Memory(memory) => {
                let now = clock::now_ms();
                Ok((memory.get(id, now), now))
            }
            Backend::Redis(redis) => {
                let (now, _) = self.counted(redis.prune().await)?;
                Ok((self.counted(redis.get(id).await)?, now))
            }
        }
    }

    /// Pending approvals, newest first, and the store's clock.
    pub async fn pending(&self, limit: usize) -> Result<(Vec<Approval>, u64), StoreError> {
        match &self.backend {
            Backend::Memory(memory) => {
                let now = clock::now_ms();
                Ok((memory.pending(limit, now), now))
            }
            Backend::Redis(redis) => {
                let (now, _) = self.counted(redis.prune().await)?;
                Ok((self.counted(redis.pending(limit).await)?, now))
            }
        }
    }

    pub async fn pending_count(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.pending_count(clock::now_ms())),
            Backend::Redis(redis) => self.counted(redis.prune().await).map(|(_, count)| count),
        }
    }

    /// Approves or denies a pending approval; returns it as decided.
    pub async fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<Approval, DecideError> {
        let unavailable = |err: &DecideError| matches!(err, DecideError::Unavailable(_));
        match &self.backend {
            Backend::Memory(memory) => {
                memory.decide(id, verdict, approver, reason, clock::now_ms())
            }
            Backend::Redis(redis) => {
                self.count(
                    redis.decide(id, verdict, approver, reason).await,
                    unavailable,
                )?;
                match self
                    .counted(redis.get(id).await)
                    .map_err(DecideError::from)?
                {
                    Some(approval) => Ok(approval),
                    None => Err(DecideError::NotFound),
                }
            }
        }
    }

    pub async fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.history(limit)),
            Backend::Redis(redis) => self.counted(redis.history(limit).await),
        }
    }
}
