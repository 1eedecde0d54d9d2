//! The policy: read from JSON ([`document`]), validated and compiled once at
//! configuration time into [`Policy`], which the decision engine reads on every
//! request without further checks.

pub mod document;
mod error;
mod glob;
mod identity;
#[cfg(not(target_arch = "wasm32"))]
mod lint;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::arguments::ArgumentRules;
use crate::mcp;
use crate::target::Kind;
use crate::uri;

pub use document::{Action, CounterStore, DenyAs, FailureMode, ListMode, Mode, Scope};
use document::{
    AllToolsDocument, Checked, GrantDocument, InvokesDocument, LimitDocument, NonEmptyString,
    Object, PolicyDocument, PromptRuleDocument, ResourceRuleDocument, ToolRuleDocument, UniqueMap,
};
pub(crate) use error::Errors;
pub use error::{index_of_line_column, line_column_of_index, ConfigError, ConfigErrors, ROOT};
pub use glob::Glob;
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
    /// The tools' default (`default`).
    pub default: Action,
    /// JSON pointer of the `default` in force, e.g. `/default` or `/grants/ci/default`.
    pub default_pointer: String,
    tools: RuleSet,
    prompts: RuleSet,
    resources: RuleSet,
    all_tools_limits: Vec<Limit>,
    hide: Hide,
    list: ListMode,
    /// Slots in each counter's table (`max_callers_per_counter`).
    pub slots_per_counter: u64,
    methods: Arc<Methods>,
    annotations: Arc<Vec<AnnotationRule>>,
}

/// The tool annotations MCP defines, as policy input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    ReadOnly,
    Destructive,
    Idempotent,
    OpenWorld,
}

impl Hint {
    pub const ALL: [Hint; 4] = [
        Hint::ReadOnly,
        Hint::Destructive,
        Hint::Idempotent,
        Hint::OpenWorld,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hint::ReadOnly => "readOnlyHint",
            Hint::Destructive => "destructiveHint",
            Hint::Idempotent => "idempotentHint",
            Hint::OpenWorld => "openWorldHint",
        }
    }

    fn index(self) -> u8 {
        match self {
            Hint::ReadOnly => 0,
            Hint::Destructive => 1,
            Hint::Idempotent => 2,
            Hint::OpenWorld => 3,
        }
    }
}

/// The annotations a server listed for one tool: for each hint, whether it
/// was given and its value (two bits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hints(pub u8);

impl Hints {
    /// Reads a listed tool's `annotations` object.
    pub fn from_annotations(annotations: Option<&serde_json::Value>) -> Hints {
        let mut bits = 0u8;
        for hint in Hint::ALL {
            if let Some(value) = annotations
                .and_then(|a| a.get(hint.name()))
                .and_then(serde_json::Value::as_bool)
            {
                bits |= 1 << (hint.index() * 2);
                if value {
                    bits |= 2 << (hint.index() * 2);
                }
            }
        }
        Hints(bits)
    }

    /// The hint's value, if the server gave it.
    pub fn get(self, hint: Hint) -> Option<bool> {
        let shift = hint.index() * 2;
        (self.0 & (1 << shift) != 0).then_some(self.0 & (2 << shift) != 0)
    }
}

/// A stricter rule for tools whose listed annotations match.
#[derive(Debug)]
pub struct AnnotationRule {
    pub hint: Hint,
    pub is: bool,
    pub deny: bool,
    pub reason: Option<String>,
    pub pointer: String,
    pub limits: Vec<Limit>,
}

/// The rules of one kind: exact keys, patterns, and the default.
#[derive(Debug, Clone)]
struct RuleSet {
    exact: HashMap<String, Arc<Rule>>,
    /// Most literal text first; no two can tie (refused at load).
    patterns: Vec<(Glob, Arc<Rule>)>,
    default: Action,
    default_pointer: String,
    /// Lowercased exact keys (and hidden names) → as written, to catch names
    /// that differ only in case (tools and prompts).
    folded: HashMap<String, String>,
}

impl RuleSet {
    fn rule(&self, name: &str) -> Option<&Rule> {
        if let Some(rule) = self.exact.get(name) {
            return Some(rule);
        }
        self.patterns
            .iter()
            .find(|(glob, _)| glob.matches(name))
            .map(|(_, rule)| rule.as_ref())
    }
}

/// What a grant must not see.
#[derive(Debug, Default, Clone)]
struct Hide {
    names: HashMap<Kind, HashSet<String>>,
    patterns: HashMap<Kind, Vec<Glob>>,
    pointer: String,
    /// The entries as written (for `explain`, native only).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    written: Vec<String>,
}

impl Hide {
    fn hides(&self, kind: Kind, name: &str) -> bool {
        self.names
            .get(&kind)
            .is_some_and(|names| names.contains(name))
            || self
                .patterns
                .get(&kind)
                .is_some_and(|globs| globs.iter().any(|glob| glob.matches(name)))
    }

    fn is_empty(&self) -> bool {
        self.names.values().all(HashSet::is_empty) && self.patterns.values().all(Vec::is_empty)
    }
}

/// Methods allowed or denied as a whole (`methods`).
#[derive(Debug, Default)]
pub struct Methods {
    named: HashMap<String, (Action, String)>,
    /// For methods the gate does not know; allow unless `other` says deny.
    other: Option<(Action, String)>,
}

impl Methods {
    /// If the method is denied as a whole: the pointer of the entry that says so.
    pub fn denies(&self, method: &str) -> Option<&str> {
        let entry = match self.named.get(method) {
            Some(entry) => Some(entry),
            None if !mcp::methods::is_known(method) => self.other.as_ref(),
            None => None,
        };
        entry
            .filter(|(action, _)| *action == Action::Deny)
            .map(|(_, pointer)| pointer.as_str())
    }
}

/// The compiled rule for a tool, prompt or resource named in the policy.
#[derive(Debug)]
pub struct Rule {
    pub action: Action,
    pub reason: Option<String>,
    /// JSON pointer of the rule in the document, e.g. `/tools/deleteWorkspace`.
    pub pointer: String,
    /// The key as written (an exact name, a URI or a pattern).
    pub key: String,
    pub limits: Vec<Limit>,
    /// `require` and `deny_if`.
    pub arguments: ArgumentRules,
    /// For a meta-tool: where its arguments name the inner tool.
    pub invokes: Option<Invokes>,
}

/// The compiled rule of a tool (a [`Rule`]).
pub type ToolRule = Rule;

/// A meta-tool's inner call: argument paths (without `args.`) of its name and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invokes {
    pub name: Vec<String>,
    pub arguments: Option<Vec<String>>,
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
    /// Each part of the document (every field of the document, of a rule
    /// and of a grant; every rule, grant, limit and argument condition) is
    /// read on its own, and the checks made after reading (regexes, argument
    /// paths, patterns, URIs, counters' windows and stores, ...) go on past
    /// an error, so all of them are reported together. A part stops at its
    /// first error; what cannot be read part by part stops the whole
    /// document with one error: JSON that is not well-formed, a document
    /// that is not an object, an unknown or missing top-level field, a name
    /// given twice in one map.
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

    /// Every tool the policy names exactly, in any grant (rules and `hide`),
    /// once each.
    pub fn named_tools(&self) -> Vec<String> {
        self.named(Kind::Tool)
    }

    /// Every name of `kind` the policy names exactly (rules and `hide`), once each.
    pub fn named(&self, kind: Kind) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once(&self.base)
            .chain(self.grants.values())
            .flat_map(|view| {
                let rules = view.rule_set(kind).map(|set| set.exact.keys());
                let hidden = view.hide.names.get(&kind).map(|names| names.iter());
                rules
                    .into_iter()
                    .flatten()
                    .chain(hidden.into_iter().flatten())
            })
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every pattern key of `kind`'s rules, in any grant, once each.
    pub fn patterns(&self, kind: Kind) -> Vec<String> {
        let mut patterns: Vec<String> = std::iter::once(&self.base)
            .chain(self.grants.values())
            .filter_map(|view| view.rule_set(kind))
            .flat_map(|set| {
                set.patterns
                    .iter()
                    .map(|(glob, _)| glob.as_str().to_string())
            })
            .collect();
        patterns.sort();
        patterns.dedup();
        patterns
    }

    /// Every method a `methods` map names (not `other`), in any grant, once each.
    pub fn named_methods(&self) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once(&self.base)
            .chain(self.grants.values())
            .flat_map(|view| view.methods.named.keys().cloned())
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
    fn rule_set(&self, kind: Kind) -> Option<&RuleSet> {
        match kind {
            Kind::Tool => Some(&self.tools),
            Kind::Prompt => Some(&self.prompts),
            Kind::Resource => Some(&self.resources),
            Kind::Task => None,
        }
    }

    /// The rule for a tool: its exact key, else the most specific pattern.
    pub fn tool(&self, name: &str) -> Option<&Rule> {
        self.tools.rule(name)
    }

    /// The rule that decides `name` of `kind`: its exact key, else the most
    /// specific pattern. Resource names are normalised URIs.
    pub fn rule(&self, kind: Kind, name: &str) -> Option<&Rule> {
        self.rule_set(kind).and_then(|set| set.rule(name))
    }

    /// What happens to a `kind` the policy does not name, and the pointer of
    /// the field that says so.
    pub fn default_for(&self, kind: Kind) -> (Action, &str) {
        match self.rule_set(kind) {
            Some(set) => (set.default, set.default_pointer.as_str()),
            None => (Action::Allow, ""),
        }
    }

    /// Limits every tool call counts against, besides the tool's own.
    pub fn all_tools_limits(&self) -> &[Limit] {
        &self.all_tools_limits
    }

    /// Methods allowed or denied as a whole.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// Rules on tool annotations.
    pub fn annotation_rules(&self) -> &[AnnotationRule] {
        &self.annotations
    }

    /// Exact tool keys of this view, in no particular order.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.exact.keys().map(String::as_str)
    }

    /// Exact keys and patterns of `kind`, in no particular order.
    pub fn keys(&self, kind: Kind) -> Vec<&str> {
        self.rule_set(kind)
            .map(|set| {
                set.exact
                    .keys()
                    .map(String::as_str)
                    .chain(set.patterns.iter().map(|(glob, _)| glob.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// If the tool is hidden: the pointer of the `hide` that hides it.
    pub fn hidden(&self, tool: &str) -> Option<&str> {
        self.hidden_as(Kind::Tool, tool)
    }

    /// If `name` of `kind` is hidden: the pointer of the `hide` that hides it.
    pub fn hidden_as(&self, kind: Kind, name: &str) -> Option<&str> {
        self.hide
            .hides(kind, name)
            .then_some(self.hide.pointer.as_str())
    }

    /// The entries this view's `hide` lists, as written, in document order.
    /// Read-only, for `mcp-policy explain` (native only, so the module does
    /// not carry it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn hidden_names(&self) -> impl Iterator<Item = &str> {
        self.hide.written.iter().map(String::as_str)
    }

    /// JSON pointer of the `hide` in force, e.g. `/hide` or `/grants/ci/hide`.
    /// Native only, as `hidden_names`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn hide_pointer(&self) -> &str {
        &self.hide.pointer
    }

    /// Whether the tool can never be called by this grant.
    pub fn never_callable(&self, tool: &str) -> bool {
        self.never_allowed(Kind::Tool, tool)
    }

    /// Whether `name` of `kind` can never be used by this grant: hidden,
    /// denied by its rule, or unnamed under a deny default. Limits and
    /// argument rules do not count: those calls can pass.
    pub fn never_allowed(&self, kind: Kind, name: &str) -> bool {
        self.hidden_as(kind, name).is_some()
            || match self.rule(kind, name) {
                Some(rule) => rule.action == Action::Deny,
                None => self.default_for(kind).0 == Action::Deny,
            }
    }

    /// The tool this view names that `tool` differs from only in letter case.
    pub fn case_variant_of(&self, tool: &str) -> Option<&str> {
        self.case_variant(Kind::Tool, tool)
    }

    /// The name of `kind` (tools and prompts) this view names exactly that
    /// `name` differs from only in letter case.
    pub fn case_variant(&self, kind: Kind, name: &str) -> Option<&str> {
        let set = match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource | Kind::Task => return None,
        };
        if set.exact.contains_key(name)
            || self
                .hide
                .names
                .get(&kind)
                .is_some_and(|names| names.contains(name))
        {
            return None;
        }
        set.folded
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .filter(|named| *named != name)
    }

    /// Whether listing answers for this grant may need rewriting.
    pub fn filters_listing(&self) -> bool {
        !self.hide.is_empty()
            || (self.list == ListMode::HideDenied
                && Kind::RULED.iter().any(|kind| {
                    self.rule_set(*kind).is_some_and(|set| {
                        set.default == Action::Deny
                            || set.exact.values().any(|rule| rule.action == Action::Deny)
                            || set
                                .patterns
                                .iter()
                                .any(|(_, rule)| rule.action == Action::Deny)
                    })
                }))
    }

    /// Whether `tools/list` shows this tool to this grant.
    pub fn lists(&self, tool: &str) -> bool {
        self.shows(Kind::Tool, tool)
    }

    /// Whether a listing shows this entry to this grant. Resource entries
    /// are matched by their normalised URI; one that cannot be normalised is
    /// not shown.
    pub fn shows(&self, kind: Kind, name: &str) -> bool {
        let normalised;
        let name = if kind == Kind::Resource {
            match uri::normalize(name) {
                Ok(uri) => {
                    normalised = uri;
                    normalised.as_str()
                }
                Err(_) => return false,
            }
        } else {
            name
        };
        match self.list {
            ListMode::ShowDenied => self.hidden_as(kind, name).is_none(),
            ListMode::HideDenied => !self.never_allowed(kind, name),
        }
    }

    /// The key that decides `name` of `kind` and its pointer, or the
    /// default's pointer when no key does (for `mcp-policy explain`).
    pub fn deciding_key(&self, kind: Kind, name: &str) -> (Option<&str>, &str) {
        match self.rule(kind, name) {
            Some(rule) => (Some(rule.key.as_str()), rule.pointer.as_str()),
            None => (None, self.default_for(kind).1),
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
        prompts,
        resources,
        default_prompts,
        default_resources,
        methods,
        annotations,
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
    let kinds = KindDocuments {
        tools,
        prompts,
        resources,
        default_prompts,
        default_resources,
    };
    let base_defaults = Defaults {
        tools: (default, DEFAULT_POINTER.to_string()),
        prompts: (default, DEFAULT_POINTER.to_string()),
        resources: (default, DEFAULT_POINTER.to_string()),
    };
    let hide = errors.read_optional(hide, "hide").unwrap_or_default();
    let hide = compile_hide(&hide, "hide", "/hide", &mut errors);
    let methods = compile_methods(
        errors.read_optional(methods, "methods"),
        "",
        "",
        &mut errors,
    );
    let annotations = compile_annotations(annotations, "", "", &mut windows, &mut errors);
    let slots_per_counter = errors
        .read_optional(max_callers_per_counter, "max_callers_per_counter")
        .map_or(DEFAULT_MAX_CALLERS_PER_COUNTER, |max| max.0);
    let (tools, prompts, resources) = compile_kinds(
        kinds,
        &base_defaults,
        None,
        "",
        "",
        &hide,
        &mut windows,
        &mut errors,
    );
    let base = View {
        slots_per_counter,
        default,
        default_pointer: DEFAULT_POINTER.to_string(),
        tools,
        prompts,
        resources,
        all_tools_limits,
        hide,
        list,
        methods: Arc::new(methods),
        annotations: Arc::new(annotations),
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

/// The rule maps and defaults of one fragment (top level or a grant).
struct KindDocuments {
    tools: UniqueMap<Checked<Object<ToolRuleDocument>>>,
    prompts: UniqueMap<Checked<Object<PromptRuleDocument>>>,
    resources: UniqueMap<Checked<Object<ResourceRuleDocument>>>,
    default_prompts: Option<Checked<Action>>,
    default_resources: Option<Checked<Action>>,
}

/// Each kind's default and the pointer of the field that sets it.
struct Defaults {
    tools: (Action, String),
    prompts: (Action, String),
    resources: (Action, String),
}

/// Compiles a fragment's rules of every kind. `inherited`: the rule sets a
/// grant starts from (its own rules replace those of the same key).
#[allow(clippy::too_many_arguments)]
fn compile_kinds(
    documents: KindDocuments,
    defaults: &Defaults,
    inherited: Option<&View>,
    path: &str,
    pointer: &str,
    hide: &Hide,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> (RuleSet, RuleSet, RuleSet) {
    let KindDocuments {
        tools,
        prompts,
        resources,
        default_prompts,
        default_resources,
    } = documents;
    let prompts_default =
        match errors.read_optional(default_prompts, &format!("{path}default_prompts")) {
            Some(action) => (action, format!("{pointer}/default_prompts")),
            None => defaults.prompts.clone(),
        };
    let resources_default =
        match errors.read_optional(default_resources, &format!("{path}default_resources")) {
            Some(action) => (action, format!("{pointer}/default_resources")),
            None => defaults.resources.clone(),
        };
    let tool_parts = tools.0.into_iter().map(|(key, rule)| {
        let parts = rule.into_result().map(|Object(rule)| RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            require: rule.require,
            deny_if: rule.deny_if,
            invokes: rule.invokes,
        });
        (key, parts)
    });
    let prompt_parts = prompts.0.into_iter().map(|(key, rule)| {
        let parts = rule.into_result().map(|Object(rule)| RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            require: rule.require,
            deny_if: rule.deny_if,
            invokes: None,
        });
        (key, parts)
    });
    let resource_parts = resources.0.into_iter().map(|(key, rule)| {
        let parts = rule.into_result().map(|Object(rule)| RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            require: None,
            deny_if: None,
            invokes: None,
        });
        (key, parts)
    });
    let base = |kind| inherited.and_then(|view: &View| view.rule_set(kind).cloned());
    let mut compile = |kind, entries: Vec<(String, Result<RuleParts, ShapeError>)>, default| {
        let context = RuleContext {
            kind,
            path,
            pointer,
            hide,
        };
        compile_rule_set(&context, base(kind), entries, default, windows, errors)
    };
    let tools = compile(Kind::Tool, tool_parts.collect(), defaults.tools.clone());
    let prompts = compile(Kind::Prompt, prompt_parts.collect(), prompts_default);
    let resources = compile(Kind::Resource, resource_parts.collect(), resources_default);
    (tools, prompts, resources)
}

use error::ShapeError;

/// The fields of a rule, whatever its kind.
struct RuleParts {
    action: Option<Checked<Action>>,
    reason: Option<Checked<String>>,
    on_deny: Option<Checked<String>>,
    limits: Vec<Checked<Object<LimitDocument>>>,
    require: Option<crate::arguments::ConditionsDocument>,
    deny_if: Option<crate::arguments::ConditionsDocument>,
    invokes: Option<Checked<Object<InvokesDocument>>>,
}

/// Where the rules being compiled sit.
struct RuleContext<'a> {
    kind: Kind,
    /// Dotted path of the fragment (`""`, `grants.ci.`).
    path: &'a str,
    /// JSON pointer of the fragment (`""`, `/grants/ci`).
    pointer: &'a str,
    hide: &'a Hide,
}

impl RuleContext<'_> {
    /// The map of this kind in the document (`tools`).
    fn member(&self) -> &'static str {
        match self.kind {
            Kind::Tool | Kind::Task => "tools",
            Kind::Prompt => "prompts",
            Kind::Resource => "resources",
        }
    }
}

/// Rules with errors are left out (their errors kept).
fn compile_rule_set(
    context: &RuleContext<'_>,
    inherited: Option<RuleSet>,
    entries: Vec<(String, Result<RuleParts, ShapeError>)>,
    (default, default_pointer): (Action, String),
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> RuleSet {
    let member = context.member();
    let mut set = inherited.unwrap_or_else(|| RuleSet {
        exact: HashMap::new(),
        patterns: Vec::new(),
        default,
        default_pointer: String::new(),
        folded: HashMap::new(),
    });
    set.default = default;
    set.default_pointer = default_pointer;
    // Where each normalised resource key came from, to refuse two spellings of one URI.
    let mut spelled: HashMap<String, String> = HashMap::new();
    // Patterns written in this fragment (a grant inherits the others).
    let mut new_patterns: HashSet<String> = HashSet::new();
    for (written, parts) in entries {
        let rule_path = format!("{}{member}.{written}", context.path);
        let rule_pointer = format!(
            "{}/{member}/{}",
            context.pointer,
            escape_pointer_token(&written)
        );
        let parts = match parts {
            Ok(parts) => parts,
            Err(error) => {
                errors.push(error.at_path(&rule_path));
                continue;
            }
        };
        let key = match context.kind {
            Kind::Resource => match uri::normalize(&written) {
                Ok(key) => key,
                Err(error) => {
                    errors.push(ConfigError::new(
                        &rule_path,
                        format!("not a URI the gate can match: it has {error}"),
                    ));
                    continue;
                }
            },
            _ => written.clone(),
        };
        if let Some(first) = spelled.insert(key.clone(), written.clone()) {
            errors.push(ConfigError::new(
                &rule_path,
                format!("names the same resource as {first:?} once normalised ({key:?})"),
            ));
            continue;
        }
        let before = errors.len();
        let rule = compile_rule(parts, &rule_path, &rule_pointer, written, windows, errors);
        if errors.len() > before {
            continue;
        }
        let rule = Arc::new(rule);
        match Glob::new(&key) {
            Some(glob) => {
                set.patterns
                    .retain(|(existing, _)| existing.as_str() != key);
                new_patterns.insert(key);
                set.patterns.push((glob, rule));
            }
            None => {
                set.exact.insert(key, rule);
            }
        }
    }
    // Most literal text first; two patterns that tie must not both match a name.
    set.patterns.sort_by(|(a, _), (b, _)| {
        b.literal_len()
            .cmp(&a.literal_len())
            .then(a.as_str().cmp(b.as_str()))
    });
    for (index, (first, _)) in set.patterns.iter().enumerate() {
        for (second, _) in set.patterns.iter().skip(index + 1) {
            if first.literal_len() != second.literal_len() {
                break;
            }
            let new =
                new_patterns.contains(first.as_str()) || new_patterns.contains(second.as_str());
            if let Some(name) = first.overlap(second).filter(|_| new) {
                errors.push(ConfigError::new(
                    format!("{}{member}", context.path),
                    format!(
                        "patterns {:?} and {:?} both match {name:?} with as much literal text ({} characters): neither would win; make one more specific or add an exact key",
                        first.as_str(),
                        second.as_str(),
                        first.literal_len()
                    ),
                ));
            }
        }
    }
    set.folded = set
        .exact
        .keys()
        .chain(context.hide.names.get(&context.kind).into_iter().flatten())
        .map(|name| (name.to_ascii_lowercase(), name.clone()))
        .collect();
    set
}

fn compile_rule(
    parts: RuleParts,
    path: &str,
    pointer: &str,
    key: String,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> Rule {
    let action = errors.read_optional(parts.action, &format!("{path}.action"));
    let reason = errors.read_optional(parts.reason, &format!("{path}.reason"));
    let on_deny = errors.read_optional(parts.on_deny, &format!("{path}.on_deny"));
    let reason = match (reason, on_deny) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                format!("{path}.on_deny"),
                "a rule has either `reason` or `on_deny` (the same thing), not both",
            ));
            None
        }
        (reason, on_deny) => reason.or(on_deny),
    };
    let limits = compile_limits(
        parts.limits,
        &format!("{path}.limits"),
        &format!("{pointer}/limits"),
        windows,
        errors,
    );
    let arguments =
        ArgumentRules::compile_into(parts.require, parts.deny_if, path, pointer, errors);
    let invokes = errors
        .read_optional(parts.invokes, &format!("{path}.invokes"))
        .and_then(|Object(invokes)| compile_invokes(invokes, &format!("{path}.invokes"), errors));
    Rule {
        action: action.unwrap_or(Action::Allow),
        reason,
        pointer: pointer.to_string(),
        key,
        limits,
        arguments,
        invokes,
    }
}

fn compile_invokes(document: InvokesDocument, path: &str, errors: &mut Errors) -> Option<Invokes> {
    let mut argument_path = |written: &str, field: &str| -> Option<Vec<String>> {
        let segments = written
            .strip_prefix(crate::arguments::ARGS_PREFIX)
            .map(|rest| rest.split('.').map(str::to_string).collect::<Vec<_>>())
            .filter(|segments| segments.iter().all(|segment| !segment.is_empty()));
        if segments.is_none() {
            errors.push(ConfigError::new(
                format!("{path}.{field}"),
                format!("an argument path like \"args.name\" (got {written:?})"),
            ));
        }
        segments
    };
    let name = argument_path(&document.name.0, "name");
    let arguments = match &document.arguments {
        Some(written) => Some(argument_path(&written.0, "arguments")?),
        None => None,
    };
    Some(Invokes {
        name: name?,
        arguments,
    })
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
    let all_tools_limits = match errors.read_optional(grant.all_tools, &format!("{path}all_tools"))
    {
        Some(Object(all_tools)) => {
            compile_all_tools(Some(all_tools), &path, &pointer, windows, errors)
        }
        None => base.all_tools_limits.clone(),
    };
    let hide = match errors.read_optional(grant.hide, &format!("{path}hide")) {
        Some(names) => compile_hide(
            &names,
            &format!("{path}hide"),
            &format!("{pointer}/hide"),
            errors,
        ),
        None => base.hide.clone(),
    };
    let (default, default_pointer) =
        match errors.read_optional(grant.default, &format!("{path}default")) {
            Some(default) => (default, format!("{pointer}/default")),
            None => (base.default, base.default_pointer.clone()),
        };
    // A grant's own `default` also stands for prompts and resources it does
    // not give defaults of their own, as the top-level one does.
    let inherited_default = |set: &RuleSet| {
        if set.default_pointer != base.default_pointer {
            (set.default, set.default_pointer.clone())
        } else {
            (default, default_pointer.clone())
        }
    };
    let defaults = Defaults {
        tools: (default, default_pointer.clone()),
        prompts: inherited_default(&base.prompts),
        resources: inherited_default(&base.resources),
    };
    let methods = match errors.read_optional(grant.methods, &format!("{path}methods")) {
        Some(methods) => Arc::new(compile_methods(Some(methods), &path, &pointer, errors)),
        None => Arc::clone(&base.methods),
    };
    let annotations = match errors.read_optional(grant.annotations, &format!("{path}annotations")) {
        Some(rules) => Arc::new(compile_annotations(rules, &path, &pointer, windows, errors)),
        None => Arc::clone(&base.annotations),
    };
    let documents = KindDocuments {
        tools: grant.tools,
        prompts: grant.prompts,
        resources: grant.resources,
        default_prompts: grant.default_prompts,
        default_resources: grant.default_resources,
    };
    let (tools, prompts, resources) = compile_kinds(
        documents,
        &defaults,
        Some(base),
        &path,
        &pointer,
        &hide,
        windows,
        errors,
    );
    View {
        slots_per_counter: base.slots_per_counter,
        default,
        default_pointer,
        tools,
        prompts,
        resources,
        all_tools_limits,
        hide,
        list: base.list,
        methods,
        annotations,
    }
}

fn compile_annotations(
    rules: UniqueMap<Checked<Object<document::AnnotationRuleDocument>>>,
    path: &str,
    pointer: &str,
    windows: &mut CounterWindows,
    errors: &mut Errors,
) -> Vec<AnnotationRule> {
    let mut compiled = Vec::new();
    for (name, rule) in rules.0 {
        let rule_path = format!("{path}annotations.{name}");
        let rule_pointer = format!("{pointer}/annotations/{}", escape_pointer_token(&name));
        let Some(Object(rule)) = errors.read(rule, &rule_path) else {
            continue;
        };
        let Some(hint) = Hint::ALL.into_iter().find(|hint| hint.name() == name) else {
            errors.push(ConfigError::new(
                &rule_path,
                "not a tool annotation (readOnlyHint, destructiveHint, idempotentHint, openWorldHint)",
            ));
            continue;
        };
        let action = errors.read_optional(rule.action, &format!("{rule_path}.action"));
        if action == Some(Action::Allow) {
            errors.push(ConfigError::new(
                format!("{rule_path}.action"),
                "annotations come from the server and are hints: they can only deny or limit, never allow",
            ));
            continue;
        }
        let reason = errors.read_optional(rule.reason, &format!("{rule_path}.reason"));
        let limits = compile_limits(
            rule.limits,
            &format!("{rule_path}.limits"),
            &format!("{rule_pointer}/limits"),
            windows,
            errors,
        );
        if action.is_none() && limits.is_empty() {
            errors.push(ConfigError::new(
                &rule_path,
                "an annotation rule needs \"action\": \"deny\" or limits",
            ));
            continue;
        }
        compiled.push(AnnotationRule {
            hint,
            is: rule.is.unwrap_or(true),
            deny: action == Some(Action::Deny),
            reason,
            pointer: rule_pointer,
            limits,
        });
    }
    compiled
}

fn compile_methods(
    document: Option<UniqueMap<Action>>,
    path: &str,
    pointer: &str,
    errors: &mut Errors,
) -> Methods {
    let mut methods = Methods::default();
    for (method, action) in document.map(|map| map.0).unwrap_or_default() {
        let entry = (
            action,
            format!("{pointer}/methods/{}", escape_pointer_token(&method)),
        );
        if method == "other" {
            methods.other = Some(entry);
        } else if method.trim() != method || method.chars().any(char::is_control) {
            errors.push(ConfigError::new(
                format!("{path}methods.{method}"),
                "not a method name",
            ));
        } else {
            methods.named.insert(method, entry);
        }
    }
    methods
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

/// `hide` entries: a tool name, `*` (every tool), or `tool:`, `prompt:`,
/// `resource:` followed by a name, URI or pattern.
fn compile_hide(names: &[NonEmptyString], path: &str, pointer: &str, errors: &mut Errors) -> Hide {
    let mut hide = Hide {
        pointer: pointer.to_string(),
        written: names.iter().map(|name| name.0.clone()).collect(),
        ..Hide::default()
    };
    for (index, NonEmptyString(entry)) in names.iter().enumerate() {
        let (kind, name) = match entry.split_once(':') {
            Some((prefix, rest)) => match Kind::from_prefix(prefix) {
                Some(kind) => (kind, rest),
                None => (Kind::Tool, entry.as_str()),
            },
            None => (Kind::Tool, entry.as_str()),
        };
        let name = if kind == Kind::Resource {
            match uri::normalize(name) {
                Ok(name) => name,
                Err(error) => {
                    errors.push(ConfigError::new(
                        format!("{path}[{index}]"),
                        format!("not a URI the gate can match: it has {error}"),
                    ));
                    continue;
                }
            }
        } else {
            name.to_string()
        };
        match Glob::new(&name) {
            Some(glob) => hide.patterns.entry(kind).or_default().push(glob),
            None => {
                hide.names.entry(kind).or_default().insert(name);
            }
        }
    }
    hide
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
