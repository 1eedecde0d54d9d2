//! `mcp-policy`: check, explain and try policy documents with the code the
//! Envoy filter runs. `mcp-policy --help` says how; the work is in
//! `mcp_policy::cli`.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;

    let cli = mcp_policy::cli::Cli::parse();
    let status = mcp_policy::cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::ExitCode::from(status)
}

// The command is native only; the wasm build of the crate is the filter itself.
#[cfg(target_arch = "wasm32")]
fn main() {}
