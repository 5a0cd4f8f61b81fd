//! The operator RPCs' wire side: `ListTasks`, `ListWorkers`, `CancelTasks`
//! and `RetryTask` requests as store queries, their page tokens, and
//! tasks and workers with what the live state adds.
use std::time::{Duration, SystemTime};

use errand_proto::v1 as pb;
use uuid::Uuid;

use super::convert;
use crate::{
    auth::Caller,
    config::Limits,
    error::Error,
    model::{SessionKey, TaskState, ToolKey},
    scheduler::views::{TaskView, WorkerView},
    store::{Cursor, TaskQuery},
    tenant,
};

/// `page_size` when the request gives none.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE: u32 = 1_000;

/// A `ListTasks` request of `caller`'s as a store query. Errors: a bad
/// session or tool name, a page size over [`MAX_PAGE`], an unknown status,
/// a page token this server did not issue for this order.
pub fn task_query(
    req: &pb::ListTasksRequest,
    caller: &Caller,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    if req.page_size > MAX_PAGE {
        return Err(Error::invalid(format!(
            "page_size {} is over the limit of {MAX_PAGE}: ask for fewer and follow next_page_token",
            req.page_size
        )));
    }
    let mut query = filter(caller, &req.session_id, &req.tool, &req.statuses, limits)?;
    query.newest_first = req.newest_first;
    query.limit = if req.page_size == 0 {
        DEFAULT_PAGE
    } else {
        req.page_size
    } as usize;
    if !req.page_token.is_empty() {
        query.after = Some(parse_token(&req.page_token, req.newest_first)?);
    }
    Ok(query)
}

/// A `CancelTasks` request as a query of unfinished tasks (its reason is
/// checked apart, by [`super::fields::cancel_reason`]). Errors: a bad
/// session or tool name, a status other than QUEUED or RUNNING.
pub fn cancel_query(
    req: &pb::CancelTasksRequest,
    caller: &Caller,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let query = filter(caller, &req.session_id, &req.tool, &req.statuses, limits)?;
    if let Some(s) = query.states.iter().find(|s| s.is_final()) {
        return Err(Error::invalid(format!(
            "statuses may only hold QUEUED and RUNNING: a {} task cannot be cancelled",
            s.name()
        )));
    }
    Ok(query)
}

/// The filter both listings share: the caller's tenant only (all tasks
/// when auth is off), then session, tool and states.
fn filter(
    caller: &Caller,
    session: &str,
    tool: &str,
    statuses: &[i32],
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let tenant = &*caller.tenant;
    let session = if session.is_empty() {
        None
    } else {
        Some(
            SessionKey::new(tenant, session, limits)?
                .as_key()
                .to_string(),
        )
    };
    let tool = if tool.is_empty() {
        None
    } else {
        crate::tools::check_name(tool)?;
        Some(ToolKey::new(tenant, tool).as_key().to_string())
    };
    let states = statuses
        .iter()
        .map(|s| state(*s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TaskQuery {
        key_prefix: (!tenant.is_empty()).then(|| tenant::key(tenant, "")),
        session,
        tool,
        states,
        after: None,
        newest_first: false,
        limit: DEFAULT_PAGE as usize,
        fallback_runs: false,
    })
}

fn state(code: i32) -> Result<TaskState, Error> {
    Ok(match pb::TaskStatus::try_from(code) {
        Ok(pb::TaskStatus::Queued) => TaskState::Queued,
        Ok(pb::TaskStatus::Running) => TaskState::Running,
        Ok(pb::TaskStatus::Succeeded) => TaskState::Succeeded,
        Ok(pb::TaskStatus::Failed) => TaskState::Failed,
        Ok(pb::TaskStatus::Cancelled) => TaskState::Cancelled,
        Ok(pb::TaskStatus::TimedOut) => TaskState::TimedOut,
        _ => {
            return Err(Error::invalid(format!(
                "statuses holds {code}, not a task status: use QUEUED (1) to TIMED_OUT (6)"
            )));
        }
    })
}

/// The token after `last`: "v1", the order, created_at in nanoseconds and
/// the task ID, hex-encoded so clients treat it as opaque.
pub fn page_token(last: &Cursor, newest_first: bool) -> String {
    let dir = if newest_first { 'd' } else { 'a' };
    let plain = format!("v1.{dir}.{}.{}", nanos(last.created_at), last.id.simple());
    plain.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Nanoseconds since the Unix epoch (0 before it).
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn parse_token(token: &str, newest_first: bool) -> Result<Cursor, Error> {
    let bad = || {
        Error::invalid(
            "page_token is not one this server issued for this order: pass next_page_token \
             unchanged, with the same newest_first, or leave it empty for the first page",
        )
    };
    if token.len() > 256 || !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    let plain = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = plain.split('.');
    let dir = if newest_first { "d" } else { "a" };
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("v1"), Some(d), Some(at), Some(id), None) if d == dir => Ok(Cursor {
            created_at: SystemTime::UNIX_EPOCH
                + Duration::from_nanos(at.parse().map_err(|_| bad())?),
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

/// A listed task with its runner.
pub fn task(view: &TaskView) -> pb::Task {
    let mut out = convert::task(&view.task);
    if let Some((id, name)) = &view.runner {
        out.worker_id = id.to_string();
        out.worker_name = name.clone();
    }
    out.progress = view.progress.as_deref().map(convert::progress);
    out
}

/// A worker as `ListWorkers` shows it.
pub fn worker(w: &WorkerView, server: &str) -> pb::WorkerInfo {
    let mut tools: Vec<String> = w
        .tools
        .iter()
        .map(|t| tenant::strip(t).to_string())
        .collect();
    tools.sort();
    pb::WorkerInfo {
        worker_id: w.id.to_string(),
        worker_name: w.name.clone(),
        tools,
        max_concurrency: u32::try_from(w.max_concurrency).unwrap_or(u32::MAX),
        running: u32::try_from(w.running).unwrap_or(u32::MAX),
        connected_at: Some(convert::timestamp(w.connected_at)),
        last_seen: Some(convert::timestamp(w.last_seen)),
        server: server.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_the_other_order_or_junk() {
        let c = Cursor {
            created_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            id: Uuid::new_v4(),
        };
        let t = page_token(&c, false);
        assert_eq!(parse_token(&t, false).unwrap(), c);
        assert!(matches!(
            parse_token(&t, true),
            Err(Error::InvalidArgument(_))
        ));
        for junk in ["zz", "abc", "00", &"ab".repeat(200)] {
            assert!(matches!(
                parse_token(junk, false),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
