//! The behaviour every [`Store`] keeps, written once against the trait and
//! run for each implementation (see `for_each_store!` at the bottom). The
//! [`SharedQueue`](super::SharedQueue) contract is in `tests/shared_queue.rs`.
use std::{
    collections::HashSet,
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use uuid::Uuid;

use super::{Inserted, Store};
use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState, codes};

mod acks;
mod calls;
mod held;
mod listing;
mod shared_queue;
pub(super) mod tools;

use acks::{
    ack_keeps_keyed_tasks_so_their_key_still_dedups, ack_keeps_what_read_result_and_last_good_need,
};
use calls::{
    a_fallback_run_goes_with_its_call_s_finish, joinable_calls_join_while_unfinished,
    last_good_is_the_latest_own_success,
};
use held::finish_held_task_is_finish_task;
use listing::{
    a_requeue_lists_the_task_queued, count_tasks_counts_every_match_not_a_page,
    fallback_runs_are_listed_only_when_asked, list_tasks_filters,
    list_tasks_pages_are_stable_under_inserts,
};
use tools::tool_definitions_round_trip_replace_and_forget;

/// A fresh database on the test process's PostgreSQL cluster (started on
/// first use), or `None` where PostgreSQL's binaries are not installed. A
/// skip is never silent: it is written past the test harness's capture, so
/// `SKIPPED <test>` shows in every run; and where `CI` or
/// `ERRAND_REQUIRE_POSTGRES` is set, a missing PostgreSQL fails the test.
pub(crate) async fn pg_database() -> Option<String> {
    let Some(cluster) = crate::test_pg::cluster() else {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a PostgreSQL test");
        let required = ["CI", "ERRAND_REQUIRE_POSTGRES"]
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")));
        assert!(
            !required,
            "{test}: PostgreSQL's binaries are not installed, and CI must run this test: \
             install PostgreSQL (Debian's postgresql package)"
        );
        // Not `eprintln!`: the harness captures that, and hides it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: PostgreSQL's binaries are not installed"
        );
        return None;
    };
    Some(cluster.create_database().await)
}

/// The server's `--result-budget-bytes` given to acknowledgements: the
/// results these tests store are well within it.
pub(super) const BUDGET: u64 = 16 * 1024;

/// A fixed instant `secs` after a base, with sub-millisecond digits so that
/// a store that rounds times is caught.
pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000 + secs, 123_456_789)
}

pub(super) fn task(session: &str, key: Option<&str>, created_at: SystemTime) -> TaskRecord {
    TaskRecord {
        id: Uuid::new_v4(),
        session: session.into(),
        tool: "search".into(),
        arguments: r#"{"q":"weather in Lyon"}"#.into(),
        timeout: Duration::from_millis(30_500),
        queue_deadline: Some(created_at + Duration::from_millis(90_250)),
        idempotency_key: key.map(Into::into),
        created_at,
        state: TaskState::Queued,
        attempts: 0,
        started_at: None,
        finished_at: None,
        outcome: None,
        seq: 0,
        delivery: Default::default(),
        call: Default::default(),
        notes: Default::default(),
        retry_of: None,
    }
}

pub(super) fn succeed(task: &TaskRecord, finished_at: SystemTime) -> Finish {
    Finish {
        task_id: task.id,
        state: TaskState::Succeeded,
        outcome: Outcome::Result(r#"{"temp":21}"#.into()),
        attempts: 1,
        finished_at,
        notes: Default::default(),
    }
}

pub(super) async fn insert_new(store: &dyn Store, task: &TaskRecord) {
    match store.insert_task(task).await.expect("insert") {
        Inserted::New => {}
        Inserted::Existing(t) | Inserted::Joined(t) => {
            panic!("expected a new task, got the existing {}", t.id)
        }
    }
}

pub(super) async fn finish_seq(store: &dyn Store, finish: &Finish) -> u64 {
    store
        .finish_task(finish)
        .await
        .expect("finish")
        .expect("a completion")
        .seq
}

/// Waits until every change sent before is applied: `record_dispatch` does
/// not wait, and an awaited write behind it in the same store does.
async fn barrier(store: &dyn Store) {
    store
        .ack_completions("barrier", 0, BUDGET)
        .await
        .expect("barrier");
}

/// Asserts `session` has no completion left to deliver.
pub(super) async fn assert_no_completions(store: &dyn Store, session: &str) {
    let left = store.completions_after(session, 0, 10).await.unwrap();
    assert!(left.is_empty(), "{session}: {left:?}");
}

pub(super) fn seqs(completions: &[CompletionRecord]) -> Vec<u64> {
    completions.iter().map(|c| c.seq).collect()
}

pub(super) fn assert_same_task(got: &TaskRecord, want: &TaskRecord) {
    assert_eq!(got.id, want.id);
    assert_eq!(got.session, want.session);
    assert_eq!(got.tool, want.tool);
    assert_eq!(got.arguments, want.arguments);
    assert_eq!(got.timeout, want.timeout);
    assert_eq!(got.queue_deadline, want.queue_deadline);
    assert_eq!(got.idempotency_key, want.idempotency_key);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.state, want.state);
    assert_eq!(got.attempts, want.attempts);
    assert_eq!(got.started_at, want.started_at);
    assert_eq!(got.finished_at, want.finished_at);
    assert_eq!(got.outcome, want.outcome);
    assert_eq!(got.seq, want.seq);
    assert_eq!(got.retry_of, want.retry_of);
}

async fn task_round_trips(store: &dyn Store) {
    let t = task("s1", Some("key-1"), at(1));
    insert_new(store, &t).await;
    let got = store.get_task(t.id).await.unwrap().expect("stored");
    assert_same_task(&got, &t);
    let retry = TaskRecord {
        retry_of: Some(t.id),
        ..task("s1", None, at(2))
    };
    insert_new(store, &retry).await;
    let got = store.get_task(retry.id).await.unwrap().expect("stored");
    assert_same_task(&got, &retry);
    assert!(store.get_task(Uuid::new_v4()).await.unwrap().is_none());
    let by_key = store.task_by_key("s1", "key-1").await.unwrap();
    assert_same_task(&by_key.expect("found by its key"), &t);
    assert!(store.task_by_key("s2", "key-1").await.unwrap().is_none());
    assert!(store.task_by_key("s1", "key-2").await.unwrap().is_none());
}

async fn unknown_task_does_not_finish(store: &dyn Store) {
    let ghost = task("s1", None, at(1));
    assert!(
        store
            .finish_task(&succeed(&ghost, at(2)))
            .await
            .unwrap()
            .is_none()
    );
    assert_no_completions(store, "s1").await;
}

async fn finish_sets_outcome_once(store: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(store, &t).await;
    let finish = Finish {
        task_id: t.id,
        state: TaskState::Failed,
        outcome: Outcome::error(codes::TOOL_ERROR, "exit status 3"),
        attempts: 2,
        finished_at: at(5),
        notes: Default::default(),
    };
    let c = store
        .finish_task(&finish)
        .await
        .unwrap()
        .expect("completion");
    assert_eq!(c.seq, 1);
    assert_eq!(c.task_id, t.id);
    assert_eq!(&*c.session, "s1");
    assert_eq!(&*c.tool, "search");
    assert_eq!(c.arguments, t.arguments);
    assert_eq!(c.state, TaskState::Failed);
    assert_eq!(c.outcome, finish.outcome);
    assert_eq!(c.attempts, 2);
    assert_eq!(c.elapsed, Duration::from_secs(4));
    assert_eq!(c.completed_at, at(5));

    // A second ending (a late result, a timeout racing it) changes nothing.
    assert!(
        store
            .finish_task(&succeed(&t, at(6)))
            .await
            .unwrap()
            .is_none()
    );
    let got = store.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(got.state, TaskState::Failed);
    assert_eq!(got.outcome, Some(finish.outcome.clone()));
    assert_eq!(got.attempts, 2);
    assert_eq!(got.finished_at, Some(at(5)));
    assert_eq!(got.seq, 1);

    let stored = store.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(seqs(&stored), [1]);
    assert_eq!(stored[0].outcome, finish.outcome);
    assert_eq!(stored[0].elapsed, Duration::from_secs(4));
    assert_eq!(stored[0].completed_at, at(5));
}

async fn dispatch_marks_running(store: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(store, &t).await;
    store.record_dispatch(t.id, 1, at(2));
    store.record_dispatch(t.id, 2, at(3));
    barrier(store).await;
    let got = store.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(got.state, TaskState::Running);
    assert_eq!(got.attempts, 2);
    assert_eq!(got.started_at, Some(at(3)));

    // A dispatch recorded after the end (a stale one) changes nothing.
    // (The result is the running attempt's: a shared store refuses a result
    // of an older attempt.)
    let mut finish = succeed(&t, at(4));
    finish.attempts = 2;
    finish_seq(store, &finish).await;
    store.record_dispatch(t.id, 3, at(5));
    barrier(store).await;
    let got = store.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(got.state, TaskState::Succeeded);
    assert_eq!(got.attempts, 2);
}

/// What the scheduler waits for before it sends an Assignment: once the
/// record's `Durable` resolves, the dispatch is stored (no barrier needed).
async fn a_dispatch_is_stored_once_durable(store: &dyn Store) {
    let t = task("s1", None, at(1));
    insert_new(store, &t).await;
    store
        .record_dispatch(t.id, 1, at(2))
        .wait()
        .await
        .expect("durable");
    let got = store.get_task(t.id).await.unwrap().unwrap();
    assert_eq!((got.state, got.attempts), (TaskState::Running, 1));
}

async fn unfinished_tasks_oldest_first(store: &dyn Store) {
    let a = task("s1", None, at(3));
    let b = task("s2", None, at(1));
    let c = task("s1", None, at(2));
    let done = task("s1", None, at(0));
    for t in [&a, &b, &c, &done] {
        insert_new(store, t).await;
    }
    store.record_dispatch(c.id, 1, at(4));
    finish_seq(store, &succeed(&done, at(5))).await;
    let unfinished = store.unfinished_tasks().await.unwrap();
    let ids: Vec<_> = unfinished.iter().map(|t| t.id).collect();
    assert_eq!(ids, [b.id, c.id, a.id]);
    assert_eq!(unfinished[1].state, TaskState::Running);
    assert_eq!(unfinished[1].attempts, 1);
}

async fn idempotency_key_returns_the_earlier_task(store: &dyn Store) {
    let first = task("s1", Some("k"), at(1));
    insert_new(store, &first).await;
    let again = task("s1", Some("k"), at(2));
    match store.insert_task(&again).await.unwrap() {
        Inserted::Existing(t) => assert_same_task(&t, &first),
        other => panic!("the same key in the same session stored a second task: {other:?}"),
    }
    assert!(store.get_task(again.id).await.unwrap().is_none());
    // Keys are per session; tasks without a key never collide.
    insert_new(store, &task("s2", Some("k"), at(3))).await;
    insert_new(store, &task("s1", None, at(4))).await;
    insert_new(store, &task("s1", None, at(5))).await;

    // The earlier task is returned as it is now, finished included.
    let seq = finish_seq(store, &succeed(&first, at(6))).await;
    match store
        .insert_task(&task("s1", Some("k"), at(7)))
        .await
        .unwrap()
    {
        Inserted::Existing(t) => {
            assert_eq!(t.id, first.id);
            assert_eq!(t.state, TaskState::Succeeded);
            assert_eq!(t.seq, seq);
        }
        other => panic!("a finished task's key was forgotten before removal: {other:?}"),
    }
    // Acknowledged, the task is kept until retention with its key (see
    // `acks.rs`); once retention removed it, the key is free again.
    store.ack_completions("s1", seq, BUDGET).await.unwrap();
    store.purge_finished_before(at(7)).await.unwrap();
    insert_new(store, &task("s1", Some("k"), at(8))).await;
}

async fn seq_is_per_session_and_gapless(store: &dyn Store) {
    let mut got = Vec::new();
    for (i, session) in ["a", "b", "a", "a", "b"].into_iter().enumerate() {
        let t = task(session, None, at(i as u64));
        insert_new(store, &t).await;
        got.push((
            session,
            finish_seq(store, &succeed(&t, at(10 + i as u64))).await,
        ));
    }
    assert_eq!(got, [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]);
    let a = store.completions_after("a", 0, 100).await.unwrap();
    assert_eq!(seqs(&a), [1, 2, 3]);
    assert!(a.iter().all(|c| &*c.session == "a"));
    assert_eq!(
        seqs(&store.completions_after("b", 0, 100).await.unwrap()),
        [1, 2]
    );
    assert!(
        store
            .completions_after("c", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn completions_after_pages_in_order(store: &dyn Store) {
    for i in 0..10 {
        let t = task("s1", None, at(i));
        insert_new(store, &t).await;
        finish_seq(store, &succeed(&t, at(100 + i))).await;
    }
    assert_eq!(
        seqs(&store.completions_after("s1", 0, 4).await.unwrap()),
        [1, 2, 3, 4]
    );
    assert_eq!(
        seqs(&store.completions_after("s1", 4, 4).await.unwrap()),
        [5, 6, 7, 8]
    );
    assert_eq!(
        seqs(&store.completions_after("s1", 8, 4).await.unwrap()),
        [9, 10]
    );
    assert!(
        store
            .completions_after("s1", 10, 4)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .completions_after("s1", 99, 4)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A read of completions holds at most `COMPLETIONS_READ_BYTES` of
/// results (and one completion more), whatever `limit` says: a feed
/// replaying a session of large results read `limit` of them at once.
async fn completions_after_keeps_a_read_to_its_byte_bound(store: &dyn Store) {
    use crate::store::COMPLETIONS_READ_BYTES;
    let big = format!("\"{}\"", "r".repeat(COMPLETIONS_READ_BYTES / 3));
    for i in 0..5 {
        let t = task("s1", None, at(i));
        insert_new(store, &t).await;
        let mut done = succeed(&t, at(100 + i));
        done.outcome = Outcome::Result(big.clone());
        finish_seq(store, &done).await;
    }
    // 3 reach the bound (the third crosses it); the next read goes on.
    let first = store.completions_after("s1", 0, 256).await.unwrap();
    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(
        seqs(&store.completions_after("s1", 3, 256).await.unwrap()),
        [4, 5]
    );
    // One larger than the bound alone still comes, alone.
    let t = task("s2", None, at(0));
    insert_new(store, &t).await;
    let mut done = succeed(&t, at(1));
    done.outcome = Outcome::Result(format!("\"{}\"", "r".repeat(COMPLETIONS_READ_BYTES)));
    finish_seq(store, &done).await;
    assert_eq!(
        seqs(&store.completions_after("s2", 0, 256).await.unwrap()),
        [1]
    );
}

/// A caller's byte bound ([`Store::completions_within`]) is kept as the
/// default one is: a feed with little room in its window reads little.
async fn completions_within_keeps_to_the_callers_byte_bound(store: &dyn Store) {
    let result = format!("\"{}\"", "r".repeat(1_000));
    for i in 0..10 {
        let t = task("s1", None, at(i));
        insert_new(store, &t).await;
        let mut done = succeed(&t, at(100 + i));
        done.outcome = Outcome::Result(result.clone());
        finish_seq(store, &done).await;
    }
    let one = store.completions_after("s1", 0, 256).await.unwrap()[0].bytes();
    // Two and a half completions' worth: the third crosses the bound.
    let read = store
        .completions_within("s1", 0, 256, one * 5 / 2)
        .await
        .unwrap();
    assert_eq!(seqs(&read), [1, 2, 3]);
    assert!(crate::store::read_may_continue(&read, 256, one * 5 / 2));
    // A bound of 0 still reads one: a feed always makes progress.
    let read = store.completions_within("s1", 3, 256, 0).await.unwrap();
    assert_eq!(seqs(&read), [4]);
    // The end of what is stored is not taken for a cut read.
    let rest = store
        .completions_within("s1", 4, 256, usize::MAX)
        .await
        .unwrap();
    assert_eq!(seqs(&rest), [5, 6, 7, 8, 9, 10]);
    assert!(!crate::store::read_may_continue(&rest, 256, usize::MAX));
}

async fn concurrent_finishes_get_distinct_gapless_seqs(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..200).map(|i| task("s1", None, at(i))).collect();
    for t in &tasks {
        insert_new(&*store, t).await;
    }
    let mut handles = Vec::new();
    for t in tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            finish_seq(&*store, &succeed(&t, at(1000))).await
        }));
    }
    let mut got = Vec::new();
    for h in handles {
        got.push(h.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    let stored = store.completions_after("s1", 0, 1000).await.unwrap();
    assert_eq!(seqs(&stored), (1..=200).collect::<Vec<_>>());
    let ids: HashSet<_> = stored.iter().map(|c| c.task_id).collect();
    assert_eq!(ids.len(), 200);
}

async fn ack_removes_completions_and_tasks_and_keeps_seq(store: &dyn Store) {
    let mut tasks = Vec::new();
    for i in 0..5 {
        let t = task("s1", None, at(i));
        insert_new(store, &t).await;
        finish_seq(store, &succeed(&t, at(10 + i))).await;
        tasks.push(t);
    }
    let other = task("s2", None, at(0));
    insert_new(store, &other).await;
    finish_seq(store, &succeed(&other, at(10))).await;

    assert_eq!(
        store
            .ack_completions("s1", 3, BUDGET)
            .await
            .unwrap()
            .removed,
        3
    );
    assert_eq!(
        seqs(&store.completions_after("s1", 0, 10).await.unwrap()),
        [4, 5]
    );
    for t in &tasks[..3] {
        assert!(store.get_task(t.id).await.unwrap().is_none());
    }
    assert!(store.get_task(tasks[3].id).await.unwrap().is_some());
    // Acking again, or another session, removes nothing more.
    assert_eq!(
        store
            .ack_completions("s1", 3, BUDGET)
            .await
            .unwrap()
            .removed,
        0
    );
    assert_eq!(
        store
            .ack_completions("nobody", 100, BUDGET)
            .await
            .unwrap()
            .removed,
        0
    );
    assert_eq!(
        seqs(&store.completions_after("s2", 0, 10).await.unwrap()),
        [1]
    );

    // Acknowledging everything does not reset the numbering.
    assert_eq!(
        store
            .ack_completions("s1", 5, BUDGET)
            .await
            .unwrap()
            .removed,
        2
    );
    assert_no_completions(store, "s1").await;
    let t = task("s1", None, at(20));
    insert_new(store, &t).await;
    assert_eq!(finish_seq(store, &succeed(&t, at(21))).await, 6);
    assert_eq!(
        seqs(&store.completions_after("s1", 5, 10).await.unwrap()),
        [6]
    );
}

async fn acknowledged_seq_is_monotonic_and_never_beyond_the_last(store: &dyn Store) {
    use crate::{
        model::Delivery,
        store::{Acked, SessionSeqs},
    };
    assert_eq!(
        store.session_seqs("s1").await.unwrap(),
        SessionSeqs::default()
    );
    let mut silent = task("s1", None, at(0));
    silent.delivery = Delivery::Silent;
    insert_new(store, &silent).await;
    assert_eq!(
        store.get_task(silent.id).await.unwrap().unwrap().delivery,
        Delivery::Silent
    );
    for i in 0..3 {
        let t = task("s1", None, at(i));
        insert_new(store, &t).await;
        finish_seq(store, &succeed(&t, at(10 + i))).await;
    }
    let counts = |last_seq, acked_seq, unacknowledged| SessionSeqs {
        last_seq,
        acked_seq,
        unacknowledged,
    };
    assert_eq!(store.session_seqs("s1").await.unwrap(), counts(3, 0, 3));
    let beyond = store.ack_completions("s1", 4, BUDGET).await.unwrap();
    assert_eq!(
        beyond,
        Acked {
            removed: 0,
            acked_seq: 0,
            last_seq: 3
        },
        "changes nothing"
    );
    let acked = store.ack_completions("s1", 2, BUDGET).await.unwrap();
    assert_eq!(
        acked,
        Acked {
            removed: 2,
            acked_seq: 2,
            last_seq: 3
        }
    );
    let lower = store.ack_completions("s1", 1, BUDGET).await.unwrap();
    assert_eq!(
        lower,
        Acked {
            removed: 0,
            acked_seq: 2,
            last_seq: 3
        },
        "never lowered"
    );
    assert_eq!(store.session_seqs("s1").await.unwrap(), counts(3, 2, 1));
    finish_seq(store, &succeed(&silent, at(20))).await;
    let c = store.completions_after("s1", 3, 10).await.unwrap();
    assert_eq!(c[0].delivery, Delivery::Silent, "stamped on its completion");
    assert_eq!(store.session_seqs("s1").await.unwrap(), counts(4, 2, 2));
}

async fn purge_removes_only_old_finished_work(store: &dyn Store) {
    let old = task("s1", None, at(0));
    let recent = task("s1", None, at(1));
    let waiting = task("s1", None, at(2));
    for t in [&old, &recent, &waiting] {
        insert_new(store, t).await;
    }
    finish_seq(store, &succeed(&old, at(10))).await;
    finish_seq(store, &succeed(&recent, at(30))).await;

    assert_eq!(store.purge_finished_before(at(20)).await.unwrap(), 1);
    assert!(store.get_task(old.id).await.unwrap().is_none());
    assert!(store.get_task(recent.id).await.unwrap().is_some());
    assert!(store.get_task(waiting.id).await.unwrap().is_some());
    assert_eq!(
        seqs(&store.completions_after("s1", 0, 10).await.unwrap()),
        [2]
    );
    assert_eq!(store.purge_finished_before(at(20)).await.unwrap(), 0);

    assert_eq!(store.purge_finished_before(at(40)).await.unwrap(), 1);
    let unfinished = store.unfinished_tasks().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, waiting.id);
    // The session still has work: its numbering goes on.
    assert_eq!(finish_seq(store, &succeed(&waiting, at(50))).await, 3);
}

/// Declares one `#[tokio::test]` per listed behaviour and store.
macro_rules! for_each_store {
    (shared: [$($name:ident),* $(,)?], arc: [$($arc:ident),* $(,)?] $(,)?) => {
        mod memory {
            use std::sync::Arc;

            use crate::store::memory::MemoryStore;

            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&MemoryStore::default()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $arc() {
                    super::$arc(Arc::new(MemoryStore::default())).await;
                }
            )*
        }

        mod postgres {
            use std::sync::Arc;

            use crate::store::postgres::{PostgresOptions, PostgresStore};

            /// A store on a fresh database, or `None` (the test is skipped,
            /// visibly: see `pg_database`) where PostgreSQL is not installed.
            async fn store() -> Option<PostgresStore> {
                let url = super::pg_database().await?;
                Some(PostgresStore::connect(&url, PostgresOptions::default()).await.unwrap())
            }

            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = store().await {
                        super::$name(&store).await;
                    }
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $arc() {
                    if let Some(store) = store().await {
                        super::$arc(Arc::new(store)).await;
                    }
                }
            )*
        }

        mod sqlite {
            use std::sync::Arc;

            use crate::store::sqlite::SqliteStore;

            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&SqliteStore::open(dir.path()).unwrap()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $arc() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$arc(Arc::new(SqliteStore::open(dir.path()).unwrap())).await;
                }
            )*
        }
    };
}

for_each_store! {
    shared: [
        task_round_trips,
        unknown_task_does_not_finish,
        finish_sets_outcome_once,
        finish_held_task_is_finish_task,
        dispatch_marks_running,
        a_dispatch_is_stored_once_durable,
        unfinished_tasks_oldest_first,
        idempotency_key_returns_the_earlier_task,
        seq_is_per_session_and_gapless,
        completions_after_pages_in_order,
        completions_after_keeps_a_read_to_its_byte_bound,
        completions_within_keeps_to_the_callers_byte_bound,
        ack_removes_completions_and_tasks_and_keeps_seq,
        acknowledged_seq_is_monotonic_and_never_beyond_the_last,
        ack_keeps_what_read_result_and_last_good_need,
        ack_keeps_keyed_tasks_so_their_key_still_dedups,
        purge_removes_only_old_finished_work,
        list_tasks_filters,
        a_requeue_lists_the_task_queued,
        list_tasks_pages_are_stable_under_inserts,
        count_tasks_counts_every_match_not_a_page,
        fallback_runs_are_listed_only_when_asked,
        joinable_calls_join_while_unfinished,
        last_good_is_the_latest_own_success,
        a_fallback_run_goes_with_its_call_s_finish,
        tool_definitions_round_trip_replace_and_forget,
    ],
    arc: [concurrent_finishes_get_distinct_gapless_seqs],
}
