//! Limits as compiled: rates and budgets over fixed windows (each call
//! taking a fixed cost or one read from an argument), and caps on calls in
//! flight, counted per scope and, with `per`, per value of an argument.
//! Compiling checks every combination of fields a JSON Schema can also
//! describe (so errors name the field) and what it cannot: a counter keeps
//! one shape wherever it is named.

use crate::lookup::HashMap;

use super::document::{
    Checked, CounterStore, LimitDocument, NonEmptyString, Object, RateLimitDocument, Scope,
};
use super::{ConfigError, Errors, SERVICE_WINDOWS};
use crate::arguments::ARGS_PREFIX;

/// Largest `concurrent` cap: a local counter's slot holds every live lease
/// of the callers it counts, so the cap bounds its size.
pub const MAX_CONCURRENT: u64 = 1_024;
/// Longest `lease_seconds` (a day, as the rate-limit service allows).
pub const MAX_LEASE_SECONDS: u64 = 86_400;
/// `lease_seconds` unless a concurrent limit says otherwise.
pub const DEFAULT_LEASE_SECONDS: u64 = 300;

/// One rate limit, as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub counter: String,
    pub kind: LimitKind,
    pub scope: Scope,
    /// JSON pointer of the limit, e.g. `/tools/asyncExecuteCode/limits/0`.
    pub pointer: String,
    pub store: CounterStore,
    /// Units a call takes from a window limit (`Units(1)` for concurrent ones).
    pub cost: Cost,
    /// Counted apart per value of this argument, within the scope.
    pub per: Option<ArgumentPath>,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// At most `max` units per fixed window of `seconds`, aligned to the epoch.
    Window { seconds: u64, max: u64 },
    /// At most `cap` calls in flight; a slot not given back ends after
    /// `lease_seconds`.
    Concurrent { cap: u64, lease_seconds: u64 },
}

/// How many units a call takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cost {
    Units(u64),
    /// A non-negative integer argument of at most the limit's `max`.
    Argument(ArgumentPath),
}

/// An argument path (`args.rows`): as written, and its segments without `args.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentPath {
    pub written: String,
    pub segments: Vec<String>,
}

impl ArgumentPath {
    /// `args.` followed by non-empty dot-separated segments.
    pub fn parse(written: &str) -> Option<ArgumentPath> {
        let segments: Vec<String> = written
            .strip_prefix(ARGS_PREFIX)?
            .split('.')
            .map(str::to_string)
            .collect();
        segments
            .iter()
            .all(|segment| !segment.is_empty())
            .then(|| ArgumentPath {
                written: written.to_string(),
                segments,
            })
    }

    /// The value at this path in a call's arguments.
    pub fn lookup<'v>(
        &self,
        arguments: Option<&'v serde_json::Value>,
    ) -> Option<&'v serde_json::Value> {
        use serde_json::Value;
        self.segments
            .iter()
            .try_fold(arguments?, |value, segment| match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => {
                    crate::arguments::array_index(segment).and_then(|i| items.get(i))
                }
                _ => None,
            })
    }
}

impl Limit {
    /// `(window seconds, max)` of a window limit.
    pub fn window(&self) -> Option<(u64, u64)> {
        match self.kind {
            LimitKind::Window { seconds, max } => Some((seconds, max)),
            LimitKind::Concurrent { .. } => None,
        }
    }

    /// The most a call may take: `max` of a window, the cap of a concurrent limit.
    pub fn max(&self) -> u64 {
        match self.kind {
            LimitKind::Window { max, .. } => max,
            LimitKind::Concurrent { cap, .. } => cap,
        }
    }

    pub fn is_concurrent(&self) -> bool {
        matches!(self.kind, LimitKind::Concurrent { .. })
    }

    /// Whether the policy gave this limit a cost of its own (`cost`, `cost_from`).
    pub fn has_cost(&self) -> bool {
        !matches!(self.cost, Cost::Units(1))
    }
}

/// The shape of a counter, which every limit naming it must share: its
/// stored value holds one kind, one window, one lease length, one key layout.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    kind: ShapeKind,
    store: CounterStore,
    per: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShapeKind {
    Window(u64),
    Concurrent(u64),
}

/// Counter names are one namespace: every limit naming a counter agrees on
/// its shape. Also notes what the policy's other parts must check (a global
/// limit needs the service, a role scope needs roles).
#[derive(Default)]
pub(super) struct Counters {
    seen: HashMap<String, (Shape, String)>,
    /// Path of the first limit with `store: global`.
    pub(super) first_global: Option<String>,
    /// Path of the first limit with `scope: role`.
    pub(super) first_role_scope: Option<String>,
}

impl Counters {
    /// Whether this limit agrees with the others naming its counter; if not,
    /// the error is kept in `errors`.
    fn check(&mut self, counter: &str, shape: Shape, path: &str, errors: &mut Errors) -> bool {
        let Some((first, first_path)) = self.seen.get(counter) else {
            self.seen
                .insert(counter.to_string(), (shape, path.to_string()));
            return true;
        };
        let (field, message) = match (first.kind, shape.kind) {
            (ShapeKind::Window(first), ShapeKind::Window(this)) if first != this => (
                "window",
                format!("counter {counter:?} has window {this}s here but {first}s at {first_path}; a counter has one window"),
            ),
            (ShapeKind::Concurrent(first), ShapeKind::Concurrent(this)) if first != this => (
                "lease_seconds",
                format!("counter {counter:?} has lease_seconds {this} here but {first} at {first_path}; a counter has one lease length"),
            ),
            (ShapeKind::Window(_), ShapeKind::Concurrent(_)) => (
                "concurrent",
                format!("counter {counter:?} counts calls in a window at {first_path}; a counter is either a window or a concurrency cap"),
            ),
            (ShapeKind::Concurrent(_), ShapeKind::Window(_)) => (
                "window",
                format!("counter {counter:?} caps calls in flight at {first_path}; a counter is either a window or a concurrency cap"),
            ),
            _ if first.store != shape.store => (
                "store",
                format!("counter {counter:?} is counted in another store at {first_path}; a counter has one store"),
            ),
            _ if first.per != shape.per => (
                "per",
                format!(
                    "counter {counter:?} is counted per {} at {first_path}; a counter has one `per`",
                    first.per.as_deref().unwrap_or("(no argument)")
                ),
            ),
            _ => return true,
        };
        errors.push(ConfigError::new(format!("{path}.{field}"), message));
        false
    }
}

/// The limits that could be read and are consistent; every error kept.
pub(super) fn compile_limits(
    limits: Vec<Checked<Object<LimitDocument>>>,
    path: &str,
    pointer: &str,
    counters: &mut Counters,
    errors: &mut Errors,
) -> Vec<Limit> {
    let mut compiled = Vec::with_capacity(limits.len());
    for (index, limit) in limits.into_iter().enumerate() {
        let limit_path = format!("{path}[{index}]");
        let end = limit.end();
        let Some(Object(limit)) = errors.read(limit, &limit_path) else {
            continue;
        };
        compiled.extend(compile_counted(
            limit,
            &limit_path,
            format!("{pointer}/{index}"),
            end,
            counters,
            errors,
        ));
    }
    compiled
}

/// A rule's `rate_limit` block: one window limit on a counter of the
/// rule's own (its pointer) unless the block names one, per grant unless it
/// names another scope.
pub(super) fn compile_rate_limit(
    block: Option<Checked<Object<RateLimitDocument>>>,
    path: &str,
    pointer: &str,
    counters: &mut Counters,
    errors: &mut Errors,
) -> Option<Limit> {
    let block = block?;
    let end = block.end();
    let Object(RateLimitDocument {
        max,
        window,
        scope,
        counter,
        store,
    }) = errors.read(block, path)?;
    let limit = LimitDocument {
        counter: counter.unwrap_or_else(|| NonEmptyString(pointer.to_string())),
        window: Some(window),
        max: Some(max),
        concurrent: None,
        lease_seconds: None,
        scope: scope.unwrap_or(Scope::Grant),
        store,
        cost: None,
        cost_from: None,
        per: None,
    };
    compile_counted(limit, path, pointer.to_string(), end, counters, errors)
}

/// One limit, checked on its own and against the other limits naming its
/// counter; noted in `counters` for the policy's other parts.
fn compile_counted(
    limit: LimitDocument,
    limit_path: &str,
    pointer: String,
    end: usize,
    counters: &mut Counters,
    errors: &mut Errors,
) -> Option<Limit> {
    // Noted before the limit's own checks: a global limit with a bad
    // window still needs the service.
    if limit.store == Some(CounterStore::Global) {
        counters
            .first_global
            .get_or_insert_with(|| limit_path.to_string());
    }
    if limit.scope == Scope::Role {
        counters
            .first_role_scope
            .get_or_insert_with(|| limit_path.to_string());
    }
    let before = errors.len();
    let limit = compile_limit(limit, limit_path, end, errors)?;
    if errors.len() > before {
        return None;
    }
    let shape = Shape {
        kind: match limit.kind {
            LimitKind::Window { seconds, .. } => ShapeKind::Window(seconds),
            LimitKind::Concurrent { lease_seconds, .. } => ShapeKind::Concurrent(lease_seconds),
        },
        store: limit.store,
        per: limit.per.as_ref().map(|per| per.written.clone()),
    };
    counters
        .check(&limit.counter, shape, limit_path, errors)
        .then_some(Limit { pointer, ..limit })
}

/// One limit's fields, checked together (pointer left empty).
fn compile_limit(
    limit: LimitDocument,
    path: &str,
    end: usize,
    errors: &mut Errors,
) -> Option<Limit> {
    let LimitDocument {
        counter,
        window,
        max,
        concurrent,
        lease_seconds,
        scope,
        store,
        cost,
        cost_from,
        per,
    } = limit;
    let store = store.unwrap_or_default();
    // Placed where the reader stopped for the limit (its closing brace), as
    // serde places a missing field.
    let mut error = |field: &str, message: String| {
        let path = if field.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        errors.push(ConfigError::new(path, message).placed(end));
    };
    let argument_path =
        |written: &NonEmptyString, field: &str, error: &mut dyn FnMut(&str, String)| {
            let parsed = ArgumentPath::parse(&written.0);
            if parsed.is_none() {
                error(
                    field,
                    format!("an argument path like \"args.name\" (got {:?})", written.0),
                );
            }
            parsed
        };
    let per = match &per {
        Some(written) => Some(argument_path(written, "per", &mut error)?),
        None => None,
    };
    let kind = match (window, max, concurrent) {
        (_, _, Some(cap)) => {
            if window.is_some() {
                error("window", "a concurrent limit has no window: it caps calls in flight, each held until its exchange ends".to_string());
                return None;
            }
            if max.is_some() {
                error(
                    "max",
                    "a concurrent limit has no max: `concurrent` is its cap".to_string(),
                );
                return None;
            }
            if cost.is_some() || cost_from.is_some() {
                let field = if cost.is_some() { "cost" } else { "cost_from" };
                error(
                    field,
                    "a concurrent limit takes one slot per call; costs are for window limits"
                        .to_string(),
                );
                return None;
            }
            if cap.0 > MAX_CONCURRENT {
                error(
                    "concurrent",
                    format!("at most {MAX_CONCURRENT}, got {}", cap.0),
                );
                return None;
            }
            let lease_seconds = lease_seconds.map_or(DEFAULT_LEASE_SECONDS, |lease| lease.0);
            if lease_seconds > MAX_LEASE_SECONDS {
                error(
                    "lease_seconds",
                    format!("at most {MAX_LEASE_SECONDS} (a day), got {lease_seconds}"),
                );
                return None;
            }
            LimitKind::Concurrent {
                cap: cap.0,
                lease_seconds,
            }
        }
        (Some(window), Some(max), None) => {
            if lease_seconds.is_some() {
                error(
                    "lease_seconds",
                    "only concurrent limits have a lease".to_string(),
                );
                return None;
            }
            if store == CounterStore::Global && !SERVICE_WINDOWS.contains(&window.0) {
                error("window", format!(
                    "store: global takes the windows the rate-limit protocol has: second, minute, hour or day (got {}s)",
                    window.0
                ));
                return None;
            }
            if store == CounterStore::Global && max.0 > u64::from(u32::MAX) {
                error("max", format!(
                    "store: global counts up to {} per window (the rate-limit protocol's requests_per_unit is 32-bit), got {}",
                    u32::MAX, max.0
                ));
                return None;
            }
            LimitKind::Window {
                seconds: window.0,
                max: max.0,
            }
        }
        (None, Some(_), None) => {
            error("", "missing field `window` (a limit with `max` counts in a window: \"minute\", \"hour\", ...)".to_string());
            return None;
        }
        (Some(_), None, None) => {
            error(
                "",
                "missing field `max` (a limit with a `window` needs one)".to_string(),
            );
            return None;
        }
        (None, None, None) => {
            error("", "a limit needs `window` and `max` (a rate or a budget), or `concurrent` (a cap on calls in flight)".to_string());
            return None;
        }
    };
    let cost = match (cost, &cost_from) {
        (Some(_), Some(_)) => {
            error(
                "cost_from",
                "a limit has either `cost` or `cost_from`, not both".to_string(),
            );
            return None;
        }
        (Some(units), None) => {
            let max = match kind {
                LimitKind::Window { max, .. } => max,
                LimitKind::Concurrent { .. } => u64::MAX,
            };
            if units.0 > max {
                error(
                    "cost",
                    format!(
                        "{} is more than max {max}: no call could ever pass",
                        units.0
                    ),
                );
                return None;
            }
            Cost::Units(units.0)
        }
        (None, Some(written)) => Cost::Argument(argument_path(written, "cost_from", &mut error)?),
        (None, None) => Cost::Units(1),
    };
    Some(Limit {
        counter: counter.0,
        kind,
        scope,
        pointer: String::new(),
        store,
        cost,
        per,
    })
}
