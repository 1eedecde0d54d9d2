//! The filter's Envoy configuration, written in one place: every Envoy
//! configuration the repository ships (envoy/, the Envoy templates and the
//! Istio filter of deploy/), the tests' and the bench's are renderings of
//! what is here (`mcp-policy render`; tests/render.rs proves each committed
//! file equals its rendering).
//!
//! What every rendering says the same way: the Wasm filter
//! ([`wasm_filter`]: `allow_on_headers_stop_iteration`, the V8 runtime, the
//! `vm_id`, the policy as a `StringValue`), the stats tags that make the
//! metrics' labels ([`stats_config`]), the two access logs ([`access_logs`]:
//! the JSON request log with the gate's filter state, and the audit record as
//! it is), and a listener buffer above the policy's body limit.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::sources::{STRING_VALUE_TYPE, WASM_FILTER_TYPE};
use crate::metrics;

/// The listener's buffer: above the policy's largest `max_body_bytes` default
/// (1 MiB), or Envoy answers 413 itself before the filter decides.
pub const BUFFER_LIMIT: u64 = 2 * 1024 * 1024;
/// The line a template holds in place of the policy (deploy/render-envoy-config.sh).
pub const PLACEHOLDER: &str = "@POLICY_JSON@";
const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const STDOUT_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const FILE_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const CEL_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter";
/// The CEL expression that keeps the audit log to the requests the gate decided.
pub const AUDITED: &str = "'wasm.mcp_policy.audit' in filter_state";
/// The audit log's line: the record as the filter left it.
pub const AUDIT_LINE: &str = "%FILTER_STATE(wasm.mcp_policy.audit:PLAIN)%\n";

/// Where the policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyText<'a> {
    /// Written into the configuration.
    Inline(&'a str),
    /// A template: [`PLACEHOLDER`] stands where the policy goes.
    Placeholder,
}

/// Where the module comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module<'a> {
    /// A file Envoy reads.
    Local(&'a str),
    /// An OCI image istio-agent pulls and hands Envoy as a local file.
    Oci(&'a str),
}

/// How the Wasm filter is written.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    pub module: Module<'a>,
    pub policy: PolicyText<'a>,
    /// A comment above the module path, if any.
    pub module_comment: Option<&'a str>,
}

/// Where the access logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs<'a> {
    /// Both to Envoy's standard output.
    Stdout,
    /// The request log and the audit log to these files.
    Files { access: &'a str, audit: &'a str },
}

/// An upstream cluster's endpoints.
#[derive(Debug, Clone, Copy)]
pub enum Endpoints<'a> {
    /// Fixed addresses.
    Static(&'a [(&'a str, u16)]),
    /// Every address a name resolves to.
    Dns(&'a str, u16),
}

/// The JWT provider of envoy/envoy-jwt.yaml.
#[derive(Debug, Clone, Copy)]
pub struct Jwt<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub jwks_uri: &'a str,
    pub jwks_host: &'a str,
}

/// One Envoy with the filter in front of an MCP server.
#[derive(Debug, Clone)]
pub struct Envoy<'a> {
    /// Comment lines at the top (without `# `).
    pub header: Vec<&'a str>,
    pub admin: (&'a str, u16),
    /// A comment above the admin address.
    pub admin_comment: Option<&'a str>,
    pub listen: (&'a str, u16),
    /// At the edge: Envoy sets X-Forwarded-For from the connection.
    pub edge: bool,
    pub filter: Filter<'a>,
    pub jwt: Option<Jwt<'a>>,
    pub upstream: Endpoints<'a>,
    pub upstream_comment: Option<&'a str>,
    /// The rate-limit service's cluster (`ratelimit`), for global limits.
    pub rate_limit: Option<Endpoints<'a>>,
    /// The approval service's filter port (`mcp_approval`), for calls the
    /// policy holds for a person's approval.
    pub approval: Option<Endpoints<'a>>,
    pub logs: Logs<'a>,
    /// A listener that serves the admin's `/stats/prometheus` only, for a
    /// scraper outside the Pod (the admin stays on loopback).
    pub metrics_port: Option<u16>,
    /// What the policy names that the configuration must match: its body
    /// limit, its services' clusters, the JWT payload's metadata key.
    pub matches: PolicyMatches,
}

/// The names and sizes a configuration shares with the policy it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatches {
    /// The listener's buffer: at least [`BUFFER_LIMIT`], and twice the
    /// policy's `max_body_bytes`, or Envoy answers 413 before the filter.
    pub buffer_limit: u64,
    /// `rate_limit_service.cluster`.
    pub rate_limit_cluster: String,
    /// `approval_service.cluster`.
    pub approval_cluster: String,
    /// `identity.jwt_claim.provider_metadata`.
    pub jwt_metadata: String,
}

impl Default for PolicyMatches {
    fn default() -> Self {
        PolicyMatches {
            buffer_limit: BUFFER_LIMIT,
            rate_limit_cluster: "ratelimit".to_string(),
            approval_cluster: APPROVAL_CLUSTER.to_string(),
            jwt_metadata: "jwt_payload".to_string(),
        }
    }
}

impl PolicyMatches {
    /// What `policy` names (the defaults for what it leaves out).
    pub fn of(policy: &crate::policy::Policy) -> PolicyMatches {
        let mut matches = PolicyMatches {
            buffer_limit: BUFFER_LIMIT.max(policy.max_body_bytes.saturating_mul(2)),
            ..PolicyMatches::default()
        };
        if let Some(service) = &policy.rate_limit_service {
            matches.rate_limit_cluster = service.cluster.clone();
        }
        if let Some(service) = &policy.approval_service {
            matches.approval_cluster = service.cluster.clone();
        }
        if let crate::policy::Identity::JwtClaim {
            provider_metadata, ..
        } = &policy.identity
        {
            matches.jwt_metadata = provider_metadata.clone();
        }
        matches
    }
}

/// The approval service's cluster in every layout that has one.
pub const APPROVAL_CLUSTER: &str = "mcp_approval";

impl<'a> Envoy<'a> {
    /// The standalone Envoy of envoy/envoy.yaml: loopback, the demo server
    /// on 127.0.0.1:8081, the module built by `make wasm`.
    pub fn standalone(policy: PolicyText<'a>) -> Envoy<'a> {
        Envoy {
            header: Vec::new(),
            admin: ("127.0.0.1", 9901),
            admin_comment: None,
            listen: ("127.0.0.1", 10000),
            edge: false,
            filter: Filter {
                module: Module::Local("target/wasm32-wasip1/release/mcp_policy.wasm"),
                policy,
                module_comment: None,
            },
            jwt: None,
            upstream: Endpoints::Static(&[("127.0.0.1", 8081)]),
            upstream_comment: None,
            rate_limit: None,
            approval: None,
            logs: Logs::Stdout,
            metrics_port: None,
            matches: PolicyMatches::default(),
        }
    }
}

/// A text being written line by line at an indentation.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, indent: usize, text: &str) {
        if text.is_empty() {
            self.0.push('\n');
        } else {
            let _ = writeln!(self.0, "{:indent$}{text}", "");
        }
    }

    fn comment(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.line(indent, "#");
            } else {
                self.line(indent, &format!("# {line}"));
            }
        }
    }

    fn header(&mut self, lines: &[&str]) {
        for line in lines {
            if line.is_empty() {
                self.line(0, "#");
            } else {
                self.comment(0, line);
            }
        }
    }

    fn lines(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            self.line(indent, line);
        }
    }
}

/// A YAML scalar for a policy at `indent`: a literal block when the text
/// can be one, else a double-quoted string (JSON's string syntax is YAML's).
fn policy_value(text: &mut Text, indent: usize, policy: PolicyText<'_>, trailer: &str) {
    match policy {
        PolicyText::Placeholder => {
            text.line(indent, &format!("value: |{trailer}"));
            text.line(indent + 2, PLACEHOLDER);
        }
        PolicyText::Inline(policy) => {
            let block_safe = !policy.starts_with([' ', '\n'])
                && !policy.trim_end().is_empty()
                && policy
                    .chars()
                    .all(|c| c == '\n' || c == ' ' || !c.is_control());
            if block_safe {
                text.line(indent, &format!("value: |{trailer}"));
                for line in policy.trim_end().lines() {
                    if line.trim().is_empty() {
                        text.line(0, "");
                    } else {
                        text.line(indent + 2, line);
                    }
                }
            } else {
                let quoted = serde_json::to_string(policy).unwrap_or_default();
                text.line(indent, &format!("value: {quoted}{trailer}"));
            }
        }
    }
}

/// The bootstrap's `stats_config`: one tag per label of the filter's metrics.
pub fn stats_config() -> String {
    let mut text = Text::default();
    text.comment(
        0,
        "The filter's metrics carry their labels in their names (label=.=value;.;,\n\
         the form Istio's extraStatTags reads); these tags make them Prometheus\n\
         labels: mcp_policy_decisions_total{decision,kind,target},\n\
         mcp_policy_grant_decisions_total{decision,grant}, mcp_policy_info{revision}.",
    );
    text.line(0, "stats_config:");
    text.line(2, "stats_tags:");
    for (tag, regex) in metrics::stats_tags() {
        text.line(2, &format!("- tag_name: {tag}"));
        text.line(4, &format!("regex: '{regex}'"));
    }
    text.0
}

/// The HTTP connection manager's two access logs, at `indent`.
fn access_logs(text: &mut Text, indent: usize, logs: Logs<'_>) {
    text.comment(
        indent,
        "Two logs of one JSON object per line. The request log: Envoy's fields\n\
         beside the gate's decision, which the filter exports as filter state\n\
         (wasm.mcp_policy.*). The audit log: the gate's record of each request it\n\
         decided, as it is (README, \"Audit log\").",
    );
    text.line(indent, "access_log:");
    let (access, audit) = match logs {
        Logs::Stdout => (None, None),
        Logs::Files { access, audit } => (Some(access), Some(audit)),
    };
    let sink = |text: &mut Text, path: Option<&str>| {
        text.line(indent + 2, "typed_config:");
        match path {
            None => text.line(indent + 4, &format!("\"@type\": {STDOUT_LOG_TYPE}")),
            Some(path) => {
                text.line(indent + 4, &format!("\"@type\": {FILE_LOG_TYPE}"));
                text.line(indent + 4, &format!("path: {}", scalar(path)));
            }
        }
        text.line(indent + 4, "log_format:");
    };
    let name = |path: Option<&str>| match path {
        None => "envoy.access_loggers.stdout",
        Some(_) => "envoy.access_loggers.file",
    };
    text.line(indent, &format!("- name: {}", name(access)));
    sink(text, access);
    text.line(indent + 6, "json_format:");
    for (key, value) in ACCESS_LOG_FIELDS {
        text.line(indent + 8, &format!("{key}: \"{value}\""));
    }
    text.line(indent, &format!("- name: {}", name(audit)));
    text.line(indent + 2, "filter:");
    text.line(indent + 4, "extension_filter:");
    text.line(
        indent + 6,
        "name: envoy.access_loggers.extension_filters.cel",
    );
    text.line(indent + 6, "typed_config:");
    text.line(indent + 8, &format!("\"@type\": {CEL_FILTER_TYPE}"));
    text.line(indent + 8, &format!("expression: \"{AUDITED}\""));
    sink(text, audit);
    text.line(
        indent + 6,
        &format!(
            "text_format_source: {{ inline_string: {} }}",
            serde_json::to_string(AUDIT_LINE).unwrap_or_default()
        ),
    );
}

/// The request log's fields.
pub const ACCESS_LOG_FIELDS: [(&str, &str); 10] = [
    ("access_log", "mcp"),
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(:PATH)%"),
    ("status", "%RESPONSE_CODE%"),
    ("duration_ms", "%DURATION%"),
    ("grant", "%FILTER_STATE(wasm.mcp_policy.grant:PLAIN)%"),
    ("tool", "%FILTER_STATE(wasm.mcp_policy.tool:PLAIN)%"),
    ("decision", "%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%"),
    ("rule", "%FILTER_STATE(wasm.mcp_policy.rule:PLAIN)%"),
];

/// The Wasm HTTP filter as an item of `http_filters`, at `indent`.
fn wasm_filter(text: &mut Text, indent: usize, filter: Filter<'_>) {
    text.line(indent, "- name: mcp-policy");
    text.line(indent + 2, "typed_config:");
    wasm_typed_config(text, indent + 4, filter);
}

/// The Wasm filter's `typed_config` members, at `indent`.
fn wasm_typed_config(text: &mut Text, indent: usize, filter: Filter<'_>) {
    text.line(indent, &format!("\"@type\": {WASM_FILTER_TYPE}"));
    text.line(indent, "config:");
    let i = indent + 2;
    text.line(i, "name: mcp-policy");
    text.line(i, "root_id: mcp-policy");
    text.comment(
        i,
        "Required: the filter pauses in on_request_headers until it has read the\n\
         body, so nothing of a refused call reaches the server. Without this,\n\
         Envoy 1.40 turns that pause into \"stop all iteration\" and never hands\n\
         the filter the body: every POST hangs. (Where it cannot be set, use\n\
         \"hold_request_headers\": false in the policy: see README.)",
    );
    text.line(i, "allow_on_headers_stop_iteration: true");
    text.comment(
        i,
        "Fails closed (the default): if the module cannot load or configure,\n\
         requests are refused (5xx), never forwarded ungated.",
    );
    text.line(i, "vm_config:");
    text.comment(
        i + 2,
        "Rate-limit counters live in shared data keyed by vm_id: every worker of\n\
         this Envoy (and a reloaded configuration with the same vm_id) counts in\n\
         the same place.",
    );
    text.line(i + 2, "vm_id: mcp-policy");
    text.line(i + 2, "runtime: envoy.wasm.runtime.v8");
    if let Some(comment) = filter.module_comment {
        text.comment(i + 2, comment);
    }
    match filter.module {
        Module::Local(path) => {
            let path = scalar(path);
            text.line(i + 2, &format!("code: {{ local: {{ filename: {path} }} }}"));
        }
        Module::Oci(image) => {
            text.line(i + 2, "code:");
            text.line(i + 4, "remote:");
            text.line(i + 6, "http_uri:");
            text.comment(
                i + 8,
                "istio-agent pulls the image and hands Envoy a local file.",
            );
            text.line(
                i + 8,
                &format!(
                    "uri: {}   # CHANGE: `docker build` of the repository",
                    uri_scalar(&format!(
                        "oci://{}",
                        image.strip_prefix("oci://").unwrap_or(image)
                    ))
                ),
            );
            text.comment(
                i + 8,
                "Envoy's API requires a cluster; none is used (the agent fetches), as Istio does.",
            );
            text.line(i + 8, "cluster: _");
            text.line(i + 8, "timeout: 30s");
        }
    }
    text.comment(i, "The plugin configuration is the policy document.");
    text.line(i, "configuration:");
    text.line(i + 2, &format!("\"@type\": {STRING_VALUE_TYPE}"));
    let trailer = match (filter.module, filter.policy) {
        (Module::Oci(_), PolicyText::Inline(_)) => {
            "                             # CHANGE: the policy (`mcp-policy check` it first)"
        }
        _ => "",
    };
    policy_value(text, i + 2, filter.policy, trailer);
}

/// A scalar for YAML's flow and block styles: as it is when plain letters,
/// digits and `_-./` (what every shipped name, address and module path is),
/// else as a JSON string (an IPv6 address, a cluster name with `|` or `:`,
/// a path with `,`, `#`, `}` or a blank). Every value a rendering takes
/// from its caller (module path, addresses, cluster names) is written
/// through this, so no value can end a flow mapping or start a comment.
fn scalar(text: &str) -> std::borrow::Cow<'_, str> {
    scalar_with(text, &[])
}

/// A URI in block style (`uri: oci://host/image:tag   # comment`): as
/// [`scalar`], with `:` and `@` left plain too, as long as no `:` ends it
/// (a `:` followed by a blank cannot occur: blanks are quoted).
fn uri_scalar(text: &str) -> std::borrow::Cow<'_, str> {
    if text.ends_with(':') {
        return std::borrow::Cow::Owned(Value::String(text.to_string()).to_string());
    }
    scalar_with(text, &[':', '@'])
}

fn scalar_with<'t>(text: &'t str, also_plain: &[char]) -> std::borrow::Cow<'t, str> {
    // Plain text YAML would read as something else: a null, a boolean, a
    // number (`127.0.0.1` is none of these; YAML 1.1 reads `1_000` and
    // `0b101` as integers).
    let special = matches!(
        text.to_ascii_lowercase().as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | ".nan" | ".inf"
    ) || text.parse::<f64>().is_ok()
        || text.starts_with("0x")
        || text.starts_with("0o")
        || text.starts_with("0b")
        || text.starts_with('-')
        || (text.starts_with(|c: char| c.is_ascii_digit())
            && text.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let plain = !text.is_empty()
        && !special
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/')
                || also_plain.contains(&c)
        });
    if plain {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(Value::String(text.to_string()).to_string())
    }
}

/// An upstream cluster, as an item of `clusters`, at `indent`.
fn cluster(text: &mut Text, indent: usize, name: &str, endpoints: Endpoints<'_>, grpc: bool) {
    let name = scalar(name);
    text.line(indent, &format!("- name: {name}"));
    let i = indent + 2;
    match endpoints {
        Endpoints::Static(_) => text.line(i, "type: STATIC"),
        Endpoints::Dns(..) => {
            text.line(i, "type: STRICT_DNS");
            text.line(i, "dns_lookup_family: V4_PREFERRED");
            if grpc {
                text.line(i, "dns_refresh_rate: 5s");
            }
        }
    }
    if grpc {
        text.line(i, "lb_policy: ROUND_ROBIN");
    }
    text.line(i, "connect_timeout: 1s");
    if grpc {
        text.line(i, "typed_extension_protocol_options:");
        text.line(
            i + 2,
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions:",
        );
        text.line(
            i + 4,
            "\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        );
        text.line(
            i + 4,
            "explicit_http_config: { http2_protocol_options: {} }",
        );
    }
    text.line(i, "load_assignment:");
    text.line(i + 2, &format!("cluster_name: {name}"));
    text.line(i + 2, "endpoints:");
    text.line(i + 2, "- lb_endpoints:");
    let addresses: Vec<(&str, u16)> = match endpoints {
        Endpoints::Static(addresses) => addresses.to_vec(),
        Endpoints::Dns(host, port) => vec![(host, port)],
    };
    for (host, port) in addresses {
        let host = scalar(host);
        text.line(
            i + 4,
            &format!(
                "- endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}"
            ),
        );
    }
}

/// The MCP listener, as an item of `listeners` (or of an LDS file's
/// `resources`), at `indent`.
fn mcp_listener(text: &mut Text, indent: usize, envoy: &Envoy<'_>, lds: bool) {
    let (address, port) = envoy.listen;
    let address = scalar(address);
    if lds {
        text.line(
            indent,
            "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener",
        );
        text.line(indent + 2, "name: mcp");
    } else {
        text.line(indent, "- name: mcp");
    }
    let i = indent + 2;
    text.line(
        i,
        &format!("address: {{ socket_address: {{ address: {address}, port_value: {port} }} }}"),
    );
    text.comment(
        i,
        "Envoy's own buffer limit must stay above the policy's max_body_bytes\n\
         (default 1 MiB), or Envoy answers 413 before the filter can.",
    );
    text.line(
        i,
        &format!(
            "per_connection_buffer_limit_bytes: {}",
            envoy.matches.buffer_limit
        ),
    );
    text.line(i, "filter_chains:");
    text.line(i, "- filters:");
    text.line(
        i + 2,
        "- name: envoy.filters.network.http_connection_manager",
    );
    text.line(i + 4, "typed_config:");
    let h = i + 6;
    text.line(h, &format!("\"@type\": {HCM_TYPE}"));
    text.line(h, "stat_prefix: mcp");
    text.line(h, "codec_type: AUTO");
    if envoy.edge {
        text.comment(
            h,
            "At the edge: X-Forwarded-For is set from the connection, not trusted.",
        );
        text.line(h, "use_remote_address: true");
    }
    access_logs(text, h, envoy.logs);
    text.line(h, "route_config:");
    text.line(h + 2, "virtual_hosts:");
    text.line(h + 2, "- name: mcp");
    text.line(h + 4, "domains: [\"*\"]");
    text.line(h + 4, "routes:");
    text.line(h + 4, "- match: { prefix: \"/\" }");
    text.comment(h + 6, "No route timeout: MCP's event streams stay open.");
    text.line(h + 6, "route: { cluster: mcp_server, timeout: 0s }");
    text.line(h, "http_filters:");
    if let Some(jwt) = envoy.jwt {
        jwt_filter(text, h, jwt, &envoy.matches.jwt_metadata);
    }
    wasm_filter(text, h, envoy.filter);
    text.line(h, "- name: envoy.filters.http.router");
    text.line(h + 2, "typed_config:");
    text.line(h + 4, &format!("\"@type\": {ROUTER_TYPE}"));
}

fn jwt_filter(text: &mut Text, indent: usize, jwt: Jwt<'_>, metadata: &str) {
    text.comment(
        indent,
        "First: verify the JWT. mcp-policy only reads what this filter stored.",
    );
    text.line(indent, "- name: envoy.filters.http.jwt_authn");
    let i = indent + 2;
    text.line(i, "typed_config:");
    text.line(
        i + 2,
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    );
    text.line(i + 2, "providers:");
    text.line(i + 4, "idp:");
    let p = i + 6;
    text.line(
        p,
        &format!(
            "issuer: {}            # CHANGE: the tokens' `iss`",
            uri_scalar(jwt.issuer)
        ),
    );
    text.line(
        p,
        &format!(
            "audiences: [{}]                     # CHANGE: the tokens' `aud`",
            scalar(jwt.audience)
        ),
    );
    text.line(p, "remote_jwks:");
    text.line(p + 2, "http_uri:");
    text.line(
        p + 4,
        &format!("uri: {}   # CHANGE", uri_scalar(jwt.jwks_uri)),
    );
    text.line(p + 4, "cluster: idp_jwks");
    text.line(p + 4, "timeout: 5s");
    text.line(p + 2, "cache_duration: 600s");
    text.comment(
        p + 2,
        "Fetch the keys at startup and refresh them in the\nbackground, not on a client's first request.",
    );
    text.line(p + 2, "async_fetch: {}");
    text.comment(
        p,
        "The verified payload goes to dynamic metadata under this key;\nthe policy's identity.jwt_claim.provider_metadata names it.",
    );
    text.line(p, &format!("payload_in_metadata: {}", scalar(metadata)));
    text.comment(
        p,
        "forward is false by default: the token is removed before the\nrequest goes upstream (the MCP server never sees it).",
    );
    text.line(i + 2, "rules:");
    text.comment(
        i + 2,
        "Every request needs a valid token. For a path where a missing\n\
         token is let through (the grant is then `anonymous`), use\n\
         requires: { requires_any: { requirements: [ { provider_name: idp }, { allow_missing: {} } ] } }",
    );
    text.line(i + 2, "- match: { prefix: \"/\" }");
    text.line(i + 4, "requires: { provider_name: idp }");
}

/// The listener that serves the admin's `/stats/prometheus` to a scraper.
fn metrics_listener(text: &mut Text, indent: usize, port: u16, admin_port: u16) {
    text.comment(
        indent,
        &format!(
            "Prometheus scrapes this port (the Pod's prometheus.io annotations): the\n\
             admin interface's /stats/prometheus only; the admin itself (:{admin_port})\n\
             stays on loopback."
        ),
    );
    text.line(indent, "- name: metrics");
    let i = indent + 2;
    text.line(
        i,
        &format!("address: {{ socket_address: {{ address: 0.0.0.0, port_value: {port} }} }}"),
    );
    text.line(i, "filter_chains:");
    text.line(i, "- filters:");
    text.line(
        i + 2,
        "- name: envoy.filters.network.http_connection_manager",
    );
    text.line(i + 4, "typed_config:");
    let h = i + 6;
    text.line(h, &format!("\"@type\": {HCM_TYPE}"));
    text.line(h, "stat_prefix: metrics");
    text.line(h, "route_config:");
    text.line(h + 2, "virtual_hosts:");
    text.line(h + 2, "- name: metrics");
    text.line(h + 4, "domains: [\"*\"]");
    text.line(h + 4, "routes:");
    text.line(h + 4, "- match: { path: /stats/prometheus }");
    text.line(h + 6, "route: { cluster: envoy_admin }");
    text.line(h, "http_filters:");
    text.line(h, "- name: envoy.filters.http.router");
    text.line(h + 2, "typed_config:");
    text.line(h + 4, &format!("\"@type\": {ROUTER_TYPE}"));
}

fn admin(text: &mut Text, envoy: &Envoy<'_>) {
    let (address, port) = envoy.admin;
    let address = scalar(address);
    text.line(0, "admin:");
    if let Some(comment) = envoy.admin_comment {
        text.comment(2, comment);
    }
    text.line(
        2,
        &format!("address: {{ socket_address: {{ address: {address}, port_value: {port} }} }}"),
    );
}

fn clusters(text: &mut Text, indent: usize, envoy: &Envoy<'_>) {
    text.line(indent, "clusters:");
    if let Some(comment) = envoy.upstream_comment {
        text.comment(indent, comment);
    }
    cluster(text, indent, "mcp_server", envoy.upstream, false);
    if let Some(rate_limit) = envoy.rate_limit {
        text.comment(
            indent,
            "The rate-limit service (the policy's rate_limit_service.cluster): gRPC,\n\
             so HTTP/2; each check to one of its endpoints, round robin. They count\n\
             in the same Redis.",
        );
        cluster(
            text,
            indent,
            &envoy.matches.rate_limit_cluster,
            rate_limit,
            true,
        );
    }
    if let Some(approval) = envoy.approval {
        text.comment(
            indent,
            "The approval service's filter port (approval-service/; the policy's\n\
             approval_service.cluster), asked about calls the policy holds for a\n\
             person's approval: HTTP/1.1 JSON, POST /v1/check.",
        );
        cluster(
            text,
            indent,
            &envoy.matches.approval_cluster,
            approval,
            false,
        );
    }
    if let Some(jwt) = envoy.jwt {
        text.comment(
            indent,
            "Where jwt_authn fetches the JWKS from: the identity provider, over TLS.",
        );
        text.line(indent, "- name: idp_jwks");
        let i = indent + 2;
        text.line(i, "type: STRICT_DNS");
        text.line(i, "connect_timeout: 5s");
        text.line(i, "dns_lookup_family: V4_PREFERRED");
        text.line(i, "load_assignment:");
        text.line(i + 2, "cluster_name: idp_jwks");
        text.line(i + 2, "endpoints:");
        text.line(i + 2, "- lb_endpoints:");
        text.line(
            i + 4,
            &format!(
                "- endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: 443 }} }} }}   # CHANGE",
                scalar(jwt.jwks_host)
            ),
        );
        text.line(i, "transport_socket:");
        text.line(i + 2, "name: envoy.transport_sockets.tls");
        text.line(i + 2, "typed_config:");
        text.line(
            i + 4,
            "\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        );
        text.line(i + 4, &format!("sni: {}   # CHANGE", scalar(jwt.jwks_host)));
    }
    if envoy.metrics_port.is_some() {
        text.comment(indent, "The admin interface, for the metrics listener.");
        let admin = [("127.0.0.1", envoy.admin.1)];
        cluster(
            text,
            indent,
            "envoy_admin",
            Endpoints::Static(&admin),
            false,
        );
    }
}

/// A whole Envoy bootstrap: admin, stats tags, the MCP listener (and the
/// metrics one), the clusters.
pub fn bootstrap(envoy: &Envoy<'_>) -> String {
    let mut text = Text::default();
    text.header(&envoy.header);
    admin(&mut text, envoy);
    text.line(0, "");
    text.lines(0, &stats_config());
    text.line(0, "");
    text.line(0, "static_resources:");
    text.line(2, "listeners:");
    mcp_listener(&mut text, 2, envoy, false);
    if let Some(port) = envoy.metrics_port {
        metrics_listener(&mut text, 2, port, envoy.admin.1);
    }
    text.line(0, "");
    clusters(&mut text, 2, envoy);
    text.0
}

/// The hot-reload bootstrap: Envoy reads the listener (with the policy) from
/// `listener.yaml` in `dir` through LDS and watches the directory.
pub fn hot_reload_bootstrap(envoy: &Envoy<'_>, dir: &str) -> String {
    let mut text = Text::default();
    text.header(&envoy.header);
    text.line(0, "node: { id: mcp-policy, cluster: mcp-policy }");
    text.line(0, "");
    admin(&mut text, envoy);
    text.line(0, "");
    text.lines(0, &stats_config());
    text.line(0, "");
    text.comment(
        0,
        "The listener comes from listener.yaml. Envoy watches the directory and\n\
         reloads when a file is moved (renamed) into it, not when one is written\n\
         in place: `mcp-policy apply` writes the new file beside it and renames it.",
    );
    text.line(0, "dynamic_resources:");
    text.line(2, "lds_config:");
    text.line(4, "resource_api_version: V3");
    text.line(4, "path_config_source:");
    let listener = format!("{dir}/listener.yaml");
    text.line(6, &format!("path: {}", scalar(&listener)));
    text.line(
        6,
        &format!("watched_directory: {{ path: {} }}", scalar(dir)),
    );
    text.line(0, "");
    text.line(0, "static_resources:");
    clusters(&mut text, 2, envoy);
    text.0
}

/// The LDS file of the hot-reload setup: the MCP listener with the policy.
pub fn lds_listener(envoy: &Envoy<'_>) -> String {
    let mut text = Text::default();
    text.header(&envoy.header);
    text.line(0, "resources:");
    mcp_listener(&mut text, 0, envoy, true);
    text.0
}

/// The ECDS resource's `typed_config` of the Istio EnvoyFilter, at `indent`.
pub fn istio_typed_config(indent: usize, image: &str, policy: &str) -> String {
    let mut text = Text::default();
    wasm_typed_config(
        &mut text,
        indent,
        Filter {
            module: Module::Oci(image),
            policy: PolicyText::Inline(policy),
            module_comment: None,
        },
    );
    text.0
}

/// Istio's name for the sidecar's outbound cluster to deploy/approval's
/// filter Service (`outbound|<port>||<host>`): a sidecar has no cluster of
/// ours, so the policy names that one.
pub const ISTIO_APPROVAL_CLUSTER: &str =
    "outbound|8091||approval-service-filter.mcp-approval.svc.cluster.local";

/// The policy as Istio's sidecars run it: its approval service is reached
/// through Istio's outbound cluster instead of `mcp_approval`.
pub fn istio_policy(policy: &str) -> String {
    let istio = format!(r#""cluster": "{ISTIO_APPROVAL_CLUSTER}""#);
    policy
        .replace(r#""cluster": "mcp_approval""#, &istio)
        .replace(r#""cluster":"mcp_approval""#, &istio)
}

/// The Wasm HTTP filter as JSON (`{"name": "mcp-policy", "typed_config": ...}`),
/// for configurations built as data (bench/run.py).
pub fn filter_json(module: &str, policy: &str) -> Value {
    json!({
        "name": "mcp-policy",
        "typed_config": {
            "@type": WASM_FILTER_TYPE,
            "config": {
                "name": "mcp-policy",
                "root_id": "mcp-policy",
                "allow_on_headers_stop_iteration": true,
                "vm_config": {
                    "vm_id": "mcp-policy",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module } }
                },
                "configuration": { "@type": STRING_VALUE_TYPE, "value": policy }
            }
        }
    })
}

/// The `stats_config` as JSON, for configurations built as data.
pub fn stats_config_json() -> Value {
    let tags: Vec<Value> = metrics::stats_tags()
        .into_iter()
        .map(|(tag, regex)| json!({ "tag_name": tag, "regex": regex }))
        .collect();
    json!({ "stats_tags": tags })
}

/// The configurations the repository ships, by name (`mcp-policy render NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// envoy/envoy.yaml: loopback, the demo server on :8081 (`make run`).
    Envoy,
    /// envoy/envoy-jwt.yaml: the grant is a claim of a JWT Envoy verified.
    Jwt,
    /// envoy/fleet/replica.yaml: one replica of a fleet with global limits.
    FleetReplica,
    /// envoy/hot-reload/bootstrap.yaml: the listener comes from a file.
    HotReloadBootstrap,
    /// envoy/hot-reload/listener.yaml: that file, with the policy.
    HotReloadListener,
    /// deploy/compose/envoy.yaml: the template docker compose renders.
    Compose,
    /// The Envoy template of deploy/sidecar/mcp-server.yaml.
    KubernetesSidecar,
    /// The Envoy template of deploy/ingress/mcp-gateway.yaml.
    KubernetesIngress,
    /// The Envoy template of deploy/fleet/mcp-fleet.yaml.
    KubernetesFleet,
    /// The Wasm filter's typed_config in deploy/istio/mcp-policy.yaml.
    Istio,
    /// The bootstrap patch of deploy/envoy-gateway/ (the stats tags).
    StatsTags,
    /// The Wasm HTTP filter as JSON, for configurations built as data.
    FilterJson,
}

impl Layout {
    /// The layout's name on the command line (`hot-reload-listener`).
    pub fn name(self) -> String {
        use clap::ValueEnum as _;
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |value| value.get_name().to_string())
    }
}

/// What a layout cannot carry of `policy`: a service's cluster the layout
/// does not define (every call needing it would fail), an identity the
/// layout cannot supply. Templates (the policy comes at deploy time) and
/// the filter alone (its clusters are the caller's) are not checked.
pub fn mismatches(layout: Layout, policy: &crate::policy::Policy) -> Vec<String> {
    use crate::policy::Identity;
    let (rate_limit, approval, jwt) = match layout {
        Layout::Envoy | Layout::HotReloadListener | Layout::HotReloadBootstrap => {
            (false, true, false)
        }
        Layout::Jwt => (false, false, true),
        Layout::FleetReplica => (true, false, false),
        Layout::Istio => (false, true, false),
        Layout::Compose
        | Layout::KubernetesSidecar
        | Layout::KubernetesIngress
        | Layout::KubernetesFleet
        | Layout::StatsTags
        | Layout::FilterJson => return Vec::new(),
    };
    let layout_name = layout.name();
    let mut found = Vec::new();
    if let Some(service) = &policy.rate_limit_service {
        if !rate_limit {
            found.push(format!(
                "rate_limit_service.cluster {:?}: the {layout_name} layout has no rate-limit service cluster, so every call with a global limit would fail (use fleet-replica, or add the cluster)",
                service.cluster
            ));
        }
    }
    if let Some(service) = &policy.approval_service {
        let fixed_bootstrap = matches!(
            layout,
            Layout::HotReloadListener | Layout::HotReloadBootstrap
        );
        if approval && fixed_bootstrap && service.cluster != APPROVAL_CLUSTER {
            found.push(format!(
                "approval_service.cluster {:?}: the hot-reload bootstrap defines the approval service's cluster as {APPROVAL_CLUSTER:?} (name it so, or edit bootstrap.yaml)",
                service.cluster
            ));
        }
        if !approval {
            found.push(format!(
                "approval_service.cluster {:?}: the {layout_name} layout has no approval service cluster, so every call that needs approval would fail (use envoy or hot-reload-listener, or add the cluster)",
                service.cluster
            ));
        } else if layout == Layout::Istio && service.cluster != APPROVAL_CLUSTER {
            found.push(format!(
                "approval_service.cluster {:?}: Istio's sidecars reach the approval service through {ISTIO_APPROVAL_CLUSTER:?}, which replaces {APPROVAL_CLUSTER:?} only",
                service.cluster
            ));
        }
    }
    match (&policy.identity, jwt) {
        (Identity::JwtClaim { .. }, false) => found.push(format!(
            "identity.jwt_claim: the {layout_name} layout verifies no JWT (no jwt_authn filter), so no caller would have the claim (use the jwt layout)"
        )),
        (Identity::JwtClaim { .. }, true) => {}
        (_, true) => found.push(
            "identity: the jwt layout verifies a JWT, but the policy reads the grant elsewhere (use identity.jwt_claim with provider_metadata \"jwt_payload\")".to_string(),
        ),
        (Identity::Header(header), false) => found.push(format!(
            "identity.header {header:?}: the grant is the header as the client sent it, and nothing in the {layout_name} layout sets or removes it, so any client can name any grant (and start afresh under per-grant limits); put a filter that replaces it in front (ext_authz, jwt_authn's claim_to_headers), or use identity.bearer_tokens or identity.jwt_claim"
        )),
        _ => {}
    }
    found
}

/// What a rendering may change from a layout's defaults.
#[derive(Debug, Clone, Default)]
pub struct Overrides<'a> {
    pub module: Option<&'a str>,
    pub listen: Option<(&'a str, u16)>,
    pub admin: Option<(&'a str, u16)>,
    pub upstream: Option<(&'a str, u16)>,
}

/// The fleet replica's two rate-limit service processes (`make run-fleet`).
const FLEET_SERVICES: [(&str, u16); 2] = [("127.0.0.1", 8089), ("127.0.0.1", 8090)];
/// The approval service `make run` starts (scripts/start-approval-service.sh).
const LOCAL_APPROVAL: [(&str, u16); 1] = [("127.0.0.1", 8091)];
/// The approval service's filter Service of deploy/approval/.
const CLUSTER_APPROVAL: Endpoints<'static> = Endpoints::Dns(
    "approval-service-filter.mcp-approval.svc.cluster.local",
    8091,
);
/// The hot-reload setup's directory, relative to the repository root.
pub const HOT_RELOAD_DIR: &str = "envoy/hot-reload";
/// The Kubernetes Envoys' metrics port (prometheus.io/port).
pub const METRICS_PORT: u16 = 9902;
/// Where the Kubernetes Envoys find the module (the image volume).
pub const POD_MODULE: &str = "/wasm/plugin.wasm";

const RUN_FROM_ROOT: &str =
    "Run from the repository root (`make run` does): the module path is relative.";
const RENDERED: &str = "Rendered by `mcp-policy render` (src/cli/render.rs): edit that, not this file\n(tests/render.rs checks the two agree).";

/// The configuration of `layout` for `policy` (ignored by layouts that
/// hold a template or no policy).
pub fn render(layout: Layout, policy: &str, overrides: &Overrides<'_>) -> String {
    let inline = PolicyText::Inline(policy);
    let mut envoy = Envoy::standalone(inline);
    if let Ok(compiled) = crate::policy::Policy::from_json(policy.as_bytes()) {
        envoy.matches = PolicyMatches::of(&compiled);
    }
    match layout {
        Layout::Envoy => {
            envoy.header = vec![
                "mcp-policy in front of an MCP server: the standalone configuration.",
                "",
                "  clients ──► :10000 (this listener, mcp-policy filter) ──► 127.0.0.1:8081 (the MCP server)",
                "                        │ calls the policy holds for approval",
                "                        └──► 127.0.0.1:8091 (the approval service; its page on :8090)",
                "  admin, stats (/stats/prometheus) ──► 127.0.0.1:9901",
                "",
                RUN_FROM_ROOT,
                "The policy is policy.json (`make run` renders this file from it again).",
                RENDERED,
            ];
            envoy.approval = Some(Endpoints::Static(&LOCAL_APPROVAL));
        }
        Layout::Jwt => {
            envoy.header = vec![
                "mcp-policy behind Envoy's JWT authentication: the grant is a claim of a",
                "JWT that Envoy has verified.",
                "",
                "  clients (Authorization: Bearer <JWT>) ──► :10000",
                "      jwt_authn: verifies the JWT (401 if missing or invalid), stores its payload",
                "      mcp-policy: grant = the token's `sub`",
                "  ──► 127.0.0.1:8081 (the MCP server)",
                "  admin, stats (/stats/prometheus) ──► 127.0.0.1:9901",
                "",
                "Run from the repository root: the module path is relative.",
                "To use it, change the lines marked CHANGE: your identity provider's issuer,",
                "audience and JWKS address. Without network access to a JWKS, use",
                "`local_jwks: { filename: /path/to/jwks.json }` in place of `remote_jwks`",
                "(and drop the idp_jwks cluster). The policy is examples/policies/jwt.json.",
                RENDERED,
            ];
            envoy.jwt = Some(Jwt {
                issuer: "https://idp.example.com/",
                audience: "mcp-gateway",
                jwks_uri: "https://idp.example.com/.well-known/jwks.json",
                jwks_host: "idp.example.com",
            });
        }
        Layout::FleetReplica => {
            envoy.header = vec![
                "mcp-policy as one replica of a fleet: the same filter in every Envoy, with",
                "global limits counted by a rate-limit service that keeps its counters in Redis.",
                "",
                "  agent ──► replica 1 :10000 ─┐                                           ┌─► MCP server 127.0.0.1:8081",
                "  agent ──► replica 2 :10001 ─┼─ ShouldRateLimit (gRPC) ─► 127.0.0.1:8089 ─┤",
                "                              │  round robin             ─► 127.0.0.1:8090 ─┴─► Redis :6379",
                "                              └─ (one call per tools/call with a global limit)",
                "",
                "This file is replica 1 (listener :10000, admin :9901). `make run-fleet`",
                "starts Redis, two processes of ratelimit-service, the demo server and two",
                "replicas from this file (replica 2 with ports 10001 and 9902). In",
                "production each replica is this file as is, behind a load balancer; the",
                "ratelimit cluster points at the service's processes (deploy/fleet/ resolves",
                "a headless Service). The policy is examples/policies/fleet.json.",
                RENDERED,
            ];
            envoy.rate_limit = Some(Endpoints::Static(&FLEET_SERVICES));
        }
        Layout::HotReloadBootstrap | Layout::HotReloadListener => {
            envoy.approval = Some(Endpoints::Static(&LOCAL_APPROVAL));
            envoy.header = if layout == Layout::HotReloadBootstrap {
                vec![
                    "mcp-policy with its policy reloaded from a file: Envoy reads the listener",
                    "(and the policy in it) from listener.yaml through LDS and watches the",
                    "directory. Run from the repository root:",
                    "",
                    "  envoy -c envoy/hot-reload/bootstrap.yaml",
                    "",
                    "Apply a new policy without a restart (checks it, renders listener.yaml,",
                    "writes it beside the old one and renames it over it):",
                    "",
                    "  mcp-policy apply policy.json envoy/hot-reload/listener.yaml",
                    "",
                    "The live revision: mcp_policy_info{revision=...} 1 at /stats/prometheus.",
                    RENDERED,
                ]
            } else {
                vec![
                    "The listener, with the policy, served to Envoy by LDS from this file (see",
                    "bootstrap.yaml). Apply a new policy with",
                    "",
                    "  mcp-policy apply policy.json envoy/hot-reload/listener.yaml",
                    "",
                    "which checks the policy, renders this file and moves it into place by a",
                    "rename within this directory: Envoy reloads on a file moved into the",
                    "directory, and a `mv` from another filesystem (/tmp on tmpfs, say) is a",
                    "copy that it never notices. New requests get the new policy; an invalid",
                    "one is refused (Envoy logs \"mcp-policy: invalid policy: ...\" and counts",
                    "listener_manager.lds.update_rejected) and the old one keeps serving. Rate",
                    "limit counters survive: they live in shared data under the same vm_id.",
                    RENDERED,
                ]
            };
        }
        Layout::Compose => {
            envoy.header = vec![
                "Envoy for docker-compose.yaml: the demo MCP server is the compose service",
                "`mcp-server`. A template: at start, deploy/render-envoy-config.sh puts",
                "./policy.json where @POLICY_JSON@ stands (Envoy cannot read the policy from a",
                "file itself).",
                "",
                "  clients ──► 0.0.0.0:10000 (published on the host's 127.0.0.1:10000) ──► mcp-server:8081",
                "  admin, stats (/stats/prometheus) ──► 0.0.0.0:9901 (published on the host's 127.0.0.1:9901)",
                RENDERED,
            ];
            envoy.admin = ("0.0.0.0", 9901);
            envoy.listen = ("0.0.0.0", 10000);
            envoy.filter.policy = PolicyText::Placeholder;
            envoy.filter.module = Module::Local("/etc/envoy/mcp_policy.wasm");
            envoy.upstream = Endpoints::Dns("mcp-server", 8081);
            envoy.approval = Some(Endpoints::Dns("approval", 8091));
        }
        Layout::KubernetesSidecar | Layout::KubernetesIngress | Layout::KubernetesFleet => {
            envoy.header = vec![];
            envoy.listen = ("0.0.0.0", 10000);
            envoy.filter.policy = PolicyText::Placeholder;
            envoy.filter.module = Module::Local(POD_MODULE);
            envoy.filter.module_comment =
                Some("The image volume `mcp-policy-wasm`, mounted at /wasm.");
            envoy.metrics_port = Some(METRICS_PORT);
            match layout {
                Layout::KubernetesSidecar => {
                    envoy.admin_comment = Some("Loopback only: reach it with `kubectl -n mcp-sidecar port-forward deploy/mcp-server 9901`.");
                    envoy.upstream_comment =
                        Some("The MCP server in the same Pod (CHANGE the port to your server's).");
                    envoy.approval = Some(CLUSTER_APPROVAL);
                }
                Layout::KubernetesIngress => {
                    envoy.admin_comment = Some("Loopback only: reach it with `kubectl -n mcp-ingress port-forward deploy/mcp-gateway 9901`.");
                    envoy.edge = true;
                    envoy.upstream =
                        Endpoints::Dns("mcp-server.mcp-ingress.svc.cluster.local", 8081);
                    envoy.approval = Some(CLUSTER_APPROVAL);
                }
                _ => {
                    envoy.admin_comment = Some("Loopback only: reach it with `kubectl -n mcp-fleet port-forward deploy/mcp-gateway 9901`.");
                    envoy.edge = true;
                    envoy.upstream = Endpoints::Dns("mcp-server.mcp-fleet.svc.cluster.local", 8081);
                    envoy.rate_limit = Some(Endpoints::Dns(
                        "mcp-ratelimit.mcp-fleet.svc.cluster.local",
                        8089,
                    ));
                }
            }
        }
        Layout::Istio => {
            return istio_typed_config(
                0,
                overrides
                    .module
                    .unwrap_or("registry.example.com/mcp-policy:0.1.0"),
                &istio_policy(policy),
            );
        }
        Layout::StatsTags => return stats_config(),
        Layout::FilterJson => {
            let module = overrides
                .module
                .unwrap_or("target/wasm32-wasip1/release/mcp_policy.wasm");
            return format!("{:#}\n", filter_json(module, policy));
        }
    }
    if let Some(module) = overrides.module {
        envoy.filter.module = Module::Local(module);
    }
    if let Some(listen) = overrides.listen {
        envoy.listen = listen;
    }
    if let Some(admin) = overrides.admin {
        envoy.admin = admin;
    }
    let upstream;
    if let Some((host, port)) = overrides.upstream {
        // An address is one endpoint; a name is every address it resolves to.
        if host.parse::<std::net::IpAddr>().is_ok() {
            upstream = [(host, port)];
            envoy.upstream = Endpoints::Static(&upstream);
        } else {
            envoy.upstream = Endpoints::Dns(host, port);
        }
    }
    match layout {
        Layout::HotReloadBootstrap => hot_reload_bootstrap(&envoy, HOT_RELOAD_DIR),
        Layout::HotReloadListener => lds_listener(&envoy),
        _ => bootstrap(&envoy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Value {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn the_standalone_bootstrap_is_yaml_with_the_filter_settings() {
        let policy = "{\n  \"version\": \"1\",\n  \"default\": \"deny\"\n}\n";
        let config = parse(&bootstrap(&Envoy::standalone(PolicyText::Inline(policy))));
        let listener = &config["static_resources"]["listeners"][0];
        assert_eq!(listener["per_connection_buffer_limit_bytes"], BUFFER_LIMIT);
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        let wasm = &hcm["http_filters"][0]["typed_config"];
        assert_eq!(
            wasm,
            &filter_json("target/wasm32-wasip1/release/mcp_policy.wasm", policy)["typed_config"]
        );
        assert_eq!(hcm["access_log"].as_array().unwrap().len(), 2);
        assert_eq!(
            hcm["access_log"][1]["typed_config"]["log_format"]["text_format_source"]
                ["inline_string"],
            AUDIT_LINE
        );
        assert_eq!(config["stats_config"], stats_config_json());
    }

    /// What the policy names, the configuration names the same way.
    #[test]
    fn the_configuration_follows_the_policy_it_carries() {
        let none = Overrides::default();
        let policy = r#"{"version":"1","default":"deny","max_body_bytes":10485760,
            "rate_limit_service":{"cluster":"rls|fleet"},
            "approval_service":{"cluster":"approvals"},
            "identity":{"jwt_claim":{"provider_metadata":"my_payload","claim":"sub"}},
            "tools":{"t":{"action":"approve","limits":[{"counter":"c","window":"minute","max":1,"scope":"grant","store":"global"}]}}}"#;
        let fleet = parse(&render(Layout::FleetReplica, policy, &none));
        let listener = &fleet["static_resources"]["listeners"][0];
        assert_eq!(listener["per_connection_buffer_limit_bytes"], 20_971_520);
        let clusters: Vec<&str> = fleet["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cluster| cluster["name"].as_str().unwrap())
            .collect();
        assert!(clusters.contains(&"rls|fleet"), "{clusters:?}");
        let envoy = parse(&render(Layout::Envoy, policy, &none));
        let clusters = envoy["static_resources"]["clusters"].to_string();
        assert!(clusters.contains("\"approvals\""), "{clusters}");
        let jwt = render(Layout::Jwt, policy, &none);
        assert!(jwt.contains("payload_in_metadata: my_payload"), "{jwt}");
        // What a layout cannot carry is said.
        let compiled = crate::policy::Policy::from_json(policy.as_bytes()).unwrap();
        let said = mismatches(Layout::Envoy, &compiled).join("\n");
        assert!(
            said.contains("rate_limit_service.cluster \"rls|fleet\""),
            "{said}"
        );
        assert!(said.contains("identity.jwt_claim"), "{said}");
        let said = mismatches(Layout::Jwt, &compiled).join("\n");
        assert!(said.contains("approval_service.cluster"), "{said}");
        let plain = crate::policy::Policy::from_json(
            br#"{"version":"1","default":"deny","approval_service":{"cluster":"mcp_approval"},"tools":{"t":{"action":"approve"}}}"#,
        )
        .unwrap();
        assert!(mismatches(Layout::Envoy, &plain).is_empty());
        // The hot-reload bootstrap is rendered apart, with its own name.
        let renamed = crate::policy::Policy::from_json(
            br#"{"version":"1","default":"deny","approval_service":{"cluster":"approvals"},"tools":{"t":{"action":"approve"}}}"#,
        )
        .unwrap();
        assert!(mismatches(Layout::Envoy, &renamed).is_empty());
        assert_eq!(mismatches(Layout::HotReloadListener, &renamed).len(), 1);
        // Names YAML would read as something else are quoted.
        for (name, written) in [
            ("null", "\"null\""),
            ("1e3", "\"1e3\""),
            ("a #b", "\"a #b\""),
            ("127.0.0.1", "127.0.0.1"),
            ("mcp_approval", "mcp_approval"),
        ] {
            assert_eq!(scalar(name), written);
        }
        assert_eq!(mismatches(Layout::Jwt, &plain).len(), 2);
        // A header the client sends names the grant: said for every layout
        // that puts nothing in front of the filter.
        let header = crate::policy::Policy::from_json(
            br#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"}}"#,
        )
        .unwrap();
        for layout in [
            Layout::Envoy,
            Layout::HotReloadListener,
            Layout::FleetReplica,
            Layout::Istio,
        ] {
            let said = mismatches(layout, &header).join("\n");
            assert!(said.contains("any client can name any grant"), "{said}");
        }
    }

    #[test]
    fn upstreams_by_name_are_resolved_and_addresses_are_quoted_where_yaml_needs_it() {
        let policy = r#"{"version":"1","default":"deny"}"#;
        let by_name = Overrides {
            upstream: Some(("mcp-server.internal", 8080)),
            ..Overrides::default()
        };
        let config = parse(&render(Layout::Envoy, policy, &by_name));
        let upstream = &config["static_resources"]["clusters"][0];
        assert_eq!(upstream["type"], "STRICT_DNS");
        let v6 = Overrides {
            upstream: Some(("::1", 8080)),
            listen: Some(("::", 10000)),
            ..Overrides::default()
        };
        let config = parse(&render(Layout::Envoy, policy, &v6));
        let upstream = &config["static_resources"]["clusters"][0];
        assert_eq!(upstream["type"], "STATIC");
        assert_eq!(
            upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["address"],
            "::1"
        );
        assert_eq!(
            config["static_resources"]["listeners"][0]["address"]["socket_address"]["address"],
            "::"
        );
        // An image given with its scheme is not given it twice.
        let istio = render(
            Layout::Istio,
            policy,
            &Overrides {
                module: Some("oci://registry.example.com/mcp:1"),
                ..Overrides::default()
            },
        );
        assert!(
            istio.contains("uri: oci://registry.example.com/mcp:1 "),
            "{istio}"
        );
        // A compact policy's approval cluster is Istio's too.
        let compact = istio_policy(r#"{"approval_service":{"cluster":"mcp_approval"}}"#);
        assert!(compact.contains(ISTIO_APPROVAL_CLUSTER), "{compact}");
    }

    /// Every value a caller gives is written so YAML reads it back exactly:
    /// a module path with `,`, ` #`, `: ` or `}` neither ends the flow
    /// mapping it is in nor starts a comment.
    #[test]
    fn module_paths_and_images_are_read_back_exactly() {
        let policy = r#"{"version":"1","default":"deny"}"#;
        let wasm_config = |listener: &Value| {
            listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
                ["typed_config"]["config"]
                .clone()
        };
        for module in [
            "/a,b/x.wasm",
            "/a #b/x.wasm",
            "/a: b/x.wasm",
            "/a}b/x.wasm",
            "/a]b/x.wasm",
            "/a b/x.wasm",
            "C:\\wasm\\x.wasm",
            "'x'.wasm",
            "\"x\".wasm",
            "-x.wasm",
            "1_000",
            "null",
            "x\ty.wasm",
        ] {
            let overrides = Overrides {
                module: Some(module),
                ..Overrides::default()
            };
            let config = parse(&render(Layout::Envoy, policy, &overrides));
            let listener = &config["static_resources"]["listeners"][0];
            assert_eq!(
                wasm_config(listener)["vm_config"]["code"]["local"]["filename"],
                module,
                "{module}"
            );
            let lds = parse(&render(Layout::HotReloadListener, policy, &overrides));
            assert_eq!(
                wasm_config(&lds["resources"][0])["vm_config"]["code"]["local"]["filename"],
                module,
                "{module}"
            );
            let istio = parse(&render(Layout::Istio, policy, &overrides));
            assert_eq!(
                istio["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"],
                format!("oci://{module}"),
                "{module}"
            );
        }
        // The shipped image and addresses stay plain.
        assert_eq!(
            uri_scalar("oci://registry.example.com/mcp-policy:0.1.0"),
            "oci://registry.example.com/mcp-policy:0.1.0"
        );
        assert_eq!(uri_scalar("oci://x:"), "\"oci://x:\"");
        assert_eq!(scalar("/wasm/plugin.wasm"), "/wasm/plugin.wasm");
    }

    #[test]
    fn a_policy_that_cannot_be_a_block_is_quoted() {
        for policy in ["  {\"version\":\"1\"}", "{\"a\":\"\t\"}", "x\r\ny"] {
            let config = parse(&bootstrap(&Envoy::standalone(PolicyText::Inline(policy))));
            let value = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]
                ["value"];
            assert_eq!(value, policy);
        }
    }
}
