//! SQLite-only behaviour: group commit, restarts, file problems.
use std::sync::{Arc, mpsc};

use futures::future::join_all;

use super::*;
use crate::model::TaskState;
use crate::store::sql::{
    PURGE_CHUNK,
    batch::{MAX_BATCH, QUEUE_CAPACITY},
};
use crate::store::tests::{
    BUDGET, assert_no_completions, assert_same_task, at, finish_seq, insert_new, succeed, task,
};

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir).expect("open")
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DB_FILE)).unwrap().len()
}

fn row_count(dir: &Path) -> i64 {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

/// Stops the writer until the returned sender is dropped or sent to.
fn hold_writer(store: &SqliteStore) -> mpsc::Sender<()> {
    let (release, held) = mpsc::channel::<()>();
    store.with_writer(move |_| {
        let _ = held.recv();
    });
    release
}

async fn sent_reaches(store: &SqliteStore, n: u64) {
    while store.stats().sent < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_one_commit_among_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let tasks: Vec<_> = (0..300).map(|i| task("s1", None, at(i))).collect();

    let release = hold_writer(&store);
    let sent = store.stats().sent;
    let inserts: Vec<_> = tasks
        .iter()
        .cloned()
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move { insert_new(&*store, &t).await })
        })
        .collect();
    sent_reaches(&store, sent + 300).await;
    let commits = store.stats().commits;
    drop(release);
    for h in inserts {
        h.await.unwrap();
    }
    assert_eq!(
        store.stats().commits,
        commits + 1,
        "300 queued inserts, one commit"
    );

    // Results (and dispatch records) batch the same way.
    let release = hold_writer(&store);
    let sent = store.stats().sent;
    for t in &tasks {
        store.record_dispatch(t.id, 1, at(500));
    }
    let finishes: Vec<_> = tasks
        .iter()
        .map(|t| {
            let store = store.clone();
            let finish = succeed(t, at(1000));
            tokio::spawn(async move { finish_seq(&*store, &finish).await })
        })
        .collect();
    sent_reaches(&store, sent + 600).await;
    let commits = store.stats().commits;
    drop(release);
    let mut seqs = Vec::new();
    for h in finishes {
        seqs.push(h.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert_eq!(
        store.stats().commits,
        commits + 1,
        "600 queued changes, one commit"
    );
}

#[tokio::test]
async fn a_batch_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..MAX_BATCH + 10)
        .map(|i| task("s1", None, at(i as u64)))
        .collect();
    let release = hold_writer(&store);
    let commits = store.stats().commits;
    let inserts = join_all(tasks.iter().map(|t| store.insert_task(t)));
    let release_later = async {
        sent_reaches(&store, (MAX_BATCH + 11) as u64).await;
        drop(release);
    };
    let (results, ()) = tokio::join!(inserts, release_later);
    assert!(results.iter().all(|r| matches!(r, Ok(Inserted::New))));
    assert_eq!(store.stats().commits, commits + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_holds_writes_back_but_never_a_dispatch_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let running = task("s1", None, at(0));
    insert_new(&*store, &running).await;

    let release = hold_writer(&store);
    let sent = store.stats().sent;
    let inserts: Vec<_> = (0..QUEUE_CAPACITY + 10)
        .map(|i| {
            let store = store.clone();
            let t = task("s2", None, at(i as u64 + 1));
            tokio::spawn(async move { insert_new(&*store, &t).await })
        })
        .collect();
    sent_reaches(&store, sent + QUEUE_CAPACITY as u64).await;
    // The queue is full; this is what the scheduler does under its lock.
    store.record_dispatch(running.id, 1, at(5));
    drop(release);
    for h in inserts {
        h.await.unwrap();
    }
    let stored = store.get_task(running.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Running);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.started_at, Some(at(5)));
}

/// Issue 15.1: an Assignment goes out only once its dispatch record is on
/// disk, so the record's `Durable` must not resolve before the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_record_is_durable_before_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = task("s1", None, at(0));
    insert_new(&store, &t).await;
    let release = hold_writer(&store);
    let durable = store.record_dispatch(t.id, 1, at(5));
    let mut wait = Box::pin(durable.wait());
    assert!(
        futures::poll!(wait.as_mut()).is_pending(),
        "not durable while the writer has not committed it"
    );
    drop(release);
    wait.await.expect("committed");
    // Read from the file by another connection: the record is on disk.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let attempts: i64 = conn
        .query_row("SELECT attempts FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn restart_keeps_seq_completions_and_unfinished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (queued, running, done1, done2) = (
        task("s1", None, at(1)),
        task("s1", None, at(2)),
        task("s1", None, at(3)),
        task("s1", None, at(4)),
    );
    {
        let store = open(dir.path());
        for t in [&queued, &running, &done1, &done2] {
            insert_new(&store, t).await;
        }
        store.record_dispatch(running.id, 1, at(5));
        assert_eq!(finish_seq(&store, &succeed(&done1, at(6))).await, 1);
        assert_eq!(finish_seq(&store, &succeed(&done2, at(7))).await, 2);
        // Dropped without waiting for the dispatch record: the writer
        // drains what is queued before it stops.
    }
    let store = open(dir.path());
    let unfinished = store.unfinished_tasks().await.unwrap();
    assert_eq!(unfinished.len(), 2);
    assert_same_task(&unfinished[0], &queued);
    assert_eq!(unfinished[1].id, running.id);
    assert_eq!(unfinished[1].state, TaskState::Running);
    assert_eq!(unfinished[1].attempts, 1);
    assert_eq!(unfinished[1].started_at, Some(at(5)));
    let completions = store.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(
        completions.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(completions[0].task_id, done1.id);
    assert_eq!(finish_seq(&store, &succeed(&queued, at(8))).await, 3);

    // An acknowledged, then purged-idle session keeps counting after a
    // restart: seqs never repeat.
    assert_eq!(
        store
            .ack_completions("s1", 3, BUDGET)
            .await
            .unwrap()
            .removed,
        3
    );
    assert_eq!(finish_seq(&store, &succeed(&running, at(9))).await, 4);
    assert_eq!(store.purge_finished_before(at(100)).await.unwrap(), 1);
    drop(store);
    let store = open(dir.path());
    assert!(store.unfinished_tasks().await.unwrap().is_empty());
    let t = task("s1", None, at(10));
    insert_new(&store, &t).await;
    assert_eq!(finish_seq(&store, &succeed(&t, at(11))).await, 5);
}

#[tokio::test]
async fn tool_definitions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (search, fetch) = crate::store::tests::tools::definitions();
    open(dir.path())
        .put_tools(&[search.clone(), fetch.clone()])
        .await
        .unwrap();
    let store = open(dir.path());
    assert_eq!(store.tools().await.unwrap(), vec![fetch, search.clone()]);
    store
        .forget_tools(&["acme\u{1f}fetch".into()])
        .await
        .unwrap();
    drop(store);
    assert_eq!(open(dir.path()).tools().await.unwrap(), vec![search]);
}

#[tokio::test]
async fn idempotency_key_holds_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = task("s1", Some("retry-me"), at(1));
    insert_new(&open(dir.path()), &first).await;
    let store = open(dir.path());
    match store
        .insert_task(&task("s1", Some("retry-me"), at(2)))
        .await
        .unwrap()
    {
        Inserted::Existing(t) => assert_same_task(&t, &first),
        other => panic!("the key was forgotten across a restart: {other:?}"),
    }
    insert_new(&store, &task("s2", Some("retry-me"), at(3))).await;
}

#[tokio::test]
async fn ack_and_purge_shrink_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(4000));
    let fill = |store: Arc<SqliteStore>, round: u64| {
        let big = big.clone();
        async move {
            let tasks: Vec<_> = (0..1000)
                .map(|i| {
                    let mut t = task(if i % 2 == 0 { "a" } else { "b" }, None, at(round));
                    t.arguments = big.as_str().into();
                    t
                })
                .collect();
            join_all(tasks.iter().map(|t| insert_new(&*store, t))).await;
            let finishes: Vec<_> = tasks.iter().map(|t| succeed(t, at(round))).collect();
            join_all(finishes.iter().map(|f| store.finish_task(f)))
                .await
                .into_iter()
                .for_each(|r| assert!(r.unwrap().is_some()));
        }
    };
    let store = Arc::new(open(dir.path()));
    fill(store.clone(), 0).await;
    drop(store);
    let full = file_size(dir.path());
    assert!(full > 4_000_000, "1000 tasks of 4 kB take {full} bytes");

    let store = Arc::new(open(dir.path()));
    assert_eq!(
        store
            .ack_completions("a", 500, BUDGET)
            .await
            .unwrap()
            .removed,
        500
    );
    assert_eq!(store.purge_finished_before(at(1)).await.unwrap(), 500);
    drop(store);
    assert_eq!(row_count(dir.path()), 0);
    let empty = file_size(dir.path());
    assert!(
        empty < full / 4,
        "emptied file is {empty} bytes, full was {full}"
    );

    // Fill and purge again and again: the file stays the same size.
    for round in 1..4 {
        let store = Arc::new(open(dir.path()));
        fill(store.clone(), round).await;
        assert_eq!(
            store.purge_finished_before(at(round + 1)).await.unwrap(),
            1000
        );
    }
    assert!(file_size(dir.path()) < full / 4);
    assert_eq!(row_count(dir.path()), 0);
}

#[tokio::test]
async fn a_large_purge_runs_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let n = PURGE_CHUNK as usize * 2 + 7;
    let tasks: Vec<_> = (0..n).map(|i| task("s1", None, at(i as u64))).collect();
    join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
    let finishes: Vec<_> = tasks.iter().map(|t| succeed(t, at(1))).collect();
    join_all(finishes.iter().map(|f| store.finish_task(f))).await;
    let commits = store.stats().commits;
    assert_eq!(store.purge_finished_before(at(2)).await.unwrap(), n as u64);
    assert_eq!(store.stats().commits, commits + 3);
    assert_no_completions(&store, "s1").await;
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = SqliteStore::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::Internal(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains("newer"),
        "{msg}"
    );
}

#[test]
fn a_locked_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = SqliteStore::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)));
    let msg = err.to_string();
    assert!(msg.contains("in use by another errand server"), "{msg}");
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    drop(first);
    drop(open(dir.path()));
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), "not a database ".repeat(500)).unwrap();
    let msg = SqliteStore::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("not a readable errand database"), "{msg}");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let msg = SqliteStore::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("not an errand database"), "{msg}");
}

/// Overwrites pages in the middle of `errand.db` in place, then sets its
/// modification time to what it was plus `later_secs` (`None`: unchanged).
fn scribble(dir: &Path, later_secs: Option<u64>) {
    let path = dir.join(DB_FILE);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40_000);
    bytes[20_000..36_000].fill(0x5a);
    std::fs::write(&path, bytes).unwrap();
    let at = modified + std::time::Duration::from_secs(later_secs.unwrap_or(0));
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

async fn store_of_500(dir: &Path) {
    let store = open(dir);
    let tasks: Vec<_> = (0..500).map(|i| task("s1", None, at(i))).collect();
    join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
}

#[tokio::test]
async fn a_clean_stop_leaves_a_mark_that_the_next_open_takes() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join(CLEAN_FILE);
    store_of_500(dir.path()).await;
    assert!(mark.exists(), "a clean stop leaves the mark");
    let store = open(dir.path());
    // Gone while the store runs: a crash now must not look like a clean stop.
    assert!(!mark.exists());
    assert_eq!(row_count(dir.path()), 500);
    drop(store);
    assert!(mark.exists());
}

#[tokio::test]
async fn after_a_clean_stop_only_check_store_reads_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    // Corruption that leaves the file's length, time and inode as the clean
    // stop left them (a disk fault) is not looked for at start...
    scribble(dir.path(), None);
    drop(open(dir.path()));
    // ...but `errand check-store` finds it.
    let msg = check_store(dir.path()).expect_err("corrupt").to_string();
    assert!(
        msg.contains("corrupt") || msg.contains("malformed"),
        "{msg}"
    );
}

#[tokio::test]
async fn after_an_unclean_stop_the_file_is_checked_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    // A crash leaves no mark.
    std::fs::remove_file(dir.path().join(CLEAN_FILE)).unwrap();
    scribble(dir.path(), None);
    // The store serves at once, and the check beside it finds the damage...
    let store = open(dir.path());
    let CheckState::Corrupt(found) = store.checked().await else {
        panic!("the check missed the damage");
    };
    assert!(found.to_string().contains("corrupt"), "{found}");
    // ...after which every write fails with what it found: a submit, a
    // dispatch record, and a change that was already on its way to the
    // writer (a purge's next step, say).
    let err = (store.insert_task(&task("s1", None, at(1000))).await).expect_err("refused");
    assert!(err.to_string().contains("corrupt"), "{err}");
    // Callers are not shown where the server keeps its files.
    let where_ = dir.path().display().to_string();
    assert!(!err.to_string().contains(&where_), "{err}");
    let err = (store
        .record_dispatch(Uuid::new_v4(), 1, at(1001))
        .wait()
        .await)
        .expect_err("refused");
    assert!(err.to_string().contains("corrupt"), "{err}");
    let queued = store.tx.as_ref().unwrap();
    let err = (queued
        .write(|reply| Op::Purge(Purge::new(at(1002)), reply))
        .await)
        .expect_err("refused by the writer");
    assert!(err.to_string().contains("corrupt"), "{err}");
    drop(store);
    // The next start checks before serving, and refuses the file; the mark
    // says why.
    let why = std::fs::read_to_string(dir.path().join(SUSPECT_FILE)).unwrap();
    assert!(why.contains("corrupt"), "{why}");
    assert!(!dir.path().join(CLEAN_FILE).exists());
    let msg = SqliteStore::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("corrupt"), "{msg}");
}

#[tokio::test]
async fn a_sound_file_after_an_unclean_stop_is_served_and_marked_clean_again() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    std::fs::remove_file(dir.path().join(CLEAN_FILE)).unwrap();
    let store = open(dir.path());
    assert!(matches!(store.checked().await, CheckState::Sound));
    insert_new(&store, &task("s1", None, at(1000))).await;
    drop(store);
    assert!(dir.path().join(CLEAN_FILE).exists());
    assert!(!dir.path().join(SUSPECT_FILE).exists());
    assert_eq!(row_count(dir.path()), 501);
}

#[tokio::test]
async fn a_file_restored_after_a_failed_check_is_checked_then_served() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    // A sound file where the last run's check found a corrupt one.
    std::fs::write(dir.path().join(SUSPECT_FILE), "was corrupt").unwrap();
    let store = open(dir.path());
    assert!(matches!(store.checked().await, CheckState::Sound));
    assert!(!dir.path().join(SUSPECT_FILE).exists());
    insert_new(&store, &task("s1", None, at(1000))).await;
}

#[test]
fn check_store_passes_a_sound_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let msg = check_store(dir.path()).expect_err("missing").to_string();
    assert!(msg.contains("does not exist"), "{msg}");
    drop(open(dir.path()));
    check_store(dir.path()).expect("sound");
}

#[tokio::test]
async fn corrupt_pages_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let tasks: Vec<_> = (0..500).map(|i| task("s1", None, at(i))).collect();
        join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
    }
    // Scribble over pages in the middle of the file, a second after the stop
    // (file times are coarser than this test).
    scribble(dir.path(), Some(1));
    // Refused, and at every start after, not only the first.
    for start in ["first", "second"] {
        let msg = SqliteStore::open(dir.path())
            .err()
            .unwrap_or_else(|| panic!("the {start} start served a corrupt file"))
            .to_string();
        assert!(
            msg.contains("corrupt") || msg.contains("not a readable"),
            "{msg}"
        );
        assert!(dir.path().join(SUSPECT_FILE).exists());
    }
}

/// Caps the file at the pages it has: a change that needs another page
/// fails with SQLITE_FULL, as on a full disk (ENOSPC).
fn fill_the_file(store: &SqliteStore) {
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
}

/// Lifts [`fill_the_file`]'s cap.
fn make_room(store: &SqliteStore) {
    store.with_writer(|conn| {
        let _: i64 = conn
            .query_row("PRAGMA max_page_count = 1073741823", [], |r| r.get(0))
            .unwrap();
    });
}

#[tokio::test]
async fn a_full_disk_fails_the_call_with_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let small = task("s1", None, at(1));
    insert_new(&store, &small).await;
    fill_the_file(&store);
    let mut big = task("s1", None, at(2));
    big.arguments = format!(r#"{{"x":"{}"}}"#, "y".repeat(200_000)).into();
    let err = store.insert_task(&big).await.expect_err("full");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");

    // Nothing half-done; the store goes on once there is room.
    assert!(store.get_task(big.id).await.unwrap().is_none());
    assert!(store.get_task(small.id).await.unwrap().is_some());
    make_room(&store);
    insert_new(&store, &big).await;
    assert_eq!(finish_seq(&store, &succeed(&small, at(3))).await, 1);
}

/// Trial defects 2 and 3: after an out-of-space failure the WAL is
/// checkpointed and truncated, so the space it held is free for the next
/// writes (before, a few MB freed were taken again by its growth); the
/// store's write health says writes fail until one (a probe) goes through.
#[tokio::test]
async fn a_full_disk_truncates_the_wal_and_is_told_until_a_write_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..200).map(|i| task("s1", None, at(i))).collect();
    join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
    let wal = dir.path().join("errand.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let health = store
        .write_health()
        .expect("the SQLite store tracks its writes");
    let failing = health.watch();
    assert!(!*failing.borrow());

    fill_the_file(&store);
    let mut big = task("s1", None, at(1_000));
    big.arguments = format!(r#"{{"x":"{}"}}"#, "y".repeat(200_000)).into();
    let err = store.insert_task(&big).await.expect_err("full");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    assert!(*failing.borrow(), "health says writes fail");
    // The writer is done with the failed batch (and its reclaim) once it
    // runs this.
    let (done, after) = tokio::sync::oneshot::channel();
    store.with_writer(move |_| {
        let _ = done.send(());
    });
    after.await.unwrap();
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL was truncated"
    );

    make_room(&store);
    store.probe_write().await.unwrap();
    assert!(!*failing.borrow(), "a write went through");
    for t in &tasks {
        assert!(store.get_task(t.id).await.unwrap().is_some());
    }
}

/// The writer keeps each session's seq counters itself and writes them back
/// with the batch: an ack in a batch that SQLite rolled back must not stay
/// in those counters, or the next ack of the same seqs would find nothing
/// to do while the disk still holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_rolled_back_with_its_batch_can_be_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let (first, big) = (task("s1", None, at(1)), task("s1", None, at(2)));
    insert_new(&*store, &first).await;
    insert_new(&*store, &big).await;
    assert_eq!(finish_seq(&*store, &succeed(&first, at(3))).await, 1);

    // One batch: the ack of seq 1, then a finish the full file refuses,
    // which rolls the whole transaction back (SQLITE_FULL).
    let release = hold_writer(&store);
    fill_the_file(&store);
    let sent = store.stats().sent;
    let ack = tokio::spawn({
        let store = store.clone();
        async move { store.ack_completions("s1", 1, BUDGET).await }
    });
    sent_reaches(&store, sent + 1).await;
    let mut huge = succeed(&big, at(4));
    huge.outcome = crate::model::Outcome::Result(format!(r#""{}""#, "y".repeat(200_000)));
    let finish = tokio::spawn({
        let store = store.clone();
        async move { store.finish_task(&huge).await }
    });
    sent_reaches(&store, sent + 2).await;
    drop(release);
    let finished = finish.await.unwrap();
    assert!(matches!(finished, Err(StoreError::Full(_))), "{finished:?}");
    let acked = ack.await.unwrap();
    assert!(acked.is_err(), "the ack's batch was rolled back: {acked:?}");
    make_room(&store);

    // The disk and the writer agree: the ack can be made again, and
    // releases seq 1.
    let again = store.ack_completions("s1", 1, BUDGET).await.unwrap();
    assert_eq!((again.acked_seq, again.removed), (1, 1));
    let seqs = store.session_seqs("s1").await.unwrap();
    assert_eq!(
        (seqs.last_seq, seqs.acked_seq, seqs.unacknowledged),
        (1, 1, 0)
    );
    assert_no_completions(&*store, "s1").await;
    // The next finish takes the next seq.
    assert_eq!(finish_seq(&*store, &succeed(&big, at(5))).await, 2);
}

#[test]
fn open_creates_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/data");
    drop(open(&nested));
    assert!(nested.join(DB_FILE).is_file());
    assert!(nested.join(LOCK_FILE).is_file());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_and_every_db_file_are_the_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = open(&data);
    insert_new(&store, &task("s", None, at(1))).await;
    assert_eq!(mode(&data), 0o700);
    for name in [DB_FILE, "errand.db-wal", "errand.db-shm", LOCK_FILE] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
}

#[tokio::test]
async fn files_an_older_errand_left_readable_are_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    insert_new(&store, &task("s", None, at(1))).await;
    drop(store);
    let loose = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(dir.path().join(DB_FILE), loose.clone()).unwrap();
    // An unclean stop leaves the WAL behind, with the old mode.
    std::fs::write(dir.path().join("errand.db-wal"), b"").unwrap();
    std::fs::set_permissions(dir.path().join("errand.db-wal"), loose).unwrap();
    let store = open(dir.path());
    insert_new(&store, &task("t", None, at(2))).await;
    for name in [DB_FILE, "errand.db-wal", "errand.db-shm"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
}

#[test]
fn a_data_dir_others_can_read_is_named() {
    use files::open_to_others;
    assert_eq!(open_to_others(0o700), None);
    assert_eq!(open_to_others(0o750), Some("group"));
    assert_eq!(open_to_others(0o701), Some("others"));
    assert_eq!(open_to_others(0o755), Some("group and others"));
}

#[tokio::test]
async fn a_version_1_file_is_migrated_and_keeps_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA user_version = 1; PRAGMA application_id = {};",
            schema::APPLICATION_ID
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO tasks (id, session, tool, arguments, timeout_ns, created_at, state,
                 attempts)
             VALUES (?1, 's1', 't', '{}', 1000, 5, 0, 0)",
            [&id.as_bytes()[..]],
        )
        .unwrap();
    }
    let store = open(dir.path());
    let old = store.get_task(id).await.unwrap().expect("kept");
    assert_eq!((old.retry_of, old.state), (None, TaskState::Queued));
    let retry = crate::model::TaskRecord {
        retry_of: Some(id),
        ..task("s1", None, at(9))
    };
    insert_new(&store, &retry).await;
    let got = store.get_task(retry.id).await.unwrap().expect("stored");
    assert_eq!(got.retry_of, Some(id));
}

/// The last-good lookup repeats the partial index's condition, so SQLite
/// uses the index rather than scanning the session's tasks.
#[tokio::test]
async fn the_last_good_lookup_uses_its_partial_index() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", rows::SELECT_LAST_GOOD))
        .unwrap()
        .query_map(rusqlite::params!["s", "t", "h", 0], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|step| step.contains("tasks_last_good")),
        "{plan:?}"
    );
}

/// A listing across sessions, either order, with or without a cursor or a
/// tenant's prefix, walks `tasks_listed` and stops at its page: no scan
/// and sort of every retained task per page.
#[tokio::test]
async fn listings_across_sessions_walk_their_index() {
    use crate::store::listing::{Cursor, TaskQuery};
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let after = Cursor {
        created_at: at(1),
        id: uuid::Uuid::nil(),
    };
    for (newest_first, after, key_prefix) in [
        (true, None, None),
        (false, None, None),
        (true, Some(after), Some("t\u{1f}".to_string())),
        (false, Some(after), None),
    ] {
        let query = TaskQuery {
            key_prefix,
            session: None,
            tool: None,
            states: Vec::new(),
            after,
            newest_first,
            limit: 50,
            fallback_runs: false,
        };
        let (sql, params) =
            crate::store::sql::listing::select(&query, "tasks", |n| format!("?{n}"));
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(listing_values(params), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|s| s.contains("tasks_listed"))
                && !plan.iter().any(|s| s.contains("TEMP B-TREE")),
            "{query:?}: {plan:?}"
        );
    }
}

mod backup;
mod batch;
mod damage;
mod full_disk;
