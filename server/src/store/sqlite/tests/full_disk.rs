//! A full disk: what the writer does about it must not hold it up.
use std::time::{Duration, Instant};

use super::*;

/// The WAL's truncation after an out-of-space failure waits for no
/// reader: a reader on an older snapshot (a listing, the checkpointer's
/// pass) made the one writer thread wait out its busy timeout (5 s) on
/// every failing batch.
#[tokio::test]
async fn truncating_the_wal_after_a_full_disk_waits_for_no_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    insert_new(&store, &task("s1", None, at(1))).await;
    // A reader holds the snapshot of now...
    let reader = Connection::open(dir.path().join(DB_FILE)).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    // ...which a later commit makes old.
    insert_new(&store, &task("s1", None, at(2))).await;
    fill_the_file(&store);
    let mut big = task("s1", None, at(3));
    big.arguments = format!(r#"{{"x":"{}"}}"#, "y".repeat(200_000)).into();
    let started = Instant::now();
    let err = store.insert_task(&big).await.expect_err("full");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    // The writer is done with the failed batch and its reclaim once it
    // runs this.
    let (done, after) = tokio::sync::oneshot::channel();
    store.with_writer(move |_| {
        let _ = done.send(());
    });
    after.await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the writer waited {took:?} for a reader"
    );
    reader.execute_batch("COMMIT").unwrap();
}
