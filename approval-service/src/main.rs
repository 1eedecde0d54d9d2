//! `mcp-approval-service`: see README.md.

use std::future::IntoFuture;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use mcp_approval_service::app::{approver_router, filter_router, Core, Settings, Shared};
use mcp_approval_service::auth::{random_secret, token_hash, ApproverToken, Auth, Cidr};
use mcp_approval_service::metrics::Metrics;
use mcp_approval_service::store::{Limits, Store, GRACE_MS};

#[derive(Parser)]
#[command(
    name = "mcp-approval-service",
    about = "Approvals for mcp-policy: the filter's check protocol, the approvers' page and JSON API",
    after_help = "Subcommands print approver tokens: `new-token NAME` makes one, `hash-token` hashes one read from stdin."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Approvers' page and JSON API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The filter's check protocol, /metrics and health: only Envoy should reach it.
    #[arg(long, default_value = "127.0.0.1:8091")]
    filter_listen: SocketAddr,
    /// Where approvers reach the page (the links the filter hands out); its
    /// path, if any, prefixes every route. Default: http:// and the --listen address.
    #[arg(long)]
    public_url: Option<String>,

    /// Redis holding the approvals, shared by every service process.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        conflicts_with = "memory"
    )]
    redis: String,
    /// Keep approvals in this process only (`make run`; not for more than one process).
    #[arg(long)]
    memory: bool,
    /// Prefix of every Redis key; the braces keep all keys in one Redis Cluster slot.
    #[arg(long, default_value = "{mcp-approval}:")]
    redis_prefix: String,
    /// Connect and response timeout for each Redis call.
    #[arg(long, default_value_t = 150)]
    redis_timeout_ms: u64,

    /// The header that names the approver, trusted only from --trusted-proxy.
    #[arg(long, default_value = "x-forwarded-user")]
    auth_header: String,
    /// Networks of the sign-in proxy (CIDR or address; repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// An approver token: NAME=sha256:HEX (see `new-token`); repeatable.
    #[arg(long)]
    approver_token: Vec<String>,
    /// A file of approver tokens, one NAME=sha256:HEX per line (# comments).
    #[arg(long)]
    approver_tokens_file: Option<PathBuf>,
    /// A file whose contents sign cookies and CSRF tokens. Default: a random
    /// secret, kept in Redis for every process (in memory: per process).
    #[arg(long)]
    secret_file: Option<PathBuf>,

    /// Largest check body accepted (bytes).
    #[arg(long, default_value_t = 262_144)]
    max_check_bytes: usize,
    /// Largest ttl_seconds a check may ask for.
    #[arg(long, default_value_t = 86_400)]
    max_ttl_seconds: u64,
    /// Pending approvals at most (checks beyond get 429).
    #[arg(long, default_value_t = 1000)]
    max_pending: usize,
    /// Pending approvals at most per grant.
    #[arg(long, default_value_t = 100)]
    max_pending_per_grant: usize,
    /// Decision history lines kept.
    #[arg(long, default_value_t = 1000)]
    history: usize,
    /// retry_after_seconds told to the filter for pending approvals.
    #[arg(long, default_value_t = 5)]
    retry_after_seconds: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a new random approver token and the --approver-token value for it.
    NewToken { name: String },
    /// Reads a token from stdin and prints its sha256: hash.
    HashToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::NewToken { name }) => {
            let token = match random_secret() {
                Ok(token) => token,
                Err(err) => {
                    eprintln!("mcp-approval-service: {err}");
                    return ExitCode::FAILURE;
                }
            };
            println!("token: {token}");
            println!("--approver-token {name}={}", token_hash(&token));
            return ExitCode::SUCCESS;
        }
        Some(Command::HashToken) => {
            let mut token = String::new();
            if std::io::stdin().read_to_string(&mut token).is_err() || token.trim().is_empty() {
                eprintln!("mcp-approval-service: give the token on stdin");
                return ExitCode::FAILURE;
            }
            println!("{}", token_hash(&token));
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcp-approval-service: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mcp-approval-service: {err}");
            ExitCode::FAILURE
        }
    }
}

fn approver_tokens(cli: &Cli) -> Result<Vec<ApproverToken>, String> {
    let mut tokens = Vec::new();
    for text in &cli.approver_token {
        tokens.push(ApproverToken::parse(text)?);
    }
    if let Some(path) = &cli.approver_tokens_file {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            tokens.push(
                ApproverToken::parse(line).map_err(|err| format!("{}: {err}", path.display()))?,
            );
        }
    }
    Ok(tokens)
}

/// `scheme://host[:port]` and the path of a public URL.
fn split_public_url(url: &str) -> Result<(String, String, bool), String> {
    let url = url.trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("--public-url {url}: not an absolute URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("--public-url {url}: http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if host.is_empty() || path.contains(['?', '#']) {
        return Err(format!(
            "--public-url {url}: no query or fragment, and a host"
        ));
    }
    Ok((
        format!("{scheme}://{host}"),
        path.to_owned(),
        scheme == "https",
    ))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let tokens = approver_tokens(&cli)?;
    let mut proxies = Vec::new();
    for text in cli.trusted_proxy.iter().filter(|t| !t.trim().is_empty()) {
        proxies.push(Cidr::parse(text)?);
    }
    if proxies.is_empty() && tokens.is_empty() {
        return Err("no approver could sign in: give --trusted-proxy (the sign-in proxy's networks) or --approver-token".into());
    }
    let header = if proxies.is_empty() {
        None
    } else {
        let name = HeaderName::try_from(cli.auth_header.to_ascii_lowercase())
            .map_err(|_| format!("--auth-header {:?}: not a header name", cli.auth_header))?;
        Some((name, proxies))
    };
    let limits = Limits {
        max_pending: cli.max_pending.max(1),
        max_pending_per_grant: cli.max_pending_per_grant.max(1),
        history: cli.history.max(1),
        grace_ms: GRACE_MS,
    };
    let store = if cli.memory {
        Store::memory(limits)
    } else {
        Store::redis(
            &cli.redis,
            &cli.redis_prefix,
            Duration::from_millis(cli.redis_timeout_ms.max(1)),
            limits,
        )?
    };

    let page_listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|err| format!("--listen {}: {err}", cli.listen))?;
    let page_addr = page_listener.local_addr().map_err(|err| err.to_string())?;
    let filter_listener = TcpListener::bind(cli.filter_listen)
        .await
        .map_err(|err| format!("--filter-listen {}: {err}", cli.filter_listen))?;
    let filter_addr = filter_listener
        .local_addr()
        .map_err(|err| err.to_string())?;
    let public_url = cli
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{page_addr}"));
    let (origin, base_path, secure) = split_public_url(&public_url)?;

    let storage = if cli.memory {
        "memory".to_owned()
    } else {
        format!("redis {} prefix {}", cli.redis, cli.redis_prefix)
    };
    let core = Arc::new(Core {
        store,
        metrics: Metrics::default(),
        settings: Settings {
            public_url: format!("{origin}{base_path}"),
            base_path,
            max_ttl_seconds: cli.max_ttl_seconds.max(1),
            max_check_bytes: cli.max_check_bytes,
            retry_after_seconds: cli.retry_after_seconds.max(1),
            list_limit: 200,
        },
    });
    if core.store.is_redis() {
        // Connection state changes, once each.
        let watched = core.clone();
        tokio::spawn(async move {
            let mut up: Option<bool> = None;
            loop {
                let now_up = watched.store.ping().await.is_ok();
                if up != Some(now_up) {
                    eprintln!(
                        "mcp-approval-service: {}",
                        if now_up {
                            "redis connection established"
                        } else {
                            "redis unavailable"
                        }
                    );
                    up = Some(now_up);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    // The filter's listener serves at once: while Redis is down its checks
    // get 503 (the filter's failure_mode), and its health answers.
    eprintln!(
        "mcp-approval-service: filter protocol listening on {filter_addr}, storage {storage}"
    );
    let filter = tokio::spawn(
        axum::serve(filter_listener, filter_router(core.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .into_future(),
    );

    // The signing secret: a file, or shared through Redis (waits for Redis).
    let secret = match &cli.secret_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("{}: {err}", path.display()))?
            .trim()
            .to_owned(),
        None => {
            let fresh = random_secret()?;
            let mut warned = false;
            loop {
                match core.store.shared_secret(&fresh).await {
                    Ok(secret) => break secret,
                    Err(err) => {
                        if !warned {
                            eprintln!("mcp-approval-service: waiting for redis for the signing secret: {err}");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    };
    if secret.len() < 16 {
        return Err("the secret must be at least 16 characters".into());
    }
    let shared = Arc::new(Shared {
        core: core.clone(),
        auth: Auth::new(header, tokens, origin, secure, secret.as_bytes()),
    });
    eprintln!(
        "mcp-approval-service: approvers' page listening on {page_addr}, public URL {}",
        core.settings.public_url
    );
    let page = axum::serve(
        page_listener,
        approver_router(shared).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    page.await.map_err(|err| err.to_string())?;
    match filter.await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    }
}
