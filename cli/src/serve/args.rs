//! The flags of `errand serve`: one per setting of the server's `Config`,
//! each with an `ERRAND_*` environment variable, and defaults read from
//! `Config::default()` so they are written once, in the server crate.
use std::{path::PathBuf, sync::LazyLock, time::Duration};

use clap::{Args as ClapArgs, ValueEnum};
use errand_server::config::{
    A2aOptions, Config, ConfigError, Connections, Delivery, Limits, McpOptions, MetricsOptions,
    PostgresOptions, UiOptions,
};

static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed as "errand listening on ADDR".
    #[arg(long, env = "ERRAND_LISTEN", default_value = "127.0.0.1:7466")]
    pub listen: String,
    /// Where the durable store keeps its data.
    #[arg(long, env = "ERRAND_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Where tasks and completions are kept.
    #[arg(long, env = "ERRAND_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// The PostgreSQL database of `--store postgres`, as a URL
    /// (postgres://USER[:PASSWORD]@HOST:PORT/DBNAME) or key=value string.
    /// Every server pointed at one database acts as one service. TLS as in
    /// libpq: ?sslmode=verify-full&sslrootcert=CA.pem (or =system).
    #[arg(long, env = "ERRAND_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// With --store postgres: how long a task claimed by this server stays
    /// its own without renewal; a server that dies loses its tasks to the
    /// others after this long. At least 300.
    #[arg(long, env = "ERRAND_LEASE_MS", default_value_t = ms(DEFAULTS.postgres.lease))]
    pub lease_ms: u64,
    /// With --store postgres: connections in the pool (reads, claims,
    /// renewals; the writer takes one). At least 2.
    #[arg(long, env = "ERRAND_DATABASE_POOL_SIZE", default_value_t = DEFAULTS.postgres.pool_size)]
    pub database_pool_size: usize,
    /// With --store postgres: give up at start when the database is still
    /// unreachable after this many milliseconds (default: keep trying).
    #[arg(long, env = "ERRAND_DATABASE_CONNECT_TIMEOUT_MS")]
    pub database_connect_timeout_ms: Option<u64>,
    /// With --store postgres: the longest one database operation (a
    /// connection, a query, a commit with its retries) may take before the
    /// call fails with UNAVAILABLE, so a database that accepts connections
    /// but never answers fails calls as a stopped one does; also each
    /// connection's statement_timeout. Keep it at most --lease-ms: a lease
    /// renewal stuck on a connection the network dropped is retried on
    /// another only after it.
    #[arg(long, env = "ERRAND_DATABASE_TIMEOUT_MS", default_value_t = ms(DEFAULTS.postgres.op_timeout))]
    pub database_timeout_ms: u64,
    /// Serve a non-loopback address with no authentication (the gRPC
    /// listener without --tokens-file, metrics without --metrics-token).
    /// Anyone who can reach the address can then submit tasks and serve
    /// tools, or read every tenant's metrics.
    #[arg(
        long,
        env = "ERRAND_ALLOW_UNAUTHENTICATED",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_unauthenticated: bool,
    /// Require bearer tokens listed (hashed) in this file; see `errand token new`.
    #[arg(long, env = "ERRAND_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM). Needs --tls-key.
    #[arg(long, env = "ERRAND_SERVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "ERRAND_SERVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "ERRAND_SERVE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve MCP (protocol 2026-07-28 with the Tasks extension) on
    /// http://ADDR/mcp, on its own listener; off by default.
    #[arg(long, env = "ERRAND_MCP_LISTEN")]
    pub mcp_listen: Option<String>,
    /// The errand session of MCP requests without an `Errand-Session` header.
    #[arg(long, env = "ERRAND_MCP_DEFAULT_SESSION", default_value_t = DEFAULTS.mcp.default_session.clone())]
    pub mcp_default_session: String,
    /// The `pollIntervalMs` suggested to MCP Tasks clients, in milliseconds.
    #[arg(long, env = "ERRAND_MCP_POLL_INTERVAL_MS", default_value_t = ms(DEFAULTS.mcp.poll_interval))]
    pub mcp_poll_interval_ms: u64,
    /// A `Host` name the MCP listener accepts (repeat, or comma-separate in
    /// the variable); default: loopback names only, against DNS rebinding
    /// (an IP address is always accepted).
    #[arg(long, env = "ERRAND_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub mcp_allowed_host: Vec<String>,
    /// Serve A2A 1.0 on its own listener, off by default: the agent card at
    /// http://ADDR/.well-known/agent-card.json, JSON-RPC at /jsonrpc,
    /// HTTP+JSON at /rest and gRPC (lf.a2a.v1.A2AService, h2c), one port.
    #[arg(long, env = "ERRAND_A2A_LISTEN")]
    pub a2a_listen: Option<String>,
    /// The base URL (http(s)://host[:port]) the agent card gives for every
    /// binding; default: http:// and the --a2a-listen address.
    #[arg(long, env = "ERRAND_A2A_PUBLIC_URL")]
    pub a2a_public_url: Option<String>,
    /// A `Host` name the A2A listener accepts besides the public URL's
    /// (repeat, or comma-separate in the variable); default: loopback names
    /// only (an IP address is always accepted).
    #[arg(long, env = "ERRAND_A2A_ALLOWED_HOSTS", value_delimiter = ',')]
    pub a2a_allowed_host: Vec<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (https with
    /// --tls-cert, and a client certificate with --tls-client-ca, as the
    /// gRPC port). A non-loopback address needs --metrics-token (or
    /// --allow-unauthenticated).
    #[arg(long, env = "ERRAND_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve the dashboard on http://ADDR/ (off by default; https with
    /// --tls-cert, and a client certificate with --tls-client-ca, as the
    /// gRPC port). Loopback only unless --tokens-file is set: then it asks
    /// for an agent token.
    #[arg(long, env = "ERRAND_UI_LISTEN")]
    pub ui_listen: Option<String>,
    /// A `Host` name the dashboard accepts (repeat, or comma-separate in the
    /// variable); default: loopback names only, against DNS rebinding (an IP
    /// address is always accepted).
    #[arg(long, env = "ERRAND_UI_ALLOWED_HOSTS", value_delimiter = ',')]
    pub ui_allowed_host: Vec<String>,
    /// A `Host` name the metrics listener accepts without --metrics-token
    /// (repeat, or comma-separate in the variable); default: loopback names
    /// only, against DNS rebinding (an IP address is always accepted; with a
    /// token, any name).
    #[arg(long, env = "ERRAND_METRICS_ALLOWED_HOSTS", value_delimiter = ',')]
    pub metrics_allowed_host: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` on /metrics (at least 16
    /// characters; prefer the environment variable to the flag, which other
    /// local users can see).
    #[arg(long, env = "ERRAND_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// On SIGTERM, how long running tasks may take to finish before exiting, in seconds.
    #[arg(long, env = "ERRAND_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULTS.shutdown_grace.as_secs())]
    pub shutdown_grace_secs: u64,
    /// Timeout of a run when neither the submit nor the tool sets one, in
    /// milliseconds. At most --max-timeout-ms.
    #[arg(long, env = "ERRAND_DEFAULT_TIMEOUT_MS", default_value_t = ms(DEFAULTS.default_timeout))]
    pub default_timeout_ms: u64,
    /// How long a call may wait for a worker, counted from submit, when
    /// neither the submit nor the tool sets it, in milliseconds; a call still
    /// queued then completes as TIMED_OUT (queue_timeout).
    #[arg(long, env = "ERRAND_DEFAULT_QUEUE_TIMEOUT_MS", default_value_t = ms(DEFAULTS.default_queue_timeout))]
    pub default_queue_timeout_ms: u64,
    /// Longest timeout a submit or a tool may set, in milliseconds.
    #[arg(long, env = "ERRAND_MAX_TIMEOUT_MS", default_value_t = ms(DEFAULTS.limits.max_timeout))]
    pub max_timeout_ms: u64,
    /// Dispatches of one task before a lost worker fails it. At least 1.
    #[arg(long, env = "ERRAND_MAX_ATTEMPTS", default_value_t = DEFAULTS.max_attempts)]
    pub max_attempts: u32,
    /// How long a connecting worker may take to register, in milliseconds.
    #[arg(long, env = "ERRAND_REGISTER_TIMEOUT_MS", default_value_t = ms(DEFAULTS.register_timeout))]
    pub register_timeout_ms: u64,
    /// Queued plus running tasks allowed per session.
    #[arg(long, env = "ERRAND_MAX_PENDING_PER_SESSION", default_value_t = DEFAULTS.limits.max_pending_per_session)]
    pub max_pending_per_session: usize,
    /// Queued plus running tasks allowed per tenant, all sessions together.
    #[arg(long, env = "ERRAND_MAX_PENDING_PER_TENANT", default_value_t = DEFAULTS.limits.max_pending_per_tenant)]
    pub max_pending_per_tenant: usize,
    /// Bytes of arguments the queued plus running tasks of one tenant may
    /// hold, all sessions together; past it a submit is refused
    /// (RESOURCE_EXHAUSTED) until some finish. The server keeps unfinished
    /// tasks' arguments in memory, and the count limits alone do not bound
    /// them (100,000 tasks of 256 KiB are 26 GB): the default of 1 GiB
    /// bounds them to 1 GiB per tenant. At least --max-arguments-bytes.
    #[arg(long, env = "ERRAND_MAX_PENDING_BYTES_PER_TENANT", default_value_t = DEFAULTS.limits.max_pending_bytes_per_tenant)]
    pub max_pending_bytes_per_tenant: usize,
    /// Open Completions streams allowed per tenant.
    #[arg(long, env = "ERRAND_MAX_STREAMS_PER_TENANT", default_value_t = DEFAULTS.limits.max_streams_per_tenant)]
    pub max_streams_per_tenant: usize,
    /// Connected workers allowed per tenant.
    #[arg(long, env = "ERRAND_MAX_WORKERS_PER_TENANT", default_value_t = DEFAULTS.limits.max_workers_per_tenant)]
    pub max_workers_per_tenant: usize,
    /// SubmitTool calls per second per token (bursts of one second's worth;
    /// 0: no limit). Applies with --tokens-file.
    #[arg(long, env = "ERRAND_SUBMITS_PER_SECOND", default_value_t = DEFAULTS.limits.submits_per_second_per_token)]
    pub submits_per_second: u32,
    /// Calls without a valid token one peer address may make per minute
    /// before it is told to wait (RESOURCE_EXHAUSTED, retry-after-ms); 0: no
    /// throttle. Every failure is counted in errand_auth_failures_total.
    #[arg(long, env = "ERRAND_AUTH_FAILURES_PER_MINUTE", default_value_t = DEFAULTS.limits.auth_failures_per_minute)]
    pub auth_failures_per_minute: u32,
    /// Calls of any RPC per second per tenant (a stream counts once, when
    /// opened; bursts of one second's worth; 0: no limit). Applies with
    /// --tokens-file. Refused calls get RESOURCE_EXHAUSTED with retry-after-ms.
    #[arg(long, env = "ERRAND_REQUESTS_PER_SECOND_PER_TENANT", default_value_t = DEFAULTS.limits.requests_per_second_per_tenant)]
    pub requests_per_second_per_tenant: u32,
    /// Tools one tenant may have registered, served or not. Past it, a
    /// registration first forgets tools no worker serves and no queued task
    /// needs; at least --max-tools-per-worker.
    #[arg(long, env = "ERRAND_MAX_TOOLS_PER_TENANT", default_value_t = DEFAULTS.limits.max_tools_per_tenant)]
    pub max_tools_per_tenant: usize,
    /// Forget a tool no worker has served for this long and no queued task
    /// needs, in seconds.
    #[arg(long, env = "ERRAND_TOOL_RETENTION_SECS", default_value_t = DEFAULTS.tool_retention.as_secs())]
    pub tool_retention_secs: u64,
    /// Longest session ID accepted, in bytes.
    #[arg(long, env = "ERRAND_MAX_SESSION_ID_BYTES", default_value_t = DEFAULTS.limits.max_session_id_bytes)]
    pub max_session_id_bytes: usize,
    /// Longest idempotency key accepted, in bytes.
    #[arg(long, env = "ERRAND_MAX_IDEMPOTENCY_KEY_BYTES", default_value_t = DEFAULTS.limits.max_idempotency_key_bytes)]
    pub max_idempotency_key_bytes: usize,
    /// Largest arguments_json accepted, in bytes.
    #[arg(long, env = "ERRAND_MAX_ARGUMENTS_BYTES", default_value_t = DEFAULTS.limits.max_arguments_bytes)]
    pub max_arguments_bytes: usize,
    /// Largest result (or error message) a worker may send, in bytes; a
    /// larger one fails the task.
    #[arg(long, env = "ERRAND_MAX_RESULT_BYTES", default_value_t = DEFAULTS.limits.max_result_bytes)]
    pub max_result_bytes: usize,
    /// Most bytes of a result delivered inline on a completion when neither
    /// the submit nor the tool sets a budget (about 4 bytes per token); a
    /// larger result is delivered as a preview and read with ReadResult.
    #[arg(long, env = "ERRAND_RESULT_BUDGET_BYTES", default_value_t = DEFAULTS.limits.result_budget_bytes)]
    pub result_budget_bytes: usize,
    /// The largest result budget a submit or a tool may ask for, in bytes.
    #[arg(long, env = "ERRAND_MAX_RESULT_BUDGET_BYTES", default_value_t = DEFAULTS.limits.max_result_budget_bytes)]
    pub max_result_budget_bytes: usize,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "ERRAND_MAX_MESSAGE_BYTES", default_value_t = DEFAULTS.limits.max_message_bytes)]
    pub max_message_bytes: usize,
    /// Tools one worker may register.
    #[arg(long, env = "ERRAND_MAX_TOOLS_PER_WORKER", default_value_t = DEFAULTS.limits.max_tools_per_worker)]
    pub max_tools_per_worker: usize,
    /// Highest max_concurrency a worker may register with.
    #[arg(long, env = "ERRAND_MAX_WORKER_CONCURRENCY", default_value_t = DEFAULTS.limits.max_worker_concurrency)]
    pub max_worker_concurrency: u32,
    /// Longest tool description accepted, in bytes.
    #[arg(long, env = "ERRAND_MAX_DESCRIPTION_BYTES", default_value_t = DEFAULTS.limits.max_description_bytes)]
    pub max_description_bytes: usize,
    /// Largest tool input JSON Schema accepted, in bytes.
    #[arg(long, env = "ERRAND_MAX_SCHEMA_BYTES", default_value_t = DEFAULTS.limits.max_schema_bytes)]
    pub max_schema_bytes: usize,
    /// Completions buffered per open stream before it waits for its client.
    #[arg(long, env = "ERRAND_STREAM_BUFFER", default_value_t = DEFAULTS.limits.stream_buffer)]
    pub stream_buffer: usize,
    /// Bytes of completions buffered per open stream before it waits for
    /// its client (one larger completion goes alone).
    #[arg(long, env = "ERRAND_STREAM_BUFFER_BYTES", default_value_t = DEFAULTS.limits.stream_buffer_bytes)]
    pub stream_buffer_bytes: usize,
    /// How long finished tasks and completions are kept, in seconds.
    #[arg(long, env = "ERRAND_RETENTION_SECS", default_value_t = DEFAULTS.retention.as_secs())]
    pub retention_secs: u64,
    /// How often expired tasks and completions are purged, in milliseconds.
    #[arg(long, env = "ERRAND_PURGE_INTERVAL_MS", default_value_t = ms(DEFAULTS.purge_interval))]
    pub purge_interval_ms: u64,
    /// Open connections per listener, all peers together (lowered at start
    /// to what the open-files limit allows).
    #[arg(long, env = "ERRAND_MAX_CONNECTIONS", default_value_t = DEFAULTS.connections.max_connections)]
    pub max_connections: usize,
    /// Open connections per listener from one IP address.
    #[arg(long, env = "ERRAND_MAX_CONNECTIONS_PER_PEER", default_value_t = DEFAULTS.connections.max_connections_per_peer)]
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first bytes (HTTP/2
    /// preface or TLS hello), and to finish a TLS handshake, in
    /// milliseconds; then it is closed.
    #[arg(long, env = "ERRAND_HANDSHAKE_TIMEOUT_MS", default_value_t = ms(DEFAULTS.connections.handshake_timeout))]
    pub handshake_timeout_ms: u64,
    /// A connection whose peer sends nothing for this long is closed, in
    /// milliseconds (the server pings quiet peers every 15 s, or every third
    /// of this when shorter, and live HTTP/2 peers answer).
    #[arg(long, env = "ERRAND_IDLE_TIMEOUT_MS", default_value_t = ms(DEFAULTS.connections.idle_timeout))]
    pub idle_timeout_ms: u64,
    /// HTTP/2 streams (concurrent RPCs) one connection may have open.
    #[arg(long, env = "ERRAND_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULTS.connections.max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (all metadata of one request), in bytes; a
    /// gRPC call over it gets RESOURCE_EXHAUSTED (HTTP/2 takes up to 4x, so
    /// that such a call can be answered).
    #[arg(long, env = "ERRAND_MAX_HEADER_LIST_BYTES", default_value_t = DEFAULTS.connections.max_header_list_bytes)]
    pub max_header_list_bytes: u32,
    /// HTTP/2 flow-control window per stream, in bytes.
    #[arg(long, env = "ERRAND_STREAM_WINDOW_BYTES", default_value_t = DEFAULTS.connections.stream_window_bytes)]
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection, in bytes.
    #[arg(long, env = "ERRAND_CONNECTION_WINDOW_BYTES", default_value_t = DEFAULTS.connections.connection_window_bytes)]
    pub connection_window_bytes: u32,
    /// Least time between two progress events of one task on one
    /// SessionEvents stream (the latest report wins): milliseconds (500) or
    /// with a unit (500ms, 2s).
    #[arg(long, env = "ERRAND_PROGRESS_INTERVAL", default_value = "500ms", value_parser = errand_server::config::parse_duration)]
    pub progress_interval: Duration,
    /// How completions reach the model when neither the submit nor the
    /// tool says: when-idle (between turns), interrupt (at once), silent
    /// (never starts a turn).
    #[arg(long, env = "ERRAND_DEFAULT_DELIVERY", value_enum, default_value_t = DeliveryArg::WhenIdle)]
    pub default_delivery: DeliveryArg,
    /// Log format on stderr.
    #[arg(long, env = "ERRAND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreKind {
    /// SQLite in --data-dir: every accepted task survives a crash.
    Sqlite,
    /// In memory: fast, and gone when the server stops.
    Memory,
    /// PostgreSQL at --database-url, shared by every server pointed at it.
    Postgres,
}

/// A delivery policy as `--default-delivery` names it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryArg {
    WhenIdle,
    Interrupt,
    Silent,
}

impl From<DeliveryArg> for Delivery {
    fn from(d: DeliveryArg) -> Self {
        match d {
            DeliveryArg::WhenIdle => Delivery::WhenIdle,
            DeliveryArg::Interrupt => Delivery::Interrupt,
            DeliveryArg::Silent => Delivery::Silent,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("errand")
}

impl Args {
    /// The server's configuration from these flags, checked.
    ///
    /// # Errors
    /// The first out-of-range value, naming its flag ([`Config::validate`]).
    pub fn config(&self) -> Result<Config, ConfigError> {
        let config = Config {
            limits: Limits {
                max_session_id_bytes: self.max_session_id_bytes,
                max_idempotency_key_bytes: self.max_idempotency_key_bytes,
                max_arguments_bytes: self.max_arguments_bytes,
                max_result_bytes: self.max_result_bytes,
                max_pending_per_session: self.max_pending_per_session,
                max_message_bytes: self.max_message_bytes,
                max_tools_per_worker: self.max_tools_per_worker,
                max_worker_concurrency: self.max_worker_concurrency,
                max_description_bytes: self.max_description_bytes,
                max_schema_bytes: self.max_schema_bytes,
                max_timeout: Duration::from_millis(self.max_timeout_ms),
                max_pending_per_tenant: self.max_pending_per_tenant,
                max_pending_bytes_per_tenant: self.max_pending_bytes_per_tenant,
                max_streams_per_tenant: self.max_streams_per_tenant,
                max_workers_per_tenant: self.max_workers_per_tenant,
                submits_per_second_per_token: self.submits_per_second,
                auth_failures_per_minute: self.auth_failures_per_minute,
                requests_per_second_per_tenant: self.requests_per_second_per_tenant,
                max_tools_per_tenant: self.max_tools_per_tenant,
                stream_buffer: self.stream_buffer,
                stream_buffer_bytes: self.stream_buffer_bytes,
                result_budget_bytes: self.result_budget_bytes,
                max_result_budget_bytes: self.max_result_budget_bytes,
            },
            default_timeout: Duration::from_millis(self.default_timeout_ms),
            default_queue_timeout: Duration::from_millis(self.default_queue_timeout_ms),
            max_attempts: self.max_attempts,
            retention: Duration::from_secs(self.retention_secs),
            purge_interval: Duration::from_millis(self.purge_interval_ms),
            register_timeout: Duration::from_millis(self.register_timeout_ms),
            tool_retention: Duration::from_secs(self.tool_retention_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            postgres: PostgresOptions {
                lease: Duration::from_millis(self.lease_ms),
                max_pending_per_session: self.max_pending_per_session,
                pool_size: self.database_pool_size,
                connect_timeout: self.database_connect_timeout_ms.map(Duration::from_millis),
                op_timeout: Duration::from_millis(self.database_timeout_ms),
            },
            mcp: McpOptions {
                default_session: self.mcp_default_session.clone(),
                poll_interval: Duration::from_millis(self.mcp_poll_interval_ms),
                allowed_hosts: self.mcp_allowed_host.clone(),
            },
            a2a: A2aOptions {
                public_url: self.a2a_public_url.clone(),
                allowed_hosts: self.a2a_allowed_host.clone(),
            },
            ui: UiOptions {
                allowed_hosts: self.ui_allowed_host.clone(),
            },
            metrics: MetricsOptions {
                allowed_hosts: self.metrics_allowed_host.clone(),
            },
            connections: Connections {
                max_connections: self.max_connections,
                max_connections_per_peer: self.max_connections_per_peer,
                handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                max_concurrent_streams: self.max_concurrent_streams,
                max_header_list_bytes: self.max_header_list_bytes,
                stream_window_bytes: self.stream_window_bytes,
                connection_window_bytes: self.connection_window_bytes,
            },
            progress_interval: self.progress_interval,
            default_delivery: self.default_delivery.into(),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Args,
    }

    fn parse(flags: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .expect("the flags parse")
            .serve
    }

    #[test]
    fn no_flags_give_the_default_config() {
        let config = parse(&[]).config().unwrap();
        let d = Config::default();
        assert_eq!(format!("{:?}", config.limits), format!("{:?}", d.limits));
        assert_eq!(
            format!("{:?}", config.postgres),
            format!("{:?}", d.postgres)
        );
        assert_eq!(config.default_timeout, d.default_timeout);
        assert_eq!(config.default_queue_timeout, d.default_queue_timeout);
        assert_eq!(config.max_attempts, d.max_attempts);
        assert_eq!(config.retention, d.retention);
        assert_eq!(config.purge_interval, d.purge_interval);
        assert_eq!(config.register_timeout, d.register_timeout);
        assert_eq!(config.shutdown_grace, d.shutdown_grace);
        assert_eq!(config.progress_interval, d.progress_interval);
        assert_eq!(config.default_delivery, d.default_delivery);
        assert_eq!(
            format!("{:?}", config.connections),
            format!("{:?}", d.connections)
        );
    }

    #[test]
    fn the_progress_interval_takes_milliseconds_or_a_unit() {
        for (flag, ms) in [("250", 250), ("250ms", 250), ("2s", 2000)] {
            let c = parse(&["--progress-interval", flag]).config().unwrap();
            assert_eq!(c.progress_interval, Duration::from_millis(ms), "{flag}");
        }
        let zero = parse(&["--progress-interval", "0"]).config().unwrap_err();
        assert_eq!(zero.flag, "progress-interval");
        assert!(Cli::try_parse_from(["serve", "--progress-interval", "soon"]).is_err());
        let c = parse(&["--default-delivery", "interrupt"])
            .config()
            .unwrap();
        assert_eq!(c.default_delivery, Delivery::Interrupt);
    }

    #[test]
    fn every_connection_bound_is_a_flag() {
        let c = parse(&[
            "--max-connections=1",
            "--max-connections-per-peer=2",
            "--handshake-timeout-ms=3",
            "--idle-timeout-ms=4",
            "--max-concurrent-streams=5",
            "--max-header-list-bytes=6000",
            "--stream-window-bytes=70000",
            "--connection-window-bytes=80000",
        ])
        .config()
        .unwrap()
        .connections;
        assert_eq!((c.max_connections, c.max_connections_per_peer), (1, 2));
        assert_eq!(c.handshake_timeout, Duration::from_millis(3));
        assert_eq!(c.idle_timeout, Duration::from_millis(4));
        assert_eq!(
            (
                c.max_concurrent_streams,
                c.max_header_list_bytes,
                c.stream_window_bytes,
                c.connection_window_bytes
            ),
            (5, 6000, 70_000, 80_000)
        );
    }

    #[test]
    fn every_limit_is_a_flag() {
        let config = parse(&[
            "--max-session-id-bytes=1",
            "--max-idempotency-key-bytes=2",
            "--max-result-bytes=3",
            "--max-tools-per-worker=4",
            "--max-worker-concurrency=5",
            "--max-description-bytes=6",
            "--max-schema-bytes=7",
            "--max-timeout-ms=8000",
            "--default-timeout-ms=8000",
            "--default-queue-timeout-ms=8000",
            "--stream-buffer=9",
            "--stream-buffer-bytes=15",
            "--register-timeout-ms=10",
            "--database-pool-size=11",
            "--database-connect-timeout-ms=12",
            "--database-timeout-ms=14",
            "--max-pending-per-session=13",
        ])
        .config()
        .unwrap();
        let l = &config.limits;
        assert_eq!(
            (
                l.max_session_id_bytes,
                l.max_idempotency_key_bytes,
                l.max_result_bytes,
                l.max_tools_per_worker,
                l.max_worker_concurrency,
                l.max_description_bytes,
                l.max_schema_bytes,
                l.stream_buffer
            ),
            (1, 2, 3, 4, 5, 6, 7, 9)
        );
        assert_eq!(l.stream_buffer_bytes, 15);
        assert_eq!(l.max_timeout, Duration::from_secs(8));
        assert_eq!(config.register_timeout, Duration::from_millis(10));
        assert_eq!(config.postgres.pool_size, 11);
        assert_eq!(
            config.postgres.connect_timeout,
            Some(Duration::from_millis(12))
        );
        assert_eq!(config.postgres_options().max_pending_per_session, 13);
        assert_eq!(config.postgres.op_timeout, Duration::from_millis(14));
    }

    #[test]
    fn the_abuse_limits_are_flags() {
        let config = parse(&[
            "--max-tools-per-tenant=300",
            "--requests-per-second-per-tenant=7",
            "--tool-retention-secs=60",
        ])
        .config()
        .unwrap();
        assert_eq!(config.limits.max_tools_per_tenant, 300);
        assert_eq!(config.limits.requests_per_second_per_tenant, 7);
        assert_eq!(config.tool_retention, Duration::from_secs(60));
        let e = parse(&["--max-tools-per-tenant=10"]).config().unwrap_err();
        assert!(e.to_string().contains("ERRAND_MAX_TOOLS_PER_TENANT"), "{e}");
    }

    #[test]
    fn a_bad_value_is_an_error_not_a_clamp() {
        for (flag, expected) in [
            (
                "--max-attempts=0",
                "invalid --max-attempts (ERRAND_MAX_ATTEMPTS): 0 is below the minimum, 1",
            ),
            (
                "--purge-interval-ms=0",
                "invalid --purge-interval-ms (ERRAND_PURGE_INTERVAL_MS): must be more than 0",
            ),
            (
                "--lease-ms=100",
                "invalid --lease-ms (ERRAND_LEASE_MS): 100 ms is under the shortest lease, 300 ms",
            ),
        ] {
            let err = parse(&[flag]).config().expect_err("refused");
            assert_eq!(err.to_string(), expected);
        }
    }
}
