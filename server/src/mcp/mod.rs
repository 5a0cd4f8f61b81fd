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
//! agent token, when tokens are configured), the session from the
//! `Errand-Session` header, else [`handler::Settings::default_session`].
pub mod agent;
pub mod convert;
pub mod handler;

use std::{sync::Arc, time::SystemTime};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header::AUTHORIZATION},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Caller, Role, Tokens},
    config::Connections,
    net::{self, Incoming},
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
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// Serves MCP on `l` until `shutdown` is cancelled (then open connections
/// get [`net::http::serve`]'s few seconds to finish).
pub async fn serve(
    l: Listener,
    handler: McpHandler,
    tokens: Option<Arc<Tokens>>,
    shutdown: CancellationToken,
) {
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
        .layer(middleware::from_fn_with_state(tokens, authenticate));
    net::http::serve(l.incoming, app, &l.limits, shutdown).await;
}

/// Leaves the [`Caller`] of the request's bearer token in its extensions,
/// or answers 401/403 with what to fix.
async fn authenticate(
    State(tokens): State<Option<Arc<Tokens>>>,
    mut req: Request,
    next: Next,
) -> Response {
    match caller(tokens.as_deref(), req.headers().get(AUTHORIZATION)) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err((status, message)) => (status, message).into_response(),
    }
}

fn caller(
    tokens: Option<&Tokens>,
    header: Option<&axum::http::HeaderValue>,
) -> Result<Caller, (StatusCode, String)> {
    let Some(tokens) = tokens else {
        return Ok(Caller::anonymous());
    };
    let unauthenticated = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
    let token = header
        .ok_or_else(|| unauthenticated("no credentials: send `Authorization: Bearer <token>`"))?
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let caller = tokens
        .verify(token, SystemTime::now())
        .map_err(|e| unauthenticated(&e.to_string()))?;
    match caller.role {
        Some(role) if role != Role::Agent => Err((
            StatusCode::FORBIDDEN,
            format!(
                "a token with role {} cannot call MCP tools: use one with role agent",
                role.name()
            ),
        )),
        _ => Ok(caller),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::auth::{TokenSpec, new_token};

    fn tokens(role: Role) -> (Tokens, String) {
        let token = new_token().unwrap();
        let spec = TokenSpec {
            role,
            tenant: "acme".into(),
            tools: None,
            expires: None,
            name: None,
        };
        (Tokens::parse(&spec.line(&token).unwrap()).unwrap(), token)
    }

    #[test]
    fn agent_tokens_pass_and_others_are_told_what_to_send() {
        assert_eq!(&*caller(None, None).unwrap().tenant, "");
        let (agents, token) = tokens(Role::Agent);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        assert_eq!(
            &*caller(Some(&agents), Some(&bearer)).unwrap().tenant,
            "acme"
        );
        let (status, message) = caller(Some(&agents), None).unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("Authorization: Bearer"), "{message}");
        let basic = HeaderValue::from_static("Basic abc");
        assert_eq!(
            caller(Some(&agents), Some(&basic)).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        let (workers, token) = tokens(Role::Worker);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let (status, message) = caller(Some(&workers), Some(&bearer)).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(message.contains("role agent"), "{message}");
    }
}
