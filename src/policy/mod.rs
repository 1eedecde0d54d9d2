//! The policy: read from JSON ([`document`]), validated and compiled once at
//! configuration time into [`Policy`], which the decision engine reads on every
//! request without further checks.

pub mod document;
mod error;

use std::collections::HashMap;

pub use document::{Action, Scope};
use document::{LimitDocument, Object, PolicyDocument};
pub use error::{ConfigError, ROOT};

/// Bodies above this are refused unless the policy sets `max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The grant of a caller whose request names none.
pub const ANONYMOUS_GRANT: &str = "anonymous";

/// A validated policy, ready to decide requests.
#[derive(Debug)]
pub struct Policy {
    pub default: Action,
    /// Lowercase request header naming the grant; `None` makes every caller anonymous.
    pub identity_header: Option<String>,
    pub max_body_bytes: u64,
    tools: HashMap<String, ToolRule>,
    all_tools_limits: Vec<Limit>,
}

/// The compiled rule for one tool named in the policy.
#[derive(Debug)]
pub struct ToolRule {
    pub action: Action,
    pub reason: Option<String>,
    /// JSON pointer of the rule in the document, e.g. `/tools/deleteWorkspace`.
    pub pointer: String,
    pub limits: Vec<Limit>,
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
}

/// Pointer reported when the default decides.
pub const DEFAULT_POINTER: &str = "/default";

impl Policy {
    /// Reads and validates a policy document.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, ConfigError> {
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
        compile(document.0)
    }

    /// The rule for a tool the policy names, by exact name.
    pub fn tool(&self, name: &str) -> Option<&ToolRule> {
        self.tools.get(name)
    }

    /// Limits every tool call counts against, besides the tool's own.
    pub fn all_tools_limits(&self) -> &[Limit] {
        &self.all_tools_limits
    }

    /// Names of the tools the policy lists, in no particular order.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}

fn compile(document: PolicyDocument) -> Result<Policy, ConfigError> {
    let mut windows = CounterWindows::default();

    let all_tools_limits = match document.all_tools {
        Some(all_tools) => compile_limits(
            all_tools.0.limits,
            "all_tools.limits",
            "/all_tools/limits",
            &mut windows,
        )?,
        None => Vec::new(),
    };

    let mut tools = HashMap::with_capacity(document.tools.0.len());
    for (name, Object(rule)) in document.tools.0 {
        let pointer = format!("/tools/{}", escape_pointer_token(&name));
        let limits = compile_limits(
            rule.limits,
            &format!("tools.{name}.limits"),
            &format!("{pointer}/limits"),
            &mut windows,
        )?;
        let compiled = ToolRule {
            action: rule.action.unwrap_or(Action::Allow),
            reason: rule.reason,
            pointer,
            limits,
        };
        tools.insert(name, compiled);
    }

    Ok(Policy {
        default: document.default,
        identity_header: document.identity.map(|identity| identity.0.header.0),
        max_body_bytes: document
            .max_body_bytes
            .map_or(DEFAULT_MAX_BODY_BYTES, |max| max.0),
        tools,
        all_tools_limits,
    })
}

/// Counter names are one namespace; a counter keeps one window wherever it is
/// named, because its stored value holds a single window.
#[derive(Default)]
struct CounterWindows(HashMap<String, (u64, String)>);

impl CounterWindows {
    fn check(&mut self, counter: &str, window: u64, path: &str) -> Result<(), ConfigError> {
        match self.0.get(counter) {
            Some((first_window, first_path)) if *first_window != window => Err(ConfigError::new(
                format!("{path}.window"),
                format!(
                    "counter {counter:?} has window {window}s here but {first_window}s at {first_path}; a counter has one window"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.0
                    .insert(counter.to_string(), (window, path.to_string()));
                Ok(())
            }
        }
    }
}

fn compile_limits(
    limits: Vec<Object<LimitDocument>>,
    path: &str,
    pointer: &str,
    windows: &mut CounterWindows,
) -> Result<Vec<Limit>, ConfigError> {
    limits
        .into_iter()
        .enumerate()
        .map(|(index, Object(limit))| {
            let limit_path = format!("{path}[{index}]");
            windows.check(&limit.counter.0, limit.window.0, &limit_path)?;
            Ok(Limit {
                counter: limit.counter.0,
                window_seconds: limit.window.0,
                max: limit.max.0,
                scope: limit.scope,
                pointer: format!("{pointer}/{index}"),
            })
        })
        .collect()
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
