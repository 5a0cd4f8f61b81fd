//! Server configuration: every limit and default in one place.
use std::time::Duration;

/// How the server behaves. `Default` gives the values `errand serve` uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Timeout of a run when neither the submit nor the tool sets one.
    pub default_timeout: Duration,
    /// Dispatches of one task before a lost worker fails it for good.
    pub max_attempts: u32,
    /// How long finished tasks and their completions are kept.
    pub retention: Duration,
    /// How often expired tasks and completions are purged.
    pub purge_interval: Duration,
    /// How long a connecting worker may take to send `Register`.
    pub register_timeout: Duration,
    /// On shutdown, how long running tasks may take to finish before the
    /// server stops anyway (they are then run again at the next start).
    pub shutdown_grace: Duration,
}

/// Bounds on what clients may make the server hold.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_session_id_bytes: usize,
    pub max_idempotency_key_bytes: usize,
    pub max_arguments_bytes: usize,
    pub max_result_bytes: usize,
    /// Queued plus running tasks of one session.
    pub max_pending_per_session: usize,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    pub max_tools_per_worker: usize,
    pub max_worker_concurrency: u32,
    pub max_description_bytes: usize,
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
    /// Completions buffered per open stream before the stream waits for its
    /// client; a slow reader costs this much and no more.
    pub stream_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_timeout: Duration::from_secs(600),
            max_attempts: 3,
            retention: Duration::from_secs(24 * 3600),
            purge_interval: Duration::from_secs(60),
            register_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
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
            max_worker_concurrency: 10_000,
            max_description_bytes: 16 * 1024,
            max_schema_bytes: 64 * 1024,
            max_timeout: Duration::from_secs(7 * 24 * 3600),
            max_pending_per_tenant: 100_000,
            max_streams_per_tenant: 4096,
            max_workers_per_tenant: 1024,
            submits_per_second_per_token: 1000,
            stream_buffer: 64,
        }
    }
}
