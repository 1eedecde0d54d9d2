use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn spellings_of_one_resource_are_one_resource() {
    for spelling in [
        "file:///srv/.env",
        "FILE:///srv/.env",
        "file:///srv/public/../.env",
        "file:///srv/public/%2e%2e/.env",
        "file:///srv/public/%2E%2E/.env",
        "file:///srv/./public/./../.env",
        "file:///srv//public//..//.env",
        "file:///srv/%2Eenv/../.env",
        "file:///%73rv/.env",
        "file://localhost/srv/.env",
        "file://LOCALHOST/srv/public/../.env",
        "file://%6cocalhost/srv/.env",
    ] {
        assert_eq!(
            normalize(spelling).as_deref(),
            Ok("file:///srv/.env"),
            "{spelling}"
        );
    }
}

#[test]
fn scheme_and_host_fold_case_paths_do_not() {
    assert_eq!(
        normalize("HTTPS://Example.COM:8443/A/b?Q=%7e#F").as_deref(),
        Ok("https://example.com:8443/A/b?Q=~#F")
    );
    assert_eq!(
        normalize("https://u%41@H/x").as_deref(),
        Ok("https://uA@h/x")
    );
    // Escapes of reserved characters stay escaped, in upper case.
    assert_eq!(
        normalize("file:///a%3ab%20c").as_deref(),
        Ok("file:///a%3Ab%20C".replace("C", "c").as_str())
    );
    // Only file: collapses slashes.
    assert_eq!(normalize("https://h/a//b").as_deref(), Ok("https://h/a//b"));
    assert_eq!(normalize("file:///a//b/").as_deref(), Ok("file:///a/b/"));
    // Opaque and custom URIs.
    assert_eq!(
        normalize("urn:isbn:0451450523").as_deref(),
        Ok("urn:isbn:0451450523")
    );
    assert_eq!(
        normalize("greeting://World/x/.").as_deref(),
        Ok("greeting://world/x/")
    );
}

#[test]
fn ambiguous_spellings_are_refused() {
    let cases = [
        ("file:///srv/public/..%2f.env", UriError::EncodedSeparator),
        ("file:///srv/public/..%2F.env", UriError::EncodedSeparator),
        ("file:///srv/public/..%5c.env", UriError::EncodedSeparator),
        ("file:///srv/public\\..\\.env", UriError::Backslash),
        ("file:///srv/public/%00.env", UriError::Control),
        ("file:///srv/public/\u{0}.env", UriError::Control),
        (
            "file:///srv/public/%252e%252e/.env",
            UriError::DoubleEncoded,
        ),
        ("file:///srv/public/%2", UriError::BadEscape),
        ("file:///srv/public/%zz", UriError::BadEscape),
        ("file:///../etc/passwd", UriError::AboveRoot),
        ("file:///srv/../../etc/passwd", UriError::AboveRoot),
        ("file:///srv/%2e%2e/%2e%2e/etc", UriError::AboveRoot),
        ("custom://h/a/../../b", UriError::AboveRoot),
        ("file://evil/srv/.env", UriError::FileHost),
        ("file://user@localhost/srv/.env", UriError::FileHost),
    ];
    for (uri, error) in cases {
        assert_eq!(normalize(uri), Err(error.clone()), "{uri}");
    }
}

#[test]
fn paths_under_a_base() {
    for (value, base, under) in [
        ("/srv/public/readme.md", "/srv/public", true),
        ("/srv/public", "/srv/public/", true),
        ("/srv/public2/x", "/srv/public", false),
        ("/srv/public/../.env", "/srv/public", false),
        ("/srv/public/%2e%2e/.env", "/srv/public", false),
        ("/srv/public/..%2f.env", "/srv/public", false),
        ("src/main.py", "src/", true),
        ("src/%2e%2e/secrets.env", "src/", false),
        ("src/./lib/../main.py", "src", true),
        ("a/../../etc", "a", false),
        ("a/../../etc", "", false),
        ("//srv///public//x", "/srv/public", true),
        ("/anything", "/", true),
        ("relative", "/", false),
        ("file:///srv/public/x", "file:///srv/public", true),
        ("file:///srv/public/../x", "file:///srv/public", false),
        ("/srv/public/x", "file:///srv/public", false),
    ] {
        assert_eq!(is_under(value, base), under, "{value} under {base}");
    }
}
