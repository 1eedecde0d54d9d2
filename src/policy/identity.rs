//! Who is calling: the grant a request belongs to, from a header, a bearer
//! token the gate knows, or a claim of a JWT that Envoy already verified.

use crate::lookup::HashMap;

use sha2::{Digest, Sha256};

use super::document::{IdentityDocument, Object};
use super::{ConfigError, Errors, ANONYMOUS_GRANT};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Every caller is `anonymous`.
    Anonymous,
    /// The value of this (lowercase) request header names the grant.
    Header(String),
    /// SHA-256 of the `Authorization: Bearer` token (lowercase hex) → grant.
    /// Unknown or missing tokens are refused (HTTP 401).
    BearerTokens(HashMap<String, String>),
    /// A claim of the JWT payload Envoy's jwt_authn filter stored as dynamic
    /// metadata under `provider_metadata` (its `payload_in_metadata`).
    JwtClaim {
        provider_metadata: String,
        claim: String,
        /// A claim of the same payload naming the caller's role.
        role_claim: Option<String>,
    },
}

/// Why a request has no acceptable identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    MissingToken,
    UnknownToken,
}

impl IdentityError {
    pub fn message(&self) -> &'static str {
        match self {
            IdentityError::MissingToken => "Unauthorized: a bearer token is required",
            IdentityError::UnknownToken => "Unauthorized: unknown bearer token",
        }
    }
}

impl Identity {
    /// The identity a policy names; its errors go to `errors` (and the
    /// policy is refused).
    pub(super) fn compile(document: Option<IdentityDocument>, errors: &mut Errors) -> Identity {
        let Some(document) = document else {
            return Identity::Anonymous;
        };
        let given = [
            document.header.is_some(),
            document.bearer_tokens.is_some(),
            document.jwt_claim.is_some(),
        ];
        if given.iter().filter(|given| **given).count() != 1 {
            errors.push(ConfigError::new(
                "identity",
                "give exactly one of `header`, `bearer_tokens`, `jwt_claim`",
            ));
            return Identity::Anonymous;
        }
        if let Some(header) = document.header {
            return Identity::Header(header.0);
        }
        if let Some(Object(jwt)) = document.jwt_claim {
            return Identity::JwtClaim {
                provider_metadata: jwt.provider_metadata.0,
                claim: jwt.claim.0,
                role_claim: jwt.role_claim.map(|claim| claim.0),
            };
        }
        let mut tokens = HashMap::default();
        for (hash, grant) in document
            .bearer_tokens
            .map(|tokens| tokens.0)
            .unwrap_or_default()
        {
            let normalized = hash.to_ascii_lowercase();
            if normalized.len() != 64 || !normalized.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                errors.push(ConfigError::new(
                    format!("identity.bearer_tokens.{hash}"),
                    "keys are SHA-256 hashes of tokens: 64 hex digits (e.g. `printf %s \"$TOKEN\" | sha256sum`)",
                ));
            } else if tokens.insert(normalized, grant.0).is_some() {
                errors.push(ConfigError::new(
                    format!("identity.bearer_tokens.{hash}"),
                    "the same token hash is listed twice",
                ));
            }
        }
        Identity::BearerTokens(tokens)
    }

    /// The grant for a bearer-token identity, from the `Authorization` header.
    pub fn grant_for_bearer<'a>(
        tokens: &'a HashMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<&'a str, IdentityError> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(IdentityError::MissingToken)?;
        tokens
            .get(&sha256_hex(token.as_bytes()))
            .map(String::as_str)
            .ok_or(IdentityError::UnknownToken)
    }

    /// A JWT claim's value as Envoy's `get_property` returns it, as grant text.
    ///
    /// Envoy gives the bytes without their type (measured with Envoy 1.40 and
    /// `jwt_authn`'s `payload_in_metadata`): a string claim is its UTF-8
    /// bytes; a number is an IEEE 754 double, 8 bytes little-endian (JSON
    /// numbers are doubles in the metadata `Struct`, so `7` comes as `7.0`);
    /// a boolean is one byte; a list or an object is proxy-wasm's serialized
    /// pairs. Strings and integral numbers name grants (`1234` → `"1234"`);
    /// anything else is `None`. Text with control characters is not taken as
    /// a string: every integer below 2^45 has a zero byte in its encoding.
    pub fn claim_text(bytes: &[u8]) -> Option<String> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if !text.chars().any(char::is_control) {
                return Some(text.to_string());
            }
        }
        let number = f64::from_le_bytes(<[u8; 8]>::try_from(bytes).ok()?);
        // 2^53: past it, not every integer is a double.
        (number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0)
            .then(|| format!("{}", number as i64))
    }

    /// The grant named by a header or claim value (empty or absent: anonymous).
    pub fn grant_from_value(value: Option<&str>) -> &str {
        value
            .filter(|value| !value.is_empty())
            .unwrap_or(ANONYMOUS_GRANT)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sha256_matches_the_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_tokens_select_grants() {
        let tokens: HashMap<String, String> = [(sha256_hex(b"s3cret"), "ci-runner".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            Identity::grant_for_bearer(&tokens, Some("Bearer s3cret")),
            Ok("ci-runner")
        );
        assert_eq!(
            Identity::grant_for_bearer(&tokens, Some("bearer  s3cret ")),
            Ok("ci-runner")
        );
        assert_eq!(
            Identity::grant_for_bearer(&tokens, Some("Bearer nope")),
            Err(IdentityError::UnknownToken)
        );
        for missing in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Basic abc"),
            Some("s3cret"),
        ] {
            assert!(
                Identity::grant_for_bearer(&tokens, missing).is_err(),
                "{missing:?}"
            );
        }
    }

    #[test]
    fn claims_are_read_in_the_encoding_envoy_gives_them() {
        // The bytes Envoy 1.40 returned for `"sub": "ci-runner"`, `7`, `42.5`,
        // `true`, `["a", "b"]` and `{"x": "y"}`.
        assert_eq!(
            Identity::claim_text(b"ci-runner").as_deref(),
            Some("ci-runner")
        );
        assert_eq!(
            Identity::claim_text(&[0, 0, 0, 0, 0, 0, 0x1c, 0x40]).as_deref(),
            Some("7")
        );
        assert_eq!(
            Identity::claim_text(&1234f64.to_le_bytes()).as_deref(),
            Some("1234")
        );
        assert_eq!(
            Identity::claim_text(&(-5f64).to_le_bytes()).as_deref(),
            Some("-5")
        );
        assert_eq!(
            Identity::claim_text(&[0, 0, 0, 0, 0, 0x40, 0x45, 0x40]),
            None
        );
        assert_eq!(Identity::claim_text(&[1]), None);
        let list = [
            2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0, b'b', 0, 0,
        ];
        assert_eq!(Identity::claim_text(&list), None);
        let object = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'x', 0, b'y', 0];
        assert_eq!(Identity::claim_text(&object), None);
        // An 8-character string stays a string.
        assert_eq!(
            Identity::claim_text(b"ci-runne").as_deref(),
            Some("ci-runne")
        );
        assert_eq!(Identity::claim_text(b"").as_deref(), Some(""));
    }

    #[test]
    fn empty_values_are_anonymous() {
        assert_eq!(Identity::grant_from_value(None), "anonymous");
        assert_eq!(Identity::grant_from_value(Some("")), "anonymous");
        assert_eq!(Identity::grant_from_value(Some("alice")), "alice");
    }
}
