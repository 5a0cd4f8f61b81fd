//! Shared mode: a server on a PostgreSQL database that another server's
//! store shares. The store's hints reach the scheduler as `crate::cluster`'s
//! listener hands them on (`Cluster::on_event`), here one by one, in order,
//! by the test; the cluster's loops are not started.
use std::time::SystemTime;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    cluster::Cluster,
    model::Finish,
    scheduler::queue::SharedBacklog,
    sessions::Wake,
    store::{
        SharedEvent, SharedQueue, Store, StoredTool,
        postgres::{PostgresOptions, PostgresStore},
        tests::pg_database,
    },
};

/// A server on database `url` that knows tool `t` and has no worker, its
/// store's hints (from when it listens), and another server's store on the
/// same database.
async fn server_and_another(
    url: &str,
) -> (Cluster, broadcast::Receiver<SharedEvent>, PostgresStore) {
    let here = Arc::new(
        PostgresStore::connect(url, PostgresOptions::default())
            .await
            .unwrap(),
    );
    let hints = here.hints().await;
    let there = PostgresStore::connect(url, PostgresOptions::default())
        .await
        .unwrap();
    let tool = StoredTool {
        name: "t".into(),
        description: String::new(),
        input_schema: String::new(),
        timeout_ms: 0,
        queue_timeout_ms: 0,
        policy: String::new(),
        last_served_at: SystemTime::now(),
    };
    here.put_tools(&[tool]).await.unwrap();
    let store: SharedStore = here;
    let backlog = SharedBacklog::new(store.clone()).unwrap();
    let sched = Scheduler::new(
        Config::default(),
        store,
        Parts {
            backlog: backlog.clone(),
            ..Parts::default()
        },
    );
    sched.load_tools().await.unwrap();
    let cluster = Cluster {
        hub: sched.hub().clone(),
        sched,
        backlog,
        shutdown: CancellationToken::new(),
    };
    (cluster, hints, there)
}

/// `fut`, within the tests' bound for one event.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("an event within 20 s")
}

/// Hands the store's hints to the listener's handling, in order, until
/// session `session`'s streams here are woken for seq `seq`.
async fn hand_on_until(
    cluster: &Cluster,
    hints: &mut broadcast::Receiver<SharedEvent>,
    session: &str,
    seq: u64,
) {
    let mut wakes = cluster.hub.subscribe(session);
    loop {
        let hint = within(hints.recv()).await.unwrap();
        cluster.on_event(hint).await;
        while let Ok(wake) = wakes.try_recv() {
            if matches!(wake, Wake::Seq(n) if n >= seq) {
                return;
            }
        }
    }
}

/// Defect: a server kept the queue deadline of every task it accepted and
/// another server claimed, ran or cancelled, and at that deadline opened a
/// transaction to find it no longer queued (or, with the database down,
/// warned that timing out a task finished minutes before failed). It
/// learns of the claim and of the ending, and keeps nothing for them.
#[tokio::test]
async fn a_task_claimed_or_ended_elsewhere_keeps_no_queue_deadline_here() {
    let Some(url) = pg_database().await else {
        return;
    };
    let (cluster, mut hints, there) = server_and_another(&url).await;
    let sched = cluster.sched.clone();
    // No worker here: both wait in the shared queue, each with its
    // queue deadline here.
    let (ran, _) = sched.submit(submit_request("s", "t")).await.unwrap();
    let (cancelled, _) = sched.submit(submit_request("s", "t")).await.unwrap();
    assert_eq!(sched.deadlines.len(), 2);
    // The other server claims and runs the first, and cancels the second.
    let claimed = there.claim("t", 1).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [ran.id]);
    let done = Finish {
        task_id: ran.id,
        state: TaskState::Succeeded,
        outcome: Outcome::Result("1".into()),
        attempts: 1,
        finished_at: SystemTime::now(),
        notes: Default::default(),
    };
    assert!(there.finish_task(&done).await.unwrap().is_some());
    assert!(there.cancel(cancelled.id, "").await.unwrap().is_some());
    hand_on_until(&cluster, &mut hints, "s", 2).await;
    assert_eq!(
        sched.deadlines.len(),
        0,
        "no deadline for tasks claimed or ended by another server"
    );
}

/// The guarantee kept: a task no server claims is still timed out at its
/// queue deadline by the server that accepted it.
#[tokio::test]
async fn a_task_no_server_claims_times_out_at_its_deadline_here() {
    let Some(url) = pg_database().await else {
        return;
    };
    let (cluster, _hints, there) = server_and_another(&url).await;
    let sched = cluster.sched.clone();
    let mut wakes = sched.hub().subscribe("s");
    let mut call = submit_request("s", "t");
    call.queue_timeout_ms = 300;
    let (waiting, _) = sched.submit(call).await.unwrap();
    assert_eq!(sched.deadlines.len(), 1);
    let woken = within(wakes.recv()).await.unwrap();
    assert!(matches!(woken, Wake::Seq(1)), "{woken:?}");
    let task = there.get_task(waiting.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    assert_eq!(error_code(&task), codes::QUEUE_TIMEOUT);
    assert_eq!(sched.deadlines.len(), 0);
}

/// Review finding: a claim's own left-queue hint can reach the listener
/// before the claimed tasks are adopted here, and disarmed the queue
/// deadline of a task this server accepted and then claimed itself; one
/// that then waited here had nothing to time it out. The server that holds
/// a queued task keeps its deadline: adopting arms it again.
#[tokio::test]
async fn a_task_adopted_after_its_claims_hint_keeps_its_queue_deadline() {
    let Some(url) = pg_database().await else {
        return;
    };
    let (cluster, mut hints, there) = server_and_another(&url).await;
    let sched = cluster.sched.clone();
    let (task, _) = sched.submit(submit_request("s", "t")).await.unwrap();
    assert_eq!(sched.deadlines.len(), 1);
    let claimed = there.claim("t", 1).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [task.id]);
    // The hint first, as the listener may hear it before the claim returns.
    loop {
        let hint = within(hints.recv()).await.unwrap();
        let left =
            matches!(&hint, SharedEvent::LeftQueue { task_ids } if task_ids.contains(&task.id));
        cluster.on_event(hint).await;
        if left {
            break;
        }
    }
    assert_eq!(sched.deadlines.len(), 0);
    sched.adopt(claimed, Vec::new()).await;
    assert_eq!(sched.deadlines.len(), 1, "the adopted task's deadline");
}
