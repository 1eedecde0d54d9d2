//! Configuration errors: every one names the JSON path of the bad value.

use std::fmt;

/// A policy document that cannot be enforced. Envoy refuses the configuration
/// and logs `Display` of this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path into the document, e.g. `tools.asyncExecuteCode.limits[0].window`;
    /// `policy` for the document itself.
    pub path: String,
    pub message: String,
    /// 1-based position in the source text, when the error came from the JSON reader.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// Converts a reader error, keeping serde's message but moving the
    /// "at line L column C" suffix into fields of its own.
    pub(crate) fn from_reader(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.inner();
        let (line, column) = (inner.line(), inner.column());
        let mut message = inner.to_string();
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        Self {
            // serde_path_to_error says "." for the root and "?" before any key is read.
            path: if path == "." || path == "?" {
                ROOT.to_string()
            } else {
                path
            },
            message,
            line: (line > 0).then_some(line),
            column: (line > 0).then_some(column),
        }
    }
}

/// The name used for the document itself in error paths.
pub const ROOT: &str = "policy";

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}
