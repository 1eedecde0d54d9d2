//! What a decision is about: one enum shared by rules, decisions, listings,
//! audit lines and metrics, so that a new kind of thing to govern is a new
//! variant here rather than a new file in every layer.

use std::borrow::Cow;

use serde::Serialize;

/// The kinds of things the policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A tool, named by `params.name` of `tools/call`.
    Tool,
    /// A prompt, named by `params.name` of `prompts/get`.
    Prompt,
    /// A resource, named by its (normalised) URI: `params.uri` of `resources/read`.
    Resource,
    /// A task, named by its id (`params.taskId`).
    Task,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::Task];
    /// The kinds the policy has rules for, by name or URI.
    pub const RULED: [Kind; 3] = [Kind::Tool, Kind::Prompt, Kind::Resource];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
            Kind::Task => "task",
        }
    }

    /// With a capital, for messages (`Tool 'x' denied by policy`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Tool => "Tool",
            Kind::Prompt => "Prompt",
            Kind::Resource => "Resource",
            Kind::Task => "Task",
        }
    }

    /// Where a listing answer holds this kind's entries: the member of
    /// `result` and the member of an entry that names it.
    pub fn listing_members(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Tool => &[("tools", "name")],
            Kind::Prompt => &[("prompts", "name")],
            Kind::Resource => &[("resources", "uri"), ("resourceTemplates", "uriTemplate")],
            Kind::Task => &[("tasks", "taskId")],
        }
    }

    /// The `hide` prefix naming this kind (`prompt:summarize`).
    pub fn from_prefix(prefix: &str) -> Option<Kind> {
        match prefix {
            "tool" => Some(Kind::Tool),
            "prompt" => Some(Kind::Prompt),
            "resource" => Some(Kind::Resource),
            _ => None,
        }
    }
}

/// One thing a request addresses: its kind and its name (or URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: Kind,
    pub name: Cow<'a, str>,
}

impl<'a> Target<'a> {
    pub fn tool(name: impl Into<Cow<'a, str>>) -> Self {
        Target {
            kind: Kind::Tool,
            name: name.into(),
        }
    }

    pub fn new(kind: Kind, name: impl Into<Cow<'a, str>>) -> Self {
        Target {
            kind,
            name: name.into(),
        }
    }

    pub fn into_owned(self) -> Target<'static> {
        Target {
            kind: self.kind,
            name: Cow::Owned(self.name.into_owned()),
        }
    }
}

/// The tool a meta-tool's call runs, and the limits (by JSON pointer) whose
/// refusal names it rather than the meta-tool: its own, its annotation
/// rules' and `all_tools`'s, as a direct call of it would be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    pub target: Target<'static>,
    pub limits: Vec<String>,
}

impl Invoked {
    /// What a refusal by the limit at `pointer` names: the inner tool, or
    /// `called` (the meta-tool, or any call without an inner tool).
    pub fn shown<'t>(
        invoked: &'t Option<Invoked>,
        called: &'t Target<'static>,
        pointer: &str,
    ) -> &'t Target<'static> {
        match invoked {
            Some(inner) if inner.limits.iter().any(|limit| limit == pointer) => &inner.target,
            _ => called,
        }
    }
}
