//! TLS handshakes on every listener, the gRPC port's and the HTTP ones'
//! alike: each runs in a task of its own (a slow client holds up no other),
//! bounded by the handshake timeout; a refused one (no client certificate
//! under mTLS, an untrusted or expired one, plain HTTP on a TLS port, a
//! client that sends no hello) is what an operator needs to see when
//! clients cannot connect, so it is logged, at most one line per 10 s per
//! listener with how many. tonic's own TLS (`tls_config`) dropped them
//! unseen on the gRPC port.
use std::{io, net::IpAddr, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig, server::TlsStream};
use tracing::{debug, warn};

use super::{Conn, Incoming};
use crate::logs::Throttle;

/// Connections whose handshake finished, waiting for the server to take
/// them.
const READY: usize = 64;

/// One listener's TLS side: its configuration, the handshake bound and
/// the throttle of its refusal lines.
#[derive(Clone)]
pub struct Handshakes {
    acceptor: TlsAcceptor,
    timeout: Duration,
    refused: Arc<Throttle>,
}

impl Handshakes {
    /// Handshakes with `config`, each to finish within `timeout` of its
    /// start.
    pub fn new(config: Arc<ServerConfig>, timeout: Duration) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            timeout,
            refused: Arc::new(Throttle::new(Duration::from_secs(10))),
        }
    }

    /// `conn` over TLS, or `None` (logged) when the handshake failed or
    /// took longer than the timeout.
    pub async fn accept(&self, conn: Conn) -> Option<TlsStream<Conn>> {
        let peer: Option<IpAddr> = conn.peer().ok().map(|a| a.ip());
        let error = match tokio::time::timeout(self.timeout, self.acceptor.accept(conn)).await {
            Ok(Ok(stream)) => return Some(stream),
            // A connection closed before its handshake ended: a TCP probe (a
            // load balancer's, a `tcpSocket` check) or a client that left,
            // not a refusal worth a warning.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                debug!(?peer, error = %e, "closed before its TLS handshake ended");
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the TLS handshake did not finish within --handshake-timeout-ms".into(),
        };
        match self.refused.ready() {
            Some(times) => warn!(?peer, times, error = %error, "refused TLS handshakes"),
            None => debug!(?peer, error = %error, "TLS handshake failed"),
        }
        None
    }

    /// The TLS streams of `incoming`'s connections, for tonic's
    /// `serve_with_incoming_shutdown`, as their handshakes finish. Accepting
    /// stops, and the listener closes, when the stream is dropped.
    pub fn incoming(
        self,
        mut incoming: Incoming,
    ) -> impl Stream<Item = io::Result<TlsStream<Conn>>> + Send + 'static {
        let (tx, rx) = mpsc::channel(READY);
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = tx.closed() => break,
                    next = incoming.next() => match next {
                        Some(Ok(conn)) => conn,
                        _ => break,
                    },
                };
                let (tx, handshakes) = (tx.clone(), self.clone());
                tokio::spawn(async move {
                    if let Some(stream) = handshakes.accept(conn).await {
                        let _ = tx.send(Ok(stream)).await;
                    }
                });
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) })
    }
}

/// The gRPC port's TLS configuration: the HTTP listeners' `config` (the
/// same certificate, key and client CA) with ALPN `h2` only, as tonic's
/// own TLS offered: the port speaks nothing else.
pub fn grpc_config(config: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}
