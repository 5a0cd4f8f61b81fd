//! A session's events for `SessionEvents`: its completions exactly as the
//! [`Feed`] sends them (replayed, then live, each seq once and in order),
//! with its running tasks' progress woven in.
//!
//! Progress goes out only once the replay is done: first the latest report
//! of each running task, then live ones, at most one per task per
//! `interval` (a newer report waiting replaces an older one: the latest
//! wins), each with a higher `index` than the task's last one sent here.
//! Just before a report goes out its task is checked to be still running
//! here, so no report follows its task's completion on a stream: the task
//! leaves the live state before its completion is stored, and so before the
//! feed can send it. Reports come through a lossy broadcast; a reader that
//! lags asks for the latest again. Nothing here waits on the reader but the
//! channel send, and the maps are bounded by the session's running tasks.
use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, oneshot},
    time::Instant,
};
use tracing::debug;
use uuid::Uuid;

use super::{
    Feed, SessionHub,
    coalesce::{Coalescer, recv, sleep_until},
};
use crate::{
    error::Error,
    model::{CompletionRecord, ProgressRecord, SessionKey},
};

/// Tasks a stream tracks before it drops those no longer running.
const PRUNE_AT: usize = 1024;

/// One event of a session.
#[derive(Debug, Clone)]
pub enum Event {
    Completion(Arc<CompletionRecord>),
    Progress(Arc<ProgressRecord>),
}

/// One event, or the error that ends the stream (as [`super::FeedItem`]).
pub type EventItem = Result<Event, Error>;

/// Where the latest progress of running tasks is kept (the scheduler).
pub trait ProgressSource: Send + Sync + 'static {
    /// The latest progress of each running task of a session key.
    fn session_progress(&self, session: &str) -> Vec<Arc<ProgressRecord>>;
    /// The latest progress of a task while it runs here; `None` once it ended.
    fn progress_of(&self, task: Uuid) -> Option<Arc<ProgressRecord>>;
}

/// Opens session event streams.
#[derive(Clone)]
pub struct Events {
    feed: Feed,
    hub: Arc<SessionHub>,
    source: Arc<dyn ProgressSource>,
    /// Least time between two progress events of one task on one stream.
    interval: Duration,
}

impl Events {
    pub fn new(
        feed: Feed,
        hub: Arc<SessionHub>,
        source: Arc<dyn ProgressSource>,
        interval: Duration,
    ) -> Self {
        Self {
            feed,
            hub,
            source,
            interval,
        }
    }

    /// The completions of `session` with seq > `after_seq`, then with
    /// `include_progress` the running tasks' progress, then both live,
    /// until the receiver is dropped or an error item ends them. The
    /// completions are bounded by `window` as [`super::Feed::open`] says;
    /// progress reports are not (they are small and coalesced).
    pub fn open(
        &self,
        session: SessionKey,
        after_seq: u64,
        include_progress: bool,
        buffer: usize,
        window: super::ByteWindow,
    ) -> mpsc::Receiver<EventItem> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        // Subscribed before the replay starts, so no report falls between.
        let progress = include_progress.then(|| self.hub.subscribe_progress(session.as_key()));
        let (signal, caught_up) = oneshot::channel();
        let feed = self
            .feed
            .open_marked(session.clone(), after_seq, window, Some(signal));
        let me = self.clone();
        tokio::spawn(async move {
            me.run(session.as_key(), feed, caught_up, progress, &tx)
                .await;
            debug!(session_id = %crate::logs::field(session.name()), "session events ended");
        });
        rx
    }

    async fn run(
        &self,
        session: &str,
        mut feed: mpsc::Receiver<super::FeedItem>,
        mut caught_up: oneshot::Receiver<()>,
        mut progress: Option<broadcast::Receiver<Arc<ProgressRecord>>>,
        tx: &mpsc::Sender<EventItem>,
    ) {
        let mut due = Coalescer::new(self.interval);
        let mut replayed = false;
        let mut prune_at = PRUNE_AT;
        loop {
            let wake = due.next_due().filter(|_| replayed);
            tokio::select! {
                biased;
                item = feed.recv() => match item {
                    Some(Ok(c)) => {
                        due.forget(c.task_id);
                        if tx.send(Ok(Event::Completion(c))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => return,
                },
                done = &mut caught_up, if !replayed => {
                    replayed = true;
                    if done.is_err() {
                        // The feed ended before its replay: its error follows.
                        continue;
                    }
                    // What the replay queued goes first.
                    while let Ok(item) = feed.try_recv() {
                        let end = item.is_err();
                        let item = item.map(|c| {
                            due.forget(c.task_id);
                            Event::Completion(c)
                        });
                        if tx.send(item).await.is_err() || end {
                            return;
                        }
                    }
                    if progress.is_some() {
                        for p in self.source.session_progress(session) {
                            due.offer(p);
                        }
                    }
                }
                report = recv(&mut progress) => match report {
                    Ok(p) => due.offer(p),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for p in self.source.session_progress(session) {
                            due.offer(p);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => progress = None,
                },
                () = sleep_until(wake), if wake.is_some() => {}
                () = tx.closed() => return,
            }
            if due.tracked() > prune_at {
                // Tasks that ended without their completion passing here
                // (acknowledged before this stream read it).
                due.retain(|id| self.source.progress_of(id).is_some());
                prune_at = (2 * due.tracked()).max(PRUNE_AT);
            }
            if replayed {
                for p in due.ready(Instant::now()) {
                    if self.source.progress_of(p.task_id).is_none() {
                        // It ended: its completion is on the way, or sent.
                        due.forget(p.task_id);
                        continue;
                    }
                    if tx.send(Ok(Event::Progress(p))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::sessions::testing::{Running, report};
    use crate::{
        model::{Finish, Outcome, TaskRecord, TaskState},
        store::{Store, memory::MemoryStore},
    };

    struct Fixture {
        store: Arc<MemoryStore>,
        hub: Arc<SessionHub>,
        running: Arc<Running>,
        events: Events,
    }

    fn wide() -> crate::sessions::ByteWindow {
        crate::sessions::ByteWindow::new(u32::MAX as usize)
    }

    fn fixture(interval: Duration) -> Fixture {
        let store = Arc::new(MemoryStore::default());
        let hub = Arc::new(SessionHub::default());
        let feed = Feed::new(store.clone(), hub.clone(), CancellationToken::new(), 4);
        let running = Arc::new(Running::default());
        let events = Events::new(feed, hub.clone(), running.clone(), interval);
        Fixture {
            store,
            hub,
            running,
            events,
        }
    }

    impl Fixture {
        /// A report the scheduler accepted.
        fn report(&self, p: Arc<ProgressRecord>) {
            self.running.0.lock().unwrap().insert(p.task_id, p.clone());
            self.hub.progress(p);
        }

        /// Ends `task` as the scheduler does: out of the live state, stored,
        /// then announced.
        async fn complete(&self, task: Uuid) {
            self.running.0.lock().unwrap().remove(&task);
            let record = TaskRecord {
                id: task,
                session: "s".into(),
                tool: "t".into(),
                arguments: "{}".into(),
                timeout: Duration::from_secs(1),
                retry_of: None,
                queue_deadline: None,
                idempotency_key: None,
                created_at: SystemTime::now(),
                state: TaskState::Queued,
                attempts: 0,
                started_at: None,
                finished_at: None,
                outcome: None,
                seq: 0,
                delivery: Default::default(),
                call: Default::default(),
                notes: Default::default(),
            };
            self.store.insert_task(&record).await.unwrap();
            let finish = Finish {
                task_id: task,
                state: TaskState::Succeeded,
                outcome: Outcome::Result("1".into()),
                attempts: 1,
                finished_at: SystemTime::now(),
                notes: Default::default(),
            };
            let c = self.store.finish_task(&finish).await.unwrap().unwrap();
            self.hub.completed(c);
        }
    }

    async fn next(rx: &mut mpsc::Receiver<EventItem>) -> Event {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("an event, not an error")
    }

    fn index(e: &Event) -> u64 {
        match e {
            Event::Progress(p) => p.index,
            Event::Completion(c) => panic!("a progress event, got completion {}", c.seq),
        }
    }

    #[tokio::test]
    async fn replay_then_the_latest_progress_then_live_and_nothing_after_the_completion() {
        let f = fixture(Duration::from_millis(50));
        let (done, running) = (Uuid::new_v4(), Uuid::new_v4());
        f.complete(done).await;
        f.running
            .0
            .lock()
            .unwrap()
            .insert(running, report(running, 4));
        let mut rx = f.events.open(SessionKey::from_key("s"), 0, true, 8, wide());
        assert!(matches!(next(&mut rx).await, Event::Completion(c) if c.seq == 1));
        assert_eq!(
            index(&next(&mut rx).await),
            4,
            "the latest, after the replay"
        );
        for i in 5..=9 {
            f.report(report(running, i));
        }
        // At most one per interval: 5 at once or after the interval, then the latest.
        let mut seen = vec![index(&next(&mut rx).await)];
        while *seen.last().unwrap() < 9 {
            seen.push(index(&next(&mut rx).await));
        }
        assert!(
            seen.len() <= 2 && seen.windows(2).all(|w| w[0] < w[1]),
            "{seen:?}"
        );
        f.report(report(running, 10));
        f.complete(running).await;
        // Whatever went out of 10 went before the completion, and nothing after.
        let mut after = next(&mut rx).await;
        if let Event::Progress(p) = &after {
            assert_eq!(p.index, 10);
            after = next(&mut rx).await;
        }
        assert!(matches!(after, Event::Completion(c) if c.seq == 2));
        f.hub.progress(report(running, 11));
        let other = Uuid::new_v4();
        f.report(report(other, 1));
        assert!(
            matches!(next(&mut rx).await, Event::Progress(p) if p.task_id == other),
            "the late report of the finished task is not sent"
        );
    }

    #[tokio::test]
    async fn without_progress_it_is_the_completions_feed() {
        let f = fixture(Duration::from_millis(1));
        let task = Uuid::new_v4();
        let mut rx = f
            .events
            .open(SessionKey::from_key("s"), 0, false, 8, wide());
        f.report(report(task, 1));
        f.complete(task).await;
        assert!(matches!(next(&mut rx).await, Event::Completion(c) if c.seq == 1));
    }
}
