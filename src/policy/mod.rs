//! The policy: read from JSON ([`document`]), validated and compiled once at
//! configuration time into [`Policy`], which the decision engine reads on every
//! request without further checks.

pub mod document;
mod error;
mod identity;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::arguments::ArgumentRules;
use crate::mcp;

pub use document::{Action, CounterStore, DenyAs, FailureMode, ListMode, Mode, Scope};
use document::{
    AllToolsDocument, Checked, GrantDocument, LimitDocument, NonEmptyString, Object,
    PolicyDocument, ToolRuleDocument, UniqueMap,
};
pub(crate) use error::Errors;
pub use error::{index_of_line_column, line_column_of_index, ConfigError, ConfigErrors, ROOT};
pub use identity::{sha256_hex, Identity, IdentityError};

/// Bodies above this are refused unless the policy sets `max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Slots in each counter's table unless the policy sets `max_callers_per_counter`.
pub const DEFAULT_MAX_CALLERS_PER_COUNTER: u64 = 65_536;

/// Rate-limit domain of global limits unless `rate_limit_service.domain` says otherwise.
pub const DEFAULT_RATE_LIMIT_DOMAIN: &str = "mcp-policy";
/// How long a decision waits for the rate-limit service unless `timeout_ms` says otherwise.
pub const DEFAULT_RATE_LIMIT_TIMEOUT_MS: u64 = 50;

/// The grant of a caller whose request names none.
pub const ANONYMOUS_GRANT: &str = "anonymous";

/// A validated policy, ready to decide requests.
#[derive(Debug)]
pub struct Policy {
    pub identity: Identity,
    pub mode: Mode,
    pub deny_as: DenyAs,
    pub list: ListMode,
    pub failure_mode: FailureMode,
    pub max_body_bytes: u64,
    /// Deepest nesting of arrays and objects accepted in a request body.
    pub max_json_depth: usize,
    /// Hold request headers until the body is decided (default). `false`
    /// for Envoys where `allow_on_headers_stop_iteration` cannot be set.
    pub hold_request_headers: bool,
    /// Where limits with `store: global` are counted.
    pub rate_limit_service: Option<RateLimitService>,
    /// The policy for callers without a grant entry of their own.
    base: View,
    grants: HashMap<String, View>,
}

/// The policy as one grant sees it: the top level with the grant's overrides
/// applied.
#[derive(Debug)]
pub struct View {
    pub default: Action,
    /// JSON pointer of the `default` in force, e.g. `/default` or `/grants/ci/default`.
    pub default_pointer: String,
    tools: HashMap<String, Arc<ToolRule>>,
    all_tools_limits: Vec<Limit>,
    hide: Hide,
    list: ListMode,
    /// Slots in each counter's table (`max_callers_per_counter`).
    pub slots_per_counter: u64,
    /// Lowercased names of the tools this view names (rules and `hide`) →
    /// the names as written, to catch calls that differ only in case.
    folded: HashMap<String, String>,
}

/// Tools a grant must not see.
#[derive(Debug, Default)]
struct Hide {
    all: bool,
    names: HashSet<String>,
    pointer: String,
}

/// The compiled rule for one tool named in the policy.
#[derive(Debug)]
pub struct ToolRule {
    pub action: Action,
    pub reason: Option<String>,
    /// JSON pointer of the rule in the document, e.g. `/tools/deleteWorkspace`.
    pub pointer: String,
    pub limits: Vec<Limit>,
    /// `require` and `deny_if`.
    pub arguments: ArgumentRules,
}

/// One rate limit, as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub counter: String,
    pub window_seconds: u64,
    pub max: u64,
    pub scope: Scope,
    /// JSON pointer of the limit, e.g. `/tools/asyncExecuteCode/limits/0`.
    pub pointer: String,
    pub store: CounterStore,
}

/// The fleet-wide rate-limit service (`rate_limit_service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
}

/// Windows the rate-limit protocol can express (its `unit`s).
pub const SERVICE_WINDOWS: [u64; 4] = [1, 60, 3_600, 86_400];

impl Policy {
    /// Reads and validates a policy document: the policy, or every error
    /// found in it.
    ///
    /// Each part of the document (every field of the document, of a tool
    /// rule and of a grant; every tool rule, grant, limit and argument
    /// condition) is read on its own, and the checks made after reading
    /// (regexes, argument paths, counters' windows and stores, ...) go on
    /// past an error, so all of them are reported together. A part stops
    /// at its first error; what cannot be read part by part stops the whole
    /// document with one error: JSON that is not well-formed, a document
    /// that is not an object, an unknown or missing top-level field, a name
    /// given twice in `tools` or `grants`.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, ConfigErrors> {
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let document: Object<PolicyDocument> =
            serde_path_to_error::deserialize(&mut reader).map_err(ConfigError::from_reader)?;
        // Trailing garbage after the document is as wrong as a bad field.
        reader.end().map_err(|err| {
            let mut error = ConfigError::new(ROOT, "trailing characters after the policy document");
            error.line = Some(err.line());
            error.column = Some(err.column());
            error
        })?;
        compile(document.0).map_err(|errors| errors.locate(bytes))
    }

    /// The policy as `grant` sees it.
    pub fn view(&self, grant: &str) -> &View {
        self.grants.get(grant).unwrap_or(&self.base)
    }

    /// The view of callers without a grant entry.
    pub fn base(&self) -> &View {
        &self.base
    }

    /// Every tool the policy names, in any grant (rules and `hide`), once each.
    pub fn named_tools(&self) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once(&self.base)
            .chain(self.grants.values())
            .flat_map(|view| view.tools.keys().chain(view.hide.names.iter()))
            .filter(|name| name.as_str() != "*")
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Grant labels with an entry of their own.
    pub fn grant_names(&self) -> impl Iterator<Item = &str> {
        self.grants.keys().map(String::as_str)
    }
}

impl View {
    /// The rule for a tool, by exact name.
    pub fn tool(&self, name: &str) -> Option<&ToolRule> {
        self.tools.get(name).map(Arc::as_ref)
    }

    /// Limits every tool call counts against, besides the tool's own.
    pub fn all_tools_limits(&self) -> &[Limit] {
        &self.all_tools_limits
    }

    /// Names of the tools this view has rules for, in no particular order.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// If `tool` is hidden: the pointer of the `hide` that hides it.
    pub fn hidden(&self, tool: &str) -> Option<&str> {
        (self.hide.all || self.hide.names.contains(tool)).then_some(self.hide.pointer.as_str())
    }

    /// The names this view's `hide` lists, as written (`"*"` included), in no
    /// particular order. Read-only, for `mcp-policy explain` (native only, so
    /// the module does not carry it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn hidden_names(&self) -> impl Iterator<Item = &str> {
        self.hide.names.iter().map(String::as_str)
    }

    /// JSON pointer of the `hide` in force, e.g. `/hide` or `/grants/ci/hide`.
    /// Native only, as `hidden_names`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn hide_pointer(&self) -> &str {
        &self.hide.pointer
    }

    /// Whether the tool can never be called by this grant: hidden, denied by
    /// its rule, or unlisted under `default: deny`. Limits and argument rules
    /// do not count: those calls can pass.
    pub fn never_callable(&self, tool: &str) -> bool {
        self.hidden(tool).is_some()
            || match self.tool(tool) {
                Some(rule) => rule.action == Action::Deny,
                None => self.default == Action::Deny,
            }
    }

    /// The tool this view names that `tool` differs from only in letter case.
    pub fn case_variant_of(&self, tool: &str) -> Option<&str> {
        if self.tools.contains_key(tool) || self.hide.names.contains(tool) {
            return None;
        }
        self.folded
            .get(&tool.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether `tools/list` answers for this grant may need rewriting.
    pub fn filters_listing(&self) -> bool {
        self.hide.all
            || !self.hide.names.is_empty()
            || (self.list == ListMode::HideDenied
                && (self.default == Action::Deny
                    || self.tools.values().any(|rule| rule.action == Action::Deny)))
    }

    /// Whether `tools/list` shows this tool to this grant.
    pub fn lists(&self, tool: &str) -> bool {
        match self.list {
            ListMode::ShowDenied => self.hidden(tool).is_none(),
            ListMode::HideDenied => !self.never_callable(tool),
        }
    }
}

/// Pointer reported when the top-level default decides.
pub const DEFAULT_POINTER: &str = "/default";

fn compile(document: PolicyDocument) -> Result<Policy, ConfigErrors> {
    let mut errors = Errors::default();
    let mut windows = CounterWindows::default();
    let PolicyDocument {
        schema,
        version,
        default,
        identity,
        tools,
        all_tools,
        max_body_bytes,
        hide,
        list,
        mode,
        deny_as,
        grants,
        failure_mode,
        max_json_depth,
        max_callers_per_counter,
        hold_request_headers,
        rate_limit_service,
    } = document;
    // Read for its errors only: `$schema` must be a string, `version` "1".
    errors.read_optional(schema, "$schema");
    errors.read(version, "version");
    // Stands in for a `default` that cannot be read; the policy is refused then.
    let default = errors.read(default, "default").unwrap_or(Action::Deny);
    let list = errors.read_optional(list, "list").unwrap_or_default();

    let all_tools = errors.read_optional(all_tools, "all_tools");
    let all_tools_limits = compile_all_tools(
        all_tools.map(|all| all.0),
        "",
        "",
        &mut windows,
        &mut errors,
    );
    let tools = compile_tools(tools, "", "", &mut windows, &mut errors);
    let hide = errors.read_optional(hide, "hide").unwrap_or_default();
    let hide = compile_hide(&hide, "/hide");
    let folded = fold_names(&tools, &hide);
    let slots_per_counter = errors
        .read_optional(max_callers_per_counter, "max_callers_per_counter")
        .map_or(DEFAULT_MAX_CALLERS_PER_COUNTER, |max| max.0);
    let base = View {
        slots_per_counter,
        default,
        default_pointer: DEFAULT_POINTER.to_string(),
        tools,
        all_tools_limits,
        hide,
        list,
        folded,
    };

    let mut compiled_grants = HashMap::with_capacity(grants.0.len());
    for (label, grant) in grants.0 {
        let Some(Object(grant)) = errors.read(grant, &format!("grants.{label}")) else {
            continue;
        };
        let view = compile_grant(&base, &label, grant, &mut windows, &mut errors);
        compiled_grants.insert(label, view);
    }

    let identity = errors
        .read_optional(identity, "identity")
        .map(|identity| identity.0);
    let identity = Identity::compile(identity, &mut errors);

    let max_json_depth = match errors.read_optional(max_json_depth, "max_json_depth") {
        None => mcp::DEFAULT_MAX_DEPTH,
        Some(depth) if depth.0 as usize <= mcp::MAX_DEPTH_LIMIT => depth.0 as usize,
        Some(depth) => {
            errors.push(ConfigError::new(
                "max_json_depth",
                format!(
                    "at most {} (the JSON reader's own limit), got {}",
                    mcp::MAX_DEPTH_LIMIT,
                    depth.0
                ),
            ));
            mcp::DEFAULT_MAX_DEPTH
        }
    };

    // Whether a limit is global can only be told of the limits that were
    // read: "no limit is global" is not said when some could not be.
    let everything_read = !errors.any_unread();
    let service_given = rate_limit_service.is_some();
    let service = errors.read_optional(rate_limit_service, "rate_limit_service");
    let rate_limit_service = match (service, &windows.first_global) {
        (Some(Object(service)), Some(_)) => Some(RateLimitService {
            cluster: service.cluster.0,
            domain: service
                .domain
                .map_or_else(|| DEFAULT_RATE_LIMIT_DOMAIN.to_string(), |domain| domain.0),
            timeout_ms: service
                .timeout_ms
                .map_or(DEFAULT_RATE_LIMIT_TIMEOUT_MS, |t| t.0),
            failure_mode: service.failure_mode.unwrap_or_default(),
        }),
        (_, None) => {
            if service_given && everything_read {
                errors.push(ConfigError::new(
                    "rate_limit_service",
                    "no limit has store: global; remove rate_limit_service or mark limits global",
                ));
            }
            None
        }
        (None, Some(first)) => {
            if !service_given {
                errors.push(ConfigError::new(
                    format!("{first}.store"),
                    "store: global needs a top-level rate_limit_service (cluster, domain, timeout_ms, failure_mode)",
                ));
            }
            None
        }
    };

    let policy = Policy {
        rate_limit_service,
        identity,
        mode: errors.read_optional(mode, "mode").unwrap_or_default(),
        deny_as: errors.read_optional(deny_as, "deny_as").unwrap_or_default(),
        failure_mode: errors
            .read_optional(failure_mode, "failure_mode")
            .unwrap_or_default(),
        max_json_depth,
        hold_request_headers: errors
            .read_optional(hold_request_headers, "hold_request_headers")
            .unwrap_or(true),
        list,
        max_body_bytes: errors
            .read_optional(max_body_bytes, "max_body_bytes")
            .map_or(DEFAULT_MAX_BODY_BYTES, |max| max.0),
        base,
        grants: compiled_grants,
    };
    errors.finish(policy)
}

fn compile_grant(
    base: &View,
    label: &str,
    grant: GrantDocument,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> View {
    let path = format!("grants.{label}.");
    let pointer = format!("/grants/{}", escape_pointer_token(label));
    let mut tools = base.tools.clone();
    tools.extend(compile_tools(grant.tools, &path, &pointer, windows, errors));
    let all_tools_limits = match errors.read_optional(grant.all_tools, &format!("{path}all_tools"))
    {
        Some(Object(all_tools)) => {
            compile_all_tools(Some(all_tools), &path, &pointer, windows, errors)
        }
        None => base.all_tools_limits.clone(),
    };
    let hide = match errors.read_optional(grant.hide, &format!("{path}hide")) {
        Some(names) => compile_hide(&names, &format!("{pointer}/hide")),
        None => Hide {
            all: base.hide.all,
            names: base.hide.names.clone(),
            pointer: base.hide.pointer.clone(),
        },
    };
    let (default, default_pointer) =
        match errors.read_optional(grant.default, &format!("{path}default")) {
            Some(default) => (default, format!("{pointer}/default")),
            None => (base.default, base.default_pointer.clone()),
        };
    let folded = fold_names(&tools, &hide);
    View {
        slots_per_counter: base.slots_per_counter,
        default,
        default_pointer,
        tools,
        all_tools_limits,
        hide,
        list: base.list,
        folded,
    }
}

/// `path` and `pointer` are the prefixes of the fragment the tools are in:
/// empty at the top level, `grants.<label>.` and `/grants/<label>` in a grant.
/// Rules with errors are left out (their errors kept).
fn compile_tools(
    tools: UniqueMap<Checked<Object<ToolRuleDocument>>>,
    path: &str,
    pointer: &str,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> HashMap<String, Arc<ToolRule>> {
    let mut compiled = HashMap::with_capacity(tools.0.len());
    for (name, rule) in tools.0 {
        let rule_path = format!("{path}tools.{name}");
        let rule_pointer = format!("{pointer}/tools/{}", escape_pointer_token(&name));
        let Some(Object(rule)) = errors.read(rule, &rule_path) else {
            continue;
        };
        let before = errors.len();
        let action = errors.read_optional(rule.action, &format!("{rule_path}.action"));
        let reason = errors.read_optional(rule.reason, &format!("{rule_path}.reason"));
        let on_deny = errors.read_optional(rule.on_deny, &format!("{rule_path}.on_deny"));
        let reason = match (reason, on_deny) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    format!("{rule_path}.on_deny"),
                    "a rule has either `reason` or `on_deny` (the same thing), not both",
                ));
                None
            }
            (reason, on_deny) => reason.or(on_deny),
        };
        let limits = compile_limits(
            rule.limits,
            &format!("{rule_path}.limits"),
            &format!("{rule_pointer}/limits"),
            windows,
            errors,
        );
        let arguments = ArgumentRules::compile_into(
            rule.require,
            rule.deny_if,
            &rule_path,
            &rule_pointer,
            errors,
        );
        if errors.len() > before {
            continue;
        }
        let rule = ToolRule {
            action: action.unwrap_or(Action::Allow),
            reason,
            pointer: rule_pointer,
            limits,
            arguments,
        };
        compiled.insert(name, Arc::new(rule));
    }
    compiled
}

fn compile_all_tools(
    all_tools: Option<AllToolsDocument>,
    path: &str,
    pointer: &str,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> Vec<Limit> {
    match all_tools {
        Some(all_tools) => compile_limits(
            all_tools.limits,
            &format!("{path}all_tools.limits"),
            &format!("{pointer}/all_tools/limits"),
            windows,
            errors,
        ),
        None => Vec::new(),
    }
}

/// Lowercased names → names as written, for every tool a view names. Tool
/// names are ASCII (others are refused before the policy is consulted), so
/// ASCII folding is complete.
fn fold_names(tools: &HashMap<String, Arc<ToolRule>>, hide: &Hide) -> HashMap<String, String> {
    tools
        .keys()
        .chain(hide.names.iter())
        .filter(|name| name.as_str() != "*")
        .map(|name| (name.to_ascii_lowercase(), name.clone()))
        .collect()
}

fn compile_hide(names: &[NonEmptyString], pointer: &str) -> Hide {
    Hide {
        all: names.iter().any(|name| name.0 == "*"),
        names: names.iter().map(|name| name.0.clone()).collect(),
        pointer: pointer.to_string(),
    }
}

/// Counter names are one namespace; a counter keeps one window and one store
/// wherever it is named, because its stored value holds a single window.
#[derive(Default)]
struct CounterWindows {
    seen: HashMap<String, (u64, CounterStore, String)>,
    /// Path of the first limit with `store: global`.
    first_global: Option<String>,
}

impl CounterWindows {
    /// Whether this limit agrees with the others naming its counter; if not,
    /// the error is kept in `errors`.
    fn check(
        &mut self,
        counter: &str,
        window: u64,
        store: CounterStore,
        path: &str,
        errors: &mut Errors,
    ) -> bool {
        if store == CounterStore::Global {
            self.first_global.get_or_insert_with(|| path.to_string());
            if !SERVICE_WINDOWS.contains(&window) {
                errors.push(ConfigError::new(
                    format!("{path}.window"),
                    format!(
                        "store: global takes the windows the rate-limit protocol has: second, minute, hour or day (got {window}s)"
                    ),
                ));
                return false;
            }
        }
        match self.seen.get(counter) {
            Some((first_window, _, first_path)) if *first_window != window => {
                errors.push(ConfigError::new(
                    format!("{path}.window"),
                    format!(
                        "counter {counter:?} has window {window}s here but {first_window}s at {first_path}; a counter has one window"
                    ),
                ));
                false
            }
            Some((_, first_store, first_path)) if *first_store != store => {
                errors.push(ConfigError::new(
                    format!("{path}.store"),
                    format!(
                        "counter {counter:?} is counted in another store at {first_path}; a counter has one store"
                    ),
                ));
                false
            }
            Some(_) => true,
            None => {
                self.seen
                    .insert(counter.to_string(), (window, store, path.to_string()));
                true
            }
        }
    }
}

/// The limits that could be read and agree with the others; every error kept.
fn compile_limits(
    limits: Vec<Checked<Object<LimitDocument>>>,
    path: &str,
    pointer: &str,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> Vec<Limit> {
    let mut compiled = Vec::with_capacity(limits.len());
    for (index, limit) in limits.into_iter().enumerate() {
        let limit_path = format!("{path}[{index}]");
        let Some(Object(limit)) = errors.read(limit, &limit_path) else {
            continue;
        };
        let store = limit.store.unwrap_or_default();
        if windows.check(&limit.counter.0, limit.window.0, store, &limit_path, errors) {
            compiled.push(Limit {
                counter: limit.counter.0,
                window_seconds: limit.window.0,
                max: limit.max.0,
                scope: limit.scope,
                pointer: format!("{pointer}/{index}"),
                store,
            });
        }
    }
    compiled
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
