//! The `mcp-policy` command (`src/bin/mcp-policy.rs`): checks, explains and
//! tries policy documents with the code the filter runs. Native only.

pub mod check;
pub mod eval;
pub mod explain;
pub mod files;
mod locate;
pub mod render;
pub mod schema;
pub mod server;
pub mod sources;
pub mod store;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::policy::{Action, Policy, ANONYMOUS_GRANT};
use crate::ratelimit::CallerScope;

/// Exit status: success (for `eval`, whatever the decision).
pub const EXIT_OK: u8 = 0;
/// Exit status: a policy is invalid, or a file could not be read or written.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command line is wrong (clap exits with it too).
pub const EXIT_USAGE: u8 = 2;

/// Check, explain and try mcp-policy policy documents, with the code the
/// Envoy filter runs.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-policy",
    version,
    after_help = "Exit status: 0 success (eval: whatever the decision), 1 invalid policy or \
                  unreadable file, 2 usage error.\nA file named - is read from standard input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Check(CheckArgs),
    Explain(ExplainArgs),
    Eval(EvalArgs),
    Schema(SchemaArgs),
    Render(RenderArgs),
    Apply(ApplyArgs),
}

/// Validate policy documents exactly as the filter loads them, and lint them.
///
/// Prints `FILE: OK (...)` on standard output for each valid document, then
/// its warnings, `FILE:LINE:COLUMN: warning: POINTER: MESSAGE`: what a valid
/// policy does that its author may not mean (a name in `hide` that looks
/// like a typo, a grant no identity can produce, a counter shared by limits
/// with different settings, limits or conditions that are never reached,
/// a `deny_if` regex that matches every string, contradictory conditions).
/// Warnings leave the exit status 0 unless --strict.
///
/// Errors go to standard error, `FILE:LINE:COLUMN: PATH: MESSAGE` (`FILE:
/// PATH: MESSAGE` when no position can be told), in source order. PATH is
/// the JSON path the filter names (`tools.x.limits[0].window`); columns
/// count bytes. Every error is reported at once, including those behind
/// another error of the same part or of the whole document.
///
/// A FILE may be a policy (JSON), or YAML that carries policies: an Envoy
/// bootstrap or LDS file (each Wasm filter whose configuration is a
/// policy), Kubernetes objects (a ConfigMap's *.json keys, an Istio
/// EnvoyFilter or WasmPlugin, an Envoy Gateway EnvoyExtensionPolicy). Each
/// policy found is checked and named FILE#ORIGIN (`#EnvoyFilter:ns/name:wasm:mcp-policy`);
/// lines and columns then count within the policy's text.
///
/// With --tools or --server, the policy is also compared with the tools the
/// server offers: names in `tools` and `hide` it does not offer, and (under
/// `default: allow`) its tools no rule names.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every document is valid (with --strict: and has no warnings), 1 otherwise, 2 usage error."
)]
pub struct CheckArgs {
    /// Policy documents (JSON), or YAML that carries them.
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
    /// Treat warnings as errors (exit status 1).
    #[arg(long)]
    pub strict: bool,
    /// A saved `tools/list` answer of the server the policy is for.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    pub tools: Option<PathBuf>,
    /// Ask this MCP server (Streamable HTTP, http://) for its tools. Ask the
    /// server itself, not through the gate (which may hide tools).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A request header for --server, `NAME: VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "server")]
    pub headers: Vec<String>,
}

/// Show what a policy does for a grant, tool by tool.
///
/// Prints the settings in force for the grant (identity, default, hide,
/// all_tools limits, list, mode, deny_as, failure_mode, body limits, grants),
/// then one row per tool the grant's view names: its effective action
/// (allow, deny or hidden), whether tools/list shows it, the rule that
/// decides, and the reason a refused caller reads; under it, its limits and
/// argument conditions with their JSON pointers. The last row is for every
/// tool the policy does not name.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 explained, 1 invalid policy or unreadable file, 2 usage error."
)]
pub struct ExplainArgs {
    /// The policy document (JSON).
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// Explain the policy as this grant sees it [default: callers without a
    /// grant entry of their own].
    #[arg(long, value_name = "NAME")]
    pub grant: Option<String>,
    /// Explain the policy as a caller of this role sees it (with --grant:
    /// the role a JWT's role claim names for that grant).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// Show which key decides this tool name (repeatable).
    #[arg(long = "tool", value_name = "NAME")]
    pub tools: Vec<String>,
    /// Show which key decides this prompt name (repeatable).
    #[arg(long = "prompt", value_name = "NAME")]
    pub prompts: Vec<String>,
    /// Show which key decides this resource URI, after normalisation (repeatable).
    #[arg(long = "resource", value_name = "URI")]
    pub resources: Vec<String>,
}

/// Decide one request body as the filter would.
///
/// Prints the decision, the rule that decided, the audit line and the exact
/// answer (HTTP status and JSON-RPC body), or that the request is forwarded
/// unchanged. Counters start empty and the clock is the machine's. The caller is named
/// by --grant: headers and bearer tokens are not read.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 decided (whatever the decision), 1 invalid policy or \
                        unreadable file, 2 usage error."
)]
pub struct EvalArgs {
    /// The policy document (JSON).
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// The request body: one JSON-RPC message, e.g. a tools/call.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The caller's grant (empty: anonymous, as the filter takes an empty
    /// identity header or claim).
    #[arg(long, value_name = "NAME", default_value = ANONYMOUS_GRANT)]
    pub grant: String,
    /// The caller's Mcp-Session-Id [default: none].
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// The role a JWT's role claim names [default: the grant's in
    /// grant_roles, else none].
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// Send the request this many times against the same counters, to see a
    /// limit answer; the last answer is described. Each call is answered
    /// before the next (its id may be sent again), but its concurrency
    /// slots are kept: N calls meet a `concurrent` cap as N calls in flight
    /// at once do.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub calls: u32,
    /// Send it as a client of this protocol revision does: its
    /// MCP-Protocol-Version header, and at 2026-07-28 the Mcp-Method and
    /// Mcp-Name headers mirroring the body [default: no headers, as before
    /// 2026-07-28].
    #[arg(long, value_name = "VERSION")]
    pub protocol_version: Option<String>,
}

/// Print the JSON Schema of policy documents.
///
/// Generated from the types the filter reads policies with; the repository
/// keeps it as policy.schema.json, which policy.json names in `$schema` for
/// editors. The schema cannot express every check: duplicate names, a counter given
/// two windows (or two kinds), a cost above max, roles named but not defined,
/// regex syntax and a window written as 60.0 are only refused by the filter.
/// Use `mcp-policy check` for the final word.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

/// Write the filter's Envoy configuration: every configuration the
/// repository ships is a rendering of this command's source
/// (src/cli/render.rs).
///
/// LAYOUT names one of them (envoy: envoy/envoy.yaml, jwt, fleet-replica,
/// hot-reload-bootstrap, hot-reload-listener, the Kubernetes templates,
/// istio: the EnvoyFilter's Wasm filter, stats-tags: the bootstrap's
/// stats_config, filter-json: the Wasm filter as JSON). The policy is
/// checked first (as `check` does); a layout that is a template ignores it.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 written, 1 invalid policy or unwritable file, 2 usage error."
)]
pub struct RenderArgs {
    #[arg(value_enum, value_name = "LAYOUT")]
    pub layout: render::Layout,
    /// The policy document to embed.
    #[arg(long, value_name = "POLICY", default_value = "policy.json")]
    pub policy: PathBuf,
    /// The module's path as Envoy opens it (istio: the OCI image).
    #[arg(long, value_name = "PATH")]
    pub module: Option<String>,
    /// The MCP listener's address.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_address)]
    pub listen: Option<(String, u16)>,
    /// The admin interface's address.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_address)]
    pub admin: Option<(String, u16)>,
    /// The MCP server's address.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_address)]
    pub upstream: Option<(String, u16)>,
    /// Write here (a temporary file in the same directory, renamed over
    /// it) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Apply a policy to a running Envoy of the hot-reload setup, safely.
///
/// Checks the policy (errors: nothing is written), renders the LDS listener
/// file (the layout hot-reload-listener) with it, writes it to a temporary
/// file in LISTENER's own directory and renames it over LISTENER. Envoy
/// watches that directory and reloads on the rename; a rename within one
/// filesystem is atomic, so Envoy reads the old file or the new one, never
/// a part. Prints the revision applied: Envoy's mcp_policy_info{revision}
/// says when it is live.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 applied, 1 invalid policy (or warnings under --strict) or unwritable file, 2 usage error."
)]
pub struct ApplyArgs {
    /// The policy document (JSON, or YAML carrying one).
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// The listener file Envoy watches, e.g. envoy/hot-reload/listener.yaml.
    #[arg(value_name = "LISTENER")]
    pub listener: PathBuf,
    /// Refuse a policy with warnings.
    #[arg(long)]
    pub strict: bool,
    /// The module's path as Envoy opens it (default: the one LISTENER
    /// names, else the repository's build).
    #[arg(long, value_name = "PATH")]
    pub module: Option<String>,
    /// The MCP listener's address (default: the one LISTENER has, else
    /// 127.0.0.1:10000). The upstream is bootstrap.yaml's, not the
    /// listener's: `render hot-reload-bootstrap --upstream`.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_address)]
    pub listen: Option<(String, u16)>,
    /// Envoy's admin interface (`http://127.0.0.1:9901`): wait until it
    /// shows the new revision live (mcp_policy_info), or fail.
    #[arg(long, value_name = "URL")]
    pub wait: Option<String>,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

/// `ADDRESS:PORT`.
fn parse_address(text: &str) -> Result<(String, u16), String> {
    let (address, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: write ADDRESS:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{text:?}: {port:?} is not a port"))?;
    // `[::1]:8080`: the brackets only set the port apart.
    let address = address
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(address);
    if address.is_empty() {
        return Err(format!("{text:?}: no address before the port"));
    }
    Ok((address.to_string(), port))
}

/// Runs a parsed command; returns the exit status.
pub fn run(cli: Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let result = match cli.command {
        Command::Check(args) => run_check(&args, stdout, stderr),
        Command::Explain(args) => run_explain(&args, stdout, stderr),
        Command::Eval(args) => run_eval(&args, stdout, stderr),
        Command::Render(args) => run_render(&args, stdout, stderr),
        Command::Apply(args) => run_apply(&args, stdout, stderr),
        Command::Schema(_) => stdout
            .write_all(schema::policy_schema_text().as_bytes())
            .map(|()| EXIT_OK),
    };
    result.unwrap_or_else(|error| {
        // A closed pipe (`| head`) is the reader's choice, not an error to report.
        if error.kind() != io::ErrorKind::BrokenPipe {
            let _ = writeln!(stderr, "mcp-policy: cannot write output: {error}");
        }
        EXIT_FAILED
    })
}

fn run_check(args: &CheckArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<u8> {
    let offered = match offered_tools(args) {
        Ok(offered) => offered,
        Err(error) => {
            writeln!(stderr, "mcp-policy: {error}")?;
            return Ok(EXIT_FAILED);
        }
    };
    let mut status = EXIT_OK;
    let mut warned = 0;
    for path in &args.policies {
        let found = match read(path)
            .map_err(|error| format!("cannot read {}: {error}", display(path)))
            .and_then(|bytes| {
                sources::find_policies(&bytes)
                    .map_err(|error| format!("{}: {error}", display(path)))
            }) {
            Ok(found) => found,
            Err(error) => {
                writeln!(stderr, "mcp-policy: {error}")?;
                status = EXIT_FAILED;
                continue;
            }
        };
        for policy in found {
            let name = match &policy.origin {
                Some(origin) => format!("{}#{origin}", display(path)),
                None => display(path),
            };
            match check::check(policy.text.as_bytes()) {
                Ok(checked) => {
                    writeln!(
                        stdout,
                        "{name}: OK ({}, revision {})",
                        summary(&checked),
                        crate::metrics::policy_revision(policy.text.as_bytes())
                    )?;
                    let mut warnings: Vec<_> = checked
                        .lint(offered.as_deref())
                        .into_iter()
                        .map(|(pointer, message)| {
                            let position = policy
                                .as_written
                                .then(|| locate::locate_pointer(&policy.text, &pointer))
                                .flatten();
                            (position, pointer, message)
                        })
                        .collect();
                    // In source order, as errors are.
                    warnings.sort_by_key(|(position, _, _)| (position.is_none(), *position));
                    for (position, pointer, message) in warnings {
                        warned += 1;
                        match position {
                            Some(position) => writeln!(
                                stdout,
                                "{name}:{position}: warning: {pointer}: {message}"
                            )?,
                            None => writeln!(stdout, "{name}: warning: {pointer}: {message}")?,
                        }
                    }
                }
                Err(findings) => {
                    status = EXIT_FAILED;
                    write_findings(&name, &findings, policy.as_written, stderr)?;
                }
            }
        }
    }
    if args.strict && warned > 0 {
        writeln!(
            stderr,
            "mcp-policy: {warned} warning{}, errors under --strict",
            if warned == 1 { "" } else { "s" }
        )?;
        status = EXIT_FAILED;
    }
    Ok(status)
}

/// The tools of --tools or --server, if either is given.
fn offered_tools(args: &CheckArgs) -> Result<Option<Vec<String>>, String> {
    if let Some(file) = &args.tools {
        let bytes =
            read(file).map_err(|error| format!("cannot read {}: {error}", display(file)))?;
        return server::tools_from_answer(&bytes)
            .map(Some)
            .map_err(|error| format!("{}: {error}", display(file)));
    }
    let Some(url) = &args.server else {
        return Ok(None);
    };
    let headers = args
        .headers
        .iter()
        .map(|header| {
            header
                .split_once(':')
                .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
                .ok_or_else(|| format!("--header {header:?}: write it as NAME: VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    server::tools_from_server(url, &headers)
        .map(Some)
        .map_err(|error| format!("--server {url}: {error}"))
}

/// Writes a policy's errors, with positions when they mean something.
fn write_findings(
    name: &str,
    findings: &[check::Finding],
    positions: bool,
    stderr: &mut dyn Write,
) -> io::Result<()> {
    for finding in findings {
        match finding.position.filter(|_| positions) {
            Some(position) => writeln!(
                stderr,
                "{name}:{position}: {}: {}",
                finding.path, finding.message
            )?,
            None => writeln!(stderr, "{name}: {}: {}", finding.path, finding.message)?,
        }
    }
    Ok(())
}

fn run_render(args: &RenderArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<u8> {
    use render::Layout;
    let templates = [
        Layout::Compose,
        Layout::KubernetesSidecar,
        Layout::KubernetesIngress,
        Layout::KubernetesFleet,
        Layout::StatsTags,
        Layout::HotReloadBootstrap,
    ];
    let policy = if templates.contains(&args.layout) {
        String::new()
    } else {
        match checked_policy_text(&args.policy, stderr)? {
            Some(text) => text,
            None => return Ok(EXIT_FAILED),
        }
    };
    if let (Some((_, listen)), Some((_, admin))) = (&args.listen, &args.admin) {
        if listen == admin {
            writeln!(
                stderr,
                "mcp-policy: --listen and --admin both use port {listen}"
            )?;
            return Ok(EXIT_USAGE);
        }
    }
    if let Ok(compiled) = Policy::from_json(policy.as_bytes()) {
        for mismatch in render::mismatches(args.layout, &compiled) {
            writeln!(stderr, "{}: warning: {mismatch}", display(&args.policy))?;
        }
    }
    let overrides = render::Overrides {
        module: args.module.as_deref(),
        listen: args.listen.as_ref().map(|(a, p)| (a.as_str(), *p)),
        admin: args.admin.as_ref().map(|(a, p)| (a.as_str(), *p)),
        upstream: args.upstream.as_ref().map(|(a, p)| (a.as_str(), *p)),
    };
    let text = render::render(args.layout, &policy, &overrides);
    match &args.output {
        None => {
            stdout.write_all(text.as_bytes())?;
            Ok(EXIT_OK)
        }
        Some(path) => match files::replace_file(path, text.as_bytes()) {
            Ok(()) => Ok(EXIT_OK),
            Err(error) => {
                writeln!(
                    stderr,
                    "mcp-policy: cannot write {}: {error}",
                    path.display()
                )?;
                Ok(EXIT_FAILED)
            }
        },
    }
}

/// The MCP listener's address and the module's path in an LDS listener
/// file `apply` wrote (or anything of that shape), as far as they can be read.
fn listener_settings(bytes: &[u8]) -> (Option<(String, u16)>, Option<String>) {
    let documents = sources::yaml_documents(&String::from_utf8_lossy(bytes)).unwrap_or_default();
    let Some(listener) = documents
        .iter()
        .find_map(|document| document.get("resources")?.get(0))
    else {
        return (None, None);
    };
    let socket = &listener["address"]["socket_address"];
    let listen = socket["address"]
        .as_str()
        .zip(socket["port_value"].as_u64())
        .and_then(|(address, port)| Some((address.to_string(), u16::try_from(port).ok()?)));
    fn filename(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::Object(map) => map
                .get("vm_config")
                .and_then(|vm| vm["code"]["local"]["filename"].as_str())
                .map(str::to_string)
                .or_else(|| map.values().find_map(filename)),
            serde_json::Value::Array(items) => items.iter().find_map(filename),
            _ => None,
        }
    }
    (listen, filename(listener))
}

fn run_apply(args: &ApplyArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<u8> {
    let Some(text) = checked_policy_text(&args.policy, stderr)? else {
        writeln!(stderr, "mcp-policy: nothing applied")?;
        return Ok(EXIT_FAILED);
    };
    if let Ok(policy) = Policy::from_json(text.as_bytes()) {
        let mut warnings = policy.warnings();
        for mismatch in render::mismatches(render::Layout::HotReloadListener, &policy) {
            warnings.push(("(hot-reload)".to_string(), mismatch));
        }
        for (pointer, message) in &warnings {
            writeln!(
                stderr,
                "{}: warning: {pointer}: {message}",
                display(&args.policy)
            )?;
        }
        if args.strict && !warnings.is_empty() {
            writeln!(
                stderr,
                "mcp-policy: warnings under --strict: nothing applied"
            )?;
            return Ok(EXIT_FAILED);
        }
    }
    let existing = std::fs::read(&args.listener).ok();
    let previous = existing
        .as_deref()
        .and_then(|bytes| sources::find_policies(bytes).ok())
        .and_then(|found| found.into_iter().next())
        .map(|found| crate::metrics::policy_revision(found.text.as_bytes()));
    // The listener Envoy serves keeps its address and module unless told
    // otherwise: only the policy changes.
    let (kept_listen, kept_module) = existing
        .as_deref()
        .map(listener_settings)
        .unwrap_or_default();
    let listen = args.listen.clone().or(kept_listen);
    let module = args.module.clone().or(kept_module);
    let overrides = render::Overrides {
        module: module.as_deref(),
        listen: listen.as_ref().map(|(a, p)| (a.as_str(), *p)),
        admin: None,
        upstream: None,
    };
    let listener = render::render(render::Layout::HotReloadListener, &text, &overrides);
    if let Err(error) = files::replace_file(&args.listener, listener.as_bytes()) {
        writeln!(
            stderr,
            "mcp-policy: cannot write {}: {error}; nothing applied",
            args.listener.display()
        )?;
        return Ok(EXIT_FAILED);
    }
    let revision = crate::metrics::policy_revision(text.as_bytes());
    let held = match previous {
        Some(previous) if previous != revision => format!(" (the file held {previous})"),
        _ => String::new(),
    };
    writeln!(
        stdout,
        "{}: revision {revision} written{held}",
        args.listener.display()
    )?;
    let Some(admin) = &args.wait else {
        writeln!(
            stdout,
            "live once Envoy's /stats/prometheus shows mcp_policy_info{{revision=\"{revision}\"}} 1"
        )?;
        return Ok(EXIT_OK);
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    loop {
        match server::revision_is_live(admin, &revision) {
            Ok(true) => {
                writeln!(stdout, "revision {revision} is live ({admin})")?;
                return Ok(EXIT_OK);
            }
            Ok(false) | Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(false) => {
                writeln!(
                    stderr,
                    "mcp-policy: revision {revision} not live after {} s: Envoy refused the listener (its log, listener_manager.lds.update_rejected) or does not watch {}",
                    args.timeout,
                    args.listener.display()
                )?;
                return Ok(EXIT_FAILED);
            }
            Err(error) => {
                writeln!(stderr, "mcp-policy: {error}")?;
                return Ok(EXIT_FAILED);
            }
        }
    }
}

/// The one policy a file holds (a policy document, or YAML that carries
/// exactly one); `None` after the reason is written to `stderr`.
fn the_one_policy(path: &Path, stderr: &mut dyn Write) -> io::Result<Option<sources::Found>> {
    let source = match read(path) {
        Ok(source) => source,
        Err(error) => {
            writeln!(stderr, "mcp-policy: cannot read {}: {error}", display(path))?;
            return Ok(None);
        }
    };
    let policy = match sources::find_policies(&source) {
        Ok(mut found) if found.len() == 1 => found.remove(0),
        Ok(found) => {
            writeln!(
                stderr,
                "mcp-policy: {} holds {} policies; this command takes one",
                display(path),
                found.len()
            )?;
            return Ok(None);
        }
        Err(error) => {
            writeln!(stderr, "mcp-policy: {}: {error}", display(path))?;
            return Ok(None);
        }
    };
    Ok(Some(policy))
}

/// A policy's text, once it is valid; `None` after its errors are written.
fn checked_policy_text(path: &Path, stderr: &mut dyn Write) -> io::Result<Option<String>> {
    let Some(policy) = the_one_policy(path, stderr)? else {
        return Ok(None);
    };
    match check::check(policy.text.as_bytes()) {
        Ok(_) => Ok(Some(policy.text)),
        Err(findings) => {
            write_findings(&display(path), &findings, policy.as_written, stderr)?;
            Ok(None)
        }
    }
}

fn run_explain(
    args: &ExplainArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> io::Result<u8> {
    let Some(policy) = load(&args.policy, stderr)? else {
        return Ok(EXIT_FAILED);
    };
    if let Some(role) = &args.role {
        if policy.role(role).is_none() {
            writeln!(stderr, "mcp-policy: the policy has no role {role:?}")?;
            return Ok(EXIT_FAILED);
        }
    }
    let mut text = explain::explain_as(
        &policy,
        &display(&args.policy),
        args.grant.as_deref(),
        args.role.as_deref(),
    );
    let examples: Vec<(crate::target::Kind, &str)> = args
        .tools
        .iter()
        .map(|name| (crate::target::Kind::Tool, name.as_str()))
        .chain(
            args.prompts
                .iter()
                .map(|name| (crate::target::Kind::Prompt, name.as_str())),
        )
        .chain(
            args.resources
                .iter()
                .map(|uri| (crate::target::Kind::Resource, uri.as_str())),
        )
        .collect();
    if !examples.is_empty() {
        let view = match (args.grant.as_deref(), args.role.as_deref()) {
            (Some(grant), role) => policy.view_as(grant, role),
            (None, Some(role)) => policy.role(role).unwrap_or(policy.base()),
            (None, None) => policy.base(),
        };
        text.push_str(&explain::examples(view, &examples));
    }
    stdout.write_all(text.as_bytes())?;
    Ok(EXIT_OK)
}

fn run_eval(args: &EvalArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<u8> {
    if args.policy == Path::new("-") && args.request == Path::new("-") {
        writeln!(
            stderr,
            "mcp-policy: the policy and the request cannot both be read from standard input"
        )?;
        return Ok(EXIT_USAGE);
    }
    let Some(policy) = load(&args.policy, stderr)? else {
        return Ok(EXIT_FAILED);
    };
    let body = match read(&args.request) {
        Ok(body) => body,
        Err(error) => {
            writeln!(
                stderr,
                "mcp-policy: cannot read {}: {error}",
                display(&args.request)
            )?;
            return Ok(EXIT_FAILED);
        }
    };
    // As the filter takes an identity header or claim: empty is anonymous.
    let grant = crate::policy::Identity::grant_from_value(Some(args.grant.as_str()));
    let caller = CallerScope {
        grant,
        session: args.session.as_deref(),
        role: policy.role_of(grant, args.role.as_deref()),
    };
    let mirrored = args
        .protocol_version
        .as_deref()
        .map(|version| eval::Mirrored::of(version, &body));
    stdout
        .write_all(eval::eval(&policy, &body, caller, args.calls, mirrored.as_ref()).as_bytes())?;
    Ok(EXIT_OK)
}

/// Reads and validates a policy (a policy document, or YAML that carries
/// exactly one); `None` after its errors are written to `stderr`.
fn load(path: &Path, stderr: &mut dyn Write) -> io::Result<Option<Policy>> {
    let Some(policy) = the_one_policy(path, stderr)? else {
        return Ok(None);
    };
    let name = match &policy.origin {
        Some(origin) => format!("{}#{origin}", display(path)),
        None => display(path),
    };
    match check::check(policy.text.as_bytes()) {
        Ok(policy) => Ok(Some(policy)),
        Err(findings) => {
            write_findings(&name, &findings, policy.as_written, stderr)?;
            Ok(None)
        }
    }
}

/// A file's bytes; `-` is standard input.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// `default deny, 3 tool rules, 1 grant`: every key of the top-level
/// `tools`, exact names and patterns alike.
fn summary(policy: &Policy) -> String {
    let plural =
        |count: usize, noun: &str| format!("{count} {noun}{}", if count == 1 { "" } else { "s" });
    let default = match policy.base().default {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    format!(
        "default {default}, {}, {}",
        plural(
            policy.base().keys(crate::target::Kind::Tool).len(),
            "tool rule"
        ),
        plural(policy.grant_names().count(), "grant")
    )
}
