//! The task pages: the listing (one page of the store's [`TaskQuery`]), a
//! task with its attempts and the texts the model sees, its full result,
//! and Cancel / Retry.
use std::time::SystemTime;

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Access, Ui,
    api::{Denied, at_ms, failed, ok, status_name, tenant_of},
    query,
};
use crate::{
    agents::listing,
    model::{CompletionRecord, Finish, Outcome, ProgressRecord},
    scheduler::{self, views::TaskView},
    store::Cursor,
    tenant, text,
};

/// Characters of a result shown inline; `/api/tasks/{id}/result` has all.
const RESULT_PREVIEW: usize = 4_000;

/// A progress report as the UI shows it (in a task and in the `progress`
/// live event): the worker's numbers and message (at most 1 KiB, cut when
/// the report came in), and its time from submit; not its resume detail.
pub(super) fn progress_json(p: &ProgressRecord) -> Value {
    json!({
        "index": p.index,
        "progress": p.progress,
        "total": p.total,
        "message": p.message,
        "elapsed_ms": p.elapsed.as_millis() as u64,
    })
}

/// A task as the UI shows it, with the latest progress of its current run
/// (`null`: none reported, or not running here); `full` adds arguments,
/// result, texts and attempts.
fn task_json(ui: &Ui, access: &Access, view: &TaskView, full: bool) -> Value {
    let t = &view.task;
    let elapsed = t
        .finished_at
        .unwrap_or_else(SystemTime::now)
        .duration_since(t.created_at)
        .unwrap_or_default();
    let (worker_id, worker_name) = view
        .runner
        .as_ref()
        .map_or((String::new(), String::new()), |(id, n)| {
            (id.to_string(), n.clone())
        });
    let mut out = json!({
        "task_id": t.id.to_string(),
        "session_id": tenant::strip(&t.session),
        "tenant": tenant_of(access, &t.session),
        "tool": tenant::strip(&t.tool),
        "status": status_name(t.state),
        "attempts": t.attempts,
        "created_at": at_ms(Some(t.created_at)),
        "started_at": at_ms(t.started_at),
        "finished_at": at_ms(t.finished_at),
        "elapsed_ms": elapsed.as_millis() as u64,
        "worker_id": worker_id,
        "worker_name": worker_name,
        "seq": t.seq,
        "retry_of": t.retry_of.map(|id| id.to_string()),
        "progress": view.progress.as_deref().map(|p| {
            let mut out = progress_json(p);
            let created = t.created_at.duration_since(SystemTime::UNIX_EPOCH);
            out["reported_at"] = json!(created.unwrap_or_default().as_millis() as u64 + p.elapsed.as_millis() as u64);
            out
        }),
    });
    if !full {
        return out;
    }
    out["arguments_json"] = json!(&*t.arguments);
    out["timeout_ms"] = json!(t.timeout.as_millis() as u64);
    out["ack"] = json!(text::ack(t));
    out["may_change"] = json!(access.may_change(&t.session).is_ok());
    match &t.outcome {
        Some(Outcome::Result(r)) => {
            let chars = r.chars().count();
            out["result_json"] = json!(r.chars().take(RESULT_PREVIEW).collect::<String>());
            out["result_chars"] = json!(chars);
            out["result_truncated"] = json!(chars > RESULT_PREVIEW);
        }
        Some(Outcome::Error { code, message }) => {
            out["error"] = json!({ "code": code, "message": message });
        }
        None => {}
    }
    if let (Some(outcome), Some(finished_at)) = (&t.outcome, t.finished_at) {
        let finish = Finish {
            task_id: t.id,
            state: t.state,
            outcome: outcome.clone(),
            attempts: t.attempts,
            finished_at,
            notes: t.notes.clone(),
        };
        let c = CompletionRecord::new(t, &finish, t.seq);
        // The message exactly as the session's streams deliver it.
        let limits = &ui.sched.config().limits;
        let options = crate::grpc::convert::StreamOptions {
            max_bytes: limits.max_message_bytes,
            results_by_reference: false,
            default_budget: limits.result_budget_bytes as u64,
        };
        out["completion_message"] =
            json!(crate::grpc::convert::streamed_completion(&c, &options).message);
    }
    out["attempt_log"] = ui
        .stats
        .attempts(t.id)
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "worker_id": a.worker_id.to_string(),
                "worker_name": a.worker_name,
                "started_at": at_ms(Some(a.started_at)),
                "finished_at": at_ms(a.finished_at),
                "status": a.state.map(status_name),
            })
        })
        .collect();
    out
}

/// One page of tasks, newest first: `{tasks, next}` (`next`: the `page`
/// filter of the following page, "" at the end).
pub(super) async fn list(
    State(ui): State<Ui>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let q = match query::tasks(&query::params(&raw), &access, &ui.sched.config().limits) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let views = match ui.sched.list_tasks(&q).await {
        Ok(v) => v,
        Err(e) => return failed(e).into_response(),
    };
    let next = match views.last() {
        Some(last) if views.len() == q.limit => listing::page_token(&Cursor::of(&last.task), true),
        _ => String::new(),
    };
    let rows: Vec<Value> = views
        .iter()
        .map(|v| task_json(&ui, &access, v, false))
        .collect();
    ok(json!({ "tasks": rows, "next": next }))
}

/// Task `id` if the caller sees it (else 404, as for a missing one).
async fn visible(ui: &Ui, access: &Access, id: &str) -> Result<TaskView, Denied> {
    let id = scheduler::parse_task_id(id).map_err(failed)?;
    let view = ui.sched.task_view(id).await.map_err(failed)?;
    if !access.sees(&view.task.session) {
        return Err(failed(scheduler::not_found(id)));
    }
    Ok(view)
}

pub(super) async fn task(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match visible(&ui, &access, &id).await {
        Ok(view) => ok(task_json(&ui, &access, &view, true)),
        Err(r) => r.into_response(),
    }
}

/// The whole result (JSON text) or error message of a finished task.
pub(super) async fn result(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let view = match visible(&ui, &access, &id).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = match view.task.outcome {
        Some(Outcome::Result(r)) => r,
        Some(Outcome::Error { code, message }) => format!("[{code}] {message}"),
        None => {
            return Denied(StatusCode::CONFLICT, "the task has not finished".into())
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The task `id` a state-changing request names, with the caller's access:
/// the CSRF token checked, the task visible to it and its tenant's to change.
async fn changeable(ui: &Ui, headers: &HeaderMap, id: &str) -> Result<(Access, TaskView), Denied> {
    let access = ui.changer(headers)?;
    let view = visible(ui, &access, id).await?;
    access.may_change(&view.task.session)?;
    Ok((access, view))
}

pub(super) async fn cancel(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (access, view) = match changeable(&ui, &headers, &id).await {
        Ok(found) => found,
        Err(r) => return r.into_response(),
    };
    match ui
        .sched
        .cancel(view.task.id, "cancelled from the dashboard")
        .await
    {
        Ok(task) => ok(task_json(
            &ui,
            &access,
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
    let view = match changeable(&ui, &headers, &id).await {
        Ok((_, view)) => view,
        Err(r) => return r.into_response(),
    };
    match ui.sched.retry(&view.task).await {
        Ok((task, _)) => ok(json!({ "task_id": task.id.to_string(), "retry_of": id })),
        Err(e) => failed(e).into_response(),
    }
}
