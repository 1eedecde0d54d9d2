//! Who the approver is, and whether a state-changing request is theirs.
//!
//! Identity, in this order:
//! 1. the configured header (e.g. `x-forwarded-user`) — only when the TCP peer
//!    is one of the trusted proxy networks; from anyone else it is ignored;
//! 2. `Authorization: Bearer <token>`, the token's SHA-256 among the
//!    configured approver tokens;
//! 3. the session cookie that `POST /login` (with such a token) sets: signed
//!    (HMAC-SHA256), bound to the token's hash, 12 hours.
//!
//! CSRF: every form carries a synchronizer token, an HMAC over the approver's
//! identity and an expiry; POSTs must also come from the public origin when
//! the browser says where they come from (`Sec-Fetch-Site`, `Origin`,
//! `Referer`). The cookie is `HttpOnly; SameSite=Strict`. README.md
//! ("Approvers") gives the JSON API's rules.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderName};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};

use crate::canonical::hex;
use crate::model::MAX_APPROVER;

type HmacSha256 = Hmac<Sha256>;

/// How long sessions and CSRF tokens last.
pub const SESSION_SECONDS: u64 = 12 * 3600;

/// An IP network, `10.0.0.0/8` or `::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("not an IP network: {text:?}"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in {text:?}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// An approver token as configured: a name and the token's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverToken {
    pub name: String,
    pub hash: [u8; 32],
}

pub fn valid_identity(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_APPROVER && !name.chars().any(char::is_control)
}

impl ApproverToken {
    /// `NAME=sha256:HEX` (a line of a tokens file may use a space for `=`).
    pub fn parse(text: &str) -> Result<ApproverToken, String> {
        let text = text.trim();
        let (name, hash) = text
            .split_once('=')
            .or_else(|| text.rsplit_once(char::is_whitespace))
            .ok_or_else(|| format!("approver token {text:?}: expected NAME=sha256:HEX"))?;
        let name = name.trim();
        if !valid_identity(name) {
            return Err(format!("approver token: bad name {name:?}"));
        }
        let hex_text = hash
            .trim()
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("approver token {name}: the hash must start with sha256:"))?;
        let bytes = parse_hex(hex_text)
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| format!("approver token {name}: the hash must be 64 hex digits"))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes);
        Ok(ApproverToken {
            name: name.to_owned(),
            hash,
        })
    }
}

/// `sha256:` and the hex SHA-256 of a token: what the configuration holds.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(token.trim().as_bytes())))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// Constant-time equality of two byte strings of equal length.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The trusted proxy's header.
    Header,
    /// `Authorization: Bearer`.
    Bearer,
    /// The session cookie.
    Session,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    pub via: Via,
}

pub struct Auth {
    /// The identity header and the networks it is trusted from.
    pub header: Option<(HeaderName, Vec<Cidr>)>,
    pub tokens: Vec<ApproverToken>,
    /// `scheme://host[:port]` of the public URL.
    pub origin: String,
    /// Cookies marked Secure (public URL is https), named `__Host-…`.
    pub secure: bool,
    key: Vec<u8>,
}

impl Auth {
    pub fn new(
        header: Option<(HeaderName, Vec<Cidr>)>,
        tokens: Vec<ApproverToken>,
        origin: String,
        secure: bool,
        key: &[u8],
    ) -> Auth {
        Auth {
            header,
            tokens,
            origin,
            secure,
            key: key.to_vec(),
        }
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-mcp-approval"
        } else {
            "mcp-approval"
        }
    }

    fn mac(&self, parts: &[&str]) -> String {
        // HMAC takes keys of any length.
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.key) else {
            return String::new();
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        hex(&mac.finalize().into_bytes())
    }

    /// The approver of a request from `peer`, if any.
    pub fn authenticate(&self, headers: &HeaderMap, peer: IpAddr, now_s: u64) -> Option<Approver> {
        if let Some((name, proxies)) = &self.header {
            if proxies.iter().any(|cidr| cidr.contains(peer)) {
                if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    let value = value.trim();
                    if valid_identity(value) {
                        return Some(Approver {
                            name: value.to_owned(),
                            via: Via::Header,
                        });
                    }
                }
            }
        }
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_owner(token).map(|token| Approver {
                name: token.name.clone(),
                via: Via::Bearer,
            });
        }
        let cookie = cookie(headers, self.cookie_name())?;
        self.session_owner(&cookie, now_s).map(|name| Approver {
            name,
            via: Via::Session,
        })
    }

    /// The configured token this one hashes to.
    pub fn token_owner(&self, token: &str) -> Option<&ApproverToken> {
        let hash = Sha256::digest(token.trim().as_bytes());
        // Compare with every configured hash, in constant time each.
        let mut found = None;
        for candidate in &self.tokens {
            if same_bytes(&candidate.hash, &hash) {
                found = Some(candidate);
            }
        }
        found
    }

    /// The session cookie's value for a token's owner.
    pub fn session_cookie(&self, token: &ApproverToken, now_s: u64) -> String {
        let expiry = (now_s + SESSION_SECONDS).to_string();
        let name = hex(token.name.as_bytes());
        let tag = hex(&token.hash[..8]);
        let mac = self.mac(&["session", &token.name, &expiry, &tag]);
        format!("{name}.{expiry}.{tag}.{mac}")
    }

    /// The owner of a session cookie, while it is valid and its token configured.
    fn session_owner(&self, value: &str, now_s: u64) -> Option<String> {
        let mut parts = value.split('.');
        let (name, expiry, tag, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let name = String::from_utf8(parse_hex(name)?).ok()?;
        if !same_bytes(
            self.mac(&["session", &name, expiry, tag]).as_bytes(),
            mac.as_bytes(),
        ) {
            return None;
        }
        if expiry.parse::<u64>().ok()? <= now_s {
            return None;
        }
        self.tokens
            .iter()
            .any(|token| token.name == name && hex(&token.hash[..8]) == tag)
            .then_some(name)
    }

    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// A CSRF token for this approver's forms.
    pub fn csrf_token(&self, approver: &str, now_s: u64) -> String {
        let expiry = (now_s + SESSION_SECONDS).to_string();
        let mac = self.mac(&["csrf", approver, &expiry]);
        format!("{expiry}.{mac}")
    }

    pub fn csrf_valid(&self, approver: &str, token: &str, now_s: u64) -> bool {
        let Some((expiry, mac)) = token.split_once('.') else {
            return false;
        };
        same_bytes(
            self.mac(&["csrf", approver, expiry]).as_bytes(),
            mac.as_bytes(),
        ) && expiry.parse::<u64>().is_ok_and(|e| e > now_s)
    }

    /// Whether a browser says this request comes from the public origin (or
    /// says nothing: not a browser, or one that sends neither header).
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(site) = get("sec-fetch-site") {
            if site != "same-origin" && site != "none" {
                return false;
            }
        }
        if let Some(origin) = get("origin") {
            return origin == self.origin;
        }
        if let Some(referer) = get("referer") {
            return referer == self.origin
                || referer
                    .strip_prefix(self.origin.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
        }
        true
    }
}

/// A cookie's value from the Cookie headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A new random secret (hex of 32 bytes).
pub fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| err.to_string())?;
    Ok(hex(&bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        Auth::new(
            Some((
                HeaderName::from_static("x-forwarded-user"),
                vec![
                    Cidr::parse("10.1.0.0/16").unwrap(),
                    Cidr::parse("::1").unwrap(),
                ],
            )),
            vec![ApproverToken::parse(&format!("bob={}", token_hash("bob-secret"))).unwrap()],
            "https://approvals.example.com".into(),
            true,
            b"key",
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped"
        );
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(!Cidr::parse("::1").unwrap().contains("::2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn header_counts_only_from_trusted_proxies() {
        let auth = auth();
        let h = headers(&[("x-forwarded-user", "alice@example.com")]);
        let approver = auth
            .authenticate(&h, "10.1.2.3".parse().unwrap(), 0)
            .unwrap();
        assert_eq!(approver.name, "alice@example.com");
        assert_eq!(approver.via, Via::Header);
        assert_eq!(auth.authenticate(&h, "10.9.2.3".parse().unwrap(), 0), None);
        assert!(auth.authenticate(&h, "::1".parse().unwrap(), 0).is_some());
        let empty = headers(&[("x-forwarded-user", "  ")]);
        assert_eq!(
            auth.authenticate(&empty, "10.1.2.3".parse().unwrap(), 0),
            None
        );
    }

    #[test]
    fn bearer_tokens_and_sessions() {
        let auth = auth();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let good = headers(&[("authorization", "Bearer bob-secret")]);
        assert_eq!(auth.authenticate(&good, peer, 0).unwrap().via, Via::Bearer);
        let bad = headers(&[("authorization", "Bearer bob-secreT")]);
        assert_eq!(auth.authenticate(&bad, peer, 0), None);

        let token = auth.token_owner("bob-secret").unwrap().clone();
        let value = auth.session_cookie(&token, 1000);
        let cookie = format!("other=1; {}={value}", auth.cookie_name());
        let with_cookie = headers(&[("cookie", &cookie)]);
        let approver = auth.authenticate(&with_cookie, peer, 1000).unwrap();
        assert_eq!(
            (approver.name.as_str(), approver.via),
            ("bob", Via::Session)
        );
        // Expired.
        assert_eq!(
            auth.authenticate(&with_cookie, peer, 1000 + SESSION_SECONDS),
            None
        );
        // Tampered: another name with the same MAC.
        let forged = value.replacen(&hex(b"bob"), &hex(b"eve"), 1);
        let forged = headers(&[("cookie", &format!("{}={forged}", auth.cookie_name()))]);
        assert_eq!(auth.authenticate(&forged, peer, 1000), None);
        // The token removed from the configuration ends its sessions.
        let mut other = self::auth();
        other.tokens.clear();
        assert_eq!(other.authenticate(&with_cookie, peer, 1000), None);
        assert!(auth.set_cookie("v").contains("HttpOnly; SameSite=Strict"));
        assert!(auth.set_cookie("v").starts_with("__Host-"));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_approver_and_expire() {
        let auth = auth();
        let token = auth.csrf_token("bob", 100);
        assert!(auth.csrf_valid("bob", &token, 100));
        assert!(!auth.csrf_valid("alice", &token, 100));
        assert!(!auth.csrf_valid("bob", &token, 100 + SESSION_SECONDS));
        assert!(!auth.csrf_valid("bob", "", 100));
        let (expiry, mac) = token.split_once('.').unwrap();
        let later = format!("{}.{mac}", expiry.parse::<u64>().unwrap() + 1000);
        assert!(!auth.csrf_valid("bob", &later, 100), "expiry is signed");
    }

    #[test]
    fn origin_checks() {
        let auth = auth();
        assert!(auth.same_origin(&headers(&[])));
        assert!(auth.same_origin(&headers(&[("origin", "https://approvals.example.com")])));
        assert!(!auth.same_origin(&headers(&[("origin", "https://evil.example.com")])));
        assert!(!auth.same_origin(&headers(&[("origin", "null")])));
        assert!(!auth.same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!auth.same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(auth.same_origin(&headers(&[(
            "referer",
            "https://approvals.example.com/approvals/x"
        )])));
        assert!(!auth.same_origin(&headers(&[(
            "referer",
            "https://approvals.example.com.evil.net/"
        )])));
    }

    #[test]
    fn token_lines() {
        let hash = token_hash("t");
        assert_eq!(
            ApproverToken::parse(&format!("bob={hash}")).unwrap().name,
            "bob"
        );
        assert_eq!(
            ApproverToken::parse(&format!("bob@example.com {hash}"))
                .unwrap()
                .name,
            "bob@example.com"
        );
        assert!(ApproverToken::parse("bob=sha256:00").is_err());
        assert!(ApproverToken::parse(&format!("={hash}")).is_err());
        assert!(ApproverToken::parse("bob").is_err());
    }
}
