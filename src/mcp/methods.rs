//! Every client-to-server JSON-RPC method the gate knows, at MCP 2025-11-25
//! and 2026-07-28, and how the gate handles each: the one table that the
//! gate, `methods.other` and the README's method table follow.

use crate::target::Kind;

/// How the gate handles a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Nothing to decide beyond `methods`: forwarded.
    Pass,
    /// Decided like `tools/call` against the rules of this kind (rules,
    /// argument rules, limits, audit, metrics).
    Use(Kind),
    /// A listing: its answer is filtered for the caller.
    List,
    /// `completion/complete`: refused as its `ref` (a prompt or a resource
    /// template) would be.
    Complete,
    /// `resources/subscribe`: the URI is checked like `resources/read`
    /// (nothing counted).
    Subscribe,
    /// `subscriptions/listen`: every URI subscribed is checked; tasks named
    /// must be the caller's.
    Listen,
    /// A request about one task (`params.taskId`): only the grant that
    /// created the task may make it.
    Task,
    /// `tasks/list`: the answer keeps only the caller's tasks.
    TaskList,
}

/// A method and the revisions that have it.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub name: &'static str,
    /// In MCP 2025-11-25 (and earlier revisions with sessions).
    pub legacy: bool,
    /// In MCP 2026-07-28 (core or the tasks extension).
    pub current: bool,
    pub handling: Handling,
}

const fn method(name: &'static str, legacy: bool, current: bool, handling: Handling) -> Method {
    Method {
        name,
        legacy,
        current,
        handling,
    }
}

pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";
pub const PROMPTS_GET: &str = "prompts/get";
pub const RESOURCES_READ: &str = "resources/read";

/// Every client-to-server method, requests and notifications.
pub const KNOWN: &[Method] = &[
    method("initialize", true, false, Handling::Pass),
    method("ping", true, false, Handling::Pass),
    method("server/discover", false, true, Handling::Pass),
    method(TOOLS_LIST, true, true, Handling::List),
    method(TOOLS_CALL, true, true, Handling::Use(Kind::Tool)),
    method("prompts/list", true, true, Handling::List),
    method(PROMPTS_GET, true, true, Handling::Use(Kind::Prompt)),
    method("resources/list", true, true, Handling::List),
    method("resources/templates/list", true, true, Handling::List),
    method(RESOURCES_READ, true, true, Handling::Use(Kind::Resource)),
    method("resources/subscribe", true, false, Handling::Subscribe),
    method("resources/unsubscribe", true, false, Handling::Pass),
    method("subscriptions/listen", false, true, Handling::Listen),
    method("completion/complete", true, true, Handling::Complete),
    method("logging/setLevel", true, false, Handling::Pass),
    method("tasks/get", true, true, Handling::Task),
    method("tasks/result", true, false, Handling::Task),
    method("tasks/cancel", true, true, Handling::Task),
    method("tasks/update", false, true, Handling::Task),
    method("tasks/list", true, false, Handling::TaskList),
    method("notifications/initialized", true, false, Handling::Pass),
    method("notifications/cancelled", true, true, Handling::Pass),
    method("notifications/progress", true, false, Handling::Pass),
    method(
        "notifications/roots/list_changed",
        true,
        false,
        Handling::Pass,
    ),
    method("notifications/tasks/status", true, false, Handling::Pass),
];

/// The method, if the gate knows it.
pub fn lookup(name: &str) -> Option<&'static Method> {
    KNOWN.iter().find(|method| method.name == name)
}

pub fn is_known(name: &str) -> bool {
    lookup(name).is_some()
}

/// How the gate handles `name` (methods it does not know pass, subject to
/// `methods.other`).
pub fn handling(name: &str) -> Handling {
    lookup(name).map_or(Handling::Pass, |method| method.handling)
}

/// Methods whose `Mcp-Name` header mirrors `params.name`.
pub const NAMED_BY_NAME: [&str; 2] = [TOOLS_CALL, PROMPTS_GET];
/// Methods whose `Mcp-Name` header mirrors `params.uri`.
pub const NAMED_BY_URI: [&str; 3] = [
    RESOURCES_READ,
    "resources/subscribe",
    "resources/unsubscribe",
];
/// Methods whose `Mcp-Name` header mirrors `params.taskId` (tasks extension).
pub const NAMED_BY_TASK_ID: [&str; 3] = ["tasks/get", "tasks/update", "tasks/cancel"];
