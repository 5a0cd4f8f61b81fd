//! `errand serve`: run the server.
use std::{
    io::Write, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use errand_server::{
    auth::Tokens,
    config::Config,
    server,
    store::{
        SharedStore,
        memory::MemoryStore,
        postgres::{PostgresOptions, PostgresStore},
        sqlite::SqliteStore,
    },
};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed as "errand listening on ADDR".
    #[arg(long, env = "ERRAND_LISTEN", default_value = "127.0.0.1:7466")]
    listen: String,
    /// Where the durable store keeps its data.
    #[arg(long, env = "ERRAND_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Where tasks and completions are kept.
    #[arg(long, env = "ERRAND_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// The PostgreSQL database of `--store postgres`, as a URL
    /// (postgres://USER[:PASSWORD]@HOST:PORT/DBNAME) or key=value string.
    /// Every server pointed at one database acts as one service.
    #[arg(long, env = "ERRAND_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// With --store postgres: how long a task claimed by this server stays
    /// its own without renewal; a server that dies loses its tasks to the
    /// others after this long.
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
    /// Serve a non-loopback address with no authentication. Anyone who can
    /// reach the address can then submit tasks and serve tools.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Require bearer tokens listed (hashed) in this file; see `errand token new`.
    #[arg(long, env = "ERRAND_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM). Needs --tls-key.
    #[arg(long, env = "ERRAND_SERVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "ERRAND_SERVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "ERRAND_SERVE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "ERRAND_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// On SIGTERM, how long running tasks may take to finish before exiting.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Timeout of a run when neither the submit nor the tool sets one.
    #[arg(long, default_value_t = 600_000)]
    default_timeout_ms: u64,
    /// Dispatches of one task before a lost worker fails it.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Queued plus running tasks allowed per session.
    #[arg(long, default_value_t = 10_000)]
    max_pending_per_session: usize,
    /// Largest arguments_json accepted, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    max_arguments_bytes: usize,
    /// Queued plus running tasks allowed per tenant, all sessions together.
    #[arg(long, default_value_t = 100_000)]
    max_pending_per_tenant: usize,
    /// Open Completions streams allowed per tenant.
    #[arg(long, default_value_t = 4096)]
    max_streams_per_tenant: usize,
    /// Connected workers allowed per tenant.
    #[arg(long, default_value_t = 1024)]
    max_workers_per_tenant: usize,
    /// SubmitTool calls per second per token (bursts of one second's worth;
    /// 0: no limit). Applies with --tokens-file.
    #[arg(long, default_value_t = 1000)]
    submits_per_second: u32,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_message_bytes: usize,
    /// How long finished tasks and completions are kept, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    retention_secs: u64,
    /// How often expired tasks and completions are purged, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    purge_interval_ms: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    /// SQLite in --data-dir: every accepted task survives a crash.
    Sqlite,
    /// In memory: fast, and gone when the server stops.
    Memory,
    /// PostgreSQL at --database-url, shared by every server pointed at it.
    Postgres,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("errand")
}

pub async fn run(args: Args) -> Result<ExitCode> {
    crate::init_logs(args.log_format == LogFormat::Json);
    let addr: SocketAddr = tokio::net::lookup_host(&args.listen)
        .await
        .with_context(|| format!("cannot resolve --listen {:?}", args.listen))?
        .next()
        .with_context(|| format!("--listen {:?} resolves to no address", args.listen))?;
    let tokens = match &args.tokens_file {
        Some(path) => {
            let tokens = Tokens::load(path).map_err(anyhow::Error::msg)?;
            if tokens.is_empty() {
                warn!(file = %path.display(), "the tokens file lists no token: every call will be refused");
            }
            info!(tokens = tokens.len(), "authentication on");
            Some(Arc::new(tokens))
        }
        None => None,
    };
    if !addr.ip().is_loopback() {
        if tokens.is_none() {
            if !args.allow_unauthenticated {
                bail!(
                    "refusing to serve {addr} without authentication: anyone who can reach it could run tools. \
                     Pass --tokens-file (see `errand token new`), listen on 127.0.0.1, \
                     or pass --allow-unauthenticated if the network is trusted"
                );
            }
            warn!(%addr, "SERVING WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach it can submit tasks and serve tools");
        } else if args.tls_cert.is_none() {
            warn!(%addr, "serving tokens without TLS on a non-loopback address: anyone on the path can read them; pass --tls-cert and --tls-key");
        }
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
            if let Some(ca) = &args.tls_client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
            }
            Some(tls)
        }
        _ => None,
    };
    let metrics = match &args.metrics_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --metrics-listen {a}"))?;
            let local = l.local_addr()?;
            println!("errand metrics on http://{local}/metrics");
            Some(l)
        }
        None => None,
    };
    let config = Config {
        default_timeout: Duration::from_millis(args.default_timeout_ms),
        max_attempts: args.max_attempts.max(1),
        retention: Duration::from_secs(args.retention_secs),
        purge_interval: Duration::from_millis(args.purge_interval_ms.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        limits: errand_server::config::Limits {
            max_pending_per_session: args.max_pending_per_session,
            max_arguments_bytes: args.max_arguments_bytes,
            max_pending_per_tenant: args.max_pending_per_tenant,
            max_streams_per_tenant: args.max_streams_per_tenant,
            max_workers_per_tenant: args.max_workers_per_tenant,
            submits_per_second_per_token: args.submits_per_second,
            max_message_bytes: args.max_message_bytes,
            ..Default::default()
        },
        ..Config::default()
    };
    let store: SharedStore = match args.store {
        StoreKind::Sqlite => {
            let dir = args.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
                .await?
                .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
            Arc::new(store)
        }
        StoreKind::Memory => Arc::new(MemoryStore::default()),
        StoreKind::Postgres => {
            let Some(url) = args.database_url.as_deref() else {
                bail!(
                    "--store postgres needs --database-url URL (or ERRAND_DATABASE_URL), \
                     e.g. postgres://errand@127.0.0.1:5432/errand"
                );
            };
            let options = PostgresOptions {
                lease: Duration::from_millis(args.lease_ms.max(300)),
                max_pending_per_session: args.max_pending_per_session,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(url, options)
                .await
                .context("cannot use the PostgreSQL store")?;
            Arc::new(store)
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "errand serving");
    // The one line on stdout: scripts and tests wait for it.
    println!("errand listening on {local}");
    std::io::stdout().flush()?;
    let options = server::Options {
        tokens,
        tls,
        metrics,
    };
    server::serve_with(listener, config, store, options, shutdown_signal()).await?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("errand: second signal, exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
