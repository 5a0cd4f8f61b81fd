//! The dashboard under the budgets every other port keeps: a peer's calls
//! without a valid token count against `--auth-failures-per-minute`
//! (past it, 429 with `Retry-After` instead of 401), and a tenant's
//! requests against `--requests-per-second-per-tenant`. The dashboard
//! answered every call whatever the budgets said, and its failures were
//! not counted in `errand_auth_failures_total`.
use std::{sync::Arc, time::Instant};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};

use super::Ui;
use crate::net::{authorization, bearer::refusal};
use crate::{
    error::Error, grpc::failed_auth::FailedAuth, grpc::rate::TenantRate, net::bearer::Peer,
};

/// The budgets the dashboard shares with the other ports.
#[derive(Clone)]
pub struct Budgets {
    pub failures: Arc<FailedAuth>,
    pub rate: TenantRate,
}

/// Middleware: a tenant past its request rate gets 429 before its request
/// runs; a 401 the request earned counts against its peer's budget, and
/// past it becomes 429 (a valid token from that peer still passes, as on
/// the other ports).
pub async fn guard(State(ui): State<Ui>, req: Request, next: Next) -> Response {
    let (Some(budgets), Some(tokens)) = (ui.budgets.clone(), ui.tokens.clone()) else {
        return next.run(req).await;
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let token = authorization::bearer_token(value).ok();
    if let Some(caller) = token.and_then(|t| tokens.verify(t, std::time::SystemTime::now()).ok())
        && caller.role.is_some()
        && let Err(Error::RateLimited {
            message,
            retry_after,
        }) = budgets.rate.take(&caller.tenant)
    {
        return refusal(false, 429, message, Some(retry_after));
    }
    let response = next.run(req).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    match budgets
        .failures
        .failed(peer, "the dashboard: no valid token", Instant::now())
    {
        Ok(()) => response,
        Err(wait) => refusal(
            false,
            429,
            format!(
                "too many calls without a valid token from this address: retry in {} ms",
                wait.as_millis().max(1)
            ),
            Some(wait),
        ),
    }
}
