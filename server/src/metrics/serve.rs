//! The metrics listener: `GET /metrics` to the scrapes its [`Access`] lets
//! in, a wrong token counted against the peer's failed-auth budget as on
//! every other port.
use std::{sync::Arc, time::Instant};

use tokio_util::sync::CancellationToken;

use super::{LoadSource, Metrics};
use crate::{
    config::Connections,
    grpc::failed_auth::FailedAuth,
    net::{
        Incoming, authorization,
        bearer::{Peer, refusal},
        host::AllowedHosts,
    },
};

/// The `--metrics-token` as a scrape carries it, for a refusal's wording.
const METRICS_TOKEN: authorization::Carrier = authorization::Carrier {
    name: "the Authorization header",
    send: "`Authorization: Bearer <the --metrics-token>`",
};

/// Who may scrape: with `token`, only a scrape that sends `Authorization:
/// Bearer <token>`, by whatever host name; without one, a scrape whose
/// `Host` is in `hosts` (the allow-list the other HTTP listeners keep,
/// against DNS rebinding: a page of another name gets 403; with a token a
/// page cannot read the metrics anyway, as it has no token).
pub struct Access {
    pub token: Option<Arc<str>>,
    pub hosts: AllowedHosts,
    /// Where scrapes without the token are counted and throttled per peer
    /// (the budget every port shares); `None`: neither.
    pub failures: Option<Arc<FailedAuth>>,
}

/// Serves `GET /metrics` on `incoming` until `shutdown` is cancelled, over
/// `tls` when given (the gRPC port's certificate and client CA), to the
/// scrapes `access` lets in (403 for another `Host`, 401 without the token;
/// past the peer's `--auth-failures-per-minute`, 429 with `Retry-After`).
pub async fn serve(
    incoming: Incoming,
    limits: Connections,
    access: Access,
    metrics: Arc<Metrics>,
    source: Arc<dyn LoadSource>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    use axum::{
        Extension, Router,
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
        routing::get,
    };
    let expected = access.token.map(|t| hash(t.as_bytes()));
    let guarded = expected.is_some();
    let hosts = Arc::new(access.hosts);
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap, peer: Option<Extension<Peer>>| {
            let metrics = metrics.clone();
            let source = source.clone();
            let failures = access.failures.clone();
            async move {
                if let Some(expected) = expected {
                    let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
                    let refused = match authorization::bearer_token(value) {
                        Ok(t) if hash(t.as_bytes()) == expected => None,
                        Ok(_) => Some(format!(
                            "the bearer token is not the metrics token: send {}",
                            METRICS_TOKEN.send
                        )),
                        Err(e) => Some(e.message(METRICS_TOKEN)),
                    };
                    if let Some(message) = refused {
                        let peer = peer.map(|Extension(Peer(ip))| ip);
                        let over = failures.as_ref().and_then(|f| {
                            f.failed(peer, "a scrape without the metrics token", Instant::now())
                                .err()
                        });
                        if let Some(wait) = over {
                            return refusal(
                                false,
                                429,
                                format!(
                                    "too many scrapes without the metrics token from this \
                                     address: retry in {} ms\n",
                                    wait.as_millis().max(1)
                                ),
                                Some(wait),
                            );
                        }
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            format!("{message}\n"),
                        )
                            .into_response();
                    }
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(&*source),
                )
                    .into_response()
            }
        }),
    );
    let app = if guarded {
        app
    } else {
        app.layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::net::host::check_host,
        ))
    };
    crate::net::http::serve_tls(
        incoming,
        app,
        &limits,
        tls,
        crate::net::http::Calls::RunToEnd,
        shutdown,
    )
    .await;
}

/// Compared as hashes: equal-length values, and nothing about the token
/// leaks through how long a comparison takes.
fn hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}
