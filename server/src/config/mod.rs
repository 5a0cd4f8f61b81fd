//! Server configuration: every tunable of the server, its default (written
//! here once) and its check ([`Config::validate`]).
//!
//! `errand serve` takes its flag defaults from [`Config::default`] and has
//! one flag per field, named after it (`max_attempts` is `--max-attempts`,
//! durations carry their unit: `default_timeout` is `--default-timeout-ms`).
//! What the server is handed at run time rather than configured with (the
//! loaded tokens, TLS material, a bound metrics listener) is
//! `server::Options`.
//!
//! - `limits.rs`: what clients may make the server hold ([`Limits`]).
//! - `connections.rs`: what each connection and peer may hold ([`Connections`]).
//! - `postgres.rs`: the PostgreSQL store's settings ([`PostgresOptions`]).
//! - `frontends.rs`: the MCP and A2A front ends', the dashboard's and the
//!   metrics listener's settings.
mod connections;
mod frontends;
mod limits;
mod postgres;

use std::time::Duration;

pub use connections::{Connections, MAX_WINDOW};
pub use frontends::{A2aOptions, McpOptions, MetricsOptions, UiOptions};
pub use limits::{Limits, MIN_RESULT_BUDGET};
pub use postgres::{MIN_LEASE, PostgresOptions};

pub use crate::model::Delivery;

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
    /// server stops anyway (then see `Scheduler::left_running`).
    pub shutdown_grace: Duration,
    /// The PostgreSQL store's settings (used with `--store postgres`).
    pub postgres: PostgresOptions,
    /// What one connection, and one peer, may hold on every listener.
    pub connections: Connections,
    /// The MCP front end's settings (used with `--mcp-listen`).
    pub mcp: McpOptions,
    /// Least time between two progress events of one task on one
    /// `SessionEvents` stream (the latest report wins); > 0.
    pub progress_interval: Duration,
    /// How completions reach the model when neither the submit nor the
    /// tool says.
    pub default_delivery: Delivery,
    /// The A2A front end's settings (used with `--a2a-listen`).
    pub a2a: A2aOptions,
    /// The dashboard's settings (used with `--ui-listen`).
    pub ui: UiOptions,
    /// The metrics listener's settings (used with `--metrics-listen`).
    pub metrics: MetricsOptions,
}

/// Room in a message for what is not arguments or result: IDs, names,
/// timestamps, field tags and the texts errand writes around them.
pub const MESSAGE_OVERHEAD: usize = 8 * 1024;

/// The largest `--max-message-bytes` (1 GiB): gRPC's length prefix is 32
/// bits, and every limit under it stays far from overflowing.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

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
            progress_interval: Duration::from_millis(500),
            default_delivery: Delivery::WhenIdle,
            a2a: A2aOptions::default(),
            ui: UiOptions::default(),
            metrics: MetricsOptions::default(),
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
            (
                "max-pending-bytes-per-tenant",
                l.max_pending_bytes_per_tenant,
            ),
            ("max-streams-per-tenant", l.max_streams_per_tenant),
            ("max-workers-per-tenant", l.max_workers_per_tenant),
            ("stream-buffer", l.stream_buffer),
            ("stream-buffer-bytes", l.stream_buffer_bytes),
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
        at_least(
            "result-budget-bytes",
            l.result_budget_bytes,
            MIN_RESULT_BUDGET,
        )?;
        at_least(
            "max-result-budget-bytes",
            l.max_result_budget_bytes,
            MIN_RESULT_BUDGET,
        )?;
        if l.result_budget_bytes > l.max_result_budget_bytes {
            return Err(ConfigError {
                flag: "result-budget-bytes",
                problem: format!(
                    "{} is over --max-result-budget-bytes ({}): a default no submit could ask \
                     for; lower it or raise --max-result-budget-bytes",
                    l.result_budget_bytes, l.max_result_budget_bytes
                ),
            });
        }
        if l.max_pending_bytes_per_tenant < l.max_arguments_bytes {
            return Err(ConfigError {
                flag: "max-pending-bytes-per-tenant",
                problem: format!(
                    "{} is under --max-arguments-bytes ({}): a submit of the largest accepted \
                     arguments would never fit; raise it or lower --max-arguments-bytes",
                    l.max_pending_bytes_per_tenant, l.max_arguments_bytes
                ),
            });
        }
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
            ("database-timeout-ms", self.postgres.op_timeout, true),
            ("handshake-timeout-ms", c.handshake_timeout, true),
            ("idle-timeout-ms", c.idle_timeout, true),
            ("mcp-poll-interval-ms", self.mcp.poll_interval, true),
            ("progress-interval", self.progress_interval, true),
        ] {
            duration(flag, value, positive)?;
        }
        if let Some(timeout) = self.postgres.connect_timeout {
            duration("database-connect-timeout-ms", timeout, true)?;
        }
        // A default no submit could ask for is refused, by the rule a
        // submit's timeouts follow (`tools::check_timeout`).
        for (flag, default) in [
            ("default-timeout-ms", self.default_timeout),
            ("default-queue-timeout-ms", self.default_queue_timeout),
        ] {
            if default > l.max_timeout {
                return Err(ConfigError {
                    flag,
                    problem: format!(
                        "{} ms is over --max-timeout-ms ({} ms): a default no submit could ask \
                         for; lower it or raise --max-timeout-ms",
                        default.as_millis(),
                        l.max_timeout.as_millis()
                    ),
                });
            }
        }
        if l.max_message_bytes > MAX_MESSAGE_BYTES {
            return Err(ConfigError {
                flag: "max-message-bytes",
                problem: format!(
                    "{} is over the largest message errand sends or takes, {MAX_MESSAGE_BYTES} \
                     bytes (1 GiB): pass large data by reference instead",
                    l.max_message_bytes
                ),
            });
        }
        self.mcp.check()?;
        self.a2a.check()?;
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

    /// The largest message the other limits let the server send: a task
    /// (GetTask, a ListTasks page of one), a completion or a submit's answer,
    /// every field counted.
    ///
    /// A task carries its arguments, its outcome (a result within
    /// `max_result_bytes`, or a failure: a code of at most
    /// [`crate::fields::MAX_ERROR_CODE_BYTES`] and a message of at most
    /// [`crate::fields::MAX_ERROR_MESSAGE_BYTES`]), a fallback's
    /// `primary_error` (a failure too), its session ID and key, and its
    /// worker's name. Not counted: a running task's latest progress (a
    /// message and a detail of up to
    /// [`crate::model::MAX_PROGRESS_DETAIL_BYTES`], which a worker's message
    /// limit bounds, but not beside the arguments). A completion
    /// carries the arguments, the outcome, the primary's failure, and a
    /// message quoting at most [`crate::text::MAX_QUOTED_BYTES`] of the
    /// outcome and 1 KiB of the primary's message. Tool names, IDs,
    /// numbers, timestamps and errand's own words are within
    /// [`MESSAGE_OVERHEAD`].
    ///
    /// Result budgets only shrink a completion: a result is inline only
    /// within its budget, and a truncated one is replaced by a preview
    /// within it (a worker's summary is cut to the smaller of the budget and
    /// `max_result_bytes`). A completion stored under larger limits is made
    /// to fit when it is sent ([`crate::grpc::convert::fit`]). The primary's
    /// failure was left out, and a task a fallback answered after a failure
    /// as large as its result budget could be neither read nor listed.
    pub fn largest_message(&self) -> usize {
        let l = &self.limits;
        let quoted = l.max_result_bytes.min(crate::text::MAX_QUOTED_BYTES);
        let failure = crate::fields::MAX_ERROR_CODE_BYTES + crate::fields::MAX_ERROR_MESSAGE_BYTES;
        let outcome = l.max_result_bytes.max(failure);
        let ids = l.max_session_id_bytes + l.max_idempotency_key_bytes;
        let task =
            l.max_arguments_bytes + outcome + failure + ids + crate::fields::MAX_WORKER_NAME_BYTES;
        let completion = l.max_arguments_bytes + outcome + quoted + 1024 + failure + ids;
        let ack = 2 * l.max_arguments_bytes + ids;
        task.max(completion).max(ack) + MESSAGE_OVERHEAD
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
                     ({need} bytes: --max-arguments-bytes {}, --max-result-bytes {}, \
                     --max-session-id-bytes {}, --max-idempotency-key-bytes {}, and up to {} \
                     bytes of text and fields): raise --max-message-bytes to at least {need}, \
                     or lower the others",
                    l.max_message_bytes,
                    l.max_arguments_bytes,
                    l.max_result_bytes,
                    l.max_session_id_bytes,
                    l.max_idempotency_key_bytes,
                    need - l.max_arguments_bytes
                        - l.max_result_bytes
                        - l.max_session_id_bytes
                        - l.max_idempotency_key_bytes,
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

/// A duration as `errand serve` takes it: plain milliseconds (`500`) or
/// a number with a unit (`500ms`, `2s`, `1m`).
///
/// # Errors
/// A text that is neither, saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}): give milliseconds (500) or a unit (500ms, 2s)")
    })
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
mod tests;
