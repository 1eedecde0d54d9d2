//! Resource URIs and paths, normalised before any rule sees them, so that
//! two spellings of one resource are one resource to the policy:
//! `file:///srv/public/../.env`, `file:///srv/public/%2e%2e/.env` and
//! `FILE:///srv//.env` are all `file:///srv/.env`.
//!
//! Normalisation (RFC 3986 §6.2.2, §6.2.3): scheme and host lowercased; for
//! web (`http`, `https`, `ws`, `wss`, `ftp`) and `file:` URIs a host's final
//! dot and the scheme's default port dropped; escapes of unreserved
//! characters decoded and other escapes written in upper case; dot segments
//! removed (§5.2.4); for `file:`, runs of `/` collapsed and `file:/p`
//! written `file:///p` (RFC 8089). As WHATWG parsers (the TypeScript SDK's
//! `new URL`, and pydantic's `AnyUrl` in the Python SDK) write a URI, which
//! servers then look resources up by: spaces at either end dropped,
//! non-ASCII characters and ` "<>`{}'` escaped (`café` is `caf%C3%A9`), an
//! empty web path written `/`, an IPv6 literal in its shortest form
//! (`[0:0::1]` is `[::1]`), and a `file:` drive letter `C|` written `C:`.
//! Refused rather than normalised, because servers disagree on what they
//! mean: an encoded `/` or `\`, any `\`, NUL or other control character, a
//! double-encoded escape (`%252e`), a malformed escape, a `..` that would
//! climb above the root, or that sits in the query or fragment of a URI that
//! is not a web URI (a server that does not split them off climbs with it);
//! for web and `file:` URIs, whose hosts WHATWG parsers map, user
//! information, a host that is not plain ASCII (IDNA maps `ｅ` to `e` and
//! `。` to `.`), an IPv4 address not written as four decimal numbers
//! (`2130706433` is `127.0.0.1`), a port above 65535, a missing `//host`, and
//! a relative `file:` path. Another scheme's authority is opaque to WHATWG
//! parsers: kept as written, its host in lower case.

use std::fmt;

/// Why a URI or path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    /// `%2F` or `%5C` in a path: a separator some servers decode and some do not.
    EncodedSeparator,
    /// A raw `\`: a separator on some systems.
    Backslash,
    /// NUL or another control character.
    Control,
    /// `%25` followed by an escape: decoded twice, it is something else.
    DoubleEncoded,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A `..` above the root.
    AboveRoot,
    /// A `file:` URI naming another host: not a file here.
    FileHost,
    /// A `..` segment in the query or fragment.
    DotsAfterPath,
    /// `user@` before the host.
    UserInfo,
    /// A host that is not plain ASCII, an escape left in it, an IPv4
    /// address in another form than four decimal numbers, or a bad port.
    Host,
    /// A web URI (`http:`, `https:`, `ws:`, `wss:`, `ftp:`) without `//host`.
    NoHost,
    /// A `file:` URI whose path is not absolute.
    RelativeFile,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::EncodedSeparator => "an encoded / or \\ in the path",
            UriError::Backslash => "a \\ (a path separator on some systems)",
            UriError::Control => "a NUL or control character",
            UriError::DoubleEncoded => "a double-encoded escape (%25 followed by an escape)",
            UriError::BadEscape => "a % not followed by two hex digits",
            UriError::AboveRoot => "a .. segment that climbs above the root",
            UriError::FileHost => "a file: URI naming a host other than localhost",
            UriError::DotsAfterPath => {
                "a .. segment in the query or fragment (part of the path to some servers)"
            }
            UriError::UserInfo => "user information (user@) before the host",
            UriError::Host => {
                "a host that is not plain ASCII, a dotted-quad IPv4 address or a valid port"
            }
            UriError::NoHost => "a web URI without //host",
            UriError::RelativeFile => "a file: URI whose path is not absolute",
        })
    }
}

/// The normal form of a URI (see the module documentation).
pub fn normalize(uri: &str) -> Result<String, UriError> {
    // WHATWG parsers drop spaces (and controls, refused here) at either end.
    let uri = uri.trim_matches(' ');
    check_characters(uri)?;
    let (scheme, rest) = match split_scheme(uri) {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, uri),
    };
    let (before_fragment, fragment) = split_at_first(rest, '#');
    let (hierarchy, query) = split_at_first(before_fragment, '?');
    let web = matches!(
        scheme.as_deref(),
        Some("http" | "https" | "ws" | "wss" | "ftp")
    );
    let file = scheme.as_deref() == Some("file");
    // A server that does not split off the query or fragment climbs with
    // their dot segments, every escape decoded as such a server decodes it:
    // `file:///srv/public/x?/..%2F..%2F.env`. Not for web URIs, whose
    // readers all split them off (`?next=a/../b` is a parameter there).
    if !web {
        for tail in [query, fragment].into_iter().flatten() {
            if climbs(tail)? {
                return Err(UriError::DotsAfterPath);
            }
        }
    }
    let (authority, path) = match hierarchy.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, hierarchy),
    };
    // `https:host/x` and `https:///host/x` are `https://host/x` to a WHATWG
    // parser and a path to others.
    if web && authority.is_none_or(str::is_empty) {
        return Err(UriError::NoHost);
    }
    if file && authority.is_none() && !path.starts_with('/') {
        return Err(UriError::RelativeFile);
    }
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = &scheme {
        out.push_str(scheme);
        out.push(':');
    }
    // `file:/p` is `file:///p` (RFC 8089).
    if file && authority.is_none() {
        out.push_str("//");
    }
    if let Some(authority) = authority {
        out.push_str("//");
        let decoded = decode_unreserved(authority, false, Escape::Uri)?;
        // Web and file hosts are what WHATWG parsers map (IDNA, IPv4
        // forms); another scheme's authority is opaque to them.
        let authority = if web || file {
            normalize_authority(&decoded, scheme.as_deref())?
        } else {
            opaque_authority(&decoded)
        };
        if web && (authority.is_empty() || authority.starts_with(':')) {
            return Err(UriError::NoHost);
        }
        // `file://localhost/p` is `file:///p` (RFC 8089), and a file server
        // reads it so: the host must not make it another resource. Another
        // host is a remote file some servers would still open locally.
        if scheme.as_deref() == Some("file") {
            if !authority.is_empty() && authority != "localhost" {
                return Err(UriError::FileHost);
            }
        } else {
            out.push_str(&authority);
        }
    }
    let collapse = scheme.as_deref() == Some("file");
    let path = normalize_path(path, collapse, Escape::Uri)?;
    if web && path.is_empty() {
        // `https://h` is `https://h/` to WHATWG parsers.
        out.push('/');
    }
    if file {
        out.push_str(&drive_letter(&path));
    } else {
        out.push_str(&path);
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(&decode_unreserved(query, false, Escape::Uri)?);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(&decode_unreserved(fragment, false, Escape::Uri)?);
    }
    Ok(out)
}

/// What many servers read a normalised URI as: without its fragment (never
/// sent by web clients), its query (ignored by file servers), a final `/`
/// (dropped by path resolvers) and doubled `/` in the path; `None` when
/// that is the URI itself. A refusal of that resource (hidden, a rule's
/// deny) holds for every such spelling of it.
pub fn bare(normalized: &str) -> Option<String> {
    let end = normalized.find(['?', '#']).unwrap_or(normalized.len());
    let without = &normalized[..end];
    // The path starts after `scheme://authority` (or `scheme:`).
    let path_start = match without.find("://") {
        Some(at) => without[at + 3..]
            .find('/')
            .map_or(without.len(), |slash| at + 3 + slash),
        None => without.find(':').map_or(0, |colon| colon + 1),
    };
    let (head, path) = without.split_at(path_start);
    let mut bare = String::with_capacity(without.len());
    bare.push_str(head);
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        bare.push(c);
    }
    while bare.len() > path_start + 1 && bare.ends_with('/') {
        bare.pop();
    }
    (bare != normalized).then_some(bare)
}

/// The normal form of a path (an argument naming a file): escapes of
/// unreserved characters decoded, dot segments removed, runs of `/`
/// collapsed. A value with a URI scheme is normalised as a URI.
pub fn normalize_path_value(value: &str) -> Result<String, UriError> {
    if split_scheme(value).is_some() {
        return normalize(value);
    }
    check_characters(value)?;
    normalize_path(value, true, Escape::Path)
}

/// A `file:` path's Windows drive letter as WHATWG parsers write it:
/// `/C|/x` is `/C:/x`.
fn drive_letter(path: &str) -> std::borrow::Cow<'_, str> {
    let bytes = path.as_bytes();
    let letter = bytes.len() >= 3
        && bytes[0] == b'/'
        && bytes[1].is_ascii_alphabetic()
        && bytes[2] == b'|'
        && matches!(bytes.get(3), None | Some(b'/'));
    if letter {
        std::borrow::Cow::Owned(format!("{}:{}", &path[..2], &path[3..]))
    } else {
        std::borrow::Cow::Borrowed(path)
    }
}

/// What a decoded text escapes besides what it kept escaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// A URI: non-ASCII and ` "<>`{}'`, as WHATWG parsers write them.
    Uri,
    /// A plain path (an argument naming a file): nothing more.
    Path,
}

impl Escape {
    fn escapes(self, byte: u8) -> bool {
        self == Escape::Uri && (!byte.is_ascii() || b" \"<>`{}'".contains(&byte))
    }
}

/// Whether `value` names `base` or something inside it, once both are
/// normalised (segment boundaries respected: `/srv/public2` is not under
/// `/srv/public`). A value that cannot be normalised is under nothing.
pub fn is_under(value: &str, base: &str) -> bool {
    let (Ok(value), Ok(base)) = (normalize_path_value(value), normalize_path_value(base)) else {
        return false;
    };
    normal_is_under(&value, &base)
}

/// Whether a server may take `value` for `base` or something inside it:
/// as [`is_under`], and also a value that cannot be normalised (servers
/// disagree on what `\`, `%2f`, `%zz` or a control character name), one
/// under `base` in another letter case (case-insensitive file systems and
/// servers), or one under it once its query, fragment or trailing `/` is
/// dropped. For conditions that refuse: such a value must not slip by.
pub fn may_be_under(value: &str, base: &str) -> bool {
    let Ok(value) = normalize_path_value(value) else {
        return true;
    };
    let Ok(base) = normalize_path_value(base) else {
        return false;
    };
    // A `file:` URI and the path it names are one file to a server that
    // takes either: each side is compared in both spellings.
    let spellings = |normal: &str| {
        let mut all = vec![crate::policy::fold_case(normal).into_owned()];
        all.extend(file_path(normal).map(|path| crate::policy::fold_case(path).into_owned()));
        all
    };
    let bases = spellings(&base);
    let mut values = spellings(&value);
    if let Some(bare) = bare(&value) {
        values.extend(spellings(&bare));
    }
    values
        .iter()
        .any(|value| bases.iter().any(|base| normal_is_under(value, base)))
}

/// The path a normalised `file:` URI names (`file:///srv/x`,
/// `file://localhost/srv/x`: `/srv/x`); `None` for anything else.
fn file_path(normal: &str) -> Option<&str> {
    let rest = normal.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    rest.starts_with('/').then_some(rest)
}

/// [`is_under`] for values already normalised.
fn normal_is_under(value: &str, base: &str) -> bool {
    if base == "/" {
        return value.starts_with('/');
    }
    let base = base.trim_end_matches('/');
    !base.is_empty()
        && (value == base
            || value
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/')))
}

fn check_characters(text: &str) -> Result<(), UriError> {
    for c in text.chars() {
        if c == '\\' {
            return Err(UriError::Backslash);
        }
        if c.is_control() {
            return Err(UriError::Control);
        }
    }
    Ok(())
}

/// `scheme:rest` when the text starts with a valid scheme.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let scheme = &text[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &text[colon + 1..]))
}

fn split_at_first(text: &str, separator: char) -> (&str, Option<&str>) {
    match text.find(separator) {
        Some(index) => (&text[..index], Some(&text[index + 1..])),
        None => (text, None),
    }
}

/// Whether a query or fragment holds a `..` segment once every escape is
/// decoded and `\` read as `/`, as a careless server reads it.
fn climbs(tail: &str) -> Result<bool, UriError> {
    let bytes = tail.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let (Some(high), Some(low)) = (
                bytes.get(index + 1).copied().and_then(hex_value),
                bytes.get(index + 2).copied().and_then(hex_value),
            ) else {
                return Err(UriError::BadEscape);
            };
            decoded.push(high * 16 + low);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    Ok(decoded
        .split(|byte| matches!(byte, b'/' | b'\\'))
        .any(|segment| segment == b".."))
}

/// A custom scheme's authority: user information as it is, the rest in
/// lower case.
fn opaque_authority(authority: &str) -> String {
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut out = String::with_capacity(authority.len());
    out.push_str(userinfo);
    // Letters in lower case, escapes' hex digits (after decoding, `%XX`)
    // in upper case, as everywhere else.
    let mut hex_left = 0;
    for c in host_port.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_uppercase());
            hex_left -= 1;
        } else {
            hex_left = usize::from(c == '%') * 2;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Host in lower case without a final dot; the port without leading zeros,
/// dropped when it is the scheme's default.
fn normalize_authority(authority: &str, scheme: Option<&str>) -> Result<String, UriError> {
    if authority.contains('@') {
        return Err(UriError::UserInfo);
    }
    // Escapes left after decoding the unreserved ones encode what a WHATWG
    // parser would decode and map (IDNA): refused like raw non-ASCII.
    if !authority.is_ascii() || authority.contains('%') {
        return Err(UriError::Host);
    }
    let authority = authority.to_ascii_lowercase();
    let ipv6;
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal in its shortest form (RFC 5952): `[0:0::1]`,
        // `[::0001]` and `[::1]` are one host to WHATWG parsers.
        Some(literal) => match literal.split_once(']') {
            Some((address, port)) => {
                let address: std::net::Ipv6Addr = address.parse().map_err(|_| UriError::Host)?;
                ipv6 = format!("[{address}]");
                (ipv6.as_str(), port)
            }
            None => return Err(UriError::Host),
        },
        None => authority.split_at(authority.rfind(':').unwrap_or(authority.len())),
    };
    let port = match port {
        "" => "",
        port => port.strip_prefix(':').ok_or(UriError::Host)?,
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::Host);
    }
    let port = match port.trim_start_matches('0') {
        "" if port.is_empty() => "",
        "" => "0",
        port => port,
    };
    if port.len() > 5 || port.parse::<u32>().is_ok_and(|port| port > 65_535) {
        return Err(UriError::Host);
    }
    let default = match scheme {
        Some("http" | "ws") => "80",
        Some("https" | "wss") => "443",
        Some("ftp") => "21",
        _ => "",
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // `h..`: an empty label, which WHATWG parsers refuse or keep.
    if host.ends_with('.') {
        return Err(UriError::Host);
    }
    check_ipv4(host)?;
    let mut out = host.to_string();
    if !port.is_empty() && port != default {
        out.push(':');
        out.push_str(port);
    }
    Ok(out)
}

/// A host whose last label is a number is an IPv4 address to a WHATWG
/// parser (`127.1`, `0x7f.0.0.1` and `2130706433` are all `127.0.0.1`):
/// only four decimal numbers, each 0–255 without leading zeros, are taken.
fn check_ipv4(host: &str) -> Result<(), UriError> {
    let last = host.rsplit('.').next().unwrap_or_default();
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last.starts_with("0x")
            || last.starts_with("0X"));
    if !numeric {
        return Ok(());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let decimal = |label: &&str| {
        !label.is_empty()
            && label.len() <= 3
            && label.bytes().all(|b| b.is_ascii_digit())
            && (label.len() == 1 || !label.starts_with('0'))
            && label.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    if labels.len() == 4 && labels.iter().all(decimal) {
        Ok(())
    } else {
        Err(UriError::Host)
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters; writes the others in upper
/// case, and escapes what `escape` says. `path`: refuse escapes of
/// separators and NUL.
fn decode_unreserved(text: &str, path: bool, escape: Escape) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte != b'%' {
            if escape.escapes(byte) {
                out.extend_from_slice(format!("%{byte:02X}").as_bytes());
            } else {
                out.push(byte);
            }
            index += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(index + 1).copied().and_then(hex_value),
            bytes.get(index + 2).copied().and_then(hex_value),
        ) else {
            return Err(UriError::BadEscape);
        };
        let decoded = high * 16 + low;
        match decoded {
            b'/' | b'\\' if path => return Err(UriError::EncodedSeparator),
            b'\\' => return Err(UriError::Backslash),
            0..=0x1f | 0x7f => return Err(UriError::Control),
            b'%' => {
                let next_is_escape = bytes.get(index + 3).copied().and_then(hex_value).is_some()
                    && bytes.get(index + 4).copied().and_then(hex_value).is_some();
                if next_is_escape {
                    return Err(UriError::DoubleEncoded);
                }
                out.extend_from_slice(b"%25");
            }
            byte if is_unreserved(byte) => out.push(byte),
            byte => out.extend_from_slice(format!("%{byte:02X}").as_bytes()),
        }
        index += 3;
    }
    // Only ASCII escapes were decoded, so the text stays UTF-8.
    String::from_utf8(out).map_err(|_| UriError::BadEscape)
}

/// Removes dot segments (RFC 3986 §5.2.4), refusing a climb above the root;
/// `collapse`: runs of `/` become one.
fn normalize_path(path: &str, collapse: bool, escape: Escape) -> Result<String, UriError> {
    let decoded = decode_unreserved(path, true, escape)?;
    let absolute = decoded.starts_with('/');
    let trailing = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "."
        || decoded == "..";
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (position, segment) in parts.into_iter().enumerate() {
        match segment {
            "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(UriError::AboveRoot);
                }
            }
            "" if collapse || position == 0 || position == last => {}
            segment => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
