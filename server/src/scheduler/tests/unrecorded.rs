//! Dispatches the store could not record (`unrecorded.rs`): taken back,
//! charged to nothing, and seen nowhere as a run.
use super::*;

/// The store refused attempt `a`'s dispatch record: what the worker's
/// stream tells the scheduler then.
fn unrecorded(core: &Core, worker: WorkerId, a: &pb::Assignment) {
    let id = parse_task_id(&a.task_id).unwrap();
    let full = StoreError::Full("the disk is full".into());
    core.dispatch_unrecorded(worker, id, a.attempt, &full);
}

/// A graceful stop waiting on the one task that runs ends as soon as that
/// task's dispatch turns out unrecorded: nothing runs any more, so it must
/// not sleep out its whole grace period.
#[tokio::test(start_paused = true)]
async fn a_drain_ends_when_its_last_dispatch_could_not_be_recorded() {
    let core = core(Config::default());
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    let drain = core.drain(Duration::from_secs(30));
    tokio::pin!(drain);
    assert!(
        futures::poll!(drain.as_mut()).is_pending(),
        "a task runs: the drain waits"
    );
    unrecorded(&core, w, &a);
    let left = tokio::time::timeout(Duration::from_secs(1), drain)
        .await
        .expect("the drain ends at once, not after its grace period");
    assert_eq!(left, 0);
}
