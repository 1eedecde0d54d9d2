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

    /// Converts an error of the reader of the whole document, `source`,
    /// keeping serde's message but moving the "at line L column C" suffix
    /// into fields of its own.
    pub(crate) fn from_reader(err: &serde_json::Error, source: &[u8]) -> Self {
        let shape = ShapeError::from_reader(err, source);
        let (line, column) = (err.line(), err.column());
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
    /// Keeps serde's message without its "at line L column C" suffix; the
    /// path is the value of `text` the reader was in when it stopped.
    fn from_reader(err: &serde_json::Error, text: &[u8]) -> ShapeError {
        let mut message = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        ShapeError {
            path: path_of_error(text, err, &message),
            message,
            at: None,
        }
    }

    /// An error of the reader of `part`, a slice of the source document.
    /// Cold and not inlined into every part's reader: 2.7 KB less module.
    #[cold]
    #[inline(never)]
    pub(crate) fn in_part(err: &serde_json::Error, part: &str) -> ShapeError {
        let (line, column) = (err.line(), err.column());
        let at = (line > 0)
            .then(|| index_of_line_column(part.as_bytes(), line, column))
            .flatten()
            .map(|index| part.as_ptr() as usize + index);
        ShapeError {
            at,
            ..ShapeError::from_reader(err, part.as_bytes())
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

/// The JSON path (`tools.x.limits[0].max`; empty for the whole text) of
/// the value serde_json was reading in `text` when it stopped with `err`.
///
/// Found by scanning the text up to where the reader stopped rather than by
/// wrapping every reader (serde_path_to_error did that: a second copy of
/// every visitor, 52 KB of the module). What the reader stopped at decides
/// where an error belongs, as serde_path_to_error placed it:
/// - inside a value, or at its first byte: that value;
/// - just past a member's value or an element: the member or element, for
///   an error of the value (a wrong type, an unknown variant); the object or
///   array, when the text ends there;
/// - just past a member's name or in the blanks before its colon: the
///   member, for an unknown field (the name's own error) or the text ending
///   there; the object, for what its reader finds wrong with the name (a
///   duplicate, an empty name);
/// - anywhere else in an object or array (a missing field, at its end): the
///   object or array.
///
/// One placement could not be told apart: serde's derived enums read an
/// object of two members with no blank before the comma
/// (`{"closed":null,"open":null}`) and stopped just past the first member's
/// value, as a one-byte value refused at its only byte does. The document's
/// enums now read strings only (`string_enum!` in document.rs) and refuse
/// an object at its first byte, so no reader stops there any more.
pub(crate) fn path_of_error(text: &[u8], err: &serde_json::Error, message: &str) -> String {
    let Some(stop) = (err.line() > 0)
        .then(|| index_of_line_column(text, err.line(), err.column()))
        .flatten()
    else {
        return String::new();
    };
    let mut scan = PathScan {
        text,
        pos: 0,
        stop,
        // serde_json stops just past a value when the value is wrong (a data
        // error, or a syntax error at its only byte: `0` for an enum) or
        // when the text ends after it (the object's error).
        of_value: err.classify() != serde_json::error::Category::Eof,
        // Just past a name: an unknown field is the name's error (and the
        // text ending there the member's); what the object's reader finds
        // wrong with a name it has read (a duplicate) is the object's.
        of_name: err.classify() != serde_json::error::Category::Data
            || message.starts_with("unknown field"),
        // At an element's first byte: the element's error when serde_json
        // looked at that byte and refused its type; the array's when it
        // refused the array (opened for a number, say: "invalid type:
        // sequence" with an element that is no array) or its first byte
        // (syntax errors are placed past the byte looked at).
        element_at_start: err.classify() == serde_json::error::Category::Data,
        of_array: message.starts_with("invalid type: sequence"),
        path: Vec::new(),
        open: Vec::new(),
    };
    // The scan ends where the reader stopped (or at what it cannot read).
    scan.scan();
    let mut path = String::new();
    for segment in &scan.path {
        match segment {
            Segment::Name(name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&unescape(name));
            }
            Segment::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

/// Test builds: the path found for an error of a part, `text`, read as `T`
/// is the one serde_path_to_error gives.
#[cfg(test)]
pub(crate) fn check_path<'de, T: serde::Deserialize<'de>>(
    text: &'de [u8],
    error: Option<&ShapeError>,
) {
    let mut reader = serde_json::Deserializer::from_slice(text);
    let expected = serde_path_to_error::deserialize::<_, T>(&mut reader)
        .err()
        .map(|err| reference_path(&err));
    let found = error.map(|error| error.path.clone());
    assert_eq!(
        found,
        expected,
        "path of the error in {}",
        String::from_utf8_lossy(text)
    );
}

/// Test builds: as [`check_path`], for an error of the whole document, when
/// it is one of the values (for syntax errors the found path can be deeper:
/// serde_path_to_error does not see into the parts, read whole first).
#[cfg(test)]
pub(crate) fn check_document_path(text: &[u8], error: Option<&ConfigError>) {
    use super::document::{Object, PolicyDocument};
    let mut reader = serde_json::Deserializer::from_slice(text);
    let Err(err) = serde_path_to_error::deserialize::<_, Object<PolicyDocument>>(&mut reader)
    else {
        assert_eq!(error, None);
        return;
    };
    if err.inner().classify() != serde_json::error::Category::Data {
        return;
    }
    let expected = match reference_path(&err) {
        path if path.is_empty() => ROOT.to_string(),
        path => path,
    };
    assert_eq!(
        error.map(|error| error.path.as_str()),
        Some(expected.as_str()),
        "path of the error in {}",
        String::from_utf8_lossy(text)
    );
}

/// serde_path_to_error's path as the reader's errors give it ("." for the
/// whole value, "?" before its first key).
#[cfg(test)]
fn reference_path(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    match err.path().to_string() {
        path if path == "." || path == "?" => String::new(),
        path => path,
    }
}

/// A member's name as written between its quotes, unescaped.
fn unescape(name: &[u8]) -> String {
    if name.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(name.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(name);
        quoted.push(b'"');
        if let Ok(name) = serde_json::from_slice::<String>(&quoted) {
            return name;
        }
    }
    String::from_utf8_lossy(name).into_owned()
}

enum Segment<'t> {
    Name(&'t [u8]),
    Index(usize),
}

/// A container the scan is in.
enum Open {
    Object,
    /// An array, and the index its next element will have.
    Array(usize),
}

/// Walks JSON text up to `stop`, keeping the path of the value it is in.
/// Without recursion: the text before a stop can nest deeper than any
/// reader goes (a part is read whole before its errors are placed).
struct PathScan<'t> {
    text: &'t [u8],
    pos: usize,
    /// The byte index the reader stopped at.
    stop: usize,
    /// Stopped just past a value, the error is the value's.
    of_value: bool,
    /// Stopped just past a member's name, the error is the member's.
    of_name: bool,
    /// Stopped at an element's first byte, the error can be the element's.
    element_at_start: bool,
    /// The error says an array was not expected.
    of_array: bool,
    path: Vec<Segment<'t>>,
    open: Vec<Open>,
}

impl<'t> PathScan<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Past a string's closing quote, from its opening one; `false` if the
    /// text ends first.
    fn string(&mut self) -> bool {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return false,
                Some(b'"') => {
                    self.pos += 1;
                    return true;
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A segment's value (or name, `own` telling whose the error is there)
    /// ended at `pos`: whether the scan ends, the segment staying on the
    /// path if the reader stopped in it, or just past it for its own error.
    fn ended(&mut self, own: bool) -> bool {
        if self.pos < self.stop {
            self.path.pop();
            return false;
        }
        if self.pos == self.stop && !own {
            self.path.pop();
        }
        true
    }

    /// A value ended at `pos`: whether the scan ends.
    fn value_ended(&mut self) -> bool {
        // The whole text's value: nothing after it to scan.
        self.open.is_empty() || self.ended(self.of_value)
    }

    fn scan(&mut self) {
        let mut value_next = true;
        loop {
            self.whitespace();
            if value_next {
                value_next = false;
                match self.peek() {
                    Some(b'{') => {
                        self.pos += 1;
                        self.open.push(Open::Object);
                    }
                    Some(b'[') => {
                        self.pos += 1;
                        self.open.push(Open::Array(0));
                    }
                    Some(b'"') => {
                        if !self.string() || self.value_ended() {
                            return;
                        }
                    }
                    Some(_) => {
                        let start = self.pos;
                        while !matches!(
                            self.peek(),
                            None | Some(b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\n' | b'\r')
                        ) {
                            self.pos += 1;
                        }
                        // No value where one was expected: the reader stopped here.
                        if self.pos == start || self.value_ended() {
                            return;
                        }
                    }
                    None => return,
                }
                continue;
            }
            let (pos, stop, peeked) = (self.pos, self.stop, self.peek());
            match (self.open.last_mut(), peeked) {
                (Some(Open::Object), Some(b'}')) | (Some(Open::Array(_)), Some(b']')) => {
                    self.pos += 1;
                    self.open.pop();
                    if self.value_ended() {
                        return;
                    }
                }
                (Some(_), Some(b',')) => self.pos += 1,
                (Some(Open::Object), Some(b'"')) if pos < stop => {
                    let start = pos + 1;
                    if !self.string() {
                        return;
                    }
                    self.path
                        .push(Segment::Name(&self.text[start..self.pos - 1]));
                    if self.pos > self.stop {
                        // Stopped inside the name.
                        return;
                    }
                    // Just past the name, or in the blanks before its colon
                    // (where serde_json's object reader, having skipped
                    // them, places what it finds wrong with the name).
                    self.whitespace();
                    if self.pos >= self.stop {
                        if !self.of_name {
                            self.path.pop();
                        }
                        return;
                    }
                    if self.peek() != Some(b':') {
                        return;
                    }
                    self.pos += 1;
                    value_next = true;
                }
                (Some(Open::Array(next)), Some(byte))
                    if pos < stop
                        || (pos == stop
                            && self.element_at_start
                            && (byte == b'[' || !self.of_array)) =>
                {
                    let index = *next;
                    *next += 1;
                    self.path.push(Segment::Index(index));
                    value_next = true;
                }
                _ => return,
            }
        }
    }
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
