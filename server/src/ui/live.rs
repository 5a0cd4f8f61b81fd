//! `/api/events`: the dashboard's live updates as server-sent events, fed
//! by the session hub's [`Activity`] (the scheduler's submits, starts and
//! finishes, and acks) and its progress reports, never by polling the store.
//!
//! Each event is named for what happened (`submitted`, `started`,
//! `finished`, `acked`, `progress`) and carries JSON `{task_id, session_id,
//! tool, status, seq, at}` (`task_id` and `tool` empty for `acked`). A
//! `progress` event adds the running task's latest report, `progress:
//! {index, progress, total, message, elapsed_ms}` (as `/api/tasks/{id}` has
//! it), and its `at` is when it was sent: of each task at most one per
//! `--progress-interval` goes out, the latest (a [`Coalescer`], as on
//! `SessionEvents`), and none once the task has finished. A reader that
//! falls behind gets `lagged` and should reload its page. Like every
//! event, a reader sees those of its tenant's sessions only (an admin's
//! or an open dashboard's: every tenant's).
//!
//! The stream ends when the token that opened it expires, as every errand
//! stream does ([`expiry`]): its last event is `expired`, `{error}` saying
//! so, and a reader reconnects with a fresh token (the expired one is
//! refused, 401).
use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Future, Stream};
use serde_json::json;
use tokio::{
    sync::broadcast::{Receiver, error::RecvError},
    time::Instant,
};

use super::{Access, Ui, tasks::progress_json};
use crate::{
    auth::expiry,
    model::ProgressRecord,
    sessions::{
        Activity, ActivityKind, ProgressSource,
        coalesce::{Coalescer, recv, sleep_until},
    },
    tenant,
};

pub(super) async fn events(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let deadline = expiry::deadline(&access.caller);
    let sources = Sources {
        activity: ui.hub.subscribe_activity(),
        progress: ui.hub.subscribe_all_progress(),
        running: ui.sched.clone(),
        interval: ui.sched.config().progress_interval,
    };
    let stream = follow(sources, access, deadline);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a stream follows: the hub's activity and progress reports, where
/// running tasks' latest progress is (to send none of a finished task),
/// and the least time between two progress events of one task.
struct Sources {
    activity: Receiver<Arc<Activity>>,
    progress: Receiver<Arc<ProgressRecord>>,
    running: Arc<dyn ProgressSource>,
    interval: Duration,
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The event `a` makes on the stream.
fn event(a: &Activity) -> Event {
    let (status, seq) = match &a.kind {
        ActivityKind::Submitted => ("QUEUED", 0),
        ActivityKind::Started { .. } => ("RUNNING", 0),
        ActivityKind::Finished { state, seq, .. } => (state.name(), *seq),
        ActivityKind::Acked { up_to_seq } => ("", *up_to_seq),
    };
    let task_id = if a.task_id.is_nil() {
        String::new()
    } else {
        a.task_id.to_string()
    };
    let data = json!({
        "task_id": task_id,
        "session_id": tenant::strip(&a.session),
        "tool": tenant::strip(&a.tool),
        "status": status,
        "seq": seq,
        "at": millis(a.at),
    });
    Event::default().event(a.name()).data(data.to_string())
}

/// The `progress` event of report `p`, sent at `at`.
fn progress_event(p: &ProgressRecord, at: SystemTime) -> Event {
    let data = json!({
        "task_id": p.task_id.to_string(),
        "session_id": tenant::strip(&p.session),
        "tool": tenant::strip(&p.tool),
        "status": "RUNNING",
        "seq": 0,
        "at": millis(at),
        "progress": progress_json(p),
    });
    Event::default().event("progress").data(data.to_string())
}

/// Tasks a stream tracks progress of before it drops those no longer running.
const PRUNE_AT: usize = 1024;

/// What [`follow`] holds between events.
struct Following {
    activity: Receiver<Arc<Activity>>,
    /// `None` once the hub closed it.
    progress: Option<Receiver<Arc<ProgressRecord>>>,
    running: Arc<dyn ProgressSource>,
    due: Coalescer,
    /// Reports taken from `due`, to send one per event.
    out: VecDeque<Arc<ProgressRecord>>,
    prune_at: usize,
    access: Access,
    expiry: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The next event for `f`, and `f` to go on with (`None` after `expired`);
/// `None`: the stream ends.
async fn next(mut f: Following) -> Option<(Event, Option<Following>)> {
    loop {
        while let Some(p) = f.out.pop_front() {
            if f.running.progress_of(p.task_id).is_some() {
                return Some((progress_event(&p, SystemTime::now()), Some(f)));
            }
            // It ended: its `finished` is on the way, or sent.
            f.due.forget(p.task_id);
        }
        let wake = f.due.next_due();
        tokio::select! {
            // The expiry first: an event at the same instant is not sent.
            biased;
            () = &mut f.expiry => {
                let error = expiry::expired(&f.access.caller).into_message();
                let ev = Event::default()
                    .event("expired")
                    .data(json!({ "error": error }).to_string());
                return Some((ev, None));
            }
            got = f.activity.recv() => match got {
                Ok(a) if f.access.sees(&a.session) => {
                    if let ActivityKind::Finished { .. } = a.kind {
                        f.due.forget(a.task_id);
                    }
                    return Some((event(&a), Some(f)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Some((lagged(), Some(f))),
                Err(RecvError::Closed) => return None,
            },
            got = recv(&mut f.progress) => match got {
                Ok(p) if f.access.sees(&p.session) => f.due.offer(p),
                Ok(_) => {}
                // Reports were lost: a reload shows the latest.
                Err(RecvError::Lagged(_)) => return Some((lagged(), Some(f))),
                Err(RecvError::Closed) => f.progress = None,
            },
            () = sleep_until(wake), if wake.is_some() => {}
        }
        if f.due.tracked() > f.prune_at {
            // Tasks that ended while no report of theirs waited.
            let running = &f.running;
            f.due.retain(|id| running.progress_of(id).is_some());
            f.prune_at = (2 * f.due.tracked()).max(PRUNE_AT);
        }
        f.out.extend(f.due.ready(Instant::now()));
    }
}

fn lagged() -> Event {
    Event::default().event("lagged").data("{}")
}

/// The events of `sources` that `access` may see, until the hub closes or
/// the caller's token expires at `deadline` (then `expired`, and the end):
/// a token checked once when the stream opened must not keep it open after
/// the token stopped working.
fn follow(
    sources: Sources,
    access: Access,
    deadline: Option<Instant>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Following {
        activity: sources.activity,
        progress: Some(sources.progress),
        running: sources.running,
        due: Coalescer::new(sources.interval),
        out: VecDeque::new(),
        prune_at: PRUNE_AT,
        access,
        expiry: Box::pin(expiry::reached(deadline)),
    };
    futures::stream::unfold(Some(start), |state| async move {
        let (ev, state) = next(state?).await?;
        Some((Ok(ev), state))
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::sessions::testing::Running;
    use crate::{
        auth::{Caller, Role},
        model::TaskState,
        sessions::SessionHub,
    };

    fn report(tenant: &str, task: Uuid, index: u64) -> Arc<ProgressRecord> {
        Arc::new(ProgressRecord {
            task_id: task,
            session: tenant::key(tenant, "s").into(),
            tool: tenant::key(tenant, "crawl").into(),
            index,
            progress: index as f64,
            total: 50.0,
            message: format!("<b>page {index}</b>"),
            detail_json: r#"{"resume":"here"}"#.into(),
            elapsed: Duration::from_millis(1000 + index),
        })
    }

    fn access(tenant: &str, role: Role) -> Access {
        Access {
            caller: Caller {
                tenant: tenant.into(),
                role: Some(role),
                ..Caller::anonymous()
            },
            all: role == Role::Admin,
        }
    }

    #[derive(Default)]
    struct Fixture {
        hub: Arc<SessionHub>,
        running: Arc<Running>,
    }

    type Events = std::pin::Pin<Box<dyn Stream<Item = (String, Value)> + Send>>;

    impl Fixture {
        /// A report the scheduler accepted.
        fn report(&self, p: Arc<ProgressRecord>) {
            self.running.0.lock().unwrap().insert(p.task_id, p.clone());
            self.hub.progress(p);
        }

        /// Ends `task` as the scheduler does: out of the live state, then
        /// announced.
        fn finish(&self, tenant: &str, task: Uuid) {
            self.running.0.lock().unwrap().remove(&task);
            self.hub.record(|| Activity {
                kind: ActivityKind::Finished {
                    state: TaskState::Succeeded,
                    seq: 1,
                    run: None,
                },
                task_id: task,
                session: tenant::key(tenant, "s").into(),
                tool: tenant::key(tenant, "crawl").into(),
                at: SystemTime::now(),
            });
        }

        /// The stream `access` reads, as the browser gets it: `(name, data)`.
        fn open(&self, access: Access, interval: Duration) -> Events {
            let sources = Sources {
                activity: self.hub.subscribe_activity(),
                progress: self.hub.subscribe_all_progress(),
                running: self.running.clone(),
                interval,
            };
            let body = Sse::new(follow(sources, access, None))
                .into_response()
                .into_body();
            let frames = body.into_data_stream().flat_map(|chunk| {
                let text = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
                let events: Vec<_> = text
                    .split("\n\n")
                    .filter(|f| !f.is_empty())
                    .map(|f| {
                        let field = |name: &str| {
                            f.lines()
                                .find_map(|l| l.strip_prefix(name))
                                .unwrap_or_default()
                                .to_string()
                        };
                        let data = field("data: ");
                        (field("event: "), serde_json::from_str(&data).unwrap())
                    })
                    .collect();
                futures::stream::iter(events)
            });
            Box::pin(frames)
        }
    }

    async fn next(events: &mut Events) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
    }

    /// The report as the page gets it: text as the worker wrote it (the
    /// page shows it as text), numbers, its time; no resume detail.
    #[tokio::test]
    async fn a_report_goes_out_as_a_progress_event_without_its_detail() {
        let f = Fixture::default();
        let mut events = f.open(access("a", Role::Viewer), Duration::from_millis(50));
        let task = Uuid::new_v4();
        f.report(report("a", task, 3));
        let (name, data) = next(&mut events).await;
        assert_eq!(name, "progress");
        assert_eq!(data["task_id"], task.to_string());
        assert_eq!(
            (&data["session_id"], &data["tool"]),
            (&json!("s"), &json!("crawl"))
        );
        assert_eq!(data["status"], "RUNNING");
        assert_eq!(
            data["progress"],
            json!({"index": 3, "progress": 3.0, "total": 50.0,
                   "message": "<b>page 3</b>", "elapsed_ms": 1003}),
        );
    }

    /// A reader sees its tenant's tasks' progress only, as it does their
    /// other events; an admin sees every tenant's.
    #[tokio::test]
    async fn progress_keeps_to_the_readers_tenant() {
        let f = Fixture::default();
        let interval = Duration::from_millis(10);
        let mut agent = f.open(access("a", Role::Agent), interval);
        let mut admin = f.open(access("ops", Role::Admin), interval);
        let (theirs, mine) = (Uuid::new_v4(), Uuid::new_v4());
        f.report(report("b", theirs, 1));
        f.report(report("a", mine, 1));
        let id =
            |(name, data): (String, Value)| (name, data["task_id"].as_str().unwrap().to_string());
        let progress = |task: Uuid| ("progress".to_string(), task.to_string());
        assert_eq!(id(next(&mut agent).await), progress(mine));
        let mut seen = [id(next(&mut admin).await), id(next(&mut admin).await)];
        seen.sort_by_key(|(_, task)| *task != theirs.to_string());
        assert_eq!(seen, [progress(theirs), progress(mine)]);
        f.finish("b", theirs);
        f.finish("a", mine);
        assert_eq!(
            id(next(&mut agent).await),
            ("finished".into(), mine.to_string())
        );
    }

    /// A chatty worker: of a burst only the latest goes out, an interval
    /// after the one before; none follows the task's `finished`; and a
    /// reader that fell behind the reports is told it lagged.
    #[tokio::test]
    async fn a_burst_is_spaced_to_its_latest_and_ends_with_the_task() {
        let f = Fixture::default();
        let interval = Duration::from_millis(100);
        let mut events = f.open(access("a", Role::Agent), interval);
        let task = Uuid::new_v4();
        f.report(report("a", task, 1));
        assert_eq!(next(&mut events).await.1["progress"]["index"], 1);
        let first = Instant::now();
        for i in 2..=50 {
            f.report(report("a", task, i));
        }
        let (name, data) = next(&mut events).await;
        assert_eq!(
            (name.as_str(), &data["progress"]["index"]),
            ("progress", &json!(50))
        );
        assert!(
            first.elapsed() >= interval / 2,
            "spaced: {:?}",
            first.elapsed()
        );

        f.report(report("a", task, 51));
        f.finish("a", task);
        let other = Uuid::new_v4();
        f.report(report("a", other, 1));
        let mut names = Vec::new();
        loop {
            let (name, data) = next(&mut events).await;
            if data["task_id"] == other.to_string() {
                break;
            }
            names.push(name);
        }
        assert_eq!(names, ["finished"], "no progress after the finish");

        // More reports than the hub buffers, unread: the reader lagged.
        for i in 2..=2000 {
            f.report(report("a", other, i));
        }
        assert_eq!(next(&mut events).await.0, "lagged");
    }
}
