//! Fixed-window counters in a [`SharedStore`], exact under concurrency and
//! bounded in memory.
//!
//! Each counter has a table of at most `slots` keys (the policy's
//! `max_callers_per_counter`). A caller (a grant or session value, or
//! everyone for `global`) owns one slot per window: the slot holds the
//! owner (a 16-byte digest of the grant or session value, so a slot's size
//! does not depend on how long the caller's name is), the start of the window
//! and the count in it. A caller's slot is
//! one of [`PROBES`] slots its name hashes to, tried in order; a
//! slot whose window has passed is free for anyone, so keys are reused rather
//! than multiplied by callers or by time. When every probed slot is held by
//! other callers in the current window, the table is full for that caller
//! and the call fails (closed, unless the policy's `failure_mode` is open).
//!
//! Every update is a compare-and-swap retried a bounded number of times: two
//! workers can never both take the last unit of quota.
//!
//! A call takes `cost` units from a window (checked against `max`), and a
//! counter with `per` counts each value of its argument apart within the
//! scope: the value is part of the owner, so it shares the owner's digest and
//! bounded table. Caps on calls in flight live in [`concurrency`].

pub mod concurrency;
pub mod service;

use std::hash::{Hash, Hasher};

use crate::host::{Cas, SharedStore, StoreError};
use crate::policy::{Limit, LimitKind, Scope};

/// CAS attempts per slot before the gate gives up (and fails closed).
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// Slots probed for a caller before its counter is declared full.
pub const PROBES: u64 = 32;

/// Key prefix in Envoy's shared data; `v3` names the slot layout below
/// (owner digests; `v2` kept the owner's whole name).
const KEY_PREFIX: &str = "mcp-policy/v3/";

/// Bytes of an owner digest: 128 bits of SHA-256, so two callers never
/// share a slot by accident.
pub const OWNER_DIGEST_LEN: usize = 16;

/// The fixed-size digest a slot keeps of its owner's name.
///
/// The same few callers call again and again (an agent in a loop), and
/// SHA-256 was a sixth of a counted call's instructions: the last
/// [`RECENT_OWNERS`] digests are kept per VM, found by the whole name, so
/// a kept one is exactly the one computed.
pub fn owner_digest(owner: &str) -> [u8; OWNER_DIGEST_LEN] {
    let key = TABLE_KEY.with(std::cell::Cell::get);
    RECENT.with(|recent| {
        // Never borrowed twice (nothing here calls back in); computed
        // afresh if it were.
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return sha256_digest(&key, owner);
        };
        if recent.key != key {
            recent.entries.clear();
            recent.next = 0;
            recent.key = key;
        }
        if let Some((_, digest)) = recent.entries.iter().find(|(name, _)| name == owner) {
            return *digest;
        }
        let digest = sha256_digest(&key, owner);
        let next = recent.next;
        recent.next = (next + 1) % RECENT_OWNERS;
        if let Some(entry) = recent.entries.get_mut(next) {
            *entry = (owner.to_string(), digest);
        } else {
            recent.entries.push((owner.to_string(), digest));
        }
        digest
    })
}

/// Owner digests kept per VM (see [`owner_digest`]).
pub const RECENT_OWNERS: usize = 4;

/// The digests [`owner_digest`] keeps, replaced in turn, and the table key
/// they were made with.
#[derive(Default)]
struct Recent {
    entries: Vec<(String, [u8; OWNER_DIGEST_LEN])>,
    next: usize,
    key: [u8; TABLE_KEY_LEN],
}

thread_local! {
    static RECENT: std::cell::RefCell<Recent> = std::cell::RefCell::new(Recent::default());
    /// The table key in use in this VM ([`use_table_key`]).
    static TABLE_KEY: std::cell::Cell<[u8; TABLE_KEY_LEN]> =
        const { std::cell::Cell::new([0; TABLE_KEY_LEN]) };
}

/// Bytes of the table key.
pub const TABLE_KEY_LEN: usize = 16;

/// Where the table key lives in Envoy's shared data: one for every worker
/// of the Envoy, kept across policy changes (as the counters are).
const TABLE_KEY_NAME: &str = "mcp-policy/v3/table-key";

/// The secret that owner digests are keyed with, so that nobody outside the
/// Envoy can tell which slots of a counter's table a name probes: with
/// plain digests, 32 names (`per` values of one grant) chosen offline could
/// fill every slot another caller probes, failing that caller's calls (or
/// letting them through unlimited under `failure_mode: open`). Read from
/// the store; the first worker to need it writes a random one.
pub fn table_key<S: SharedStore + ?Sized>(
    store: &S,
    random: impl FnOnce() -> u128,
) -> Result<[u8; TABLE_KEY_LEN], String> {
    let mut random = Some(random);
    let mut fresh = [0; TABLE_KEY_LEN];
    for _ in 0..MAX_CAS_ATTEMPTS {
        let cas = match store.get(TABLE_KEY_NAME) {
            Ok(Some((bytes, cas))) => match <[u8; TABLE_KEY_LEN]>::try_from(bytes.as_slice()) {
                Ok(key) if key != [0; TABLE_KEY_LEN] => return Ok(key),
                // Not a key of ours: replaced.
                _ => Some(cas),
            },
            Ok(None) => None,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(err),
        };
        if let Some(random) = random.take() {
            fresh = random().to_le_bytes();
        }
        match store.compare_and_swap(TABLE_KEY_NAME, &fresh, cas) {
            Ok(()) => return Ok(fresh),
            // Another worker wrote one first: read it.
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(err),
        }
    }
    Err("the table key is still contended".to_string())
}

/// Makes `key` the table key of this VM's owner digests. The zero key (no
/// key read yet: native tools and tests) digests names unkeyed.
pub fn use_table_key(key: [u8; TABLE_KEY_LEN]) {
    TABLE_KEY.with(|current| current.set(key));
}

fn sha256_digest(key: &[u8; TABLE_KEY_LEN], owner: &str) -> [u8; OWNER_DIGEST_LEN] {
    use sha2::{Digest, Sha256};
    let hash = if *key == [0; TABLE_KEY_LEN] {
        Sha256::digest(owner.as_bytes())
    } else {
        let mut hasher = Sha256::new();
        hasher.update(key);
        hasher.update(owner.as_bytes());
        hasher.finalize()
    };
    let mut digest = [0u8; OWNER_DIGEST_LEN];
    digest.copy_from_slice(&hash[..OWNER_DIGEST_LEN]);
    digest
}

/// Who is counted: the values scopes count by.
#[derive(Debug, Clone, Copy)]
pub struct CallerScope<'a> {
    pub grant: &'a str,
    /// `Mcp-Session-Id`; calls without one share a single "no session" count.
    pub session: Option<&'a str>,
    /// The caller's role (`grant_roles`, or the JWT's role claim).
    pub role: Option<&'a str>,
}

/// The caller a limit counts, within the limit's scope.
fn owner<'a>(limit: &Limit, caller: CallerScope<'a>) -> (char, &'a str) {
    match (limit.scope, caller.session, caller.role) {
        (Scope::Grant, _, _) => ('g', caller.grant),
        (Scope::Session, Some(session), _) => ('s', session),
        // No session (MCP 2026-07-28 has none): counted under the caller's
        // grant, apart from its grant-scoped counts. Stricter than one count
        // per session, never unlimited.
        (Scope::Session, None, _) => ('n', caller.grant),
        // Across all callers, one count per argument value: as many owners
        // as values, so they probe a table as callers do.
        (Scope::Global, _, _) if limit.per.is_some() => ('a', ""),
        (Scope::Global, _, _) => ('*', ""),
        (Scope::Role, _, Some(role)) => ('r', role),
        // No role: a role of its own, counted under the grant apart from its
        // grant-scoped counts.
        (Scope::Role, _, None) => ('m', caller.grant),
    }
}

/// One limit as it applies to one call: what the call takes from it and,
/// for a limit with `per`, the value it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge<'p> {
    pub limit: &'p Limit,
    /// Units taken from a window (0: checked, nothing taken); 1 for a
    /// concurrency slot.
    pub cost: u64,
    /// `<path>=<value>` (or `<path>` when the call has no such argument)
    /// for a limit with `per`: see [`per_key`].
    pub per: Option<String>,
}

impl<'p> Charge<'p> {
    /// A limit without an argument cost or `per` (tests, simple callers).
    pub fn plain(limit: &'p Limit) -> Charge<'p> {
        let cost = match limit.cost {
            crate::policy::Cost::Units(units) => units,
            crate::policy::Cost::Argument(_) => 1,
        };
        Charge {
            limit,
            cost,
            per: None,
        }
    }
}

/// A [`Charge`] that owns its limit: what a call held for approval will
/// take once it is approved (the decision's borrow of the policy has ended
/// by then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCharge {
    pub limit: Limit,
    pub cost: u64,
    pub per: Option<String>,
}

impl Charge<'_> {
    pub fn held(&self) -> HeldCharge {
        HeldCharge {
            limit: self.limit.clone(),
            cost: self.cost,
            per: self.per.clone(),
        }
    }
}

impl HeldCharge {
    pub fn charge(&self) -> Charge<'_> {
        Charge {
            limit: &self.limit,
            cost: self.cost,
            per: self.per.clone(),
        }
    }
}

/// How a `per` value joins the owner it is counted under: `<path>=<value>`,
/// the value being an argument's string, or the compact JSON of any other
/// value with its numbers in one spelling (so `1`, `1.0`, `1e0` and `"1"`
/// count together: stricter, never looser), with `%`, `;` and `=`
/// percent-encoded, so that the pair (scope value, argument value) is one
/// string and two pairs never make the same one. A call without the
/// argument, or with `null` for it (servers read both as unset), is
/// counted under `<path>` alone: all such calls of one owner together.
pub fn per_key(path: &str, value: Option<&serde_json::Value>) -> String {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return path.to_string();
    };
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        other => {
            let mut text = String::new();
            write_normalised(other, &mut text);
            text
        }
    };
    let mut key = String::with_capacity(path.len() + 1 + text.len());
    key.push_str(path);
    key.push('=');
    for c in text.chars() {
        match c {
            '%' => key.push_str("%25"),
            ';' => key.push_str("%3B"),
            '=' => key.push_str("%3D"),
            c => key.push(c),
        }
    }
    key
}

/// 2^53: every integer up to it is exact in a double.
const EXACT_INTEGERS: u64 = 1 << 53;

/// Compact JSON with every number in one spelling: an integer as digits, a
/// fraction as the shortest text that reads back to the same double (what
/// approval digests write). Strings and keys as serde_json writes them.
fn write_normalised(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        // Past 2^53 integers are doubles to many servers (JavaScript's):
        // written as the double they read, so that spellings a server
        // cannot tell apart count together.
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(integer), _, _) if integer.unsigned_abs() <= EXACT_INTEGERS => {
                out.push_str(&integer.to_string());
            }
            (_, _, Some(float)) => {
                out.push_str(&crate::approval::canonical::format_double(float));
            }
            _ => out.push_str(&number.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_normalised(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (index, (key, item)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_normalised(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The owner of a charge: the scope's value, and `;<per key>` for `per`.
fn owner_text(scope_value: &str, per: Option<&str>) -> String {
    match per {
        Some(per) => format!("{scope_value};{per}"),
        None => scope_value.to_string(),
    }
}

/// The key of slot `index` of a counter's table for one scope. Lengths make
/// it unambiguous whatever characters counter names hold.
/// `KEY_PREFIX` `<length>/<counter>/<scope>/<index>`, written without
/// `format!` (taken on every counted call: a tenth of its instructions).
fn slot_key(limit: &Limit, scope: char, index: u64) -> String {
    counter_key(KEY_PREFIX, &limit.counter, scope, index)
}

/// `prefix` `<length>/<counter>/<scope>/<index>`: the key of a window
/// counter's slot or of a concurrency cap's bucket.
pub(crate) fn counter_key(prefix: &str, counter: &str, scope: char, index: u64) -> String {
    let mut key = String::with_capacity(prefix.len() + counter.len() + 28);
    key.push_str(prefix);
    push_decimal(&mut key, counter.len() as u64);
    key.push('/');
    key.push_str(counter);
    key.push('/');
    key.push(scope);
    key.push('/');
    push_decimal(&mut key, index);
    key
}

/// Appends `number` in decimal.
pub(crate) fn push_decimal(text: &mut String, number: u64) {
    for digit in decimal(number, &mut [0; 20]) {
        text.push(char::from(*digit));
    }
}

/// `number`'s decimal digits, written at the end of `digits` (20 digits
/// hold every `u64`).
pub(crate) fn decimal(mut number: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    &digits[start..]
}

/// The `probe`-th slot a caller may use. Each probe hashes afresh (random
/// probing): runs of taken slots do not cluster the way they do with linear
/// probing, so a table stays usable up to a high load. The hash must be the
/// same in every worker's VM: `DefaultHasher::new()` has fixed keys.
fn probe_slot(owner: &[u8; OWNER_DIGEST_LEN], probe: u64, slots: u64) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    owner.hash(&mut hasher);
    probe.hash(&mut hasher);
    hasher.finish() % slots.max(1)
}

/// A slot's state: whose it is, the window it counts, and the count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    window_start: u64,
    count: u64,
    owner: Vec<u8>,
}

impl Slot {
    const HEADER_LEN: usize = 16;

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::HEADER_LEN + self.owner.len());
        bytes.extend_from_slice(&self.window_start.to_le_bytes());
        bytes.extend_from_slice(&self.count.to_le_bytes());
        bytes.extend_from_slice(&self.owner);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let window_start = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let count = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Slot {
            window_start,
            count,
            owner: bytes.get(Self::HEADER_LEN..)?.to_vec(),
        })
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

/// Quota taken from one counter for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// `units` taken from a window.
    Window {
        key: String,
        window_start: u64,
        owner: Vec<u8>,
        units: u64,
    },
    /// A slot of a concurrency cap, held until the call's exchange ends.
    Slot(concurrency::Lease),
}

impl Reservation {
    /// The shared-data key the quota was taken from.
    pub fn key(&self) -> &str {
        match self {
            Reservation::Window { key, .. } => key,
            Reservation::Slot(lease) => &lease.key,
        }
    }

    pub fn is_slot(&self) -> bool {
        matches!(self, Reservation::Slot(_))
    }
}

/// The result of trying to take what a call costs from every limit of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire<'p> {
    /// Every limit had room; each took the call's cost (or a slot).
    Granted(Vec<Reservation>),
    /// A limit was full; nothing was taken. `limit` is the full window
    /// limit whose window ends last, so `retry_after_seconds` is when a
    /// retry can pass; a full concurrency cap only when no window is full
    /// (then `retry_after_seconds` is 0: a slot frees when a call ends).
    Exhausted {
        limit: &'p Limit,
        retry_after_seconds: u64,
        /// What the call would have taken from it: the largest cost of the
        /// limits naming its counter.
        cost: u64,
    },
    /// The store could not be updated, or a counter's table has no slot left
    /// for this caller; nothing is known to be taken.
    Failed(String),
}

/// One charge as it applies to this caller.
struct Counted<'p> {
    limit: &'p Limit,
    /// The largest cost of the charges naming this counter for this owner.
    cost: u64,
    scope: char,
    owner: [u8; OWNER_DIGEST_LEN],
}

impl Counted<'_> {
    /// The smallest `max` (or cap) of the limits naming this counter.
    fn max(&self) -> u64 {
        self.limit.max()
    }
}

/// Takes what the call costs from each limit, all or none: units from
/// windows, a slot from concurrency caps (leased until `now` plus the
/// limit's lease). `slots` is the size of each counter's table.
///
/// Charges that count the same owner on the same counter (a counter named
/// twice for one call) take once: the largest cost, checked against the
/// smallest `max`.
pub fn acquire<'p, S: SharedStore + ?Sized>(
    store: &S,
    charges: &[Charge<'p>],
    caller: CallerScope<'_>,
    now: u64,
    slots: u64,
) -> Acquire<'p> {
    let mut counted: Vec<Counted<'p>> = Vec::with_capacity(charges.len());
    for charge in charges {
        let (scope, value) = owner(charge.limit, caller);
        let owner = owner_digest(&owner_text(value, charge.per.as_deref()));
        match counted.iter_mut().find(|c| {
            c.limit.counter == charge.limit.counter && c.scope == scope && c.owner == owner
        }) {
            Some(entry) => {
                entry.cost = entry.cost.max(charge.cost);
                if charge.limit.max() < entry.limit.max() {
                    entry.limit = charge.limit;
                }
            }
            None => counted.push(Counted {
                limit: charge.limit,
                cost: charge.cost,
                scope,
                owner,
            }),
        }
    }

    let mut taken: Vec<Reservation> = Vec::with_capacity(counted.len());
    for (index, entry) in counted.iter().enumerate() {
        let result = match entry.limit.kind {
            LimitKind::Window { .. } => take_units(store, entry, now, slots),
            LimitKind::Concurrent { lease_seconds, .. } => concurrency::take_slot(
                store,
                &entry.limit.counter,
                entry.scope,
                &entry.owner,
                entry.max(),
                now,
                now.saturating_add(lease_seconds),
                slots,
            )
            .map(|lease| match lease {
                Some(lease) => Taken::Took(Reservation::Slot(lease)),
                None => Taken::Full,
            }),
        };
        match result {
            Ok(Taken::Took(reservation)) => taken.push(reservation),
            Ok(Taken::Checked) => {}
            Ok(Taken::Full) => {
                release(store, &taken);
                return exhausted(store, &counted[index..], now, slots);
            }
            Err(err) => {
                release(store, &taken);
                return Acquire::Failed(err);
            }
        }
    }
    Acquire::Granted(taken)
}

/// Among charges of which the first is full, the full window whose window
/// ends last (a retry before then would be refused again); a full
/// concurrency cap when no window is full.
fn exhausted<'p, S: SharedStore + ?Sized>(
    store: &S,
    counted: &[Counted<'p>],
    now: u64,
    slots: u64,
) -> Acquire<'p> {
    let mut worst: Option<(&'p Limit, u64, u64)> = None;
    let mut cap: Option<&'p Limit> = None;
    for (position, entry) in counted.iter().enumerate() {
        match entry.limit.kind {
            LimitKind::Window { seconds, max } => {
                // The first charge was seen full; the rest are read once more.
                let full = position == 0
                    || current_count(store, entry, now, slots).is_some_and(|count| {
                        count
                            .checked_add(entry.cost)
                            .is_none_or(|total| total > max)
                    });
                if full {
                    let retry = seconds_until_reset(now, seconds);
                    if worst.is_none_or(|(_, longest, _)| retry > longest) {
                        worst = Some((entry.limit, retry, entry.cost));
                    }
                }
            }
            LimitKind::Concurrent { cap: limit_cap, .. } => {
                let full = position == 0
                    || concurrency::live(
                        store,
                        &entry.limit.counter,
                        entry.scope,
                        &entry.owner,
                        now,
                        slots,
                    )
                    .is_some_and(|live| live >= limit_cap);
                if full && cap.is_none() {
                    cap = Some(entry.limit);
                }
            }
        }
    }
    match (worst, cap) {
        (Some((limit, retry_after_seconds, cost)), _) => Acquire::Exhausted {
            limit,
            retry_after_seconds,
            cost,
        },
        (None, Some(limit)) => Acquire::Exhausted {
            limit,
            retry_after_seconds: 0,
            cost: 1,
        },
        (None, None) => Acquire::Failed("no limit found full".to_string()),
    }
}

/// The slots a caller may use, in probe order (a slot may repeat).
fn probe_sequence(entry: &Counted<'_>, slots: u64) -> impl Iterator<Item = u64> {
    let single = entry.scope == '*';
    // One caller for the whole counter: one slot.
    let probes = if single { 1 } else { PROBES };
    let owner = entry.owner;
    (0..probes).map(move |probe| {
        if single {
            0
        } else {
            probe_slot(&owner, probe, slots)
        }
    })
}

/// The caller's count in the current window, reading only.
fn current_count<S: SharedStore + ?Sized>(
    store: &S,
    entry: &Counted<'_>,
    now: u64,
    slots: u64,
) -> Option<u64> {
    let (seconds, _) = entry.limit.window()?;
    let window = window_start(now, seconds);
    for index in probe_sequence(entry, slots) {
        let key = slot_key(entry.limit, entry.scope, index);
        match read(store, &key).ok()? {
            (Some(slot), _) if slot.owner == entry.owner && slot.window_start == window => {
                return Some(slot.count)
            }
            (Some(slot), _) if slot.window_start == window => continue,
            _ => return Some(0),
        }
    }
    None
}

/// What taking from one counter did.
enum Taken {
    Took(Reservation),
    /// A cost of 0 that fits: nothing taken, nothing to give back.
    Checked,
    Full,
}

/// Takes the entry's cost for the caller if its window has room.
fn take_units<S: SharedStore + ?Sized>(
    store: &S,
    entry: &Counted<'_>,
    now: u64,
    slots: u64,
) -> Result<Taken, String> {
    let Some((seconds, max)) = entry.limit.window() else {
        return Err(format!("counter {:?} has no window", entry.limit.counter));
    };
    let window = window_start(now, seconds);
    let owner = &entry.owner[..];
    'probes: for index in probe_sequence(entry, slots) {
        let key = slot_key(entry.limit, entry.scope, index);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (current, cas) = read(store, &key)?;
            let count = match &current {
                // Ours in this window: count on.
                Some(slot) if slot.owner == owner && slot.window_start == window => slot.count,
                // Someone else's in this window: try the next slot.
                Some(slot) if slot.window_start == window => continue 'probes,
                // Empty, or left from an older window: ours from 0. (Within a
                // window a caller's slot always precedes any free one, so the
                // caller has none further on.)
                _ => 0,
            };
            // Past u64 is full too: a saturated sum would pass a `max` of
            // 2^64 - 1 forever, and the count would wrap.
            let total = match count.checked_add(entry.cost) {
                Some(total) if total <= max => total,
                _ => return Ok(Taken::Full),
            };
            if entry.cost == 0 {
                return Ok(Taken::Checked);
            }
            let next = Slot {
                window_start: window,
                count: total,
                owner: owner.to_vec(),
            };
            match store.compare_and_swap(&key, &next.encode(), cas) {
                Ok(()) => {
                    return Ok(Taken::Took(Reservation::Window {
                        key,
                        window_start: window,
                        owner: owner.to_vec(),
                        units: entry.cost,
                    }))
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Unavailable(err)) => return Err(err),
            }
        }
        return Err(format!(
            "counter {:?} still contended after {MAX_CAS_ATTEMPTS} attempts",
            entry.limit.counter
        ));
    }
    Err(format!(
        "counter {:?} has no free slot for this caller in this window: its {PROBES} candidate slots of {slots} are held by other callers (raise max_callers_per_counter)",
        entry.limit.counter
    ))
}

fn read<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<(Option<Slot>, Option<Cas>), String> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => match Slot::decode(&bytes) {
            Some(slot) => Ok((Some(slot), Some(cas))),
            // Not ours or from another layout: treat as free rather than fail forever.
            None => Ok((None, Some(cas))),
        },
        Ok(None) => Ok((None, None)),
        Err(StoreError::CasMismatch) => Err(format!("reading {key:?}: unexpected CAS mismatch")),
        Err(StoreError::Unavailable(err)) => Err(err),
    }
}

/// Gives back quota taken for a call that did not happen: window units and
/// slots alike. A unit whose window has already ended, or whose slot has
/// passed to another caller, is not given back: that count no longer
/// matters. Returns the keys that could not be updated.
pub fn release<S: SharedStore + ?Sized>(store: &S, reservations: &[Reservation]) -> Vec<String> {
    let mut failed = Vec::new();
    for reservation in reservations {
        let done = match reservation {
            Reservation::Window {
                key,
                window_start,
                owner,
                units,
            } => give_back_units(store, key, *window_start, owner, *units),
            Reservation::Slot(lease) => concurrency::give_back(store, lease),
        };
        if !done {
            failed.push(reservation.key().to_string());
        }
    }
    failed
}

/// Gives back the slots of a call whose exchange ended (window units stay
/// taken: the call happened). Returns the keys that could not be updated.
pub fn end_calls<S: SharedStore + ?Sized>(store: &S, reservations: &[Reservation]) -> Vec<String> {
    let slots: Vec<Reservation> = reservations
        .iter()
        .filter(|reservation| reservation.is_slot())
        .cloned()
        .collect();
    release(store, &slots)
}

fn give_back_units<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    window_start: u64,
    owner: &[u8],
    units: u64,
) -> bool {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Ok((current, cas)) = read(store, key) else {
            return false;
        };
        let Some(slot) = current else {
            return true;
        };
        if slot.window_start != window_start || slot.owner != owner || slot.count == 0 {
            return true;
        }
        let next = Slot {
            count: slot.count.saturating_sub(units),
            ..slot
        };
        match store.compare_and_swap(key, &next.encode(), cas) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(_)) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests;
