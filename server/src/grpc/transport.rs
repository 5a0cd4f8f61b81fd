//! tonic's side of the listener: its server builder with the HTTP/2 bounds
//! of `net` ([`Connections`]), and the connection info of an accepted
//! [`Conn`]. The bounds themselves live in `net`, which knows no gRPC.
use tonic::transport::{
    Server,
    server::{Connected, TcpConnectInfo},
};
use tower::layer::util::{Identity, Stack};

use super::metadata_limit;
use crate::{
    config::Connections,
    net::{Conn, KEEPALIVE_TIMEOUT, keepalive_interval, run_to_end::RunToEndLayer},
};

/// tonic's server builder with `limits`' HTTP/2 settings and keepalive pings.
/// HTTP/2 takes header lists up to [`metadata_limit::hard_limit`] of
/// `max_header_list_bytes`; [`metadata_limit::MetadataLimit`] refuses those
/// over the limit itself, with a gRPC status. Its first layer, outside the
/// ones added to it, runs each call to its end ([`RunToEndLayer`]); tonic's
/// deadline stays outside it, so a call past its deadline is answered then
/// and finishes unread.
pub fn grpc_server(limits: &Connections) -> Server<Stack<RunToEndLayer, Identity>> {
    Server::builder()
        .http2_keepalive_interval(Some(keepalive_interval(limits.idle_timeout)))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(metadata_limit::hard_limit(limits.max_header_list_bytes))
        .initial_stream_window_size(limits.stream_window_bytes)
        .initial_connection_window_size(limits.connection_window_bytes)
        .layer(RunToEndLayer)
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream().connect_info()
    }
}
