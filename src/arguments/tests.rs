use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use crate::policy::document::UniqueMap;

/// A tool rule holding only the argument maps, as the policy will read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDocument {
    #[serde(default)]
    require: Option<ConditionsDocument>,
    #[serde(default)]
    deny_if: Option<ConditionsDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsDocument {
    tools: UniqueMap<Object<RuleDocument>>,
}

/// Reads `{"tools": {tool: rule}}` as the policy
/// reader does, and compiles the rule, so errors carry their full path.
fn compile_tool(tool: &str, rule: &str) -> Result<ArgumentRules, ConfigErrors> {
    let json = format!(r#"{{"tools": {{"{tool}": {rule}}}}}"#);
    let mut reader = serde_json::Deserializer::from_str(&json);
    let document = ToolsDocument::deserialize(&mut reader)
        .map_err(|err| ConfigError::from_reader(&err, json.as_bytes()))?;
    let (name, Object(rule)) = document.tools.0.into_iter().next().unwrap();
    ArgumentRules::compile(
        rule.require,
        rule.deny_if,
        &format!("tools.{name}"),
        &format!("/tools/{}", escape_pointer_token(&name)),
    )
    // Positions of errors in conditions read on their own, as `Policy::from_json` gives them.
    .map_err(|errors| errors.locate(json.as_bytes()))
}

fn compile(rule: &str) -> ArgumentRules {
    match compile_tool("x", rule) {
        Ok(rules) => rules,
        Err(err) => panic!("rule should compile: {rule}: {err}"),
    }
}

fn error_of(rule: &str) -> String {
    match compile_tool("x", rule) {
        Ok(_) => panic!("rule should be refused: {rule}"),
        Err(err) => err.to_string(),
    }
}

/// Whether `operators` hold for the argument `v` (`None`: `v` absent). Checks
/// that `require` and `deny_if` agree: a single condition denies in `require`
/// exactly when it does not match in `deny_if`.
fn holds(operators: &str, v: Option<Value>) -> bool {
    let arguments = match v {
        Some(v) => json!({ "v": v }),
        None => json!({}),
    };
    let require = compile(&format!(r#"{{"require": {{"args.v": {operators}}}}}"#));
    let deny_if = compile(&format!(r#"{{"deny_if": {{"args.v": {operators}}}}}"#));
    let required = require.violation(Some(&arguments)).is_none();
    let matched = deny_if.violation(Some(&arguments)).is_some();
    assert_eq!(
        required, matched,
        "require and deny_if disagree on {operators} for {arguments}"
    );
    matched
}

fn check(operators: &str, cases: &[(Option<Value>, bool)]) {
    for (value, expected) in cases {
        assert_eq!(
            holds(operators, value.clone()),
            *expected,
            "{operators} for {value:?}"
        );
    }
}

const SEED: &str = r#"{
    "deny_if": {"args.script": {"regex": "subprocess|os\\.system"}},
    "require": {"args.timeout": {"lte": 300}}
}"#;

#[test]
fn seed_example_async_execute_code() {
    let rules = compile_tool("asyncExecuteCode", SEED).unwrap();
    assert!(!rules.is_empty());
    let denied = |arguments: Value| rules.violation(Some(&arguments));

    assert_eq!(denied(json!({"script": "print(1)", "timeout": 60})), None);
    assert_eq!(denied(json!({"script": "print(1)", "timeout": 300})), None);
    assert_eq!(
        denied(json!({"script": "import subprocess\nsubprocess.run(['ls'])", "timeout": 60})),
        Some("/tools/asyncExecuteCode/deny_if/args.script/regex")
    );
    assert_eq!(
        denied(json!({"script": "import os; os.system('ls')", "timeout": 60})),
        Some("/tools/asyncExecuteCode/deny_if/args.script/regex")
    );
    // The dot is escaped in the pattern: "os_system" is not "os.system".
    assert_eq!(denied(json!({"script": "os_system", "timeout": 60})), None);
    assert_eq!(
        denied(json!({"script": "print(1)", "timeout": 900})),
        Some("/tools/asyncExecuteCode/require/args.timeout/lte")
    );
    assert_eq!(
        denied(json!({"script": "print(1)"})),
        Some("/tools/asyncExecuteCode/require/args.timeout/lte")
    );
    assert_eq!(
        denied(json!({"script": "print(1)", "timeout": "300"})),
        Some("/tools/asyncExecuteCode/require/args.timeout/lte")
    );
    // No arguments at all: an empty object, so the timeout is missing.
    assert_eq!(
        rules.violation(None),
        Some("/tools/asyncExecuteCode/require/args.timeout/lte")
    );
}

#[test]
fn eq_and_neq_compare_json_values_and_numbers_by_value() {
    check(
        r#"{"eq": 1}"#,
        &[
            (Some(json!(1)), true),
            (Some(json!(1.0)), true),
            (Some(json!(2)), false),
            (Some(json!("1")), false),
            (Some(json!(true)), false),
            (Some(json!([1])), false),
            (None, false),
        ],
    );
    check(
        r#"{"eq": "python"}"#,
        &[
            (Some(json!("python")), true),
            (Some(json!("Python")), false),
            (Some(json!("python3")), false),
        ],
    );
    check(
        r#"{"eq": {"a": [1, {"b": null}], "c": 2.5}}"#,
        &[
            (Some(json!({"c": 2.5, "a": [1.0, {"b": null}]})), true),
            (Some(json!({"a": [1, {"b": null}]})), false),
            (
                Some(json!({"a": [1, {"b": null}], "c": 2.5, "d": 0})),
                false,
            ),
            (Some(json!({"a": [{"b": null}, 1], "c": 2.5})), false),
        ],
    );
    // null is a value to compare with, not "no operator".
    check(
        r#"{"eq": null}"#,
        &[
            (Some(Value::Null), true),
            (Some(json!(0)), false),
            (None, false),
        ],
    );
    check(
        r#"{"neq": 1}"#,
        &[
            (Some(json!(2)), true),
            (Some(json!("1")), true),
            (Some(json!(1)), false),
            (Some(json!(1.0)), false),
            (None, false),
        ],
    );
    check(
        r#"{"neq": null}"#,
        &[
            (Some(json!(0)), true),
            (Some(Value::Null), false),
            (None, false),
        ],
    );
}

#[test]
fn in_and_not_in_test_membership() {
    check(
        r#"{"in": ["python", "bash", 3]}"#,
        &[
            (Some(json!("bash")), true),
            (Some(json!(3.0)), true),
            (Some(json!("ruby")), false),
            (Some(json!(["bash"])), false),
            (None, false),
        ],
    );
    check(r#"{"in": []}"#, &[(Some(json!("a")), false)]);
    check(
        r#"{"not_in": ["rm", "dd"]}"#,
        &[
            (Some(json!("ls")), true),
            (Some(json!(1)), true),
            (Some(json!("rm")), false),
            (None, false),
        ],
    );
    check(
        r#"{"not_in": []}"#,
        &[(Some(json!("a")), true), (None, false)],
    );
}

#[test]
fn ordering_operators_compare_numbers_only() {
    let wrong_types = [
        (Some(json!("5")), false),
        (Some(json!(null)), false),
        (Some(json!(true)), false),
        (Some(json!([5])), false),
        (Some(json!({"n": 5})), false),
        (None, false),
    ];
    for (operators, below, at, above) in [
        (r#"{"lt": 5}"#, true, false, false),
        (r#"{"lte": 5}"#, true, true, false),
        (r#"{"gt": 5}"#, false, false, true),
        (r#"{"gte": 5}"#, false, true, true),
    ] {
        check(
            operators,
            &[
                (Some(json!(4)), below),
                (Some(json!(4.999)), below),
                (Some(json!(-7)), below),
                (Some(json!(5)), at),
                (Some(json!(5.0)), at),
                (Some(json!(5.001)), above),
                (Some(json!(u64::MAX)), above),
            ],
        );
        check(operators, &wrong_types);
    }
    check(
        r#"{"gte": -1.5}"#,
        &[(Some(json!(-1)), true), (Some(json!(-2)), false)],
    );
}

#[test]
fn large_integers_compare_exactly() {
    // 2^53 + 1 is not a double; comparing through f64 would call it equal to 2^53.
    check(
        r#"{"gt": 9007199254740992}"#,
        &[
            (Some(json!(9_007_199_254_740_993_u64)), true),
            (Some(json!(9_007_199_254_740_992_u64)), false),
        ],
    );
    check(
        r#"{"gt": 9007199254740992.0}"#,
        &[
            (Some(json!(9_007_199_254_740_993_u64)), true),
            (Some(json!(9_007_199_254_740_992_u64)), false),
        ],
    );
    check(
        r#"{"lt": -9223372036854775808}"#,
        &[(Some(json!(i64::MIN)), false), (Some(json!(-9.3e18)), true)],
    );
    check(
        r#"{"eq": 18446744073709551615}"#,
        &[(Some(json!(u64::MAX)), true), (Some(json!(-1)), false)],
    );
}

#[test]
fn contains_is_substring_of_a_string_or_member_of_an_array() {
    check(
        r#"{"contains": "rm -rf"}"#,
        &[
            (Some(json!("sudo rm -rf /")), true),
            (Some(json!("rm -r")), false),
            (Some(json!(["ls", "rm -rf"])), true),
            // Membership is whole elements, not substrings of them.
            (Some(json!(["sudo rm -rf /"])), false),
            (Some(json!({"rm -rf": 1})), false),
            (Some(json!(5)), false),
            (None, false),
        ],
    );
    check(
        r#"{"contains": 3}"#,
        &[
            (Some(json!([1, 2, 3.0])), true),
            (Some(json!([1, 2])), false),
            (Some(json!("123")), false),
            (Some(json!(3)), false),
        ],
    );
    check(
        r#"{"contains": {"name": "x"}}"#,
        &[
            (Some(json!([{"name": "y"}, {"name": "x"}])), true),
            (Some(json!([{"name": "x", "extra": 1}])), false),
        ],
    );
}

#[test]
fn regex_searches_strings_unanchored() {
    check(
        r#"{"regex": "os\\.system"}"#,
        &[
            (Some(json!("import os; os.system('x')")), true),
            (Some(json!("os_system")), false),
            (Some(json!(["os.system"])), false),
            (Some(json!(5)), false),
            (None, false),
        ],
    );
    check(
        r#"{"regex": "^[a-z]+$"}"#,
        &[(Some(json!("abc")), true), (Some(json!("abc1")), false)],
    );
    check(
        r#"{"regex": "5"}"#,
        &[(Some(json!("5")), true), (Some(json!(5)), false)],
    );
    // Matching is code point by code point: `.` is one character, not one byte.
    check(
        r#"{"regex": "^h.llo$"}"#,
        &[
            (Some(json!("héllo")), true),
            (Some(json!("h😀llo")), true),
            (Some(json!("hllo")), false),
        ],
    );
    check(
        r#"{"regex": "café"}"#,
        &[(Some(json!("un café")), true), (Some(json!("cafe")), false)],
    );
    // The ASCII spellings the refusals suggest.
    check(
        r#"{"regex": "^[0-9A-Za-z_]+$"}"#,
        &[(Some(json!("ok_1")), true), (Some(json!("héllo")), false)],
    );
    check(
        r#"{"regex": "^[[:digit:]]+$"}"#,
        &[(Some(json!("123")), true), (Some(json!("١٢٣")), false)],
    );
    check(
        r#"{"regex": "[Ss]ubprocess"}"#,
        &[
            (Some(json!("import Subprocess")), true),
            (Some(json!("SUBPROCESS")), false),
        ],
    );
}

/// Patterns whose meaning depends on Unicode tables the module leaves out
/// are refused, so none silently matches less (or more) than it says.
#[test]
fn unicode_dependent_regexes_are_refused_with_their_path() {
    let refused = [
        (r"^\d+$", r"\d is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [0-9] for the ASCII meaning"),
        (r"\D", r"\D is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [^0-9] for the ASCII meaning"),
        (r"\w+", r"\w is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [0-9A-Za-z_] for the ASCII meaning"),
        (r"\W", r"\W is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [^0-9A-Za-z_] for the ASCII meaning"),
        (r"a\sb", r"\s is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [\t\n\v\f\r ] for the ASCII meaning"),
        (r"\S", r"\S is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [^\t\n\v\f\r ] for the ASCII meaning"),
        (r"[\d.]", r"\d is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [0-9] for the ASCII meaning"),
        (r"(?P<n>\d)", r"\d is not supported: the module's regex engine reads it as ASCII only, not Unicode; write [0-9] for the ASCII meaning"),
        (r"\brm\b", r"\b is not supported: word boundaries in the module's regex engine know ASCII word characters only, not Unicode's; match the neighbours instead, e.g. (^|[^0-9A-Za-z_])rm([^0-9A-Za-z_]|$)"),
        (r"\B", r"\B is not supported: word boundaries in the module's regex engine know ASCII word characters only, not Unicode's; match the neighbours instead, e.g. (^|[^0-9A-Za-z_])rm([^0-9A-Za-z_]|$)"),
        (r"\<rm", r"\< is not supported: word boundaries in the module's regex engine know ASCII word characters only, not Unicode's; match the neighbours instead, e.g. (^|[^0-9A-Za-z_])rm([^0-9A-Za-z_]|$)"),
        (r"rm\b{end}", r"\b is not supported: word boundaries in the module's regex engine know ASCII word characters only, not Unicode's; match the neighbours instead, e.g. (^|[^0-9A-Za-z_])rm([^0-9A-Za-z_]|$)"),
        (r"\p{Greek}", r"Unicode classes (\p{..}, \P{..}) are not supported"),
        (r"\PL", r"Unicode classes (\p{..}, \P{..}) are not supported"),
        ("(?i)subprocess", "case-insensitive matching (?i) is not supported: the module's regex engine folds ASCII case only, not Unicode's (ſ for s, \u{212A} (Kelvin) for k); write the cases out, e.g. [Ss]ubprocess"),
        ("a(?mi:b)", "case-insensitive matching (?i) is not supported: the module's regex engine folds ASCII case only, not Unicode's (ſ for s, \u{212A} (Kelvin) for k); write the cases out, e.g. [Ss]ubprocess"),
        ("(?s-m)(?xi)a", "case-insensitive matching (?i) is not supported: the module's regex engine folds ASCII case only, not Unicode's (ſ for s, \u{212A} (Kelvin) for k); write the cases out, e.g. [Ss]ubprocess"),
    ];
    for (pattern, reason) in refused {
        let rule = json!({"deny_if": {"args.script": {"regex": pattern}}}).to_string();
        assert_eq!(
            error_of(&rule),
            format!("tools.x.deny_if.args.script.regex: invalid regex {pattern:?}: {reason}"),
            "{pattern}"
        );
    }
    // Look-alikes that mean the same in any engine are accepted: an escaped
    // backslash before a letter, flags that are not `i` or that turn it
    // off, `(?P<..>` and `(?<..>` group names, hex escapes, ASCII classes.
    for (pattern, matching, other) in [
        (r"^a\\d$", r"a\d", "a1"),
        (r"(?m)^x$", "y\nx", "xx"),
        (r"(?-i)Ab", "Ab", "ab"),
        (r"(?s:a.b)", "a\nb", "ab"),
        (r"(?P<id>[0-9]+)-(?<rest>x)", "12-x", "12-y"),
        (r"\x{64}\u0065", "de", "d"),
        (r"[[:space:]]", "a b", "ab"),
        (r"\Aab\z", "ab", "abc"),
    ] {
        let rules = compile(&json!({"deny_if": {"args.s": {"regex": pattern}}}).to_string());
        let denied = |s: &str| rules.violation(Some(&json!({ "s": s }))).is_some();
        assert!(denied(matching), "{pattern} should match {matching:?}");
        assert!(!denied(other), "{pattern} should not match {other:?}");
    }
}

#[test]
fn exists_tests_presence_and_null_is_present() {
    check(
        r#"{"exists": true}"#,
        &[
            (Some(json!("x")), true),
            (Some(Value::Null), true),
            (Some(json!(false)), true),
            (None, false),
        ],
    );
    check(
        r#"{"exists": false}"#,
        &[
            (None, true),
            (Some(Value::Null), false),
            (Some(json!(0)), false),
        ],
    );
}

#[test]
fn max_length_counts_unicode_scalar_values_and_array_elements() {
    check(
        r#"{"max_length": 5}"#,
        &[
            (Some(json!("hello")), true),
            // 5 characters, 6 bytes.
            (Some(json!("héllo")), true),
            // 5 characters, 20 bytes.
            (Some(json!("😀😀😀😀😀")), true),
            (Some(json!("😀😀😀😀😀😀")), false),
            (Some(json!("hello!")), false),
            (Some(json!("")), true),
            (Some(json!([1, 2, 3, 4, 5])), true),
            (Some(json!([1, 2, 3, 4, 5, 6])), false),
            (Some(json!(["a long string counts as one element"])), true),
            (Some(json!(12)), false),
            (Some(json!({"a": 1})), false),
            (Some(Value::Null), false),
            (None, false),
        ],
    );
    check(
        r#"{"max_length": 0}"#,
        &[
            (Some(json!("")), true),
            (Some(json!([])), true),
            (Some(json!("a")), false),
        ],
    );
}

#[test]
fn missing_values_match_only_exists_false() {
    for operators in [
        r#"{"eq": null}"#,
        r#"{"neq": 1}"#,
        r#"{"in": [null]}"#,
        r#"{"not_in": [1]}"#,
        r#"{"lt": 1}"#,
        r#"{"lte": 1}"#,
        r#"{"gt": 1}"#,
        r#"{"gte": 1}"#,
        r#"{"contains": ""}"#,
        r#"{"regex": ""}"#,
        r#"{"exists": true}"#,
        r#"{"max_length": 10}"#,
    ] {
        assert!(!holds(operators, None), "{operators}");
    }
    assert!(holds(r#"{"exists": false}"#, None));

    // In require, anything but exists:false on a missing path denies.
    let rules = compile(r#"{"require": {"args.a": {"neq": 1}, "args.b": {"exists": false}}}"#);
    assert_eq!(
        rules.violation(Some(&json!({}))),
        Some("/tools/x/require/args.a/neq")
    );
    assert_eq!(rules.violation(None), Some("/tools/x/require/args.a/neq"));
    assert_eq!(rules.violation(Some(&json!({"a": 2}))), None);
    assert_eq!(
        rules.violation(Some(&json!({"a": 2, "b": null}))),
        Some("/tools/x/require/args.b/exists")
    );

    // In deny_if, only exists:false matches a missing path.
    let rules = compile(r#"{"deny_if": {"args.a": {"not_in": [1]}, "args.b": {"exists": false}}}"#);
    assert_eq!(rules.violation(Some(&json!({"b": 1}))), None);
    assert_eq!(
        rules.violation(Some(&json!({"a": 2}))),
        Some("/tools/x/deny_if/args.a/not_in")
    );
    assert_eq!(
        rules.violation(Some(&json!({"a": 1}))),
        Some("/tools/x/deny_if/args.b/exists")
    );
    assert_eq!(
        rules.violation(None),
        Some("/tools/x/deny_if/args.b/exists")
    );
}

#[test]
fn wrong_types_deny_in_require_and_do_not_match_in_deny_if() {
    let require = compile(
        r#"{"require": {"args.n": {"gte": 1}, "args.s": {"regex": "^ok$"}, "args.l": {"max_length": 3}}}"#,
    );
    let good = json!({"n": 1, "s": "ok", "l": "abc"});
    assert_eq!(require.violation(Some(&good)), None);
    for (arguments, pointer) in [
        (
            json!({"n": "1", "s": "ok", "l": "abc"}),
            "/tools/x/require/args.n/gte",
        ),
        (
            json!({"n": 1, "s": 1, "l": "abc"}),
            "/tools/x/require/args.s/regex",
        ),
        (
            json!({"n": 1, "s": ["ok"], "l": "abc"}),
            "/tools/x/require/args.s/regex",
        ),
        (
            json!({"n": 1, "s": "ok", "l": 3}),
            "/tools/x/require/args.l/max_length",
        ),
    ] {
        assert_eq!(
            require.violation(Some(&arguments)),
            Some(pointer),
            "{arguments}"
        );
    }

    let deny_if = compile(
        r#"{"deny_if": {"args.n": {"gt": 1}, "args.s": {"regex": "rm"}, "args.t": {"contains": "rm"}, "args.l": {"max_length": 0}}}"#,
    );
    for arguments in [
        json!({"n": "100"}),
        json!({"n": [100]}),
        json!({"s": 1}),
        json!({"s": {"rm": "rm"}}),
        json!({"t": 1}),
        json!({"t": {"rm": 1}}),
        json!({"l": 0}),
        json!({"l": null}),
    ] {
        assert_eq!(deny_if.violation(Some(&arguments)), None, "{arguments}");
    }
    assert_eq!(
        deny_if.violation(Some(&json!({"l": ""}))),
        Some("/tools/x/deny_if/args.l/max_length")
    );
}

#[test]
fn nested_paths_and_array_indexes() {
    let rules = compile(
        r#"{"deny_if": {
            "args.options.timeout": {"gt": 60},
            "args.files.1.name": {"regex": "\\.env$"},
            "args.env.0": {"eq": "zero-key"},
            "args.matrix.0.1": {"eq": 2}
        }}"#,
    );
    let denied = |arguments: Value| rules.violation(Some(&arguments));
    assert_eq!(
        denied(json!({"options": {"timeout": 61}})),
        Some("/tools/x/deny_if/args.options.timeout/gt")
    );
    assert_eq!(denied(json!({"options": {"timeout": 60}})), None);
    // The path goes through a value that is not an object: nothing there.
    assert_eq!(denied(json!({"options": "timeout=61"})), None);
    assert_eq!(denied(json!({"options": [61]})), None);
    assert_eq!(
        denied(json!({"files": [{"name": "a.py"}, {"name": ".env"}]})),
        Some("/tools/x/deny_if/args.files.1.name/regex")
    );
    assert_eq!(
        denied(json!({"files": [{"name": ".env"}, {"name": "a.py"}]})),
        None
    );
    // Out of range.
    assert_eq!(denied(json!({"files": [{"name": ".env"}]})), None);
    // On an object a numeric segment is an ordinary key.
    assert_eq!(
        denied(json!({"files": {"1": {"name": ".env"}}})),
        Some("/tools/x/deny_if/args.files.1.name/regex")
    );
    assert_eq!(
        denied(json!({"env": {"0": "zero-key"}})),
        Some("/tools/x/deny_if/args.env.0/eq")
    );
    assert_eq!(
        denied(json!({"env": ["zero-key"]})),
        Some("/tools/x/deny_if/args.env.0/eq")
    );
    assert_eq!(
        denied(json!({"matrix": [[1, 2], [3, 4]]})),
        Some("/tools/x/deny_if/args.matrix.0.1/eq")
    );
    assert_eq!(denied(json!({"matrix": [[2, 1]]})), None);
}

#[test]
fn only_canonical_decimals_index_arrays() {
    let rules =
        compile(r#"{"require": {"args.a.01": {"exists": false}, "args.b.1": {"exists": true}}}"#);
    // "01" is no index (as in JSON pointers), so nothing is there.
    assert_eq!(
        rules.violation(Some(&json!({"a": [1, 2], "b": [1, 2]}))),
        None
    );
    // ...but it is a key of an object.
    assert_eq!(
        rules.violation(Some(&json!({"a": {"01": 1}, "b": [1, 2]}))),
        Some("/tools/x/require/args.a.01/exists")
    );
    assert_eq!(
        rules.violation(Some(&json!({"b": [1]}))),
        Some("/tools/x/require/args.b.1/exists")
    );
    assert_eq!(array_index("0"), Some(0));
    assert_eq!(array_index("10"), Some(10));
    for segment in [
        "01",
        "+1",
        "-1",
        "1e2",
        " 1",
        "x",
        "99999999999999999999999",
    ] {
        assert_eq!(array_index(segment), None, "{segment}");
    }
}

#[test]
fn operators_in_one_object_are_anded() {
    let rules = compile(r#"{"require": {"args.n": {"gte": 1, "lte": 10, "neq": 5}}}"#);
    let denied = |n: Value| rules.violation(Some(&json!({ "n": n })));
    assert_eq!(denied(json!(1)), None);
    assert_eq!(denied(json!(10)), None);
    // The first operator that fails, in the fixed order eq, neq, ... gte ...
    assert_eq!(denied(json!(5)), Some("/tools/x/require/args.n/neq"));
    assert_eq!(denied(json!(0)), Some("/tools/x/require/args.n/gte"));
    assert_eq!(denied(json!(11)), Some("/tools/x/require/args.n/lte"));

    // deny_if: all must hold; the pointer is the object's first operator.
    let rules =
        compile(r#"{"deny_if": {"args.s": {"max_length": 3, "regex": "^a", "contains": "b"}}}"#);
    let denied = |s: &str| rules.violation(Some(&json!({ "s": s })));
    assert_eq!(denied("ab"), Some("/tools/x/deny_if/args.s/contains"));
    assert_eq!(denied("abcd"), None);
    assert_eq!(denied("bab"), None);
    assert_eq!(denied("ac"), None);
}

#[test]
fn the_first_condition_in_document_order_decides() {
    // Written z before a: a sorted map would report a.
    let rules = compile(r#"{"require": {"args.z": {"eq": 1}, "args.a": {"eq": 1}}}"#);
    assert_eq!(
        rules.violation(Some(&json!({}))),
        Some("/tools/x/require/args.z/eq")
    );
    assert_eq!(
        rules.violation(Some(&json!({"z": 1}))),
        Some("/tools/x/require/args.a/eq")
    );
    assert_eq!(rules.violation(Some(&json!({"z": 1, "a": 1}))), None);

    let rules = compile(r#"{"deny_if": {"args.z": {"exists": true}, "args.a": {"exists": true}}}"#);
    assert_eq!(
        rules.violation(Some(&json!({"a": 1, "z": 1}))),
        Some("/tools/x/deny_if/args.z/exists")
    );
    assert_eq!(
        rules.violation(Some(&json!({"a": 1}))),
        Some("/tools/x/deny_if/args.a/exists")
    );

    // require is checked before deny_if, wherever each is written.
    let rules = compile(
        r#"{"deny_if": {"args.a": {"exists": true}}, "require": {"args.b": {"exists": true}}}"#,
    );
    assert_eq!(
        rules.violation(Some(&json!({"a": 1}))),
        Some("/tools/x/require/args.b/exists")
    );
    assert_eq!(
        rules.violation(Some(&json!({"a": 1, "b": 1}))),
        Some("/tools/x/deny_if/args.a/exists")
    );
    assert_eq!(rules.violation(Some(&json!({"b": 1}))), None);
}

#[test]
fn pointers_escape_path_keys_and_tool_names() {
    let rules = compile_tool("a/b", r#"{"require": {"args.x/y~z": {"eq": 1}}}"#).unwrap();
    assert_eq!(
        rules.violation(None),
        Some("/tools/a~1b/require/args.x~1y~0z/eq")
    );
    assert_eq!(rules.violation(Some(&json!({"x/y~z": 1}))), None);
}

#[test]
fn empty_rules_allow_everything() {
    let rules = ArgumentRules::compile(None, None, "tools.x", "/tools/x").unwrap();
    assert!(rules.is_empty());
    assert_eq!(rules.violation(None), None);
    assert!(ArgumentRules::default().is_empty());

    let rules = compile(r#"{"require": {}, "deny_if": {}}"#);
    assert!(rules.is_empty());
    assert_eq!(rules.violation(Some(&json!({"anything": 1}))), None);

    assert!(!compile(r#"{"require": {"args.a": {"exists": false}}}"#).is_empty());
    assert!(!compile(r#"{"deny_if": {"args.a": {"exists": true}}}"#).is_empty());
}

#[test]
fn bad_documents_are_refused_with_their_path() {
    let require = |condition: &str| format!(r#"{{"require": {{{condition}}}}}"#);
    let deny_if = |condition: &str| format!(r#"{{"deny_if": {{{condition}}}}}"#);
    let cases = [
        // Paths.
        (require(r#""script": {"eq": 1}"#), r#"tools.x.require.script: argument paths start with "args." (got "script")"#),
        (require(r#""args": {"exists": true}"#), r#"tools.x.require.args: argument paths start with "args." (got "args")"#),
        (require(r#""": {"exists": true}"#), r#"tools.x.require.: argument paths start with "args." (got "")"#),
        (require(r#""arguments.a": {"exists": true}"#), r#"tools.x.require.arguments.a: argument paths start with "args." (got "arguments.a")"#),
        (require(r#""args.": {"exists": true}"#), r#"tools.x.require.args.: empty segment in argument path "args.""#),
        (deny_if(r#""args..a": {"exists": true}"#), r#"tools.x.deny_if.args..a: empty segment in argument path "args..a""#),
        (deny_if(r#""args.a.": {"exists": true}"#), r#"tools.x.deny_if.args.a.: empty segment in argument path "args.a.""#),
        (require(r#""args.a": {"eq": 1}, "args.a": {"eq": 2}"#), r#"tools.x.require: duplicate argument path "args.a""#),
        // Operator objects.
        (require(r#""args.a": {}"#), "tools.x.require.args.a: no operator (use one or more of eq, neq, in, not_in, lt, lte, gt, gte, contains, regex, exists, max_length, under)"),
        (require(r#""args.a": {"between": [1, 2]}"#), "tools.x.require.args.a.between: unknown field `between`, expected one of `eq`, `neq`, `in`, `not_in`, `lt`, `lte`, `gt`, `gte`, `contains`, `regex`, `exists`, `max_length`, `under`"),
        (require(r#""args.a": {"eq": 1, "eq": 2}"#), "tools.x.require.args.a: duplicate field `eq`"),
        (require(r#""args.a": [{"eq": 1}]"#), "tools.x.require.args.a: invalid type: sequence, expected an object"),
        (require(r#""args.a": "exists""#), r#"tools.x.require.args.a: invalid type: string "exists", expected an object"#),
        (r#"{"require": [["args.a", {"eq": 1}]]}"#.to_string(), r#"tools.x.require: conditions are an object keyed by argument path, e.g. {"args.amount": {"lte": 10000}}; only an empty array ([], no conditions) is read as a list"#),
        (r#"{"deny_if": "args.a"}"#.to_string(), r#"tools.x.deny_if: invalid type: string "args.a", expected an object"#),
        (r#"{"allow_if": {}}"#.to_string(), "tools.x.allow_if: unknown field `allow_if`, expected `require` or `deny_if`"),
        // Operand types.
        (require(r#""args.timeout": {"lte": "300"}"#), r#"tools.x.require.args.timeout.lte: invalid type: string "300", expected a number"#),
        (require(r#""args.timeout": {"lt": null}"#), "tools.x.require.args.timeout.lt: invalid type: null, expected a number"),
        (require(r#""args.timeout": {"gt": [1]}"#), "tools.x.require.args.timeout.gt: invalid type: sequence, expected a number"),
        (require(r#""args.timeout": {"gte": true}"#), "tools.x.require.args.timeout.gte: invalid type: boolean `true`, expected a number"),
        (require(r#""args.a": {"in": "python"}"#), r#"tools.x.require.args.a.in: invalid type: string "python", expected an array"#),
        (require(r#""args.a": {"not_in": {"a": 1}}"#), "tools.x.require.args.a.not_in: invalid type: map, expected an array"),
        (require(r#""args.a": {"in": null}"#), "tools.x.require.args.a.in: invalid type: null, expected an array"),
        (deny_if(r#""args.script": {"regex": 1}"#), "tools.x.deny_if.args.script.regex: invalid type: integer `1`, expected a string"),
        (deny_if(r#""args.script": {"regex": "("}"#), r#"tools.x.deny_if.args.script.regex: invalid regex "(": found open group without closing ')'"#),
        (deny_if(r#""args.script": {"regex": "a{5"}"#), r#"tools.x.deny_if.args.script.regex: invalid regex "a{5": found incomplete and unclosed counted repetition operator"#),
        (deny_if(r#""args.script": {"regex": "(?<=a)b"}"#), r#"tools.x.deny_if.args.script.regex: invalid regex "(?<=a)b": look-around is not supported"#),
        (deny_if(r#""args.script": {"regex": "(?P<a>x)(?P<a>y)"}"#), r#"tools.x.deny_if.args.script.regex: invalid regex "(?P<a>x)(?P<a>y)": duplicate capture group name"#),
        (deny_if(r#""args.script": {"regex": "(?:a{1000}){1000}"}"#), r#"tools.x.deny_if.args.script.regex: invalid regex "(?:a{1000}){1000}": the pattern compiles to more than 64 KiB (a counted repetition such as {1000} copies what it repeats); matching time grows with the value's length times the pattern's size, so write a smaller pattern"#),
        (require(r#""args.a": {"exists": "yes"}"#), r#"tools.x.require.args.a.exists: invalid type: string "yes", expected a boolean"#),
        (require(r#""args.a": {"eq": {"k": 1, "k": 2}}"#), r#"tools.x.require.args.a.eq: duplicate member "k""#),
        (deny_if(r#""args.a": {"in": [1, {"a": {"b": 1, "b": 2}}]}"#), r#"tools.x.deny_if.args.a.in[1].a: duplicate member "b""#),
        (deny_if(r#""args.a": {"contains": {"x": [], "x": []}}"#), r#"tools.x.deny_if.args.a.contains: duplicate member "x""#),
        (require(r#""args.a": {"exists": null}"#), "tools.x.require.args.a.exists: invalid type: null, expected a boolean"),
        (require(r#""args.a": {"max_length": -1}"#), "tools.x.require.args.a.max_length: must be a non-negative integer, got -1"),
        (require(r#""args.a": {"max_length": 1.5}"#), "tools.x.require.args.a.max_length: invalid type: floating point `1.5`, expected a non-negative integer"),
        (require(r#""args.a": {"max_length": "10"}"#), r#"tools.x.require.args.a.max_length: invalid type: string "10", expected a non-negative integer"#),
        // A later condition is checked too.
        (require(r#""args.a": {"eq": 1}, "args.b": {"gt": "1"}"#), r#"tools.x.require.args.b.gt: invalid type: string "1", expected a number"#),
    ];
    for (rule, expected) in cases {
        assert_eq!(error_of(&rule), expected, "{rule}");
    }
}

#[test]
fn regex_errors_in_the_real_tool_name_say_where() {
    let err = compile_tool(
        "asyncExecuteCode",
        r#"{"deny_if": {"args.script": {"regex": "("}}}"#,
    )
    .err()
    .unwrap();
    let err = err.first();
    assert_eq!(err.path, "tools.asyncExecuteCode.deny_if.args.script.regex");
    assert_eq!(
        err.to_string(),
        r#"tools.asyncExecuteCode.deny_if.args.script.regex: invalid regex "(": found open group without closing ')'"#
    );
    // Compile-time checks have no source position; the reader's do.
    assert_eq!((err.line, err.column), (None, None));
    let err = compile_tool("x", r#"{"require": {"args.a": {"lt": "1"}}}"#)
        .err()
        .unwrap();
    assert!(err.first().line.is_some() && err.first().column.is_some());
}

#[test]
fn a_regex_on_a_long_argument_stays_linear() {
    // The classic catastrophic-backtracking pattern; a linear engine answers at once.
    let rules = compile(r#"{"deny_if": {"args.s": {"regex": "^(a+)+$"}}}"#);
    let long = format!("{}!", "a".repeat(100_000));
    assert_eq!(rules.violation(Some(&json!({ "s": long }))), None);
    let all_a = "a".repeat(100_000);
    assert_eq!(
        rules.violation(Some(&json!({ "s": all_a }))),
        Some("/tools/x/deny_if/args.s/regex")
    );
}

#[test]
fn under_keeps_paths_inside_their_base_whatever_the_spelling() {
    let rules = rules_of(r#"{"args.path": {"under": "src/"}}"#);
    for (path, allowed) in [
        ("src/main.py", true),
        ("src", true),
        ("src/./lib/../main.py", true),
        ("src/%2e%2e/secrets.env", false),
        ("src/../secrets.env", false),
        ("a/../../etc", false),
        ("src/..%2f..%2fetc", false),
        ("srcs/x", false),
        ("/src/x", false),
    ] {
        let arguments = serde_json::json!({ "path": path });
        assert_eq!(
            rules.violation(Some(&arguments)).is_none(),
            allowed,
            "{path}"
        );
    }
    // Not a string, or missing: not under anything.
    assert!(rules
        .violation(Some(&serde_json::json!({ "path": 7 })))
        .is_some());
    assert!(rules.violation(Some(&serde_json::json!({}))).is_some());
    let absolute = rules_of(r#"{"args.uri": {"under": "file:///srv/public"}}"#);
    assert!(absolute
        .violation(Some(&serde_json::json!({"uri": "file:///srv/public/a"})))
        .is_none());
    assert!(absolute
        .violation(Some(
            &serde_json::json!({"uri": "file:///srv/public/../.env"})
        ))
        .is_some());
}

fn rules_of(require: &str) -> ArgumentRules {
    compile(&format!(r#"{{"require": {require}}}"#))
}

/// `deny_if` (and `approve_if`) with `under` hold for every spelling a
/// server may take for a path under the base: one that cannot be
/// normalised, one in another letter case, one with a query, fragment or
/// trailing `/`. (`require` stays strict: such a value is under nothing.)
#[test]
fn deny_if_under_holds_for_every_spelling_a_server_may_take_for_the_base() {
    let deny = compile(r#"{"deny_if": {"args.p": {"under": "/srv/secret"}}}"#);
    let require = rules_of(r#"{"args.p": {"under": "/srv/secret"}}"#);
    for path in [
        "/srv/secret/k",
        "/srv/secret/a\\b",
        "/srv/secret/x%2fy",
        "/srv/secret/a%zzb",
        "/srv/secret/%252e",
        "/srv/secret/k\u{1}",
        "/srv/Secret/k",
        "/SRV/SECRET",
        "/srv/public/../secret/k",
    ] {
        let arguments = json!({ "p": path });
        assert!(
            deny.violation(Some(&arguments)).is_some(),
            "deny_if {path:?}"
        );
    }
    for path in ["/srv/secret/a\\b", "/srv/Secret/k", "/srv/secret/%zz"] {
        let arguments = json!({ "p": path });
        assert!(
            require.violation(Some(&arguments)).is_some(),
            "require {path:?}"
        );
    }
    let uri = compile(r#"{"deny_if": {"args.p": {"under": "file:///srv/secret"}}}"#);
    for value in [
        "file:///srv/secret?x",
        "file:///srv/secret#x",
        "file:///srv/secret/x?/..%2F..%2F.env",
        "file:///srv/Secret/k",
    ] {
        let arguments = json!({ "p": value });
        assert!(
            uri.violation(Some(&arguments)).is_some(),
            "deny_if {value:?}"
        );
    }
    // A `file:` URI and a path name one file, either way round.
    assert!(uri
        .violation(Some(&json!({ "p": "/srv/secret/k" })))
        .is_some());
    assert!(deny
        .violation(Some(&json!({ "p": "file:///srv/secret/k" })))
        .is_some());
    assert!(deny
        .violation(Some(&json!({ "p": "file://localhost/srv/secret/k" })))
        .is_some());
    // Elsewhere, and not a string: no match.
    for value in [json!("/srv/public/x"), json!("/srv/secrets"), json!(7)] {
        assert!(
            deny.violation(Some(&json!({ "p": value }))).is_none(),
            "{value}"
        );
    }
}

/// Matching costs the value's length times the pattern's size: a pattern
/// whose counted repetitions make it large is refused at load, naming why.
#[test]
fn a_pattern_too_large_to_match_quickly_is_refused() {
    for pattern in ["a{10000}b", "[^x]{5000}y", "(a|b|c|d|e|f|g|h){1000}z"] {
        let error = super::pattern::compile(pattern).err().unwrap();
        assert!(
            error.contains("compiles to more than 64 KiB"),
            "{pattern}: {error}"
        );
    }
    for pattern in ["[^\\n]{1000}", "a{2000}b", "^[a-z0-9_./-]{1,255}$"] {
        assert!(super::pattern::compile(pattern).is_ok(), "{pattern}");
    }
}
