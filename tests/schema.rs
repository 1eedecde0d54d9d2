//! policy.schema.json: generated from the document types, kept current, and
//! faithful to the filter: it accepts every policy in the repository and
//! refuses the bad documents of the validation tests that a JSON Schema can
//! describe. `what_the_schema_cannot_express` lists the rest.
// The command and the schema are native only.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_policy::policy::Policy;
use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("policy.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn schema_errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn the_schema_file_is_what_the_command_prints() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-policy"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let kept = std::fs::read_to_string(repo_root().join("policy.schema.json")).unwrap();
    assert!(
        printed == kept,
        "policy.schema.json differs from what `mcp-policy schema` prints (a document type \
         changed?); regenerate it from the repository root with\n  \
         cargo run --quiet --bin mcp-policy -- schema > policy.schema.json"
    );
}

/// Every policy document the repository ships: policy.json, JSON policies
/// under examples/, and the policies embedded in envoy/*.yaml.
fn repository_policies() -> Vec<(String, String)> {
    let mut policies = vec![(
        "policy.json".to_string(),
        std::fs::read_to_string(repo_root().join("policy.json")).unwrap(),
    )];
    for path in files_under(&repo_root().join("examples"), "json") {
        let text = std::fs::read_to_string(&path).unwrap();
        // Request bodies live there too; a policy has a `version`. A file
        // that is not JSON at all is neither: it fails here rather than
        // being skipped as "not a policy".
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", relative(&path)));
        if value.get("version").is_some() {
            policies.push((relative(&path), text));
        }
    }
    for path in files_under(&repo_root().join("envoy"), "yaml") {
        let text = std::fs::read_to_string(&path).unwrap();
        for (index, block) in literal_blocks(&text).into_iter().enumerate() {
            if block.trim_start().starts_with('{') {
                policies.push((format!("{} (block {index})", relative(&path)), block));
            }
        }
    }
    policies
}

fn files_under(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path, extension));
        } else if path.extension().is_some_and(|found| found == extension) {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The text of every `value: |` block scalar: the lines after it that are
/// indented deeper than the `value:` key (blank lines included).
fn literal_blocks(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut blocks = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim() != "value: |" {
            continue;
        }
        let block: Vec<&str> = lines[index + 1..]
            .iter()
            .take_while(|next| next.trim().is_empty() || indent(next) > indent(line))
            .copied()
            .collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

#[test]
fn the_schema_accepts_every_policy_in_the_repository() {
    let validator = validator();
    let policies = repository_policies();
    assert!(
        policies
            .iter()
            .any(|(name, _)| name.starts_with("envoy/envoy.yaml")),
        "the policy embedded in envoy/envoy.yaml was not found"
    );
    assert!(
        policies
            .iter()
            .any(|(name, _)| name == "examples/policies/grants.json"),
        "examples/policies/grants.json was not found"
    );
    assert!(policies.len() >= 3, "{policies:?}");
    for (name, text) in policies {
        if let Err(error) = Policy::from_json(text.as_bytes()) {
            panic!("{name} is not a valid policy: {error}");
        }
        let document: Value = serde_json::from_str(&text).unwrap();
        let errors = schema_errors(&validator, &document);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

/// Valid corners of the format: the schema must not refuse what the filter accepts.
#[test]
fn the_schema_accepts_valid_corner_cases() {
    let validator = validator();
    let documents = [
        r#"{"version":"1","default":"allow"}"#,
        r#"{"$schema":"./policy.schema.json","version":"1","default":"deny","max_body_bytes":4096,"max_json_depth":127,"failure_mode":"open","mode":"monitor","deny_as":"tool_result","list":"hide_denied"}"#,
        // null reads as absent where a field is optional.
        r#"{"version":"1","default":"deny","identity":{"header":"X-Agent-Id","bearer_tokens":null},"hide":null,"all_tools":null}"#,
        r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"jwt_payload","claim":"sub"}}}"#,
        r#"{"version":"1","default":"deny","identity":{"bearer_tokens":{"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08":"ci"}}}"#,
        r#"{"version":"1","default":"deny","tools":{"a/b~c":{"reason":"r","on_deny":null,"limits":[{"counter":"x","window":3600,"max":1,"scope":"session"}]}}}"#,
        r#"{"version":"1","default":"deny","hide":["*"],"tools":{"x":{"action":"deny","on_deny":"because"}}}"#,
        // `eq: null` compares with null; operands of any JSON type where allowed.
        r#"{"version":"1","default":"deny","tools":{"x":{"require":{"args.a":{"eq":null},"args.b.0.c":{"in":[1,"a",null],"exists":true,"max_length":0}},"deny_if":{"args.s":{"regex":"[Rr][Mm] -rf","contains":"x"},"args.n":{"gte":-1.5,"lt":1e3}}}}}"#,
        r#"{"version":"1","default":"deny","grants":{"ci/bot":{"default":"allow","hide":[],"all_tools":{"limits":[]},"tools":{"t":{}}}}}"#,
        // PolicyLayer's documented policy shape: empty lists of conditions.
        r#"{"version":"1","default":"deny","hide":["delete_account"],"all_tools":{"limits":[]},"tools":{"create_charge":{"require":[],"deny_if":[],"limits":[]}}}"#,
        // Concurrency caps, costs, per-argument counters, roles.
        r#"{"version":"1","default":"deny","tools":{"x":{"limits":[{"counter":"i","concurrent":3,"scope":"grant"},{"counter":"j","concurrent":1024,"lease_seconds":86400,"scope":"global","per":"args.a.b","window":null,"max":null}]}}}"#,
        r#"{"version":"1","default":"deny","tools":{"x":{"limits":[{"counter":"r","window":"day","max":100,"scope":"grant","cost_from":"args.rows","cost":null,"concurrent":null},{"counter":"s","window":60,"max":5,"scope":"session","cost":5,"per":"args.repo"}]}}}"#,
        r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"p","claim":"sub","role_claim":"role"}},"roles":{"eng":{"default":"allow","tools":{"d":{"limits":[{"counter":"d","window":"hour","max":2,"scope":"role"}]}}}},"grant_roles":{"ci":"eng"},"grants":{"ci":{"hide":["x"]}}}"#,
        // PolicyLayer's rate_limit block; null maps and lists.
        r#"{"version":"1","default":"deny","tools":{"x":{"rate_limit":{"max":10,"window":60}},"y":{"rate_limit":{"max":1,"window":"day","scope":"global","counter":"y"}}}}"#,
        r#"{"version":"1","default":"deny","tools":null,"prompts":null,"resources":null,"annotations":null,"grants":null,"roles":null,"all_tools":{"limits":null}}"#,
        // A long exact name is no pattern; annotation rules that do something.
        &format!(
            r#"{{"version":"1","default":"deny","resources":{{"file:///{}":{{}}}},"annotations":{{"readOnlyHint":{{"limits":[{{"counter":"r","window":60,"max":1,"scope":"grant"}}]}},"destructiveHint":{{"action":"deny"}}}}}}"#,
            "a".repeat(600)
        ),
    ];
    for document in documents {
        assert!(
            Policy::from_json(document.as_bytes()).is_ok(),
            "the filter refuses {document}"
        );
        let errors = schema_errors(&validator, &serde_json::from_str(document).unwrap());
        assert!(errors.is_empty(), "{document}: {errors:#?}");
    }
}

/// From `bad_documents_are_refused_with_path_and_value` and
/// `bad_depth_documents_are_refused_with_path_and_value` (src/policy/tests.rs)
/// and `bad_documents_are_refused_with_their_path` (src/arguments/tests.rs):
/// every one a JSON Schema can describe.
#[test]
fn the_schema_refuses_the_bad_documents_it_can_describe() {
    let limit = |field: &str| {
        let mut limit =
            serde_json::json!({"counter": "c", "window": "minute", "max": 10, "scope": "grant"});
        let (key, value) = field.split_once('=').unwrap();
        limit[key] = serde_json::from_str(value).unwrap();
        format!(r#"{{"version":"1","default":"deny","tools":{{"t":{{"limits":[{limit}]}}}}}}"#)
    };
    let rule = |rule: &str| format!(r#"{{"version":"1","default":"deny","tools":{{"x":{rule}}}}}"#);
    let require = |condition: &str| rule(&format!(r#"{{"require": {{{condition}}}}}"#));
    let deny_if = |condition: &str| rule(&format!(r#"{{"deny_if": {{{condition}}}}}"#));
    let top = |members: &str| format!(r#"{{"version":"1","default":"deny",{members}}}"#);
    let documents: Vec<String> = vec![
        // Limits.
        limit(r#"window="fortnight""#),
        limit("concurrent=3"),
        limit("concurrent=0"),
        limit(r#"lease_seconds=60"#),
        limit("cost=0"),
        limit(r#"cost_from="rows""#),
        limit(r#"cost_from="args.""#),
        limit(r#"per="args..repo""#),
        limit(r#"per="""#),
        limit("window=null"),
        limit("max=null"),
        top(r#""tools":{"t":{"limits":[{"counter":"c","concurrent":1025,"scope":"grant"}]}}"#),
        top(
            r#""tools":{"t":{"limits":[{"counter":"c","concurrent":2,"lease_seconds":86401,"scope":"grant"}]}}"#,
        ),
        top(
            r#""tools":{"t":{"limits":[{"counter":"c","concurrent":2,"cost":1,"scope":"grant"}]}}"#,
        ),
        top(r#""tools":{"t":{"limits":[{"counter":"c","concurrent":2,"max":2,"scope":"grant"}]}}"#),
        top(r#""tools":{"t":{"limits":[{"counter":"c","scope":"grant"}]}}"#),
        top(
            r#""tools":{"t":{"limits":[{"counter":"c","window":"day","max":9,"cost":1,"cost_from":"args.n","scope":"grant"}]}}"#,
        ),
        limit("window=0"),
        limit("window=-5"),
        limit("window=1.5"),
        limit("max=0"),
        limit("max=-1"),
        limit(r#"max="10""#),
        limit(r#"scope="tenant""#),
        limit(r#"counter="""#),
        limit("counter=7"),
        limit("burst=2"),
        top(r#""all_tools":{"limits":[["c","minute",10,"grant"]]}"#),
        top(r#""all_tools":{"limits":{}}"#),
        // The document.
        r#"{"default":"deny"}"#.to_string(),
        r#"{"version":"2","default":"deny"}"#.to_string(),
        r#"{"version":1,"default":"deny"}"#.to_string(),
        r#"{"version":"1"}"#.to_string(),
        r#"{"version":"1","default":"block"}"#.to_string(),
        r#"["1","deny"]"#.to_string(),
        top(r#""tool":{}"#),
        top(r#""tools":{"":{}}"#),
        top(r#""tools":[]"#),
        top(r#""max_body_bytes":0"#),
        top(r#""max_body_bytes":1073741825"#),
        top(
            r#""all_tools":{"limits":[{"counter":"c","window":9007199254740992,"max":1,"scope":"grant"}]}"#,
        ),
        top(r#""max_json_depth":500"#),
        top(r#""max_json_depth":0"#),
        top(r#""failure_mode":"maybe""#),
        top(r#""mode":"audit""#),
        top(r#""deny_as":"text""#),
        top(r#""list":"all""#),
        top(r#""hide":"x""#),
        top(r#""hide":[""]"#),
        // Tool rules.
        rule(r#"{"action":"block"}"#),
        rule(r#"{"reason":"a","on_deny":"no"}"#),
        rule("[]"),
        // Identity.
        top(r#""identity":["x-agent"]"#),
        top(r#""identity":{}"#),
        top(r#""identity":{"header":""}"#),
        top(r#""identity":{"header":"x agent"}"#),
        top(r#""identity":{"cookie":"a"}"#),
        top(r#""identity":{"header":"x","jwt_claim":{"provider_metadata":"p","claim":"sub"}}"#),
        top(r#""identity":{"bearer_tokens":{"abc":"ci"}}"#),
        top(
            r#""identity":{"bearer_tokens":{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08":""}}"#,
        ),
        top(r#""identity":{"jwt_claim":{"provider_metadata":"p"}}"#),
        // Grants.
        top(r#""grants":{"ci":{"mode":"monitor"}}"#),
        top(r#""grants":{"ci":{"tools":{"t":{"reason":"a","on_deny":"b"}}}}"#),
        top(r#""grants":{"":{}}"#),
        // Roles.
        top(r#""roles":{"r":{"mode":"monitor"}}"#),
        top(r#""roles":[]"#),
        top(r#""roles":{"r":{}},"grant_roles":{"ci":""}"#),
        top(r#""roles":{"r":{}},"grant_roles":["r"]"#),
        top(r#""identity":{"jwt_claim":{"provider_metadata":"p","claim":"sub","role_claim":""}}"#),
        // Argument paths.
        require(r#""script": {"eq": 1}"#),
        require(r#""args": {"exists": true}"#),
        require(r#""": {"exists": true}"#),
        require(r#""arguments.a": {"exists": true}"#),
        require(r#""args.": {"exists": true}"#),
        deny_if(r#""args..a": {"exists": true}"#),
        deny_if(r#""args.a.": {"exists": true}"#),
        // Operator objects.
        require(r#""args.a": {}"#),
        require(r#""args.a": {"between": [1, 2]}"#),
        require(r#""args.a": [{"eq": 1}]"#),
        require(r#""args.a": "exists""#),
        rule(r#"{"require": [["args.a", {"eq": 1}]]}"#),
        rule(r#"{"deny_if": "args.a"}"#),
        rule(r#"{"allow_if": {}}"#),
        // Operand types.
        require(r#""args.timeout": {"lte": "300"}"#),
        require(r#""args.timeout": {"lt": null}"#),
        require(r#""args.timeout": {"gt": [1]}"#),
        require(r#""args.timeout": {"gte": true}"#),
        require(r#""args.a": {"in": "python"}"#),
        require(r#""args.a": {"not_in": {"a": 1}}"#),
        require(r#""args.a": {"in": null}"#),
        deny_if(r#""args.script": {"regex": 1}"#),
        require(r#""args.a": {"exists": "yes"}"#),
        require(r#""args.a": {"exists": null}"#),
        require(r#""args.a": {"max_length": -1}"#),
        require(r#""args.a": {"max_length": 1.5}"#),
        require(r#""args.a": {"max_length": "10"}"#),
        require(r#""args.a": {"eq": 1}, "args.b": {"gt": "1"}"#),
        // From a review: what the reader refuses and the schema accepted.
        top(
            r#""rate_limit_service":{"cluster":"r","timeout_ms":600000},"tools":{"t":{"limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]}}"#,
        ),
        top(
            r#""approval_service":{"cluster":"a","timeout_ms":600000},"tools":{"t":{"action":"approve"}}"#,
        ),
        top(r#""annotations":{"fooHint":{"action":"deny"}}"#),
        top(r#""annotations":{"readOnlyHint":{"action":"allow"}}"#),
        top(r#""annotations":{"readOnlyHint":{}}"#),
        require(r#""args.p": {"under": ""}"#),
        rule(r#"{"invokes": {"name": "name"}}"#),
        top(&format!(r#""tools":{{"{}*":{{}}}}"#, "a".repeat(600))),
        // PolicyLayer's rate_limit block, checked as a limit is.
        rule(r#"{"rate_limit": {"max": 0, "window": 60}}"#),
        rule(r#"{"rate_limit": {"max": 1}}"#),
        rule(r#"{"rate_limit": {"max": 1, "window": 60, "burst": 2}}"#),
    ];
    let validator = validator();
    let mut accepted = Vec::new();
    for document in &documents {
        assert!(
            Policy::from_json(document.as_bytes()).is_err(),
            "the filter accepts {document}: not a bad document"
        );
        let value: Value = serde_json::from_str(document).unwrap();
        if validator.is_valid(&value) {
            accepted.push(document.as_str());
        }
    }
    assert!(accepted.is_empty(), "the schema accepts: {accepted:#?}");
}

/// What the filter refuses and no JSON Schema can: a schema sees the parsed
/// document (duplicates already gone), checks one value at a time, and knows
/// ECMA-262 regexes, not the `regex` crate's. `mcp-policy check` finds these.
#[test]
fn what_the_schema_cannot_express() {
    let rule = |rule: &str| format!(r#"{{"version":"1","default":"deny","tools":{{"x":{rule}}}}}"#);
    let documents = [
        // A counter given two windows in two places.
        r#"{"version":"1","default":"deny","all_tools":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]},"tools":{"t":{"limits":[{"counter":"c","window":"hour","max":5,"scope":"grant"}]}}}"#.to_string(),
        // Names, paths and operators given twice.
        r#"{"version":"1","default":"deny","tools":{"x":{},"x":{"action":"deny"}}}"#.to_string(),
        rule(r#"{"require":{"args.a":{"eq":1},"args.a":{"eq":2}}}"#),
        rule(r#"{"require":{"args.a":{"eq":1,"eq":2}}}"#),
        // The same token hash in two letter cases.
        r#"{"version":"1","default":"deny","identity":{"bearer_tokens":{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08":"a","9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08":"b"}}}"#.to_string(),
        // Regexes the `regex` crate refuses.
        rule(r#"{"deny_if":{"args.s":{"regex":"("}}}"#),
        rule(r#"{"deny_if":{"args.s":{"regex":"(?<=a)b"}}}"#),
        rule(r#"{"deny_if":{"args.s":{"regex":"(?:a{1000}){1000}"}}}"#),
        // Checks across fields and parts of the document.
        r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":"day","max":5,"cost":6,"scope":"grant"}]}}}"#.to_string(),
        r#"{"version":"1","default":"deny","tools":{"t":{"limits":[{"counter":"c","window":"day","max":5,"scope":"role"}]}}}"#.to_string(),
        r#"{"version":"1","default":"deny","roles":{"r":{}},"grant_roles":{"ci":"other"}}"#.to_string(),
        r#"{"version":"1","default":"deny","identity":{"jwt_claim":{"provider_metadata":"p","claim":"sub","role_claim":"role"}}}"#.to_string(),
        r#"{"version":"1","default":"deny","all_tools":{"limits":[{"counter":"c","concurrent":2,"scope":"grant"}]},"tools":{"t":{"limits":[{"counter":"c","window":"day","max":5,"scope":"grant"}]}}}"#.to_string(),
        // A whole number written with a fraction: JSON Schema calls 60.0 an integer.
        r#"{"version":"1","default":"deny","all_tools":{"limits":[{"counter":"c","window":60.0,"max":1,"scope":"grant"}]}}"#.to_string(),
        // Integers past u64.
        r#"{"version":"1","default":"deny","max_callers_per_counter":18446744073709551616}"#.to_string(),
        // Two keys a server that ignores letter case takes for one.
        r#"{"version":"1","default":"deny","tools":{"Drop":{},"drop":{"action":"deny"}}}"#.to_string(),
        // A hide prefix with no name after it.
        r#"{"version":"1","default":"deny","hide":["prompt:"]}"#.to_string(),
    ];
    let validator = validator();
    for document in &documents {
        assert!(
            Policy::from_json(document.as_bytes()).is_err(),
            "the filter accepts {document}"
        );
        let value: Value = serde_json::from_str(document).unwrap();
        assert!(
            validator.is_valid(&value),
            "the schema now refuses {document}: move it to the refused list"
        );
    }
}
