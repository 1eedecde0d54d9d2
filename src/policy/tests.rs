use super::*;
use crate::policy::identity::sha256_hex;
use crate::target::Kind;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn load(json: &str) -> Result<Policy, ConfigErrors> {
    Policy::from_json(json.as_bytes())
}

fn error_of(json: &str) -> String {
    match load(json) {
        Ok(_) => panic!("policy should be refused: {json}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn reads_the_published_policy_layer_example() {
    let policy = load(
        r#"{"version":"1","default":"deny","tools":{"asyncExecuteCode":{"limits":[{"counter":"asyncexecutecode_rate","window":"minute","max":10,"scope":"grant"}]}}}"#,
    )
    .unwrap();
    assert_eq!(policy.base().default, Action::Deny);
    let rule = policy.base().tool("asyncExecuteCode").unwrap();
    assert_eq!(rule.action, Action::Allow);
    assert_eq!(rule.pointer, "/tools/asyncExecuteCode");
    assert_eq!(
        rule.limits,
        vec![Limit {
            counter: "asyncexecutecode_rate".to_string(),
            kind: LimitKind::Window {
                seconds: 60,
                max: 10
            },
            scope: Scope::Grant,
            pointer: "/tools/asyncExecuteCode/limits/0".to_string(),
            store: CounterStore::Local,
            cost: Cost::Units(1),
            per: None,
        }]
    );
    assert_eq!(policy.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(policy.identity, Identity::Anonymous);
}

/// PolicyLayer's pages describe "a rate_limit block" on a rule, "max: 10
/// and window: 60": one window limit on a counter of the rule's own, per
/// grant, beside any `limits`.
#[test]
fn reads_the_published_rate_limit_block() {
    let policy = load(
        r#"{"version":"1","default":"deny","tools":{
            "asyncExecuteCode":{"rate_limit":{"max":10,"window":60}},
            "both":{"limits":[{"counter":"c","window":"hour","max":100,"scope":"global"}],
                    "rate_limit":{"max":5,"window":"minute","scope":"session","counter":"mine"}}},
          "prompts":{"p":{"rate_limit":{"max":1,"window":"day"}}},
          "resources":{"file:///r":{"rate_limit":{"max":2,"window":1,"store":"local"}}}}"#,
    )
    .unwrap();
    let window = |counter: &str, seconds, max, scope, pointer: &str| Limit {
        counter: counter.to_string(),
        kind: LimitKind::Window { seconds, max },
        scope,
        pointer: pointer.to_string(),
        store: CounterStore::Local,
        cost: Cost::Units(1),
        per: None,
    };
    let pointer = "/tools/asyncExecuteCode/rate_limit";
    assert_eq!(
        policy.base().tool("asyncExecuteCode").unwrap().limits,
        [window(pointer, 60, 10, Scope::Grant, pointer)]
    );
    assert_eq!(
        policy.base().tool("both").unwrap().limits,
        [
            window("c", 3600, 100, Scope::Global, "/tools/both/limits/0"),
            window("mine", 60, 5, Scope::Session, "/tools/both/rate_limit")
        ]
    );
    let rule = policy.base().rule(Kind::Prompt, "p").unwrap();
    assert_eq!(rule.limits[0].pointer, "/prompts/p/rate_limit");
    assert_eq!(rule.limits[0].window(), Some((86_400, 1)));
    let rule = policy.base().rule(Kind::Resource, "file:///r").unwrap();
    assert_eq!(rule.limits[0].counter, "/resources/file:~1~1~1r/rate_limit");
    // A grant's block is a counter of the grant's rule.
    let policy = load(
        r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
            "grants":{"ci":{"tools":{"t":{"rate_limit":{"max":3,"window":"second"}}}}}}"#,
    )
    .unwrap();
    assert_eq!(
        policy.view("ci").tool("t").unwrap().limits[0].counter,
        "/grants/ci/tools/t/rate_limit"
    );
    // Checked as a limit is, under its own path.
    for (document, error) in [
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"rate_limit":{"max":0,"window":60}}}}"#,
            "tools.a.rate_limit.max: must be a positive integer, got 0",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"rate_limit":{"max":1}}}}"#,
            "tools.a.rate_limit: missing field `window`",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"rate_limit":{"max":1,"window":60,"burst":2}}}}"#,
            "tools.a.rate_limit.burst: unknown field `burst`, expected one of `max`, `window`, `scope`, `counter`, `store`",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"rate_limit":[10,60]}}}"#,
            "tools.a.rate_limit: invalid type: sequence, expected an object",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"rate_limit":{"max":1,"window":60,"store":"global"}}}}"#,
            "tools.a.rate_limit.store: store: global needs a top-level rate_limit_service (cluster, domain, timeout_ms, failure_mode)",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"a":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]},"b":{"rate_limit":{"counter":"c","max":1,"window":1}}}}"#,
            "tools.b.rate_limit.window: counter \"c\" has window 1s here but 60s at tools.a.limits[0]; a counter has one window",
        ),
    ] {
        assert_eq!(error_of(document), error, "{document}");
    }
}

/// `null` reads as a field left out, maps and lists included (templating
/// tools write it for "unset"); inside a list it is still refused.
#[test]
fn null_maps_and_lists_read_as_left_out() {
    let policy = load(
        r#"{"version":"1","default":"deny","tools":null,"prompts":null,"resources":null,
            "annotations":null,"grants":null,"roles":null}"#,
    )
    .unwrap();
    assert!(policy.base().tool("x").is_none() && policy.grants.is_empty());
    let policy = load(
        r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
            "tools":{"a":{"limits":null,"rate_limit":null}},
            "all_tools":{"limits":null},
            "grants":{"g":{"tools":null,"prompts":null,"resources":null}}}"#,
    )
    .unwrap();
    assert!(policy.base().tool("a").unwrap().limits.is_empty());
    assert_eq!(
        error_of(r#"{"version":"1","default":"deny","tools":{"a":{"limits":[null]}}}"#),
        "tools.a.limits[0]: invalid type: null, expected an object"
    );
}

/// PolicyLayer's documented "Policy shape" (docs/writing-policies): empty
/// arrays for the conditions and limits.
#[test]
fn reads_the_published_policy_shape_with_empty_lists() {
    let policy = load(
        r#"{"version":"1","default":"deny","hide":["delete_account"],"all_tools":{"limits":[]},
            "tools":{"create_charge":{"require":[],"deny_if":[],"limits":[]}}}"#,
    )
    .unwrap();
    let rule = policy.base().tool("create_charge").unwrap();
    assert_eq!(rule.action, Action::Allow);
    assert!(rule.arguments.is_empty() && rule.limits.is_empty());
    // A list with conditions is not a form this reader knows: refused, with
    // the form it does know.
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","tools":{"a":{"deny_if":[{"path":"args.x","op":"eq","value":1}]}}}"#
        ),
        r#"tools.a.deny_if: conditions are an object keyed by argument path, e.g. {"args.amount": {"lte": 10000}}; only an empty array ([], no conditions) is read as a list"#
    );
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","approval_service":{"cluster":"c"},"tools":{"a":{"approve_if":[]}}}"#
        ),
        "tools.a.approve_if: approve_if needs at least one condition"
    );
}

#[test]
fn empty_rule_allows_and_every_field_is_read() {
    let policy = load(
        r#"{
            "$schema": "./policy.schema.json",
            "version": "1",
            "default": "allow",
            "identity": {"header": "X-Agent-Id"},
            "max_body_bytes": 4096,
            "all_tools": {"limits": [{"counter": "all", "window": 3600, "max": 1000, "scope": "global"}]},
            "tools": {
                "checkCodeExecStatus": {},
                "deleteWorkspace": {"action": "deny", "reason": "destructive"},
                "a/b~c": {"limits": [{"counter": "x", "window": "second", "max": 1, "scope": "session"}]}
            }
        }"#,
    )
    .unwrap();
    assert_eq!(policy.identity, Identity::Header("x-agent-id".to_string()));
    assert_eq!(policy.max_body_bytes, 4096);
    assert_eq!(
        policy.base().tool("checkCodeExecStatus").unwrap().action,
        Action::Allow
    );
    let deny = policy.base().tool("deleteWorkspace").unwrap();
    assert_eq!(deny.action, Action::Deny);
    assert_eq!(deny.reason.as_deref(), Some("destructive"));
    assert_eq!(
        policy.base().all_tools_limits()[0].pointer,
        "/all_tools/limits/0"
    );
    assert_eq!(
        policy.base().all_tools_limits()[0].window().unwrap().0,
        3600
    );
    // Pointer tokens are escaped as RFC 6901 says.
    assert_eq!(
        policy.base().tool("a/b~c").unwrap().pointer,
        "/tools/a~1b~0c"
    );
    assert_eq!(
        policy.base().tool("a/b~c").unwrap().limits[0]
            .window()
            .unwrap()
            .0,
        1
    );
}

#[test]
fn named_windows_have_their_lengths() {
    for (name, seconds) in [
        ("second", 1),
        ("minute", 60),
        ("hour", 3600),
        ("day", 86400),
    ] {
        let policy = load(&format!(
            r#"{{"version":"1","default":"deny","all_tools":{{"limits":[{{"counter":"c","window":"{name}","max":1,"scope":"global"}}]}}}}"#
        ))
        .unwrap();
        assert_eq!(
            policy.base().all_tools_limits()[0].window().unwrap().0,
            seconds
        );
    }
}

#[test]
fn the_repository_policy_is_valid() {
    let policy = Policy::from_json(include_bytes!("../../policy.json")).unwrap();
    assert_eq!(policy.base().default, Action::Deny);
    assert!(policy.base().tool("asyncExecuteCode").is_some());
    assert!(policy.base().tool("checkCodeExecStatus").is_some());
    // Saved by an editor that writes a byte order mark: the same policy,
    // the same revision (check, the filter and its metrics agree).
    let mut marked = b"\xEF\xBB\xBF".to_vec();
    marked.extend_from_slice(include_bytes!("../../policy.json"));
    let same = Policy::from_json(&marked).unwrap();
    assert_eq!(same.revision, policy.revision);
    assert_eq!(
        crate::metrics::policy_revision(&marked),
        crate::metrics::policy_revision(include_bytes!("../../policy.json"))
    );
}

/// Bad documents and the exact message Envoy logs when it refuses them.
#[test]
fn bad_documents_are_refused_with_path_and_value() {
    let limit = |field: &str| {
        let mut limit =
            serde_json::json!({"counter": "c", "window": "minute", "max": 10, "scope": "grant"});
        let (key, value) = field.split_once('=').unwrap();
        limit[key] = serde_json::from_str(value).unwrap();
        format!(
            r#"{{"version":"1","default":"deny","tools":{{"asyncExecuteCode":{{"limits":[{limit}]}}}}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (limit(r#"window="fortnight""#), r#"tools.asyncExecuteCode.limits[0].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds)"#),
        (limit("window=0"), "tools.asyncExecuteCode.limits[0].window: window must be a positive number of seconds, got 0"),
        (limit("window=-5"), "tools.asyncExecuteCode.limits[0].window: window must be a positive number of seconds, got -5"),
        (limit("window=1.5"), r#"tools.asyncExecuteCode.limits[0].window: invalid type: floating point `1.5`, expected "second", "minute", "hour", "day" or a positive number of seconds"#),
        (limit("max=0"), "tools.asyncExecuteCode.limits[0].max: must be a positive integer, got 0"),
        (limit("max=-1"), "tools.asyncExecuteCode.limits[0].max: must be a positive integer, got -1"),
        (limit(r#"max="10""#), r#"tools.asyncExecuteCode.limits[0].max: invalid type: string "10", expected a positive integer"#),
        (limit(r#"scope="tenant""#), "tools.asyncExecuteCode.limits[0].scope: unknown variant `tenant`, expected one of `grant`, `session`, `global`, `role`"),
        (limit(r#"counter="""#), "tools.asyncExecuteCode.limits[0].counter: must not be empty"),
        (limit("counter=7"), "tools.asyncExecuteCode.limits[0].counter: invalid type: integer `7`, expected a string"),
        (limit("burst=2"), "tools.asyncExecuteCode.limits[0].burst: unknown field `burst`, expected one of `counter`, `window`, `max`, `concurrent`, `lease_seconds`, `scope`, `store`, `cost`, `cost_from`, `per`"),
        (r#"{"default":"deny"}"#.to_string(), "policy: missing field `version`"),
        (r#"{"version":"2","default":"deny"}"#.to_string(), r#"version: unsupported version "2" (this filter reads version "1")"#),
        (r#"{"version":1,"default":"deny"}"#.to_string(), "version: invalid type: integer `1`, expected a string"),
        (r#"{"version":"1"}"#.to_string(), "policy: missing field `default`"),
        (r#"{"version":"1","default":"block"}"#.to_string(), "default: unknown variant `block`, expected `allow` or `deny`"),
        (r#"{"version":"1","default":"deny","tool":{}}"#.to_string(), "tool: unknown field `tool`, expected one of `$schema`, `version`, `default`, `identity`, `tools`, `prompts`, `resources`, `default_prompts`, `default_resources`, `methods`, `annotations`, `all_tools`, `max_body_bytes`, `hide`, `list`, `mode`, `deny_as`, `grants`, `roles`, `grant_roles`, `failure_mode`, `max_json_depth`, `max_callers_per_counter`, `hold_request_headers`, `rate_limit_service`, `approval_service`"),
        (r#"{"version":"1","default":"deny","tools":{"":{}}}"#.to_string(), "tools: empty name"),
        (r#"{"version":"1","default":"deny","tools":{"x":{},"x":{"action":"deny"}}}"#.to_string(), r#"tools: duplicate name "x""#),
        (r#"{"version":"1","default":"deny","tools":{"x":{"action":"block"}}}"#.to_string(), "tools.x.action: unknown variant `block`, expected one of `allow`, `deny`, `approve`"),
        (r#"{"version":"1","default":"deny","tools":{"x":{"reason":"a","on_deny":"no"}}}"#.to_string(), "tools.x.on_deny: a rule has either `reason` or `on_deny` (the same thing), not both"),
        (r#"{"version":"1","default":"deny","tools":{"x":[]}}"#.to_string(), "tools.x: invalid type: sequence, expected an object"),
        (r#"{"version":"1","default":"deny","tools":[]}"#.to_string(), "tools: invalid type: sequence, expected an object"),
        (r#"["1","deny"]"#.to_string(), "policy: invalid type: sequence, expected an object"),
        (r#"{"version":"1","default":"deny","all_tools":{"limits":[["c","minute",10,"grant"]]}}"#.to_string(), "all_tools.limits[0]: invalid type: sequence, expected an object"),
        (r#"{"version":"1","default":"deny","identity":["x-agent"]}"#.to_string(), "identity: invalid type: sequence, expected an object"),
        (r#"{"version":"1","default":"deny","identity":{"header":""}}"#.to_string(), "identity.header: header name must not be empty"),
        (r#"{"version":"1","default":"deny","identity":{"header":"x agent"}}"#.to_string(), r#"identity.header: invalid header name "x agent""#),
        (r#"{"version":"1","default":"deny","identity":{"cookie":"a"}}"#.to_string(), "identity.cookie: unknown field `cookie`, expected one of `header`, `bearer_tokens`, `jwt_claim`"),
        (r#"{"version":"1","default":"deny","max_body_bytes":0}"#.to_string(), "max_body_bytes: must be a positive integer, got 0"),
        (r#"{"version":"1","default":"deny","hide":["a","prompt:"]}"#.to_string(), "hide[1]: \"prompt:\" names no prompt: the name after the prefix is empty"),
        (r#"{"version":"1","default":"allow","tools":{"Drop":{},"drop":{"action":"deny"}}}"#.to_string(), "tools.drop: differs from \"Drop\" only in letter case: a server that matches names loosely takes one for the other; name it once"),
        (r#"{"version":"1","default":"allow","tools":{"get_*":{},"GET_*":{}}}"#.to_string(), "tools.get_*: differs from \"GET_*\" only in letter case: a server that matches names loosely takes one for the other; name it once"),
        (r#"{"version":"1","default":"allow","prompts":{"Greet":{},"greet":{}}}"#.to_string(), "prompts.greet: differs from \"Greet\" only in letter case: a server that matches names loosely takes one for the other; name it once"),
        (r#"{"version":"1","default":"allow","resources":{"file:///srv/A":{},"file:///srv/a":{"action":"deny"}}}"#.to_string(), "resources.file:///srv/a: differs from \"file:///srv/A\" only in letter case: a server that matches names loosely takes one for the other; name it once"),
        (r#"{"version":"1","default":"allow","tools":{"drop":{"action":"deny"}},"grants":{"bob":{"tools":{"DROP":{}}}}}"#.to_string(), "grants.bob.tools.DROP: differs from \"drop\" only in letter case: a server that matches names loosely takes one for the other; name it once"),
        (r#"{"version":"1","default":"deny","max_body_bytes":2147483648}"#.to_string(), "max_body_bytes: at most 1073741824 (1 GiB: the module holds the body in its 4 GiB of memory, and Envoy's buffer limit, rendered as twice this, is a 32-bit number), got 2147483648"),
        (r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":9007199254740992,"max":1}]}}}"#.to_string(), "tools.t.limits[0].window: window must be at most 9007199254740991 seconds (2^53 - 1: the largest integer a JSON client reads exactly), got 9007199254740992"),
        (r#"{"version":"1","default":"deny","tools":{"t":{"rate_limit":{"window":18446744073709551615,"max":1}}}}"#.to_string(), "tools.t.rate_limit.window: window must be at most 9007199254740991 seconds (2^53 - 1: the largest integer a JSON client reads exactly), got 18446744073709551615"),
        (r#"{"version":"1","default":"deny","all_tools":{"limits":{}}}"#.to_string(), "all_tools.limits: invalid type: map, expected a sequence"),
        (
            r#"{"version":"1","default":"deny","all_tools":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]},"tools":{"t":{"limits":[{"counter":"c","window":"hour","max":5,"scope":"grant"}]}}}"#.to_string(),
            r#"tools.t.limits[0].window: counter "c" has window 3600s here but 60s at all_tools.limits[0]; a counter has one window"#,
        ),
        (r#"{"version":"1","default":"deny"} {}"#.to_string(), "policy: trailing characters after the policy document"),
        (r#"{"version":"1","default":"deny""#.to_string(), "policy: EOF while parsing an object"),
        ("".to_string(), "policy: EOF while parsing a value"),
    ];
    let mut mismatches = Vec::new();
    for (document, expected) in &cases {
        let actual = error_of(document);
        if actual != *expected {
            mismatches.push(format!(
                "document: {document}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn errors_carry_line_and_column() {
    let errors = load("{\n  \"version\": \"1\",\n  \"default\": \"maybe\"\n}").unwrap_err();
    let err = errors.first();
    assert_eq!(err.path, "default");
    assert_eq!(err.line, Some(3));
    assert!(err.column.is_some());
}

#[test]
fn a_counter_shared_with_the_same_window_is_one_counter() {
    let policy = load(
        r#"{"version":"1","default":"deny","tools":{
            "a":{"limits":[{"counter":"shared","window":"minute","max":5,"scope":"grant"}]},
            "b":{"limits":[{"counter":"shared","window":60,"max":3,"scope":"global"}]}}}"#,
    )
    .unwrap();
    assert_eq!(policy.base().tool("a").unwrap().limits[0].counter, "shared");
    assert_eq!(policy.base().tool("b").unwrap().limits[0].max(), 3);
}

#[test]
fn grants_override_what_they_name_and_inherit_the_rest() {
    let policy = load(
        r#"{
            "version": "1", "default": "deny",
            "hide": ["secret"],
            "all_tools": {"limits": [{"counter": "all", "window": 60, "max": 100, "scope": "grant"}]},
            "tools": {"a": {}, "b": {"action": "deny", "reason": "top"}},
            "grants": {
                "ops": {"default": "allow", "hide": [], "tools": {"b": {"reason": "ops may", "limits": [{"counter": "b_ops", "window": 60, "max": 1, "scope": "grant"}]}}},
                "ci/bot": {"all_tools": {"limits": []}}
            }
        }"#,
    )
    .unwrap();
    let base = policy.view("anyone-else");
    assert_eq!(base.default, Action::Deny);
    assert_eq!(base.default_pointer, "/default");
    assert_eq!(base.hidden("secret"), Some("/hide"));
    assert_eq!(base.tool("b").unwrap().action, Action::Deny);

    let ops = policy.view("ops");
    assert_eq!(ops.default, Action::Allow);
    assert_eq!(ops.default_pointer, "/grants/ops/default");
    assert_eq!(ops.hidden("secret"), None);
    // The grant's rule replaces the top-level one whole: action back to allow.
    let b = ops.tool("b").unwrap();
    assert_eq!(
        (b.action, b.reason.as_deref()),
        (Action::Allow, Some("ops may"))
    );
    assert_eq!(b.pointer, "/grants/ops/tools/b");
    assert_eq!(b.limits[0].pointer, "/grants/ops/tools/b/limits/0");
    assert_eq!(ops.tool("a").unwrap().pointer, "/tools/a");
    assert_eq!(ops.all_tools_limits().len(), 1);

    let bot = policy.view("ci/bot");
    assert!(bot.all_tools_limits().is_empty());
    assert_eq!(bot.default, Action::Deny);
    assert_eq!(bot.hidden("secret"), Some("/hide"));
}

#[test]
fn hide_star_hides_everything_and_listing_follows_list_mode() {
    let policy = load(r#"{"version":"1","default":"allow","hide":["*"]}"#).unwrap();
    assert_eq!(policy.base().hidden("anything"), Some("/hide"));
    assert!(!policy.base().lists("anything"));

    let policy = load(
        r#"{"version":"1","default":"deny","list":"hide_denied","tools":{"a":{},"b":{"action":"deny"},"c":{"limits":[{"counter":"c","window":1,"max":1,"scope":"global"}]}}}"#,
    )
    .unwrap();
    let view = policy.base();
    assert!(view.filters_listing());
    assert!(view.lists("a") && view.lists("c"));
    assert!(!view.lists("b") && !view.lists("unlisted"));

    let plain =
        load(r#"{"version":"1","default":"deny","tools":{"b":{"action":"deny"}}}"#).unwrap();
    assert!(
        !plain.base().filters_listing(),
        "nothing to hide: answers pass untouched"
    );
    assert!(plain.base().lists("b"));
}

#[test]
fn identity_sources_compile() {
    let hash = sha256_hex(b"token");
    let policy = load(&format!(
        r#"{{"version":"1","default":"deny","identity":{{"bearer_tokens":{{"{}":"ci"}}}}}}"#,
        hash.to_uppercase()
    ))
    .unwrap();
    match &policy.identity {
        Identity::BearerTokens(tokens) => {
            assert_eq!(tokens.get(&hash).map(String::as_str), Some("ci"))
        }
        other => panic!("{other:?}"),
    }
    let policy = load(
        r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"sub"}}}"#,
    )
    .unwrap();
    assert_eq!(
        policy.identity,
        Identity::JwtClaim {
            provider_metadata: "jwt_payload".to_string(),
            claim: "sub".to_string(),
            role_claim: None,
        }
    );
}

#[test]
fn policy_wide_switches_have_defaults() {
    let policy = load(r#"{"version":"1","default":"deny"}"#).unwrap();
    assert_eq!(
        (policy.mode, policy.deny_as, policy.list),
        (Mode::Enforce, DenyAs::Error, ListMode::ShowDenied)
    );
    let policy = load(r#"{"version":"1","default":"deny","mode":"monitor","deny_as":"tool_result","list":"hide_denied"}"#).unwrap();
    assert_eq!(
        (policy.mode, policy.deny_as, policy.list),
        (Mode::Monitor, DenyAs::ToolResult, ListMode::HideDenied)
    );
    // on_deny is another name for reason.
    let policy = load(
        r#"{"version":"1","default":"deny","tools":{"x":{"action":"deny","on_deny":"because"}}}"#,
    )
    .unwrap();
    assert_eq!(
        policy.base().tool("x").unwrap().reason.as_deref(),
        Some("because")
    );
}

#[test]
fn bad_depth_documents_are_refused_with_path_and_value() {
    let cases = [
        (r#"{"version":"1","default":"deny","identity":{}}"#, "identity: give exactly one of `header`, `bearer_tokens`, `jwt_claim`"),
        (r#"{"version":"1","default":"deny","identity":{"header":"x","jwt_claim":{"provider_metadata":"p","claim":"sub"}}}"#, "identity: give exactly one of `header`, `bearer_tokens`, `jwt_claim`"),
        (r#"{"version":"1","default":"deny","identity":{"bearer_tokens":{"abc":"ci"}}}"#, "identity.bearer_tokens.abc: keys are SHA-256 hashes of tokens: 64 hex digits (e.g. `printf %s \"$TOKEN\" | sha256sum`)"),
        (r#"{"version":"1","default":"deny","identity":{"bearer_tokens":{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08":""}}}"#, "identity.bearer_tokens.9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08: must not be empty"),
        (r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"p"}}}"#, "identity.jwt_claim: missing field `claim`"),
        (r#"{"version":"1","default":"deny","mode":"audit"}"#, "mode: unknown variant `audit`, expected `enforce` or `monitor`"),
        (r#"{"version":"1","default":"deny","deny_as":"text"}"#, "deny_as: unknown variant `text`, expected `error` or `tool_result`"),
        // Only the strings: not serde's map form of an enum, not another type.
        (r#"{"version":"1","default":{"allow":null}}"#, "default: invalid type: map, expected `allow` or `deny`"),
        (r#"{"version":"1","default":1}"#, "default: invalid type: integer `1`, expected `allow` or `deny`"),
        (r#"{"version":"1","default":"deny","tools":{"a":{"action":{"deny":null}}}}"#, "tools.a.action: invalid type: map, expected one of `allow`, `deny`, `approve`"),
        (r#"{"version":"1","default":"deny","mode":["monitor"]}"#, "mode: invalid type: sequence, expected `enforce` or `monitor`"),
        (r#"{"version":"1","default":"deny","tools":{"a":{"limits":[{"counter":"c","window":"minute","max":1,"scope":{"global":null}}]}}}"#, "tools.a.limits[0].scope: invalid type: map, expected one of `grant`, `session`, `global`, `role`"),
        (r#"{"version":"1","default":"deny","methods":{"ping":{"deny":null}}}"#, "methods.ping: invalid type: map, expected `allow` or `deny`"),
        (r#"{"version":"1","default":"deny","failure_mode":{"closed":null,"open":null}}"#, "failure_mode: invalid type: map, expected `closed` or `open`"),
        (r#"{"version":"1","default":"deny","list":"all"}"#, "list: unknown variant `all`, expected `show_denied` or `hide_denied`"),
        (r#"{"version":"1","default":"deny","hide":"x"}"#, r#"hide: invalid type: string "x", expected a sequence"#),
        (r#"{"version":"1","default":"deny","hide":[""]}"#, "hide[0]: must not be empty"),
        (r#"{"version":"1","default":"deny","grants":{"ci":{"mode":"monitor"}}}"#, "grants.ci.mode: unknown field `mode`, expected one of `default`, `default_prompts`, `default_resources`, `hide`, `all_tools`, `tools`, `prompts`, `resources`, `methods`, `annotations`"),
        (r#"{"version":"1","default":"deny","grants":{"ci":{"tools":{"t":{"reason":"a","on_deny":"b"}}}}}"#, "grants.ci.tools.t.on_deny: a rule has either `reason` or `on_deny` (the same thing), not both"),
        (
            r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]}},"grants":{"ci":{"tools":{"t":{"limits":[{"counter":"c","window":3600,"max":1,"scope":"grant"}]}}}}}"#,
            r#"grants.ci.tools.t.limits[0].window: counter "c" has window 3600s here but 60s at tools.t.limits[0]; a counter has one window"#,
        ),
        (r#"{"version":"1","default":"deny","grants":{"":{}}}"#, "grants: empty name"),
    ];
    let mut mismatches = Vec::new();
    for (document, expected) in cases {
        let actual = error_of(document);
        if actual != expected {
            mismatches.push(format!(
                "document: {document}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn hardening_fields_are_validated() {
    let policy =
        load(r#"{"version":"1","default":"deny","failure_mode":"open","max_json_depth":10}"#)
            .unwrap();
    assert_eq!(
        (policy.failure_mode, policy.max_json_depth),
        (FailureMode::Open, 10)
    );
    let policy = load(r#"{"version":"1","default":"deny"}"#).unwrap();
    assert_eq!(
        (policy.failure_mode, policy.max_json_depth),
        (FailureMode::Closed, 64)
    );
    assert_eq!(
        error_of(r#"{"version":"1","default":"deny","max_json_depth":500}"#),
        "max_json_depth: at most 127 (the JSON reader's own limit), got 500"
    );
    // Compared before a cast: in the module usize is 32 bits, where
    // 2^32 + 1 would be 1.
    assert_eq!(
        error_of(r#"{"version":"1","default":"deny","max_json_depth":4294967297}"#),
        "max_json_depth: at most 127 (the JSON reader's own limit), got 4294967297"
    );
    // Envoy's calls take a 32-bit count of milliseconds.
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":"r","timeout_ms":4294967301},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]}}}"#
        ),
        "rate_limit_service.timeout_ms: at most 60000 (a minute), got 4294967301"
    );
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","approval_service":{"cluster":"a","timeout_ms":60001},"tools":{"t":{"action":"approve"}}}"#
        ),
        "approval_service.timeout_ms: at most 60000 (a minute), got 60001"
    );
    assert_eq!(
        error_of(r#"{"version":"1","default":"deny","failure_mode":"maybe"}"#),
        "failure_mode: unknown variant `maybe`, expected `closed` or `open`"
    );
}

#[test]
fn global_limits_need_the_service_and_the_protocol_s_windows() {
    let global = |window: &str, extra: &str| {
        format!(
            r#"{{"version":"1","default":"deny"{extra},"tools":{{"t":{{"limits":[{{"counter":"c","window":{window},"max":20,"scope":"grant","store":"global"}}]}}}}}}"#
        )
    };
    let service = r#","rate_limit_service":{"cluster":"ratelimit"}"#;
    let policy = load(&global("\"minute\"", service)).unwrap();
    assert_eq!(
        policy.rate_limit_service,
        Some(RateLimitService {
            cluster: "ratelimit".to_string(),
            domain: "mcp-policy".to_string(),
            timeout_ms: 50,
            failure_mode: FailureMode::Closed,
        })
    );
    assert_eq!(
        policy.base().tool("t").unwrap().limits[0].store,
        CounterStore::Global
    );
    assert_eq!(
        error_of(&global("\"minute\"", "")),
        "tools.t.limits[0].store: store: global needs a top-level rate_limit_service (cluster, domain, timeout_ms, failure_mode)"
    );
    assert_eq!(
        error_of(&global("90", service)),
        "tools.t.limits[0].window: store: global takes the windows the rate-limit protocol has: second, minute, hour or day (got 90s)"
    );
    // The protocol counts in 32 bits: a larger max would be cut short there.
    let big = r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":"r"},"tools":{"t":{"limits":[{"counter":"c","window":"day","max":MAX,"scope":"grant","store":"global"}]}}}"#;
    assert!(load(&big.replace("MAX", "4294967295")).is_ok());
    assert_eq!(
        error_of(&big.replace("MAX", "4294967296")),
        "tools.t.limits[0].max: store: global counts up to 4294967295 per window (the rate-limit protocol's requests_per_unit is 32-bit), got 4294967296"
    );
    assert_eq!(
        error_of(&format!(r#"{{"version":"1","default":"deny"{service}}}"#)),
        "rate_limit_service: no limit has store: global; remove rate_limit_service or mark limits global"
    );
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":"r","failure_mode":"maybe"},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]}}}"#
        ),
        "rate_limit_service.failure_mode: unknown variant `maybe`, expected `closed` or `open`"
    );
    assert_eq!(
        error_of(
            r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":"r"},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]},"u":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant"}]}}}"#
        ),
        r#"tools.u.limits[0].store: counter "c" is counted in another store at tools.t.limits[0]; a counter has one store"#
    );
}

/// Independent errors found after reading are all reported, each with its
/// path: `Display` (Envoy's log line) gives the first, then the others.
#[test]
fn every_independent_error_is_reported_with_its_path() {
    let document = r#"{"version":"1","default":"deny",
  "tools":{
    "a":{"deny_if":{"args.s":{"regex":"("},"args.t":{"regex":"a{5"}}},
    "b":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]},
    "c":{"limits":[{"counter":"c","window":3600,"max":1,"scope":"grant"}],"require":{"script":{"eq":1}}}
  },
  "identity":{"bearer_tokens":{"abc":"ci","def":"cd"}}}"#;
    let errors = load(document).unwrap_err();
    let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        r#"tools.a.deny_if.args.s.regex: invalid regex "(": found open group without closing ')'"#,
        r#"tools.a.deny_if.args.t.regex: invalid regex "a{5": found incomplete and unclosed counted repetition operator"#,
        r#"tools.c.limits[0].window: counter "c" has window 3600s here but 60s at tools.b.limits[0]; a counter has one window"#,
        r#"tools.c.require.script: argument paths start with "args." (got "script")"#,
        "identity.bearer_tokens.abc: keys are SHA-256 hashes of tokens: 64 hex digits (e.g. `printf %s \"$TOKEN\" | sha256sum`)",
        "identity.bearer_tokens.def: keys are SHA-256 hashes of tokens: 64 hex digits (e.g. `printf %s \"$TOKEN\" | sha256sum`)",
    ];
    assert_eq!(found, expected);
    assert_eq!(errors.len(), 6);
    assert_eq!(errors.first().path, "tools.a.deny_if.args.s.regex");
    // Checks made after reading have no source position (check finds it by path).
    assert!(errors.iter().all(|error| error.line.is_none()));
    assert_eq!(
        errors.to_string(),
        format!("{} (and 5 more: {})", expected[0], expected[1..].join("; "))
    );
}

/// What the reader finds wrong (types, values, unknown fields) is reported
/// part by part: every field of the document, of a tool rule and of a grant,
/// every tool rule, grant, limit and argument condition is read on its own.
/// Each error keeps the line and column where the reader stopped.
#[test]
fn errors_the_reader_finds_are_reported_part_by_part() {
    let document = r#"{"version":"1","default":"block","mode":"audit",
"tools":{
"a":{"limits":[{"counter":"c","window":60,"max":0,"scope":"grant"},{"counter":"d","window":"fortnight","max":1,"scope":"grant"}]},
"b":{"action":"nope","require":{"args.x":{"lt":"1"},"args.y":{"between":[1,2]}}},
"e":{"burst":1}},
"grants":{"ci":{"hide":[""],"tools":{"d":{"limits":[{"counter":"e","window":60,"scope":"grant"}]}}},"x":[]},
"identity":{"header":"x agent"}}"#;
    let errors = load(document).unwrap_err();
    let found: Vec<(String, Option<usize>, Option<usize>)> = errors
        .iter()
        .map(|error| (error.to_string(), error.line, error.column))
        .collect();
    let at = |text: &str, line: usize, column: usize| (text.to_string(), Some(line), Some(column));
    assert_eq!(
        found,
        [
            // serde_json's positions: the line, and the bytes of it read up
            // to the error (the end of the bad value, the key, the object).
            at("default: unknown variant `block`, expected `allow` or `deny`", 1, 32),
            at("tools.a.limits[0].max: must be a positive integer, got 0", 3, 49),
            at(r#"tools.a.limits[1].window: unknown window "fortnight" (use "second", "minute", "hour", "day" or a positive number of seconds)"#, 3, 102),
            at("tools.b.action: unknown variant `nope`, expected one of `allow`, `deny`, `approve`", 4, 20),
            at(r#"tools.b.require.args.x.lt: invalid type: string "1", expected a number"#, 4, 50),
            at("tools.b.require.args.y.between: unknown field `between`, expected one of `eq`, `neq`, `in`, `not_in`, `lt`, `lte`, `gt`, `gte`, `contains`, `regex`, `exists`, `max_length`, `under`", 4, 71),
            at("tools.e.burst: unknown field `burst`, expected one of `action`, `reason`, `on_deny`, `limits`, `rate_limit`, `require`, `deny_if`, `approve_if`, `approval`, `invokes`", 5, 12),
            at("grants.ci.hide[0]: must not be empty", 6, 26),
            at("grants.ci.tools.d.limits[0]: missing field `max` (a limit with a `window` needs one)", 6, 95),
            at("grants.x: invalid type: sequence, expected an object", 6, 104),
            at(r#"identity.header: invalid header name "x agent""#, 7, 30),
            at("mode: unknown variant `audit`, expected `enforce` or `monitor`", 1, 47),
        ]
    );
}

/// What cannot be read part by part stops the document with one error.
#[test]
fn an_error_in_the_document_itself_is_reported_alone() {
    for (document, expected) in [
        (
            r#"{"version":"1","default":"block","tool":{},"mode":"audit"}"#,
            "tool: unknown field `tool`, expected one of `$schema`, `version`, `default`, `identity`, `tools`, `prompts`, `resources`, `default_prompts`, `default_resources`, `methods`, `annotations`, `all_tools`, `max_body_bytes`, `hide`, `list`, `mode`, `deny_as`, `grants`, `roles`, `grant_roles`, `failure_mode`, `max_json_depth`, `max_callers_per_counter`, `hold_request_headers`, `rate_limit_service`, `approval_service`",
        ),
        (
            r#"{"mode":"audit","default":"block"}"#,
            "policy: missing field `version`",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"x":{"action":"no"},"x":{}}}"#,
            r#"tools: duplicate name "x""#,
        ),
        (
            r#"{"version":"1","default":"block","mode":}"#,
            "mode: expected value",
        ),
    ] {
        let errors = load(document).unwrap_err();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [expected],
            "{document}"
        );
    }
}

/// A limit that cannot be read might have been global: its error is not
/// joined by "no limit has store: global".
#[test]
fn an_unreadable_limit_does_not_make_the_rate_limit_service_an_error() {
    let errors = load(
        r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":"r"},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":0,"scope":"grant","store":"global"}]}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "tools.t.limits[0].max: must be a positive integer, got 0"
    );
    // An unreadable service: its error only, not "store: global needs a rate_limit_service".
    let errors = load(
        r#"{"version":"1","default":"deny","rate_limit_service":{"cluster":""},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "rate_limit_service.cluster: must not be empty"
    );
}

#[test]
fn prompts_resources_patterns_and_defaults_compile() {
    let policy = load(
        r#"{
            "version": "1", "default": "deny",
            "default_prompts": "allow",
            "prompts": { "secret": { "action": "deny" }, "review_*": { "reason": "r" } },
            "resources": {
                "FILE:///srv/public/*": {},
                "file:///srv/public/%2e%2e/private/*": { "action": "deny" },
                "file:///srv/public/docs/*": {}
            },
            "hide": ["deleteWorkspace", "prompt:hidden_*", "resource:file:///srv/x/../secret"],
            "methods": { "logging/setLevel": "deny", "other": "deny", "ping": "allow" },
            "grants": {
                "ops": { "default_resources": "allow", "prompts": { "secret": {} }, "methods": { "other": "allow" } }
            }
        }"#,
    )
    .unwrap();
    let base = policy.base();
    assert_eq!(
        base.default_for(Kind::Prompt),
        (Action::Allow, "/default_prompts")
    );
    assert_eq!(base.default_for(Kind::Resource), (Action::Deny, "/default"));
    assert_eq!(base.default_for(Kind::Tool), (Action::Deny, "/default"));
    // Keys are normalised URIs; the most literal pattern wins.
    assert_eq!(
        base.deciding_key(Kind::Resource, "file:///srv/public/docs/a"),
        (
            Some("file:///srv/public/docs/*"),
            "/resources/file:~1~1~1srv~1public~1docs~1*"
        )
    );
    assert_eq!(
        base.rule(Kind::Resource, "file:///srv/private/key")
            .unwrap()
            .action,
        Action::Deny
    );
    assert_eq!(
        base.deciding_key(Kind::Resource, "file:///srv/public/a").0,
        Some("FILE:///srv/public/*")
    );
    assert_eq!(
        base.deciding_key(Kind::Prompt, "review_code").0,
        Some("review_*")
    );
    assert_eq!(
        base.deciding_key(Kind::Prompt, "other"),
        (None, "/default_prompts")
    );
    // Hide entries by kind, with patterns and normalised URIs.
    assert!(base.hidden_as(Kind::Prompt, "hidden_one").is_some());
    assert!(base.hidden_as(Kind::Tool, "hidden_one").is_none());
    assert!(base
        .hidden_as(Kind::Resource, "file:///srv/secret")
        .is_some());
    assert!(base.hidden("deleteWorkspace").is_some());
    assert!(!base.shows(Kind::Resource, "file:///srv/x/../secret"));
    // Methods.
    assert_eq!(
        base.methods().denies("logging/setLevel"),
        Some("/methods/logging~1setLevel")
    );
    assert_eq!(base.methods().denies("skills/list"), Some("/methods/other"));
    assert_eq!(base.methods().denies("ping"), None);
    assert_eq!(base.methods().denies("tools/call"), None);
    // A grant overrides what it names and inherits the rest.
    let ops = policy.view("ops");
    assert_eq!(
        ops.default_for(Kind::Resource),
        (Action::Allow, "/grants/ops/default_resources")
    );
    assert_eq!(
        ops.rule(Kind::Prompt, "secret").unwrap().action,
        Action::Allow
    );
    assert_eq!(
        ops.deciding_key(Kind::Prompt, "review_x").0,
        Some("review_*")
    );
    assert_eq!(ops.methods().denies("skills/list"), None);
    assert_eq!(
        ops.methods().denies("logging/setLevel"),
        Some("/methods/logging~1setLevel")
    );
}

#[test]
fn ambiguous_keys_are_refused_naming_both() {
    let error = error_of(r#"{"version":"1","default":"deny","prompts":{"a*":{},"*b":{}}}"#);
    assert!(
        error.contains(r#"patterns "*b" and "a*" both match "ab""#),
        "{error}"
    );
    // More literal text breaks the tie; so does an exact key.
    let policy =
        load(r#"{"version":"1","default":"deny","tools":{"get_*":{},"*_status":{"action":"deny"},"get_status":{}}}"#)
            .unwrap();
    assert_eq!(
        policy.base().deciding_key(Kind::Tool, "get_job_status").0,
        Some("*_status")
    );
    assert_eq!(
        policy.base().deciding_key(Kind::Tool, "get_status").0,
        Some("get_status")
    );
    let error = error_of(r#"{"version":"1","default":"deny","tools":{"get*":{},"*sta":{}}}"#);
    assert!(
        error.contains(r#""*sta" and "get*" both match "getsta""#),
        "{error}"
    );
    let error = error_of(
        r#"{"version":"1","default":"deny","resources":{"file:///a/../b":{},"file:///b":{}}}"#,
    );
    assert!(error.contains("names the same resource"), "{error}");
    let error = error_of(r#"{"version":"1","default":"deny","resources":{"file:///../x":{}}}"#);
    assert!(error.contains("climbs above the root"), "{error}");
    let error = error_of(r#"{"version":"1","default":"deny","hide":["resource:file:///%2f"]}"#);
    assert!(error.contains("hide[0]"), "{error}");
}

// ---- Approval ----

const SERVICE: &str = r#""approval_service": {"cluster": "mcp_approval", "public_url": "https://approvals.example.com/", "timeout_ms": 300, "failure_mode": "open"}"#;

fn with_service(tools: &str) -> String {
    format!(r#"{{"version":"1","default":"deny",{SERVICE},"tools":{tools}}}"#)
}

#[test]
fn approve_and_approve_if_compile_with_their_settings() {
    let policy = load(&with_service(
        r#"{
            "run": {"approve_if": {"args.script": {"regex": "subprocess"}}, "reason": "risky scripts need a look",
                    "limits": [{"counter": "run", "window": "minute", "max": 2, "scope": "grant"}]},
            "wipe": {"action": "approve", "approval": {"ttl_seconds": 60, "reason": "wipes a disk", "separate_approver": true}}
        }"#,
    ))
    .unwrap();
    let service = policy.approval_service.clone().unwrap();
    assert_eq!(
        service,
        ApprovalService {
            cluster: "mcp_approval".to_string(),
            public_url: Some("https://approvals.example.com".to_string()),
            timeout_ms: 300,
            failure_mode: FailureMode::Open,
        }
    );
    let run = policy.base().tool("run").unwrap();
    assert_eq!(run.action, Action::Allow);
    assert_eq!(
        run.approval,
        Some(Approval {
            always: false,
            ttl_seconds: DEFAULT_APPROVAL_TTL_SECONDS,
            reason: Some("risky scripts need a look".to_string()),
            separate_approver: false,
        })
    );
    let risky = serde_json::json!({"script": "import subprocess"});
    let plain = serde_json::json!({"script": "print(1)"});
    assert_eq!(
        run.approval_needed(Some(&risky)),
        Some("/tools/run/approve_if/args.script/regex")
    );
    assert_eq!(run.approval_needed(Some(&plain)), None);
    assert_eq!(run.approval_needed(None), None);
    let wipe = policy.base().tool("wipe").unwrap();
    assert_eq!(wipe.action, Action::Allow, "approve allows once approved");
    assert_eq!(wipe.approval_needed(None), Some("/tools/wipe"));
    assert_eq!(
        wipe.approval
            .as_ref()
            .map(|a| (a.ttl_seconds, a.reason.as_deref(), a.separate_approver)),
        Some((60, Some("wipes a disk"), true))
    );
    // Defaults of the service.
    let policy = load(
        r#"{"version":"1","default":"deny","approval_service":{"cluster":"a"},"prompts":{"p":{"action":"approve"}}}"#,
    )
    .unwrap();
    assert_eq!(
        policy.approval_service,
        Some(ApprovalService {
            cluster: "a".to_string(),
            public_url: None,
            timeout_ms: DEFAULT_APPROVAL_TIMEOUT_MS,
            failure_mode: FailureMode::Closed,
        })
    );
    assert!(policy
        .base()
        .rule(Kind::Prompt, "p")
        .unwrap()
        .approval
        .is_some());
}

#[test]
fn approval_needs_a_service_and_a_service_needs_approval() {
    let cases = [
        (
            r#"{"version":"1","default":"deny","tools":{"run":{"approve_if":{"args.s":{"exists":true}}}}}"#.to_string(),
            "tools.run.approve_if: asks for approval: add a top-level approval_service (cluster, public_url, timeout_ms, failure_mode)",
        ),
        (
            r#"{"version":"1","default":"deny","grants":{"ci":{"tools":{"a/b":{"action":"approve"}}}}}"#.to_string(),
            "grants.ci.tools.a/b.action: asks for approval: add a top-level approval_service (cluster, public_url, timeout_ms, failure_mode)",
        ),
        (
            r#"{"version":"1","default":"deny","roles":{"ops":{"tools":{"wipe":{"action":"approve"}}}}}"#.to_string(),
            "roles.ops.tools.wipe.action: asks for approval: add a top-level approval_service (cluster, public_url, timeout_ms, failure_mode)",
        ),
        (
            r#"{"version":"1","default":"deny","resources":{"file:///etc/x":{"action":"approve"}}}"#.to_string(),
            "resources.file:///etc/x.action: asks for approval: add a top-level approval_service (cluster, public_url, timeout_ms, failure_mode)",
        ),
        (
            format!(r#"{{"version":"1","default":"deny",{SERVICE},"tools":{{"run":{{}}}}}}"#),
            r#"approval_service: no rule asks for approval ("action": "approve" or approve_if); remove approval_service or add such a rule"#,
        ),
        (
            with_service(r#"{"run":{"action":"deny","approve_if":{"args.s":{"exists":true}}}}"#),
            r#"tools.run.approve_if: a rule with "action": "deny" refuses every call; it never asks for approval"#,
        ),
        (
            with_service(r#"{"run":{"action":"approve","approve_if":{"args.s":{"exists":true}}}}"#),
            r#"tools.run.approve_if: "action": "approve" asks for every call, so approve_if would never decide: use one or the other"#,
        ),
        (
            with_service(r#"{"run":{"action":"approve"},"other":{"approval":{"ttl_seconds":5}}}"#),
            r#"tools.other.approval: approval settings without "action": "approve" or approve_if: no call would ever ask"#,
        ),
        (
            with_service(r#"{"run":{"approve_if":{}}}"#),
            "tools.run.approve_if: approve_if needs at least one condition",
        ),
        (
            with_service(r#"{"run":{"action":"approve","approval":{"ttl_seconds":86401}}}"#),
            "tools.run.approval.ttl_seconds: at most 86400 (a day, the approval service's longest), got 86401",
        ),
        (
            with_service(r#"{"run":{"action":"approve","approval":{"ttl":5}}}"#),
            "tools.run.approval.ttl: unknown field `ttl`, expected one of `ttl_seconds`, `reason`, `separate_approver`",
        ),
        (
            with_service(r#"{"run":{"action":"approve","reason":"a\u0007b"}}"#),
            "tools.run.reason: an approval's reason may span lines but has no other control characters",
        ),
        (
            with_service(r#"{"run":{"approve_if":{"script":{"exists":true}}}}"#),
            r#"tools.run.approve_if.script: argument paths start with "args." (got "script")"#,
        ),
        (
            r#"{"version":"1","default":"deny","approval_service":{"cluster":"a","public_url":"approvals.example.com"},"tools":{"run":{"action":"approve"}}}"#.to_string(),
            r#"approval_service.public_url: an http:// or https:// URL without query or fragment, e.g. "https://approvals.example.com" (got "approvals.example.com")"#,
        ),
        (
            r#"{"version":"1","default":"deny","approval_service":{"public_url":"https://a"},"tools":{"run":{"action":"approve"}}}"#.to_string(),
            "approval_service: missing field `cluster`",
        ),
    ];
    let mut mismatches = Vec::new();
    for (document, expected) in &cases {
        let actual = error_of(document);
        if actual != *expected {
            mismatches.push(format!(
                "document: {document}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

// ---- Concurrency caps, costs, per-argument counters ----

fn with_limit(limit: &str) -> String {
    format!(r#"{{"version":"1","default":"deny","tools":{{"t":{{"limits":[{limit}]}}}}}}"#)
}

#[test]
fn concurrency_caps_costs_and_per_arguments_compile() {
    let policy = load(&with_limit(
        r#"{"counter":"inflight","concurrent":3,"scope":"grant"}"#,
    ))
    .unwrap();
    let limit = &policy.base().tool("t").unwrap().limits[0];
    assert_eq!(
        limit.kind,
        LimitKind::Concurrent {
            cap: 3,
            lease_seconds: DEFAULT_LEASE_SECONDS
        }
    );
    assert_eq!(limit.cost, Cost::Units(1));
    assert!(!limit.has_cost());

    let policy = load(&with_limit(
        r#"{"counter":"inflight","concurrent":1024,"lease_seconds":86400,"scope":"global","per":"args.job.kind"}"#,
    ))
    .unwrap();
    let limit = &policy.base().tool("t").unwrap().limits[0];
    assert_eq!(
        limit.kind,
        LimitKind::Concurrent {
            cap: 1024,
            lease_seconds: 86_400
        }
    );
    assert_eq!(
        limit.per,
        Some(ArgumentPath {
            written: "args.job.kind".to_string(),
            segments: vec!["job".to_string(), "kind".to_string()]
        })
    );

    let policy = load(&with_limit(
        r#"{"counter":"rows","window":"day","max":10000,"scope":"grant","cost_from":"args.rows"}"#,
    ))
    .unwrap();
    let limit = &policy.base().tool("t").unwrap().limits[0];
    assert_eq!(limit.window(), Some((86_400, 10_000)));
    assert!(matches!(&limit.cost, Cost::Argument(path) if path.segments == ["rows"]));
    assert!(limit.has_cost());

    let policy = load(&with_limit(
        r#"{"counter":"spend","window":"day","max":5000,"scope":"grant","cost":250}"#,
    ))
    .unwrap();
    assert_eq!(
        policy.base().tool("t").unwrap().limits[0].cost,
        Cost::Units(250)
    );
    // null reads as absent.
    assert!(load(&with_limit(
        r#"{"counter":"c","window":"minute","max":1,"scope":"grant","concurrent":null,"lease_seconds":null,"cost":null,"cost_from":null,"per":null}"#
    ))
    .is_ok());
}

#[test]
fn nonsense_limit_combinations_are_refused_with_their_path() {
    let at = |limit: &str| error_of(&with_limit(limit));
    let cases = [
        (
            r#"{"counter":"c","concurrent":3,"window":"minute","scope":"grant"}"#,
            "tools.t.limits[0].window: a concurrent limit has no window: it caps calls in flight, each held until its exchange ends",
        ),
        (
            r#"{"counter":"c","concurrent":3,"max":3,"scope":"grant"}"#,
            "tools.t.limits[0].max: a concurrent limit has no max: `concurrent` is its cap",
        ),
        (
            r#"{"counter":"c","concurrent":3,"cost":2,"scope":"grant"}"#,
            "tools.t.limits[0].cost: a concurrent limit takes one slot per call; costs are for window limits",
        ),
        (
            r#"{"counter":"c","concurrent":3,"cost_from":"args.n","scope":"grant"}"#,
            "tools.t.limits[0].cost_from: a concurrent limit takes one slot per call; costs are for window limits",
        ),
        (
            r#"{"counter":"c","concurrent":1025,"scope":"grant"}"#,
            "tools.t.limits[0].concurrent: at most 1024, got 1025",
        ),
        (
            r#"{"counter":"c","concurrent":0,"scope":"grant"}"#,
            "tools.t.limits[0].concurrent: must be a positive integer, got 0",
        ),
        (
            r#"{"counter":"c","concurrent":2,"lease_seconds":86401,"scope":"grant"}"#,
            "tools.t.limits[0].lease_seconds: at most 86400 (a day), got 86401",
        ),
        (
            r#"{"counter":"c","window":"minute","max":5,"lease_seconds":60,"scope":"grant"}"#,
            "tools.t.limits[0].lease_seconds: only concurrent limits have a lease",
        ),
        (
            r#"{"counter":"c","scope":"grant"}"#,
            "tools.t.limits[0]: a limit needs `window` and `max` (a rate or a budget), or `concurrent` (a cap on calls in flight)",
        ),
        (
            r#"{"counter":"c","max":5,"scope":"grant"}"#,
            r#"tools.t.limits[0]: missing field `window` (a limit with `max` counts in a window: "minute", "hour", ...)"#,
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"grant","cost":2,"cost_from":"args.n"}"#,
            "tools.t.limits[0].cost_from: a limit has either `cost` or `cost_from`, not both",
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"grant","cost":6}"#,
            "tools.t.limits[0].cost: 6 is more than max 5: no call could ever pass",
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"grant","cost":0}"#,
            "tools.t.limits[0].cost: must be a positive integer, got 0",
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"grant","cost_from":"rows"}"#,
            r#"tools.t.limits[0].cost_from: an argument path like "args.name" (got "rows")"#,
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"grant","per":"args..repo"}"#,
            r#"tools.t.limits[0].per: an argument path like "args.name" (got "args..repo")"#,
        ),
        (
            r#"{"counter":"c","window":"day","max":5,"scope":"role"}"#,
            r#"tools.t.limits[0].scope: scope "role" counts the callers of a role together, but the policy has no `roles`"#,
        ),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(limit, expected)| {
            let actual = at(limit);
            (actual != *expected)
                .then(|| format!("{limit}\n  expected: {expected}\n  actual:   {actual}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_revision_is_the_documents_canonical_digest() {
    let a = load(r#"{"version":"1","default":"deny","tools":{"x":{}}}"#).unwrap();
    let b =
        load("{ \"tools\": {\"x\": {}},\n  \"default\": \"deny\", \"version\": \"1\" }").unwrap();
    let c = load(r#"{"version":"1","default":"deny","tools":{"y":{}}}"#).unwrap();
    assert_eq!(
        a.revision, b.revision,
        "whitespace and member order do not count"
    );
    assert_ne!(a.revision, c.revision);
    assert_eq!(a.revision.len(), "sha256:".len() + 64);
    assert_eq!(
        a.revision,
        format!(
            "sha256:{}",
            sha256_hex(br#"{"default":"deny","tools":{"x":{}},"version":"1"}"#)
        )
    );
}

#[test]
fn a_counter_keeps_one_shape_wherever_it_is_named() {
    let two = |first: &str, second: &str| {
        error_of(&format!(
            r#"{{"version":"1","default":"deny","all_tools":{{"limits":[{first}]}},"tools":{{"t":{{"limits":[{second}]}}}}}}"#
        ))
    };
    let window = r#"{"counter":"c","window":"minute","max":5,"scope":"grant"}"#;
    let cap = r#"{"counter":"c","concurrent":2,"scope":"grant"}"#;
    assert_eq!(
        two(window, cap),
        "tools.t.limits[0].concurrent: counter \"c\" counts calls in a window at all_tools.limits[0]; a counter is either a window or a concurrency cap"
    );
    assert_eq!(
        two(cap, window),
        "tools.t.limits[0].window: counter \"c\" caps calls in flight at all_tools.limits[0]; a counter is either a window or a concurrency cap"
    );
    assert_eq!(
        two(cap, r#"{"counter":"c","concurrent":2,"lease_seconds":60,"scope":"grant"}"#),
        "tools.t.limits[0].lease_seconds: counter \"c\" has lease_seconds 60 here but 300 at all_tools.limits[0]; a counter has one lease length"
    );
    assert_eq!(
        two(window, r#"{"counter":"c","window":"minute","max":5,"scope":"grant","per":"args.repo"}"#),
        "tools.t.limits[0].per: counter \"c\" is counted per (no argument) at all_tools.limits[0]; a counter has one `per`"
    );
    // Caps and costs may differ: the smallest cap, the largest cost apply.
    assert!(load(&format!(
        r#"{{"version":"1","default":"deny","all_tools":{{"limits":[{cap}]}},"tools":{{"t":{{"limits":[{{"counter":"c","concurrent":5,"scope":"grant"}}]}}}}}}"#
    ))
    .is_ok());
}

#[test]
fn global_concurrency_and_costs_need_the_service_too() {
    let error = error_of(&with_limit(
        r#"{"counter":"c","concurrent":2,"scope":"grant","store":"global"}"#,
    ));
    assert_eq!(
        error,
        "tools.t.limits[0].store: store: global needs a top-level rate_limit_service (cluster, domain, timeout_ms, failure_mode)"
    );
}

// ---- Roles ----

const ROLES: &str = r#"{
    "version": "1",
    "default": "deny",
    "identity": {"header": "x-agent-id"},
    "tools": {"read": {}},
    "roles": {
        "engineer": {
            "tools": {
                "deploy": {"limits": [{"counter": "deploys", "window": "hour", "max": 5, "scope": "role"}]},
                "exec": {"limits": [{"counter": "exec", "window": "minute", "max": 2, "scope": "grant"}]}
            }
        },
        "auditor": {"default": "allow", "hide": ["exec"]}
    },
    "grant_roles": {"alice": "engineer", "bob": "engineer", "carol": "auditor"},
    "grants": {
        "alice": {"tools": {"exec": {"action": "deny", "reason": "alice reviews only"}}},
        "dave": {"tools": {"exec": {}}}
    }
}"#;

#[test]
fn roles_give_rules_and_a_grants_own_entry_is_layered_over_its_role() {
    let policy = load(ROLES).unwrap();
    // bob: the role's rules.
    let bob = policy.view("bob");
    assert_eq!(
        bob.tool("deploy").unwrap().pointer,
        "/roles/engineer/tools/deploy"
    );
    assert_eq!(
        bob.tool("exec").unwrap().pointer,
        "/roles/engineer/tools/exec"
    );
    assert_eq!(bob.tool("read").unwrap().pointer, "/tools/read");
    assert_eq!(bob.default, Action::Deny);
    // alice: her entry over the role: her `exec` replaces the role's, the
    // role's `deploy` stays.
    let alice = policy.view("alice");
    assert_eq!(alice.tool("exec").unwrap().action, Action::Deny);
    assert_eq!(
        alice.tool("exec").unwrap().pointer,
        "/grants/alice/tools/exec"
    );
    assert_eq!(
        alice.tool("deploy").unwrap().pointer,
        "/roles/engineer/tools/deploy"
    );
    // carol: the auditor role's default and hide.
    let carol = policy.view("carol");
    assert_eq!(carol.default, Action::Allow);
    assert_eq!(carol.default_pointer, "/roles/auditor/default");
    assert!(carol.hidden("exec").is_some());
    // dave: an entry and no role: over the top level.
    assert!(policy.view("dave").tool("deploy").is_none());
    assert_eq!(policy.role_of("dave", None), None);
    // erin: neither: the top level; a claimed role applies, grant_roles first.
    assert!(policy.view("erin").tool("deploy").is_none());
    assert_eq!(policy.role_of("erin", Some("engineer")), Some("engineer"));
    assert_eq!(
        policy
            .view_as("erin", Some("engineer"))
            .tool("deploy")
            .unwrap()
            .pointer,
        "/roles/engineer/tools/deploy"
    );
    assert_eq!(policy.role_of("bob", Some("auditor")), Some("engineer"));
    assert_eq!(policy.view_as("bob", Some("auditor")).default, Action::Deny);
    // A claimed role the policy does not define is no role.
    assert_eq!(policy.role_of("erin", Some("admin")), None);
    // A grant's own entry decides over a claimed role (layered over the
    // top level: its role is not in grant_roles).
    assert!(policy
        .view_as("dave", Some("engineer"))
        .tool("deploy")
        .is_none());
}

#[test]
fn bad_roles_are_refused_with_their_path() {
    let cases = [
        (
            ROLES.replace(r#""carol": "auditor""#, r#""carol": "admin""#),
            r#"grant_roles.carol: no role "admin" in `roles`"#,
        ),
        (
            ROLES.replace(r#""auditor": {"default": "allow""#, r#""auditor": {"mode": "monitor""#),
            "roles.auditor.mode: unknown field `mode`, expected one of `default`, `default_prompts`, `default_resources`, `hide`, `all_tools`, `tools`, `prompts`, `resources`, `methods`, `annotations`",
        ),
        (
            r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"p","claim":"sub","role_claim":"role"}}}"#.to_string(),
            "identity.jwt_claim.role_claim: names the caller's role, but the policy has no `roles`",
        ),
        (
            ROLES.replace(r#""scope": "role"}]}"#, r#""scope": "role", "window": "fortnight"}]}"#),
            "roles.engineer.tools.deploy.limits[0]: duplicate field `window`",
        ),
    ];
    for (document, expected) in &cases {
        let actual = error_of(document);
        assert!(
            actual.starts_with(expected),
            "expected: {expected}\nactual:   {actual}"
        );
    }
    // A role's counters share the policy's one namespace.
    let clash = ROLES.replace(
        r#""counter": "exec", "window": "minute""#,
        r#""counter": "deploys", "window": "minute""#,
    );
    assert_eq!(
        error_of(&clash),
        "roles.engineer.tools.exec.limits[0].window: counter \"deploys\" has window 60s here but 3600s at roles.engineer.tools.deploy.limits[0]; a counter has one window"
    );
    let policy = load(
        r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"p","claim":"sub","role_claim":"role"}},"roles":{"r":{}}}"#,
    )
    .unwrap();
    assert!(
        matches!(&policy.identity, Identity::JwtClaim { role_claim: Some(claim), .. } if claim == "role")
    );
}

/// The path of every error the reader finds is the one serde_path_to_error
/// gives (test builds check it inside the reader, see
/// `error::check_path`): the repository's policies with each value replaced
/// by a value of every JSON kind, and each object given an unknown member, a
/// duplicate member or a member fewer; each written compactly and spread out.
#[test]
fn error_paths_are_serde_path_to_error_s_on_mutated_policies() {
    const REPLACEMENTS: [&str; 16] = [
        "0",
        "-1",
        "1.5",
        "7",
        r#""""#,
        r#""x y""#,
        "true",
        "null",
        "[]",
        "[1]",
        "[[1]]",
        r#"[{}]"#,
        r#"[""]"#,
        "{}",
        r#"{"zz":1}"#,
        r#"{"a":{"b":[1]}}"#,
    ];
    const DUPLICATE: &str = "\u{1}duplicate";
    let mut documents = 0;
    let mut refused = 0;
    for source in [
        include_str!("../../policy.json"),
        include_str!("../../examples/policies/fleet.json"),
        include_str!("../../examples/policies/grants.json"),
        include_str!("../../examples/policies/jwt.json"),
        include_str!("../../examples/policies/quotas.json"),
        include_str!("../../bench/policy-bench-arguments.json"),
    ] {
        let original: serde_json::Value = serde_json::from_str(source).unwrap();
        let mut pointers = Vec::new();
        collect_pointers(&original, String::new(), &mut pointers);
        let mut mutated = Vec::new();
        for pointer in &pointers {
            for replacement in REPLACEMENTS {
                let mut document = original.clone();
                *document.pointer_mut(pointer).unwrap() =
                    serde_json::from_str(replacement).unwrap();
                mutated.push(document.to_string());
            }
            let Some(object) = original
                .pointer(pointer)
                .and_then(|value| value.as_object())
            else {
                continue;
            };
            // The document with the object at `pointer` changed, as text.
            let changed = |change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
                let mut document = original.clone();
                change(
                    document
                        .pointer_mut(pointer)
                        .unwrap()
                        .as_object_mut()
                        .unwrap(),
                );
                document.to_string()
            };
            mutated.push(changed(&|target| {
                target.insert("zz_unknown".to_string(), serde_json::json!(1));
            }));
            for key in object.keys() {
                mutated.push(changed(&|target| {
                    target.remove(key);
                }));
                // The same name twice: written under a placeholder, renamed in the text.
                let quoted = serde_json::to_string(key).unwrap();
                mutated.push(
                    changed(&|target| {
                        target.insert(DUPLICATE.to_string(), object[key].clone());
                    })
                    .replace("\"\\u0001duplicate\"", &quoted),
                );
            }
        }
        for text in mutated {
            // Also spread out, as some writers lay JSON out: blanks around
            // colons and commas (inside strings too, which only changes
            // their text).
            let spread = text.replace("\":", "\" :\n ").replace(',', " ,\n ");
            for text in [text, spread] {
                documents += 1;
                if Policy::from_json(text.as_bytes()).is_err() {
                    refused += 1;
                }
            }
        }
    }
    // Enough refused documents that every kind of error was met.
    assert!(
        documents > 9_000 && refused > documents / 2,
        "{refused} of {documents}"
    );
}

fn collect_pointers(value: &serde_json::Value, at: String, pointers: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, member) in object {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_pointers(member, format!("{at}/{escaped}"), pointers);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_pointers(item, format!("{at}/{index}"), pointers);
            }
        }
        _ => {}
    }
    pointers.push(at);
}

/// A value nested far deeper than any reader goes (serde_json reads a part
/// whole, its depth unchecked, before reading it as a rule), before an error
/// found after it: the scan that places the error goes through the nesting
/// without recursing (no stack overflow) and finds the right path.
#[test]
fn a_deeply_nested_value_before_an_error_is_not_followed_to_its_end() {
    let depth = 100_000;
    let document = format!(
        r#"{{"version":"1","default":"deny","tools":{{"x":{}{}}},"zzz":1}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let errors = load(&document).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.first().path, "zzz", "{errors}");
}

#[test]
fn patterns_are_at_most_512_characters() {
    let pattern = |length: usize| format!("{}*", "a".repeat(length - 1));
    let document = |key: &str| {
        format!(
            r#"{{"version":"1","default":"deny","tools":{{"{key}":{{}}}},"hide":["prompt:{key}"]}}"#
        )
    };
    assert!(load(&document(&pattern(512))).is_ok());
    let long = pattern(513);
    let error = error_of(&document(&long));
    assert!(
        error.contains(&format!(
            "tools.{long}: a pattern is at most 512 characters, this one has 513"
        )) && error.contains("hide[0]: a pattern is at most 512 characters, this one has 513"),
        "{error}"
    );
    // An exact key is not a pattern: no overlap is ever computed for it.
    assert!(load(&document(&"b".repeat(600))).is_ok());
}

#[test]
fn listings_leave_out_the_letter_case_variants_a_call_would_find_hidden() {
    let document = |list: &str| {
        format!(
            r#"{{"version":"1","default":"allow","list":"{list}","hide":["secretTool","internal_*"],"tools":{{"drop_*":{{"action":"deny"}},"Search":{{}}}}}}"#
        )
    };
    let show = load(&document("show_denied")).unwrap();
    let view = show.base();
    for name in ["SECRETTOOL", "secrettool", "Internal_x", "INTERNAL_"] {
        assert!(!view.shows(Kind::Tool, name), "{name}");
    }
    // Denied variants stay listed under show_denied, as denied names do.
    for name in ["Drop_x", "search", "other", "drop_x"] {
        assert!(view.shows(Kind::Tool, name), "{name}");
    }
    let hide = load(&document("hide_denied")).unwrap();
    for name in ["Drop_x", "search", "drop_x", "SECRETTOOL"] {
        assert!(!hide.base().shows(Kind::Tool, name), "{name}");
    }
    assert!(hide.base().shows(Kind::Tool, "Search"));
    assert!(hide.base().shows(Kind::Tool, "other"));
}

/// A listing entry a read of which is refused (hidden, or a rule's deny
/// under `list: hide_denied`) is not listed in any spelling servers read as
/// that resource: a final `/`, a query, a fragment, doubled `/`.
#[test]
fn a_refused_resource_is_not_listed_under_another_spelling_of_it() {
    for (list, denied_listed) in [("show_denied", true), ("hide_denied", false)] {
        let document = format!(
            r#"{{"version":"1","default":"allow","list":"{list}",
                "hide":["resource:file:///srv/secret.txt","resource:https://api.example.com/admin"],
                "resources":{{"file:///srv/denied.txt":{{"action":"deny"}}}}}}"#
        );
        let policy = Policy::from_json(document.as_bytes()).unwrap();
        let view = policy.base();
        for hidden in [
            "file:///srv/secret.txt/",
            "file:///srv/secret.txt?v=2",
            "file:///srv/secret.txt#top",
            "file:///srv//secret.txt",
            "https://api.example.com/admin/",
            "https://api.example.com/admin?x=1",
        ] {
            assert!(!view.shows(Kind::Resource, hidden), "{list} {hidden}");
        }
        for denied in ["file:///srv/denied.txt/", "file:///srv/denied.txt?v=2"] {
            assert_eq!(
                view.shows(Kind::Resource, denied),
                denied_listed,
                "{list} {denied}"
            );
        }
        // What a rule does not refuse stays listed, whatever its spelling.
        for shown in [
            "file:///srv/public.txt/",
            "https://api.example.com/data?format=json",
        ] {
            assert!(view.shows(Kind::Resource, shown), "{list} {shown}");
        }
    }
}

/// A grant's (a role's) `methods` and `annotations` replace the rules under
/// them for the methods and annotations they name, not the whole map: a
/// grant that allows one more method keeps the top level's `"other":
/// "deny"`, and one that limits open-world tools keeps its denial of
/// destructive ones.
#[test]
fn a_grants_methods_and_annotations_replace_only_what_they_name() {
    let policy = Policy::from_json(
        br#"{"version":"1","default":"allow","identity":{"header":"x"},
            "methods":{"other":"deny","prompts/get":"deny","logging/setLevel":"deny"},
            "annotations":{"destructiveHint":{"action":"deny"}},
            "roles":{"ops":{"methods":{"resources/read":"deny"}}},
            "grant_roles":{"h":"ops"},
            "grants":{
              "g":{"methods":{"foo/bar":"allow","logging/setLevel":"allow"},
                   "annotations":{"openWorldHint":{"limits":[{"counter":"w","window":"minute","max":1,"scope":"grant"}]}}},
              "o":{"methods":{"other":"allow"},"annotations":{"destructiveHint":{"is":false,"action":"deny"}}}}}"#,
    )
    .unwrap();
    let g = policy.view("g");
    assert_eq!(g.methods().denies("baz/qux"), Some("/methods/other"));
    assert_eq!(
        g.methods().denies("prompts/get"),
        Some("/methods/prompts~1get")
    );
    assert_eq!(g.methods().denies("foo/bar"), None);
    assert_eq!(g.methods().denies("logging/setLevel"), None);
    let hints: Vec<(Hint, bool, &str)> = g
        .annotation_rules()
        .iter()
        .map(|rule| (rule.hint, rule.is, rule.pointer.as_str()))
        .collect();
    assert!(hints.contains(&(Hint::Destructive, true, "/annotations/destructiveHint")));
    assert!(hints.contains(&(Hint::OpenWorld, true, "/grants/g/annotations/openWorldHint")));
    // What a grant names for a method or an annotation replaces it whole.
    let o = policy.view("o");
    assert_eq!(o.methods().denies("baz/qux"), None);
    let hints: Vec<(Hint, bool)> = o
        .annotation_rules()
        .iter()
        .map(|rule| (rule.hint, rule.is))
        .collect();
    assert_eq!(hints, [(Hint::Destructive, false)]);
    // A role's likewise.
    let h = policy.view("h");
    assert_eq!(
        h.methods().denies("resources/read"),
        Some("/roles/ops/methods/resources~1read")
    );
    assert_eq!(h.methods().denies("baz/qux"), Some("/methods/other"));
}

/// An annotation rule whose limits are refused is not also told it has none.
#[test]
fn an_annotation_rule_with_a_refused_limit_gets_that_error_alone() {
    let errors = Policy::from_json(
        br#"{"version":"1","default":"allow",
            "annotations":{"openWorldHint":{"limits":[{"counter":"w","window":"x","max":1,"scope":"grant"}]}}}"#,
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        ["annotations.openWorldHint.limits[0].window"],
        "{errors:?}"
    );
    // With nothing written, the rule is told what it lacks.
    let errors = Policy::from_json(
        br#"{"version":"1","default":"allow","annotations":{"openWorldHint":{"limits":[]}}}"#,
    )
    .unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("needs \"action\": \"deny\" or limits"),
        "{errors}"
    );
}
