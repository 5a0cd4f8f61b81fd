//! The dashboard's JSON API and its live events. Every listing is one page
//! (at most 100 rows): the UI never holds more.
use std::{convert::Infallible, time::SystemTime};

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use errand_proto::v1 as pb;
use futures::Stream;
use serde_json::{Value, json};

use super::Ui;
use crate::{
    auth::Caller,
    grpc::{convert, listing},
    model::Outcome,
    scheduler::{self, views::TaskView},
    tenant, text,
};

/// Rows on one page of the task listing.
const PAGE: u32 = 50;
/// Characters of a result shown inline; the task's JSON has the rest.
const RESULT_PREVIEW: usize = 4_000;

/// A refused or failed request: its status and a message for the page.
pub(super) struct Denied(pub StatusCode, pub String);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        json_error(self.0, &self.1)
    }
}

pub(super) fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
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

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

/// An errand error as an HTTP status and its message.
fn failed(e: crate::Error) -> Denied {
    let status = tonic::Status::from(e);
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Denied(code, status.message().to_string())
}

fn millis(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| {
        json!(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
    })
}

fn status_name(s: i32) -> &'static str {
    pb::TaskStatus::try_from(s).map_or("UNKNOWN", |s| {
        s.as_str_name().trim_start_matches("TASK_STATUS_")
    })
}

/// A task as the UI shows it; `full` adds arguments, result and texts.
fn task_json(view: &TaskView, full: bool) -> Value {
    let t = listing::task(view);
    let mut out = json!({
        "task_id": t.task_id,
        "session_id": t.session_id,
        "tool": t.tool,
        "status": status_name(t.status),
        "attempts": t.attempts,
        "created_at": millis(&t.created_at),
        "started_at": millis(&t.started_at),
        "finished_at": millis(&t.finished_at),
        "elapsed_ms": t.elapsed_ms,
        "worker_id": t.worker_id,
        "worker_name": t.worker_name,
        "seq": t.seq,
    });
    if full {
        out["arguments_json"] = json!(t.arguments_json);
        out["timeout_ms"] = json!(t.timeout_ms);
        out["ack"] = json!(text::ack(&view.task));
        match &view.task.outcome {
            Some(Outcome::Result(r)) => {
                let cut = r.chars().count() > RESULT_PREVIEW;
                let shown: String = r.chars().take(RESULT_PREVIEW).collect();
                out["result_json"] = json!(shown);
                out["result_truncated"] = json!(cut);
            }
            Some(Outcome::Error { code, message }) => {
                out["error"] = json!({ "code": code, "message": message });
            }
            None => {}
        }
    }
    out
}

/// `key=value&...` of a query string, percent-decoded.
fn params(query: &Option<String>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) async fn me(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match ui.caller(&headers) {
        Ok(c) => ok(json!({
            "tenant": &*c.tenant,
            "role": c.role.map_or("local", |r| r.name()),
            "csrf": &*ui.csrf,
            "auth": ui.tokens.is_some(),
        })),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn tools(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let caller = match ui.caller(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let depth = ui.sched.depth(&caller.tenant);
    let tools: Vec<Value> = ui
        .sched
        .list_tools(&caller.tenant)
        .iter()
        .map(|(spec, workers)| {
            let (queued, running) = depth.get(spec.name.as_key()).copied().unwrap_or_default();
            json!({
                "name": spec.name.name(),
                "description": &*spec.description,
                "workers": workers,
                "queued": queued,
                "running": running,
            })
        })
        .collect();
    ok(json!({ "tools": tools }))
}

pub(super) async fn tasks(
    State(ui): State<Ui>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let caller = match ui.caller(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let mut req = pb::ListTasksRequest {
        page_size: PAGE,
        newest_first: true,
        ..Default::default()
    };
    for (k, v) in params(&query) {
        match (k.as_str(), v.is_empty()) {
            (_, true) => {}
            ("session", _) => req.session_id = v,
            ("tool", _) => req.tool = v,
            ("page", _) => req.page_token = v,
            ("status", _) => {
                let name = format!("TASK_STATUS_{}", v.to_ascii_uppercase());
                match pb::TaskStatus::from_str_name(&name) {
                    Some(s) => req.statuses.push(s as i32),
                    None => return json_error(StatusCode::BAD_REQUEST, "unknown status"),
                }
            }
            _ => {}
        }
    }
    let limits = &ui.sched.config().limits;
    let q = match listing::task_query(&req, &caller, limits) {
        Ok(q) => q,
        Err(e) => return failed(e).into_response(),
    };
    let views = match ui.sched.list_tasks(&q).await {
        Ok(v) => v,
        Err(e) => return failed(e).into_response(),
    };
    let next = match views.last() {
        Some(last) if views.len() == q.limit => {
            listing::page_token(&crate::store::Cursor::of(&last.task), true)
        }
        _ => String::new(),
    };
    let rows: Vec<Value> = views.iter().map(|v| task_json(v, false)).collect();
    ok(json!({ "tasks": rows, "next": next }))
}

/// The caller's task `id`, or the response to send instead.
async fn own(ui: &Ui, caller: &Caller, id: &str) -> Result<TaskView, Denied> {
    let id = scheduler::parse_task_id(id).map_err(failed)?;
    let view = ui.sched.task_view(id).await.map_err(failed)?;
    if tenant::of(&view.task.session) != &*caller.tenant {
        return Err(failed(scheduler::not_found(id)));
    }
    Ok(view)
}

pub(super) async fn task(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match ui.caller(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match own(&ui, &caller, &id).await {
        Ok(view) => ok(task_json(&view, true)),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn cancel(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match ui.changer(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let view = match own(&ui, &caller, &id).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match ui.sched.cancel(view.task.id, "").await {
        Ok(task) => ok(task_json(
            &TaskView {
                task,
                runner: None,
                progress: None,
            },
            true,
        )),
        Err(e) => failed(e).into_response(),
    }
}

pub(super) async fn retry(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match ui.changer(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let view = match own(&ui, &caller, &id).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match ui.sched.retry(&view.task).await {
        Ok((task, _)) => ok(json!({ "task_id": task.id.to_string(), "retry_of": id })),
        Err(e) => failed(e).into_response(),
    }
}

pub(super) async fn workers(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let caller = match ui.caller(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let tenant = caller.role.is_some().then_some(&*caller.tenant);
    let server = ui.sched.server_id();
    let workers: Vec<Value> = ui
        .sched
        .list_workers(tenant, None)
        .iter()
        .map(|w| {
            let w = listing::worker(w, server);
            json!({
                "worker_id": w.worker_id,
                "worker_name": w.worker_name,
                "tools": w.tools,
                "max_concurrency": w.max_concurrency,
                "running": w.running,
                "connected_at": millis(&w.connected_at),
                "last_seen": millis(&w.last_seen),
                "server": w.server,
            })
        })
        .collect();
    ok(json!({ "workers": workers }))
}

/// `completion` events for the caller's tenant: `{task_id, session_id,
/// tool, status}`, JSON. A reader that falls behind gets a `lagged` event
/// (and should reload its page).
pub(super) async fn events(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let caller = match ui.caller(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let rx = ui.hub.subscribe_all();
    let stream = completions(rx, caller.tenant.to_string());
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn completions(
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::model::CompletionRecord>>,
    tenant_name: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(rx, move |mut rx| {
        let tenant_name = tenant_name.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(c) if tenant::of(&c.session) == tenant_name => {
                        let data = json!({
                            "task_id": c.task_id.to_string(),
                            "session_id": tenant::strip(&c.session),
                            "tool": tenant::strip(&c.tool),
                            "status": convert::status(c.state).as_str_name().trim_start_matches("TASK_STATUS_"),
                            "at": c.completed_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                        });
                        let ev = Event::default().event("completion").data(data.to_string());
                        return Some((Ok(ev), rx));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        return Some((Ok(Event::default().event("lagged").data("{}")), rx));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}
