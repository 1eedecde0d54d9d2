//! The deployment examples (deploy/, Dockerfile, docker-compose.yaml), checked
//! without Docker or a cluster:
//!
//! - every YAML file parses, and every Kubernetes object names its apiVersion,
//!   kind and metadata.name; references between objects resolve (volumes,
//!   ConfigMaps, Services, routes, policies' targets, filter names);
//! - every policy they carry loads with `Policy::from_json`, the code the
//!   filter and `mcp-policy check` run (YAML policies as the JSON Istio and
//!   Envoy Gateway hand the filter);
//! - every Envoy configuration passes `envoy --mode validate` with the real
//!   module, which also loads each policy: the repository's envoy/*.yaml, the
//!   templates after the init container's own render script has run on them
//!   (Kubernetes, docker compose), and the Wasm filter Istio (EnvoyFilter and
//!   WasmPlugin) and Envoy Gateway would hand Envoy, rebuilt from the manifests;
//! - the Dockerfile's final image is the module alone, at /plugin.wasm;
//! - the approval service's manifest keeps its page behind the sign-in proxy
//!   and points every replica at the Redis it defines;
//! - deploy/fleet: the rate-limit service accepts its arguments (the real
//!   binary's `--check`), reaches the Redis Service, is probed on its health
//!   endpoints, and is the cluster the Envoy replicas' policy names.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_policy::cli::sources;
use mcp_policy::policy::Policy;
use serde::Deserialize;
use serde_json::{json, Value};
use support::envoy::{envoy_binary, repo_root, wasm_module};

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const PLACEHOLDER: &str = "@POLICY_JSON@";
const RENDER_SCRIPT: &str = "deploy/render-envoy-config.sh";

// ---------------------------------------------------------------------------
// Reading the files

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every document of a YAML file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|err| panic!("{}: not valid YAML: {err}", path.display()))
        })
        .collect()
}

/// The YAML files under `dir`, recursively, sorted.
fn yaml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The Kubernetes manifests: deploy/**/*.yaml except the compose Envoy template.
fn manifest_files() -> Vec<PathBuf> {
    let root = repo_root();
    let files: Vec<PathBuf> = yaml_files_under(&root.join("deploy"))
        .into_iter()
        .filter(|path| !path.starts_with(root.join("deploy/compose")))
        .collect();
    for expected in [
        "deploy/sidecar",
        "deploy/istio",
        "deploy/envoy-gateway",
        "deploy/ingress",
        "deploy/approval",
        "deploy/fleet",
    ] {
        assert!(
            files
                .iter()
                .any(|path| path.starts_with(root.join(expected))),
            "no manifest under {expected}"
        );
    }
    files
}

/// A manifest file's objects, each checked for apiVersion, kind and metadata.name.
fn objects(path: &Path) -> Vec<Value> {
    let documents = yaml_documents(path);
    assert!(!documents.is_empty(), "{}: no documents", path.display());
    for (index, object) in documents.iter().enumerate() {
        let at = format!("{} document {}", path.display(), index + 1);
        assert!(object.is_object(), "{at}: not a mapping: {object}");
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            let value = object.pointer(field).and_then(Value::as_str).unwrap_or("");
            assert!(!value.is_empty(), "{at}: no {field}");
        }
    }
    documents
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn find<'a>(objects: &'a [Value], wanted_kind: &str, wanted_name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|object| kind(object) == wanted_kind && name(object) == wanted_name)
}

fn of_kind<'a>(objects: &'a [Value], wanted_kind: &'a str) -> impl Iterator<Item = &'a Value> {
    objects
        .iter()
        .filter(move |object| kind(object) == wanted_kind)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

// ---------------------------------------------------------------------------
// Policies and Envoy

/// Loads a policy with the filter's own code; panics with its error.
fn load_policy(json: &[u8], origin: &str) -> Policy {
    Policy::from_json(json).unwrap_or_else(|err| panic!("{origin}: policy refused: {err}"))
}

/// The policies a bootstrap's mcp-policy filters carry (StringValue configurations).
fn embedded_policies(bootstrap: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(bootstrap, &mut |value| {
        if value["@type"] == WASM_FILTER_TYPE {
            let configuration = &value["config"]["configuration"];
            assert_eq!(configuration["@type"], STRING_VALUE_TYPE, "{configuration}");
            found.push(configuration["value"].as_str().unwrap().to_owned());
        }
    });
    found
}

fn walk(value: &Value, visit: &mut impl FnMut(&Value)) {
    visit(value);
    match value {
        Value::Object(map) => map.values().for_each(|child| walk(child, visit)),
        Value::Array(items) => items.iter().for_each(|child| walk(child, visit)),
        _ => {}
    }
}

/// What every Envoy configuration of the filter must say: the stop-iteration
/// setting (or a policy that holds the body only), fail closed, the V8
/// runtime, and a listener buffer above the policy's body limit (or Envoy
/// answers 413 before the filter decides).
fn check_filter_settings(bootstrap: &Value, origin: &str) {
    let mut filters = 0;
    walk(bootstrap, &mut |value| {
        if value["@type"] == WASM_FILTER_TYPE {
            filters += 1;
            let config = &value["config"];
            if config["allow_on_headers_stop_iteration"] != true {
                // Envoy 1.40 never hands the body to a filter that pauses on
                // the headers without the flag: every POST would hang.
                let policy = load_policy(str_at(config, "/configuration/value").as_bytes(), origin);
                assert!(
                    !policy.hold_request_headers,
                    "{origin}: no allow_on_headers_stop_iteration, and the policy holds request headers"
                );
            }
            assert_ne!(config["fail_open"], true, "{origin}: fails open");
            assert_ne!(
                config["failure_policy"], "FAIL_OPEN",
                "{origin}: fails open"
            );
            assert_eq!(
                config["vm_config"]["runtime"], "envoy.wasm.runtime.v8",
                "{origin}"
            );
        }
    });
    assert!(filters > 0, "{origin}: no mcp-policy filter");
    for policy in embedded_policies(bootstrap) {
        let policy = load_policy(policy.as_bytes(), origin);
        for listener in bootstrap["static_resources"]["listeners"]
            .as_array()
            .unwrap()
        {
            // The listeners that run the filter (not a metrics listener).
            let mut gated = false;
            walk(listener, &mut |value| {
                gated |= value["@type"] == WASM_FILTER_TYPE
            });
            if !gated {
                continue;
            }
            let limit = listener["per_connection_buffer_limit_bytes"]
                .as_u64()
                .unwrap_or(1 << 20);
            assert!(
                limit > policy.max_body_bytes,
                "{origin}: listener buffer {limit} <= max_body_bytes {}",
                policy.max_body_bytes
            );
        }
    }
}

/// An LDS resource file made a bootstrap: its listeners, with the admin and
/// clusters of `bootstrap.yaml` beside it.
fn lds_file_as_bootstrap(file: &Path, document: &Value) -> Value {
    let sibling = file.with_file_name("bootstrap.yaml");
    let bootstrap = &yaml_documents(&sibling)[0];
    let listeners: Vec<Value> = document["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| {
            let mut listener = resource.clone();
            listener.as_object_mut().unwrap().remove("@type");
            listener
        })
        .collect();
    json!({
        "admin": bootstrap["admin"],
        "static_resources": {
            "listeners": listeners,
            "clusters": bootstrap["static_resources"]["clusters"],
        }
    })
}

/// Points every `filename: ....wasm` at the module this machine built; the
/// configuration must name one.
fn with_local_module(config: &str) -> String {
    let (out, replaced) = module_paths_made_local(config);
    assert!(replaced > 0, "no wasm module path in:\n{config}");
    out
}

/// Points every `filename: ....wasm` at the module this machine built;
/// returns the configuration and how many it replaced.
fn module_paths_made_local(config: &str) -> (String, usize) {
    let module = wasm_module().display().to_string();
    let mut replaced = 0;
    let mut out = String::new();
    for line in config.lines() {
        let mut line = line.to_owned();
        if let Some(at) = line.find("filename:") {
            let value_start = at + "filename:".len();
            let rest = &line[value_start..];
            let trimmed = rest.trim_start();
            let offset = value_start + (rest.len() - trimmed.len());
            let (offset, path) = match trimmed.strip_prefix('"') {
                Some(inner) => (offset + 1, &inner[..inner.find('"').unwrap_or(inner.len())]),
                None => (
                    offset,
                    &trimmed[..trimmed.find([' ', '}', ',']).unwrap_or(trimmed.len())],
                ),
            };
            if path.ends_with(".wasm") {
                let end = offset + path.len();
                line.replace_range(offset..end, &module);
                replaced += 1;
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    (out, replaced)
}

/// A scratch directory for this test binary's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-policy-deployment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `envoy --mode validate` on each (name, configuration) from the
/// repository root, all at once; panics listing every failure.
fn envoy_validates(configs: Vec<(String, String)>) {
    let envoy = envoy_binary();
    let runs: Vec<_> = configs
        .into_iter()
        .map(|(name, config)| {
            let file = scratch(&format!("{}.yaml", name.replace(['/', ' '], "_")));
            std::fs::write(&file, &config).unwrap();
            let envoy = envoy.clone();
            std::thread::spawn(move || {
                let output = Command::new(&envoy)
                    .current_dir(repo_root())
                    .args(["--mode", "validate", "--disable-hot-restart", "-c"])
                    .arg(&file)
                    .output()
                    .unwrap_or_else(|err| panic!("cannot run {}: {err}", envoy.display()));
                (name, file, output)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (name, file, output) = run.join().unwrap();
        if output.status.success() {
            let _ = std::fs::remove_file(&file);
        } else {
            failures.push(format!(
                "{name} ({}): {}\n{}{}",
                file.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "envoy --mode validate refused:\n{}",
        failures.join("\n")
    );
    // Empty once every file is removed: then it goes too.
    if let Some(dir) = scratch("unused").parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Runs a render script (the text the container runs) with these files;
/// returns the Envoy configuration it wrote.
fn render(script: &str, template: &str, policy: &str, origin: &str) -> String {
    // Unique per call: tests render the same origin at once.
    static RENDERED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = format!(
        "{}.{}",
        origin.replace(['/', ' '], "_"),
        RENDERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let (script_file, template_file, policy_file, out) = (
        scratch(&format!("{base}.render.sh")),
        scratch(&format!("{base}.tmpl")),
        scratch(&format!("{base}.policy.json")),
        scratch(&format!("{base}.rendered.yaml")),
    );
    std::fs::write(&script_file, script).unwrap();
    std::fs::write(&template_file, template).unwrap();
    std::fs::write(&policy_file, policy).unwrap();
    let output = Command::new("sh")
        .arg(&script_file)
        .env("TEMPLATE", &template_file)
        .env("POLICY", &policy_file)
        .env("OUT", &out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{origin}: render script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = read(&out);
    for file in [&script_file, &template_file, &policy_file, &out] {
        let _ = std::fs::remove_file(file);
    }
    assert!(
        !rendered.lines().any(|line| line.trim() == PLACEHOLDER),
        "{origin}: placeholder left"
    );
    rendered
}

/// A bootstrap with one listener whose HTTP filters are `filter` then the
/// router: how the Istio and Envoy Gateway filters are validated.
fn bootstrap_with_filter(filter: Value, buffer_limit: u64) -> Value {
    json!({
        "static_resources": {
            "listeners": [{
                "name": "mcp",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 10000 } },
                "per_connection_buffer_limit_bytes": buffer_limit,
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "mcp",
                        "route_config": { "virtual_hosts": [{
                            "name": "mcp", "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "mcp_server" } }]
                        }]},
                        "http_filters": [filter, {
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                        }]
                    }
                }]}]
            }],
            "clusters": [{
                "name": "mcp_server", "type": "STATIC",
                "load_assignment": { "cluster_name": "mcp_server", "endpoints": [{ "lb_endpoints": [{
                    "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 8081 } } }
                }]}]}
            }]
        }
    })
}

// ---------------------------------------------------------------------------
// The Kubernetes Pods that render their Envoy configuration

/// One Envoy of a Deployment: its template, policy and render script, read
/// from the ConfigMaps the init container's volumes mount, as the Pod would.
struct RenderedEnvoy {
    origin: String,
    config: String,
}

/// The file a container sees at `path`: (ConfigMap name, key), through its
/// volumeMounts and the Pod's volumes.
fn config_map_file(pod: &Value, container: &Value, path: &str) -> (String, String) {
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let mount_path = str_at(mount, "/mountPath");
        let Some(key) = path.strip_prefix(&format!("{mount_path}/")) else {
            continue;
        };
        let volume = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|volume| volume["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
        let config_map = str_at(volume, "/configMap/name");
        return (config_map.to_owned(), key.to_owned());
    }
    panic!("{path} is on no mounted volume of {}", container["name"]);
}

fn env(container: &Value, variable: &str) -> String {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["name"] == variable)
        .map(|entry| str_at(entry, "/value").to_owned())
        .unwrap_or_else(|| panic!("{} has no env {variable}", container["name"]))
}

fn config_map_value(
    objects: &[Value],
    (config_map, key): &(String, String),
    origin: &str,
) -> String {
    let object = find(objects, "ConfigMap", config_map)
        .unwrap_or_else(|| panic!("{origin}: no ConfigMap {config_map}"));
    object["data"][key.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: ConfigMap {config_map} has no key {key}"))
        .to_owned()
}

/// Every Deployment's rendered Envoy configuration, its module path checked
/// against an image volume of the Envoy container.
fn rendered_kubernetes_envoys() -> Vec<RenderedEnvoy> {
    let mut rendered = Vec::new();
    for file in manifest_files() {
        let objects = objects(&file);
        let mut templates_used = BTreeSet::new();
        for deployment in of_kind(&objects, "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            let Some(init) = pod["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|container| container["name"] == "render-envoy-config")
            else {
                continue;
            };
            let origin = format!("{} Deployment {}", file.display(), name(deployment));
            let command: Vec<&str> = init["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(command.first(), Some(&"/bin/sh"), "{origin}: {command:?}");
            let script =
                config_map_value(&objects, &config_map_file(pod, init, command[1]), &origin);
            let template_at = config_map_file(pod, init, &env(init, "TEMPLATE"));
            let template = config_map_value(&objects, &template_at, &origin);
            let policy = config_map_value(
                &objects,
                &config_map_file(pod, init, &env(init, "POLICY")),
                &origin,
            );
            templates_used.insert(template_at);
            let config = render(&script, &template, &policy, &origin);

            // Envoy reads what the init container wrote, and the module from an image volume.
            let out = env(init, "OUT");
            let envoy = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|container| container["name"] == "envoy")
                .unwrap_or_else(|| panic!("{origin}: no envoy container"));
            let args: Vec<&str> = envoy["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let config_path = args
                .iter()
                .position(|arg| *arg == "-c")
                .map(|i| args[i + 1]);
            assert_eq!(
                config_path,
                Some(out.as_str()),
                "{origin}: Envoy reads another file"
            );
            let bootstrap: Value = serde_norway::from_str(&config).unwrap();
            let mut module_paths = Vec::new();
            walk(&bootstrap, &mut |value| {
                if let Some(path) = value
                    .pointer("/vm_config/code/local/filename")
                    .and_then(Value::as_str)
                {
                    module_paths.push(path.to_owned());
                }
            });
            assert!(!module_paths.is_empty(), "{origin}: no module path");
            for path in module_paths {
                let mount = envoy["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|mount| path.starts_with(&format!("{}/", str_at(mount, "/mountPath"))))
                    .unwrap_or_else(|| panic!("{origin}: {path} is on no volume of Envoy"));
                let volume = pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|volume| volume["name"] == mount["name"])
                    .unwrap();
                let image = str_at(volume, "/image/reference");
                assert!(
                    path.ends_with("/plugin.wasm"),
                    "{origin}: {path}: the image holds /plugin.wasm"
                );
                assert!(!image.is_empty());
            }
            rendered.push(RenderedEnvoy { origin, config });
        }
        // Every Envoy template in the file is rendered by some Pod.
        for config_map in of_kind(&objects, "ConfigMap") {
            for (key, value) in config_map["data"].as_object().into_iter().flatten() {
                if value
                    .as_str()
                    .is_some_and(|text| text.contains("static_resources:"))
                {
                    let used = (name(config_map).to_owned(), key.clone());
                    assert!(
                        templates_used.contains(&used),
                        "{}: ConfigMap {} key {key} is rendered by no Deployment",
                        file.display(),
                        name(config_map)
                    );
                }
            }
        }
    }
    assert!(
        rendered.len() >= 2,
        "expected the sidecar and ingress Envoys"
    );
    rendered
}

/// docker-compose.yaml's Envoy, rendered the way its entrypoint does, with the
/// host files its volumes mount.
fn rendered_compose_envoy() -> RenderedEnvoy {
    let root = repo_root();
    let compose = &yaml_documents(&root.join("docker-compose.yaml"))[0];
    let envoy = &compose["services"]["envoy"];
    let host_file = |container_path: &str| -> PathBuf {
        let volume = envoy["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|volume| volume.as_str().unwrap())
            .find(|volume| volume.split(':').nth(1) == Some(container_path))
            .unwrap_or_else(|| panic!("docker-compose.yaml: nothing mounted at {container_path}"));
        root.join(volume.split(':').next().unwrap())
    };
    let environment =
        |variable: &str| str_at(envoy, &format!("/environment/{variable}")).to_owned();
    let entrypoint = envoy["entrypoint"][2].as_str().unwrap();
    let script_path = entrypoint
        .split_whitespace()
        .find(|word| word.ends_with(".sh"))
        .unwrap();
    assert!(
        entrypoint.contains(&format!("-c {}", environment("OUT"))),
        "docker-compose.yaml: Envoy must start on the rendered file: {entrypoint}"
    );
    let script = host_file(script_path);
    assert_eq!(script, root.join(RENDER_SCRIPT));
    let config = render(
        &read(&script),
        &read(&host_file(&environment("TEMPLATE"))),
        &read(&host_file(&environment("POLICY"))),
        "docker-compose.yaml",
    );
    // The module Envoy loads is the one `make wasm` builds.
    let bootstrap: Value = serde_norway::from_str(&config).unwrap();
    let mut module = None;
    walk(&bootstrap, &mut |value| {
        if let Some(path) = value
            .pointer("/vm_config/code/local/filename")
            .and_then(Value::as_str)
        {
            module = Some(path.to_owned());
        }
    });
    assert_eq!(
        host_file(&module.unwrap()),
        root.join("target/wasm32-wasip1/release/mcp_policy.wasm")
    );
    RenderedEnvoy {
        origin: "docker-compose.yaml".to_owned(),
        config,
    }
}

// ---------------------------------------------------------------------------
// Istio and Envoy Gateway: the filter they would hand Envoy

fn istio_envoy_filter() -> (PathBuf, Value) {
    let file = repo_root().join("deploy/istio/mcp-policy.yaml");
    let objects = objects(&file);
    let filter = of_kind(&objects, "EnvoyFilter")
        .next()
        .expect("an EnvoyFilter")
        .clone();
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
    (file, filter)
}

/// The EnvoyFilter's ECDS resource (name, typed_config), its buffer limit, and
/// the HTTP filter that uses it, checked against each other.
fn istio_filter() -> (String, Value, u64) {
    let (file, filter) = istio_envoy_filter();
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let patch = |apply_to: &str| {
        patches
            .iter()
            .find(|patch| patch["applyTo"] == apply_to)
            .unwrap_or_else(|| panic!("{}: no {apply_to} patch", file.display()))
    };
    let extension = patch("EXTENSION_CONFIG");
    assert_eq!(
        extension["patch"]["operation"], "ADD",
        "istiod serves only ADDed ECDS resources"
    );
    let resource = &extension["patch"]["value"];
    let resource_name = str_at(resource, "/name").to_owned();
    let typed_config = resource["typed_config"].clone();
    assert_eq!(typed_config["@type"], WASM_FILTER_TYPE);
    let uri = str_at(&typed_config, "/config/vm_config/code/remote/http_uri/uri");
    assert!(
        uri.starts_with("oci://"),
        "istio-agent pulls oci:// images: {uri}"
    );

    let http_filter = patch("HTTP_FILTER");
    assert_eq!(http_filter["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(http_filter["patch"]["operation"], "ADD");
    assert_eq!(http_filter["patch"]["filterClass"], "AUTHZ");
    let value = &http_filter["patch"]["value"];
    assert_eq!(
        value["name"],
        resource_name.as_str(),
        "the HTTP filter names the ECDS resource"
    );
    assert_eq!(
        value["config_discovery"]["type_urls"],
        json!([WASM_FILTER_TYPE])
    );
    assert!(value["config_discovery"]["config_source"]["ads"].is_object());

    let listener = patch("LISTENER");
    assert_eq!(listener["patch"]["operation"], "MERGE");
    let buffer = listener["patch"]["value"]["per_connection_buffer_limit_bytes"]
        .as_u64()
        .unwrap();
    (resource_name, typed_config, buffer)
}

const ISTIO_WASM_PLUGIN: &str = "deploy/istio/wasmplugin.yaml";

/// Envoy's listener buffer when none is set (`per_connection_buffer_limit_bytes`).
const ENVOY_DEFAULT_BUFFER: u64 = 1 << 20;

/// The WasmPlugin, found among the manifests every test reads.
fn istio_wasm_plugin() -> Value {
    let file = repo_root().join(ISTIO_WASM_PLUGIN);
    assert!(
        manifest_files().contains(&file),
        "{ISTIO_WASM_PLUGIN} is not among the manifests"
    );
    let objects = objects(&file);
    let plugin = of_kind(&objects, "WasmPlugin")
        .next()
        .expect("a WasmPlugin")
        .clone();
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    plugin
}

/// The policy as the filter gets it from the WasmPlugin: istiod writes the
/// `pluginConfig` Struct as JSON into a StringValue configuration.
fn istio_wasm_plugin_policy(plugin: &Value) -> String {
    let config = &plugin["spec"]["pluginConfig"];
    assert!(config.is_object(), "{ISTIO_WASM_PLUGIN}: no pluginConfig");
    serde_json::to_string(config).unwrap()
}

/// The Wasm filter istiod builds for the WasmPlugin (pilot/pkg/model/
/// extensions.go: name `<namespace>.<name>`, root_id the pluginName, the V8
/// runtime, no vm_id, the pluginConfig as a StringValue of JSON, the fail
/// strategy as failure_policy, the pull policy and resource version as VM
/// environment variables), its `oci://` code made a local file as
/// istio-agent does. No allow_on_headers_stop_iteration: istiod has no field
/// for it. Returns the ECDS resource name and the filter.
fn istio_wasm_plugin_filter(plugin: &Value) -> (String, Value) {
    let spec = &plugin["spec"];
    let url = str_at(spec, "/url");
    assert!(
        url.starts_with("oci://"),
        "istio-agent pulls oci:// images: {url}"
    );
    let name = format!("{}.{}", str_at(plugin, "/metadata/namespace"), name(plugin));
    let failure_policy = match spec["failStrategy"].as_str().unwrap_or("FAIL_CLOSE") {
        "FAIL_CLOSE" => "FAIL_CLOSED",
        "FAIL_OPEN" => "FAIL_OPEN",
        other => panic!("{ISTIO_WASM_PLUGIN}: failStrategy {other}"),
    };
    let mut environment = json!({ "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1" });
    if let Some(policy) = spec["imagePullPolicy"].as_str() {
        environment["ISTIO_META_WASM_IMAGE_PULL_POLICY"] = json!(policy);
    }
    let filter = json!({
        "@type": WASM_FILTER_TYPE,
        "config": {
            "name": name,
            "root_id": str_at(spec, "/pluginName"),
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": { "local": { "filename": wasm_module() } },
                "environment_variables": { "key_values": environment }
            },
            "configuration": { "@type": STRING_VALUE_TYPE, "value": istio_wasm_plugin_policy(plugin) },
            "failure_policy": failure_policy
        }
    });
    (format!("extensions.istio.io/wasmplugin/{name}"), filter)
}

/// Kubernetes quantities as Envoy Gateway's bufferLimit takes them.
fn quantity(text: &str) -> u64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        other => panic!("unit {other}"),
    };
    number.parse::<u64>().unwrap() * factor
}

struct EnvoyGateway {
    objects: Vec<Value>,
    origin: String,
}

fn envoy_gateway() -> EnvoyGateway {
    let file = repo_root().join("deploy/envoy-gateway/mcp-policy.yaml");
    EnvoyGateway {
        objects: objects(&file),
        origin: file.display().to_string(),
    }
}

/// The name a patch's jsonPath selects the Wasm filter by:
/// `$..[?(@.config.name == '<name>')]`.
fn json_path_plugin_name(json_path: &str) -> &str {
    json_path
        .strip_prefix("$..[?(@.config.name == '")
        .and_then(|rest| rest.strip_suffix("')]"))
        .unwrap_or_else(|| panic!("unexpected jsonPath {json_path}"))
}

/// The Wasm filter config Envoy Gateway generates for each `wasm` entry of the
/// EnvoyExtensionPolicy (internal/xds/translator/wasm.go: name, root_id,
/// vm_id per entry, configuration = the config as JSON, fail_open), its code a
/// local file here, with the EnvoyPatchPolicy's patches applied as Envoy
/// Gateway applies them (jsonPath selects the filter by name, `path` below it).
fn envoy_gateway_filters(gateway: &EnvoyGateway) -> Vec<Value> {
    let policy = of_kind(&gateway.objects, "EnvoyExtensionPolicy")
        .next()
        .expect("an EnvoyExtensionPolicy");
    let patch_policy = of_kind(&gateway.objects, "EnvoyPatchPolicy")
        .next()
        .expect("an EnvoyPatchPolicy");
    let patches = patch_policy["spec"]["jsonPatches"].as_array().unwrap();
    assert!(!patches.is_empty());
    let mut filters = Vec::new();
    for (index, wasm) in policy["spec"]["wasm"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let wasm_name = str_at(wasm, "/name");
        assert_eq!(str_at(wasm, "/code/type"), "Image");
        // registry/image:tag, with or without oci:// (Envoy Gateway adds it).
        let url = str_at(wasm, "/code/image/url");
        assert!(
            !url.trim_start_matches("oci://").contains("://"),
            "not an image reference: {url}"
        );
        let config_json = serde_json::to_string(&wasm["config"]).unwrap();
        let mut filter = json!({
            "@type": WASM_FILTER_TYPE,
            "config": {
                "name": wasm_name,
                "root_id": wasm["rootID"],
                "vm_config": {
                    "vm_id": format!("envoyextensionpolicy/{}/{}/wasm/{index}", policy["metadata"]["namespace"].as_str().unwrap(), name(policy)),
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_module() } }
                },
                "configuration": { "@type": STRING_VALUE_TYPE, "value": config_json },
                "fail_open": wasm["failOpen"].as_bool().unwrap_or(false)
            }
        });
        for patch in patches {
            let operation = &patch["operation"];
            // An `add` with an empty path adds a whole resource (the approval
            // service's cluster): see envoy_gateway_added_clusters.
            if operation["path"] == "" {
                continue;
            }
            if json_path_plugin_name(str_at(operation, "/jsonPath")) != wasm_name {
                continue;
            }
            assert_eq!(operation["op"], "add", "{}", gateway.origin);
            let mut target = &mut filter;
            let path: Vec<&str> = str_at(operation, "/path").split('/').collect();
            for segment in &path[..path.len() - 1] {
                target = target
                    .get_mut(*segment)
                    .unwrap_or_else(|| panic!("no {segment} in the Wasm filter"));
            }
            target[path[path.len() - 1]] = operation["value"].clone();
        }
        filters.push(json!({ "name": format!("envoy.filters.http.wasm/{wasm_name}"), "typed_config": filter }));
    }
    assert!(!filters.is_empty());
    filters
}

/// The clusters the EnvoyPatchPolicy adds as whole resources (`op: add`,
/// empty `path`), as Envoy Gateway adds them.
fn envoy_gateway_added_clusters(gateway: &EnvoyGateway) -> Vec<Value> {
    of_kind(&gateway.objects, "EnvoyPatchPolicy")
        .flat_map(|policy| policy["spec"]["jsonPatches"].as_array().unwrap().iter())
        .filter(|patch| {
            patch["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
                && patch["operation"]["op"] == "add"
                && patch["operation"]["path"] == ""
        })
        .map(|patch| {
            let cluster = patch["operation"]["value"].clone();
            assert_eq!(cluster["name"], patch["name"], "{}", gateway.origin);
            cluster
        })
        .collect()
}

fn envoy_gateway_buffer_limit(gateway: &EnvoyGateway) -> u64 {
    let policy = of_kind(&gateway.objects, "ClientTrafficPolicy")
        .next()
        .expect("a ClientTrafficPolicy");
    quantity(str_at(policy, "/spec/connection/bufferLimit"))
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn every_yaml_file_parses_and_every_kubernetes_object_is_named() {
    let mut count = 0;
    for file in manifest_files() {
        count += objects(&file).len();
    }
    assert!(count >= 20, "only {count} Kubernetes objects");

    let root = repo_root();
    for file in yaml_files_under(&root.join("deploy/compose")) {
        let documents = yaml_documents(&file);
        assert!(
            documents[0]["static_resources"].is_object(),
            "{}: not an Envoy configuration",
            file.display()
        );
    }
    let compose = yaml_documents(&root.join("docker-compose.yaml"));
    let services = compose[0]["services"]
        .as_object()
        .expect("docker-compose.yaml: services");
    assert!(services.contains_key("envoy") && services.contains_key("mcp-server"));
    // The demo server is built by a stage the Dockerfile has.
    let target = str_at(&compose[0], "/services/mcp-server/build/target");
    assert!(
        read(&root.join("Dockerfile"))
            .lines()
            .any(|line| line.trim_end().ends_with(&format!(" AS {target}"))),
        "Dockerfile has no stage {target}"
    );
    assert!(str_at(&compose[0], "/services/envoy/image").starts_with("envoyproxy/envoy:v1.40"));
}

#[test]
fn every_embedded_policy_loads() {
    // Found the way `mcp-policy check` finds them (src/cli/sources.rs): a
    // ConfigMap's policy.json, the Istio EnvoyFilter's Wasm filter, the
    // WasmPlugin's pluginConfig and the EnvoyExtensionPolicy's config as the
    // JSON istiod and Envoy Gateway hand the filter, the policies inside
    // Envoy configurations.
    let root = repo_root();
    let mut files = manifest_files();
    files.extend(yaml_files_under(&root.join("envoy")));
    files.push(root.join("policy.json"));
    let mut loaded = Vec::new();
    for file in files {
        let Ok(found) = sources::find_policies(read(&file).as_bytes()) else {
            continue;
        };
        for policy in found {
            let origin = format!(
                "{}#{}",
                file.display(),
                policy.origin.as_deref().unwrap_or("")
            );
            let loaded_policy = load_policy(policy.text.as_bytes(), &origin);
            if origin.contains("#WasmPlugin:") {
                assert!(
                    !loaded_policy.hold_request_headers,
                    "a WasmPlugin cannot set allow_on_headers_stop_iteration: hold_request_headers must be false"
                );
            }
            loaded.push(origin);
        }
    }
    for expected in [
        "ConfigMap:",
        "#EnvoyFilter:",
        "#WasmPlugin:",
        "#EnvoyExtensionPolicy:",
        "envoy/envoy.yaml#wasm:",
        "policy.json#",
    ] {
        assert!(
            loaded.iter().any(|origin| origin.contains(expected)),
            "no policy found at {expected}: {loaded:#?}"
        );
    }
    // What this test reads agrees with how Istio's and Envoy Gateway's
    // filters are rebuilt below.
    let (_, typed_config, _) = istio_filter();
    assert_eq!(
        typed_config["config"]["configuration"]["@type"],
        STRING_VALUE_TYPE
    );
    assert!(loaded.len() >= 7, "too few policies found: {loaded:#?}");
}

#[test]
fn every_envoy_configuration_passes_envoy_validate() {
    let root = repo_root();
    let mut configs = Vec::new();
    // The repository's own configurations, as they are (module path made
    // absolute); the filter's settings checked where they load the filter.
    for file in yaml_files_under(&root.join("envoy")) {
        let document = &yaml_documents(&file)[0];
        if document.get("resources").is_some() {
            // An LDS file (envoy/hot-reload/listener.yaml): validated as the
            // listeners of its directory's bootstrap.
            let bootstrap = lds_file_as_bootstrap(&file, document);
            check_filter_settings(&bootstrap, &file.display().to_string());
            let config = serde_norway::to_string(&bootstrap).unwrap();
            configs.push((file.display().to_string(), with_local_module(&config)));
            continue;
        }
        let (config, modules) = module_paths_made_local(&read(&file));
        if modules > 0 {
            check_filter_settings(document, &file.display().to_string());
        }
        configs.push((file.display().to_string(), config));
    }
    // Templates rendered by the script their container runs.
    let mut rendered = rendered_kubernetes_envoys();
    rendered.push(rendered_compose_envoy());
    for envoy in rendered {
        let bootstrap: Value = serde_norway::from_str(&envoy.config).unwrap();
        check_filter_settings(&bootstrap, &envoy.origin);
        configs.push((envoy.origin, with_local_module(&envoy.config)));
    }
    // Istio: the ECDS resource's Wasm config, its remote code replaced by a
    // local file as istio-agent does, as the inbound listener's HTTP filter.
    let (resource_name, mut typed_config, buffer) = istio_filter();
    typed_config["config"]["vm_config"]["code"] = json!({ "local": { "filename": wasm_module() } });
    let bootstrap = bootstrap_with_filter(
        json!({ "name": resource_name, "typed_config": typed_config }),
        buffer,
    );
    check_filter_settings(&bootstrap, "Istio EnvoyFilter");
    configs.push((
        "istio".to_owned(),
        serde_json::to_string_pretty(&bootstrap).unwrap(),
    ));
    // Istio WasmPlugin: the filter istiod and istio-agent would hand Envoy,
    // on a listener with Envoy's default buffer (a WasmPlugin cannot set one).
    let (resource_name, typed_config) = istio_wasm_plugin_filter(&istio_wasm_plugin());
    let bootstrap = bootstrap_with_filter(
        json!({ "name": resource_name, "typed_config": typed_config }),
        ENVOY_DEFAULT_BUFFER,
    );
    check_filter_settings(&bootstrap, "Istio WasmPlugin");
    configs.push((
        "istio-wasmplugin".to_owned(),
        serde_json::to_string_pretty(&bootstrap).unwrap(),
    ));
    // Envoy Gateway: the filter it generates, with the EnvoyPatchPolicy applied.
    let gateway = envoy_gateway();
    let buffer = envoy_gateway_buffer_limit(&gateway);
    for (index, filter) in envoy_gateway_filters(&gateway).into_iter().enumerate() {
        let bootstrap = bootstrap_with_filter(filter, buffer);
        check_filter_settings(
            &bootstrap,
            "Envoy Gateway EnvoyExtensionPolicy + EnvoyPatchPolicy",
        );
        configs.push((
            format!("envoy-gateway-{index}"),
            serde_json::to_string_pretty(&bootstrap).unwrap(),
        ));
    }
    assert!(configs.len() >= 8, "{} configurations", configs.len());
    envoy_validates(configs);
}

#[test]
fn render_script_copies_in_configmaps_are_the_repository_script() {
    let script = read(&repo_root().join(RENDER_SCRIPT));
    let mut copies = 0;
    for file in manifest_files() {
        for config_map in of_kind(&objects(&file), "ConfigMap") {
            if let Some(copy) = config_map["data"]["render-envoy-config.sh"].as_str() {
                assert_eq!(
                    copy,
                    script,
                    "{} ConfigMap {}: render-envoy-config.sh differs from {RENDER_SCRIPT}",
                    file.display(),
                    name(config_map)
                );
                copies += 1;
            }
        }
    }
    assert!(copies >= 2, "{copies} copies");
}

#[test]
fn kubernetes_references_resolve() {
    for file in manifest_files() {
        let objects = objects(&file);
        let origin = file.display().to_string();
        let namespace = |object: &Value| {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        for deployment in of_kind(&objects, "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            let labels = &deployment["spec"]["template"]["metadata"]["labels"];
            assert_eq!(
                &deployment["spec"]["selector"]["matchLabels"], labels,
                "{origin}: selector"
            );
            let volumes: Vec<&Value> = pod["volumes"].as_array().into_iter().flatten().collect();
            let containers = pod["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(pod["initContainers"].as_array().into_iter().flatten());
            for container in containers {
                for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                    assert!(
                        volumes.iter().any(|volume| volume["name"] == mount["name"]),
                        "{origin}: {} mounts unknown volume {}",
                        container["name"],
                        mount["name"]
                    );
                }
            }
            for volume in &volumes {
                if let Some(config_map) = volume.pointer("/configMap/name").and_then(Value::as_str)
                {
                    let found = find(&objects, "ConfigMap", config_map)
                        .unwrap_or_else(|| panic!("{origin}: no ConfigMap {config_map}"));
                    assert_eq!(
                        namespace(found),
                        namespace(deployment),
                        "{origin}: {config_map} namespace"
                    );
                }
            }
        }
        for service in of_kind(&objects, "Service") {
            let selector = &service["spec"]["selector"];
            let pods: Vec<&Value> = of_kind(&objects, "Deployment")
                .filter(|deployment| namespace(deployment) == namespace(service))
                .map(|deployment| &deployment["spec"]["template"])
                .filter(|template| {
                    selector
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(key, value)| &template["metadata"]["labels"][key] == value)
                })
                .collect();
            assert!(
                !pods.is_empty(),
                "{origin}: Service {} selects no Pod",
                name(service)
            );
            for port in service["spec"]["ports"].as_array().unwrap() {
                let target = str_at(port, "/targetPort");
                let declared = pods.iter().any(|pod| {
                    pod["spec"]["containers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|container| {
                            container["ports"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|p| p["name"] == target)
                        })
                });
                assert!(
                    declared,
                    "{origin}: Service {} targets undeclared port {target}",
                    name(service)
                );
            }
        }
    }
}

#[test]
fn istio_filter_is_delivered_whole_by_its_envoy_filter() {
    // istio_filter() checks the ECDS resource, the HTTP filter that names it,
    // and the listener buffer; here the remaining settings.
    let (resource_name, typed_config, buffer) = istio_filter();
    assert!(
        resource_name.contains('/'),
        "namespace-qualified ECDS name: {resource_name}"
    );
    assert_eq!(
        typed_config["config"]["allow_on_headers_stop_iteration"],
        true
    );
    // Fails closed: fail_open is false unless set.
    assert_ne!(typed_config["config"]["fail_open"], true);
    assert!(!typed_config["config"]["vm_config"]["vm_id"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    assert!(buffer > 1 << 20);
    let (_, filter) = istio_envoy_filter();
    assert!(
        filter["spec"]["workloadSelector"]["labels"].is_object(),
        "select the MCP server's Pods"
    );
}

#[test]
fn istio_wasm_plugin_gates_inbound_calls_after_istio_s_own_filters() {
    let plugin = istio_wasm_plugin();
    let spec = &plugin["spec"];
    assert!(
        spec["selector"]["matchLabels"].is_object(),
        "select the MCP server's Pods"
    );
    assert_eq!(spec["type"], "HTTP");
    // After authentication and authorization (AUTHZ would run before authorization).
    assert_eq!(spec["phase"], "STATS");
    // Inbound only: not the requests the MCP server makes itself.
    assert_eq!(spec["match"], json!([{ "mode": "SERVER" }]));
    assert_ne!(spec["failStrategy"], "FAIL_OPEN");
    // The same workload as the EnvoyFilter it replaces.
    let (_, envoy_filter) = istio_envoy_filter();
    assert_eq!(
        spec["selector"]["matchLabels"],
        envoy_filter["spec"]["workloadSelector"]["labels"]
    );
    assert_eq!(
        plugin["metadata"]["namespace"],
        envoy_filter["metadata"]["namespace"]
    );
    let (_, filter) = istio_wasm_plugin_filter(&plugin);
    assert!(filter["config"]
        .get("allow_on_headers_stop_iteration")
        .is_none());
    let policy = load_policy(
        str_at(&filter, "/config/configuration/value").as_bytes(),
        "Istio WasmPlugin",
    );
    assert!(!policy.hold_request_headers);
    assert!(policy.max_body_bytes < ENVOY_DEFAULT_BUFFER);
}

#[test]
fn envoy_gateway_objects_refer_to_each_other() {
    let gateway = envoy_gateway();
    let objects = &gateway.objects;
    let origin = &gateway.origin;
    let in_namespace = |wanted_kind: &str, wanted_name: &str, namespace: &str| {
        objects.iter().any(|object| {
            kind(object) == wanted_kind
                && name(object) == wanted_name
                && object["metadata"]["namespace"].as_str().unwrap_or("") == namespace
        })
    };
    let gateways: Vec<&Value> = of_kind(objects, "Gateway").collect();
    assert_eq!(gateways.len(), 1);
    let gateway_object = gateways[0];
    let namespace = str_at(gateway_object, "/metadata/namespace");
    assert!(find(
        objects,
        "GatewayClass",
        str_at(gateway_object, "/spec/gatewayClassName")
    )
    .is_some());
    let port = gateway_object["spec"]["listeners"][0]["port"]
        .as_u64()
        .unwrap();

    for route in of_kind(objects, "HTTPRoute") {
        for parent in route["spec"]["parentRefs"].as_array().unwrap() {
            assert!(
                in_namespace("Gateway", str_at(parent, "/name"), namespace),
                "{origin}: parentRef"
            );
        }
        for rule in route["spec"]["rules"].as_array().unwrap() {
            for backend in rule["backendRefs"].as_array().unwrap() {
                let service = find(objects, "Service", str_at(backend, "/name"))
                    .unwrap_or_else(|| panic!("{origin}: no Service {}", backend["name"]));
                assert!(
                    service["spec"]["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["port"] == backend["port"]),
                    "{origin}: Service {} has no port {}",
                    backend["name"],
                    backend["port"]
                );
            }
        }
    }
    for policy_kind in ["EnvoyExtensionPolicy", "ClientTrafficPolicy"] {
        for policy in of_kind(objects, policy_kind) {
            for target in policy["spec"]["targetRefs"].as_array().unwrap() {
                assert!(
                    in_namespace(str_at(target, "/kind"), str_at(target, "/name"), namespace),
                    "{origin}: {policy_kind} {} targets a missing {}",
                    name(policy),
                    target["name"]
                );
            }
        }
    }
    let wasm_names: Vec<&str> = of_kind(objects, "EnvoyExtensionPolicy")
        .flat_map(|policy| policy["spec"]["wasm"].as_array().unwrap())
        .map(|wasm| str_at(wasm, "/name"))
        .collect();
    for patch_policy in of_kind(objects, "EnvoyPatchPolicy") {
        let target = &patch_policy["spec"]["targetRef"];
        assert_eq!(target["kind"], "Gateway");
        assert!(in_namespace("Gateway", str_at(target, "/name"), namespace));
        for patch in patch_policy["spec"]["jsonPatches"].as_array().unwrap() {
            if patch["operation"]["path"] == "" {
                // A whole resource added (the approval service's cluster):
                // checked by every_policy_that_asks_for_approval_reaches_the_approval_service.
                assert_eq!(
                    patch["type"],
                    "type.googleapis.com/envoy.config.cluster.v3.Cluster"
                );
                continue;
            }
            let selected = json_path_plugin_name(str_at(patch, "/operation/jsonPath"));
            assert!(
                wasm_names.contains(&selected),
                "{origin}: jsonPath selects {selected}, not a wasm name"
            );
            assert_eq!(
                str_at(patch, "/operation/path"),
                "config/allow_on_headers_stop_iteration"
            );
            assert_eq!(patch["operation"]["value"], true);
            // xDS name scheme v2: Listener tcp-<port>, RouteConfiguration http-<port>.
            let expected = match str_at(patch, "/type") {
                "type.googleapis.com/envoy.config.listener.v3.Listener" => format!("tcp-{port}"),
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration" => {
                    format!("http-{port}")
                }
                other => panic!("{origin}: patch of {other}"),
            };
            assert_eq!(str_at(patch, "/name"), expected);
        }
    }
    // The EnvoyPatchPolicy needs it enabled in Envoy Gateway's configuration.
    let config = objects_of_file("deploy/envoy-gateway/envoy-gateway-config.yaml");
    let text = str_at(&config[0], "/data/envoy-gateway.yaml");
    let settings: Value = serde_norway::from_str(text).unwrap();
    assert_eq!(settings["extensionApis"]["enableEnvoyPatchPolicy"], true);
}

fn objects_of_file(relative: &str) -> Vec<Value> {
    objects(&repo_root().join(relative))
}

#[test]
fn dockerfile_final_image_is_the_module_alone() {
    let root = repo_root();
    let dockerfile = read(&root.join("Dockerfile"));
    // Instructions, comments and continuations aside.
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|line| line.to_ascii_uppercase().starts_with("FROM "))
        .expect("a FROM");
    assert_eq!(
        instructions[last_from], "FROM scratch",
        "the final stage must be FROM scratch"
    );
    let final_stage = &instructions[last_from + 1..];
    // One instruction, one layer: Istio and Envoy Gateway read the module from a single-layer image.
    assert_eq!(final_stage.len(), 1, "final stage: {final_stage:?}");
    let copy: Vec<&str> = final_stage[0].split_whitespace().collect();
    assert_eq!(copy.first(), Some(&"COPY"));
    assert_eq!(copy.last(), Some(&"/plugin.wasm"), "{}", final_stage[0]);
    // The module it copies is the one the build stage makes, as `make wasm` does.
    assert!(dockerfile.contains("rustup target add wasm32-wasip1"));
    assert!(dockerfile.contains("cargo build --release --target wasm32-wasip1 --lib"));

    let ignore = read(&root.join(".dockerignore"));
    for entry in ["target/", ".venv/"] {
        assert!(
            ignore.lines().any(|line| line.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

/// A container's `--flag=value` arguments.
fn flag_values(container: &Value) -> Vec<(String, String)> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|arg| arg.as_str().unwrap().split_once('='))
        .map(|(flag, value)| (flag.to_owned(), value.to_owned()))
        .collect()
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> &'a str {
    flags
        .iter()
        .find(|(flag, _)| flag == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn approval_service_page_is_behind_the_sign_in_proxy_and_replicas_share_redis() {
    let objects = objects_of_file("deploy/approval/approval-service.yaml");
    let deployment = find(&objects, "Deployment", "approval-service").expect("the service");
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
        "replicas share state"
    );
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let container = |name: &str| {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    };
    let service = flag_values(container("approval-service"));
    let proxy = flag_values(container("oauth2-proxy"));

    // The page listens on loopback only, the header is trusted from loopback
    // only, and oauth2-proxy in the same Pod is its one way in.
    let page = flag(&service, "--listen");
    assert!(page.starts_with("127.0.0.1:"), "page on {page}");
    assert_eq!(flag(&service, "--trusted-proxy"), "127.0.0.1/32");
    assert_eq!(
        flag(&proxy, "--upstream").trim_end_matches('/'),
        format!("http://{page}")
    );
    assert_eq!(flag(&proxy, "--pass-user-headers"), "true");
    assert!(flag(&service, "--public-url").starts_with("https://"));
    assert!(
        !service.iter().any(|(flag, _)| flag == "--memory"),
        "replicas need Redis"
    );

    // Every replica uses the Redis Service defined here.
    let redis_url = flag(&service, "--redis");
    let host_port = redis_url.strip_prefix("redis://").unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let redis_service =
        find(&objects, "Service", host.split('.').next().unwrap()).expect("the Redis Service");
    assert_eq!(
        host,
        format!(
            "{}.{}.svc.cluster.local",
            name(redis_service),
            redis_service["metadata"]["namespace"].as_str().unwrap()
        )
    );
    assert!(redis_service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"].as_u64().unwrap().to_string() == port));

    // The filter's Service reaches the --filter-listen port; the public one
    // reaches oauth2-proxy, never the page directly.
    let filter_port = flag(&service, "--filter-listen")
        .rsplit(':')
        .next()
        .unwrap();
    let declared = |container: &Value, port_name: &str| -> String {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port_name)
            .map(|p| p["containerPort"].to_string())
            .unwrap_or_default()
    };
    let filter_service = find(&objects, "Service", "approval-service-filter").unwrap();
    let target = str_at(&filter_service["spec"]["ports"][0], "/targetPort");
    assert_eq!(declared(container("approval-service"), target), filter_port);
    let public = find(&objects, "Service", "approval-service").unwrap();
    for port in public["spec"]["ports"].as_array().unwrap() {
        let target = str_at(port, "/targetPort");
        assert!(
            !declared(container("oauth2-proxy"), target).is_empty(),
            "the public Service targets {target}, not oauth2-proxy"
        );
    }
    let probe = &container("approval-service")["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/readyz");
}

/// The rate-limit service binary `make test` builds.
fn ratelimit_service_binary() -> PathBuf {
    std::env::var_os("MCP_RATELIMIT_SERVICE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join("ratelimit-service/target/release/mcp-ratelimit-service")
        })
}

/// The Deployment whose Pod has a container named `container`, and that container.
fn deployment_with_container<'a>(objects: &'a [Value], container: &str) -> (&'a Value, &'a Value) {
    of_kind(objects, "Deployment")
        .find_map(|deployment| {
            deployment["spec"]["template"]["spec"]["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == container)
                .map(|c| (deployment, c))
        })
        .unwrap_or_else(|| panic!("no Deployment with a container {container}"))
}

/// The containerPort of a container's port named `name`.
fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|port| port["name"] == name)
        .and_then(|port| port["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{} declares no port {name}", container["name"]))
}

/// `<service>.<namespace>.svc.cluster.local` and a port, to the Service
/// and its port entry.
fn service_port<'a>(objects: &'a [Value], host: &str, port: u64) -> (&'a Value, &'a Value) {
    let mut parts = host.split('.');
    let (wanted, namespace) = (parts.next().unwrap(), parts.next().unwrap_or(""));
    assert_eq!(
        parts.collect::<Vec<_>>(),
        ["svc", "cluster", "local"],
        "{host}: not a Service's DNS name"
    );
    let service = of_kind(objects, "Service")
        .find(|s| name(s) == wanted && s["metadata"]["namespace"] == namespace)
        .unwrap_or_else(|| panic!("{host}: no Service {wanted} in {namespace}"));
    let entry = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("Service {wanted} has no port {port}"));
    (service, entry)
}

/// Whether a Service's selector selects a Deployment's Pods.
fn selects(service: &Value, deployment: &Value) -> bool {
    service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        && service["spec"]["selector"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(key, value)| &deployment["spec"]["template"]["metadata"]["labels"][key] == value)
}

#[test]
fn fleet_service_redis_and_envoy_fit_together() {
    let file = repo_root().join("deploy/fleet/mcp-fleet.yaml");
    let objects = objects(&file);
    let (service_deployment, service) = deployment_with_container(&objects, "ratelimit-service");
    let args: Vec<&str> = service["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();

    // The service itself accepts these arguments.
    let binary = ratelimit_service_binary();
    let out = Command::new(&binary)
        .args(&args)
        .arg("--check")
        .output()
        .unwrap_or_else(|err| panic!("{}: {err} (make test builds it)", binary.display()));
    assert!(
        out.status.success(),
        "mcp-ratelimit-service refuses the manifest's arguments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arg = |flag: &str| -> &str {
        let at = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("no {flag}"));
        args[at + 1]
    };
    let port_of = |address: &str| -> u64 { address.rsplit(':').next().unwrap().parse().unwrap() };

    // It listens on the ports it declares, and is probed on its health endpoints.
    assert_eq!(port_of(arg("--listen")), container_port(service, "grpc"));
    assert_eq!(
        port_of(arg("--http-listen")),
        container_port(service, "http")
    );
    assert_eq!(service["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(service["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(service[probe]["httpGet"]["port"], "http", "{probe}");
    }
    let replicas = |deployment: &Value| deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(
        replicas(service_deployment) >= 2,
        "one service process is a single point"
    );

    // --redis is the Redis Service, which selects the Pod serving that port.
    let redis_url = arg("--redis");
    let authority = redis_url.strip_prefix("redis://").expect("redis://");
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    let (redis_service, redis_port) = service_port(&objects, host, port.parse().unwrap());
    let (redis_deployment, redis) = deployment_with_container(&objects, "redis");
    assert!(
        selects(redis_service, redis_deployment),
        "{host} selects no Redis Pod"
    );
    assert_eq!(
        container_port(redis, str_at(redis_port, "/targetPort")),
        6379,
        "the Redis Service's port reaches redis-server's"
    );

    // The Envoy replicas: the policy's rate_limit_service.cluster is a cluster of
    // the template, HTTP/2, to every service Pod (a headless Service) on its gRPC port.
    let policy: Value = serde_json::from_str(&config_map_value(
        &objects,
        &("mcp-policy".to_owned(), "policy.json".to_owned()),
        "deploy/fleet",
    ))
    .unwrap();
    let cluster_name = str_at(&policy, "/rate_limit_service/cluster");
    // A slow Redis is the service's UNAVAILABLE (logged, counted) before it
    // is the filter's timeout.
    let redis_timeout: u64 = arg("--redis-timeout-ms").parse().unwrap();
    let filter_timeout = policy["rate_limit_service"]["timeout_ms"]
        .as_u64()
        .unwrap_or(50);
    assert!(
        redis_timeout < filter_timeout,
        "--redis-timeout-ms {redis_timeout} is not below the policy's timeout_ms {filter_timeout}"
    );
    let template: Value = serde_norway::from_str(&config_map_value(
        &objects,
        &("mcp-gateway-envoy".to_owned(), "envoy.yaml.tmpl".to_owned()),
        "deploy/fleet",
    ))
    .unwrap();
    let cluster = template["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster_name)
        .unwrap_or_else(|| panic!("the template has no cluster {cluster_name}"));
    assert!(
        cluster
            .pointer("/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/explicit_http_config/http2_protocol_options")
            .is_some(),
        "gRPC needs HTTP/2: {cluster}"
    );
    assert_eq!(cluster["type"], "STRICT_DNS");
    let address = cluster
        .pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .unwrap();
    let (grpc_service, grpc_port) = service_port(
        &objects,
        str_at(address, "/address"),
        address["port_value"].as_u64().unwrap(),
    );
    assert!(selects(grpc_service, service_deployment));
    assert_eq!(str_at(grpc_port, "/targetPort"), "grpc");
    assert_eq!(
        grpc_service["spec"]["clusterIP"], "None",
        "headless, so Envoy balances checks per request over the service Pods"
    );
    let (gateway, _) = deployment_with_container(&objects, "envoy");
    assert!(replicas(gateway) >= 2, "a fleet has more than one replica");

    // The service's image is the Dockerfile's ratelimit-service stage.
    let dockerfile = read(&repo_root().join("Dockerfile"));
    assert!(dockerfile
        .lines()
        .any(|line| line.trim_end().ends_with(" AS ratelimit-service")));
    assert!(dockerfile.contains("ENTRYPOINT [\"mcp-ratelimit-service\"]"));
}

/// The clusters of a bootstrap (static ones), by name.
fn static_clusters(bootstrap: &Value) -> Vec<&Value> {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .map(|clusters| clusters.iter().collect())
        .unwrap_or_default()
}

/// `host:port` of a STRICT_DNS / STATIC cluster's single endpoint.
fn cluster_endpoint(cluster: &Value) -> String {
    let address = cluster
        .pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .unwrap_or_else(|| panic!("no endpoint in {cluster}"));
    format!(
        "{}:{}",
        str_at(address, "/address"),
        address["port_value"].as_u64().unwrap()
    )
}

/// Every shipped policy that asks for approval names a cluster its Envoy
/// has, and that cluster leads to the approval service: the repository's
/// configurations (`make run`: the service's filter port 8091), compose (its
/// `approval` service), the Kubernetes Envoys, Envoy Gateway (a cluster its
/// EnvoyPatchPolicy adds) and Istio (the sidecar's outbound cluster) to
/// deploy/approval's filter Service.
#[test]
fn every_policy_that_asks_for_approval_reaches_the_approval_service() {
    let root = repo_root();
    let approval = objects(&root.join("deploy/approval/approval-service.yaml"));
    let filter_service = find(&approval, "Service", "approval-service-filter")
        .expect("deploy/approval: the filter Service");
    let filter_port = filter_service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let filter_host = format!(
        "{}.{}.svc.cluster.local",
        name(filter_service),
        str_at(filter_service, "/metadata/namespace")
    );
    let kubernetes_endpoint = format!("{filter_host}:{filter_port}");
    let asking = |policy: &str, origin: &str| {
        load_policy(policy.as_bytes(), origin)
            .approval_service
            .map(|service| service.cluster)
    };
    let mut checked = Vec::new();

    // Bootstraps with the policy inside and the cluster beside it.
    let mut bootstraps: Vec<(String, Value, String)> = Vec::new();
    for file in yaml_files_under(&root.join("envoy")) {
        let document = yaml_documents(&file)[0].clone();
        let bootstrap = if document.get("resources").is_some() {
            lds_file_as_bootstrap(&file, &document)
        } else {
            document
        };
        bootstraps.push((
            file.display().to_string(),
            bootstrap,
            "127.0.0.1:8091".into(),
        ));
    }
    let compose = rendered_compose_envoy();
    bootstraps.push((
        compose.origin.clone(),
        serde_norway::from_str(&compose.config).unwrap(),
        "approval:8091".into(),
    ));
    let services = &yaml_documents(&root.join("docker-compose.yaml"))[0]["services"];
    assert!(
        services["approval"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|arg| arg == "--filter-listen=0.0.0.0:8091"),
        "docker-compose.yaml: the approval service listens for the filter on 8091"
    );
    for envoy in rendered_kubernetes_envoys() {
        bootstraps.push((
            envoy.origin.clone(),
            serde_norway::from_str(&envoy.config).unwrap(),
            kubernetes_endpoint.clone(),
        ));
    }
    for (origin, bootstrap, expected) in &bootstraps {
        for policy in embedded_policies(bootstrap) {
            let Some(cluster) = asking(&policy, origin) else {
                continue;
            };
            let defined = static_clusters(bootstrap)
                .into_iter()
                .find(|defined| defined["name"] == cluster.as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "{origin}: the policy asks cluster {cluster:?}, which Envoy does not have"
                    )
                });
            assert_eq!(&cluster_endpoint(defined), expected, "{origin}");
            checked.push(origin.clone());
        }
    }

    // Envoy Gateway: the EnvoyPatchPolicy adds the cluster.
    let gateway = envoy_gateway();
    let added = envoy_gateway_added_clusters(&gateway);
    for policy in of_kind(&gateway.objects, "EnvoyExtensionPolicy") {
        for wasm in policy["spec"]["wasm"].as_array().unwrap() {
            let json = serde_json::to_string(&wasm["config"]).unwrap();
            if let Some(cluster) = asking(&json, &gateway.origin) {
                let defined = added
                    .iter()
                    .find(|defined| defined["name"] == cluster.as_str())
                    .unwrap_or_else(|| panic!("{}: no cluster {cluster:?} added", gateway.origin));
                assert_eq!(cluster_endpoint(defined), kubernetes_endpoint);
                checked.push(gateway.origin.clone());
            }
        }
    }

    // Istio: the sidecar's outbound cluster for the filter Service.
    let outbound = format!("outbound|{filter_port}||{filter_host}");
    let (_, typed_config, _) = istio_filter();
    let envoy_filter_policy = str_at(&typed_config, "/config/configuration/value");
    let wasm_plugin_policy = istio_wasm_plugin_policy(&istio_wasm_plugin());
    for (origin, policy) in [
        ("Istio EnvoyFilter", envoy_filter_policy.to_owned()),
        ("Istio WasmPlugin", wasm_plugin_policy),
    ] {
        if let Some(cluster) = asking(&policy, origin) {
            assert_eq!(cluster, outbound, "{origin}");
            checked.push(origin.to_owned());
        }
    }
    assert!(
        checked.len() >= 8,
        "too few policies ask for approval: {checked:?}"
    );
}

/// The access logs of a rendered configuration's MCP listener: the JSON
/// request log and the audit log (filtered to decided requests).
fn has_both_access_logs(config: &Value) -> bool {
    let mut json_log = false;
    let mut audit_log = false;
    walk(config, &mut |value| {
        if let Some(logs) = value["access_log"].as_array() {
            for log in logs {
                let format = &log["typed_config"]["log_format"];
                json_log |= format["json_format"]["decision"]
                    == "%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%";
                audit_log |= format["text_format_source"]["inline_string"]
                    == mcp_policy::cli::render::AUDIT_LINE
                    && log["filter"]["extension_filter"]["typed_config"]["expression"]
                        == mcp_policy::cli::render::AUDITED;
            }
        }
    });
    json_log && audit_log
}

#[test]
fn every_kubernetes_envoy_is_scraped_and_writes_both_logs() {
    let mut checked = Vec::new();
    for file in manifest_files() {
        let objects = objects(&file);
        for deployment in of_kind(&objects, "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            let Some(init) = pod["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|container| container["name"] == "render-envoy-config")
            else {
                continue;
            };
            let origin = format!("{} Deployment {}", file.display(), name(deployment));
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true", "{origin}");
            assert_eq!(
                annotations["prometheus.io/path"], "/stats/prometheus",
                "{origin}"
            );
            let port: u64 = str_at(annotations, "/prometheus.io~1port").parse().unwrap();
            let envoy = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|container| container["name"] == "envoy")
                .unwrap_or_else(|| panic!("{origin}: no envoy container"));
            assert!(
                envoy["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["containerPort"] == port),
                "{origin}: the envoy container does not expose {port}"
            );
            let template = config_map_value(
                &objects,
                &config_map_file(pod, init, &env(init, "TEMPLATE")),
                &origin,
            );
            let config: Value = serde_norway::from_str(
                &template.replace(PLACEHOLDER, r#"{"version":"1","default":"deny"}"#),
            )
            .unwrap();
            let listeners = config["static_resources"]["listeners"].as_array().unwrap();
            let metrics = listeners
                .iter()
                .find(|listener| listener["address"]["socket_address"]["port_value"] == port)
                .unwrap_or_else(|| panic!("{origin}: no listener on the scrape port {port}"));
            let mut routes_to_admin = false;
            walk(metrics, &mut |value| {
                routes_to_admin |= value["match"]["path"] == "/stats/prometheus"
                    && value["route"]["cluster"] == "envoy_admin";
            });
            assert!(
                routes_to_admin,
                "{origin}: the scrape port serves /stats/prometheus"
            );
            assert_eq!(
                config["admin"]["address"]["socket_address"]["address"], "127.0.0.1",
                "{origin}: the admin interface stays on loopback"
            );
            assert!(has_both_access_logs(&config), "{origin}: access logs");
            assert_eq!(
                config["stats_config"],
                mcp_policy::cli::render::stats_config_json(),
                "{origin}: stats tags"
            );
            checked.push(origin);
        }
    }
    assert!(checked.len() >= 3, "{checked:?}");
}

#[test]
fn istio_and_envoy_gateway_get_the_stats_tags_and_both_logs() {
    let labels: Vec<Value> = mcp_policy::metrics::LABELS
        .iter()
        .map(|label| json!(label))
        .collect();
    // Istio: the mesh's extraStatTags are the labels, whose regexes Istio
    // writes exactly as the filter's own bootstraps do.
    let mesh = objects(&repo_root().join("deploy/istio/mesh-config.yaml"));
    let operator = of_kind(&mesh, "IstioOperator").next().unwrap();
    let mesh_config = &operator["spec"]["meshConfig"];
    assert_eq!(
        mesh_config["defaultConfig"]["extraStatTags"],
        Value::Array(labels.clone())
    );
    for (tag, regex) in mcp_policy::metrics::stats_tags() {
        // tools/packaging/common/envoy_bootstrap.json: "({{ $tag }}=\\.=(.*?);\\.;)"
        assert_eq!(regex, format!("({tag}=\\.=(.*?);\\.;)"));
    }
    let providers = mesh_config["extensionProviders"].as_array().unwrap();
    let provider = |name: &str| {
        providers
            .iter()
            .find(|provider| provider["name"] == name)
            .unwrap_or_else(|| panic!("no provider {name}"))
    };
    assert_eq!(
        provider("mcp-policy-audit")["envoyFileAccessLog"]["logFormat"]["text"],
        mcp_policy::cli::render::AUDIT_LINE
    );
    let access = &provider("mcp-policy-access")["envoyFileAccessLog"]["logFormat"]["labels"];
    for (key, value) in mcp_policy::cli::render::ACCESS_LOG_FIELDS {
        assert_eq!(access[key], value, "mcp-policy-access {key}");
    }
    let telemetry = objects(&repo_root().join("deploy/istio/telemetry.yaml"));
    let telemetry = of_kind(&telemetry, "Telemetry").next().unwrap();
    let logging = telemetry["spec"]["accessLogging"].as_array().unwrap();
    for entry in logging {
        for named in entry["providers"].as_array().unwrap() {
            provider(str_at(named, "/name"));
        }
    }
    assert!(logging.iter().any(|entry| entry["filter"]["expression"]
        == mcp_policy::cli::render::AUDITED
        && entry["providers"][0]["name"] == "mcp-policy-audit"));

    // Envoy Gateway: the Gateway's EnvoyProxy merges the stats tags into the
    // bootstrap and writes both logs.
    let gateway = envoy_gateway();
    let gw = of_kind(&gateway.objects, "Gateway").next().unwrap();
    let reference = &gw["spec"]["infrastructure"]["parametersRef"];
    assert_eq!(reference["kind"], "EnvoyProxy");
    let proxy = find(&gateway.objects, "EnvoyProxy", str_at(reference, "/name"))
        .expect("the Gateway's EnvoyProxy");
    assert_eq!(proxy["spec"]["bootstrap"]["type"], "Merge");
    let merged: Value = serde_norway::from_str(str_at(proxy, "/spec/bootstrap/value")).unwrap();
    assert_eq!(
        merged["stats_config"],
        mcp_policy::cli::render::stats_config_json()
    );
    let settings = proxy["spec"]["telemetry"]["accessLog"]["settings"]
        .as_array()
        .unwrap();
    assert!(settings.iter().any(|setting| setting["format"]["text"]
        == mcp_policy::cli::render::AUDIT_LINE
        && setting["matches"][0] == mcp_policy::cli::render::AUDITED));
    assert!(settings
        .iter()
        .any(|setting| setting["format"]["json"]["decision"]
            == "%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%"));
}
