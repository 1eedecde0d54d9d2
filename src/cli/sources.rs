//! Where a policy document lives: a JSON file, or inside the YAML that
//! carries it to Envoy. `mcp-policy check` reads every policy of a file:
//!
//! - a policy document (JSON);
//! - an Envoy bootstrap or LDS file: each Wasm filter whose `configuration`
//!   (a `StringValue`) is a policy;
//! - Kubernetes objects (multi-document YAML): a `ConfigMap`'s `*.json`
//!   keys that hold a policy (and Envoy configurations in its other keys), an
//!   Istio `EnvoyFilter` (the Wasm filter in its patches), an Istio
//!   `WasmPlugin` (`spec.pluginConfig`, as istiod hands it to the filter:
//!   JSON), an Envoy Gateway `EnvoyExtensionPolicy` (each `spec.wasm[].config`).
//!
//! tests/deployment.rs finds the deployments' policies with this code too.

use serde_json::Value;

/// Envoy's Wasm HTTP filter.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The type of a Wasm filter's `configuration` that carries text.
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One policy found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where in the file, `None` for a file that is the policy itself:
    /// `EnvoyFilter:istio-system/mcp-policy`, `ConfigMap:mcp/policy:policy.json`,
    /// `wasm:mcp-policy` (a filter of an Envoy configuration).
    pub origin: Option<String>,
    /// The policy's JSON text.
    pub text: String,
    /// Whether `text` is the policy as written (a JSON file, a block of
    /// text in the YAML), so that lines and columns in it mean something;
    /// `false` for a YAML object written out as JSON here.
    pub as_written: bool,
}

/// Every policy in a file's bytes. A file whose first character is `{` is a
/// policy document (checked as such, however broken), and so is an empty
/// one; anything else is
/// read as YAML. Err: the YAML cannot be read, or holds no policy.
pub fn find_policies(bytes: &[u8]) -> Result<Vec<Found>, String> {
    // A byte order mark some editors write: not part of the document (the
    // filter reads past it too).
    let whole = bytes.len();
    let bytes = crate::policy::without_byte_order_mark(bytes);
    // Not replaced by U+FFFD: the filter refuses such a policy, so `check`
    // must not pass it.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(error) => {
            let (line, column) = crate::policy::line_column_of_index(bytes, error.valid_up_to());
            return Err(format!(
                "not UTF-8 text at line {line} column {column} (byte {}): the filter refuses such a policy",
                whole - bytes.len() + error.valid_up_to()
            ));
        }
    };
    let start = text.trim_start();
    if start.is_empty() || start.starts_with('{') {
        return Ok(vec![Found {
            origin: None,
            text: text.into_owned(),
            as_written: true,
        }]);
    }
    let documents = yaml_documents(&text)?;
    let mut found = Vec::new();
    for document in &documents {
        policies_in_document(document, &mut found)?;
    }
    if found.is_empty() {
        return Err("no policy found: not a policy document (JSON), and no Envoy Wasm filter configuration, ConfigMap *.json key, WasmPlugin or EnvoyExtensionPolicy holding one".to_string());
    }
    Ok(found)
}

/// Every document of a YAML stream, as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    flow_depth_within(text, MAX_FLOW_DEPTH)?;
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let Unique(value) =
            Unique::deserialize(document).map_err(|err| format!("not YAML: {err}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The deepest nesting of `[` and `{` read before refusing YAML: the YAML
/// reader takes time quadratic in it (seconds at 20,000), and no policy
/// (at most 127 deep) or Envoy configuration comes near.
const MAX_FLOW_DEPTH: usize = 1_000;

/// `Err` if brackets outside quoted scalars and comments nest deeper than
/// `max` (an over-count inside block scalars can only refuse text nested
/// that deep anyway).
fn flow_depth_within(text: &str, max: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut previous = b'\n';
    for &byte in text.as_bytes() {
        match (quote, byte) {
            _ if comment => comment = byte != b'\n',
            (Some(b'"'), b'"') if previous != b'\\' => quote = None,
            (Some(b'\''), b'\'') => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(byte),
            (None, b'#') if previous.is_ascii_whitespace() => comment = true,
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > max {
                    return Err(format!(
                        "not YAML this tool reads: nested more than {max} deep"
                    ));
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = byte;
    }
    Ok(())
}

/// Every document of a YAML stream read as JSON would read it (a key named
/// twice: the last one), up to the first that cannot be read.
fn lenient_yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    if flow_depth_within(text, MAX_FLOW_DEPTH).is_err() {
        return Vec::new();
    }
    serde_norway::Deserializer::from_str(text)
        .map_while(|document| Value::deserialize(document).ok())
        .collect()
}

/// A YAML value read as JSON, refusing a mapping that names a key twice:
/// read as JSON would read it, the last would win, and a second
/// `deleteWorkspace` (or `default`) could turn a deny into an allow with
/// nobody seeing it. The policy's JSON reader refuses duplicates; so does
/// this.
struct Unique(Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON spelling: null, as serde_json reads them.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(deserializer).map(|Unique(value)| value)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} is written twice in one mapping"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Whether a JSON value looks like a policy document (has `version`).
fn is_policy(value: &Value) -> bool {
    value.get("version").is_some()
}

/// A policy in text, if the text is a JSON object with `version`.
fn policy_text(text: &str) -> Option<&str> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(is_policy)
        .map(|_| text)
}

fn name_of(object: &Value) -> String {
    let metadata = &object["metadata"];
    match (metadata["namespace"].as_str(), metadata["name"].as_str()) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        (None, Some(name)) => name.to_string(),
        _ => "?".to_string(),
    }
}

/// The policies a document holds. `Err`: a ConfigMap's Envoy configuration
/// that holds one names a key twice in a mapping.
fn policies_in_document(document: &Value, found: &mut Vec<Found>) -> Result<(), String> {
    let kind = document["kind"].as_str().unwrap_or_default();
    match kind {
        "ConfigMap" => {
            let Some(data) = document["data"].as_object() else {
                return Ok(());
            };
            for (key, value) in data {
                let Some(text) = value.as_str() else { continue };
                let origin = format!("ConfigMap:{}:{key}", name_of(document));
                if key.ends_with(".json") {
                    if let Some(policy) = policy_text(text) {
                        found.push(Found {
                            origin: Some(origin),
                            text: policy.to_string(),
                            as_written: true,
                        });
                    }
                } else {
                    match yaml_documents(text) {
                        // An Envoy configuration kept in a ConfigMap.
                        Ok(inner) => {
                            for document in &inner {
                                wasm_policies(document, &origin, found);
                            }
                        }
                        // Text of another kind, or YAML that names a key
                        // twice: refused if, read as JSON would read it
                        // (the last key winning), it holds a policy.
                        Err(err) => {
                            let mut held = Vec::new();
                            for document in lenient_yaml_documents(text) {
                                wasm_policies(&document, &origin, &mut held);
                            }
                            if !held.is_empty() {
                                return Err(format!("{origin}: {err}"));
                            }
                        }
                    }
                }
            }
        }
        "WasmPlugin" => {
            let config = &document["spec"]["pluginConfig"];
            if is_policy(config) {
                found.push(from_object(
                    format!("WasmPlugin:{}", name_of(document)),
                    &as_struct_hands_it_over(config),
                ));
            }
        }
        "EnvoyExtensionPolicy" => {
            for (index, wasm) in document["spec"]["wasm"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if is_policy(&wasm["config"]) {
                    found.push(from_object(
                        format!("EnvoyExtensionPolicy:{}:wasm[{index}]", name_of(document)),
                        &wasm["config"],
                    ));
                }
            }
        }
        "" => wasm_policies(document, "", found),
        other => wasm_policies(document, &format!("{other}:{}", name_of(document)), found),
    }
    Ok(())
}

/// A `Struct`'s value as istiod writes it into the filter's configuration:
/// numbers are doubles, and a whole one is written as an integer (`524288.0`
/// and `1e1` reach the filter as `524288` and `10`), up to 2^53 where a
/// double stops holding every integer.
fn as_struct_hands_it_over(value: &Value) -> Value {
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => match number.as_f64() {
            #[allow(clippy::cast_possible_truncation)]
            Some(double) if double.fract() == 0.0 && double.abs() < 9_007_199_254_740_992.0 => {
                Value::from(double as i64)
            }
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(as_struct_hands_it_over).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, value)| (key.clone(), as_struct_hands_it_over(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A policy written as a YAML object: the JSON the filter gets from
/// istiod or Envoy Gateway.
fn from_object(origin: String, config: &Value) -> Found {
    Found {
        origin: Some(origin),
        text: serde_json::to_string_pretty(config).unwrap_or_default(),
        as_written: false,
    }
}

/// The policies of every Wasm filter under `value` (an Envoy bootstrap, an
/// LDS file, an EnvoyFilter's patches).
fn wasm_policies(value: &Value, origin: &str, found: &mut Vec<Found>) {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                let config = &value["config"];
                let configuration = &config["configuration"];
                if configuration["@type"] == STRING_VALUE_TYPE {
                    if let Some(policy) = configuration["value"].as_str().and_then(policy_text) {
                        let filter = config["name"].as_str().unwrap_or("wasm");
                        let origin = if origin.is_empty() {
                            format!("wasm:{filter}")
                        } else {
                            format!("{origin}:wasm:{filter}")
                        };
                        found.push(Found {
                            origin: Some(origin),
                            text: policy.to_string(),
                            as_written: true,
                        });
                    }
                }
                return;
            }
            for member in map.values() {
                wasm_policies(member, origin, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                wasm_policies(item, origin, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"version":"1","default":"deny"}"#;

    #[test]
    fn a_json_file_is_the_policy_even_when_broken() {
        let found = find_policies(b"  {\"version\": ").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].origin, None);
    }

    /// An editor's byte order mark is not part of the policy: found, and
    /// left out of the text the tools check, render and apply.
    #[test]
    fn a_byte_order_mark_is_left_out() {
        let found = find_policies(format!("\u{feff}{POLICY}").as_bytes()).unwrap();
        assert_eq!(found[0].text, POLICY);
    }

    #[test]
    fn a_wasm_plugins_whole_numbers_are_read_as_istiod_hands_them_over() {
        let yaml = "kind: WasmPlugin\nspec:\n  pluginConfig:\n    version: \"1\"\n    default: deny\n    max_body_bytes: 524288.0\n    tools:\n      t:\n        limits: [{counter: c, window: 1e1, max: 2.5, scope: grant}]\n";
        let found = find_policies(yaml.as_bytes()).unwrap();
        let policy: Value = serde_json::from_str(&found[0].text).unwrap();
        assert_eq!(policy["max_body_bytes"], serde_json::json!(524288));
        assert_eq!(
            policy["tools"]["t"]["limits"][0]["window"],
            serde_json::json!(10)
        );
        // Not whole: left for the policy reader to refuse.
        assert_eq!(
            policy["tools"]["t"]["limits"][0]["max"],
            serde_json::json!(2.5)
        );
    }

    #[test]
    fn yaml_nested_too_deep_is_refused_before_it_is_read() {
        let deep = format!("a: {}{}\n", "[".repeat(1_001), "]".repeat(1_001));
        let err = yaml_documents(&deep).unwrap_err();
        assert!(err.contains("nested more than 1000 deep"), "{err}");
        // At the limit it is read; brackets in quotes and comments do not count.
        let quoted = format!(
            "a: \"{}\" # {}\nb: [[1]]\n",
            "[".repeat(2_000),
            "{".repeat(2_000)
        );
        assert_eq!(
            yaml_documents(&quoted).unwrap()[0]["b"],
            serde_json::json!([[1]])
        );
        let at_limit = format!("a: {}{}\n", "[".repeat(1_000), "]".repeat(1_000));
        // (The YAML reader's own recursion limit refuses it, quickly.)
        let err = yaml_documents(&at_limit).unwrap_err();
        assert!(!err.contains("nested more than"), "{err}");
    }

    #[test]
    fn a_key_written_twice_in_a_yaml_mapping_is_refused() {
        let yaml = "kind: WasmPlugin\nspec:\n  pluginConfig:\n    version: \"1\"\n    default: deny\n    tools:\n      drop: {action: deny}\n      drop: {action: allow}\n";
        let err = find_policies(yaml.as_bytes()).err().unwrap();
        assert!(
            err.contains("spec.pluginConfig.tools")
                && err.contains(r#"the key "drop" is written twice"#),
            "{err}"
        );
        // In an Envoy configuration a ConfigMap keeps: refused when it holds
        // a policy, wherever the key is; other text is no policy's business.
        let envoy_in_configmap = |yaml: &str| {
            let indented: String = yaml.lines().map(|line| format!("    {line}\n")).collect();
            format!("kind: ConfigMap\nmetadata: {{name: e}}\ndata:\n  envoy.yaml: |\n{indented}")
        };
        let envoy = format!(
            "name: a\nname: b\nstatic_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n          - name: mcp-policy\n            typed_config:\n              \"@type\": {WASM_FILTER_TYPE}\n              config:\n                configuration:\n                  \"@type\": {STRING_VALUE_TYPE}\n                  value: '{POLICY}'\n"
        );
        let err = find_policies(envoy_in_configmap(&envoy).as_bytes()).unwrap_err();
        assert!(
            err.starts_with("ConfigMap:e:envoy.yaml: ")
                && err.contains(r#"the key "name" is written twice"#),
            "{err}"
        );
        let unrelated = find_policies(
            format!(
                "{}---\n{}",
                envoy_in_configmap("a: 1\na: 2\n"),
                envoy_in_configmap(&envoy.replace("name: b\n", ""))
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(unrelated.len(), 1, "{unrelated:?}");
        let err = yaml_documents("default: deny\nversion: \"1\"\ndefault: allow\n").unwrap_err();
        assert!(
            err.contains(r#"the key "default" is written twice"#),
            "{err}"
        );
        // The same keys in other mappings, and every kind of value, read as JSON.
        let read =
            yaml_documents("a: {x: 1}\nb: {x: [true, null, 1.5, -2, 18446744073709551615, s]}\n")
                .unwrap();
        assert_eq!(
            read,
            vec![
                serde_json::json!({"a": {"x": 1}, "b": {"x": [true, null, 1.5, -2, 18446744073709551615u64, "s"]}})
            ]
        );
    }

    #[test]
    fn policies_in_envoy_yaml_and_kubernetes_objects() {
        let yaml = format!(
            r#"
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - name: mcp-policy
            typed_config:
              "@type": {WASM_FILTER_TYPE}
              config:
                name: mcp-policy
                configuration:
                  "@type": {STRING_VALUE_TYPE}
                  value: |
                    {POLICY}
          - name: other
            typed_config:
              "@type": {WASM_FILTER_TYPE}
              config:
                configuration:
                  "@type": {STRING_VALUE_TYPE}
                  value: "not a policy"
---
apiVersion: v1
kind: ConfigMap
metadata: {{ name: p, namespace: mcp }}
data:
  policy.json: |
    {POLICY}
  envoy.yaml.tmpl: |
    value: |
      @POLICY_JSON@
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {{ name: w, namespace: istio }}
spec:
  pluginConfig: {{ version: "1", default: allow }}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {{ name: e, namespace: mcp }}
spec:
  wasm:
  - name: mcp-policy
    config: {{ version: "1", default: deny }}
"#
        );
        let found = find_policies(yaml.as_bytes()).unwrap();
        let origins: Vec<&str> = found
            .iter()
            .map(|found| found.origin.as_deref().unwrap())
            .collect();
        assert_eq!(
            origins,
            [
                "wasm:mcp-policy",
                "ConfigMap:mcp/p:policy.json",
                "WasmPlugin:istio/w",
                "EnvoyExtensionPolicy:mcp/e:wasm[0]"
            ]
        );
        assert_eq!(found[0].text.trim(), POLICY);
        assert!(found[0].as_written && !found[2].as_written);
        assert_eq!(
            serde_json::from_str::<Value>(&found[2].text).unwrap(),
            serde_json::json!({"version": "1", "default": "allow"})
        );
    }

    #[test]
    fn yaml_without_a_policy_says_so() {
        assert!(find_policies(b"kind: Service\nmetadata: {name: x}\n")
            .unwrap_err()
            .contains("no policy found"));
        assert!(find_policies(b"a: [\n").unwrap_err().contains("not YAML"));
    }
}
