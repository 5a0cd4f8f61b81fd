//! How the writer's batch answers dispatch records: each record's answer
//! says whether it is stored, whatever else the batch held.
use super::*;

/// Two dispatch records in one batch, one of which SQLite refuses without
/// ending the transaction (a statement error): the other's answer says
/// what the file holds, so the scheduler never takes back an attempt that
/// is stored as running (a crash would then charge a run never sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_record_is_answered_as_the_file_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (bad, good) = (task("s1", None, at(1)), task("s1", None, at(2)));
    insert_new(&store, &bad).await;
    insert_new(&store, &good).await;
    let refused = format!(
        "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON main.tasks WHEN OLD.id = X'{}' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
        bad.id.simple()
    );
    store.with_writer(move |conn| conn.execute_batch(&refused).unwrap());
    // Both records in the writer's next batch.
    let release = hold_writer(&store);
    let (bad_record, good_record) = (
        store.record_dispatch(bad.id, 1, at(5)),
        store.record_dispatch(good.id, 1, at(5)),
    );
    drop(release);
    bad_record.wait().await.expect_err("the refused record");
    let answered = good_record.wait().await;
    let stored = store.get_task(good.id).await.unwrap().unwrap().state;
    assert_eq!(
        answered.is_ok(),
        stored == TaskState::Running,
        "answered {answered:?}, stored {stored:?}"
    );
}
