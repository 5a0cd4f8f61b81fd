//! A2A 1.0 front end, on its own listener, apart from the gRPC port:
//! exposing A2A exposes agents' calls only, never `WorkerService`. One port
//! serves every binding, all listed in the card's `supportedInterfaces`:
//!
//! | path                                  | what                               |
//! |---------------------------------------|------------------------------------|
//! | `GET /.well-known/agent-card.json`    | the agent card ([`card`])          |
//! | `POST /jsonrpc`                       | JSON-RPC 2.0 (SSE for streams)     |
//! | `/rest/...`                           | HTTP+JSON                          |
//! | `/lf.a2a.v1.A2AService/*` (h2c)       | gRPC                               |
//!
//! A thin adapter: [`handler::A2aHandler`] implements the A2A SDK's
//! `RequestHandler` over the agent API ([`crate::agents::AgentApi`]) and the
//! session's event feed; the SDK's routers and gRPC service carry it. Only `A2A-Version:
//! 1.0` is spoken. With tokens configured every call needs an agent (or
//! admin) token (`Authorization: Bearer`, or `authorization` gRPC metadata) and sees only
//! its tenant; failed calls are counted and throttled per peer as on the
//! gRPC port. With `--tls-cert` the port serves HTTPS and gRPC over TLS
//! (ALPN `h2`, `http/1.1`) with the gRPC port's certificate.
pub mod busy;
pub mod card;
pub mod convert;
pub mod handler;
pub mod numbers;
pub mod request;
pub mod stream;

use std::sync::Arc;

use a2a_pb::proto::a2a_service_server::A2aServiceServer;
use axum::{
    Json,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Connections,
    net::{
        self, Incoming, bearer,
        host::{self, AllowedHosts},
    },
};
pub use handler::A2aHandler;

/// What the A2A listener is given besides the handler.
pub struct Listener {
    /// Connections, bounded as on every listener ([`crate::net`]).
    pub incoming: Incoming,
    pub limits: Connections,
    /// `Host` values accepted (DNS-rebinding guard), besides the public
    /// URL's host; empty: loopback names only.
    pub allowed_hosts: Vec<String>,
    /// TLS (the gRPC port's certificate); `None`: plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Largest request body or gRPC message, in bytes.
    pub max_body_bytes: usize,
}

/// Serves A2A on `l` until `shutdown` is cancelled (then open connections
/// get [`net::http::serve`]'s few seconds to finish).
pub async fn serve(l: Listener, mut handler: A2aHandler, shutdown: CancellationToken) {
    handler.stopping = shutdown.clone();
    let bearer = handler.bearer.clone();
    let hosts = Arc::new(
        AllowedHosts::new(
            &l.allowed_hosts,
            Some(&handler.public_url),
            "add it with --a2a-allowed-host, or set --a2a-public-url",
        )
        // A page of another origin may not make a browser call it: a JSON-RPC
        // POST sent as text/plain needs no preflight, and ran a tool.
        .checking_origin(),
    );
    let handler = Arc::new(handler);
    let grpc = A2aServiceServer::new(a2a_grpc::GrpcHandler::new(handler.clone()))
        .max_decoding_message_size(l.max_body_bytes)
        .max_encoding_message_size(l.max_body_bytes);
    let calls = axum::Router::new()
        .nest(
            card::JSONRPC_PATH,
            a2a_server::jsonrpc::jsonrpc_router(handler.clone()),
        )
        .nest(
            card::REST_PATH,
            a2a_server::rest::rest_router(handler.clone()),
        )
        .route_service("/lf.a2a.v1.A2AService/{*method}", grpc)
        .layer(middleware::from_fn(numbers::layer))
        .layer(middleware::from_fn(request::version_layer))
        .layer(middleware::from_fn(busy::layer))
        .layer(middleware::from_fn_with_state(bearer, bearer::authenticate));
    let app = calls
        .route(card::PATH, get(agent_card).with_state(handler))
        .layer(middleware::from_fn_with_state(hosts, host::check_host))
        .layer(middleware::from_fn_with_state(l.max_body_bytes, limit_body));
    net::http::serve_tls(
        l.incoming,
        app,
        &l.limits,
        l.tls,
        net::http::Calls::RunToEnd,
        shutdown,
    )
    .await;
}

/// The card, with the skills of the caller's tenant when the request
/// carries a valid token (or tokens are off).
async fn agent_card(State(handler): State<Arc<A2aHandler>>, req: Request) -> Response {
    let caller = handler
        .bearer
        .caller(req.headers().get(header::AUTHORIZATION))
        .ok();
    let mut r = Json(handler.card(caller.as_ref()).await).into_response();
    // Skills differ by token: no shared cache may keep one tenant's card.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=60"),
    );
    r
}

/// Caps every request body at `max` bytes (the SDK's routers set their own
/// 10 MiB default, which this keeps from being the bound): a longer one
/// fails to read, and is answered 413 in the binding's own error form
/// (the routers' answer was a bare "length limit exceeded"): a JSON-RPC
/// error on `/jsonrpc`, `application/problem+json` on `/rest`.
async fn limit_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, max)));
    let response = next.run(req).await;
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let message = format!(
        "the request body is over the server's limit of {max} bytes (--max-message-bytes): \
         pass large data by reference (a URL or a path)"
    );
    let (content_type, body) = if path.starts_with(card::JSONRPC_PATH) {
        let error = serde_json::json!({
            "jsonrpc": "2.0", "id": null,
            "error": {"code": a2a::error_code::INVALID_REQUEST, "message": message},
        });
        ("application/json", error)
    } else if path.starts_with(card::REST_PATH) {
        let error = serde_json::json!({"error": {
            "code": 413, "status": "INVALID_ARGUMENT", "message": message, "details": [],
        }});
        ("application/problem+json", error)
    } else {
        return response;
    };
    let mut answer = (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    answer
}
