//! The `mcp-policy` command (`src/bin/mcp-policy.rs`): checks, explains and
//! tries policy documents with the code the filter runs. Native only.

pub mod check;
pub mod eval;
pub mod explain;
mod locate;
pub mod schema;
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
}

/// Validate policy documents exactly as the filter loads them.
///
/// Prints `FILE: OK (...)` on standard output for each valid document, and
/// `FILE:LINE:COLUMN: PATH: MESSAGE` on standard error for each error found
/// (`FILE: PATH: MESSAGE` when no position can be told), in source order.
/// PATH is the JSON path the filter names (`tools.x.limits[0].window`);
/// columns count bytes.
///
/// Every error is reported at once: the filter reads each part of the
/// document on its own (every field of the document, of a tool rule and of a
/// grant; every tool rule, grant, limit and argument condition) and checks
/// on past an error. A part stops at its first error. An error in the
/// document itself is reported alone, as the reader cannot go on past it:
/// JSON that is not well-formed, a document that is not an object, an
/// unknown or missing top-level field, a name given twice in tools or grants.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 every document is valid, 1 otherwise, 2 usage error.")]
pub struct CheckArgs {
    /// Policy documents (JSON) to validate.
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
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
    /// The caller's grant.
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
    /// limit answer; the last answer is described.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub calls: u32,
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

/// Runs a parsed command; returns the exit status.
pub fn run(cli: Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let result = match cli.command {
        Command::Check(args) => run_check(&args, stdout, stderr),
        Command::Explain(args) => run_explain(&args, stdout, stderr),
        Command::Eval(args) => run_eval(&args, stdout, stderr),
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
    let mut status = EXIT_OK;
    for path in &args.policies {
        match load(path, stderr)? {
            Some(policy) => {
                writeln!(stdout, "{}: OK ({})", display(path), summary(&policy))?;
                for (pointer, message) in policy.warnings() {
                    writeln!(stdout, "{}: warning: {pointer}: {message}", display(path))?;
                }
            }
            None => status = EXIT_FAILED,
        }
    }
    Ok(status)
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
    let caller = CallerScope {
        grant: &args.grant,
        session: args.session.as_deref(),
        role: policy.role_of(&args.grant, args.role.as_deref()),
    };
    stdout.write_all(eval::eval(&policy, &body, caller, args.calls).as_bytes())?;
    Ok(EXIT_OK)
}

/// Reads and validates a policy; `None` after its errors are written to `stderr`.
fn load(path: &Path, stderr: &mut dyn Write) -> io::Result<Option<Policy>> {
    let source = match read(path) {
        Ok(source) => source,
        Err(error) => {
            writeln!(stderr, "mcp-policy: cannot read {}: {error}", display(path))?;
            return Ok(None);
        }
    };
    match check::check(&source) {
        Ok(policy) => Ok(Some(policy)),
        Err(findings) => {
            for finding in findings {
                match finding.position {
                    Some(position) => writeln!(
                        stderr,
                        "{}:{position}: {}: {}",
                        display(path),
                        finding.path,
                        finding.message
                    )?,
                    None => writeln!(
                        stderr,
                        "{}: {}: {}",
                        display(path),
                        finding.path,
                        finding.message
                    )?,
                }
            }
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

/// `default deny, 3 tool rules, 1 grant`
fn summary(policy: &Policy) -> String {
    let plural =
        |count: usize, noun: &str| format!("{count} {noun}{}", if count == 1 { "" } else { "s" });
    let default = match policy.base().default {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    format!(
        "default {default}, {}, {}",
        plural(policy.base().tool_names().count(), "tool rule"),
        plural(policy.grant_names().count(), "grant")
    )
}
