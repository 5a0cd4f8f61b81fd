//! Bearer tokens on the HTTP front ends (MCP, A2A), checked as the gRPC
//! port checks them: the same [`Tokens`], the same rule for who may act as
//! an agent ([`Role::may_act_as`]: agent and admin tokens), failed calls
//! counted, logged and throttled per peer in the same [`FailedAuth`], and
//! each authenticated request counted in its tenant's [`TenantRate`], the
//! very bucket its gRPC calls use. A 401 names the scheme it wants
//! (`WWW-Authenticate: Bearer`, RFC 9110 section 15.5.2, as the MCP
//! authorization spec asks); [`streams_end_at_expiry`] ends an event stream
//! when the token that opened it expires, as the gRPC port's streams end.
use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;

use crate::{
    auth::{Caller, Role, Tokens, expiry},
    error::Error,
    grpc::{failed_auth::FailedAuth, rate::TenantRate},
    net::authorization,
};

/// The peer address of an HTTP request, left in its extensions by
/// [`super::http::serve`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

/// Who may call an HTTP front end.
#[derive(Clone)]
pub struct Bearer {
    /// `None`: authentication off, every caller is anonymous.
    pub tokens: Option<Arc<Tokens>>,
    /// Where failed calls are counted; `None`: not counted.
    pub failures: Option<Arc<FailedAuth>>,
    /// The per-tenant request rate (applies when tokens are configured);
    /// `None`: not limited.
    pub rate: Option<TenantRate>,
    /// What a non-agent token is told it cannot do ("call MCP tools").
    pub what: &'static str,
}

impl Bearer {
    /// The caller of an `Authorization` header value, or the HTTP status
    /// (401, 403) and what to fix.
    pub fn caller(&self, header: Option<&HeaderValue>) -> Result<Caller, (StatusCode, String)> {
        caller(self.tokens.as_deref(), header, self.what)
    }
}

/// [`Bearer::caller`] over `tokens`.
pub fn caller(
    tokens: Option<&Tokens>,
    header: Option<&HeaderValue>,
    what: &str,
) -> Result<Caller, (StatusCode, String)> {
    let Some(tokens) = tokens else {
        return Ok(Caller::anonymous());
    };
    let unauthenticated = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
    let token = authorization::bearer_token(header.map(HeaderValue::as_bytes))
        .map_err(|e| unauthenticated(&e.message(authorization::HEADER)))?;
    let caller = tokens
        .verify(token, SystemTime::now())
        .map_err(|e| unauthenticated(&e.to_string()))?;
    // The gRPC port's rule for ToolService: an admin acts as an agent of
    // its own tenant.
    match caller.role {
        Some(role) if !role.may_act_as(Role::Agent) => Err((
            StatusCode::FORBIDDEN,
            format!(
                "a token with role {} cannot {what}: use one with role agent or admin",
                role.name()
            ),
        )),
        _ => Ok(caller),
    }
}

/// Middleware: leaves the request's [`Caller`] in its extensions, or
/// answers 401/403 with what to fix. A peer past its failure budget, or a
/// tenant past its request rate, gets 429 with `Retry-After` (seconds). A
/// gRPC request (A2A's gRPC binding) gets each as the gRPC status it means
/// ([`refusal`]).
pub async fn authenticate(State(bearer): State<Bearer>, mut req: Request, next: Next) -> Response {
    let grpc = is_grpc(&req);
    let too_many = |message: String, wait: Duration| refusal(grpc, 429, message, Some(wait));
    match bearer.caller(req.headers().get(header::AUTHORIZATION)) {
        Ok(caller) => {
            // Only with tokens configured: an anonymous caller has no tenant
            // to count against, as on the gRPC port.
            if let (Some(rate), Some(_)) = (&bearer.rate, caller.role)
                && let Err(Error::RateLimited {
                    message,
                    retry_after,
                }) = rate.take(&caller.tenant)
            {
                return too_many(message, retry_after);
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err((StatusCode::UNAUTHORIZED, message)) => {
            let peer = req.extensions().get::<Peer>().map(|p| p.0);
            let over = bearer
                .failures
                .as_ref()
                .and_then(|f| f.failed(peer, &message, Instant::now()).err());
            match over {
                Some(wait) => too_many(
                    format!(
                        "too many calls without a valid token from this address ({message}): \
                         retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                    wait,
                ),
                None => refusal(grpc, 401, message, None),
            }
        }
        Err((status, message)) => refusal(grpc, status.as_u16(), message, None),
    }
}

/// Middleware, inside [`authenticate`]: a response that is a stream of
/// server-sent events (an MCP session's GET stream, a call answered as a
/// stream) ends when the caller's token expires. The token was checked once,
/// when the stream opened, and must not keep it open after it stopped
/// working; the client reconnects with a fresh token (the expired one gets
/// 401). Other responses, and callers whose token never expires, pass as
/// they are.
pub async fn streams_end_at_expiry(req: Request, next: Next) -> Response {
    let deadline = req.extensions().get::<Caller>().and_then(expiry::deadline);
    let response = next.run(req).await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    match deadline {
        Some(at) if streaming => {
            let (parts, body) = response.into_parts();
            let body = body
                .into_data_stream()
                .take_until(expiry::reached(Some(at)));
            Response::from_parts(parts, Body::from_stream(body))
        }
        _ => response,
    }
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A refusal with HTTP `status` (401, 403, 429) and `message`; with
/// `retry_after`, when to try again: `Retry-After` in whole seconds,
/// rounded up. For a gRPC request, the status a gRPC client reads instead
/// (an HTTP 429 would reach it as UNAVAILABLE, without the message):
/// UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED with
/// `retry-after-ms`, as the gRPC port answers.
pub(crate) fn refusal(
    grpc: bool,
    status: u16,
    message: String,
    retry_after: Option<Duration>,
) -> Response {
    if grpc {
        let error = match (status, retry_after) {
            (429, Some(retry_after)) => Error::RateLimited {
                message,
                retry_after,
            },
            (401, _) => Error::Unauthenticated(message),
            (403, _) => Error::PermissionDenied(message),
            _ => Error::ResourceExhausted(message),
        };
        return crate::grpc::status_codes::refusal_response(error);
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // The challenge a 401 must carry (RFC 9110 section 15.5.2): the
        // scheme to answer with, as the metrics listener sends it.
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(wait) = retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::{TokenSpec, new_token},
        metrics::Metrics,
    };

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
    fn agent_and_admin_tokens_pass_and_others_are_told_what_to_send() {
        assert_eq!(&*caller(None, None, "x").unwrap().tenant, "");
        let (agents, token) = tokens(Role::Agent);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        assert_eq!(
            &*caller(Some(&agents), Some(&bearer), "x").unwrap().tenant,
            "acme"
        );
        let (status, message) = caller(Some(&agents), None, "x").unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("Authorization: Bearer"), "{message}");
        let basic = HeaderValue::from_static("Basic abc");
        assert_eq!(
            caller(Some(&agents), Some(&basic), "x").unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        let (admins, token) = tokens(Role::Admin);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let admin = caller(Some(&admins), Some(&bearer), "x").unwrap();
        assert_eq!(
            (&*admin.tenant, admin.role),
            ("acme", Some(Role::Admin)),
            "an admin acts as an agent of its own tenant"
        );
        let (viewers, token) = tokens(Role::Viewer);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        assert_eq!(
            caller(Some(&viewers), Some(&bearer), "x").unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        let (workers, token) = tokens(Role::Worker);
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let (status, message) =
            caller(Some(&workers), Some(&bearer), "call MCP tools").unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            message.contains("cannot call MCP tools") && message.contains("role agent"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn failed_calls_are_counted_and_throttled_per_peer() {
        use axum::{body::Body, routing::get};
        use tower::ServiceExt;

        let (agents, _) = tokens(Role::Agent);
        let bearer = Bearer {
            tokens: Some(Arc::new(agents)),
            // A budget of one failure a minute: the second is throttled.
            failures: Some(Arc::new(FailedAuth::new(1, Arc::new(Metrics::default())))),
            rate: None,
            what: "call tools",
        };
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(bearer, authenticate));
        let request = || {
            let mut r = Request::new(Body::empty());
            r.extensions_mut().insert(Peer(IpAddr::from([10, 0, 0, 9])));
            r
        };
        let first = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
        let second = app.oneshot(request()).await.unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(second.headers().contains_key(header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn a_401_names_the_bearer_scheme() {
        use axum::{body::Body, routing::get};
        use tower::ServiceExt;

        let (agents, _) = tokens(Role::Agent);
        let bearer = Bearer {
            tokens: Some(Arc::new(agents)),
            failures: None,
            rate: None,
            what: "call tools",
        };
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(bearer, authenticate));
        // RFC 9110 section 15.5.2: a 401 carries the challenge it wants.
        for authorization in [None, Some("Bearer ert_wrong"), Some("Basic abc")] {
            let mut r = Request::new(Body::empty());
            if let Some(a) = authorization {
                r.headers_mut()
                    .insert(header::AUTHORIZATION, HeaderValue::from_static(a));
            }
            let refused = app.clone().oneshot(r).await.unwrap();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                refused.headers().get(header::WWW_AUTHENTICATE),
                Some(&HeaderValue::from_static("Bearer")),
                "{authorization:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_tenant_past_its_request_rate_is_told_to_wait() {
        use axum::{body::Body, routing::get};
        use tower::ServiceExt;

        let (agents, token) = tokens(Role::Agent);
        let bearer = Bearer {
            tokens: Some(Arc::new(agents)),
            failures: None,
            // One request a second: the second at once is refused.
            rate: Some(TenantRate::new(1)),
            what: "call tools",
        };
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(bearer, authenticate));
        let request = || {
            let mut r = Request::new(Body::empty());
            r.headers_mut().insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
            r
        };
        assert_eq!(
            app.clone().oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
        let refused = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // A gRPC request (A2A's gRPC binding) is told in gRPC's terms.
        let mut grpc = request();
        grpc.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        let refused = app.oneshot(grpc).await.unwrap();
        assert_eq!(refused.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        assert!(refused.headers().contains_key("retry-after-ms"));
    }

    #[tokio::test]
    async fn a_grpc_request_without_a_token_is_unauthenticated_in_grpc_terms() {
        use axum::{body::Body, routing::get};
        use tower::ServiceExt;

        let (agents, _) = tokens(Role::Agent);
        let bearer = Bearer {
            tokens: Some(Arc::new(agents)),
            failures: None,
            rate: None,
            what: "call tools",
        };
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(bearer, authenticate));
        let mut r = Request::new(Body::empty());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let refused = app.oneshot(r).await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::OK,
            "gRPC statuses ride on 200"
        );
        let headers = refused.headers();
        assert_eq!(headers["grpc-status"], "16", "UNAUTHENTICATED");
        let message = headers["grpc-message"].to_str().unwrap();
        assert!(message.contains("Authorization"), "{message}");
    }
}
