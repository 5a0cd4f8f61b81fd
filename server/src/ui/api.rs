//! The dashboard's JSON: who is looking, the overview, sessions and
//! workers, and the helpers the task pages share. Every listing is one page
//! (at most 100 rows): the UI never holds more.
use std::time::{Duration, SystemTime};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{Access, Ui};
use crate::{model::TaskState, tenant};

/// Rows on the overview, sessions and workers pages: all the UI holds.
const ROWS: usize = 100;

/// A refused or failed request: its status and a message for the page.
#[derive(Debug)]
pub(crate) struct Denied(pub StatusCode, pub String);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let mut r = json_response(self.0, &json!({ "error": self.1 }));
        if self.0 == StatusCode::UNAUTHORIZED {
            // The challenge a 401 must carry (RFC 9110 section 15.5.2).
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

/// An errand error as an HTTP status and its message (the one a gRPC
/// client gets). The status follows the error's [`Kind`](crate::error::Kind),
/// by google.rpc.Code's HTTP mapping, except FAILED_PRECONDITION: 409, as
/// the request conflicts with the task's state (a cancel of a finished task),
/// and input over a size limit: 413, not 429, which says "retry later".
pub(super) fn failed(e: crate::Error) -> Denied {
    use crate::error::Kind as K;
    let code = match e.kind() {
        _ if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
        K::InvalidArgument | K::OutOfRange => StatusCode::BAD_REQUEST,
        K::NotFound => StatusCode::NOT_FOUND,
        K::FailedPrecondition => StatusCode::CONFLICT,
        K::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        K::Unauthenticated => StatusCode::UNAUTHORIZED,
        K::PermissionDenied => StatusCode::FORBIDDEN,
        K::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Denied(code, e.into_message())
}

/// Milliseconds since the Unix epoch, for the page's clock.
pub(super) fn at_ms(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

pub(super) fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

pub(super) fn status_name(s: TaskState) -> &'static str {
    s.name()
}

/// The tenant of a key, shown only to callers who see several.
pub(super) fn tenant_of(access: &Access, key: &str) -> Value {
    if access.all {
        json!(tenant::of(key))
    } else {
        Value::Null
    }
}

/// Who is looking. Answers 200 with `logged_in: false` and why when the
/// token is missing or refused, so the page shows its login without an
/// error in the browser's console.
pub(super) async fn me(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match ui.access(&headers) {
        Ok(a) => ok(json!({
            "logged_in": true,
            "tenant": &*a.caller.tenant,
            "role": a.caller.role.map_or("local", |r| r.name()),
            "all_tenants": a.all,
            "may_change": a.caller.role.is_none_or(|r| r != crate::auth::Role::Viewer),
            "csrf": &*ui.csrf,
            "auth": ui.tokens.is_some(),
        })),
        Err(Denied(_, why)) => ok(json!({ "logged_in": false, "auth": true, "error": why })),
    }
}

/// Tools with workers, queue depth, the last hour's finishes and run-time
/// percentiles; queue depth over the last 15 minutes (`depth`: samples of
/// `[at_ms, queued, running]`, oldest first, then one for now). Queued
/// counts the shared queue too (several servers on PostgreSQL); running
/// counts this server's workers.
pub(super) async fn overview(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let now = SystemTime::now();
    let depth = super::stats::depth(&ui.sched).await;
    let tools = match access.scope() {
        Some(t) => ui.sched.list_tools(t),
        None => ui.sched.list_tools_all(),
    };
    let tools: Vec<Value> = tools
        .iter()
        .take(ROWS)
        .map(|(spec, workers)| {
            let key = spec.name.as_key();
            let (queued, running) = depth.get(key).copied().unwrap_or_default();
            let s = ui.stats.tool(key, now);
            json!({
                "name": spec.name.name(),
                "tenant": tenant_of(&access, key),
                "workers": workers,
                "queued": queued,
                "running": running,
                "succeeded_1h": s.succeeded,
                "failed_1h": s.failed,
                "p50_ms": ms(s.p50),
                "p99_ms": ms(s.p99),
                "description": spec.description.lines().next().unwrap_or_default(),
            })
        })
        .collect();
    let mut samples: Vec<Value> = ui
        .stats
        .depth(access.scope())
        .into_iter()
        .map(|(at, q, r)| json!([at_ms(Some(at)), q, r]))
        .collect();
    let (q, r) = depth
        .iter()
        .filter(|(k, _)| access.sees(k))
        .fold((0, 0), |(q, r), (_, (tq, tr))| (q + tq, r + tr));
    samples.push(json!([at_ms(Some(now)), q, r]));
    ok(json!({
        "tools": tools,
        "depth": samples,
        "depth_every_ms": super::stats::DEPTH_EVERY.as_millis() as u64,
    }))
}

/// The most recently active sessions this server saw: last seq,
/// acknowledged seq, unfinished tasks here.
pub(super) async fn sessions(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let rows: Vec<Value> = ui
        .stats
        .sessions(access.scope(), ROWS)
        .iter()
        .map(|s| {
            json!({
                "session_id": tenant::strip(&s.session),
                "tenant": tenant_of(&access, &s.session),
                "last_seq": s.last_seq,
                "acked_seq": s.acked_seq,
                "pending": ui.sched.pending(&s.session),
                "last_at": at_ms(Some(s.last_at)),
            })
        })
        .collect();
    ok(json!({ "sessions": rows }))
}

pub(super) async fn workers(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let server = ui.sched.server_id();
    let workers: Vec<Value> = ui
        .sched
        .list_workers(access.scope(), None)
        .iter()
        .take(ROWS)
        .map(|w| {
            let tenants = w.tools.first().map_or("", |k| tenant::of(k));
            // The client's names, as ListWorkers shows them.
            let mut tools: Vec<&str> = w.tools.iter().map(|t| tenant::strip(t)).collect();
            tools.sort();
            json!({
                "worker_id": w.id.to_string(),
                "worker_name": w.name,
                "tenant": if access.all { json!(tenants) } else { Value::Null },
                "tools": tools,
                "max_concurrency": u32::try_from(w.max_concurrency).unwrap_or(u32::MAX),
                "running": u32::try_from(w.running).unwrap_or(u32::MAX),
                "connected_at": at_ms(Some(w.connected_at)),
                "last_seen": at_ms(Some(w.last_seen)),
                "server": server,
            })
        })
        .collect();
    ok(json!({ "workers": workers }))
}
