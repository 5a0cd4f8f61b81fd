//! What one connection, and one peer, may hold on every listener.
use std::time::Duration;

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
    /// HTTP/2 preface or a TLS hello), and to finish a TLS handshake; > 0.
    pub handshake_timeout: Duration,
    /// A connection whose peer sends nothing for this long is closed; > 0.
    /// The server pings quiet peers every 15 s, or every third of this when
    /// shorter, and live HTTP/2 peers answer.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once; at least 1.
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (all headers of one request), in bytes;
    /// at least 1024. The gRPC listener answers a call over it with
    /// RESOURCE_EXHAUSTED ([`crate::grpc::metadata_limit`]); the HTTP ones
    /// with HTTP/2's 431.
    pub max_header_list_bytes: u32,
    /// HTTP/2 flow-control window of one stream, in bytes: what a peer may
    /// send on it before the server reads; 65,535 to 2^31-1.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window of a connection, all streams together, in
    /// bytes; 65,535 to 2^31-1.
    pub connection_window_bytes: u32,
}

/// HTTP/2's largest flow-control window, 2^31-1 bytes.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

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
