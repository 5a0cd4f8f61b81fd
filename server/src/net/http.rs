//! An HTTP listener (HTTP/1.1 and HTTP/2, plain or over TLS) with the same
//! bounds as the gRPC one: the metrics endpoint, the dashboard, MCP and A2A.
use std::{sync::Arc, time::Duration};

use axum::http::Request;
use futures::StreamExt;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::ServerConfig;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::util::Either;

use super::{
    Incoming, KEEPALIVE_TIMEOUT,
    bearer::Peer,
    body_deadline::{self, Deadlined},
    handshake::Handshakes,
    keepalive_interval,
    run_to_end::RunToEnd,
};
use crate::config::Connections;

/// How long open connections may take to finish once shutdown starts.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What becomes of a request's call when its client goes away first (it
/// resets the stream, closes the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// It runs to its end, unread ([`RunToEnd`]): what a handler that
    /// writes and then changes the live state needs.
    RunToEnd,
    /// It is dropped. Only for MCP: rmcp runs each JSON-RPC request's
    /// handler as a task of its own already, and takes the request's
    /// future being dropped for the client leaving a call that waits for
    /// its task, which is then cancelled.
    EndWithClient,
}

/// Serves `app` on `incoming`'s connections with `limits`' HTTP/2 settings
/// (and `handshake_timeout` for reading an HTTP/1 request's headers), each
/// request carrying its peer's address as a [`Peer`] extension, its call
/// run as `calls` says, until `shutdown` is cancelled; then lets open
/// connections finish their requests, for up to 3 s.
pub async fn serve(
    incoming: Incoming,
    app: axum::Router,
    limits: &Connections,
    calls: Calls,
    shutdown: CancellationToken,
) {
    serve_tls(incoming, app, limits, None, calls, shutdown).await;
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// [`serve`], over TLS when `tls` is given (the handshake runs in the
/// connection's task, bounded by the handshake timeout; a failed one closes
/// the connection and is logged: [`Handshakes`]).
pub async fn serve_tls(
    mut incoming: Incoming,
    app: axum::Router,
    limits: &Connections,
    tls: Option<Arc<ServerConfig>>,
    calls: Calls,
    shutdown: CancellationToken,
) {
    let tls = tls.map(|config| Handshakes::new(config, limits.handshake_timeout));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(keepalive_interval(limits.idle_timeout))
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
        let (builder, app, shutdown, tls) =
            (builder.clone(), app.clone(), shutdown.clone(), tls.clone());
        let peer = conn.peer().ok().map(|a| Peer(a.ip()));
        let idle = limits.idle_timeout;
        let app = tower::ServiceExt::map_request(app, move |mut req: Request<_>| {
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            // Every HTTP request here carries one message (a JSON body, a
            // unary or server-streaming gRPC call): it must arrive whole.
            req.map(|body| {
                axum::body::Body::new(Deadlined::new(body, idle, body_deadline::timed_out))
            })
        });
        connections.spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(conn),
                Some(handshakes) => {
                    let accepted = tokio::select! {
                        accepted = handshakes.accept(conn) => accepted,
                        _ = shutdown.cancelled() => return,
                    };
                    match accepted {
                        Some(stream) => Box::new(stream),
                        None => return,
                    }
                }
            };
            let app = match calls {
                Calls::RunToEnd => Either::Left(RunToEnd::new(app)),
                Calls::EndWithClient => Either::Right(app),
            };
            let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
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
