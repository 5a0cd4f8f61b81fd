//! The dashboard on `--ui-listen`: a small web UI served from the binary,
//! its assets embedded (`assets/`, no CDN, nothing fetched at run time).
//!
//! - `GET /`, `/app.js`, `/style.css`: the single-page UI (hash routes for
//!   the overview, tasks, a task, workers).
//! - `GET /api/me`, `/api/tools`, `/api/tasks`, `/api/tasks/{id}`,
//!   `/api/workers`: JSON (see `api.rs`); `/api/events`: server-sent events,
//!   one `completion` event per finished task of the caller's tenant, fed
//!   by the session hub (not by polling the store).
//! - `POST /api/tasks/{id}/cancel`, `/api/tasks/{id}/retry`: need the CSRF
//!   token `/api/me` gives, in the `x-csrf-token` header.
//!
//! Access: with a tokens file every request carries `Authorization: Bearer
//! TOKEN` of an agent (the UI keeps it in the browser session) and sees its
//! tenant only; a worker token is refused. Without tokens the UI is open,
//! and `errand serve` only lets it listen on loopback.
use std::{sync::Arc, time::SystemTime};

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Caller, Role, Tokens},
    config::Connections,
    net::Incoming,
    scheduler::Scheduler,
    sessions::SessionHub,
};

mod api;

/// What the UI's handlers share.
#[derive(Clone)]
pub struct Ui {
    pub sched: Arc<Scheduler>,
    pub hub: Arc<SessionHub>,
    /// `None`: authentication off.
    pub tokens: Option<Arc<Tokens>>,
    /// The value state-changing requests must carry in `x-csrf-token`.
    csrf: Arc<str>,
}

impl Ui {
    pub fn new(sched: Arc<Scheduler>, hub: Arc<SessionHub>, tokens: Option<Arc<Tokens>>) -> Self {
        Self {
            sched,
            hub,
            tokens,
            csrf: uuid::Uuid::new_v4().simple().to_string().into(),
        }
    }

    /// Who sent the request. Errors: 401 without a valid token (when
    /// tokens are configured), 403 for a worker token.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, api::Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::anonymous());
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| denied(StatusCode::UNAUTHORIZED, "log in with an agent token"))?;
        let caller = tokens
            .verify(token.trim(), SystemTime::now())
            .map_err(|e| denied(StatusCode::UNAUTHORIZED, &e.to_string()))?;
        if caller.role != Some(Role::Agent) {
            return Err(denied(
                StatusCode::FORBIDDEN,
                "a worker token cannot use the dashboard: log in with an agent token",
            ));
        }
        Ok(caller)
    }

    /// The caller of a state-changing request, whose CSRF token matches.
    fn changer(&self, headers: &HeaderMap) -> Result<Caller, api::Denied> {
        let caller = self.caller(headers)?;
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if sent != Some(&*self.csrf) {
            return Err(denied(
                StatusCode::FORBIDDEN,
                "missing or stale CSRF token: reload the page",
            ));
        }
        Ok(caller)
    }
}

fn denied(status: StatusCode, message: &str) -> api::Denied {
    api::Denied(status, message.to_string())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The UI's routes.
pub fn router(ui: Ui) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("assets/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("assets/app.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("assets/style.css")) }),
        )
        .route("/api/me", get(api::me))
        .route("/api/tools", get(api::tools))
        .route("/api/tasks", get(api::tasks))
        .route("/api/tasks/{id}", get(api::task))
        .route("/api/tasks/{id}/cancel", post(api::cancel))
        .route("/api/tasks/{id}/retry", post(api::retry))
        .route("/api/workers", get(api::workers))
        .route("/api/events", get(api::events))
        .with_state(ui)
}

/// Serves the UI on `incoming` until `shutdown` is cancelled.
pub async fn serve(incoming: Incoming, limits: Connections, ui: Ui, shutdown: CancellationToken) {
    crate::net::http::serve(incoming, router(ui), &limits, shutdown).await;
}
