//! `errand backup`: a consistent copy of a running server's SQLite store,
//! taken through SQLite (a plain `cp errand.db` misses what is still in the
//! WAL), that a new server serves; and what it refuses.
use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex},
};

use errand_client::pb;
use errand_tests::*;
use tokio::{process::Command, sync::watch};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::store_damage::stopped_store;

/// `errand backup ARGS`: (success, stdout, stderr).
async fn backup(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = within(
        "errand backup",
        Command::new(errand_bin())
            .arg("backup")
            .args(args)
            .env_remove("ERRAND_STORE")
            .env_remove("ERRAND_DATA_DIR")
            .envs(env.iter().copied())
            .output(),
    )
    .await
    .expect("running errand backup");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_backup_under_load_serves_every_task_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_durable(dir.path(), &[]).await;
    let worker = server
        .gate_worker(&["t"], 8)
        .await
        .auto_succeed("{}".into());
    let client = server.client().await;

    // Completions as they come: the tasks finished so far.
    let finished = Arc::new(Mutex::new(HashSet::new()));
    let (count_tx, mut count) = watch::channel(0usize);
    let mut stream = client.completions_once("load", 0).await.unwrap();
    let seen = finished.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(c)) = stream.next().await {
            let mut seen = seen.lock().unwrap();
            seen.insert(c.task_id);
            count_tx.send_replace(seen.len());
        }
    });
    // Four submitters until told to stop; every accepted task is recorded.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let mut submitters = Vec::new();
    for n in 0..4 {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        submitters.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                let args = format!(r#"{{"n":{n},"i":{i}}}"#);
                let id = client.submit("load", "t", &args).await.unwrap().task_id;
                acked.lock().unwrap().push(id);
                i += 1;
            }
        }));
    }
    within("300 finished tasks", count.wait_for(|n| *n >= 300))
        .await
        .unwrap();

    let acked_before: Vec<String> = acked.lock().unwrap().clone();
    let finished_before: HashSet<String> = finished.lock().unwrap().clone();
    // Most of the work is in the WAL only: a copy of errand.db would miss it.
    let wal = std::fs::metadata(dir.path().join("errand.db-wal")).unwrap();
    assert!(wal.len() > 0);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("errand.db");
    let (ok, stdout, stderr) =
        backup(&["--data-dir", path_str(dir.path()), path_str(&out)], &[]).await;
    stop.cancel();
    for s in submitters {
        s.await.unwrap();
    }
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(" tasks") && stdout.contains(" session") && stdout.contains("checked: ok"),
        "{stdout}"
    );
    // The copy alone: no temporary file or journal left beside it.
    assert_eq!(names_in(out_dir.path()), ["errand.db"]);
    drop((client, worker, watcher));

    // A new server on the copy (the first still runs) has every task
    // acknowledged before the backup, and every one finished is finished.
    let restored = Server::start_durable(out_dir.path(), &[]).await;
    let client = restored.client().await;
    for id in &acked_before {
        let task = client.get_task(id).await.unwrap();
        if finished_before.contains(id) {
            assert_eq!(status_of(task.status), pb::TaskStatus::Succeeded, "{id}");
        }
    }
    let mut stream = client.completions_once("load", 0).await.unwrap();
    let mut delivered = HashSet::new();
    while delivered.len() < finished_before.len() {
        let c = within("a completion from the copy", stream.next()).await;
        delivered.insert(c.expect("more completions").unwrap().task_id);
    }
    assert!(finished_before.is_subset(&delivered));
}

#[tokio::test]
async fn a_backup_refuses_what_it_cannot_copy_safely() {
    let empty = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("copy.db");

    // No store in the data dir.
    let (ok, _, err) = backup(&["--data-dir", path_str(empty.path()), path_str(&out)], &[]).await;
    assert!(!ok);
    assert!(err.contains("errand.db does not exist"), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    assert!(names_in(out_dir.path()).is_empty());

    // PostgreSQL and memory stores: said what to use instead.
    let (ok, _, err) = backup(&[path_str(&out)], &[("ERRAND_STORE", "postgres")]).await;
    assert!(!ok && err.contains("pg_dump"), "{err}");
    let (ok, _, err) = backup(&["--store", "postgres", path_str(&out)], &[]).await;
    assert!(!ok && err.contains("pg_dump"), "{err}");
    let (ok, _, err) = backup(&["--store", "memory", path_str(&out)], &[]).await;
    assert!(!ok && err.contains("nothing to back up"), "{err}");
    assert!(names_in(out_dir.path()).is_empty());

    let dir = tempfile::tempdir().unwrap();
    stopped_store(dir.path()).await;
    let data = ["--data-dir", path_str(dir.path())];

    // OUTPUT's directory is missing: nothing is created.
    let deep = out_dir.path().join("missing/copy.db");
    let (ok, _, err) = backup(&[&data[..], &[path_str(&deep)]].concat(), &[]).await;
    assert!(!ok);
    assert!(
        err.contains("does not exist") && err.contains("missing"),
        "{err}"
    );
    assert!(names_in(out_dir.path()).is_empty());

    // OUTPUT exists: kept, unless --force.
    std::fs::write(&out, "an older backup").unwrap();
    let (ok, _, err) = backup(&[&data[..], &[path_str(&out)]].concat(), &[]).await;
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "an older backup");
    let (ok, stdout, err) = backup(&[&data[..], &["--force", path_str(&out)]].concat(), &[]).await;
    assert!(ok, "{err}");
    assert!(stdout.contains("1 task"), "{stdout}");
    assert!(
        std::fs::read(&out)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    assert_eq!(names_in(out_dir.path()), ["copy.db"]);

    // A directory as OUTPUT, and the store's own files even with --force.
    let (ok, _, err) = backup(
        &[&data[..], &["--force", path_str(out_dir.path())]].concat(),
        &[],
    )
    .await;
    assert!(!ok && err.contains("is a directory"), "{err}");
    let (ok, _, err) = backup(
        &[&data[..], &["--force", path_str(dir.path())]].concat(),
        &[],
    )
    .await;
    assert!(!ok && err.contains("is the data dir"), "{err}");
    let before = std::fs::read(dir.path().join("errand.db")).unwrap();
    for name in ["errand.db", "errand.db-wal"] {
        let own = dir.path().join(name);
        let (ok, _, err) = backup(&[&data[..], &["--force", path_str(&own)]].concat(), &[]).await;
        assert!(!ok && err.contains("the store's own"), "{err}");
    }
    assert_eq!(std::fs::read(dir.path().join("errand.db")).unwrap(), before);
    // (A reader leaves an empty WAL, as check-store does: no commit in it.)
    let wal = std::fs::metadata(dir.path().join("errand.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0);
}
