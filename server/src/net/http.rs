//! A plain HTTP listener (HTTP/1.1 and HTTP/2) with the same bounds as the
//! gRPC one: the metrics endpoint, and the HTTP listeners to come.
use std::time::Duration;

use futures::StreamExt;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Incoming, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::config::Connections;

/// How long open connections may take to finish once shutdown starts.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Serves `app` on `incoming`'s connections with `limits`' HTTP/2 settings
/// (and `handshake_timeout` for reading an HTTP/1 request's headers) until
/// `shutdown` is cancelled; then lets open connections finish their
/// requests, for up to 3 s.
pub async fn serve(
    mut incoming: Incoming,
    app: axum::Router,
    limits: &Connections,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_bytes)
        .initial_stream_window_size(limits.stream_window_bytes)
        .initial_connection_window_size(limits.connection_window_bytes);
    let connections = TaskTracker::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = incoming.next() => next,
        };
        let Some(Ok(conn)) = next else { break };
        let (builder, app, shutdown) = (builder.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(conn), TowerToHyperService::new(app));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, conn).await;
        });
    }
    drop(incoming);
    connections.close();
    connections.wait().await;
}
