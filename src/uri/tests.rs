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
fn default_ports_final_dots_and_rfc_8089_forms_are_one_resource() {
    for (spellings, normal) in [
        (
            &[
                "https://internal.example/x",
                "https://internal.example:443/x",
                "https://internal.example:0443/x",
                "https://internal.example:/x",
                "https://Internal.Example./x",
                "HTTPS://internal.example.:443/x",
            ][..],
            "https://internal.example/x",
        ),
        (&["http://h:80/", "http://h/", "http://h.:/"], "http://h/"),
        (&["http://h:443/", "http://h:00443/"], "http://h:443/"),
        (&["wss://h:443/a", "wss://h/a"], "wss://h/a"),
        (&["ws://h:80/a", "ws://h/a"], "ws://h/a"),
        (&["ftp://h:21/a", "ftp://h/a"], "ftp://h/a"),
        (&["https://h:0/a", "https://h:000/a"], "https://h:0/a"),
        (
            &[
                "file:/etc/passwd",
                "file:///etc/passwd",
                "file://localhost./etc/passwd",
                "file:////etc//passwd",
            ],
            "file:///etc/passwd",
        ),
        (&["http://127.0.0.1:80/x"], "http://127.0.0.1/x"),
        (&["http://[::1]:80/x", "http://[::1]/x"], "http://[::1]/x"),
        (&["http://[::1]:8080/x"], "http://[::1]:8080/x"),
        (&["custom://h:443/x"], "custom://h:443/x"),
        (&["https://h/a?b=../c"], "https://h/a?b=../c"),
        // Web readers all split off the query and fragment.
        (
            &["https://example.com/search?path=a/../b"],
            "https://example.com/search?path=a/../b",
        ),
        (&["https://h/#/../login"], "https://h/#/../login"),
        (
            &["https://h:65535/x", "https://h:0065535/x"],
            "https://h:65535/x",
        ),
        // Another scheme's authority is opaque to WHATWG parsers: user
        // information, numbers, dots and non-ASCII as written (host case
        // folded, as before).
        (&["users://123/profile"], "users://123/profile"),
        (
            &["postgres://postgres@LocalHost/mydb/users/schema"],
            "postgres://postgres@localhost/mydb/users/schema",
        ),
        (&["s3://my-logs.2024/key"], "s3://my-logs.2024/key"),
        (
            &[
                "notes://\u{65e5}\u{672c}/x",
                "notes://%E6%97%A5%E6%9C%AC/x",
                "notes://%e6%97%a5%e6%9c%ac/x",
            ],
            "notes://%E6%97%A5%E6%9C%AC/x",
        ),
        (&["db://my%20db/t", "db://my db/t"], "db://my%20db/t"),
    ] {
        for spelling in spellings {
            assert_eq!(normalize(spelling).as_deref(), Ok(normal), "{spelling}");
        }
    }
}

/// What WHATWG parsers (the TypeScript SDK's `new URL`, pydantic's `AnyUrl`)
/// make of a URI, which a server then looks the resource up by, is the same
/// resource here (each found through a live SDK server reaching a protected
/// resource with the first spelling).
#[test]
fn spellings_whatwg_parsers_rewrite_are_one_resource() {
    for (spellings, normal) in [
        (
            &[
                "file:///srv/secret.txt ",
                " file:///srv/secret.txt",
                "  file:///srv/secret.txt  ",
            ][..],
            "file:///srv/secret.txt",
        ),
        (
            &[
                "file:///srv/caf\u{e9}.txt",
                "file:///srv/caf%C3%A9.txt",
                "file:///srv/caf%c3%a9.txt",
            ],
            "file:///srv/caf%C3%A9.txt",
        ),
        (
            &["file:///srv/my notes.txt", "file:///srv/my%20notes.txt"],
            "file:///srv/my%20notes.txt",
        ),
        (
            &[
                "file:///srv/a{b}\"c<d>`'",
                "file:///srv/a%7Bb%7D%22c%3Cd%3E%60%27",
            ],
            "file:///srv/a%7Bb%7D%22c%3Cd%3E%60%27",
        ),
        (
            &[
                "https://intranet.example",
                "https://intranet.example/",
                "https://intranet.example:443",
            ],
            "https://intranet.example/",
        ),
        (
            &[
                "https://[0:0:0:0:0:0:0:1]/admin",
                "https://[::0001]/admin",
                "https://[::1]:443/admin",
                "https://[0::1]/admin",
            ],
            "https://[::1]/admin",
        ),
        (
            &["https://[2001:DB8:0:0:1:0:0:1]/x"],
            "https://[2001:db8::1:0:0:1]/x",
        ),
        (
            &[
                "file:///C|/secret.txt",
                "file:///C:/secret.txt",
                "file:/C|/secret.txt",
            ],
            "file:///C:/secret.txt",
        ),
        (
            &["https://h/x?q=a b&r=\u{e9}#f g"],
            "https://h/x?q=a%20b&r=%C3%A9#f%20g",
        ),
    ] {
        for spelling in spellings {
            assert_eq!(normalize(spelling).as_deref(), Ok(normal), "{spelling:?}");
        }
    }
    for refused in [
        "https://[zz]/x",
        "https://[::1/x",
        "https://[1:2:3:4:5:6:7:8:9]/",
    ] {
        assert_eq!(normalize(refused), Err(UriError::Host), "{refused}");
    }
    // A drive letter only as the first segment.
    assert_eq!(
        normalize("file:///srv/C|/x").as_deref(),
        Ok("file:///srv/C|/x")
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
        ("file://user@localhost/srv/.env", UriError::UserInfo),
        ("https://u%41@H/x", UriError::UserInfo),
        ("https://user@internal.example/x", UriError::UserInfo),
        // Dot segments a server that keeps the query or fragment in the
        // path would climb with.
        ("file:///srv/public/x?/../../.env", UriError::DotsAfterPath),
        ("file:///srv/public/x#/../../.env", UriError::DotsAfterPath),
        ("file:///srv/public/x?%2e%2e/.env", UriError::DotsAfterPath),
        (
            "file:///srv/public/x?/..%2F..%2F.env",
            UriError::DotsAfterPath,
        ),
        (
            "file:///srv/public/x?/..%5C..%5C.env",
            UriError::DotsAfterPath,
        ),
        (
            "file:///srv/public/x#%2E%2E/%2e%2e/.env",
            UriError::DotsAfterPath,
        ),
        ("custom://h/x?/../../y", UriError::DotsAfterPath),
        // Hosts a WHATWG parser maps to another host.
        ("https://\u{ff49}nternal.example/x", UriError::Host),
        ("https://internal\u{3002}example/x", UriError::Host),
        ("https://internal%E3%80%82example/x", UriError::Host),
        ("http://2130706433/x", UriError::Host),
        ("http://127.1/x", UriError::Host),
        ("http://0x7f.0.0.1/x", UriError::Host),
        ("http://127.000.0.1/x", UriError::Host),
        ("http://256.0.0.1/x", UriError::Host),
        ("http://example.123/x", UriError::Host),
        ("http://h:8o/x", UriError::Host),
        ("http://[::1/x", UriError::Host),
        ("https://h:65536/x", UriError::Host),
        ("https://h:99999/x", UriError::Host),
        ("https://h:0000065536/x", UriError::Host),
        ("https://h../x", UriError::Host),
        // Web URIs without `//host`, and relative file paths.
        ("https:internal.example/x", UriError::NoHost),
        ("https:/internal.example/x", UriError::NoHost),
        ("https:///internal.example/x", UriError::NoHost),
        ("https://:443/x", UriError::NoHost),
        ("http:", UriError::NoHost),
        ("file:etc/passwd", UriError::RelativeFile),
        ("file:", UriError::RelativeFile),
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

#[test]
fn the_bare_form_is_what_servers_read() {
    for (uri, bare) in [
        ("https://h/admin#x", Some("https://h/admin")),
        ("https://h/admin?a=1#x", Some("https://h/admin")),
        ("https://h/admin/", Some("https://h/admin")),
        ("https://h//admin//", Some("https://h/admin")),
        ("https://h/", None),
        ("https://h", None),
        ("https://h?x", Some("https://h")),
        ("file:///srv/a.txt/", Some("file:///srv/a.txt")),
        ("file:///", None),
        ("file:///srv/a.txt", None),
        ("users://123/profile?x", Some("users://123/profile")),
        ("urn:isbn:123#x", Some("urn:isbn:123")),
    ] {
        assert_eq!(super::bare(uri).as_deref(), bare, "{uri}");
    }
}
