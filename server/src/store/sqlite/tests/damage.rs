//! Damaged data dirs and rows: an emptied `errand.db`, a file `serve` would
//! refuse, an I/O error, a row whose values no longer decode.
use std::process::Command;

use super::*;
use crate::error::Error;
use crate::store::TaskQuery;

fn truncate_db(dir: &Path) {
    std::fs::File::options()
        .write(true)
        .open(dir.join(DB_FILE))
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn refusal(dir: &Path) -> String {
    SqliteStore::open(dir)
        .err()
        .expect("the store should have been refused")
        .to_string()
}

#[tokio::test]
async fn an_emptied_file_after_a_clean_stop_is_refused_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    assert!(dir.path().join(CLEAN_FILE).exists());
    // A failed copy or restore, `> errand.db`, a file system losing the
    // file's data: a store was here, and its file is now empty.
    truncate_db(dir.path());
    for start in ["first", "second"] {
        let msg = refusal(dir.path());
        assert!(msg.contains("empty"), "{start}: {msg}");
        assert!(msg.contains("backup"), "{start}: {msg}");
        assert!(msg.contains("Move errand.db"), "{start}: {msg}");
        assert_eq!(
            file_size(dir.path()),
            0,
            "{start}: the file was left as found"
        );
    }
    // The first refusal named the clean-stop mark as its evidence; the
    // mark for later starts says why it refused.
    let why = std::fs::read_to_string(dir.path().join(SUSPECT_FILE)).unwrap();
    assert!(why.contains("empty"), "{why}");
    let msg = check_store(dir.path()).expect_err("refused").to_string();
    assert!(msg.contains("empty"), "{msg}");
}

#[tokio::test]
async fn an_emptied_file_after_a_crash_is_refused_and_its_wal_kept() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    // A crash leaves no clean-stop mark; only the lock file says a server
    // ran here.
    std::fs::remove_file(dir.path().join(CLEAN_FILE)).unwrap();
    truncate_db(dir.path());
    let msg = refusal(dir.path());
    assert!(
        msg.contains("empty") && msg.contains("errand.lock"),
        "{msg}"
    );
    let msg = check_store(dir.path()).expect_err("refused").to_string();
    assert!(msg.contains("empty"), "{msg}");

    // A crash also leaves the WAL, which may hold the latest commits:
    // SQLite deletes a WAL it finds beside an empty file, so the store
    // must refuse before SQLite opens it.
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    std::fs::write(&wal, vec![7u8; 10_000]).unwrap();
    let msg = refusal(dir.path());
    assert!(msg.contains("errand.db-wal"), "{msg}");
    assert_eq!(std::fs::read(&wal).unwrap(), vec![7u8; 10_000]);
    check_store(dir.path()).expect_err("refused");
    assert_eq!(std::fs::read(&wal).unwrap(), vec![7u8; 10_000]);
}

#[tokio::test]
async fn a_store_replaced_by_an_empty_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    let other = dir.path().join("other.db");
    let conn = Connection::open(&other).unwrap();
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        .unwrap();
    drop(conn);
    assert!(std::fs::metadata(&other).unwrap().len() > 0);
    std::fs::rename(&other, dir.path().join(DB_FILE)).unwrap();
    let msg = refusal(dir.path());
    assert!(msg.contains("holds no errand store"), "{msg}");
    let msg = check_store(dir.path()).expect_err("refused").to_string();
    assert!(msg.contains("holds no errand store"), "{msg}");
}

#[tokio::test]
async fn new_and_never_written_files_still_start_empty() {
    // A new data dir.
    let dir = tempfile::tempdir().unwrap();
    insert_new(&open(dir.path()), &task("s1", None, at(1))).await;

    // An empty file made by hand (or by a provisioning tool) in a data dir
    // no server used.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), "").unwrap();
    check_store(dir.path()).expect("an empty file no server wrote is a new store");
    insert_new(&open(dir.path()), &task("s1", None, at(1))).await;

    // A first start that died after creating the file, before its first
    // commit: the next start takes the empty file as new.
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::begin_open(dir.path()).unwrap());
    assert_eq!(file_size(dir.path()), 0);
    assert!(dir.path().join(LOCK_FILE).exists());
    check_store(dir.path()).expect("a store still being created");
    insert_new(&open(dir.path()), &task("s1", None, at(1))).await;
    // One that died later, once SQLite had written the file's first page
    // (its first pragma does), before the schema's commit.
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::begin_open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        .unwrap();
    drop(conn);
    assert!(file_size(dir.path()) > 0);
    check_store(dir.path()).expect("a store still being created");
    insert_new(&open(dir.path()), &task("s1", None, at(1))).await;

    // A file moved away to start empty, as a refusal says to.
    let dir = tempfile::tempdir().unwrap();
    store_of_500(dir.path()).await;
    std::fs::rename(dir.path().join(DB_FILE), dir.path().join("old.db")).unwrap();
    let store = open(dir.path());
    assert!(store.unfinished_tasks().await.unwrap().is_empty());
    drop(store);
    // And one that the refusal above had named: moving it away lets the
    // next start begin empty.
    truncate_db(dir.path());
    std::fs::remove_file(dir.path().join(CLEAN_FILE)).unwrap();
    refusal(dir.path());
    std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
    drop(open(dir.path()));
    check_store(dir.path()).expect("sound");
}

#[test]
fn check_store_refuses_what_open_refuses() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let served = refusal(dir.path());
    let checked = check_store(dir.path()).expect_err("refused").to_string();
    assert!(
        checked.contains("schema version 99") && checked.contains("newer"),
        "{checked}"
    );
    assert_eq!(checked, served);

    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let checked = check_store(dir.path()).expect_err("refused").to_string();
    assert!(checked.contains("not an errand database"), "{checked}");
}

#[test]
fn store_errors_reach_callers_with_one_prefix() {
    let io = rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
        Some("disk I/O error".into()),
    );
    let shown = Error::Store(errors::store_error(io)).into_message();
    assert!(!shown.contains("store: store:"), "{shown}");
    assert!(shown.starts_with("store: "), "{shown}");
}

/// The test binary runs this test again in a child process with a file
/// size limit (`RLIMIT_FSIZE`), so that a write to the WAL fails with a
/// real EFBIG; the child prints the message the caller got.
#[test]
fn a_write_error_names_its_file_and_what_the_os_said() {
    const CHILD: &str = "ERRAND_TEST_FSIZE_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let message = runtime.block_on(write_past_a_size_limit(Path::new(&dir)));
        println!("MESSAGE<{message}>");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::sqlite::tests::damage::a_write_error_names_its_file_and_what_the_os_said",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = stdout
        .split_once("MESSAGE<")
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(m, _)| m)
        .unwrap_or_else(|| panic!("no message: {stdout}"));
    assert!(!message.contains("store: store:"), "{message}");
    assert!(message.contains("errand.db-wal"), "{message}");
    assert!(message.contains("os error 27"), "{message}");
    assert!(message.contains("size limit"), "{message}");
    // Callers are not shown where the server keeps its files.
    assert!(
        !message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.len() < 600, "{message}");
}

/// In the child: a store whose next big write outgrows the file size
/// limit; returns what the caller of that write is shown.
async fn write_past_a_size_limit(dir: &Path) -> String {
    let store = open(dir);
    insert_new(&store, &task("s1", None, at(1))).await;
    let largest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    // SAFETY: plain syscalls in this child process, which exits after.
    unsafe {
        // Past the limit a write fails with EFBIG instead of killing the
        // process with SIGXFSZ.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: largest + 64 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let mut big = task("s1", None, at(2));
    big.arguments = format!(r#"{{"x":"{}"}}"#, "y".repeat(400_000)).into();
    let err = store.insert_task(&big).await.expect_err("over the limit");
    Error::Store(err).into_message()
}

/// Stores `tasks` and writes `value` (raw bytes, as bit rot would leave
/// them) into `column` of task `id`, with the store closed.
async fn damaged(dir: &Path, tasks: &[TaskRecord], finished: usize, id: Uuid, column: &str) {
    let store = open(dir);
    for t in tasks {
        insert_new(&store, t).await;
    }
    for t in &tasks[..finished] {
        finish_seq(&store, &succeed(t, at(100))).await;
    }
    drop(store);
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    let n = conn
        .execute(
            &format!("UPDATE tasks SET {column} = CAST(X'7b2251ff5a227d' AS TEXT) WHERE id = ?1"),
            [&id.as_bytes()[..]],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn query(session: &str, limit: usize) -> TaskQuery {
    TaskQuery {
        key_prefix: None,
        session: Some(session.into()),
        tool: None,
        states: vec![],
        after: None,
        newest_first: false,
        limit,
        fallback_runs: false,
    }
}

#[tokio::test]
async fn an_unreadable_queued_row_is_named_and_left_out_of_recovery_and_listings() {
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..5).map(|i| task("s1", None, at(i))).collect();
    let bad = tasks[2].id;
    damaged(dir.path(), &tasks, 0, bad, "arguments").await;
    let store = open(dir.path());

    // Recovery takes up the other four.
    let unfinished = store.unfinished_tasks().await.expect("the others");
    let ids: Vec<_> = unfinished.iter().map(|t| t.id).collect();
    let want: Vec<_> = tasks.iter().map(|t| t.id).filter(|id| *id != bad).collect();
    assert_eq!(ids, want);

    // Reading the row itself names it, its column and what to do.
    let err = store.get_task(bad).await.expect_err("unreadable");
    let shown = Error::Store(err).into_message();
    assert!(!shown.contains("store: store:"), "{shown}");
    assert!(shown.contains(&bad.to_string()), "{shown}");
    assert!(shown.contains("arguments"), "{shown}");
    assert!(shown.contains("errand check-store"), "{shown}");

    // Listing pages through the others, two at a time: the page the row
    // was on is filled with the next task, so no page ends early.
    let mut listed = Vec::new();
    let mut q = query("s1", 2);
    loop {
        let page = store.list_tasks(&q).await.expect("a page");
        listed.extend(page.iter().map(|t| t.id));
        if page.len() < q.limit {
            break;
        }
        q.after = Some(crate::store::Cursor::of(page.last().unwrap()));
    }
    assert_eq!(listed, want);
    drop(store);

    // The operator finds it, with how to remove it.
    let msg = check_store(dir.path()).expect_err("unreadable").to_string();
    assert!(msg.contains(&bad.to_string()), "{msg}");
    assert!(msg.contains("arguments"), "{msg}");
    assert!(msg.contains("DELETE FROM tasks"), "{msg}");
}

#[tokio::test]
async fn an_unreadable_completion_stops_its_session_at_it_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..3).map(|i| task("s2", None, at(i))).collect();
    let other = task("s3", None, at(9));
    let bad = tasks[1].id;
    {
        let store = open(dir.path());
        insert_new(&store, &other).await;
        finish_seq(&store, &succeed(&other, at(100))).await;
    }
    damaged(dir.path(), &tasks, 3, bad, "result").await;
    let store = open(dir.path());
    // Completions before it are delivered; it is never skipped (an ack
    // past it would remove it unseen): reading from it fails, naming it.
    let before = store.completions_after("s2", 0, 10).await.expect("seq 1");
    assert_eq!(before.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
    let err = store
        .completions_after("s2", 1, 10)
        .await
        .expect_err("seq 2");
    let msg = err.to_string();
    assert!(
        msg.contains(&bad.to_string()) && msg.contains("result"),
        "{msg}"
    );
    // Other sessions are untouched.
    assert_eq!(store.completions_after("s3", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreadable_tool_definition_is_left_out_of_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (search, fetch) = crate::store::tests::tools::definitions();
    open(dir.path())
        .put_tools(&[search.clone(), fetch.clone()])
        .await
        .unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute(
        "UPDATE tools SET description = CAST(X'7b2251ff5a227d' AS TEXT) WHERE name = 'search'",
        [],
    )
    .unwrap();
    drop(conn);
    let store = open(dir.path());
    assert_eq!(store.tools().await.expect("the others"), vec![fetch]);
    drop(store);
    let msg = check_store(dir.path()).expect_err("unreadable").to_string();
    assert!(
        msg.contains("search") && msg.contains("description"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_backup_keeps_an_unreadable_row_and_names_it() {
    // The store serves around such a row; its operator still needs a
    // backup (before removing it, say): the copy keeps it, named.
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..5).map(|i| task("s1", None, at(i))).collect();
    let bad = tasks[2].id;
    damaged(dir.path(), &tasks, 0, bad, "arguments").await;
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy.db");
    let copied = backup_store(dir.path(), &copy, false).expect("backed up");
    assert_eq!(copied.tasks, 5);
    let named = copied.unreadable.expect("the row named");
    assert!(named.contains(&bad.to_string()), "{named}");
    assert!(named.contains(&copy.display().to_string()), "{named}");
}
