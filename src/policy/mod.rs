//! The policy: read from JSON ([`document`]), validated and compiled once at
//! configuration time into [`Policy`], which the decision engine reads on every
//! request without further checks.

pub mod document;
mod error;
pub(crate) mod glob;
mod identity;
pub mod limits;
#[cfg(not(target_arch = "wasm32"))]
mod lint;

use crate::lookup::{HashMap, HashSet};
use std::sync::Arc;

use crate::arguments::ArgumentRules;
use crate::mcp;
use crate::target::Kind;
use crate::uri;

pub use document::{Action, CounterStore, DenyAs, FailureMode, ListMode, Mode, RuleAction, Scope};
use document::{
    AllToolsDocument, ApprovalDocument, ApprovalServiceDocument, Checked, GrantDocument,
    InvokesDocument, LimitDocument, NonEmptyString, Object, PolicyDocument, PositiveInteger,
    PromptRuleDocument, RateLimitDocument, ResourceRuleDocument, ToolRuleDocument, UniqueMap,
};
pub(crate) use error::Errors;
pub use error::{index_of_line_column, line_column_of_index, ConfigError, ConfigErrors, ROOT};
pub use glob::{fold_case, Glob};
pub use identity::{sha256_hex, Identity, IdentityError};
use limits::{compile_limits, compile_rate_limit, Counters};
pub use limits::{
    ArgumentPath, Cost, Limit, LimitKind, DEFAULT_LEASE_SECONDS, MAX_CONCURRENT, MAX_LEASE_SECONDS,
};

/// Bodies above this are refused unless the policy sets `max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The largest `max_body_bytes` a policy may set (1 GiB).
pub const MAX_BODY_BYTES_LIMIT: u64 = 1 << 30;

/// Slots in each counter's table unless the policy sets `max_callers_per_counter`.
pub const DEFAULT_MAX_CALLERS_PER_COUNTER: u64 = 65_536;

/// Rate-limit domain of global limits unless `rate_limit_service.domain` says otherwise.
pub const DEFAULT_RATE_LIMIT_DOMAIN: &str = "mcp-policy";
/// How long a decision waits for the rate-limit service unless `timeout_ms` says otherwise.
pub const DEFAULT_RATE_LIMIT_TIMEOUT_MS: u64 = 50;

/// How long an approval's states last unless `approval.ttl_seconds` says otherwise.
pub const DEFAULT_APPROVAL_TTL_SECONDS: u64 = 900;
/// Longest `approval.ttl_seconds`: a day (the approval service's default
/// `--max-ttl-seconds`).
pub const MAX_APPROVAL_TTL_SECONDS: u64 = 86_400;
/// Longest approval reason (the approval service's bound).
pub const MAX_APPROVAL_REASON_BYTES: usize = 2048;
/// How long a call waits for the approval service unless `timeout_ms` says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT_MS: u64 = 200;

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
    /// Where calls that need a person's approval are checked (set exactly
    /// when some rule asks for approval).
    pub approval_service: Option<ApprovalService>,
    /// The policy revision: `sha256:` and the hex SHA-256 of the document's
    /// canonical JSON. Approvals are bound to it, so a changed policy needs
    /// new approvals.
    pub revision: String,
    /// The policy for callers without a grant entry or a role.
    base: View,
    /// Grants with an entry of their own, each layered over its role from
    /// `grant_roles` (or the top level).
    grants: HashMap<String, View>,
    /// Roles: each layered over the top level.
    roles: HashMap<String, View>,
    /// Grant → role (`grant_roles`).
    grant_roles: HashMap<String, String>,
    /// Whether some caller's listings are rewritten: then every caller's
    /// are read, and marked private (`cacheScope`), so that a shared cache
    /// never serves one caller's view to another.
    listings_vary: bool,
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

/// The values each hint was listed with for the tools a call may reach:
/// the tool named, and the tools its name is a letter-case variant of (a
/// server that matches names loosely would run one of them). Bit
/// `hint.index()` of each mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListedHints {
    with_true: u8,
    with_false: u8,
}

impl ListedHints {
    /// Adds one listed tool's hints.
    pub fn add(&mut self, hints: Hints) {
        for hint in Hint::ALL {
            match hints.get(hint) {
                Some(true) => self.with_true |= 1 << hint.index(),
                Some(false) => self.with_false |= 1 << hint.index(),
                None => {}
            }
        }
    }

    /// Adds the hints of other tools.
    pub fn merge(&mut self, other: ListedHints) {
        self.with_true |= other.with_true;
        self.with_false |= other.with_false;
    }

    /// Whether some tool the call may reach was listed with `hint: is`.
    pub fn has(self, hint: Hint, is: bool) -> bool {
        let mask = if is { self.with_true } else { self.with_false };
        mask & (1 << hint.index()) != 0
    }

    /// The two masks as stored: `[with_true, with_false]`.
    pub fn to_bytes(self) -> [u8; 2] {
        [self.with_true, self.with_false]
    }

    pub fn from_bytes(bytes: [u8; 2]) -> ListedHints {
        ListedHints {
            with_true: bytes[0],
            with_false: bytes[1],
        }
    }
}

/// A stricter rule for tools whose listed annotations match.
#[derive(Debug, Clone)]
pub struct AnnotationRule {
    pub hint: Hint,
    pub is: bool,
    pub deny: bool,
    pub reason: Option<String>,
    pub pointer: String,
    pub limits: Vec<Limit>,
}

/// What a name differing only in letter case would be taken for
/// ([`View::case_variant`]).
#[derive(Debug, Clone, Copy)]
pub enum CaseVariant<'a> {
    /// A name the view names exactly (a rule's key or a hidden name).
    Named(&'a str),
    /// A `hide` pattern: the pointer of that `hide`.
    Hidden(&'a str),
    /// A rule's pattern, and its rule.
    Pattern(&'a str, &'a Rule),
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
    /// `names` with letter case folded ([`glob::fold_case`]).
    folded: HashMap<Kind, HashSet<String>>,
    patterns: HashMap<Kind, Vec<Glob>>,
    pointer: String,
    /// The entries as written (for `explain`, native only).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    written: Vec<String>,
}

impl Hide {
    /// The `hide` pattern that hides `name` of `kind`, if one does.
    fn hiding_pattern(&self, kind: Kind, name: &str) -> Option<&str> {
        self.patterns
            .get(&kind)?
            .iter()
            .find(|glob| glob.matches(name))
            .map(Glob::as_str)
    }

    fn hides(&self, kind: Kind, name: &str) -> bool {
        self.names
            .get(&kind)
            .is_some_and(|names| names.contains(name))
            || self.hiding_pattern(kind, name).is_some()
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
    /// Every entry, sorted: the method (`other` for unknown ones), its
    /// action and pointer. Native only, for `mcp-policy explain`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn entries(&self) -> Vec<(&str, Action, &str)> {
        let mut entries: Vec<(&str, Action, &str)> = self
            .named
            .iter()
            .map(|(method, (action, pointer))| (method.as_str(), *action, pointer.as_str()))
            .chain(
                self.other
                    .iter()
                    .map(|(action, pointer)| ("other", *action, pointer.as_str())),
            )
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries
    }

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
    /// `"action": "approve"` or `approve_if`: uses wait for a person's approval.
    pub approval: Option<Approval>,
}

/// A rule's approval: when a use needs one, and how it is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// `true`: every use (`"action": "approve"`); `false`: the uses whose
    /// arguments match `approve_if` (in the rule's `arguments`).
    pub always: bool,
    /// How long each state of an approval lasts (pending, approved, denied).
    pub ttl_seconds: u64,
    /// Shown to the approver and to the agent.
    pub reason: Option<String>,
    /// The caller may not approve its own call.
    pub separate_approver: bool,
}

impl Rule {
    /// If this use needs approval: the pointer of what asks (the rule for
    /// `"action": "approve"`, else the `approve_if` operator that matched).
    pub fn approval_needed(&self, arguments: Option<&serde_json::Value>) -> Option<&str> {
        let approval = self.approval.as_ref()?;
        if approval.always {
            Some(&self.pointer)
        } else {
            self.arguments.approval_condition(arguments)
        }
    }
}

/// The approval service (`approval_service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalService {
    pub cluster: String,
    /// Without a trailing slash; `None`: the service's own links.
    pub public_url: Option<String>,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
}

/// The compiled rule of a tool (a [`Rule`]).
pub type ToolRule = Rule;

/// A meta-tool's inner call: argument paths (without `args.`) of its name and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invokes {
    pub name: Vec<String>,
    pub arguments: Option<Vec<String>>,
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
    /// Whether some caller's listings are rewritten (see the field).
    pub fn listings_vary(&self) -> bool {
        self.listings_vary
    }

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
        let bytes = without_byte_order_mark(bytes);
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let document = <Object<PolicyDocument> as serde::Deserialize>::deserialize(&mut reader)
            .map_err(|err| ConfigError::from_reader(&err, bytes));
        #[cfg(test)]
        error::check_document_path(bytes, document.as_ref().err());
        let document = document?;
        // Trailing garbage after the document is as wrong as a bad field.
        reader.end().map_err(|err| {
            let mut error = ConfigError::new(ROOT, "trailing characters after the policy document");
            error.line = Some(err.line());
            error.column = Some(err.column());
            error
        })?;
        let mut policy = compile(document.0).map_err(|errors| errors.locate(bytes))?;
        policy.revision = revision_of(bytes);
        Ok(policy)
    }

    /// The policy as `grant` sees it when no claim names its role.
    pub fn view(&self, grant: &str) -> &View {
        self.view_as(grant, None)
    }

    /// The policy as a caller sees it. Precedence: the grant's own entry
    /// (layered over its `grant_roles` role, else over the top level); else
    /// its role (`grant_roles`, else `claimed` from the JWT's `role_claim`);
    /// else the top level.
    pub fn view_as(&self, grant: &str, claimed: Option<&str>) -> &View {
        if let Some(view) = self.grants.get(grant) {
            return view;
        }
        self.role_of(grant, claimed)
            .and_then(|role| self.roles.get(role))
            .unwrap_or(&self.base)
    }

    /// The caller's role: `grant_roles` names it, else the role claim does
    /// (a claimed role the policy does not define is no role).
    pub fn role_of<'a>(&'a self, grant: &str, claimed: Option<&'a str>) -> Option<&'a str> {
        match self.grant_roles.get(grant) {
            Some(role) => Some(role.as_str()),
            None => claimed.filter(|role| self.roles.contains_key(*role)),
        }
    }

    /// The view of a role, if the policy defines it.
    pub fn role(&self, role: &str) -> Option<&View> {
        self.roles.get(role)
    }

    /// Grants `grant_roles` names, in no particular order.
    pub fn grant_roles_keys(&self) -> impl Iterator<Item = &str> {
        self.grant_roles.keys().map(String::as_str)
    }

    /// Role names, in no particular order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
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

    /// The top level, every grant's view and every role's: each place a
    /// rule can be written.
    fn every_view(&self) -> impl Iterator<Item = &View> {
        std::iter::once(&self.base)
            .chain(self.grants.values())
            .chain(self.roles.values())
    }

    /// Every name of `kind` the policy names exactly (rules and `hide`), once each.
    pub fn named(&self, kind: Kind) -> Vec<String> {
        let mut names: Vec<String> = self
            .every_view()
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
        crate::sort::sort_unique(&mut names);
        names
    }

    /// Every pattern key of `kind`'s rules and `hide` patterns of `kind`,
    /// in any grant or role, once each.
    pub fn patterns(&self, kind: Kind) -> Vec<String> {
        let mut patterns: Vec<String> = self
            .every_view()
            .filter_map(|view| view.rule_set(kind))
            .flat_map(|set| {
                set.patterns
                    .iter()
                    .map(|(glob, _)| glob.as_str().to_string())
            })
            .chain(self.every_view().flat_map(|view| {
                view.hide
                    .patterns
                    .get(&kind)
                    .into_iter()
                    .flatten()
                    .map(|glob| glob.as_str().to_string())
            }))
            .collect();
        crate::sort::sort_unique(&mut patterns);
        patterns
    }

    /// Every method a `methods` map names (not `other`), in any grant or
    /// role, once each.
    pub fn named_methods(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .every_view()
            .flat_map(|view| view.methods.named.keys().cloned())
            .collect();
        crate::sort::sort_unique(&mut names);
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

    /// If `name` of `kind` is hidden as written or in another letter case
    /// (which a rule for the exact name does not reopen): the pointer of
    /// the `hide` that hides it.
    pub fn hidden_in_any_case(&self, kind: Kind, name: &str) -> Option<&str> {
        self.hidden_as(kind, name)
            .or(match self.case_variant(kind, name) {
                Some(CaseVariant::Hidden(pointer)) => Some(pointer),
                _ => None,
            })
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

    /// What `name` of `kind` (tools and prompts) would be taken for by a
    /// server that matches names loosely, when this view governs that and
    /// not `name` itself: a name it names exactly, or a pattern (`hide` or
    /// rule) that matches only when letter case is ignored.
    pub fn case_variant(&self, kind: Kind, name: &str) -> Option<CaseVariant<'_>> {
        let set = match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            // A URI's path in another letter case names the same file on
            // case-insensitive file systems and servers.
            Kind::Resource => &self.resources,
            Kind::Task => return None,
        };
        if self
            .hide
            .names
            .get(&kind)
            .is_some_and(|names| names.contains(name))
        {
            return None;
        }
        if set.exact.contains_key(name) {
            // A rule for the exact name does not reopen a name hidden in
            // another letter case: hidden comes first. (Nothing to fold
            // when this kind hides nothing: the common case.)
            let folded_names = self
                .hide
                .folded
                .get(&kind)
                .filter(|names| !names.is_empty());
            let globs = self
                .hide
                .patterns
                .get(&kind)
                .filter(|globs| !globs.is_empty());
            if folded_names.is_none() && globs.is_none() {
                return None;
            }
            let lowered = glob::fold_case(name);
            let hidden = folded_names.is_some_and(|names| names.contains(lowered.as_ref()))
                || globs.is_some_and(|globs| {
                    globs
                        .iter()
                        .any(|glob| glob.matches_only_ignoring_case(name, &lowered))
                });
            return hidden.then_some(CaseVariant::Hidden(&self.hide.pointer));
        }
        let lowered = glob::fold_case(name);
        if let Some(named) = set
            .folded
            .get(lowered.as_ref())
            .filter(|named| *named != name)
        {
            return Some(CaseVariant::Named(named));
        }
        // A pattern the name matches only ignoring case: hidden first, as
        // a hidden name must look missing.
        let loose = |glob: &&Glob| glob.matches_only_ignoring_case(name, &lowered);
        if self
            .hide
            .patterns
            .get(&kind)
            .is_some_and(|globs| globs.iter().any(|glob| loose(&glob)))
        {
            return Some(CaseVariant::Hidden(&self.hide.pointer));
        }
        set.patterns
            .iter()
            .find(|(glob, _)| loose(&glob))
            .map(|(glob, rule)| CaseVariant::Pattern(glob.as_str(), rule))
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
        // `…/secret.txt/`, `…?v=2`, `…#top`: read as `…/secret.txt` by many
        // servers, and refused with it (hidden, or a rule's deny); so not
        // listed where it would not be.
        if kind == Kind::Resource {
            if let Some(bare) = uri::bare(name) {
                match crate::decision::check_target(self, kind, &bare) {
                    Err(crate::decision::Decision::Hidden { .. }) => return false,
                    Err(crate::decision::Decision::Deny { rule, .. })
                        if self.list == ListMode::HideDenied
                            && rule != self.default_for(kind).1 =>
                    {
                        return false
                    }
                    _ => {}
                }
            }
        }
        // A name a call of which is refused as hidden (or, hiding denied
        // names, refused at all) for its letter case is not listed either.
        let variant = self.case_variant(kind, name);
        let hidden_variant = match variant {
            Some(CaseVariant::Hidden(_)) => true,
            Some(CaseVariant::Named(named)) => self.hidden_as(kind, named).is_some(),
            Some(CaseVariant::Pattern(..)) | None => false,
        };
        match self.list {
            ListMode::ShowDenied => self.hidden_as(kind, name).is_none() && !hidden_variant,
            ListMode::HideDenied => !self.never_allowed(kind, name) && variant.is_none(),
        }
    }

    /// The dotted path of the first field (in pointer order) of a rule of
    /// this view that asks for approval, e.g. `tools.asyncExecuteCode.approve_if`.
    fn first_approval(&self) -> Option<String> {
        Kind::RULED
            .iter()
            .filter_map(|kind| self.rule_set(*kind))
            .flat_map(|set| {
                set.exact
                    .values()
                    .chain(set.patterns.iter().map(|(_, rule)| rule))
            })
            .filter_map(|rule| {
                let approval = rule.approval.as_ref()?;
                let field = if approval.always {
                    "action"
                } else {
                    "approve_if"
                };
                Some(format!("{}.{field}", dotted_path(&rule.pointer)))
            })
            .min()
    }

    /// Whether any rule of this view asks for approval.
    pub fn asks_for_approval(&self) -> bool {
        self.first_approval().is_some()
    }

    /// What metrics label a use of `name` of `kind` with when the policy
    /// does not name it exactly: the `hide` pattern that hides it, else the
    /// rule pattern that decides it.
    pub fn label_key(&self, kind: Kind, name: &str) -> Option<&str> {
        self.hide
            .hiding_pattern(kind, name)
            .or_else(|| self.deciding_key(kind, name).0)
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

/// The policy revision of a document: `sha256:` and the hex SHA-256 of its
/// canonical JSON (so whitespace and member order do not change it) without
/// the top-level `$schema` (an editor's reference the filter ignores), or of
/// its bytes if it has no canonical form.
pub fn revision_of(bytes: &[u8]) -> String {
    use crate::approval::canonical::{self, Json};
    use sha2::{Digest as _, Sha256};
    let bytes = without_byte_order_mark(bytes);
    let canonical = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| canonical::parse(text).ok())
        .map(|mut document| {
            if let Json::Object(members) = &mut document {
                members.retain(|(name, _)| name != "$schema");
            }
            document.canonical()
        });
    let hash = match canonical {
        Some(text) => Sha256::digest(text.as_bytes()),
        None => Sha256::digest(bytes),
    };
    format!("sha256:{}", crate::approval::canonical::hex(&hash))
}

/// A policy file some editors began with a UTF-8 byte order mark: read
/// without it (RFC 8259 §8.1 lets a parser ignore it), here and in the tools.
pub fn without_byte_order_mark(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Pointer reported when the top-level default decides.
pub const DEFAULT_POINTER: &str = "/default";

fn compile(document: PolicyDocument) -> Result<Policy, ConfigErrors> {
    let mut errors = Errors::default();
    let mut windows = Counters::default();
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
        roles,
        grant_roles,
        failure_mode,
        max_json_depth,
        max_callers_per_counter,
        hold_request_headers,
        rate_limit_service,
        approval_service,
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

    let role_labels: HashSet<String> = roles.0.keys().cloned().collect();
    let mut compiled_roles = HashMap::with_capacity_and_hasher(roles.0.len(), Default::default());
    for (label, role) in roles.0 {
        let Some(Object(role)) = errors.read(role, &format!("roles.{label}")) else {
            continue;
        };
        let view = compile_grant(&base, "roles", &label, role, &mut windows, &mut errors);
        compiled_roles.insert(label, view);
    }
    // Roles that could not be read are still roles: naming them is no error of its own.
    let mut grant_roles_map = HashMap::default();
    for (grant, role) in errors
        .read_optional(grant_roles, "grant_roles")
        .map(|map| map.0)
        .unwrap_or_default()
    {
        if !role_labels.contains(&role.0) {
            errors.push(ConfigError::new(
                format!("grant_roles.{grant}"),
                format!("no role {:?} in `roles`", role.0),
            ));
            continue;
        }
        grant_roles_map.insert(grant, role.0);
    }

    let mut compiled_grants = HashMap::with_capacity_and_hasher(grants.0.len(), Default::default());
    for (label, grant) in grants.0 {
        let Some(Object(grant)) = errors.read(grant, &format!("grants.{label}")) else {
            continue;
        };
        let over = grant_roles_map
            .get(&label)
            .and_then(|role| compiled_roles.get(role))
            .unwrap_or(&base);
        let view = compile_grant(over, "grants", &label, grant, &mut windows, &mut errors);
        compiled_grants.insert(label, view);
    }

    let identity = errors
        .read_optional(identity, "identity")
        .map(|identity| identity.0);
    let identity = Identity::compile(identity, &mut errors);
    if let Identity::JwtClaim {
        role_claim: Some(_),
        ..
    } = &identity
    {
        if role_labels.is_empty() {
            errors.push(ConfigError::new(
                "identity.jwt_claim.role_claim",
                "names the caller's role, but the policy has no `roles`",
            ));
        }
    }
    if let Some(first) = &windows.first_role_scope {
        if role_labels.is_empty() && !errors.any_unread() {
            errors.push(ConfigError::new(
                format!("{first}.scope"),
                "scope \"role\" counts the callers of a role together, but the policy has no `roles`",
            ));
        }
    }

    let max_json_depth = match errors.read_optional(max_json_depth, "max_json_depth") {
        None => mcp::DEFAULT_MAX_DEPTH,
        // Compared before any cast: usize is 32 bits in the module.
        Some(depth) if depth.0 <= mcp::MAX_DEPTH_LIMIT as u64 => depth.0 as usize,
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
            timeout_ms: service_timeout(
                service.timeout_ms,
                DEFAULT_RATE_LIMIT_TIMEOUT_MS,
                "rate_limit_service.timeout_ms",
                &mut errors,
            ),
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

    // A rule with an error is left out, so "no rule asks" is only said of a
    // policy without other errors.
    let nothing_left_out = errors.len() == 0;
    let approval_given = approval_service.is_some();
    let approval_service = errors.read_optional(approval_service, "approval_service");
    let first_approval = std::iter::once(&base)
        .chain(compiled_grants.values())
        .chain(compiled_roles.values())
        .find_map(View::first_approval);
    let approval_service = match (approval_service, first_approval) {
        (Some(Object(service)), Some(_)) => {
            compile_approval_service(service, "approval_service", &mut errors)
        }
        (_, None) => {
            if approval_given && nothing_left_out {
                errors.push(ConfigError::new(
                    "approval_service",
                    "no rule asks for approval (\"action\": \"approve\" or approve_if); remove approval_service or add such a rule",
                ));
            }
            None
        }
        (None, Some(asked_at)) => {
            if !approval_given {
                errors.push(ConfigError::new(
                    asked_at,
                    "asks for approval: add a top-level approval_service (cluster, public_url, timeout_ms, failure_mode)",
                ));
            }
            None
        }
    };

    let listings_vary = std::iter::once(&base)
        .chain(compiled_grants.values())
        .chain(compiled_roles.values())
        .any(View::filters_listing);
    let policy = Policy {
        listings_vary,
        rate_limit_service,
        approval_service,
        revision: String::new(),
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
        max_body_bytes: match errors.read_optional(max_body_bytes, "max_body_bytes") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(max) if max.0 <= MAX_BODY_BYTES_LIMIT => max.0,
            Some(max) => {
                errors.push(ConfigError::new(
                    "max_body_bytes",
                    format!(
                        "at most {MAX_BODY_BYTES_LIMIT} (1 GiB: the module holds the body in \
                         its 4 GiB of memory, and Envoy's buffer limit, rendered as twice \
                         this, is a 32-bit number), got {}",
                        max.0
                    ),
                ));
                DEFAULT_MAX_BODY_BYTES
            }
        },
        base,
        grants: compiled_grants,
        roles: compiled_roles,
        grant_roles: grant_roles_map,
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
    windows: &mut Counters,
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
    let tool_parts = parts_of(tools);
    let prompt_parts = parts_of(prompts);
    let resource_parts = parts_of(resources);
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
    let tools = compile(Kind::Tool, tool_parts, defaults.tools.clone());
    let prompts = compile(Kind::Prompt, prompt_parts, prompts_default);
    let resources = compile(Kind::Resource, resource_parts, resources_default);
    (tools, prompts, resources)
}

use error::ShapeError;

/// A map of rule documents as the fields of each rule (or the error that
/// kept it from being read).
fn parts_of<D: Into<RuleParts>>(
    rules: UniqueMap<Checked<Object<D>>>,
) -> Vec<(String, Result<RuleParts, ShapeError>)> {
    rules
        .0
        .into_iter()
        .map(|(key, rule)| (key, rule.into_result().map(|Object(rule)| rule.into())))
        .collect()
}

impl From<ToolRuleDocument> for RuleParts {
    fn from(rule: ToolRuleDocument) -> Self {
        RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            rate_limit: rule.rate_limit,
            require: rule.require,
            deny_if: rule.deny_if,
            approve_if: rule.approve_if,
            approval: rule.approval,
            invokes: rule.invokes,
        }
    }
}

impl From<PromptRuleDocument> for RuleParts {
    fn from(rule: PromptRuleDocument) -> Self {
        RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            rate_limit: rule.rate_limit,
            require: rule.require,
            deny_if: rule.deny_if,
            approve_if: rule.approve_if,
            approval: rule.approval,
            invokes: None,
        }
    }
}

impl From<ResourceRuleDocument> for RuleParts {
    fn from(rule: ResourceRuleDocument) -> Self {
        RuleParts {
            action: rule.action,
            reason: rule.reason,
            on_deny: rule.on_deny,
            limits: rule.limits,
            rate_limit: rule.rate_limit,
            require: None,
            deny_if: None,
            approve_if: None,
            approval: rule.approval,
            invokes: None,
        }
    }
}

/// The fields of a rule, whatever its kind.
struct RuleParts {
    action: Option<Checked<RuleAction>>,
    reason: Option<Checked<String>>,
    on_deny: Option<Checked<String>>,
    limits: Vec<Checked<Object<LimitDocument>>>,
    rate_limit: Option<Checked<Object<RateLimitDocument>>>,
    require: Option<crate::arguments::ConditionsDocument>,
    deny_if: Option<crate::arguments::ConditionsDocument>,
    approve_if: Option<crate::arguments::ConditionsDocument>,
    approval: Option<Checked<Object<ApprovalDocument>>>,
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
    windows: &mut Counters,
    errors: &mut Errors,
) -> RuleSet {
    let member = context.member();
    let mut set = inherited.unwrap_or_else(|| RuleSet {
        exact: HashMap::default(),
        patterns: Vec::new(),
        default,
        default_pointer: String::new(),
        folded: HashMap::default(),
    });
    set.default = default;
    set.default_pointer = default_pointer;
    // Where each normalised resource key came from, to refuse two spellings of one URI.
    let mut spelled: HashMap<String, String> = HashMap::default();
    // Patterns written in this fragment (a grant inherits the others).
    let mut new_patterns: HashSet<String> = HashSet::default();
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
        if let Err(too_long) = pattern_length(&key) {
            errors.push(ConfigError::new(&rule_path, too_long));
            continue;
        }
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
    crate::sort::sort_by(&mut set.patterns, |(a, _), (b, _)| {
        (b.literal_len(), a.as_str()) < (a.literal_len(), b.as_str())
    });
    // Only pairs with a pattern this view adds: a grant that adds none
    // checks nothing again.
    let new: Vec<bool> = set
        .patterns
        .iter()
        .map(|(glob, _)| new_patterns.contains(glob.as_str()))
        .collect();
    for (index, (first, _)) in set.patterns.iter().enumerate() {
        for (offset, (second, _)) in set.patterns.iter().enumerate().skip(index + 1) {
            if first.literal_len() != second.literal_len() {
                break;
            }
            if !(new[index] || new[offset]) {
                continue;
            }
            if let Some(name) = first.overlap(second) {
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
    // Two keys a server that ignores letter case takes for one name: which
    // rule decides would depend on the server (and every name a pattern
    // matches is a letter-case variant of the other's): refused. Only pairs
    // with a key this fragment writes.
    // Sorted by the folded key, so that keys folding alike are neighbours
    // (crate::sort: no hash map or standard sort instantiated for this).
    let mut keys: Vec<(std::borrow::Cow<'_, str>, &str)> = set
        .exact
        .keys()
        .map(String::as_str)
        .chain(set.patterns.iter().map(|(glob, _)| glob.as_str()))
        .map(|key| (glob::fold_case(key), key))
        .collect();
    crate::sort::sort_by(&mut keys, |a, b| a < b);
    for pair in keys.windows(2) {
        let [(folded, other), (next, key)] = pair else {
            continue;
        };
        if folded != next {
            continue;
        }
        let (new, first) = match (spelled.get(*key), spelled.get(*other)) {
            (Some(written), _) => (written, *other),
            (None, Some(written)) => (written, *key),
            (None, None) => continue,
        };
        errors.push(ConfigError::new(
            format!("{}{member}.{new}", context.path),
            format!(
                "differs from {first:?} only in letter case: a server that matches names loosely takes one for the other; name it once"
            ),
        ));
    }
    set.folded = set
        .exact
        .keys()
        .chain(context.hide.names.get(&context.kind).into_iter().flatten())
        .map(|name| (glob::fold_case(name).into_owned(), name.clone()))
        .collect();
    set
}

fn compile_rule(
    parts: RuleParts,
    path: &str,
    pointer: &str,
    key: String,
    windows: &mut Counters,
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
    let mut limits = compile_limits(
        parts.limits,
        &format!("{path}.limits"),
        &format!("{pointer}/limits"),
        windows,
        errors,
    );
    limits.extend(compile_rate_limit(
        parts.rate_limit,
        &format!("{path}.rate_limit"),
        &format!("{pointer}/rate_limit"),
        windows,
        errors,
    ));
    let approve_if_written = parts.approve_if.is_some();
    let approve_if_empty = parts
        .approve_if
        .as_ref()
        .is_some_and(|conditions| conditions.0.is_empty());
    let arguments =
        ArgumentRules::compile_into(parts.require, parts.deny_if, path, pointer, errors)
            .with_approve_if(parts.approve_if, path, pointer, errors);
    let invokes = errors
        .read_optional(parts.invokes, &format!("{path}.invokes"))
        .and_then(|Object(invokes)| compile_invokes(invokes, &format!("{path}.invokes"), errors));
    let approval_document = errors
        .read_optional(parts.approval, &format!("{path}.approval"))
        .map(|Object(document)| document);
    let asks = ApprovalAsks {
        always: action == Some(RuleAction::Approve),
        approve_if_written,
        approve_if_empty,
    };
    let approval = compile_approval(
        asks,
        action == Some(RuleAction::Deny),
        approval_document,
        reason.as_deref(),
        path,
        errors,
    );
    Rule {
        action: match action {
            Some(RuleAction::Deny) => Action::Deny,
            Some(RuleAction::Allow | RuleAction::Approve) | None => Action::Allow,
        },
        reason,
        pointer: pointer.to_string(),
        key,
        limits,
        arguments,
        invokes,
        approval,
    }
}

/// How a rule asks for approval, as written.
struct ApprovalAsks {
    /// `"action": "approve"`.
    always: bool,
    approve_if_written: bool,
    approve_if_empty: bool,
}

/// A rule's approval settings, checked; `None` when the rule asks for none
/// (or is wrong: the error is in `errors`).
fn compile_approval(
    asks: ApprovalAsks,
    denies: bool,
    document: Option<ApprovalDocument>,
    rule_reason: Option<&str>,
    path: &str,
    errors: &mut Errors,
) -> Option<Approval> {
    let approval_path = format!("{path}.approval");
    let approve_if_path = format!("{path}.approve_if");
    if denies && (asks.approve_if_written || document.is_some()) {
        let at = if asks.approve_if_written {
            approve_if_path
        } else {
            approval_path
        };
        errors.push(ConfigError::new(
            at,
            "a rule with \"action\": \"deny\" refuses every call; it never asks for approval",
        ));
        return None;
    }
    if asks.always && asks.approve_if_written {
        errors.push(ConfigError::new(
            approve_if_path,
            "\"action\": \"approve\" asks for every call, so approve_if would never decide: use one or the other",
        ));
        return None;
    }
    if asks.approve_if_empty {
        errors.push(ConfigError::new(
            approve_if_path,
            "approve_if needs at least one condition",
        ));
        return None;
    }
    if !asks.always && !asks.approve_if_written {
        if document.is_some() {
            errors.push(ConfigError::new(
                approval_path,
                "approval settings without \"action\": \"approve\" or approve_if: no call would ever ask",
            ));
        }
        return None;
    }
    let document = document.unwrap_or_default();
    let ttl_seconds = match document.ttl_seconds {
        None => DEFAULT_APPROVAL_TTL_SECONDS,
        Some(ttl) if ttl.0 <= MAX_APPROVAL_TTL_SECONDS => ttl.0,
        Some(ttl) => {
            errors.push(ConfigError::new(
                format!("{approval_path}.ttl_seconds"),
                format!(
                    "at most {MAX_APPROVAL_TTL_SECONDS} (a day, the approval service's longest), got {}",
                    ttl.0
                ),
            ));
            return None;
        }
    };
    let (reason, reason_path) = match document.reason {
        Some(reason) => (Some(reason), format!("{approval_path}.reason")),
        None => (rule_reason.map(str::to_string), format!("{path}.reason")),
    };
    if let Some(reason) = &reason {
        let problem = if reason.len() > MAX_APPROVAL_REASON_BYTES {
            Some(format!(
                "an approval's reason is at most {MAX_APPROVAL_REASON_BYTES} bytes (the approval service's bound), got {}",
                reason.len()
            ))
        } else if reason.chars().any(|c| c.is_control() && c != '\n') {
            Some(
                "an approval's reason may span lines but has no other control characters"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::new(reason_path, problem));
            return None;
        }
    }
    Some(Approval {
        always: asks.always,
        ttl_seconds,
        reason: reason.filter(|reason| !reason.is_empty()),
        separate_approver: document.separate_approver.unwrap_or(false),
    })
}

/// The longest a decision may wait for a service: Envoy's calls take a
/// 32-bit count of milliseconds (a larger value would wrap to a short one),
/// and a held request waiting longer than a minute is a stuck one.
pub const MAX_SERVICE_TIMEOUT_MS: u64 = 60_000;

fn service_timeout(
    timeout: Option<PositiveInteger>,
    default: u64,
    path: &str,
    errors: &mut Errors,
) -> u64 {
    match timeout {
        None => default,
        Some(PositiveInteger(ms)) if ms <= MAX_SERVICE_TIMEOUT_MS => ms,
        Some(PositiveInteger(ms)) => {
            errors.push(ConfigError::new(
                path,
                format!("at most {MAX_SERVICE_TIMEOUT_MS} (a minute), got {ms}"),
            ));
            default
        }
    }
}

fn compile_approval_service(
    document: ApprovalServiceDocument,
    path: &str,
    errors: &mut Errors,
) -> Option<ApprovalService> {
    let public_url = match document.public_url {
        Some(NonEmptyString(url)) => {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host = rest.map(|rest| rest.split('/').next().unwrap_or_default());
            let fine = host.is_some_and(|host| !host.is_empty())
                && !url.contains(['?', '#'])
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !fine {
                errors.push(ConfigError::new(
                    format!("{path}.public_url"),
                    format!("an http:// or https:// URL without query or fragment, e.g. \"https://approvals.example.com\" (got {url:?})"),
                ));
                return None;
            }
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };
    Some(ApprovalService {
        cluster: document.cluster.0,
        public_url,
        timeout_ms: service_timeout(
            document.timeout_ms,
            DEFAULT_APPROVAL_TIMEOUT_MS,
            &format!("{path}.timeout_ms"),
            errors,
        ),
        failure_mode: document.failure_mode.unwrap_or_default(),
    })
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
    section: &str,
    label: &str,
    grant: GrantDocument,
    windows: &mut Counters,
    errors: &mut Errors,
) -> View {
    let path = format!("{section}.{label}.");
    let pointer = format!("/{section}/{}", escape_pointer_token(label));
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
    // A method (an annotation rule) the fragment names replaces the one
    // under it for that method (that annotation) whole; the others stay, as
    // its tools, prompts and resources do: a grant that allows one more
    // method keeps the top level's `"other": "deny"`.
    let methods = match errors.read_optional(grant.methods, &format!("{path}methods")) {
        Some(methods) => {
            let mut merged = compile_methods(Some(methods), &path, &pointer, errors);
            for (method, entry) in &base.methods.named {
                if !merged.named.contains_key(method) {
                    merged.named.insert(method.clone(), entry.clone());
                }
            }
            if merged.other.is_none() {
                merged.other.clone_from(&base.methods.other);
            }
            Arc::new(merged)
        }
        None => Arc::clone(&base.methods),
    };
    let annotations = match errors.read_optional(grant.annotations, &format!("{path}annotations")) {
        Some(rules) => {
            let mut merged = compile_annotations(rules, &path, &pointer, windows, errors);
            let own: Vec<Hint> = merged.iter().map(|rule| rule.hint).collect();
            merged.extend(
                base.annotations
                    .iter()
                    .filter(|rule| !own.contains(&rule.hint))
                    .cloned(),
            );
            Arc::new(merged)
        }
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
    windows: &mut Counters,
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
        // Limits written but refused have their own errors already.
        let limits_written = !rule.limits.is_empty();
        let limits = compile_limits(
            rule.limits,
            &format!("{rule_path}.limits"),
            &format!("{rule_pointer}/limits"),
            windows,
            errors,
        );
        if action.is_none() && limits.is_empty() {
            if limits_written {
                continue;
            }
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
    windows: &mut Counters,
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
        if name.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}[{index}]"),
                format!(
                    "{entry:?} names no {}: the name after the prefix is empty",
                    kind.as_str()
                ),
            ));
            continue;
        }
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
        if let Err(too_long) = pattern_length(&name) {
            errors.push(ConfigError::new(format!("{path}[{index}]"), too_long));
            continue;
        }
        match Glob::new(&name) {
            Some(glob) => hide.patterns.entry(kind).or_default().push(glob),
            None => {
                let folded = glob::fold_case(&name).into_owned();
                hide.folded.entry(kind).or_default().insert(folded);
                hide.names.entry(kind).or_default().insert(name);
            }
        }
    }
    hide
}

/// A pattern (a key with `*`) of at most [`glob::MAX_PATTERN_CHARS`].
fn pattern_length(key: &str) -> Result<(), String> {
    let length = key.chars().count();
    if key.contains('*') && length > glob::MAX_PATTERN_CHARS {
        return Err(format!(
            "a pattern is at most {} characters, this one has {length}",
            glob::MAX_PATTERN_CHARS
        ));
    }
    Ok(())
}

/// A rule's JSON pointer as the dotted path errors name (`/grants/ci/tools/a~1b`
/// → `grants.ci.tools.a/b`).
fn dotted_path(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
