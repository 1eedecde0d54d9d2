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
}

impl Kind {
    pub const ALL: [Kind; 1] = [Kind::Tool];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
        }
    }

    /// The member of a listing's `result` that holds this kind's entries,
    /// and the member of an entry that names it.
    pub fn listing_members(self) -> (&'static str, &'static str) {
        match self {
            Kind::Tool => ("tools", "name"),
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

    pub fn into_owned(self) -> Target<'static> {
        Target {
            kind: self.kind,
            name: Cow::Owned(self.name.into_owned()),
        }
    }
}
