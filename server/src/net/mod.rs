//! Every listener's defences against clients that cost others: the same
//! bounds on the gRPC listener, the metrics listener and any HTTP listener
//! to come, from one [`Connections`](crate::config::Connections) setting.
//!
//! - [`incoming`]: the accept loop. It caps connections per listener and per
//!   peer IP address (a connection past a cap is closed at once), closes a
//!   connection that sends no first bytes within the handshake timeout or
//!   then nothing for the idle timeout, and backs off when the process is
//!   out of file descriptors (`EMFILE`) instead of spinning, with one log
//!   line per interval.
//! - HTTP/2 settings per connection (concurrent streams, header-list size,
//!   flow-control windows): `grpc::transport::grpc_server` applies them to
//!   tonic's builder,
//!   [`http::serve`] to a plain HTTP listener.
//! - [`handshake`]: TLS handshakes, bounded, refused ones logged (every
//!   listener).
//! - [`host`]: the HTTP listeners' `Host` allow-list (DNS rebinding).
//! - [`authorization`]: every listener's reading of `Authorization: Bearer`.
//! - [`body_deadline`]: a request's body must arrive within the idle
//!   timeout of its headers (every listener).
//! - [`run_to_end`]: a call runs to its end even when its client goes away
//!   or its deadline passes (every listener).
//! - [`raise_open_files_limit`]: the soft open-files limit raised to the hard
//!   one at start, and [`connection_cap`] keeping the cap below it.
use std::time::Duration;

use tracing::{info, warn};

pub mod authorization;
pub mod bearer;
pub mod body_deadline;
pub mod handshake;
pub mod host;
pub mod http;
pub mod incoming;
pub mod run_to_end;
pub mod tls;

pub use incoming::{Conn, Incoming};

/// How often the server pings an HTTP/2 peer that sent nothing (at most;
/// see [`keepalive_interval`]), and how long it waits for the answer
/// before closing the connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The ping interval for connections closed after `idle` without a byte
/// from their peer (`--idle-timeout-ms`): [`KEEPALIVE_INTERVAL`], or a third
/// of `idle` when that is shorter (not under 10 ms), so a live peer's
/// answers keep a quiet connection open however short the idle timeout.
pub fn keepalive_interval(idle: Duration) -> Duration {
    KEEPALIVE_INTERVAL.min((idle / 3).max(Duration::from_millis(10)))
}

/// File descriptors kept free of connections: the store, logs, TLS files.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard one and
/// returns the soft limit now in force (`None` if it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    if limit.maximum.is_none_or(|hard| hard > soft) {
        let before = soft;
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => {
                info!(from = before, to = ?limit.maximum, "raised the open-files limit");
                return limit.maximum.or(Some(u64::MAX));
            }
            Err(e) => {
                warn!(limit = before, error = %e, "cannot raise the open-files limit");
                return Some(before);
            }
        }
    }
    Some(soft)
}

/// The connection cap to use with `open_files` descriptors: `configured`, or
/// less (with a warning) when the descriptors could not hold that many.
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else {
        return configured;
    };
    let room = files.saturating_sub(RESERVED_FDS).max(1);
    if (configured as u64) <= room {
        return configured;
    }
    warn!(
        max_connections = configured,
        open_files_limit = files,
        using = room,
        "--max-connections is over what the open-files limit allows: raise the hard limit (ulimit -Hn) to allow more"
    );
    room as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_peers_are_pinged_within_the_idle_timeout() {
        let s = Duration::from_secs;
        assert_eq!(keepalive_interval(s(120)), KEEPALIVE_INTERVAL);
        assert_eq!(keepalive_interval(s(45)), KEEPALIVE_INTERVAL);
        assert_eq!(keepalive_interval(s(6)), s(2));
        assert_eq!(
            keepalive_interval(Duration::from_millis(4)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn the_cap_stays_below_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, Some(1024)), 960);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(100, None), 100);
        assert_eq!(connection_cap(100, Some(10)), 1);
    }

    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let now = raise_open_files_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(now, limit.current);
    }
}
