//! Store outages: endings (a result, a timeout, a cancel) that the store
//! cannot take while it refuses writes are kept and retried until it takes
//! them, however long the outage; the paused clock makes a 10-minute
//! outage take no wall time.
use std::sync::Mutex;

use super::*;
use crate::{
    model::Finish,
    store::{Store, TaskQuery, health::WriteHealth},
};

/// Longer than the 120 s the finisher used to retry before giving up.
const OUTAGE: Duration = Duration::from_secs(600);

/// What [`Faulty`] changes in a memory store: its finishes fail with the
/// error set, and its write probe fails too unless told the error is only
/// the finishes' own.
#[derive(Default)]
struct Faults {
    /// The error every finish meets; `None`: finishes go through.
    refuse: Mutex<Option<StoreError>>,
    /// Whether the probe write goes through while finishes fail (the
    /// error is about the finishes' rows, not the store).
    probe_ok: std::sync::atomic::AtomicBool,
    /// Its write health, for a store that tracks it (as SQLite's does).
    health: Option<Arc<WriteHealth>>,
}

type Faulty = Doubled<Faults>;

impl Faults {
    fn refuse(&self, e: Option<StoreError>) {
        *self.refuse.lock().unwrap() = e;
    }

    fn refused(&self) -> Result<(), StoreError> {
        let refused = match &*self.refuse.lock().unwrap() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
        if let (Err(e), Some(health)) = (&refused, &self.health) {
            health.failed(e);
        }
        refused
    }
}

#[async_trait::async_trait]
impl Hooks for Faults {
    fn finishing(&self, _finish: &Finish) -> Result<(), StoreError> {
        self.refused()
    }
    fn write_health(&self) -> Option<Arc<WriteHealth>> {
        self.health.clone()
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        if self.probe_ok.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.refused()
    }
}

fn full() -> StoreError {
    StoreError::Full("the disk holding the data dir is full".into())
}

/// A scheduler over a [`Faulty`] store, a worker of tool `t` running one
/// task of session `s`, and the session's wake-ups.
async fn running(
    config: Config,
) -> (
    Arc<Faulty>,
    Core,
    WorkerId,
    Commands,
    pb::Assignment,
    tokio::sync::broadcast::Receiver<crate::sessions::Wake>,
) {
    running_on(config, Faulty::default()).await
}

async fn running_on(
    config: Config,
    store: Faulty,
) -> (
    Arc<Faulty>,
    Core,
    WorkerId,
    Commands,
    pb::Assignment,
    tokio::sync::broadcast::Receiver<crate::sessions::Wake>,
) {
    let store = Arc::new(store);
    let core = Core::new(config, store.clone());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    let announced = core.hub.subscribe("s");
    (store, core, w, rx, a, announced)
}

async fn stored_state(core: &Core, task_id: &str) -> TaskState {
    let id = parse_task_id(task_id).unwrap();
    core.store().get_task(id).await.unwrap().unwrap().state
}

/// Trial defect: a result that arrived while the disk was full was retried
/// for 120 s, then dropped from memory: the task stayed RUNNING in the
/// store and nothing reached the session until a restart ran it again. It
/// is kept until the store takes it, then stored and delivered once.
#[tokio::test(start_paused = true)]
async fn a_result_during_an_outage_longer_than_the_old_bound_is_stored_once_it_ends() {
    let (store, core, w, _rx, a, mut announced) = running(Config::default()).await;
    store.refuse(Some(full()));
    send_result(&core, w, &a, "42").await;
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Running);
    assert_eq!(core.finisher.in_flight(), 1, "the ending is kept");
    store.refuse(None);
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Succeeded);
    let log = core.store().completions_after("s", 0, 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].outcome, Outcome::Result("42".into()));
    assert_eq!(core.finisher.in_flight(), 0);
}

/// An `Internal` error (a read-only file system, an I/O error) while the
/// store's own probe write fails too is an outage: kept like a full disk.
#[tokio::test(start_paused = true)]
async fn an_internal_error_the_probe_meets_too_is_retried_until_the_store_takes_writes() {
    let (store, core, w, _rx, a, mut announced) = running(Config::default()).await;
    store.refuse(Some(StoreError::Internal("read-only file system".into())));
    send_result(&core, w, &a, "1").await;
    tokio::time::sleep(OUTAGE).await;
    store.refuse(None);
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Succeeded);
}

/// An `Internal` error that only this finish meets (the probe write goes
/// through: a corrupt row, a bug) is given up as before, after the bound:
/// nothing is held for ever for an ending no retry can store.
#[tokio::test(start_paused = true)]
async fn an_internal_error_of_one_finish_alone_is_given_up_after_the_bound() {
    let (store, core, w, _rx, a, _announced) = running(Config::default()).await;
    store.refuse(Some(StoreError::Internal("row is corrupt".into())));
    store
        .probe_ok
        .store(true, std::sync::atomic::Ordering::SeqCst);
    send_result(&core, w, &a, "1").await;
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(core.finisher.in_flight(), 0, "given up");
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Running);
}

/// The bound on an error only one finish meets counts from that error, not
/// from the finish's first try: after a 10-minute full disk, one transient
/// `Internal` (a batch rolled back as space came back) while the probe
/// goes through must not drop the ending kept all that time.
#[tokio::test(start_paused = true)]
async fn a_transient_internal_error_after_a_long_outage_does_not_drop_the_kept_ending() {
    let (store, core, w, _rx, a, mut announced) = running(Config::default()).await;
    store.refuse(Some(full()));
    send_result(&core, w, &a, "7").await;
    tokio::time::sleep(OUTAGE).await;
    store
        .probe_ok
        .store(true, std::sync::atomic::Ordering::SeqCst);
    store.refuse(Some(StoreError::Internal(
        "the store rolled a batch back: try again".into(),
    )));
    // Long enough for the finish to meet the Internal error (its backoff is
    // at most 5 s), short of the bound.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(core.finisher.in_flight(), 1, "the kept ending was dropped");
    store.refuse(None);
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Succeeded);
}

/// A run timeout that fires during an outage ends the task once the
/// store takes writes; it used to be dropped after 120 s.
#[tokio::test(start_paused = true)]
async fn a_run_timeout_during_an_outage_is_stored_once_it_ends() {
    let config = Config {
        default_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let (store, core, _w, _rx, a, mut announced) = running(config).await;
    store.refuse(Some(full()));
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Running);
    store.refuse(None);
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::TimedOut);
}

/// A queue timeout keeps counting while the store refuses writes (the
/// caller's bound on the wait for a worker); its ending is kept and
/// stored once the store takes writes, not dropped after 120 s.
#[tokio::test(start_paused = true)]
async fn a_queue_timeout_during_an_outage_is_stored_once_it_ends() {
    let (store, core, _w, _rx, _busy, mut announced) = running(Config::default()).await;
    let (waiting, _) = core
        .submit(submit_with_queue_timeout("s", "t", 1_000))
        .await
        .unwrap();
    store.refuse(Some(full()));
    tokio::time::sleep(OUTAGE).await;
    let id = waiting.id.to_string();
    assert_eq!(stored_state(&core, &id).await, TaskState::Queued);
    store.refuse(None);
    ended_in(&mut announced, &id).await;
    let task = core.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    assert_eq!(error_code(&task), codes::QUEUE_TIMEOUT);
}

/// A cancel whose caller goes away (its deadline, a closed connection)
/// while the store refuses writes: the task is out of the live state, so
/// its ending must not go with the caller's call.
#[tokio::test(start_paused = true)]
async fn a_cancel_whose_caller_leaves_during_an_outage_is_stored_once_it_ends() {
    let (store, core, _w, _rx, a, mut announced) = running(Config::default()).await;
    store.refuse(Some(full()));
    let id = parse_task_id(&a.task_id).unwrap();
    let gave_up = tokio::time::timeout(Duration::from_secs(5), core.cancel(id, "")).await;
    assert!(gave_up.is_err(), "the cancel waits for its write");
    tokio::time::sleep(OUTAGE).await;
    store.refuse(None);
    ended_in(&mut announced, &a.task_id).await;
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Cancelled);
}

/// Review defect: a bulk cancel during an outage took one task out of the
/// live state, then waited on its kept ending for the whole outage: the
/// others kept running, and when the caller's deadline dropped the call
/// only the first was ever cancelled. Every match is taken out first, and
/// their endings are awaited together.
#[tokio::test(start_paused = true)]
async fn a_bulk_cancel_during_an_outage_takes_every_task_before_it_waits() {
    let store = Arc::new(Faulty::default());
    let core = Core::new(Config::default(), store.clone());
    let (_w, mut rx) = worker(&core, &["t"], 3).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        core.submit(submit_request("s", "t")).await.unwrap();
        ids.push(parse_task_id(&assignment(&mut rx).task_id).unwrap());
    }
    let mut announced = core.hub.subscribe("s");
    store.refuse(Some(full()));
    let query = TaskQuery {
        key_prefix: None,
        session: Some("s".into()),
        tool: None,
        states: vec![],
        after: None,
        newest_first: false,
        limit: 100,
        fallback_runs: false,
    };
    let gave_up =
        tokio::time::timeout(Duration::from_secs(5), core.cancel_matching(query, "")).await;
    assert!(gave_up.is_err(), "the bulk cancel waits for its writes");
    for id in &ids {
        assert!(core.live_task(*id).is_none(), "task {id} still live");
    }
    tokio::time::sleep(OUTAGE).await;
    store.refuse(None);
    let mut unannounced: std::collections::HashSet<_> = ids.iter().copied().collect();
    while !unannounced.is_empty() {
        let wake = tokio::time::timeout(Duration::from_secs(10), announced.recv())
            .await
            .expect("every ending is announced")
            .unwrap();
        if let crate::sessions::Wake::Completion(c) = wake {
            unannounced.remove(&c.task_id);
        }
    }
    for id in &ids {
        assert_eq!(
            stored_state(&core, &id.to_string()).await,
            TaskState::Cancelled
        );
    }
}

/// A store that tracks its write health (SQLite's): a kept finish waits
/// for it to say a write went through (the server's probe, every second)
/// rather than trying every few seconds against a full disk, and so is
/// stored at once when one does.
#[tokio::test(start_paused = true)]
async fn a_kept_finish_is_tried_again_as_soon_as_the_store_takes_a_write() {
    let tracked = Faulty::new(Faults {
        health: Some(Arc::default()),
        ..Faults::default()
    });
    let (store, core, w, _rx, a, mut announced) = running_on(Config::default(), tracked).await;
    store.refuse(Some(full()));
    send_result(&core, w, &a, "7").await;
    tokio::time::sleep(OUTAGE).await;
    store.refuse(None);
    // What the server's probe does once a write goes through.
    store.health.as_ref().unwrap().wrote();
    tokio::time::timeout(
        Duration::from_millis(100),
        ended_in(&mut announced, &a.task_id),
    )
    .await
    .expect("stored within 100 ms of the store taking writes");
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Succeeded);
}

/// A start whose recovery ends a task that used its last attempt, on a
/// store that refuses writes: the start goes on (reads, health saying
/// NOT_SERVING), the ending is kept and stored once writes go through. It
/// used to hold the start for 120 s and drop the ending; retried for ever,
/// it would hold the start for the whole outage.
#[tokio::test(start_paused = true)]
async fn a_start_during_an_outage_keeps_the_endings_of_exhausted_tasks_and_goes_on() {
    let store = Arc::new(Faulty::default());
    let config = Config {
        max_attempts: 2,
        ..Config::default()
    };
    let before = Core::new(config.clone(), store.clone());
    let (_w, mut rx) = worker(&before, &["t"], 1).await;
    let (exhausted, _) = before.submit(submit_request("s", "t")).await.unwrap();
    let _ = assignment(&mut rx);
    store
        .memory
        .record_dispatch(exhausted.id, 2, std::time::SystemTime::now());
    before.shutdown.cancel();
    drop(before);

    store.refuse(Some(full()));
    let after = Core::new(config, store.clone());
    let mut announced = after.hub.subscribe("s");
    let recovered = tokio::time::timeout(Duration::from_secs(60), after.recover())
        .await
        .expect("the start does not wait for the store to take writes");
    assert_eq!(recovered.unwrap(), 1);
    tokio::time::sleep(OUTAGE).await;
    let id = exhausted.id.to_string();
    assert_eq!(stored_state(&after, &id).await, TaskState::Running);
    store.refuse(None);
    ended_in(&mut announced, &id).await;
    let task = after.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(error_code(&task), codes::WORKER_LOST);
}

/// The same on the SQLite store, its file full (capped at its size, as the
/// store's own tests make a full disk): SQLITE_FULL is an outage, the kept
/// result waits on the store's write health and is stored once the
/// server's probe write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_result_the_full_file_refused_is_stored_once_a_probe_goes_through() {
    use crate::store::sqlite::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let core = Core::new(Config::default(), store.clone());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    // The dispatch record is committed by the writer's thread: waited
    // for, as a worker's stream does, rather than asserted done.
    let out = rx.rx.recv().await.unwrap().unwrap();
    out.after.expect("a dispatch record").wait().await.unwrap();
    let pb::worker_command::Kind::Assignment(a) = convert::command(out.command).kind.unwrap()
    else {
        panic!("expected an assignment")
    };
    let mut announced = core.hub.subscribe("s");
    store.with_writer(|conn| {
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let _: i64 = conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
    });
    send_result(&core, w, &a, &format!("\"{}\"", "y".repeat(200_000))).await;
    let health = store.write_health().unwrap();
    tokio::time::timeout(Duration::from_secs(10), health.watch().wait_for(|f| *f))
        .await
        .expect("the full file refused the result")
        .unwrap();
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Running);
    assert_eq!(core.finisher.in_flight(), 1, "the ending is kept");
    store.with_writer(|conn| {
        let _: i64 = conn
            .query_row("PRAGMA max_page_count = 1073741823", [], |r| r.get(0))
            .unwrap();
    });
    // What the server's health loop does every second while writes fail.
    store.probe_write().await.unwrap();
    // A completion this large is announced by its seq (streams read it
    // from the store).
    let wake = tokio::time::timeout(Duration::from_secs(10), announced.recv())
        .await
        .expect("the ending was announced")
        .unwrap();
    assert!(matches!(wake, crate::sessions::Wake::Seq(1)), "{wake:?}");
    assert_eq!(stored_state(&core, &a.task_id).await, TaskState::Succeeded);
}
