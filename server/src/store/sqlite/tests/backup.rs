//! `backup_store`: a copy taken in steps while the store writes, and one
//! that fails its check.
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// A store of `n` tasks with 2 KB of arguments each (2 KB × 3,000 is
/// 6 MB: more than one step of the copy).
async fn store_of(dir: &Path, n: u64) -> SqliteStore {
    let store = open(dir);
    let pad = "x".repeat(2000);
    let tasks: Vec<_> = (0..n)
        .map(|i| TaskRecord {
            arguments: format!(r#"{{"pad":"{pad}"}}"#).into(),
            ..task("s1", None, at(i))
        })
        .collect();
    for chunk in tasks.chunks(500) {
        join_all(chunk.iter().map(|t| insert_new(&store, t))).await;
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_steps_beside_a_busy_writer_is_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_of(dir.path(), 3000).await);
    // The writer commits all along the copy: without one snapshot held
    // across the steps, each commit would restart the copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 10_000;
            while !stop.load(Ordering::Acquire) {
                insert_new(&*store, &task("s2", None, at(i))).await;
                i += 1;
            }
            i - 10_000
        })
    };
    while store.stats().sent < 3100 {
        tokio::task::yield_now().await;
    }
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy.db");
    let (data, to) = (dir.path().to_path_buf(), copy.clone());
    let copied = tokio::task::spawn_blocking(move || backup_store(&data, &to, false))
        .await
        .unwrap()
        .expect("backed up");
    stop.store(true, Ordering::Release);
    let written = writes.await.unwrap();
    assert!(copied.bytes > 6_000_000, "{copied:?}");
    assert!(
        copied.tasks >= 3000 && copied.tasks <= 3000 + written,
        "{copied:?}"
    );
    assert_eq!(copied.unreadable, None);
    // One file: no journal, WAL or work dir left.
    let names: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let conn = Connection::open(&copy).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[tokio::test]
async fn a_copy_that_fails_its_check_leaves_nothing_under_output() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    scribble(dir.path(), None);
    let out = tempfile::tempdir().unwrap();
    let msg = backup_store(dir.path(), &out.path().join("copy.db"), false)
        .expect_err("refused")
        .to_string();
    assert!(
        msg.contains("the copy failed its check") && msg.contains("check-store"),
        "{msg}"
    );
    // Not the work file's path, nor advice to restore the copy.
    assert!(
        !msg.contains("restore") && !msg.contains("errand-backup-"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
