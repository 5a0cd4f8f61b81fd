//! Connecting: the database URL's checks, the bounds every connection gets
//! (statement and idle-transaction timeouts, TCP keepalives), and
//! [`PostgresStore::connect`]'s attempts at start, each bounded, retried with
//! backoff until `--database-connect-timeout-ms`.
use super::*;

/// At start, the time left for the last attempt before
/// `--database-connect-timeout-ms`: with less left, connecting gives up.
const LAST_TRY: Duration = Duration::from_millis(100);

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or `key=value` string), runs
    /// the migrations and starts the writer and the listener. While the
    /// database is unreachable it logs why and retries with backoff (up to
    /// `options.connect_timeout`); settings the database refuses (a missing
    /// or wrong password, an unknown role or database: see `errors.rs`) and
    /// a schema newer than this binary are refused at once.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let (mut config, tls) = parse_url(url).map_err(StoreError::Internal)?;
        bound_connections(&mut config, options.op_timeout);
        let target = describe(&config);
        let mut pool = pool(&config, &tls, &options)?;
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            // Each attempt, from TCP to the first query's answer, within the
            // operation timeout and what is left of the connect timeout: a
            // database that accepts connections and never answers is
            // retried (and logged) as an unreachable one is.
            let left = options
                .connect_timeout
                .map(|limit| limit.saturating_sub(started.elapsed()));
            let attempt = left.map_or(options.op_timeout, |l| l.min(options.op_timeout));
            let reached = match tokio::time::timeout(attempt, reach(&pool)).await {
                Ok(r) => r,
                Err(_) => Err(Unreached::Store(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    shown_ms(attempt)
                )))),
            };
            let outcome = match reached {
                Ok(()) => {
                    let role = config.get_user().unwrap_or("ROLE");
                    migrate(&pool, role, config.get_dbname().unwrap_or(role)).await
                }
                Err(Unreached::Tls(failure)) if config.get_ssl_mode() == SslMode::Prefer => {
                    let (TlsFailure::Refused(why) | TlsFailure::Failed(why)) = failure;
                    // libpq's `prefer`: a handshake that fails is tried
                    // again without TLS.
                    warn!(database = %target, error = %why,
                        "sslmode=prefer: the TLS handshake failed; connecting without TLS");
                    config.ssl_mode(SslMode::Disable);
                    pool = self::pool(&config, &tls, &options)?;
                    continue;
                }
                Err(Unreached::Tls(TlsFailure::Refused(why))) => Err(StoreError::Internal(why)),
                Err(Unreached::Tls(TlsFailure::Failed(why))) => Err(StoreError::Unavailable(why)),
                Err(Unreached::Store(e)) => Err(e),
            };
            match outcome {
                Ok(()) => break,
                Err(StoreError::Unavailable(why)) => {
                    // The next try after the backoff, or, when that would
                    // pass the connect timeout, a last one just before it:
                    // the whole wait is the timeout, not the backoffs that
                    // fit in it.
                    let left = options
                        .connect_timeout
                        .map(|limit| limit.saturating_sub(started.elapsed()));
                    let wait = match left {
                        Some(left) if left <= LAST_TRY => {
                            error!(database = %target, error = %why,
                                "cannot reach PostgreSQL; giving up (--database-connect-timeout-ms)");
                            return Err(StoreError::Unavailable(format!(
                                "cannot reach PostgreSQL at {target}: {why}"
                            )));
                        }
                        Some(left) => backoff.min(left - LAST_TRY),
                        None => backoff,
                    };
                    error!(database = %target, error = %why, retry_in_ms = wait.as_millis() as u64,
                        "cannot reach PostgreSQL; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
        let server_id: Arc<str> = format!(
            "{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        let (events, _) = broadcast::channel(4096);
        let (tx, rx) = batch::queue();
        let contact = Arc::new(contact::Contact::default());
        let health = Arc::new(WriteHealth::default());
        let writer = Writer {
            pool: pool.clone(),
            server_id: server_id.clone(),
            options: options.clone(),
            counters: rx.counters(),
            contact: contact.clone(),
            health: health.clone(),
        };
        let tasks = vec![
            tokio::spawn(writer.run(rx)),
            tokio::spawn(listen(
                config,
                tls,
                events.clone(),
                options.op_timeout,
                contact.clone(),
            )),
        ];
        info!(database = %target, server_id = %server_id, "PostgreSQL store ready");
        Ok(Self {
            pool,
            tx,
            server_id,
            options,
            events,
            tasks,
            steady: Default::default(),
            contact,
            health,
        })
    }
}

/// Whether `url` is a database URL this store can use, saying why not: a
/// URL that cannot work is refused at start, not retried as if the
/// database were down (an empty or hostless one; TLS settings that cannot
/// work: see `tls.rs`).
///
/// # Errors
/// What is wrong with it, in words for the operator.
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(drop)
}

/// `url`'s connection settings and the TLS connector its `ssl*`
/// parameters ask for (`tls.rs`).
pub(super) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    const FORM: &str = "use postgres://USER[:PASSWORD]@HOST:PORT/DBNAME";
    if url.trim().is_empty() {
        return Err(format!("the database URL is empty: {FORM}"));
    }
    check_shape(url)?;
    let (rest, ssl_mode, tls) = tls_settings(url)?;
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| format!("the database URL is not valid ({e}): {FORM}"))?;
    if config.get_hosts().is_empty() {
        return Err(format!("the database URL names no host: {FORM}"));
    }
    // An sslmode the driver found where `tls_settings` did not (after an
    // unencoded `?` or `@` in the password) must not be overridden unseen.
    if config.get_ssl_mode() != SslMode::Prefer {
        return Err(format!(
            "the database URL's sslmode could not be read: percent-encode `?`, `@` and `&` \
             in the user name and password ({FORM})"
        ));
    }
    if config.get_ssl_negotiation() == tokio_postgres::config::SslNegotiation::Direct {
        return Err("sslnegotiation=direct is not supported: leave it out (postgres)".into());
    }
    // As libpq: TLS is not used over Unix-domain sockets, whatever sslmode says.
    let unix =
        |h: &tokio_postgres::config::Host| matches!(h, tokio_postgres::config::Host::Unix(_));
    let ssl_mode = if config.get_hosts().iter().all(unix) {
        SslMode::Disable
    } else {
        ssl_mode
    };
    config.ssl_mode(ssl_mode);
    Ok((config, tls))
}

/// Refuses a URL that is neither a `postgres://` (`postgresql://`) URL nor
/// `key=value` settings, saying what is supported; the driver's own words
/// for it ("... has no value (key=value)") say neither, and repeat the URL
/// with any password in it. Never repeats the URL.
fn check_shape(url: &str) -> Result<(), String> {
    const SUPPORTED: &str = "write postgres://USER[:PASSWORD]@HOST:PORT/DBNAME (or \
                             postgresql://...), or key=value settings such as \
                             `host=HOST user=USER dbname=DBNAME`";
    let url = url.trim_start();
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    if let Some((scheme, _)) = url.split_once("://")
        && !scheme.is_empty()
        && scheme.chars().all(scheme_char)
    {
        if matches!(scheme, "postgres" | "postgresql") {
            return Ok(());
        }
        let shown: String = scheme.chars().take(32).collect();
        let sqlite = if shown.to_ascii_lowercase().starts_with("sqlite") {
            "; for SQLite, use --store sqlite (the default) with --data-dir DIR, not a URL"
        } else {
            ""
        };
        return Err(format!(
            "the database URL's scheme `{shown}://` is not supported: errand's shared store \
             is PostgreSQL only: {SUPPORTED}{sqlite}"
        ));
    }
    // key=value settings start with a key and `=`.
    let key = url
        .split(|c: char| c == '=' || c.is_whitespace())
        .next()
        .unwrap_or_default();
    let after_key = url[key.len()..].trim_start();
    if !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && after_key.starts_with('=')
    {
        return Ok(());
    }
    Err(format!(
        "the database URL is neither a postgres:// URL nor key=value settings: {SUPPORTED}"
    ))
}

/// Runs `op` (store operation `what`) within `limit`; past it, logs and
/// answers UNAVAILABLE, as a stopped database does. Dropping `op` is safe:
/// an open transaction is rolled back (tokio-postgres sends ROLLBACK when
/// one is dropped unfinished); a commit already sent may still land, as
/// when a connection breaks at commit, so UNAVAILABLE means "not known to
/// be done": a submit retried with its idempotency key is stored once.
pub(super) async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    bounded_within(limit, limit, what, op).await
}

/// [`bounded`] to `limit`, what is left of a `budget` that the message
/// names (the writer's retries share one).
pub(super) async fn bounded_within<T>(
    limit: Duration,
    budget: Duration,
    what: &'static str,
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, op).await {
        Ok(r) => r,
        Err(_) => {
            let ms = shown_ms(budget);
            warn!(
                operation = what,
                timeout_ms = ms,
                "PostgreSQL did not answer in time"
            );
            Err(StoreError::Unavailable(format!(
                "the database did not answer within {ms} ms ({what})"
            )))
        }
    }
}

/// `d` in whole milliseconds, rounded: what is left of a 2 s budget after a
/// few microseconds reads "2000 ms", not "1999 ms".
fn shown_ms(d: Duration) -> u64 {
    (d.as_secs_f64() * 1000.0).round() as u64
}

/// Settings on every connection so that a silent database or a dead
/// network is noticed, not waited on for ever: TCP connect within `limit`,
/// keepalives after 10 s idle and unacknowledged data for at most `limit`
/// (a blackholed connection closes, and the pool drops it), and on the
/// server `statement_timeout` at `limit` and an idle transaction ended
/// after twice it (a server cut off mid-transaction does not hold row
/// locks). Settings the URL gives are kept.
pub(super) fn bound_connections(config: &mut tokio_postgres::Config, limit: Duration) {
    let ms = limit.as_millis().max(1);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(limit);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(limit);
    }
    // tokio-postgres's default idle time before the first probe is 2 h.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(10));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(2));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    let ours = format!(
        "-c statement_timeout={ms} -c idle_in_transaction_session_timeout={}",
        ms * 2
    );
    let options = match config.get_options() {
        // The URL's own settings come last, so they win.
        Some(theirs) if !theirs.is_empty() => format!("{ours} {theirs}"),
        _ => ours,
    };
    config.options(options);
}

/// One connection from the pool and a query's answer: the database is
/// there and answering.
async fn reach(pool: &Pool) -> Result<(), Unreached> {
    let client = pool.get().await.map_err(|e| match &e {
        deadpool_postgres::PoolError::Backend(b) => match tls_failure(b) {
            Some(failure) => Unreached::Tls(failure),
            None => Unreached::Store(pool_error(e)),
        },
        _ => Unreached::Store(pool_error(e)),
    })?;
    (client.simple_query("SELECT 1").await).map_err(|e| Unreached::Store(pg_error(e)))?;
    Ok(())
}

/// Why the database was not reached at start.
enum Unreached {
    /// A failed TLS handshake: a refused one fails the start at once, any
    /// other is retried; `sslmode=prefer` goes on without TLS either way.
    Tls(TlsFailure),
    Store(StoreError),
}

/// The connection pool. A checkout waits for a free connection, or makes
/// one (TCP, startup), within the operation timeout: never for ever.
fn pool(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    options: &PostgresOptions,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(2))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(options.op_timeout))
        .create_timeout(Some(options.op_timeout))
        .recycle_timeout(Some(options.op_timeout))
        .build()
        .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default)");
    format!("{host}:{port}/{db}")
}
