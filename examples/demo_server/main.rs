//! Demo MCP server for trying the policy filter by hand:
//!
//! ```text
//! cargo run --features demo --bin demo_server -- --port 8081 [--host 127.0.0.1]
//! ```
//!
//! Serves a fake code-execution MCP server (it never executes anything) over
//! Streamable HTTP at `/mcp`, and prints one line per tool call. Beside the
//! code-execution tools it has the rest of the MCP surface (resources with a
//! secret at `file:///srv/.env`, prompts, completions, subscriptions, tasks, a
//! multi-round-trip tool, a meta-tool), at protocol revisions 2025-11-25
//! (`initialize`, `Mcp-Session-Id`) and 2026-07-28 (stateless) at once.

mod server;

use std::process::ExitCode;

struct Args {
    host: String,
    port: u16,
}

const USAGE: &str = "usage: demo_server [--host HOST] [--port PORT]  (defaults: 127.0.0.1, 8081)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".to_owned(),
        port: 8081,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--host" => args.host = value("--host")?,
            "--port" => {
                let port = value("--port")?;
                args.port = port
                    .parse()
                    .map_err(|_| format!("--port: not a port number: {port}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("demo_server: {err}");
            }
            eprintln!("{USAGE}");
            return if err.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let listener = match tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "demo_server: cannot listen on {}:{}: {err}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("demo_server: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "demo MCP server listening on http://{addr}{}",
        server::MCP_PATH
    );
    match server::serve(listener, server::Recorder::logging_tool_calls()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo_server: {err}");
            ExitCode::FAILURE
        }
    }
}
