//! The dashboard on `--ui-listen`: a small web UI served from the binary,
//! its assets embedded (`assets/`, no CDN, nothing fetched at run time).
//!
//! - `GET /`, `/app.js`, `/style.css`: the single-page UI (hash routes for
//!   the overview, tasks, a task, sessions, workers).
//! - `GET /api/me`, `/api/overview`, `/api/tasks`, `/api/tasks/{id}`,
//!   `/api/tasks/{id}/result`, `/api/sessions`, `/api/workers`: JSON (see
//!   `api.rs`, `tasks.rs`); `/api/events`: server-sent events of task
//!   activity and progress (`live.rs`), fed by the session hub and the
//!   scheduler, never by polling the store.
//! - `POST /api/tasks/{id}/cancel`, `/api/tasks/{id}/retry`: need the CSRF
//!   token `/api/me` gives, in the `x-csrf-token` header.
//!
//! Every response forbids framing (`X-Frame-Options: DENY`, CSP
//! `frame-ancestors 'none'`: no other site's page can overlay Cancel and
//! Retry to trick a click) and sniffing (`nosniff`), and its CSP lets the
//! page load its own script, style and API only ([`CSP`]).
//!
//! Every request's `Host` must be a loopback name, the listener's address
//! or one given with `--ui-allowed-host`, and so must a POST's `Origin`
//! when sent (403 otherwise): a guard against DNS rebinding.
//!
//! Access: with a tokens file every request carries `Authorization: Bearer
//! TOKEN` (the UI keeps it in the browser session). An agent or viewer
//! token sees its tenant; an admin token sees every tenant. Cancel and
//! Retry need an agent or admin token of the task's tenant; a viewer
//! changes nothing; a worker token is refused. Without tokens the UI is
//! open (every task), and `errand serve` only lets it listen on loopback.
use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Caller, Role, Tokens},
    config::Connections,
    grpc::{failed_auth::FailedAuth, rate::TenantRate},
    net::{
        Incoming, authorization,
        host::{self, AllowedHosts},
    },
    scheduler::Scheduler,
    sessions::SessionHub,
    tenant,
};

mod api;
mod guard;
mod live;
mod lru;
mod query;
pub mod stats;
mod tasks;

/// What the UI's handlers share.
#[derive(Clone)]
pub struct Ui {
    pub sched: Arc<Scheduler>,
    pub hub: Arc<SessionHub>,
    /// `None`: authentication off.
    pub tokens: Option<Arc<Tokens>>,
    /// Recent activity the overview and sessions pages show.
    pub stats: Arc<stats::Stats>,
    /// The value state-changing requests must carry in `x-csrf-token`.
    csrf: Arc<str>,
    /// The `Host` (and state-changing `Origin`) values accepted.
    hosts: Arc<AllowedHosts>,
    /// The failed-auth budget and tenant rate of the other ports; `None`:
    /// not kept (tests).
    budgets: Option<guard::Budgets>,
}

/// Who is looking: what they may see and change.
pub(crate) struct Access {
    pub caller: Caller,
    /// Every tenant (an admin, or authentication off).
    pub all: bool,
}

impl Access {
    /// The tenant the caller is limited to; `None`: every tenant.
    pub fn scope(&self) -> Option<&str> {
        (!self.all).then_some(&*self.caller.tenant)
    }

    /// Whether the caller may see the session or tool key `key`.
    pub fn sees(&self, key: &str) -> bool {
        self.all || tenant::of(key) == &*self.caller.tenant
    }

    /// Whether the caller may cancel or retry a task of the session key
    /// `key`. Errors: 403 for a viewer, or a token of another tenant.
    pub fn may_change(&self, key: &str) -> Result<(), api::Denied> {
        match self.caller.role {
            None => Ok(()),
            Some(Role::Agent | Role::Admin) if tenant::of(key) == &*self.caller.tenant => Ok(()),
            Some(Role::Viewer) => Err(denied(
                StatusCode::FORBIDDEN,
                "a viewer token can look but not cancel or retry: log in with an agent or \
                 admin token of the task's tenant",
            )),
            Some(_) => Err(denied(
                StatusCode::FORBIDDEN,
                &format!(
                    "only an agent or admin token of tenant {:?} may cancel or retry its tasks",
                    tenant::of(key)
                ),
            )),
        }
    }
}

impl Ui {
    /// The UI's state; its statistics follow `hub`'s activity from now on.
    pub fn new(sched: Arc<Scheduler>, hub: Arc<SessionHub>, tokens: Option<Arc<Tokens>>) -> Self {
        let stats = Arc::new(stats::Stats::default());
        hub.add_sink(stats.clone());
        Self {
            sched,
            hub,
            tokens,
            stats,
            csrf: uuid::Uuid::new_v4().simple().to_string().into(),
            hosts: Arc::new(Self::hosts(&[], None)),
            budgets: None,
        }
    }

    /// The UI counting failed calls in `failures` and tenants' requests in
    /// `rate`, the budgets of the other ports ([`guard`]).
    pub fn with_budgets(self, failures: Arc<FailedAuth>, rate: TenantRate) -> Self {
        Self {
            budgets: Some(guard::Budgets { failures, rate }),
            ..self
        }
    }

    /// The UI accepting `Host: allowed` (host names, any port; empty:
    /// loopback names only) and its listener's address `bound` (unless
    /// unspecified, like 0.0.0.0), also in a state-changing request's
    /// `Origin`; others get 403 ([`crate::net::host`]).
    pub fn with_allowed_hosts(self, allowed: &[String], bound: Option<SocketAddr>) -> Self {
        Self {
            hosts: Arc::new(Self::hosts(allowed, bound)),
            ..self
        }
    }

    fn hosts(allowed: &[String], bound: Option<SocketAddr>) -> AllowedHosts {
        AllowedHosts::bound(allowed, bound, "add it with --ui-allowed-host").checking_origin()
    }

    /// Who sent the request. Errors: 401 without a valid token (when
    /// tokens are configured), 403 for a worker token.
    fn access(&self, headers: &HeaderMap) -> Result<Access, api::Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(Access {
                caller: Caller::anonymous(),
                all: true,
            });
        };
        let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let token = authorization::bearer_token(value).map_err(|e| {
            let message = match e {
                authorization::Refused::Missing => {
                    "log in with an agent, admin or viewer token".to_string()
                }
                e => e.message(authorization::HEADER),
            };
            denied(StatusCode::UNAUTHORIZED, &message)
        })?;
        let caller = tokens
            .verify(token, SystemTime::now())
            .map_err(|e| denied(StatusCode::UNAUTHORIZED, &e.to_string()))?;
        match caller.role {
            Some(Role::Worker) => Err(denied(
                StatusCode::FORBIDDEN,
                "a worker token cannot use the dashboard: log in with an agent, admin or \
                 viewer token",
            )),
            role => Ok(Access {
                all: role == Some(Role::Admin),
                caller,
            }),
        }
    }

    /// The caller of a state-changing request, whose CSRF token matches.
    fn changer(&self, headers: &HeaderMap) -> Result<Access, api::Denied> {
        let access = self.access(headers)?;
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if sent != Some(&*self.csrf) {
            return Err(denied(
                StatusCode::FORBIDDEN,
                "missing or stale CSRF token: reload the page",
            ));
        }
        Ok(access)
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

/// The dashboard's Content-Security-Policy: its page runs its own script
/// and style (`/app.js`, `/style.css`; nothing inline, no CDN), talks to
/// its own API, shows its `data:` favicon, and nothing else. `frame-ancestors
/// 'none'`: no page may frame it (clickjacking of Cancel and Retry).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Middleware, outermost: [`CSP`], `X-Frame-Options: DENY` (browsers that
/// predate `frame-ancestors`) and `X-Content-Type-Options: nosniff` on
/// every response, a refused one (401, 403, 404) included.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The UI's routes.
pub fn router(ui: Ui) -> Router {
    let hosts = ui.hosts.clone();
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
        .route("/api/overview", get(api::overview))
        .route("/api/tasks", get(tasks::list))
        .route("/api/tasks/{id}", get(tasks::task))
        .route("/api/tasks/{id}/result", get(tasks::result))
        .route("/api/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/tasks/{id}/retry", post(tasks::retry))
        .route("/api/sessions", get(api::sessions))
        .route("/api/workers", get(api::workers))
        .route("/api/events", get(live::events))
        .layer(middleware::from_fn_with_state(ui.clone(), guard::guard))
        .layer(middleware::from_fn_with_state(hosts, host::check_host))
        .layer(middleware::map_response(security_headers))
        .with_state(ui)
}

/// Serves the UI on `incoming` until `shutdown` is cancelled, over `tls`
/// when given (the gRPC port's certificate and client CA: the page and its
/// API carry tokens and every task's data, as the gRPC port does).
pub async fn serve(
    incoming: Incoming,
    limits: Connections,
    ui: Ui,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    stats::spawn(ui.stats.clone(), ui.sched.clone(), shutdown.clone());
    crate::net::http::serve_tls(
        incoming,
        router(ui),
        &limits,
        tls,
        crate::net::http::Calls::RunToEnd,
        shutdown,
    )
    .await;
}
