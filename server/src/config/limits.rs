//! What clients may make the server hold.
use std::time::Duration;

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
    /// Bytes of arguments the queued plus running tasks of one tenant hold,
    /// all sessions together: what bounds the memory they take, which the
    /// count alone does not (100,000 tasks of 256 KiB are 26 GB). At least
    /// `max_arguments_bytes`, so any accepted submit fits alone.
    pub max_pending_bytes_per_tenant: usize,
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
    /// Bytes of completions (their arguments, result or error, and summary,
    /// plus 256 per completion) an open stream holds before it waits for
    /// its client; one completion larger than this goes alone.
    pub stream_buffer_bytes: usize,
    /// Most bytes of a result delivered inline when neither the submit nor
    /// the tool sets a budget (about 4 bytes per token); at least
    /// [`MIN_RESULT_BUDGET`], at most `max_result_budget_bytes`.
    pub result_budget_bytes: usize,
    /// The largest result budget a submit or a tool may ask for; at least
    /// [`MIN_RESULT_BUDGET`].
    pub max_result_budget_bytes: usize,
}

/// The smallest result budget a server may be configured with: room for a
/// preview's head, tail and the mark between them.
pub const MIN_RESULT_BUDGET: usize = 64;

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
            max_pending_bytes_per_tenant: 1024 * 1024 * 1024,
            max_streams_per_tenant: 4096,
            max_workers_per_tenant: 1024,
            submits_per_second_per_token: 1000,
            auth_failures_per_minute: 60,
            requests_per_second_per_tenant: 5000,
            stream_buffer: 64,
            stream_buffer_bytes: 8 * 1024 * 1024,
            result_budget_bytes: 16 * 1024,
            max_result_budget_bytes: 4 * 1024 * 1024,
        }
    }
}
