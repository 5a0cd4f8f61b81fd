//! The PostgreSQL store's settings.
use std::time::Duration;

use super::Limits;

/// How the PostgreSQL store behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long a claimed task stays this server's without a renewal;
    /// at least [`MIN_LEASE`].
    pub lease: Duration,
    /// Unfinished tasks one session may have, across all servers.
    /// [`Config::postgres_options`](super::Config::postgres_options) sets it from `limits.max_pending_per_session`.
    pub max_pending_per_session: usize,
    /// Connections in the pool (reads, claims, renewals; the writer takes
    /// one); at least 2.
    pub pool_size: usize,
    /// Give up connecting at start after this long (`None`: keep trying).
    pub connect_timeout: Option<Duration>,
    /// The longest any one store operation may take (a pool checkout, a
    /// query or transaction, the writer's commit with its retries) before
    /// its caller gets UNAVAILABLE: a database that accepts connections
    /// and never answers (frozen, or a blackholed connection) fails calls
    /// as a stopped one does, instead of hanging them for the whole outage.
    /// Also the connections' `statement_timeout`.
    pub op_timeout: Duration,
}

/// The shortest lease: renewals run at a third of it, and a shorter one
/// would have servers take each other's tasks under ordinary load.
pub const MIN_LEASE: Duration = Duration::from_millis(300);

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            max_pending_per_session: Limits::default().max_pending_per_session,
            pool_size: 8,
            connect_timeout: None,
            op_timeout: Duration::from_secs(10),
        }
    }
}
