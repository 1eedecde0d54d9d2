//! Configuration errors: every one names the JSON path of the bad value, and
//! a policy reports all the errors it has, not only the first.

use std::fmt;

/// One thing wrong in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path into the document, e.g. `tools.asyncExecuteCode.limits[0].window`;
    /// `policy` for the document itself.
    pub path: String,
    pub message: String,
    /// 1-based position in the source text, when the error came from the JSON reader.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Where the reader stopped, as the address of that byte of the source,
    /// for errors found in a part read on its own ([`super::document::Checked`]);
    /// [`ConfigErrors::locate`] turns it into `line` and `column`.
    at: Option<usize>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
            at: None,
        }
    }

    /// The error placed at `at`, the address of a byte of the source (see
    /// [`super::document::Checked::end`]).
    pub(crate) fn placed(mut self, at: usize) -> Self {
        self.at = Some(at);
        self
    }

    /// Converts an error of the reader of the whole document, keeping serde's
    /// message but moving the "at line L column C" suffix into fields of its own.
    pub(crate) fn from_reader(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let shape = ShapeError::from_reader(&err);
        let (line, column) = (err.inner().line(), err.inner().column());
        Self {
            path: if shape.path.is_empty() {
                ROOT.to_string()
            } else {
                shape.path
            },
            message: shape.message,
            line: (line > 0).then_some(line),
            column: (line > 0).then_some(column),
            at: None,
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

/// Every error of a policy document that cannot be enforced, at least one.
/// Envoy refuses the configuration and logs `Display` of this value: the
/// first error, then the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    first: ConfigError,
    rest: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The errors, if there are any.
    pub(crate) fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        let mut errors = errors.into_iter();
        let first = errors.next()?;
        Some(ConfigErrors {
            first,
            rest: errors.collect(),
        })
    }

    /// The first error: the one a single-error report would give.
    pub fn first(&self) -> &ConfigError {
        &self.first
    }

    /// Every error, the first first.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    /// How many errors (at least one).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    /// Gives the errors found in parts read on their own their line and
    /// column in `source`, the text the document was read from.
    pub(crate) fn locate(mut self, source: &[u8]) -> ConfigErrors {
        let start = source.as_ptr() as usize;
        for error in std::iter::once(&mut self.first).chain(&mut self.rest) {
            let Some(index) = error
                .at
                .take()
                .and_then(|at| at.checked_sub(start))
                .filter(|index| *index <= source.len())
            else {
                continue;
            };
            let (line, column) = line_column_of_index(source, index);
            error.line = Some(line);
            error.column = Some(column);
        }
        self
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> ConfigErrors {
        ConfigErrors {
            first: error,
            rest: Vec::new(),
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::iter::Chain<std::iter::Once<ConfigError>, std::vec::IntoIter<ConfigError>>;
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.rest)
    }
}

/// `tools.x.limits[0].window: unknown window "fortnight" (…)`, and when there
/// are more: ` (and 2 more: <path>: <message>; <path>: <message>)`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.first)?;
        if !self.rest.is_empty() {
            write!(f, " (and {} more: ", self.rest.len())?;
            for (index, error) in self.rest.iter().enumerate() {
                if index > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{error}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// An error found while reading one part of the document on its own: its
/// path within that part, to be put after the part's own path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// Dotted path below the part (`window`, `[2]`); empty for the part itself.
    path: String,
    message: String,
    /// Address of the byte of the source the reader stopped at.
    at: Option<usize>,
}

impl ShapeError {
    /// Keeps serde's message without its "at line L column C" suffix.
    fn from_reader(err: &serde_path_to_error::Error<serde_json::Error>) -> ShapeError {
        let path = err.path().to_string();
        let inner = err.inner();
        let mut message = inner.to_string();
        let suffix = format!(" at line {} column {}", inner.line(), inner.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        ShapeError {
            // serde_path_to_error says "." for the root and "?" before any key is read.
            path: if path == "." || path == "?" {
                String::new()
            } else {
                path
            },
            message,
            at: None,
        }
    }

    /// An error of the reader of `part`, a slice of the source document.
    /// Cold and not inlined into every part's reader: 2.7 KB less module.
    #[cold]
    #[inline(never)]
    pub(crate) fn in_part(
        err: &serde_path_to_error::Error<serde_json::Error>,
        part: &str,
    ) -> ShapeError {
        let (line, column) = (err.inner().line(), err.inner().column());
        let at = (line > 0)
            .then(|| index_of_line_column(part.as_bytes(), line, column))
            .flatten()
            .map(|index| part.as_ptr() as usize + index);
        ShapeError {
            at,
            ..ShapeError::from_reader(err)
        }
    }

    /// The error, for the part at `path` (`tools.x.limits[0]`).
    pub(crate) fn at_path(self, path: &str) -> ConfigError {
        let path = if self.path.is_empty() {
            path.to_string()
        } else if self.path.starts_with('[') {
            format!("{path}{}", self.path)
        } else {
            format!("{path}.{}", self.path)
        };
        ConfigError {
            at: self.at,
            ..ConfigError::new(path, self.message)
        }
    }
}

/// serde_json's position of a byte index: the 1-based line it is on and how
/// many bytes of that line come before it.
pub fn line_column_of_index(text: &[u8], index: usize) -> (usize, usize) {
    let before = &text[..index.min(text.len())];
    let start_of_line = before
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = 1 + before[..start_of_line]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count();
    (line, before.len() - start_of_line)
}

/// The byte index serde_json means by a line and column (the inverse of
/// [`line_column_of_index`]), if the text has that line.
pub fn index_of_line_column(text: &[u8], line: usize, column: usize) -> Option<usize> {
    let start_of_line = if line <= 1 {
        0
    } else {
        text.iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .nth(line - 2)
            .map(|(newline, _)| newline + 1)?
    };
    let index = start_of_line + column;
    (index <= text.len()).then_some(index)
}

/// Errors found while compiling a policy; compiling goes on after each, so
/// that every error is reported at once.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    found: Vec<ConfigError>,
    /// Whether some part could not be read (so what it says is unknown).
    unread: bool,
}

impl Errors {
    pub(crate) fn push(&mut self, error: ConfigError) {
        self.found.push(error);
    }

    /// The value of a part read on its own; `None` (and its error kept) if it
    /// could not be read. `path` is the part's path.
    pub(crate) fn read<T>(&mut self, part: super::document::Checked<T>, path: &str) -> Option<T> {
        match part.into_result() {
            Ok(value) => Some(value),
            Err(error) => {
                self.found.push(error.at_path(path));
                self.unread = true;
                None
            }
        }
    }

    /// As [`Errors::read`], for a part that may be absent.
    pub(crate) fn read_optional<T>(
        &mut self,
        part: Option<super::document::Checked<T>>,
        path: &str,
    ) -> Option<T> {
        part.and_then(|part| self.read(part, path))
    }

    /// How many errors so far.
    pub(crate) fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether some part could not be read.
    pub(crate) fn any_unread(&self) -> bool {
        self.unread
    }

    /// `value` if no error was found, else every error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        match ConfigErrors::from_vec(self.found) {
            None => Ok(value),
            Some(errors) => Err(errors),
        }
    }
}
