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

/// The worker's stream sent attempt `a`: its dispatch record is durable.
fn recorded(core: &Core, worker: WorkerId, a: &pb::Assignment) {
    let id = parse_task_id(&a.task_id).unwrap();
    core.dispatch_recorded(worker, id, a.attempt);
}

/// A dispatch taken back was not a run: the dashboard shows one attempt
/// (the one sent), and the dispatch latency is observed once, for it.
#[tokio::test(start_paused = true)]
async fn an_unrecorded_dispatch_shows_no_attempt_and_no_dispatch_latency() {
    let core = core(Config::default());
    let mut activity = core.hub().subscribe_activity();
    let (w, mut rx) = worker(&core, &["t"], 1).await;
    core.submit(submit_request("s", "t")).await.unwrap();
    let a = assignment(&mut rx);
    unrecorded(&core, w, &a);
    // Once the hold is over it goes out again, as attempt 1, recorded.
    let again = match rx.recv().await.unwrap().unwrap().kind.unwrap() {
        pb::worker_command::Kind::Assignment(a) => a,
        other => panic!("expected an assignment, got {other:?}"),
    };
    assert_eq!((&again.task_id, again.attempt), (&a.task_id, 1));
    recorded(&core, w, &again);
    let mut started = 0;
    while let Ok(event) = activity.try_recv() {
        started += usize::from(matches!(event.kind, ActivityKind::Started { .. }));
    }
    assert_eq!(started, 1, "one attempt started");
    let metrics = core.metrics.render(&**core);
    let observed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("errand_dispatch_latency_seconds_count "))
        .expect("the dispatch latency's count");
    assert_eq!(observed, "1", "one dispatch latency observed");
}
