//! MCP front end (protocol 2026-07-28 with the `io.modelcontextprotocol/tasks`
//! extension; 2025-11-25 clients get synchronous calls), served on its own
//! listener at `POST /mcp`, apart from the gRPC port: exposing MCP exposes
//! agents' calls only, never `WorkerService`.
//!
//! A thin adapter: [`handler::McpHandler`] calls an [`Agent`], which is the
//! agent API gRPC's `ToolService` translates ([`AgentApi`]) in process, or a
//! remote errand server (`errand mcp --stdio`).
//!
//! [`Agent`]: crate::agents::Agent
//! [`AgentApi`]: crate::agents::AgentApi Tasks live in errand's store, so
//! they survive restarts and their IDs are errand's task IDs.
//!
//! Per request: the caller comes from `Authorization: Bearer <token>` (an
//! agent or admin token, when tokens are configured; calls without a valid one are
//! counted and throttled per peer as on the gRPC port, see
//! [`crate::net::bearer`]), the session from the `Errand-Session` header,
//! else [`handler::Settings::default_session`]; an event stream (a
//! 2025-11-25 session's GET stream, a call answered as a stream) ends when
//! the token that opened it expires. With `--tls-cert` the
//! listener serves HTTPS with the gRPC port's certificate.
//!
//! A body rmcp cannot read as a JSON-RPC message is answered by
//! [`incoming`]'s rules, as `errand mcp --stdio` ([`lines`]) answers such a
//! line: HTTP 400 with the JSON-RPC error (413 over `--max-message-bytes`).
mod answers;
pub mod convert;
pub mod handler;
pub mod incoming;
pub mod lines;
pub mod malformed;
mod owners;
mod progress;
mod session_header;

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Connections,
    net::{
        self, Incoming,
        bearer::{self, Bearer},
        host::{self, AllowedHosts},
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

/// Serves MCP on `l` until `shutdown` is cancelled (the server's drain is
/// over): a call still waiting is answered then, every answer is written
/// ([`answers`]), and open connections get [`net::http::serve`]'s few
/// seconds to finish.
pub async fn serve(l: Listener, handler: McpHandler, bearer: Bearer, shutdown: CancellationToken) {
    let handler = handler.stopping_on(shutdown.clone());
    let written = tokio_util::task::TaskTracker::new();
    // errand's own Host guard (as on the A2A and dashboard listeners: its
    // 403 names the host and the flag), not rmcp's.
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(answers::closing_after(shutdown.clone(), written.clone()))
        .with_max_request_body_bytes(l.max_body_bytes)
        .disable_allowed_hosts();
    let hosts = Arc::new(
        AllowedHosts::new(&l.allowed_hosts, None, "add it with --mcp-allowed-host")
            // The MCP transport spec: servers MUST validate Origin (a page of
            // another origin may not drive a local server through a browser).
            .checking_origin(),
    );
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(written, answers::track))
        .layer(middleware::from_fn_with_state(
            l.max_body_bytes,
            screen_body,
        ))
        .layer(middleware::from_fn_with_state(
            owners::Owners::default(),
            owners::bind,
        ))
        // Inside the bearer layer, which leaves the caller it checks.
        .layer(middleware::from_fn(bearer::streams_end_at_expiry))
        .layer(middleware::from_fn_with_state(bearer, bearer::authenticate))
        .layer(middleware::from_fn(session_ended))
        .layer(middleware::from_fn_with_state(hosts, host::check_host));
    // rmcp runs each request's handler as a task of its own, and a call
    // whose client left ends with its request's future (the task it made
    // is cancelled then): the requests here end with their clients.
    net::http::serve_tls(
        l.incoming,
        app,
        &l.limits,
        l.tls,
        net::http::Calls::EndWithClient,
        shutdown,
    )
    .await;
}

/// A 2025-11-25 client's `DELETE` that ended its session: 204 No Content,
/// as clients expect of a completed DELETE (rmcp answers 202, which the
/// Python SDK logs as a failed termination).
async fn session_ended(req: Request, next: Next) -> Response {
    let delete = req.method() == Method::DELETE;
    let response = next.run(req).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

/// Answers a JSON POST body that is not a JSON-RPC request, or a request
/// with a key twice in one object, by [`incoming`]'s rules: rmcp checks the
/// request first (Host, Accept,
/// headers, session) and its "cannot deserialize" answer (415 with a line
/// of text) is replaced by the JSON-RPC error (400), or by 202 for a
/// notification it cannot read. A body over `max` bytes is answered 413
/// before rmcp sees it (it is not kept). rmcp's 404 (-32601) is
/// [`explained`].
async fn screen_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !is_json(req.headers()) {
        // rmcp answers these (405, 415) itself.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, &incoming::too_large(max));
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading an MCP request body failed");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    // Errand's JSON rule, which rmcp's parser does not keep (the last of
    // two values wins): a request with a key twice is answered here, as a
    // request's error (200), before rmcp could run it.
    if let Some(error) = incoming::duplicate_key(&bytes) {
        return answer(StatusCode::OK, &error);
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if response.status() == StatusCode::NOT_FOUND {
        return explained(response).await;
    }
    if response.status() == StatusCode::BAD_REQUEST {
        return bounded(response).await;
    }
    // With a JSON content type, rmcp answers 415 only for a body it cannot
    // read: then (and only then, off the hot path) the body is screened.
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    match incoming::screen(&bytes) {
        incoming::Screened::Message(_) => response,
        // As rmcp answers a notification.
        incoming::Screened::Ignored => StatusCode::ACCEPTED.into_response(),
        incoming::Screened::Refused(error) => answer(StatusCode::BAD_REQUEST, &error),
    }
}

/// Most bytes of a 404 answer [`explained`] reads: a JSON-RPC error.
const MAX_NOT_FOUND_BYTES: usize = 64 * 1024;

/// rmcp's 404 answer, its -32601 for a 2026-07-28 request as JSON, with
/// the error's message worded by [`malformed::explain`] (rmcp's own say
/// only the method's name); any other answer as it is.
async fn explained(response: Response) -> Response {
    if !is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, MAX_NOT_FOUND_BYTES)
        .collect()
        .await
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = collected.to_bytes();
    let body = match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
        Ok(ServerJsonRpcMessage::Error(mut e)) => {
            malformed::explain(&mut e.error);
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::to_vec(&ServerJsonRpcMessage::Error(e)).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    Response::from_parts(parts, Body::from(body))
}

/// rmcp's 400 answer, a JSON-RPC error (-32020 for a header that does not
/// match the body, which quotes both, unbounded), with its message as
/// [`malformed::bounded`] words it; any other answer as it is. rmcp's
/// answer is whole in memory already: reading it costs nothing more.
async fn bounded(response: Response) -> Response {
    if !is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let bytes = collected.to_bytes();
    let body = match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
        Ok(ServerJsonRpcMessage::Error(mut e)) => {
            e.error.message = malformed::bounded(&e.error.message).into();
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::to_vec(&ServerJsonRpcMessage::Error(e)).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    Response::from_parts(parts, Body::from(body))
}

/// Whether `Content-Type` is JSON as rmcp reads it (its essence, before
/// any `;`, is `application/json`).
fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split_once(';').map_or(v, |(essence, _)| essence);
            essence.trim().eq_ignore_ascii_case("application/json")
        })
}

/// A JSON-RPC error as an HTTP answer.
fn answer(status: StatusCode, error: &ServerJsonRpcMessage) -> Response {
    let body = serde_json::to_vec(error).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    /// `body` POSTed as JSON through [`screen_body`] in front of a route
    /// that answers as rmcp does (415 for a body it cannot read) or echoes
    /// what reached it: the status and the body answered.
    async fn through(max: usize, body: &str) -> (StatusCode, String) {
        let rmcp_like = |body: String| async move {
            match serde_json::from_str::<rmcp::model::ClientJsonRpcMessage>(&body) {
                Ok(_) => (StatusCode::OK, format!("passed {body}")),
                Err(e) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
            }
        };
        let app = axum::Router::new()
            .route("/", post(rmcp_like))
            .layer(middleware::from_fn_with_state(max, screen_body));
        let request = axum::http::Request::post("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn bodies_that_are_not_requests_are_answered_and_requests_pass_unchanged() {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(
            through(1024, ping).await,
            (StatusCode::OK, format!("passed {ping}"))
        );
        let (status, body) = through(1024, "not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], -32700, "{body}");
        let (status, body) = through(16, ping).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("over the limit of 16 bytes"), "{body}");
        let note = r#"{"jsonrpc":"2.0","method":"x/y","params":5}"#;
        assert_eq!(through(1024, note).await.0, StatusCode::ACCEPTED);
    }
}
