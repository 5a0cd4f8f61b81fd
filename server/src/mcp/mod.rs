//! MCP front end (protocol 2026-07-28 with the `io.modelcontextprotocol/tasks`
//! extension; 2025-11-25 clients get synchronous calls), served on its own
//! listener at `POST /mcp`, apart from the gRPC port: exposing MCP exposes
//! agents' calls only, never `WorkerService`.
//!
//! A thin adapter: [`handler::McpHandler`] calls [`agent::Agent`], which is
//! `ToolService`'s own code in process ([`agent::LocalAgent`]) or a remote
//! errand server (`errand mcp --stdio`). Tasks live in errand's store, so
//! they survive restarts and their IDs are errand's task IDs.
//!
//! Per request: the caller comes from `Authorization: Bearer <token>` (an
//! agent or admin token, when tokens are configured; calls without a valid one are
//! counted and throttled per peer as on the gRPC port, see
//! [`crate::net::bearer`]), the session from the `Errand-Session` header,
//! else [`handler::Settings::default_session`]. With `--tls-cert` the
//! listener serves HTTPS with the gRPC port's certificate.
pub mod agent;
pub mod convert;
pub mod handler;
pub mod malformed;

use std::sync::Arc;

use axum::middleware;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Connections,
    net::{
        self, Incoming,
        bearer::{self, Bearer},
    },
};
pub use handler::{McpHandler, Settings};

/// The MCP endpoint's path.
pub const PATH: &str = "/mcp";

/// What the MCP listener is given besides the handler.
pub struct Listener {
    /// Connections, bounded as on every listener ([`crate::net`]).
    pub incoming: Incoming,
    pub limits: Connections,
    /// `Host` values accepted (DNS-rebinding guard); empty: loopback names only.
    pub allowed_hosts: Vec<String>,
    /// TLS (the gRPC port's certificate); `None`: plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// Serves MCP on `l` until `shutdown` is cancelled (then open connections
/// get [`net::http::serve`]'s few seconds to finish).
pub async fn serve(l: Listener, handler: McpHandler, bearer: Bearer, shutdown: CancellationToken) {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(l.max_body_bytes);
    if !l.allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(l.allowed_hosts);
    }
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(
            l.max_body_bytes,
            malformed::refuse_duplicate_keys,
        ))
        .layer(middleware::from_fn_with_state(bearer, bearer::authenticate));
    net::http::serve_tls(l.incoming, app, &l.limits, l.tls, shutdown).await;
}
