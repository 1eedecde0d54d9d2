use serde_json::json;

use super::*;
use crate::decision::Outcome;
use crate::target::Kind;
use crate::testing::{ContendedStore, EnvoySharedData, FixedClock};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> Policy {
    Policy::from_json(include_bytes!("../../policy.json")).unwrap()
}

fn tools_call(id: u64, tool: &str) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"script":"secret value","timeout":5}}})
        .to_string()
        .into_bytes()
}

/// [`super::inspect_request`] for a request whose exchange then ends: its
/// id's claim in the session is released, as the exchange releases it when
/// the answer is complete (these tests send ids again, one at a time).
fn inspect_request<S: SharedStore + ?Sized, C: Clock + ?Sized>(
    policy: &Policy,
    store: &S,
    clock: &C,
    caller: CallerScope<'_>,
    headers: McpHeaders<'_>,
    body: &[u8],
) -> Inspection {
    let inspection = super::inspect_request(policy, store, clock, caller, headers, body);
    inspection.answered(store, clock.unix_time().as_secs());
    inspection
}

/// [`super::inspect_body`], the exchange then ended (see [`inspect_request`]).
fn inspect_body<S: SharedStore + ?Sized, C: Clock + ?Sized>(
    policy: &Policy,
    store: &S,
    clock: &C,
    caller: CallerScope<'_>,
    body: &[u8],
) -> Inspection {
    inspect_request(policy, store, clock, caller, McpHeaders::default(), body)
}

const ALICE: CallerScope<'static> = CallerScope {
    grant: "alice",
    session: Some("sess-1"),
    role: None,
};

#[test]
fn allowed_call_is_forwarded_and_audited_without_values() {
    let (store, clock) = (
        EnvoySharedData::default(),
        FixedClock::at_seconds(1_800_000_000),
    );
    let inspection = inspect_body(
        &policy(),
        &store,
        &clock,
        ALICE,
        &tools_call(1, "asyncExecuteCode"),
    );
    assert_eq!(inspection.reply, None);
    assert_eq!(inspection.reservations.len(), 1);
    assert_eq!(inspection.outcome(), Some(Outcome::Allowed));
    let line = inspection.audit.unwrap().to_log_line();
    assert!(
        line.contains(r#""argument_keys":["script","timeout"]"#),
        "{line}"
    );
    assert!(
        line.contains(r#""grant":"alice""#) && line.contains(r#""session":"sess-1""#),
        "{line}"
    );
    assert!(!line.contains("secret value"), "{line}");
}

#[test]
fn the_repository_policy_limits_async_execution_to_ten_a_minute() {
    let (store, clock) = (
        EnvoySharedData::default(),
        FixedClock::at_seconds(1_800_000_030),
    );
    let policy = policy();
    for id in 0..10 {
        let inspection = inspect_body(
            &policy,
            &store,
            &clock,
            ALICE,
            &tools_call(id, "asyncExecuteCode"),
        );
        assert_eq!(inspection.outcome(), Some(Outcome::Allowed), "call {id}");
    }
    let refused = inspect_body(
        &policy,
        &store,
        &clock,
        ALICE,
        &tools_call(10, "asyncExecuteCode"),
    );
    assert_eq!(refused.outcome(), Some(Outcome::RateLimited));
    let json = refused.reply.unwrap().json().unwrap();
    assert_eq!(json["id"], 10);
    assert_eq!(json["error"]["data"]["retry_after_seconds"], 30);
    assert_eq!(
        refused.audit.unwrap().rule.as_deref(),
        Some("/tools/asyncExecuteCode/limits/0")
    );
    // Another grant is not affected.
    let bob = CallerScope {
        grant: "bob",
        session: None,
        role: None,
    };
    assert_eq!(
        inspect_body(
            &policy,
            &store,
            &clock,
            bob,
            &tools_call(1, "asyncExecuteCode")
        )
        .outcome(),
        Some(Outcome::Allowed)
    );
    // The next minute starts afresh.
    clock.set_seconds(1_800_000_060);
    assert_eq!(
        inspect_body(
            &policy,
            &store,
            &clock,
            ALICE,
            &tools_call(11, "asyncExecuteCode")
        )
        .outcome(),
        Some(Outcome::Allowed)
    );
}

#[test]
fn denied_and_unlisted_tools_are_answered() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let denied = inspect_body(
        &policy(),
        &store,
        &clock,
        ALICE,
        &tools_call(3, "deleteWorkspace"),
    );
    let json = denied.reply.unwrap().json().unwrap();
    assert_eq!(json["error"]["code"], -31001);
    assert_eq!(json["error"]["data"]["rule"], "/tools/deleteWorkspace");
    let unlisted = inspect_body(&policy(), &store, &clock, ALICE, &tools_call(4, "runShell"));
    assert_eq!(
        unlisted.reply.unwrap().json().unwrap()["error"]["data"]["rule"],
        "/default"
    );
    assert_eq!(unlisted.audit.unwrap().decision, Outcome::Denied);
}

#[test]
fn other_messages_pass_unaudited() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let inspection = inspect_body(&policy(), &store, &clock, ALICE, body);
    assert_eq!(
        inspection,
        Inspection {
            reply: None,
            reservations: vec![],
            audit: None,
            filter_listing: None,
            global_check: None,
            observe: None,
            state_owner: None,
            approval: None,
            rewrite_body: None,
            remember_url_elicitation: false,
            // The id was claimed in alice's session while the listing is in
            // flight: the session's length, the session, the id's value.
            in_flight: Some(bindings::id_digest("6:sess-11")),
            warning: None,
        }
    );
}

#[test]
fn unreadable_bodies_are_refused_and_audited_as_invalid() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    for (body, code, id) in [
        (&b"{oops"[..], -32700, json!(null)),
        (b"[]", -32600, json!(null)),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
            -32602,
            json!(1),
        ),
    ] {
        let inspection = inspect_body(&policy(), &store, &clock, ALICE, body);
        let reply = inspection.reply.unwrap();
        let json = reply.json().unwrap();
        assert_eq!(
            (
                reply.status,
                json["error"]["code"].clone(),
                json["id"].clone()
            ),
            (400, json!(code), id),
            "{json}"
        );
        assert_eq!(inspection.audit.unwrap().decision, Outcome::Invalid);
    }
    let too_large = body_too_large(&policy(), &clock, ALICE);
    let reply = too_large.reply.unwrap();
    let json = reply.json().unwrap();
    assert_eq!(
        (reply.status, json["error"]["code"].clone()),
        (413, json!(-32600))
    );
    assert_eq!(json["error"]["data"]["max_body_bytes"], 1_048_576);
    assert_eq!(too_large.audit.unwrap().decision, Outcome::Invalid);
}

#[test]
fn mirrored_headers_must_match_the_body() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let policy = Policy::from_json(br#"{"version":"1","default":"allow"}"#).unwrap();
    let body = tools_call(7, "asyncExecuteCode");
    let inspect = |method: Option<&str>, name: Option<&str>, body: &[u8]| {
        let headers = McpHeaders {
            method,
            name,
            ..McpHeaders::default()
        };
        inspect_request(&policy, &store, &clock, ALICE, headers, body)
    };
    // Forwarded: no reply.
    let forwarded = |method: Option<&str>, name: Option<&str>, body: &[u8]| {
        let inspection = inspect(method, name, body);
        assert_eq!(inspection.reply, None, "{method:?} {name:?}");
    };
    // Refused as a mismatch: HTTP 400, -32020, the request's id, audited as invalid.
    let mismatch =
        |method: Option<&str>, name: Option<&str>, body: &[u8], id: serde_json::Value| {
            let inspection = inspect(method, name, body);
            let reply = inspection
                .reply
                .unwrap_or_else(|| panic!("{method:?} {name:?} was forwarded"));
            let json = reply.json().unwrap();
            assert_eq!(
                (
                    reply.status,
                    json["error"]["code"].clone(),
                    json["id"].clone()
                ),
                (400, json!(-32020), id),
                "{method:?} {name:?}: {json}"
            );
            assert_eq!(inspection.audit.unwrap().decision, Outcome::Invalid);
        };
    forwarded(Some("tools/call"), Some("asyncExecuteCode"), &body);
    forwarded(None, None, &body);
    mismatch(Some("tools/list"), None, &body, json!(7));
    mismatch(None, Some("deleteWorkspace"), &body, json!(7));
    // Other methods: Mcp-Name mirrors params.name or params.uri.
    let prompt = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#;
    forwarded(Some("prompts/get"), Some("p"), prompt);
    mismatch(Some("prompts/get"), Some("q"), prompt, json!(1));
    let read =
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
    forwarded(Some("resources/read"), Some("file:///a"), read);
    mismatch(None, Some("file:///b"), read, json!(1));
    let list = br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#;
    mismatch(None, Some("x"), list, json!("l"));
    let notification = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    forwarded(Some("notifications/initialized"), None, notification);
    mismatch(Some("tools/list"), None, notification, json!(null));
    // An extension method (rmcp's skills, directory reads): Mcp-Name may
    // mirror its params.name or params.uri, and is never required.
    let skill = br#"{"jsonrpc":"2.0","id":2,"method":"skills/get","params":{"name":"s"}}"#;
    forwarded(Some("skills/get"), Some("s"), skill);
    forwarded(Some("skills/get"), Some("=?base64?cw==?="), skill);
    forwarded(Some("skills/get"), None, skill);
    mismatch(Some("skills/get"), Some("t"), skill, json!(2));
    let directory = br#"{"jsonrpc":"2.0","id":3,"method":"resources/directory/read","params":{"uri":"file:///srv/"}}"#;
    forwarded(
        Some("resources/directory/read"),
        Some("file:///srv/"),
        directory,
    );
    mismatch(
        Some("resources/directory/read"),
        Some("file:///etc/"),
        directory,
        json!(3),
    );
    let bare = br#"{"jsonrpc":"2.0","id":4,"method":"skills/list"}"#;
    mismatch(Some("skills/list"), Some("s"), bare, json!(4));
}

#[test]
fn failure_mode_decides_what_an_undecidable_call_does() {
    let clock = FixedClock::at_seconds(0);
    let limited =
        r#""tools":{"t":{"limits":[{"counter":"c","window":60,"max":5,"scope":"global"}]}}"#;
    let closed =
        Policy::from_json(format!(r#"{{"version":"1","default":"deny",{limited}}}"#).as_bytes())
            .unwrap();
    let refused = inspect_body(
        &closed,
        &crate::testing::UnavailableStore,
        &clock,
        ALICE,
        &tools_call(1, "t"),
    );
    assert_eq!(refused.outcome(), Some(Outcome::Failed));
    assert_eq!(
        refused.reply.unwrap().json().unwrap()["error"]["code"],
        -32603
    );

    let open = Policy::from_json(
        format!(r#"{{"version":"1","default":"deny","failure_mode":"open",{limited}}}"#).as_bytes(),
    )
    .unwrap();
    let passed = inspect_body(
        &open,
        &crate::testing::UnavailableStore,
        &clock,
        ALICE,
        &tools_call(1, "t"),
    );
    assert_eq!(passed.reply, None);
    let audit = passed.audit.unwrap();
    assert_eq!((audit.decision, audit.enforced), (Outcome::Failed, false));
}

/// SECURITY.md: "When the counter store fails or stays contended past 64
/// compare-and-swap attempts, failure_mode: closed (the default) answers
/// -32603 and forwards nothing".
#[test]
fn a_counter_that_stays_contended_fails_the_call_closed() {
    let clock = FixedClock::at_seconds(1_800_000_000);
    let policy = Policy::from_json(
        br#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":60,"max":5,"scope":"global"}]}}}"#,
    )
    .unwrap();
    let store = ContendedStore::always();
    // Without a session: no request id to claim, only the counter.
    let caller = CallerScope {
        session: None,
        ..ALICE
    };
    let refused = inspect_body(&policy, &store, &clock, caller, &tools_call(1, "t"));
    assert_eq!(store.swaps(), crate::ratelimit::MAX_CAS_ATTEMPTS);
    assert_eq!(refused.outcome(), Some(Outcome::Failed));
    assert!(refused.reservations.is_empty());
    let reply = refused.reply.unwrap();
    let json = reply.json().unwrap();
    assert_eq!(
        (
            reply.status,
            json["error"]["code"].clone(),
            json["id"].clone()
        ),
        (200, json!(-32603), json!(1)),
        "{json}"
    );
    assert_eq!(json["error"]["data"]["tool"], "t");
    let audit = refused.audit.unwrap();
    assert!(audit.enforced);
    assert_eq!(audit.tool.as_deref(), Some("t"));
}

#[test]
fn a_name_differing_only_in_case_never_escapes_its_rule() {
    let (store, clock) = (EnvoySharedData::default(), FixedClock::at_seconds(0));
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow","hide":["secretTool"],"tools":{"deleteWorkspace":{"action":"deny"},"limited":{"limits":[{"counter":"c","window":60,"max":1,"scope":"global"}]}}}"#,
    )
    .unwrap();
    let reply = |tool: &str| {
        inspect_body(&policy, &store, &clock, ALICE, &tools_call(1, tool))
            .reply
            .map(|r| r.json().unwrap())
    };
    let denied = reply("DELETEWORKSPACE").unwrap();
    assert_eq!(denied["error"]["code"], -31001);
    assert_eq!(denied["error"]["data"]["rule"], "/tools/deleteWorkspace");
    // A variant of an allowed-but-limited tool is refused too, not counted elsewhere.
    assert_eq!(reply("Limited").unwrap()["error"]["code"], -31001);
    // A variant of a hidden tool looks just as missing.
    assert_eq!(
        reply("SecretTool").unwrap(),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: SecretTool"}})
    );
    assert_eq!(reply("unrelated"), None);
}

// ---- The whole MCP surface ----

/// A filesystem-style server: only /srv/public may be read, one prompt is
/// hidden and one is limited, some methods are denied.
const FILES: &str = r#"{
  "version": "1", "default": "deny",
  "hide": ["prompt:secret_prompt", "resource:file:///srv/private/*"],
  "prompts": {
    "summarize": { "require": { "args.text": { "max_length": 20 } } },
    "review_*": {}
  },
  "resources": {
    "file:///srv/public/*": {},
    "file:///srv/public/docs/*": { "limits": [{ "counter": "docs", "window": "minute", "max": 1, "scope": "grant" }] }
  },
  "methods": { "logging/setLevel": "deny", "other": "deny" }
}"#;

fn request(id: u64, method: &str, params: serde_json::Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
        .to_string()
        .into_bytes()
}

fn inspect(policy: &Policy, store: &EnvoySharedData, body: &[u8]) -> Inspection {
    inspect_body(
        policy,
        store,
        &FixedClock::at_seconds(1_800_000_000),
        ALICE,
        body,
    )
}

fn reply_of(inspection: &Inspection) -> (u16, serde_json::Value) {
    let reply = inspection.reply.as_ref().expect("a reply");
    (reply.status, reply.json().unwrap())
}

#[test]
fn resources_are_read_only_where_the_policy_says_whatever_the_spelling() {
    let policy = Policy::from_json(FILES.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let read = |uri: &str| {
        inspect(
            &policy,
            &store,
            &request(1, "resources/read", json!({ "uri": uri })),
        )
    };
    let allowed = read("file:///srv/public/readme.md");
    assert_eq!(allowed.reply, None);
    let audit = allowed.audit.unwrap();
    assert_eq!(
        (audit.kind, audit.target.as_deref()),
        (Some(Kind::Resource), Some("file:///srv/public/readme.md"))
    );
    assert_eq!(audit.method.as_deref(), Some("resources/read"));
    for outside in [
        "file:///srv/.env",
        "file:///srv/public/../.env",
        "file:///srv/public/%2e%2e/.env",
        "FILE:///srv/public/./../.env",
        "file:///srv//public/..//.env",
    ] {
        let (status, json) = reply_of(&read(outside));
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (200, json!(-31001)),
            "{outside}"
        );
        assert_eq!(
            json["error"]["data"]["resource"], "file:///srv/.env",
            "{outside}"
        );
        assert_eq!(json["error"]["data"]["rule"], "/default", "{outside}");
    }
    for ambiguous in [
        "file:///srv/public/..%2f.env",
        "file:///srv/public/..\\.env",
        "file:///srv/public/%00",
        "file:///../etc/passwd",
        "file:///srv/public/%252e%252e/.env",
    ] {
        let (status, json) = reply_of(&read(ambiguous));
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (400, json!(-32602)),
            "{ambiguous}"
        );
    }
    // The most specific pattern decides: docs/ has a limit, the rest not.
    assert_eq!(read("file:///srv/public/docs/a.md").reply, None);
    let (_, json) = reply_of(&read("file:///srv/public/docs/b.md"));
    assert_eq!(json["error"]["code"], -31002);
    assert_eq!(read("file:///srv/public/other.md").reply, None);
    // A hidden resource is answered as an unlisted one.
    let (_, hidden) = reply_of(&read("file:///srv/private/key"));
    assert_eq!(hidden["error"]["code"], -31001);
    assert_eq!(hidden["error"]["data"]["rule"], "/default");
}

/// A refused resource stays refused with a query, a fragment, a final `/`
/// or doubled slashes: many servers read those as the resource itself
/// (a fragment is never sent, file servers ignore the query, path
/// resolvers drop the final `/`). A default does not reach them: an exact
/// key with a query stays usable.
#[test]
fn a_refused_resource_is_refused_in_every_spelling_servers_read_as_it() {
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow",
            "hide":["resource:file:///srv/hidden.txt"],
            "resources":{"https://api.example.com/admin":{"action":"deny"},
                         "file:///srv/public/secret.txt":{"action":"deny"}}}"#,
    )
    .unwrap();
    let store = EnvoySharedData::default();
    let read = |uri: &str| {
        inspect(
            &policy,
            &store,
            &request(1, "resources/read", json!({ "uri": uri })),
        )
    };
    for (uri, rule) in [
        (
            "https://api.example.com/admin#x",
            "/resources/https:~1~1api.example.com~1admin",
        ),
        (
            "https://api.example.com/admin?x",
            "/resources/https:~1~1api.example.com~1admin",
        ),
        (
            "https://api.example.com/admin/",
            "/resources/https:~1~1api.example.com~1admin",
        ),
        (
            "https://api.example.com//admin",
            "/resources/https:~1~1api.example.com~1admin",
        ),
        (
            "file:///srv/public/secret.txt?",
            "/resources/file:~1~1~1srv~1public~1secret.txt",
        ),
        (
            "file:///srv/public/secret.txt/.",
            "/resources/file:~1~1~1srv~1public~1secret.txt",
        ),
    ] {
        let (_, json) = reply_of(&read(uri));
        assert_eq!(json["error"]["code"], -31001, "{uri}");
        assert_eq!(json["error"]["data"]["rule"], rule, "{uri}");
    }
    for uri in [
        "file:///srv/hidden.txt?x",
        "file:///srv/hidden.txt#x",
        "file:///srv/hidden.txt/",
    ] {
        let inspection = read(uri);
        assert_eq!(inspection.outcome(), Some(Outcome::Hidden), "{uri}");
    }
    assert_eq!(read("file:///srv/public/other.txt?x").reply, None);
    // Under a deny default, an exact key with a query is what it names.
    let policy = Policy::from_json(
        br#"{"version":"1","default":"deny","resources":{"https://api.example.com/data?format=json":{}}}"#,
    )
    .unwrap();
    let inspection = inspect(
        &policy,
        &store,
        &request(
            1,
            "resources/read",
            json!({ "uri": "https://api.example.com/data?format=json" }),
        ),
    );
    assert_eq!(inspection.reply, None);
    // Subscriptions are checked the same way.
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow","hide":["resource:file:///srv/hidden.txt"]}"#,
    )
    .unwrap();
    let subscribe = inspect(
        &policy,
        &store,
        &request(
            2,
            "resources/subscribe",
            json!({ "uri": "file:///srv/hidden.txt?x" }),
        ),
    );
    assert!(subscribe.reply.is_some());
}

/// What `completion/complete` and `subscriptions/listen` name is read from
/// nested members: a letter-case variant of one (which a case-insensitive
/// decoder upstream would read instead) and a value of the wrong shape (a
/// string a server might read as a list) are refused, not passed.
/// Spellings a server may take for another name: a prompt name with blanks
/// at its ends, invisible or full-width characters; a resource path in
/// another letter case (case-insensitive file systems). Refused, not
/// decided as a name the policy does not know.
#[test]
fn names_a_server_may_read_as_another_are_refused() {
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow",
            "hide":["prompt:hidden_prompt", "resource:file:///srv/Hidden.txt"],
            "prompts":{"admin_prompt":{"action":"deny"}},
            "resources":{"file:///srv/public/secret.txt":{"action":"deny"}}}"#,
    )
    .unwrap();
    let store = EnvoySharedData::default();
    let get = |name: &str| {
        inspect(
            &policy,
            &store,
            &request(1, "prompts/get", json!({ "name": name })),
        )
    };
    for name in [
        "admin_prompt ",
        " admin_prompt",
        "\u{ff41}dmin_prompt",
        "admin\u{200b}_prompt",
        "admin_prompt\u{feff}",
        "admin\u{ad}_prompt",
        "hidden_prompt\t",
        "",
    ] {
        let (status, json) = reply_of(&get(name));
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (400, json!(-32602)),
            "{name:?}"
        );
    }
    // Names in any language stay usable.
    for name in ["review code", "résumé", "要約"] {
        assert_eq!(get(name).reply, None, "{name}");
    }
    let read = |uri: &str| {
        inspect(
            &policy,
            &store,
            &request(2, "resources/read", json!({ "uri": uri })),
        )
    };
    assert_eq!(
        read("file:///srv/hidden.txt").outcome(),
        Some(Outcome::Hidden)
    );
    let (_, json) = reply_of(&read("file:///srv/public/SECRET.txt"));
    assert_eq!(json["error"]["code"], -31001);
    assert_eq!(read("file:///srv/public/other.txt").reply, None);
    // The same letters escaped (`ı`, `ſ` as a normalised URI writes them):
    // a server decodes them before it folds.
    for uri in [
        "file:///srv/public/secret.txt",
        "file:///srv/public/%C5%BFecret.txt",
        "file:///srv/public/\u{17f}ecret.txt",
    ] {
        let (_, json) = reply_of(&read(uri));
        assert_eq!(json["error"]["code"], -31001, "{uri}");
    }
    assert_eq!(
        read("file:///srv/H%C4%B1dden.txt").outcome(),
        Some(Outcome::Hidden)
    );
    // Spellings WHATWG parsers (the SDKs' servers) rewrite to the resource.
    for uri in [
        "file:///srv/public/secret.txt ",
        " file:///srv/public/secret.txt",
    ] {
        let (_, json) = reply_of(&read(uri));
        assert_eq!(json["error"]["code"], -31001, "{uri:?}");
    }
}

/// Resources named the way WHATWG parsers write them are refused in every
/// spelling those parsers rewrite to that name.
#[test]
fn a_refused_resource_holds_for_what_whatwg_parsers_read() {
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow",
            "hide":["resource:file:///srv/caf\u00e9.txt"],
            "resources":{
              "file:///srv/my notes.txt":{"action":"deny"},
              "https://intranet.example/":{"action":"deny"},
              "https://[::1]/admin":{"action":"deny"},
              "file:///C:/secret.txt":{"action":"deny"}}}"#,
    )
    .unwrap();
    let store = EnvoySharedData::default();
    let read = |uri: &str| {
        inspect(
            &policy,
            &store,
            &request(2, "resources/read", json!({ "uri": uri })),
        )
    };
    for uri in [
        "file:///srv/my%20notes.txt",
        "file:///srv/my notes.txt ",
        "https://intranet.example",
        "https://INTRANET.example:443",
        "https://[0:0:0:0:0:0:0:1]/admin",
        "https://[::0001]/admin",
        "file:///C|/secret.txt",
    ] {
        let (_, json) = reply_of(&read(uri));
        assert_eq!(json["error"]["code"], -31001, "{uri:?}");
    }
    for uri in [
        "file:///srv/caf%C3%A9.txt",
        "file:///srv/caf%c3%a9.txt",
        "file:///srv/caf\u{e9}.txt",
    ] {
        assert_eq!(read(uri).outcome(), Some(Outcome::Hidden), "{uri}");
    }
    assert_eq!(read("file:///srv/other.txt").reply, None);
}

#[test]
fn nested_members_are_guarded_as_top_level_ones_are() {
    let policy = Policy::from_json(FILES.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let refused = |method: &str, params: serde_json::Value| {
        let inspection = inspect(&policy, &store, &request(7, method, params.clone()));
        let (status, json) = reply_of(&inspection);
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (400, json!(-32602)),
            "{params}"
        );
    };
    let argument = json!({"name": "a", "value": "b"});
    refused(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "review_code", "Name": "secret_prompt"}, "argument": argument}),
    );
    refused(
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "file:///srv/public/a", "URI": "file:///srv/private/k"}, "argument": argument}),
    );
    refused(
        "completion/complete",
        json!({"ref": {"Type": "ref/prompt", "type": "ref/prompt", "name": "review_code"}, "argument": argument}),
    );
    for notifications in [
        json!({"TaskIds": ["someone-elses"]}),
        json!({"ResourceSubscriptions": ["file:///srv/private/k"]}),
        json!({"taskIds": "someone-elses"}),
        json!({"resourceSubscriptions": "file:///srv/private/k"}),
        json!({"resourceSubscriptions": [{"uri": "file:///srv/public/a", "URI": "file:///srv/private/k"}]}),
        json!({"resourceSubscriptions": [1]}),
        json!([{"taskIds": ["x"]}]),
        json!("file:///srv/private/k"),
    ] {
        refused(
            "subscriptions/listen",
            json!({ "notifications": notifications }),
        );
    }
    // Well-formed, they are decided as before.
    let completion = inspect(
        &policy,
        &store,
        &request(
            8,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "review_code"}, "argument": argument}),
        ),
    );
    assert_eq!(completion.reply, None);
    let listen = inspect(
        &policy,
        &store,
        &request(
            9,
            "subscriptions/listen",
            json!({"notifications": {"resourceSubscriptions": [{"uri": "file:///srv/public/a"}]}}),
        ),
    );
    assert_eq!(listen.reply, None);
}

#[test]
fn prompts_are_decided_with_their_arguments() {
    let policy = Policy::from_json(FILES.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let get = |name: &str, text: &str| {
        inspect(
            &policy,
            &store,
            &request(
                2,
                "prompts/get",
                json!({ "name": name, "arguments": { "text": text } }),
            ),
        )
    };
    assert_eq!(get("summarize", "short").reply, None);
    let (_, json) = reply_of(&get("summarize", "far too long for this prompt's rule"));
    assert_eq!(
        json["error"]["data"]["rule"],
        "/prompts/summarize/require/args.text/max_length"
    );
    assert_eq!(get("review_code", "x").reply, None);
    let (_, hidden) = reply_of(&get("secret_prompt", "x"));
    let (_, unlisted) = reply_of(&get("unlisted_prompt", "x"));
    assert_eq!(hidden["error"]["code"], unlisted["error"]["code"]);
    assert_eq!(
        hidden["error"]["data"]["rule"],
        unlisted["error"]["data"]["rule"]
    );
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .replace("secret_prompt", "N"),
        unlisted["error"]["message"]
            .as_str()
            .unwrap()
            .replace("unlisted_prompt", "N")
    );
    // A name differing only in case from a named prompt does not escape it.
    let (_, json) = reply_of(&get("SUMMARIZE", "short"));
    assert_eq!(json["error"]["data"]["rule"], "/prompts/summarize");
}

#[test]
fn completions_subscriptions_and_listens_follow_what_they_name() {
    let policy = Policy::from_json(FILES.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let complete = |reference: serde_json::Value| {
        inspect(
            &policy,
            &store,
            &request(
                3,
                "completion/complete",
                json!({ "ref": reference, "argument": { "name": "text", "value": "a" } }),
            ),
        )
    };
    assert_eq!(
        complete(json!({"type": "ref/prompt", "name": "summarize"})).reply,
        None
    );
    let (_, json) = reply_of(&complete(
        json!({"type": "ref/prompt", "name": "secret_prompt"}),
    ));
    assert_eq!(json["error"]["code"], -31001);
    let (_, json) = reply_of(&complete(
        json!({"type": "ref/resource", "uri": "file:///srv/private/{path}"}),
    ));
    assert_eq!(json["error"]["code"], -31001);
    assert_eq!(
        complete(json!({"type": "ref/resource", "uri": "file:///srv/public/{path}"})).reply,
        None
    );
    // The member the reference's type names decides, never a decoy beside
    // it: servers look a template up by `uri`, a prompt by `name`.
    let (_, json) = reply_of(&complete(json!({
        "type": "ref/resource",
        "name": "file:///srv/public/{path}",
        "uri": "file:///srv/private/{path}"
    })));
    assert_eq!(json["error"]["code"], -31001);
    let (_, json) = reply_of(&complete(json!({
        "type": "ref/prompt",
        "uri": "summarize",
        "name": "secret_prompt"
    })));
    assert_eq!(json["error"]["code"], -31001);
    let (status, json) = reply_of(&complete(
        json!({"type": "ref/resource", "name": "file:///srv/public/{path}"}),
    ));
    assert_eq!(
        (status, json["error"]["code"].clone()),
        (400, json!(-32602))
    );
    let (status, json) = reply_of(&complete(json!({"type": "ref/unknown"})));
    assert_eq!(
        (status, json["error"]["code"].clone()),
        (400, json!(-32602))
    );

    let subscribe = |uri: &str| {
        inspect(
            &policy,
            &store,
            &request(4, "resources/subscribe", json!({ "uri": uri })),
        )
    };
    assert_eq!(subscribe("file:///srv/public/readme.md").reply, None);
    assert_eq!(
        reply_of(&subscribe("file:///srv/public/../.env")).1["error"]["code"],
        -31001
    );

    let listen = |uris: serde_json::Value| {
        inspect(
            &policy,
            &store,
            &request(
                5,
                "subscriptions/listen",
                json!({ "notifications": { "resourceSubscriptions": uris } }),
            ),
        )
    };
    assert_eq!(
        listen(json!(["file:///srv/public/a", "file:///srv/public/b"])).reply,
        None
    );
    let (_, json) = reply_of(&listen(
        json!(["file:///srv/public/a", {"uri": "file:///srv/.env"}]),
    ));
    assert_eq!(json["error"]["data"]["resource"], "file:///srv/.env");
    // Nothing is counted for completions, subscriptions or listens (their
    // ids were claimed in the session while in flight, nothing else).
    assert!(store
        .keys()
        .iter()
        .all(|key| key.starts_with("mcp-policy/v3/bind/inflight/")));
}

#[test]
fn methods_are_allowed_or_denied_as_a_whole() {
    let policy = Policy::from_json(FILES.as_bytes()).unwrap();
    let store = EnvoySharedData::default();
    let (status, json) = reply_of(&inspect(
        &policy,
        &store,
        &request(6, "logging/setLevel", json!({"level": "debug"})),
    ));
    assert_eq!(
        (status, json["error"]["code"].clone()),
        (200, json!(-31001))
    );
    assert_eq!(json["error"]["data"]["rule"], "/methods/logging~1setLevel");
    // Methods the gate does not know follow `other`.
    let (_, json) = reply_of(&inspect(
        &policy,
        &store,
        &request(7, "skills/list", json!({})),
    ));
    assert_eq!(json["error"]["data"]["rule"], "/methods/other");
    // An id JSON-RPC does not allow is not echoed back.
    let object_id = br#"{"jsonrpc":"2.0","id":{"x":1},"method":"skills/list"}"#;
    let (status, json) = reply_of(&inspect(&policy, &store, object_id));
    assert_eq!(
        (status, json["error"]["code"].clone(), json["id"].clone()),
        (400, json!(-32600), json!(null))
    );
    // A notification cannot be answered with a response: HTTP 403.
    let notification = br#"{"jsonrpc":"2.0","method":"notifications/made_up"}"#;
    let (status, json) = reply_of(&inspect(&policy, &store, notification));
    assert_eq!((status, json["id"].clone()), (403, json!(null)));
    // Known methods pass unless named.
    for body in [
        &request(8, "ping", json!({}))[..],
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &request(9, "initialize", json!({"protocolVersion": "2025-11-25"}))[..],
    ] {
        assert_eq!(inspect(&policy, &store, body).reply, None);
    }
    // Without `methods`, everything the rules allow passes.
    let open = Policy::from_json(br#"{"version":"1","default":"allow"}"#).unwrap();
    assert_eq!(
        inspect(&open, &store, &request(10, "skills/list", json!({}))).reply,
        None
    );
}

#[test]
fn requests_at_2026_07_28_must_carry_their_mirror_headers() {
    let policy =
        Policy::from_json(br#"{"version":"1","default":"allow","hide":["resource:file:///x"]}"#)
            .unwrap();
    let store = EnvoySharedData::default();
    let clock = FixedClock::at_seconds(1_800_000_000);
    let run = |headers: McpHeaders<'_>, body: &[u8]| {
        inspect_request(&policy, &store, &clock, ALICE, headers, body)
    };
    let current = |method, name| McpHeaders {
        method,
        name,
        protocol_version: Some("2026-07-28"),
        ..McpHeaders::default()
    };
    let get = request(1, "prompts/get", json!({"name": "héllo"}));
    let (status, json) = reply_of(&run(current(None, Some("=?base64?aMOpbGxv?=")), &get));
    assert_eq!(
        (status, json["error"]["code"].clone()),
        (400, json!(-32020))
    );
    let (_, json) = reply_of(&run(current(Some("prompts/get"), None), &get));
    assert_eq!(json["error"]["code"], -32020);
    // Values outside visible ASCII travel Base64-encoded, and are compared decoded.
    let encoded = "=?base64?aMOpbGxv?=";
    assert_eq!(
        run(current(Some("prompts/get"), Some(encoded)), &get).reply,
        None
    );
    let (_, json) = reply_of(&run(
        current(Some("prompts/get"), Some("=?base64?aGVsbG8=?=")),
        &get,
    ));
    assert_eq!(json["error"]["code"], -32020);
    let ascii = request(1, "tools/call", json!({"name": "hello"}));
    assert_eq!(
        run(
            current(Some("tools/call"), Some("=?base64?aGVsbG8=?=")),
            &ascii
        )
        .reply,
        None
    );
    assert_eq!(
        reply_of(&run(
            current(Some("tools/call"), Some("=?base64?!!?=")),
            &ascii
        ))
        .0,
        400
    );
    // Only the one spelling: padding drops bits that must be zero, so
    // `aGVsbG9=` is not `aGVsbG8=` (strict decoders refuse it).
    for other in ["=?base64?aGVsbG9=?=", "=?base64?aGVsbB==?="] {
        assert_eq!(
            reply_of(&run(current(Some("tools/call"), Some(other)), &ascii)).0,
            400,
            "{other}"
        );
    }
    let hell = request(1, "tools/call", json!({"name": "hell"}));
    assert_eq!(
        run(
            current(Some("tools/call"), Some("=?base64?aGVsbA==?=")),
            &hell
        )
        .reply,
        None
    );
    // Before 2026-07-28 the headers are optional (but must match when sent).
    let legacy = McpHeaders::default();
    assert_eq!(run(legacy, &ascii).reply, None);
    // `_meta` says 2026-07-28 but no header says so: refused.
    let meta = request(
        2,
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
    );
    assert_eq!(reply_of(&run(legacy, &meta)).1["error"]["code"], -32020);
    // A hidden resource at 2026-07-28 under default allow: -32602, not -32002.
    let read = request(3, "resources/read", json!({"uri": "file:///x"}));
    let (_, json) = reply_of(&run(
        current(Some("resources/read"), Some("file:///x")),
        &read,
    ));
    assert_eq!(json["error"]["code"], -32602);
    let (_, json) = reply_of(&run(legacy, &read));
    assert_eq!(json["error"]["code"], -32002);
}

#[test]
fn a_decided_method_needs_a_request_id() {
    let policy = Policy::from_json(br#"{"version":"1","default":"allow"}"#).unwrap();
    let store = EnvoySharedData::default();
    let params = |method: &str| match method {
        "completion/complete" => {
            json!({"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": "b"}})
        }
        "resources/read" | "resources/subscribe" => json!({"uri": "file:///srv/x"}),
        "subscriptions/listen" => {
            json!({"notifications": {"resourceSubscriptions": ["file:///srv/x"]}})
        }
        method if method.starts_with("tasks/") => json!({"taskId": "t-1"}),
        _ => json!({"name": "p", "arguments": {}}),
    };
    for method in [
        "tools/call",
        "prompts/get",
        "resources/read",
        "completion/complete",
        "resources/subscribe",
        "subscriptions/listen",
        "tasks/get",
        "tasks/result",
        "tasks/cancel",
        "tasks/update",
    ] {
        for id in [
            None,
            Some(json!(null)),
            Some(json!({"a": 1})),
            Some(json!([1])),
            Some(json!(1.5)),
            Some(json!(true)),
        ] {
            let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params(method)});
            if let Some(id) = &id {
                body["id"] = id.clone();
            }
            let inspection = inspect(&policy, &store, body.to_string().as_bytes());
            let (status, json) = reply_of(&inspection);
            assert_eq!(
                (status, json["error"]["code"].clone(), json["id"].clone()),
                (400, json!(-32600), json!(null)),
                "{method} with id {id:?}: {json}"
            );
            assert_eq!(inspection.outcome(), Some(Outcome::Invalid), "{method}");
        }
    }
}

#[test]
fn a_known_method_in_another_spelling_is_refused() {
    let policy =
        Policy::from_json(br#"{"version":"1","default":"deny","tools":{"read":{}}}"#).unwrap();
    let store = EnvoySharedData::default();
    for method in [
        "Tools/call",
        "TOOLS/CALL",
        "tools/call ",
        " tools/call",
        "Prompts/Get",
        "\u{17f}ervER/discover",
        "LOGGING/SETLEVEL",
        "notifications/Initialized",
        // A reader of C strings stops at the NUL; invisible characters a
        // server may drop.
        "tools/call\u{0}",
        "tools/call\u{0}x",
        "prompts/get\u{0}",
        "\u{200b}tools/call",
        "tools/\u{200b}call",
        "tools/call\u{feff}",
        "resources/read\u{ad}",
        "tools/list\u{0}",
        "\u{ff54}ools/call",
        "ＴＯＯＬＳ/ＣＡＬＬ",
    ] {
        let body = json!({"jsonrpc":"2.0","id":1,"method":method,"params":{"name":"deleteWorkspace","arguments":{}}});
        let inspection = inspect(&policy, &store, body.to_string().as_bytes());
        let (status, json) = reply_of(&inspection);
        assert_eq!(
            (status, json["error"]["code"].clone()),
            (400, json!(-32600)),
            "{method:?}"
        );
        assert!(
            json["error"]["data"]["detail"]
                .as_str()
                .unwrap()
                .contains("only in letter case, blanks or characters a server may drop"),
            "{json}"
        );
    }
    // A method the gate does not know in any spelling is still `other`.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"vendor/Custom","params":{}});
    assert_eq!(
        inspect(&policy, &store, body.to_string().as_bytes()).reply,
        None
    );
}

/// A request that names its protocol version in `_meta` is served without a
/// session (rmcp does so at 2025-11-25 too): a `Mcp-Session-Id` beside it,
/// a new one each time, must not give it a fresh session-scoped count.
#[test]
fn a_self_described_request_counts_under_its_grant_whatever_session_it_names() {
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},
            "tools":{"poll":{"limits":[{"counter":"poll","window":"day","max":1,"scope":"session"}]}}}"#,
    )
    .unwrap();
    let store = EnvoySharedData::default();
    let clock = FixedClock::at_seconds(1_800_000_000);
    let headers = McpHeaders {
        protocol_version: Some("2025-11-25"),
        ..McpHeaders::default()
    };
    let body = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"poll","arguments":{},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25",
                     "io.modelcontextprotocol/clientCapabilities":{}}}})
        .to_string()
        .into_bytes()
    };
    let sessions = ["fake-1", "fake-2", "fake-3"];
    let codes: Vec<Option<i64>> = sessions
        .iter()
        .enumerate()
        .map(|(id, session)| {
            let caller = CallerScope {
                grant: "alice",
                session: Some(session),
                role: None,
            };
            let inspection =
                inspect_request(&policy, &store, &clock, caller, headers, &body(id as u64));
            inspection
                .reply
                .as_ref()
                .map(|reply| reply.json().unwrap()["error"]["code"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(codes, [None, Some(-31002), Some(-31002)]);
    // Without `_meta`, each real session counts apart.
    let plain = |session: &'static str| {
        let caller = CallerScope {
            grant: "bob",
            session: Some(session),
            role: None,
        };
        inspect_request(
            &policy,
            &store,
            &clock,
            caller,
            headers,
            &tools_call(9, "poll"),
        )
        .reply
    };
    assert!(plain("s-1").is_none() && plain("s-2").is_none());
    // At 2026-07-28 by the header alone (what `mcp-policy eval
    // --protocol-version 2026-07-28 --session` sends), sessions are not.
    let current = |session: &'static str| {
        let caller = CallerScope {
            grant: "carol",
            session: Some(session),
            role: None,
        };
        let headers = McpHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some("tools/call"),
            name: Some("poll"),
            session: Some(session),
        };
        inspect_request(
            &policy,
            &store,
            &clock,
            caller,
            headers,
            &tools_call(10, "poll"),
        )
        .reply
        .map(|reply| reply.json().unwrap()["error"]["code"].clone())
    };
    assert_eq!(current("s-3"), None);
    assert_eq!(current("s-4"), Some(json!(-31002)));
}
