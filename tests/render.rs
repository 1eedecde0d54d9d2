//! Every Envoy configuration the repository ships is a rendering of
//! src/cli/render.rs (`mcp-policy render`): this test renders each and
//! compares it with the committed file, or with the part of a manifest that
//! carries it. After changing the renderer (or a policy a file embeds), run
//! `MCP_POLICY_RENDER_WRITE=1 cargo test --test render` to write the
//! renderings into the files, and review the diff.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use mcp_policy::cli::render::{self, Layout, Overrides};
use mcp_policy::cli::sources;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// Where a rendering lives.
enum Part {
    /// The whole file.
    File,
    /// A ConfigMap's data key (a block of text in the manifest).
    ConfigMapKey {
        config_map: &'static str,
        key: &'static str,
    },
    /// The `typed_config` of the EnvoyFilter's EXTENSION_CONFIG patch.
    IstioTypedConfig,
    /// An EnvoyProxy's `spec.bootstrap.value`.
    EnvoyProxyBootstrap,
}

struct Expected {
    file: &'static str,
    part: Part,
    rendering: String,
}

const ISTIO_IMAGE: &str = "registry.example.com/mcp-policy:0.1.0";

fn expected() -> Vec<Expected> {
    let none = Overrides::default();
    let policy = read("policy.json");
    let whole = |file: &'static str, layout: Layout, policy: &str| Expected {
        file,
        part: Part::File,
        rendering: render::render(layout, policy, &none),
    };
    let template = |file: &'static str, config_map: &'static str, layout: Layout| Expected {
        file,
        part: Part::ConfigMapKey {
            config_map,
            key: "envoy.yaml.tmpl",
        },
        rendering: render::render(layout, "", &none),
    };
    vec![
        whole("envoy/envoy.yaml", Layout::Envoy, &policy),
        whole(
            "envoy/envoy-jwt.yaml",
            Layout::Jwt,
            &read("examples/policies/jwt.json"),
        ),
        whole(
            "envoy/fleet/replica.yaml",
            Layout::FleetReplica,
            &read("examples/policies/fleet.json"),
        ),
        whole(
            "envoy/hot-reload/bootstrap.yaml",
            Layout::HotReloadBootstrap,
            "",
        ),
        whole(
            "envoy/hot-reload/listener.yaml",
            Layout::HotReloadListener,
            &policy,
        ),
        whole("deploy/compose/envoy.yaml", Layout::Compose, ""),
        template(
            "deploy/sidecar/mcp-server.yaml",
            "mcp-policy-envoy",
            Layout::KubernetesSidecar,
        ),
        template(
            "deploy/ingress/mcp-gateway.yaml",
            "mcp-gateway-envoy",
            Layout::KubernetesIngress,
        ),
        template(
            "deploy/fleet/mcp-fleet.yaml",
            "mcp-gateway-envoy",
            Layout::KubernetesFleet,
        ),
        Expected {
            file: "deploy/istio/mcp-policy.yaml",
            part: Part::IstioTypedConfig,
            rendering: render::istio_typed_config(0, ISTIO_IMAGE, &render::istio_policy(&policy)),
        },
        Expected {
            file: "deploy/envoy-gateway/mcp-policy.yaml",
            part: Part::EnvoyProxyBootstrap,
            rendering: render::stats_config(),
        },
    ]
}

fn documents(text: &str) -> Vec<Value> {
    sources::yaml_documents(text).unwrap()
}

/// The committed text of a part (as the YAML parser reads it), or `None`
/// when the manifest lacks it.
fn committed(text: &str, part: &Part) -> Option<Value> {
    let documents = documents(text);
    match part {
        Part::File => Some(Value::String(text.to_string())),
        Part::ConfigMapKey { config_map, key } => documents
            .iter()
            .find(|doc| doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == *config_map)
            .map(|doc| doc["data"][key].clone()),
        Part::IstioTypedConfig => documents
            .iter()
            .find(|doc| doc["kind"] == "EnvoyFilter")
            .and_then(|doc| {
                doc["spec"]["configPatches"]
                    .as_array()?
                    .iter()
                    .find(|patch| patch["applyTo"] == "EXTENSION_CONFIG")
                    .map(|patch| patch["patch"]["value"]["typed_config"].clone())
            }),
        Part::EnvoyProxyBootstrap => documents
            .iter()
            .find(|doc| doc["kind"] == "EnvoyProxy")
            .map(|doc| doc["spec"]["bootstrap"]["value"].clone()),
    }
}

/// What a rendering must equal.
fn wanted(expected: &Expected) -> Value {
    match expected.part {
        Part::IstioTypedConfig => serde_norway::from_str(&expected.rendering).unwrap(),
        _ => Value::String(expected.rendering.clone()),
    }
}

/// Replaces the block of lines under the first line matching `head` (after
/// the line `after`) that are indented deeper than it, with `lines`
/// indented two more.
fn replace_block(text: &str, after: &str, head: &str, body: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_end().ends_with(after))
        .unwrap_or_else(|| panic!("no line ending with {after:?}"));
    let at = (start..lines.len())
        .find(|index| lines[*index].trim_start().starts_with(head))
        .unwrap_or_else(|| panic!("no {head:?} after {after:?}"));
    let indent = lines[at].len() - lines[at].trim_start().len();
    let end = (at + 1..lines.len())
        .find(|index| {
            let line = lines[*index];
            !line.trim().is_empty() && line.len() - line.trim_start().len() <= indent
        })
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..=at].iter().map(|line| line.to_string()).collect();
    for line in body.lines() {
        if line.is_empty() {
            out.push(String::new());
        } else {
            out.push(format!("{:width$}{line}", "", width = indent + 2));
        }
    }
    out.extend(lines[end..].iter().map(|line| line.to_string()));
    out.join("\n") + "\n"
}

fn write(expected: &Expected, path: &Path, text: &str) {
    let new = match &expected.part {
        Part::File => expected.rendering.clone(),
        Part::ConfigMapKey { config_map, key } => replace_block(
            text,
            &format!("name: {config_map}"),
            &format!("{key}: |"),
            &expected.rendering,
        ),
        Part::IstioTypedConfig => replace_block(
            text,
            "applyTo: EXTENSION_CONFIG",
            "typed_config:",
            &expected.rendering,
        ),
        Part::EnvoyProxyBootstrap => {
            replace_block(text, "kind: EnvoyProxy", "value: |", &expected.rendering)
        }
    };
    std::fs::write(path, new).unwrap();
}

#[test]
fn every_shipped_envoy_configuration_is_its_rendering() {
    let bless = std::env::var_os("MCP_POLICY_RENDER_WRITE").is_some();
    let mut stale = Vec::new();
    for expected in expected() {
        let path = root().join(expected.file);
        let text = read(expected.file);
        if committed(&text, &expected.part) == Some(wanted(&expected)) {
            continue;
        }
        if bless {
            write(&expected, &path, &text);
            assert_eq!(
                committed(&read(expected.file), &expected.part),
                Some(wanted(&expected)),
                "{}: writing the rendering did not take",
                expected.file
            );
        } else {
            stale.push(expected.file);
        }
    }
    assert!(
        stale.is_empty(),
        "not their rendering: {stale:?}; run MCP_POLICY_RENDER_WRITE=1 cargo test --test render and review the diff"
    );
}

#[test]
fn the_renderings_carry_the_settings_every_configuration_needs() {
    // Each whole configuration parses, and its filter is the JSON rendering.
    for expected in expected() {
        if !matches!(expected.part, Part::File | Part::ConfigMapKey { .. }) {
            continue;
        }
        let text = expected
            .rendering
            .replace(render::PLACEHOLDER, r#"{"version":"1","default":"deny"}"#);
        let config: Value =
            serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", expected.file));
        let mut filters = Vec::new();
        find_wasm_filters(&config, &mut filters);
        if expected.file == "envoy/hot-reload/bootstrap.yaml" {
            // The filter is in listener.yaml.
            assert!(filters.is_empty());
            assert_eq!(config["stats_config"], render::stats_config_json());
            continue;
        }
        assert_eq!(filters.len(), 1, "{}", expected.file);
        let filter = &filters[0]["config"];
        assert_eq!(
            filter["allow_on_headers_stop_iteration"], true,
            "{}",
            expected.file
        );
        assert_eq!(
            filter["vm_config"]["vm_id"], "mcp-policy",
            "{}",
            expected.file
        );
        let resources = config.get("resources").is_some();
        if !resources {
            assert_eq!(
                config["stats_config"],
                render::stats_config_json(),
                "{}",
                expected.file
            );
        }
    }
}

fn find_wasm_filters(value: &Value, found: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(sources::WASM_FILTER_TYPE) {
                found.push(value.clone());
                return;
            }
            map.values()
                .for_each(|member| find_wasm_filters(member, found));
        }
        Value::Array(items) => items.iter().for_each(|item| find_wasm_filters(item, found)),
        _ => {}
    }
}
