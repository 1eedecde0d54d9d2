//! Fixed-window counters in a [`SharedStore`], exact under concurrency.
//!
//! One key per counter and scope value; the key holds the start of its
//! current window and the count in it, so keys do not multiply with time.
//! Every update is a compare-and-swap retried a bounded number of times: two
//! workers can never both take the last unit of quota.

use crate::host::{Cas, SharedStore, StoreError};
use crate::policy::{Limit, Scope};

/// CAS attempts per key before the gate gives up (and fails closed).
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// Key prefix in Envoy's shared data; `v1` names the value layout below.
const KEY_PREFIX: &str = "mcp-policy/v1/";

/// Who is counted: the values scopes count by.
#[derive(Debug, Clone, Copy)]
pub struct CallerScope<'a> {
    pub grant: &'a str,
    /// `Mcp-Session-Id`; calls without one share a single "no session" count.
    pub session: Option<&'a str>,
}

/// The stored key for a limit and caller. Lengths make it unambiguous
/// whatever characters counter names and header values hold.
pub fn counter_key(limit: &Limit, caller: CallerScope<'_>) -> String {
    let (scope, value) = match (limit.scope, caller.session) {
        (Scope::Grant, _) => ('g', caller.grant),
        (Scope::Session, Some(session)) => ('s', session),
        (Scope::Session, None) => ('n', ""),
        (Scope::Global, _) => ('*', ""),
    };
    format!(
        "{KEY_PREFIX}{}/{}/{scope}/{value}",
        limit.counter.len(),
        limit.counter
    )
}

/// A counter's state: the start of the window it counts and the count in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    window_start: u64,
    count: u64,
}

impl Slot {
    const ENCODED_LEN: usize = 16;

    fn encode(self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..8].copy_from_slice(&self.window_start.to_le_bytes());
        bytes[8..].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let window_start = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let count = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == Self::ENCODED_LEN).then_some(Slot {
            window_start,
            count,
        })
    }

    /// The count in the window starting at `window_start` (0 if the stored
    /// one is older).
    fn count_in(self, window_start: u64) -> u64 {
        if self.window_start == window_start {
            self.count
        } else {
            0
        }
    }
}

/// Start of the fixed window containing `now`, aligned to the Unix epoch.
pub fn window_start(now: u64, window_seconds: u64) -> u64 {
    now - now % window_seconds.max(1)
}

/// Seconds from `now` until the window containing it ends (at least 1).
pub fn seconds_until_reset(now: u64, window_seconds: u64) -> u64 {
    (window_start(now, window_seconds) + window_seconds - now).max(1)
}

/// A unit of quota taken from one counter for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub key: String,
    pub window_start: u64,
}

/// The result of trying to take one unit from every limit of a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire<'p> {
    /// Every limit had room; one unit was taken from each.
    Granted(Vec<Reservation>),
    /// A limit was full; nothing was taken. `limit` is the full limit whose
    /// window ends last, so `retry_after_seconds` is when a retry can pass.
    Exhausted {
        limit: &'p Limit,
        retry_after_seconds: u64,
    },
    /// The store could not be updated; nothing is known to be taken.
    Failed(String),
}

/// Takes one unit from each limit, all or none.
///
/// Limits that share a key (the same counter named twice for one call) take
/// one unit, checked against the smallest `max`.
pub fn acquire<'p, S: SharedStore + ?Sized>(
    store: &S,
    limits: &[&'p Limit],
    caller: CallerScope<'_>,
    now: u64,
) -> Acquire<'p> {
    let mut keyed: Vec<(String, &'p Limit)> = Vec::with_capacity(limits.len());
    for limit in limits {
        let key = counter_key(limit, caller);
        match keyed.iter_mut().find(|(existing, _)| *existing == key) {
            Some(entry) if limit.max < entry.1.max => entry.1 = limit,
            Some(_) => {}
            None => keyed.push((key, limit)),
        }
    }

    let mut taken: Vec<Reservation> = Vec::with_capacity(keyed.len());
    for (index, (key, limit)) in keyed.iter().enumerate() {
        match take_one(store, key, limit, now) {
            Ok(Some(reservation)) => taken.push(reservation),
            Ok(None) => {
                release(store, &taken);
                return exhausted(store, &keyed[index..], now);
            }
            Err(err) => {
                release(store, &taken);
                return Acquire::Failed(err);
            }
        }
    }
    Acquire::Granted(taken)
}

/// Among limits of which the first is full, the full one whose window ends
/// last: a retry before then would be refused again.
fn exhausted<'p, S: SharedStore + ?Sized>(
    store: &S,
    keyed: &[(String, &'p Limit)],
    now: u64,
) -> Acquire<'p> {
    let mut worst: Option<(&'p Limit, u64)> = None;
    for (position, (key, limit)) in keyed.iter().enumerate() {
        let window_start = window_start(now, limit.window_seconds);
        // The first limit was seen full; the rest are read once more.
        let full = position == 0
            || matches!(store.get(key), Ok(Some((bytes, _)))
                if Slot::decode(&bytes).is_some_and(|slot| slot.count_in(window_start) >= limit.max));
        if full {
            let retry = seconds_until_reset(now, limit.window_seconds);
            if worst.is_none_or(|(_, longest)| retry > longest) {
                worst = Some((limit, retry));
            }
        }
    }
    match worst {
        Some((limit, retry_after_seconds)) => Acquire::Exhausted {
            limit,
            retry_after_seconds,
        },
        None => Acquire::Failed("no limit found full".to_string()),
    }
}

/// Takes one unit from `key` if `limit` has room: `Ok(None)` when full.
fn take_one<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    limit: &Limit,
    now: u64,
) -> Result<Option<Reservation>, String> {
    let window_start = window_start(now, limit.window_seconds);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (current, cas) = read(store, key)?;
        let count = current.map_or(0, |slot| slot.count_in(window_start));
        if count >= limit.max {
            return Ok(None);
        }
        let next = Slot {
            window_start,
            count: count + 1,
        };
        match store.compare_and_swap(key, &next.encode(), cas) {
            Ok(()) => {
                return Ok(Some(Reservation {
                    key: key.to_string(),
                    window_start,
                }))
            }
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(err),
        }
    }
    Err(format!(
        "counter {key:?} still contended after {MAX_CAS_ATTEMPTS} attempts"
    ))
}

fn read<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<(Option<Slot>, Option<Cas>), String> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => match Slot::decode(&bytes) {
            Some(slot) => Ok((Some(slot), Some(cas))),
            // Not ours or from another layout: start over rather than fail forever.
            None => Ok((None, Some(cas))),
        },
        Ok(None) => Ok((None, None)),
        Err(StoreError::CasMismatch) => Err(format!("reading {key:?}: unexpected CAS mismatch")),
        Err(StoreError::Unavailable(err)) => Err(err),
    }
}

/// Gives back units taken for a call that did not happen. A unit whose
/// window has already ended is not given back: that window's count no longer
/// matters. Returns the keys that could not be updated.
pub fn release<S: SharedStore + ?Sized>(store: &S, reservations: &[Reservation]) -> Vec<String> {
    let mut failed = Vec::new();
    'keys: for reservation in reservations {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Ok((Some(slot), cas)) = read(store, &reservation.key) else {
                failed.push(reservation.key.clone());
                continue 'keys;
            };
            if slot.window_start != reservation.window_start || slot.count == 0 {
                continue 'keys;
            }
            let next = Slot {
                count: slot.count - 1,
                ..slot
            };
            match store.compare_and_swap(&reservation.key, &next.encode(), cas) {
                Ok(()) => continue 'keys,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Unavailable(_)) => break,
            }
        }
        failed.push(reservation.key.clone());
    }
    failed
}

#[cfg(test)]
mod tests;
