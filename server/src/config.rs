//! Server configuration: every tunable of the server, its default (written
//! here once) and its check ([`Config::validate`]).
//!
//! `errand serve` takes its flag defaults from [`Config::default`] and has
//! one flag per field, named after it (`max_attempts` is `--max-attempts`,
//! durations carry their unit: `default_timeout` is `--default-timeout-ms`).
//! What the server is handed at run time rather than configured with (the
//! loaded tokens, TLS material, a bound metrics listener) is
//! `server::Options`.
use std::time::Duration;

/// How the server behaves. `Default` gives the values `errand serve` uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Timeout of a run when neither the submit nor the tool sets one; at
    /// most `limits.max_timeout`.
    pub default_timeout: Duration,
    /// How long a call may wait for a worker, counted from submit, when
    /// neither the submit nor the tool sets it; > 0. At most `max_timeout`.
    pub default_queue_timeout: Duration,
    /// Dispatches of one task before a lost worker fails it for good; ≥ 1.
    pub max_attempts: u32,
    /// How long finished tasks and their completions are kept.
    pub retention: Duration,
    /// How often expired tasks and completions are purged; > 0.
    pub purge_interval: Duration,
    /// How long a connecting worker may take to send `Register`; > 0.
    pub register_timeout: Duration,
    /// A tool no connected worker has served for this long, and that no
    /// queued task needs, is forgotten (it is NOT_FOUND until a worker
    /// registers it again); > 0.
    pub tool_retention: Duration,
    /// On shutdown, how long running tasks may take to finish before the
    /// server stops anyway (they are then run again at the next start).
    pub shutdown_grace: Duration,
    /// The PostgreSQL store's settings (used with `--store postgres`).
    pub postgres: PostgresOptions,
    /// What one connection, and one peer, may hold on every listener.
    pub connections: Connections,
    /// The MCP front end's settings (used with `--mcp-listen`).
    pub mcp: McpOptions,
}

/// How the MCP front end behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The session of MCP requests without an `Errand-Session` header.
    pub default_session: String,
    /// The `pollIntervalMs` suggested to Tasks clients; > 0.
    pub poll_interval: Duration,
    /// `Host` header values accepted on the MCP listener (a guard against DNS
    /// rebinding); empty: loopback names only.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            default_session: "mcp".into(),
            poll_interval: Duration::from_secs(1),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Bounds on connections, the same on every listener (gRPC, metrics, and
/// the HTTP ones to come): see [`crate::net`].
#[derive(Debug, Clone)]
pub struct Connections {
    /// Open connections of a listener, all peers together; at least 1.
    /// Lowered at start to what the open-files limit leaves room for.
    pub max_connections: usize,
    /// Open connections from one IP address; at least 1.
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first bytes (the
    /// HTTP/2 preface or a TLS hello); > 0.
    pub handshake_timeout: Duration,
    /// A connection whose peer sends nothing for this long is closed; > 0.
    /// Live gRPC peers answer the server's pings every 15 s.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once; at least 1.
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (all headers of one request), in bytes;
    /// at least 1024.
    pub max_header_list_bytes: u32,
    /// HTTP/2 flow-control window of one stream, in bytes: what a peer may
    /// send on it before the server reads; 65,535 to 2^31-1.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window of a connection, all streams together, in
    /// bytes; 65,535 to 2^31-1.
    pub connection_window_bytes: u32,
}

/// Bounds on what clients may make the server hold. Sizes are in bytes;
/// every bound is at least 1.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest session ID.
    pub max_session_id_bytes: usize,
    /// Longest idempotency key.
    pub max_idempotency_key_bytes: usize,
    /// Largest `arguments_json` of a submit.
    pub max_arguments_bytes: usize,
    /// Largest result (or error message) a worker may send.
    pub max_result_bytes: usize,
    /// Queued plus running tasks of one session.
    pub max_pending_per_session: usize,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// Tools one worker may register.
    pub max_tools_per_worker: usize,
    /// Tools one tenant may have registered, served or not. A registration
    /// past it first forgets the tenant's tools that no worker serves and
    /// no queued task needs, longest unserved first.
    pub max_tools_per_tenant: usize,
    /// Highest `max_concurrency` a worker may register with.
    pub max_worker_concurrency: u32,
    /// Longest tool description.
    pub max_description_bytes: usize,
    /// Largest tool input JSON Schema.
    pub max_schema_bytes: usize,
    /// Longest timeout a submit or a tool may set.
    pub max_timeout: Duration,
    /// Queued plus running tasks of one tenant, all sessions together.
    pub max_pending_per_tenant: usize,
    /// Open `Completions` streams of one tenant.
    pub max_streams_per_tenant: usize,
    /// Connected workers of one tenant.
    pub max_workers_per_tenant: usize,
    /// `SubmitTool` calls per second per token (a burst of one second's
    /// worth is allowed). 0: no limit. Applies when tokens are configured.
    pub submits_per_second_per_token: u32,
    /// Calls without a valid token one peer address may make per minute
    /// (a burst of a minute's worth) before it is told to wait; counted and
    /// logged either way. 0: no throttle.
    pub auth_failures_per_minute: u32,
    /// Calls of every RPC (a stream counts once, when opened) per second per
    /// tenant, bursts of one second's worth. 0: no limit. Applies when
    /// tokens are configured.
    pub requests_per_second_per_tenant: u32,
    /// Completions buffered per open stream before the stream waits for its
    /// client; a slow reader costs this much and no more.
    pub stream_buffer: usize,
}

/// How the PostgreSQL store behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long a claimed task stays this server's without a renewal;
    /// at least [`MIN_LEASE`].
    pub lease: Duration,
    /// Unfinished tasks one session may have, across all servers.
    /// [`Config::postgres_options`] sets it from `limits.max_pending_per_session`.
    pub max_pending_per_session: usize,
    /// Connections in the pool (reads, claims, renewals; the writer takes
    /// one); at least 2.
    pub pool_size: usize,
    /// Give up connecting at start after this long (`None`: keep trying).
    pub connect_timeout: Option<Duration>,
}

/// Room in a message for what is not arguments or result: IDs, names,
/// timestamps, field tags and the texts errand writes around them.
pub const MESSAGE_OVERHEAD: usize = 8 * 1024;

/// The shortest lease: renewals run at a third of it, and a shorter one
/// would have servers take each other's tasks under ordinary load.
pub const MIN_LEASE: Duration = Duration::from_millis(300);

/// HTTP/2's largest flow-control window, 2^31-1 bytes.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The longest duration any setting may have (10 years): longer ones would
/// overflow the clock arithmetic they feed.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_timeout: Duration::from_secs(600),
            default_queue_timeout: Duration::from_secs(300),
            max_attempts: 3,
            retention: Duration::from_secs(24 * 3600),
            purge_interval: Duration::from_secs(60),
            register_timeout: Duration::from_secs(10),
            tool_retention: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(30),
            postgres: PostgresOptions::default(),
            connections: Connections::default(),
            mcp: McpOptions::default(),
        }
    }
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_peer: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_concurrent_streams: 1024,
            max_header_list_bytes: 16 * 1024,
            stream_window_bytes: 1024 * 1024,
            connection_window_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_session_id_bytes: 128,
            max_idempotency_key_bytes: 128,
            max_arguments_bytes: 256 * 1024,
            max_result_bytes: 4 * 1024 * 1024,
            max_pending_per_session: 10_000,
            max_message_bytes: 8 * 1024 * 1024,
            max_tools_per_worker: 256,
            max_tools_per_tenant: 1024,
            max_worker_concurrency: 10_000,
            max_description_bytes: 16 * 1024,
            max_schema_bytes: 64 * 1024,
            max_timeout: Duration::from_secs(7 * 24 * 3600),
            max_pending_per_tenant: 100_000,
            max_streams_per_tenant: 4096,
            max_workers_per_tenant: 1024,
            submits_per_second_per_token: 1000,
            auth_failures_per_minute: 60,
            requests_per_second_per_tenant: 5000,
            stream_buffer: 64,
        }
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            max_pending_per_session: Limits::default().max_pending_per_session,
            pool_size: 8,
            connect_timeout: None,
        }
    }
}

/// A setting `errand serve` cannot run with: which flag, and what to fix.
/// Displays as `invalid --FLAG (ERRAND_FLAG): PROBLEM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{flag} ({env}): {problem}", env = self.env())]
pub struct ConfigError {
    /// The `errand serve` flag of the setting, without `--`.
    pub flag: &'static str,
    /// What is wrong with the value and what it must be.
    pub problem: String,
}

impl ConfigError {
    /// The flag's environment variable: `ERRAND_` and the flag in capitals
    /// (`--max-attempts` is `ERRAND_MAX_ATTEMPTS`).
    pub fn env(&self) -> String {
        format!("ERRAND_{}", self.flag.to_uppercase().replace('-', "_"))
    }
}

impl Config {
    /// Checks every setting, returning the first one that is out of range.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag: a count or size of 0, a duration
    /// of 0 where the server needs a positive one or one over
    /// [`MAX_DURATION`], `max_attempts` 0, a lease under [`MIN_LEASE`], a
    /// pool under 2 connections, or a default timeout over `max_timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let c = &self.connections;
        for (flag, value) in [
            ("max-session-id-bytes", l.max_session_id_bytes),
            ("max-idempotency-key-bytes", l.max_idempotency_key_bytes),
            ("max-arguments-bytes", l.max_arguments_bytes),
            ("max-result-bytes", l.max_result_bytes),
            ("max-pending-per-session", l.max_pending_per_session),
            ("max-message-bytes", l.max_message_bytes),
            ("max-tools-per-worker", l.max_tools_per_worker),
            ("max-tools-per-tenant", l.max_tools_per_tenant),
            ("max-worker-concurrency", l.max_worker_concurrency as usize),
            ("max-description-bytes", l.max_description_bytes),
            ("max-schema-bytes", l.max_schema_bytes),
            ("max-pending-per-tenant", l.max_pending_per_tenant),
            ("max-streams-per-tenant", l.max_streams_per_tenant),
            ("max-workers-per-tenant", l.max_workers_per_tenant),
            ("stream-buffer", l.stream_buffer),
            ("max-attempts", self.max_attempts as usize),
            ("max-connections", c.max_connections),
            ("max-connections-per-peer", c.max_connections_per_peer),
            ("max-concurrent-streams", c.max_concurrent_streams as usize),
        ] {
            at_least(flag, value, 1)?;
        }
        at_least(
            "max-header-list-bytes",
            c.max_header_list_bytes as usize,
            1024,
        )?;
        for (flag, value) in [
            ("stream-window-bytes", c.stream_window_bytes),
            ("connection-window-bytes", c.connection_window_bytes),
        ] {
            at_least(flag, value as usize, 65_535)?;
            if value > MAX_WINDOW {
                return Err(ConfigError {
                    flag,
                    problem: format!("{value} is over HTTP/2's largest window, {MAX_WINDOW}"),
                });
            }
        }
        at_least("database-pool-size", self.postgres.pool_size, 2)?;
        for (flag, value, positive) in [
            ("max-timeout-ms", l.max_timeout, true),
            ("default-timeout-ms", self.default_timeout, true),
            ("default-queue-timeout-ms", self.default_queue_timeout, true),
            ("retention-secs", self.retention, false),
            ("purge-interval-ms", self.purge_interval, true),
            ("register-timeout-ms", self.register_timeout, true),
            ("tool-retention-secs", self.tool_retention, true),
            ("shutdown-grace-secs", self.shutdown_grace, false),
            ("lease-ms", self.postgres.lease, true),
            ("handshake-timeout-ms", c.handshake_timeout, true),
            ("idle-timeout-ms", c.idle_timeout, true),
            ("mcp-poll-interval-ms", self.mcp.poll_interval, true),
        ] {
            duration(flag, value, positive)?;
        }
        if let Some(timeout) = self.postgres.connect_timeout {
            duration("database-connect-timeout-ms", timeout, true)?;
        }
        if self.default_timeout > l.max_timeout {
            return Err(ConfigError {
                flag: "default-timeout-ms",
                problem: format!(
                    "{} ms is over --max-timeout-ms ({} ms): a default no submit could ask for; \
                     lower it or raise --max-timeout-ms",
                    self.default_timeout.as_millis(),
                    l.max_timeout.as_millis()
                ),
            });
        }
        // Its length is checked per call, like any session a client names.
        if self.mcp.default_session.is_empty() {
            return Err(ConfigError {
                flag: "mcp-default-session",
                problem: "must not be empty: name the session of MCP calls without an Errand-Session header".into(),
            });
        }
        self.check_messages_fit()?;
        if l.max_tools_per_worker > l.max_tools_per_tenant {
            return Err(ConfigError {
                flag: "max-tools-per-tenant",
                problem: format!(
                    "{} is under --max-tools-per-worker ({}): one worker could not register; \
                     raise it or lower --max-tools-per-worker",
                    l.max_tools_per_tenant, l.max_tools_per_worker
                ),
            });
        }
        if self.postgres.lease < MIN_LEASE {
            return Err(ConfigError {
                flag: "lease-ms",
                problem: format!(
                    "{} ms is under the shortest lease, {} ms",
                    self.postgres.lease.as_millis(),
                    MIN_LEASE.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// The largest message the other limits let the server send: a
    /// completion (arguments, result, the message quoting at most
    /// [`crate::text::MAX_QUOTED_BYTES`] of it, and its fields) or a submit's
    /// answer (the arguments in the task and in the ack).
    pub fn largest_message(&self) -> usize {
        let l = &self.limits;
        let quoted = l.max_result_bytes.min(crate::text::MAX_QUOTED_BYTES);
        let completion = l.max_arguments_bytes + l.max_result_bytes + quoted;
        let ack = 2 * l.max_arguments_bytes;
        completion.max(ack) + MESSAGE_OVERHEAD
    }

    /// Every accepted size must fit the message that carries it.
    fn check_messages_fit(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let need = self.largest_message();
        if l.max_message_bytes < need {
            return Err(ConfigError {
                flag: "max-message-bytes",
                problem: format!(
                    "{} bytes cannot carry the largest completion the other limits accept \
                     ({need} bytes: --max-arguments-bytes {}, --max-result-bytes {}, and up to \
                     {} bytes of text and fields): raise --max-message-bytes to at least \
                     {need}, or lower --max-result-bytes or --max-arguments-bytes",
                    l.max_message_bytes,
                    l.max_arguments_bytes,
                    l.max_result_bytes,
                    need - l.max_arguments_bytes - l.max_result_bytes,
                ),
            });
        }
        Ok(())
    }

    /// The PostgreSQL store's options, with the per-session bound taken from
    /// `limits` so the store and the scheduler enforce one number.
    pub fn postgres_options(&self) -> PostgresOptions {
        PostgresOptions {
            max_pending_per_session: self.limits.max_pending_per_session,
            ..self.postgres.clone()
        }
    }
}

fn at_least(flag: &'static str, value: usize, min: usize) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError {
            flag,
            problem: format!("{value} is below the minimum, {min}"),
        });
    }
    Ok(())
}

fn duration(flag: &'static str, value: Duration, positive: bool) -> Result<(), ConfigError> {
    if positive && value.is_zero() {
        return Err(ConfigError {
            flag,
            problem: "must be more than 0".into(),
        });
    }
    if value > MAX_DURATION {
        return Err(ConfigError {
            flag,
            problem: format!(
                "{} s is over the longest duration errand accepts, {} s (10 years)",
                value.as_secs(),
                MAX_DURATION.as_secs()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(change: impl FnOnce(&mut Config)) -> ConfigError {
        let mut config = Config::default();
        change(&mut config);
        config.validate().expect_err("the change is invalid")
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().postgres.max_pending_per_session,
            Limits::default().max_pending_per_session
        );
    }

    #[test]
    fn a_zero_bound_names_its_flag() {
        let e = error(|c| c.max_attempts = 0);
        assert_eq!(e.flag, "max-attempts");
        assert_eq!(
            e.to_string(),
            "invalid --max-attempts (ERRAND_MAX_ATTEMPTS): 0 is below the minimum, 1"
        );
        assert_eq!(error(|c| c.limits.stream_buffer = 0).flag, "stream-buffer");
        assert_eq!(
            error(|c| c.limits.max_worker_concurrency = 0).flag,
            "max-worker-concurrency"
        );
        assert_eq!(
            error(|c| c.limits.max_result_bytes = 0).flag,
            "max-result-bytes"
        );
        assert_eq!(
            error(|c| c.postgres.pool_size = 1).to_string(),
            "invalid --database-pool-size (ERRAND_DATABASE_POOL_SIZE): 1 is below the minimum, 2"
        );
    }

    /// Issue 15.3: every accepted size fits the message that carries it.
    #[test]
    fn limits_that_cannot_add_up_name_the_flags_to_change() {
        let e = error(|c| c.limits.max_message_bytes = 1024 * 1024);
        assert_eq!(e.flag, "max-message-bytes");
        let text = e.to_string();
        assert!(
            text.contains("--max-result-bytes") && text.contains("at least"),
            "{text}"
        );
        let mut fits = Config::default();
        fits.limits.max_message_bytes = 1024 * 1024;
        fits.limits.max_result_bytes = 512 * 1024;
        fits.validate().unwrap();
        assert!(fits.largest_message() <= 1024 * 1024);
    }

    #[test]
    fn durations_must_be_positive_where_needed_and_bounded() {
        assert_eq!(
            error(|c| c.purge_interval = Duration::ZERO).to_string(),
            "invalid --purge-interval-ms (ERRAND_PURGE_INTERVAL_MS): must be more than 0"
        );
        assert_eq!(
            error(|c| c.register_timeout = Duration::ZERO).flag,
            "register-timeout-ms"
        );
        let e = error(|c| c.retention = MAX_DURATION + Duration::from_secs(1));
        assert_eq!(e.flag, "retention-secs");
        assert!(e.problem.contains("10 years"), "{e}");
        assert_eq!(
            error(|c| c.postgres.connect_timeout = Some(Duration::ZERO)).flag,
            "database-connect-timeout-ms"
        );
        // Zero retention (purge at once) and zero grace (stop at once) are
        // choices, not mistakes.
        let config = Config {
            retention: Duration::ZERO,
            shutdown_grace: Duration::ZERO,
            ..Config::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn connection_bounds_are_checked() {
        assert_eq!(
            error(|c| c.connections.max_connections_per_peer = 0).to_string(),
            "invalid --max-connections-per-peer (ERRAND_MAX_CONNECTIONS_PER_PEER): 0 is below the minimum, 1"
        );
        assert_eq!(
            error(|c| c.connections.max_concurrent_streams = 0).flag,
            "max-concurrent-streams"
        );
        assert_eq!(
            error(|c| c.connections.stream_window_bytes = 1000).flag,
            "stream-window-bytes"
        );
        let e = error(|c| c.connections.connection_window_bytes = u32::MAX);
        assert_eq!(e.flag, "connection-window-bytes");
        assert!(e.problem.contains("largest window"), "{e}");
        assert_eq!(
            error(|c| c.connections.handshake_timeout = Duration::ZERO).flag,
            "handshake-timeout-ms"
        );
        assert_eq!(
            error(|c| c.connections.max_header_list_bytes = 100).flag,
            "max-header-list-bytes"
        );
    }

    #[test]
    fn a_short_lease_and_a_default_over_the_maximum_are_refused() {
        let e = error(|c| c.postgres.lease = Duration::from_millis(299));
        assert_eq!(
            e.to_string(),
            "invalid --lease-ms (ERRAND_LEASE_MS): 299 ms is under the shortest lease, 300 ms"
        );
        let e = error(|c| c.default_timeout = c.limits.max_timeout + Duration::from_millis(1));
        assert_eq!(e.flag, "default-timeout-ms");
        assert!(e.problem.contains("--max-timeout-ms"), "{e}");
    }

    #[test]
    fn registry_bounds_must_fit_together() {
        let e = error(|c| c.limits.max_tools_per_tenant = c.limits.max_tools_per_worker - 1);
        assert_eq!(e.flag, "max-tools-per-tenant");
        assert!(e.problem.contains("--max-tools-per-worker"), "{e}");
        assert_eq!(
            error(|c| c.tool_retention = Duration::ZERO).to_string(),
            "invalid --tool-retention-secs (ERRAND_TOOL_RETENTION_SECS): must be more than 0"
        );
    }

    #[test]
    fn the_store_enforces_the_session_bound_of_the_limits() {
        let mut config = Config::default();
        config.limits.max_pending_per_session = 7;
        assert_eq!(config.postgres_options().max_pending_per_session, 7);
    }
}
