//! Per-session broadcast of committed completions.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use tokio::sync::broadcast;

use super::Activity;
use crate::model::{CompletionRecord, ProgressRecord};

/// Live completions buffered per watched session before slow readers lag
/// (and fall back to the store).
const LIVE_BUFFER: usize = 64;
/// Largest completion (in [`CompletionRecord::bytes`]) handed to streams
/// live; a larger one is announced by its seq and read from the store, so
/// a watched session's buffer holds at most `LIVE_BUFFER` of this size
/// (4 MiB), not `LIVE_BUFFER` whole results.
pub const LIVE_INLINE_BYTES: usize = 64 * 1024;
/// Task events buffered before the dashboard's slow readers lag (and
/// reload their page).
const ACTIVITY_BUFFER: usize = 1024;

/// What a session's streams hear.
#[derive(Clone, Debug)]
pub enum Wake {
    /// A completion, committed and readable from the store.
    Completion(Arc<CompletionRecord>),
    /// Completions up to this seq are readable from the store (for example
    /// finished by another server).
    Seq(u64),
}

type Progress = broadcast::Sender<Arc<ProgressRecord>>;

/// Wake-ups for sessions that have an open stream, keyed by session key.
pub struct SessionHub {
    watchers: Mutex<HashMap<Arc<str>, broadcast::Sender<Wake>>>,
    /// Progress reports, for sessions with an open `SessionEvents` stream
    /// that asked for them. Lossy: a lagging reader asks the scheduler for
    /// the latest instead.
    progress: Mutex<HashMap<Arc<str>, Progress>>,
    /// Submits, starts, finishes and acks here, for the dashboard.
    activity: broadcast::Sender<Arc<Activity>>,
    /// Every session's progress reports, for the dashboard. Apart from
    /// `activity`, so a chatty worker can only make the dashboard's readers
    /// lag on progress, and each reader spaces what it sends
    /// ([`super::coalesce::Coalescer`]).
    all_progress: broadcast::Sender<Arc<ProgressRecord>>,
    /// Told of each [`Activity`] before it is broadcast, in the reporter's
    /// task: what they keep is up to date when the RPC that caused it
    /// returns.
    sinks: RwLock<Vec<Arc<dyn ActivitySink>>>,
}

/// Keeps something from each [`Activity`]. Called with the scheduler's
/// lock held: it must be quick and must not call the scheduler.
pub trait ActivitySink: Send + Sync {
    fn observe(&self, activity: &Activity);
}

impl Default for SessionHub {
    fn default() -> Self {
        Self {
            watchers: Mutex::default(),
            progress: Mutex::default(),
            activity: broadcast::channel(ACTIVITY_BUFFER).0,
            all_progress: broadcast::channel(ACTIVITY_BUFFER).0,
            sinks: RwLock::default(),
        }
    }
}

impl SessionHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, broadcast::Sender<Wake>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the session's wake-ups from now on.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<Wake> {
        let mut watchers = self.lock();
        match watchers.get(session) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(LIVE_BUFFER);
                watchers.insert(session.into(), tx);
                rx
            }
        }
    }

    /// Hands a committed completion to the session's streams: itself, or
    /// over [`LIVE_INLINE_BYTES`] its seq (the streams read it from the
    /// store).
    pub fn completed(&self, completion: CompletionRecord) {
        let session = completion.session.clone();
        let wake = if completion.bytes() > LIVE_INLINE_BYTES {
            Wake::Seq(completion.seq)
        } else {
            Wake::Completion(Arc::new(completion))
        };
        self.wake(&session, wake);
    }

    /// Tells the dashboard's followers what happened; never waits. `make`
    /// runs only when someone follows (a dashboard is configured).
    pub fn record(&self, make: impl FnOnce() -> Activity) {
        let sinks = self.sinks.read().unwrap_or_else(|e| e.into_inner());
        let listeners = self.activity.receiver_count() > 0;
        if sinks.is_empty() && !listeners {
            return;
        }
        let activity = make();
        for sink in sinks.iter() {
            sink.observe(&activity);
        }
        if listeners {
            let _ = self.activity.send(Arc::new(activity));
        }
    }

    /// Adds a sink every later [`Activity`] is handed to.
    pub fn add_sink(&self, sink: Arc<dyn ActivitySink>) {
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    /// A receiver of every [`Activity`] here from now on (lagging receivers
    /// lose the oldest).
    pub fn subscribe_activity(&self) -> broadcast::Receiver<Arc<Activity>> {
        self.activity.subscribe()
    }

    /// Tells the session's streams that completions up to `seq` are readable.
    pub fn notify(&self, session: &str, seq: u64) {
        self.wake(session, Wake::Seq(seq));
    }

    fn wake(&self, session: &str, wake: Wake) {
        let mut watchers = self.lock();
        if let Some(tx) = watchers.get(session)
            && tx.send(wake).is_err()
        {
            // Every stream of the session has closed.
            watchers.remove(session);
        }
    }

    /// Forgets sessions whose streams have all closed.
    pub fn prune(&self) {
        self.lock().retain(|_, tx| tx.receiver_count() > 0);
        self.lock_progress().retain(|_, tx| tx.receiver_count() > 0);
    }

    fn lock_progress(&self) -> MutexGuard<'_, HashMap<Arc<str>, Progress>> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the session's progress reports from now on.
    pub fn subscribe_progress(&self, session: &str) -> broadcast::Receiver<Arc<ProgressRecord>> {
        let mut progress = self.lock_progress();
        match progress.get(session) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(LIVE_BUFFER);
                progress.insert(session.into(), tx);
                rx
            }
        }
    }

    /// A receiver of every session's progress reports from now on (lagging
    /// receivers lose the oldest).
    pub fn subscribe_all_progress(&self) -> broadcast::Receiver<Arc<ProgressRecord>> {
        self.all_progress.subscribe()
    }

    /// Hands an accepted progress report to the session's event streams
    /// and the dashboard's; never waits.
    pub fn progress(&self, record: Arc<ProgressRecord>) {
        if self.all_progress.receiver_count() > 0 {
            let _ = self.all_progress.send(record.clone());
        }
        let mut progress = self.lock_progress();
        if let Some(tx) = progress.get(&*record.session) {
            let session = record.session.clone();
            if tx.send(record).is_err() {
                progress.remove(&*session);
            }
        }
    }

    /// The sessions with an open stream (shared mode checks their latest
    /// seq periodically, in case a wake-up from another server was lost).
    pub fn watched_sessions(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use uuid::Uuid;

    use super::*;
    use crate::model::{Outcome, TaskState};

    fn completion(seq: u64, result_bytes: usize) -> CompletionRecord {
        CompletionRecord {
            seq,
            task_id: Uuid::nil(),
            session: "s".into(),
            tool: "t".into(),
            arguments: "{}".into(),
            state: TaskState::Succeeded,
            outcome: Outcome::Result("1".repeat(result_bytes)),
            elapsed: Duration::ZERO,
            attempts: 1,
            completed_at: SystemTime::now(),
            result_budget: 0,
            notes: Default::default(),
            delivery: Default::default(),
        }
    }

    /// The live buffer keeps small completions whole and large ones by
    /// seq: what it holds per session stays bounded by size, not count.
    #[test]
    fn a_large_completion_is_announced_by_its_seq() {
        let hub = SessionHub::default();
        let mut rx = hub.subscribe("s");
        hub.completed(completion(1, 10));
        hub.completed(completion(2, LIVE_INLINE_BYTES + 1));
        assert!(matches!(rx.try_recv(), Ok(Wake::Completion(c)) if c.seq == 1));
        assert!(matches!(rx.try_recv(), Ok(Wake::Seq(2))));
    }
}
