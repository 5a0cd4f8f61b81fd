//! `errand serve`: run the server. The flags and their translation to the
//! server's `Config` are in [`args`].
use std::{io::Write, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result, bail};
use errand_server::{
    auth::Tokens,
    server,
    store::{
        SharedStore,
        memory::MemoryStore,
        postgres::PostgresStore,
        sqlite::{CheckState, SqliteStore},
    },
};
use tracing::{info, warn};

mod args;
pub use args::Args;
use args::LogFormat;
pub(crate) use args::{StoreKind, default_data_dir};

pub async fn run(args: Args) -> Result<ExitCode> {
    crate::init_logs(args.log_format == LogFormat::Json);
    let mut signals = Signals::install()?;
    let config = args.config()?;
    let addr = resolve("--listen", &args.listen).await?;
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
    protect(
        &Exposure {
            addr,
            authenticated: tokens.is_some(),
            what: "tasks and tools",
            harm: "submit tasks and serve tools",
            auth_flag: "--tokens-file (see `errand token new`)",
        },
        args.allow_unauthenticated,
    )?;
    if !addr.ip().is_loopback() && tokens.is_some() && args.tls_cert.is_none() {
        warn!(%addr, "serving tokens without TLS on a non-loopback address: anyone on the path can read them; pass --tls-cert and --tls-key");
    }
    let metrics_token = match &args.metrics_token {
        Some(t) if t.trim().len() < MIN_METRICS_TOKEN => bail!(
            "invalid --metrics-token (ERRAND_METRICS_TOKEN): shorter than {MIN_METRICS_TOKEN} characters; \
             use a random one, e.g. from `errand token new`"
        ),
        Some(t) => Some(Arc::<str>::from(t.trim())),
        None => None,
    };
    let metrics_addr = match &args.metrics_listen {
        Some(a) => {
            let addr = resolve("--metrics-listen", a).await?;
            protect(
                &Exposure {
                    addr,
                    authenticated: metrics_token.is_some(),
                    what: "metrics",
                    harm: "read every tenant's name, tool names and counts",
                    auth_flag: "--metrics-token (ERRAND_METRICS_TOKEN)",
                },
                args.allow_unauthenticated,
            )?;
            Some(addr)
        }
        None => None,
    };
    // The gRPC port's TLS, and the same certificate (and client CA) for
    // every HTTP listener: MCP, A2A, the dashboard and metrics.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let (cert, key) = (read(cert)?, read(key)?);
            let ca = args.tls_client_ca.as_ref().map(read).transpose()?;
            let config = errand_server::net::tls::server_config(&cert, &key, ca.as_deref())
                .map_err(anyhow::Error::msg)?;
            Some(config)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics = match metrics_addr {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --metrics-listen {a}"))?;
            let local = l.local_addr()?;
            announce!("errand metrics on {scheme}://{local}/metrics");
            Some(l)
        }
        None => None,
    };
    let ui = match &args.ui_listen {
        Some(a) => {
            let addr = resolve("--ui-listen", a).await?;
            protect(
                &Exposure {
                    addr,
                    authenticated: tokens.is_some(),
                    what: "the dashboard",
                    harm: "see and cancel every task",
                    auth_flag: "--tokens-file (see `errand token new`)",
                },
                args.allow_unauthenticated,
            )?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --ui-listen {a}"))?;
            announce!("errand dashboard on {scheme}://{}/", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    let mcp = match &args.mcp_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --mcp-listen {a}"))?;
            let local = l.local_addr()?;
            if !local.ip().is_loopback() && tokens.is_none() && !args.allow_unauthenticated {
                bail!(
                    "refusing to serve MCP on {local} without authentication: pass --tokens-file, \
                     listen on 127.0.0.1, or pass --allow-unauthenticated"
                );
            }
            announce!("errand mcp on {scheme}://{local}/mcp");
            Some(l)
        }
        None => None,
    };
    let a2a = match &args.a2a_listen {
        Some(a) => {
            let addr = resolve("--a2a-listen", a).await?;
            protect(
                &Exposure {
                    addr,
                    authenticated: tokens.is_some(),
                    what: "A2A",
                    harm: "submit tasks and read their results",
                    auth_flag: "--tokens-file (see `errand token new`)",
                },
                args.allow_unauthenticated,
            )?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --a2a-listen {a}"))?;
            let local = l.local_addr()?;
            let base = args
                .a2a_public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{local}"));
            announce!(
                "errand a2a on {}/.well-known/agent-card.json",
                base.trim_end_matches('/')
            );
            Some(l)
        }
        None => None,
    };
    // The gRPC address is bound now and listened on once the store is
    // open: an address in use is refused before the store is created or
    // migrated, and until the store is open a client is refused at once
    // rather than kept waiting in the backlog.
    let socket = bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    // Opening the store may wait long (PostgreSQL retried until it
    // answers): a signal meanwhile stops the server at once, as the README
    // promises from the first moment; there is nothing to drain yet.
    let opening = async { open_store(&args, &config).await };
    let (store, corrupt) = tokio::select! {
        opened = opening => opened?,
        () = signals.next() => {
            warn!("signal received while opening the store: stopping before serving");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let listener = socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "errand serving");
    // The one line on stdout: scripts and tests wait for it.
    announce!("errand listening on {local}");
    std::io::stdout().flush()?;
    let options = server::Options {
        tokens,
        tls,
        metrics,
        ui,
        mcp,
        a2a,
        metrics_token,
    };
    // A corrupt store file stops the server as a signal would (health says
    // NOT_SERVING, running tasks get their grace), then exits with an error;
    // the next start refuses the file (see the store's `integrity.rs`).
    let found = std::sync::OnceLock::new();
    let stop = async {
        let corrupt = async {
            match corrupt {
                Some(check) => check.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown_signal(signals) => {}
            e = corrupt => {
                let _ = found.set(e);
            }
        }
    };
    server::serve_with(listener, config, store, options, stop).await?;
    if let Some(e) = found.get() {
        bail!("stopped, as the store is corrupt: {e}");
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The check of a store file that was not closed cleanly (SQLite), which
/// runs while serving: it resolves only if the file is found corrupt.
type Corrupt = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// Opens the store `args` name.
/// Connections the kernel queues for the gRPC listener (tokio's default).
const LISTEN_BACKLOG: u32 = 1024;

/// A TCP socket bound to `addr`, not listening yet; SO_REUSEADDR as
/// `TcpListener::bind` sets it, so a restart binds over TIME_WAIT.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

async fn open_store(
    args: &Args,
    config: &errand_server::config::Config,
) -> Result<(SharedStore, Option<Corrupt>)> {
    let mut corrupt = None;
    let store: SharedStore = match args.store {
        StoreKind::Sqlite => {
            let dir = args.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
                .await?
                .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
            let store = Arc::new(store);
            corrupt = Some(Box::pin(store_found_corrupt(store.clone())) as Corrupt);
            store
        }
        StoreKind::Memory => Arc::new(MemoryStore::default()),
        StoreKind::Postgres => {
            // An empty URL (`--database-url ""`, an empty variable) is an
            // unset one, not a database to retry for ever.
            let url = args
                .database_url
                .as_deref()
                .filter(|u| !u.trim().is_empty());
            let Some(url) = url else {
                bail!(
                    "--store postgres needs --database-url URL (or ERRAND_DATABASE_URL), \
                     e.g. postgres://errand@127.0.0.1:5432/errand"
                );
            };
            if let Err(why) = errand_server::store::postgres::check_url(url) {
                bail!(
                    "invalid --database-url (ERRAND_DATABASE_URL): {why}; \
                     e.g. postgres://errand@127.0.0.1:5432/errand"
                );
            }
            let store = PostgresStore::connect(url, config.postgres_options())
                .await
                .context("cannot use the PostgreSQL store")?;
            Arc::new(store)
        }
    };
    Ok((store, corrupt))
}

/// Resolves with what the SQLite store's check found, if it finds the file
/// corrupt; pending for ever otherwise (sound, or no check due).
async fn store_found_corrupt(store: Arc<SqliteStore>) -> String {
    let state = store.checked().await;
    // The store closes when the server is done with it, not later.
    drop(store);
    match state {
        CheckState::Corrupt(e) => e.to_string(),
        CheckState::Running | CheckState::Sound | CheckState::Unfinished => {
            std::future::pending().await
        }
    }
}

/// Shortest `--metrics-token` accepted.
const MIN_METRICS_TOKEN: usize = 16;

async fn resolve(flag: &str, addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {flag} {addr:?}"))?
        .next()
        .with_context(|| format!("{flag} {addr:?} resolves to no address"))
}

/// A listener as the protected-mode rule sees it.
struct Exposure {
    addr: SocketAddr,
    /// Whether callers must authenticate.
    authenticated: bool,
    /// What it serves, and what a stranger could do with it.
    what: &'static str,
    harm: &'static str,
    /// The flag that turns authentication on.
    auth_flag: &'static str,
}

/// The protected-mode rule, the same for every listener: a non-loopback
/// address without authentication is refused unless `allow`
/// (--allow-unauthenticated), and then served with a loud warning.
fn protect(e: &Exposure, allow: bool) -> Result<()> {
    if e.addr.ip().is_loopback() || e.authenticated {
        return Ok(());
    }
    if !allow {
        bail!(
            "refusing to serve {} on {} without authentication: anyone who can reach it could {}. \
             Pass {}, listen on 127.0.0.1, or pass --allow-unauthenticated if the network is trusted",
            e.what,
            e.addr,
            e.harm,
            e.auth_flag
        );
    }
    warn!(addr = %e.addr, "SERVING {} WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach it can {}", e.what.to_uppercase(), e.harm);
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP listeners. Made before the server says it
/// listens: until a listener exists a signal takes its default action and
/// kills the server uncleanly (no drain, and the next start checks the whole
/// store).
///
/// SIGHUP drains and stops as SIGTERM does. Its default action killed the
/// server at once (a closed terminal, or an operator's `kill -HUP` meant as
/// "reload"), losing running tasks' results. It does not reload the tokens
/// file: a reload would leave the streams a removed token opened running,
/// so revoking stays a restart, which ends them. A SIGHUP ignored when the
/// server starts (`nohup errand serve`) stays ignored: who started it asked
/// for it to outlive its terminal.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// `None`: SIGHUP was ignored at start, and still is.
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            hup: if hangup_ignored() {
                None
            } else {
                Some(signal(SignalKind::hangup()).context("installing a SIGHUP handler")?)
            },
        })
    }

    async fn next(&mut self) {
        let Self { term, int, hup } = self;
        let hup = async {
            match hup {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup => {}
        }
    }
}

/// Whether SIGHUP's disposition is "ignore" (inherited from `nohup`).
fn hangup_ignored() -> bool {
    // SAFETY: sigaction(2) with no new action only reads the current one
    // into `old`, a zeroed (valid) struct sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP; a second one exits at
/// once.
async fn shutdown_signal(mut signals: Signals) {
    signals.next().await;
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("errand: second signal, exiting now");
        std::process::exit(130);
    });
}
