//! The durable store's file damaged while the server was down, as an
//! operator meets it: `errand serve` and `errand check-store` on an emptied
//! file, on a file from a newer errand, and on one corrupt row.
use std::{path::Path, time::Duration};

use errand_client::pb;
use errand_tests::*;
use tokio::process::Command;

use crate::durability::serve_to_the_end;

/// `errand check-store` on `dir`: (success, stdout and stderr).
async fn check_store(dir: &Path) -> (bool, String) {
    let out = within(
        "errand check-store",
        Command::new(errand_bin())
            .args(["check-store", "--data-dir"])
            .arg(dir)
            .output(),
    )
    .await
    .expect("running errand check-store");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.into_owned())
}

/// A data dir with one finished task, left by a clean stop.
pub(crate) async fn stopped_store(dir: &Path) {
    let mut server = Server::start_durable(dir, &[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    client.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("{}");
    drop((client, worker));
    server.terminate();
    assert!(server.exited().await.success(), "a clean stop");
}

#[tokio::test]
async fn an_emptied_store_and_a_newer_schema_are_refused_by_serve_and_check_store() {
    let dir = tempfile::tempdir().unwrap();
    stopped_store(dir.path()).await;
    let (ok, text) = check_store(dir.path()).await;
    assert!(ok && text.contains(": ok"), "{text}");
    // A failed restore, say.
    let db = dir.path().join("errand.db");
    std::fs::File::options()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (ok, text) = check_store(dir.path()).await;
    assert!(!ok, "{text}");
    assert!(text.contains("is empty (0 bytes)"), "{text}");
    assert!(text.contains("restore errand.db from a backup"), "{text}");
    let (status, out, err) = serve_to_the_end(dir.path()).await;
    assert!(!status.success(), "{out}");
    assert!(!out.contains("errand listening on"), "{out}");
    assert!(err.contains("is empty (0 bytes)"), "{err}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as found");

    // A file written by a newer errand: its schema version (the header's
    // user_version, bytes 60-63) beyond what this one knows.
    let dir = tempfile::tempdir().unwrap();
    stopped_store(dir.path()).await;
    let db = dir.path().join("errand.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&db, bytes).unwrap();
    let (ok, text) = check_store(dir.path()).await;
    assert!(!ok, "{text}");
    assert!(text.contains("schema version 99"), "{text}");
    let (status, _, err) = serve_to_the_end(dir.path()).await;
    assert!(!status.success());
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn one_unreadable_row_leaves_the_other_queued_tasks_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    // The tool is known (stored) once a worker registered it; with the
    // worker gone, submits queue.
    drop(server.gate_worker(&["t"], 1).await);
    within("the worker to leave", async {
        while !server.cli(&["workers", "--json"]).await.stdout.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let args = format!(r#"{{"marker":"QQ{i}ZZ"}}"#);
        ids.push(client.submit("q", "t", &args).await.unwrap().task_id);
    }
    drop(client);
    server.terminate();
    assert!(server.exited().await.success(), "a clean stop");

    // One byte of bit rot in the third task's arguments: not UTF-8.
    let db = dir.path().join("errand.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = (bytes.windows(5).position(|w| w == b"QQ2ZZ")).expect("the marker");
    bytes[at + 2] = 0xff;
    std::fs::write(&db, bytes).unwrap();
    let bad = &ids[2];

    // The operator is told which row, and how to remove it.
    let (ok, text) = check_store(dir.path()).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(bad.as_str()) && text.contains("arguments"),
        "{text}"
    );
    assert!(text.contains("DELETE FROM tasks"), "{text}");

    // The server starts, and the four others run.
    let server = Server::start_durable(dir.path(), &[]).await;
    let mut worker = server.gate_worker(&["t"], 5).await;
    let mut ran = Vec::new();
    for _ in 0..4 {
        let job = worker.next().await;
        ran.push(job.args()["marker"].as_str().unwrap().to_string());
        job.succeed("{}");
    }
    ran.sort();
    assert_eq!(ran, ["QQ0ZZ", "QQ1ZZ", "QQ3ZZ", "QQ4ZZ"]);
    let client = server.client().await;
    let err = client.get_task(bad).await.expect_err("unreadable");
    assert_eq!(err.code(), Some(tonic::Code::Internal), "{err}");
    let shown = err.to_string();
    assert!(shown.contains(bad.as_str()), "{shown}");
    assert!(shown.contains("errand check-store"), "{shown}");
    assert!(!shown.contains("store: store:"), "{shown}");
    let listed = client
        .list_tasks(pb::ListTasksRequest {
            session_id: "q".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.tasks.len(), 4, "{:?}", listed.tasks);
}
