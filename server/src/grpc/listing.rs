//! The operator RPCs' wire side: `ListTasks` and `CancelTasks` requests
//! as store queries ([`crate::agents::listing`] keys and checks them), and
//! tasks and workers with what the live state adds.
use errand_proto::v1 as pb;
use prost::Message;

use super::convert;
use crate::{
    agents::{TaskPage, listing},
    auth::Caller,
    config::Limits,
    error::Error,
    model::TaskState,
    scheduler::views::{TaskView, WorkerView},
    store::TaskQuery,
    tenant,
};

/// A `ListTasks` request of `caller`'s as a store query
/// ([`listing::task_query`], which says the errors).
pub fn task_query(
    req: &pb::ListTasksRequest,
    caller: &Caller,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let page = listing::Page {
        size: req.page_size,
        token: &req.page_token,
        newest_first: req.newest_first,
    };
    let states = req.statuses.iter().map(|s| state(*s));
    listing::task_query(caller, &req.session_id, &req.tool, states, page, limits)
}

/// A `CancelTasks` request as a query of unfinished tasks
/// ([`listing::cancel_query`]; its reason is checked apart, by
/// [`crate::agents::AgentApi::cancel_tasks`]).
pub fn cancel_query(
    req: &pb::CancelTasksRequest,
    caller: &Caller,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let states = req.statuses.iter().map(|s| state(*s));
    listing::cancel_query(caller, &req.session_id, &req.tool, states, limits)
}

/// A `TaskStatus` a client sent. Errors: UNSPECIFIED or a value the enum
/// does not have (INVALID_ARGUMENT).
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

/// A listed task with its runner.
/// A page of ListTasks within `budget` bytes: the tasks that fit, in
/// order; when some do not, the page ends before them and its
/// next_page_token starts there. One task always fits (the server's limits
/// are checked so at start: `Config::largest_message`), so paging always
/// moves on. Pages were cut by count only, and a few large arguments or
/// results made the default page fail RESOURCE_EXHAUSTED.
pub fn task_page(page: TaskPage, newest_first: bool, budget: usize) -> pb::ListTasksResponse {
    // Each repeated field: its tag, its length and its bytes.
    let size = |t: &pb::Task| {
        let len = t.encoded_len();
        len + prost::length_delimiter_len(len) + 1
    };
    let (tasks, cut) = listing::page_within(page.tasks.iter().map(task), size, budget, usize::MAX);
    let next_page_token = match cut {
        true => {
            let last = &page.tasks[tasks.len() - 1].task;
            listing::page_token(&crate::store::Cursor::of(last), newest_first)
        }
        false => page.next_page_token,
    };
    pb::ListTasksResponse {
        tasks,
        next_page_token,
        total_size: page.total_size,
    }
}

pub fn task(view: &TaskView) -> pb::Task {
    let mut out = convert::task(&view.task);
    if let Some((id, name)) = &view.runner {
        out.worker_id = id.to_string();
        out.worker_name = name.clone();
    }
    out.progress = view.progress.as_deref().map(convert::progress);
    out
}

/// A page of `ListWorkers` (`workers` sorted by ID): at most `page.size`
/// after `page.after`, and only as many as fit `budget` bytes (one always
/// does: a worker's Register fit the message limit); when some are left
/// out, next_page_token starts after the last one shown. The listing was
/// one response, and 500 workers of 256 tools were past the default
/// message limit with no way to ask for less.
pub fn worker_page(
    workers: &[WorkerView],
    page: listing::WorkerPage,
    server: &str,
    budget: usize,
) -> pb::ListWorkersResponse {
    let size = |w: &pb::WorkerInfo| {
        let len = w.encoded_len();
        len + prost::length_delimiter_len(len) + 1
    };
    let rest = workers
        .iter()
        .filter(|w| page.after.is_none_or(|after| w.id > after))
        .map(|w| worker(w, server));
    let (workers, cut) = listing::page_within(rest, size, budget, page.size);
    let next_page_token = match (cut, workers.last()) {
        (true, Some(last)) => {
            listing::worker_page_token(last.worker_id.parse().unwrap_or(u64::MAX))
        }
        _ => String::new(),
    };
    pb::ListWorkersResponse {
        workers,
        next_page_token,
    }
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
