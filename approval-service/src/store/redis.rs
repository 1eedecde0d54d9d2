//! Approvals in Redis, shared by every service process: create-or-get,
//! use-once and decide are Lua scripts (atomic in Redis), on Redis's clock.
//!
//! A small module with its own connection handling (the rate-limit service
//! has its own; the two may be unified later): one lazily connected
//! `ConnectionManager` that reconnects by itself, every call bounded by a
//! timeout.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use sha2::{Digest as _, Sha256};

use crate::canonical::hex;
use crate::model::{Answer, Approval, Call, CheckOutcome, HistoryEntry, Status, Verdict};
use crate::store::{DecideError, Limits, StoreError};

const HEAD: &str = include_str!("redis.lua");

/// ARGV[4] digest, [5] new id, [6] call JSON, [7] summary JSON, [8] ttl ms,
/// [9] max pending, [10] max pending per grant, [11] the grant's key.
/// Returns {kind, id, expires, approver, reason, decided, now}; kind is
/// pending, created, denied, approved (now used), full or grant_full.
const CHECK: &str = r#"
prune()
local digest, new_id = ARGV[4], ARGV[5]
local dkey = prefix .. 'd:' .. digest
local id = redis.call('GET', dkey)
if id then
  local key = prefix .. 'a:' .. id
  local f = redis.call('HMGET', key, 'status', 'expires', 'approver', 'dreason', 'decided', 'summary')
  local expires = tonumber(f[2])
  if f[1] and expires and expires > now then
    if f[1] == 'pending' then
      return {'pending', id, int(expires), '', '', '', int(now)}
    elseif f[1] == 'denied' then
      return {'denied', id, int(expires), f[3] or '', f[4] or '', f[5] or '', int(now)}
    elseif f[1] == 'approved' then
      redis.call('HSET', key, 'status', 'used', 'used', int(now))
      redis.call('DEL', dkey)
      push_history(id, 'used', now, f[3] or nil, nil, f[6])
      return {'approved', id, int(expires), f[3] or '', f[4] or '', f[5] or '', int(now)}
    end
  end
  redis.call('DEL', dkey)
end
local gkey = ARGV[11]
redis.call('ZREMRANGEBYSCORE', gkey, '-inf', now)
if redis.call('ZCARD', pending_key) >= tonumber(ARGV[9]) then
  return {'full', '', '0', '', '', '', int(now)}
end
if redis.call('ZCARD', gkey) >= tonumber(ARGV[10]) then
  return {'grant_full', '', '0', '', '', '', int(now)}
end
local ttl = tonumber(ARGV[8])
local expires = now + ttl
local key = prefix .. 'a:' .. new_id
redis.call('HSET', key, 'id', new_id, 'digest', digest, 'call', ARGV[6], 'summary', ARGV[7],
  'status', 'pending', 'created', int(now), 'expires', int(expires), 'ttl', int(ttl), 'gkey', gkey)
redis.call('PEXPIREAT', key, int(expires + grace))
redis.call('SET', dkey, new_id, 'PXAT', int(expires + grace))
redis.call('ZADD', pending_key, int(now), new_id)
redis.call('ZADD', expiry_key, int(expires), new_id)
redis.call('ZADD', gkey, int(expires), new_id)
if redis.call('PTTL', gkey) < expires + grace - now then
  redis.call('PEXPIREAT', gkey, int(expires + grace))
end
return {'created', new_id, int(expires), '', '', '', int(now)}
"#;

/// ARGV[4] id, [5] approved or denied, [6] approver, [7] reason ('' for none).
/// Returns {'ok'}, {'not_found'} or {'not_pending', status}.
const DECIDE: &str = r#"
prune()
local id = ARGV[4]
local key = prefix .. 'a:' .. id
local f = redis.call('HMGET', key, 'status', 'ttl', 'digest', 'gkey', 'summary', 'expires')
if not f[1] then
  return {'not_found'}
end
if f[1] == 'pending' and tonumber(f[6]) <= now then
  -- Past its expiry, whether or not prune() has reached it yet.
  expire(id)
  return {'not_pending', 'expired'}
end
if f[1] ~= 'pending' then
  return {'not_pending', f[1]}
end
local expires = now + tonumber(f[2])
redis.call('HSET', key, 'status', ARGV[5], 'approver', ARGV[6], 'dreason', ARGV[7],
  'decided', int(now), 'expires', int(expires))
redis.call('PEXPIREAT', key, int(expires + grace))
local dkey = prefix .. 'd:' .. f[3]
if redis.call('GET', dkey) == id then
  redis.call('PEXPIREAT', dkey, int(expires + grace))
end
redis.call('ZREM', pending_key, id)
redis.call('ZREM', expiry_key, id)
if f[4] then
  redis.call('ZREM', f[4], id)
end
local reason = nil
if ARGV[7] ~= '' then
  reason = ARGV[7]
end
push_history(id, ARGV[5], now, ARGV[6], reason, f[5])
return {'ok'}
"#;

/// Prunes; returns {now, number pending}.
const PRUNE: &str = r#"
prune()
return {int(now), redis.call('ZCARD', pending_key)}
"#;

pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    limits: Limits,
    check: Script,
    decide: Script,
    prune: Script,
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

impl RedisStore {
    /// Connects lazily: the first call connects, and the manager reconnects
    /// by itself after an error.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        limits: Limits,
    ) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|err| format!("--redis {url}: {err}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| format!("redis: {err}"))?;
        Ok(RedisStore {
            connection,
            prefix: prefix.to_owned(),
            timeout,
            limits,
            check: Script::new(&format!("{HEAD}{CHECK}")),
            decide: Script::new(&format!("{HEAD}{DECIDE}")),
            prune: Script::new(&format!("{HEAD}{PRUNE}")),
        })
    }

    async fn bounded<T>(
        &self,
        future: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(unavailable(err)),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    fn head<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(format!("{}pending", self.prefix))
            .arg(&self.prefix)
            .arg(self.limits.history)
            .arg(self.limits.grace_ms);
        invocation
    }

    /// The key of a grant's pending set: its name hashed, so any grant makes
    /// a short key.
    fn grant_key(&self, grant: &str) -> String {
        let hash = Sha256::digest(grant.as_bytes());
        format!("{}g:{}", self.prefix, hex(&hash[..16]))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.bounded(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await
        .map(|_| ())
    }

    /// A secret shared by every service process: the first one to ask makes it.
    pub async fn shared_secret(&self, fresh: &str) -> Result<String, StoreError> {
        let key = format!("{}secret", self.prefix);
        let mut connection = self.connection.clone();
        self.bounded(async move {
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(fresh)
                .arg("NX")
                .query_async(&mut connection)
                .await?;
            connection.get::<_, String>(&key).await
        })
        .await
    }

    pub async fn check(
        &self,
        digest: &str,
        call: &Call,
        new_id: &str,
    ) -> Result<CheckOutcome, StoreError> {
        let call_json = serde_json::to_string(call).map_err(unavailable)?;
        let summary = serde_json::to_string(&call.summary()).map_err(unavailable)?;
        let mut invocation = self.head(&self.check);
        invocation
            .arg(digest)
            .arg(new_id)
            .arg(call_json)
            .arg(summary)
            .arg(call.ttl_seconds * 1000)
            .arg(self.limits.max_pending)
            .arg(self.limits.max_pending_per_grant)
            .arg(self.grant_key(&call.grant));
        let mut connection = self.connection.clone();
        let reply: Vec<String> = self
            .bounded(async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let field = |index: usize| reply.get(index).map(String::as_str).unwrap_or("");
        let optional = |index: usize| {
            Some(field(index))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let number = |index: usize| field(index).parse::<u64>().unwrap_or(0);
        let answer = match field(0) {
            "pending" => Answer::Pending { created: false },
            "created" => Answer::Pending { created: true },
            "denied" => Answer::Denied,
            "approved" => Answer::Approved,
            "full" => return Err(StoreError::TooManyPending),
            "grant_full" => return Err(StoreError::TooManyPendingForGrant),
            other => return Err(unavailable(format!("unexpected script reply {other:?}"))),
        };
        Ok(CheckOutcome {
            answer,
            id: field(1).to_owned(),
            expires_ms: number(2),
            approver: optional(3),
            decision_reason: optional(4),
            decided_ms: Some(number(5)).filter(|&ms| ms > 0),
            now_ms: number(6),
        })
    }

    pub async fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<(), DecideError> {
        let mut invocation = self.head(&self.decide);
        invocation
            .arg(id)
            .arg(verdict.status().as_str())
            .arg(approver)
            .arg(reason.unwrap_or(""));
        let mut connection = self.connection.clone();
        let reply: Vec<String> = self
            .bounded(async move { invocation.invoke_async(&mut connection).await })
            .await
            .map_err(DecideError::from)?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("not_found") => Err(DecideError::NotFound),
            Some("not_pending") => Err(DecideError::NotPending(
                reply
                    .get(1)
                    .and_then(|s| Status::parse(s))
                    .unwrap_or(Status::Expired),
            )),
            other => Err(DecideError::Unavailable(format!(
                "unexpected script reply {other:?}"
            ))),
        }
    }

    /// Prunes expired approvals; returns Redis's clock and the number pending.
    pub async fn prune(&self) -> Result<(u64, usize), StoreError> {
        let invocation = self.head(&self.prune);
        let mut connection = self.connection.clone();
        let (now, count): (u64, usize) = self
            .bounded(async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok((now, count))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let key = format!("{}a:{id}", self.prefix);
        let mut connection = self.connection.clone();
        let fields: HashMap<String, String> = self
            .bounded(async move { connection.hgetall(key).await })
            .await?;
        Ok(approval_from(&fields))
    }

    /// Pending approvals, newest first, at most `limit`.
    pub async fn pending(&self, limit: usize) -> Result<Vec<Approval>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = format!("{}pending", self.prefix);
        let prefix = self.prefix.clone();
        let mut connection = self.connection.clone();
        let records: Vec<HashMap<String, String>> = self
            .bounded(async move {
                let stop = isize::try_from(limit - 1).unwrap_or(isize::MAX);
                let ids: Vec<String> = connection.zrevrange(&key, 0, stop).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.hgetall(format!("{prefix}a:{id}"));
                }
                pipe.query_async(&mut connection).await
            })
            .await?;
        Ok(records
            .iter()
            .filter_map(approval_from)
            .filter(|a| a.status == Status::Pending)
            .collect())
    }

    pub async fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = format!("{}history", self.prefix);
        let mut connection = self.connection.clone();
        let lines: Vec<String> = self
            .bounded(async move {
                let stop = isize::try_from(limit - 1).unwrap_or(isize::MAX);
                connection.lrange(key, 0, stop).await
            })
            .await?;
        Ok(lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}

/// A record read back; `None` when absent or not one of ours.
fn approval_from(fields: &HashMap<String, String>) -> Option<Approval> {
    let text = |name: &str| fields.get(name).map(String::as_str);
    let number = |name: &str| text(name).and_then(|s| s.parse::<u64>().ok());
    let optional = |name: &str| text(name).filter(|s| !s.is_empty()).map(str::to_owned);
    Some(Approval {
        id: text("id")?.to_owned(),
        digest: text("digest")?.to_owned(),
        call: serde_json::from_str(text("call")?).ok()?,
        status: Status::parse(text("status")?)?,
        created_ms: number("created")?,
        expires_ms: number("expires")?,
        approver: optional("approver"),
        decision_reason: optional("dreason"),
        decided_ms: number("decided"),
        used_ms: number("used"),
    })
}

impl From<StoreError> for DecideError {
    fn from(err: StoreError) -> DecideError {
        match err {
            StoreError::Unavailable(text) => DecideError::Unavailable(text),
            other => DecideError::Unavailable(other.to_string()),
        }
    }
}
