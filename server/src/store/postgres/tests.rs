//! PostgreSQL-only behaviour: attempts, several stores on one database,
//! claims and leases, schema and connection errors.
use super::connection::{bound_connections, parse_url};
use super::*;
use crate::model::{Outcome, TaskState};
use crate::store::LostTask;
use crate::store::tests::{at, finish_seq, insert_new, succeed, task};

mod health;
mod tls;

/// A fresh database, or `None`: the test is skipped, visibly (see
/// `pg_database`).
async fn url() -> Option<String> {
    crate::store::tests::pg_database().await
}

async fn open(url: &str) -> PostgresStore {
    PostgresStore::connect(url, PostgresOptions::default())
        .await
        .unwrap()
}

impl PostgresStore {
    /// Its hints from the store ([`SharedQueue::events`]) once it listens:
    /// after its first `Resync` (the listener sends one once `LISTEN` is
    /// done), or a probe of its own (a cancel no task has), should that
    /// `Resync` have come before this subscription.
    pub(crate) async fn hints(&self) -> tokio::sync::broadcast::Receiver<SharedEvent> {
        let mut hints = self.events();
        let probe = Uuid::new_v4();
        self.tell_cancelled(probe, "").await.unwrap();
        loop {
            let hint = tokio::time::timeout(Duration::from_secs(20), hints.recv())
                .await
                .expect("listening within 20 s")
                .unwrap();
            match hint {
                SharedEvent::Resync => return hints,
                SharedEvent::Cancelled { task_id, .. } if task_id == probe => return hints,
                _ => {}
            }
        }
    }
}

/// Two servers' stores on one database with the shortest lease (300 ms),
/// so that one's claims expire soon after it stops renewing them.
async fn leased_pair(url: &str) -> (PostgresStore, PostgresStore) {
    let options = PostgresOptions {
        lease: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let a = PostgresStore::connect(url, options.clone()).await.unwrap();
    (a, PostgresStore::connect(url, options).await.unwrap())
}

#[tokio::test]
async fn a_result_of_an_older_attempt_never_finishes_a_newer_one() {
    let Some(url) = url().await else { return };
    let store = open(&url).await;
    let t = task("s1", None, at(1));
    insert_new(&store, &t).await;
    store.record_dispatch(t.id, 1, at(2));
    store.record_dispatch(t.id, 2, at(3));
    let mut late = succeed(&t, at(4));
    late.attempts = 1;
    assert!(store.finish_task(&late).await.unwrap().is_none());
    let mut current = succeed(&t, at(5));
    current.attempts = 2;
    assert_eq!(finish_seq(&store, &current).await, 1);
    // Repeated: still one completion.
    assert!(store.finish_task(&current).await.unwrap().is_none());
    assert_eq!(store.completions_after("s1", 0, 10).await.unwrap().len(), 1);
}

/// A tool registered through one server is known to the others.
#[tokio::test]
async fn every_store_on_one_database_shares_the_tool_registry() {
    let Some(url) = url().await else { return };
    let (a, b) = (open(&url).await, open(&url).await);
    let (search, fetch) = crate::store::tests::tools::definitions();
    a.put_tools(&[search.clone(), fetch.clone()]).await.unwrap();
    assert_eq!(b.tools().await.unwrap(), vec![fetch.clone(), search]);
    b.forget_tools(&["search".into()]).await.unwrap();
    assert_eq!(a.tools().await.unwrap(), vec![fetch]);
}

#[tokio::test]
async fn two_stores_on_one_database_number_one_sequence() {
    let Some(url) = url().await else { return };
    let (a, b) = (Arc::new(open(&url).await), Arc::new(open(&url).await));
    let tasks: Vec<_> = (0..200).map(|i| task("s1", None, at(i))).collect();
    for (i, t) in tasks.iter().enumerate() {
        insert_new(if i % 2 == 0 { &*a } else { &*b }, t).await;
    }
    let handles: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let f = succeed(t, at(1000));
            tokio::spawn(async move { finish_seq(&*store, &f).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    // The same task finished through both: one completion.
    let t = task("s1", None, at(2000));
    insert_new(&*a, &t).await;
    let (fa, fb) = (succeed(&t, at(2001)), succeed(&t, at(2002)));
    let (x, y) = tokio::join!(a.finish_task(&fa), b.finish_task(&fb));
    assert_eq!(
        [x.unwrap(), y.unwrap()].iter().flatten().count(),
        1,
        "exactly one completion"
    );
}

#[tokio::test]
async fn claims_are_fair_exclusive_and_leased() {
    let Some(url) = url().await else { return };
    let (a, b) = leased_pair(&url).await;
    let many: Vec<_> = (0..50).map(|i| task("busy", None, at(i))).collect();
    for t in &many {
        insert_new(&a, t).await;
    }
    let lone = task("quiet", None, at(100));
    insert_new(&a, &lone).await;
    let first = a.claim("search", 2).await.unwrap();
    let ids: Vec<_> = first.iter().map(|t| t.id).collect();
    assert!(
        ids.contains(&lone.id),
        "the quiet session's one task is among the first two"
    );
    let rest = b.claim("search", 100).await.unwrap();
    assert_eq!(rest.len(), 49);
    assert!(
        rest.iter().all(|t| !ids.contains(&t.id)),
        "claims are exclusive"
    );
    assert!(b.claim("search", 10).await.unwrap().is_empty());

    // a stops renewing: after its lease, b's reaper queues the two again.
    let held: Vec<_> = rest.iter().map(|t| t.id).collect();
    let mut reaped = 0;
    while reaped < 2 {
        b.renew(&held).await.unwrap();
        reaped += b.reap(3).await.unwrap().count;
    }
    assert_eq!(
        a.renew(&ids).await.unwrap(),
        Vec::<Uuid>::new(),
        "a lost its claims"
    );
    let again = b.claim("search", 10).await.unwrap();
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn a_reaped_fallback_run_ends_its_call_and_takes_no_completion() {
    use crate::model::{FallbackFor, Primary, TaskState};
    let Some(url) = url().await else { return };
    let (a, b) = leased_pair(&url).await;
    let call = task("s1", None, at(1));
    insert_new(&a, &call).await;
    a.park(call.id).await.unwrap();
    let mut run = task("s1", None, at(2));
    run.call.fallback_for = Some(Box::new(FallbackFor {
        parent: call.id,
        primary: Primary {
            state: TaskState::Failed,
            code: "tool_error".into(),
            message: "broke".into(),
            attempts: 1,
        },
    }));
    insert_new(&a, &run).await;
    let claimed = a.claim("search", 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [run.id],
        "the parked call is not claimed"
    );
    a.record_dispatch(run.id, 1, at(3)).wait().await.unwrap();
    // a stops renewing; b reaps the run with its one attempt spent.
    while b.reap(1).await.unwrap().count == 0 {
        tokio::task::yield_now().await;
    }
    let done = b.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].task_id, done[0].state),
        (call.id, TaskState::Failed)
    );
    let answered = done[0].notes.answered_by.as_ref().expect("FallbackUsed");
    assert_eq!(answered.task_id, run.id);
    assert!(
        b.get_task(run.id).await.unwrap().is_none(),
        "the run is gone"
    );
}

/// Endings that fall back are left to the scheduler of the server that
/// found them (held by it), never written as failures by the store.
#[tokio::test]
async fn endings_that_fall_back_are_handed_over_not_written() {
    use crate::model::{Fallback, Outcome, TaskState, codes};
    use crate::store::QueuedEnding;
    let Some(url) = url().await else { return };
    let (a, b) = leased_pair(&url).await;
    let with_fallback = |created| {
        let mut t = task("s1", None, at(created));
        t.call.fallback = Some(Fallback::Tool("backup".into()));
        t
    };
    // Reaped after its one attempt: handed to b, still unfinished.
    let call = with_fallback(1);
    insert_new(&a, &call).await;
    assert_eq!(a.claim("search", 10).await.unwrap().len(), 1);
    a.record_dispatch(call.id, 1, at(2)).wait().await.unwrap();
    let handed = loop {
        let reaped = b.reap(1).await.unwrap();
        if !reaped.handed.is_empty() {
            break reaped.handed;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].task.id, call.id);
    assert_eq!(handed[0].finish.state, TaskState::Failed);
    assert!(
        matches!(&handed[0].finish.outcome, Outcome::Error { code, .. } if code == codes::WORKER_LOST)
    );
    assert_eq!(handed[0].finish.attempts, 1);
    assert!(b.completions_after("s1", 0, 10).await.unwrap().is_empty());
    assert_eq!(b.renew(&[call.id]).await.unwrap(), [call.id], "b holds it");

    // Timed out in the queue: handed over with a fallback, written without.
    let queued = with_fallback(3);
    let plain = task("s1", None, at(4));
    insert_new(&a, &queued).await;
    insert_new(&a, &plain).await;
    let timeout = || Outcome::error(codes::QUEUE_TIMEOUT, "late");
    match b.time_out_queued(queued.id, timeout()).await.unwrap() {
        Some(QueuedEnding::Handed(h)) => {
            assert_eq!(
                (h.task.id, h.finish.state),
                (queued.id, TaskState::TimedOut)
            );
        }
        other => panic!("expected a hand-over, got {other:?}"),
    }
    assert!(
        b.time_out_queued(queued.id, timeout())
            .await
            .unwrap()
            .is_none(),
        "no longer queued"
    );
    match b.time_out_queued(plain.id, timeout()).await.unwrap() {
        Some(QueuedEnding::Finished(c)) => assert_eq!(c.state, TaskState::TimedOut),
        other => panic!("expected a completion, got {other:?}"),
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(url) = url().await else { return };
    drop(open(&url).await);
    crate::test_pg::Cluster::execute(&url, "INSERT INTO errand_schema (version) VALUES (99)").await;
    let err = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains("newer"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_tasks() {
    let Some(url) = url().await else { return };
    let id = uuid::Uuid::new_v4();
    let v1 = format!(
        "{}
         CREATE TABLE errand_schema (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO errand_schema (version) VALUES (1);
         INSERT INTO errand_tasks (id, session, tool, arguments, timeout_ns, created_at,
             state, attempts)
         VALUES ('{id}', 's1', 't', '{{}}', 1000, 5, 0, 0);",
        schema::MIGRATIONS[0]
    );
    crate::test_pg::Cluster::execute(&url, &v1).await;
    let store = open(&url).await;
    let old = store.get_task(id).await.unwrap().expect("kept");
    assert_eq!(
        (old.retry_of, old.state),
        (None, crate::model::TaskState::Queued)
    );
    let retry = TaskRecord {
        retry_of: Some(id),
        ..task("s1", None, at(9))
    };
    insert_new(&store, &retry).await;
    let got = store.get_task(retry.id).await.unwrap().expect("stored");
    assert_eq!(got.retry_of, Some(id));
}

/// A task given back to the queue after a run before migration 10 (no
/// `requeue_deadline`) still times out: the migration starts its fresh
/// wait for a worker (its queue timeout, 2 s here) from the upgrade.
#[tokio::test]
async fn a_task_queued_again_before_the_upgrade_still_times_out() {
    let Some(url) = url().await else { return };
    let id = uuid::Uuid::new_v4();
    let ns = |t: SystemTime| crate::store::sql::codec::time_to_i64(t);
    let submitted = SystemTime::now() - Duration::from_secs(60);
    let v9 = format!(
        "{}
         CREATE TABLE errand_schema (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO errand_schema (version) SELECT generate_series(1, 9);
         INSERT INTO errand_tasks (id, session, tool, arguments, timeout_ns, created_at,
             state, attempts, queue_deadline)
         VALUES ('{id}', 's1', 'search', '{{}}', 1000, {}, 0, 1, {});",
        schema::MIGRATIONS[..9].join("\n"),
        ns(submitted),
        ns(submitted + Duration::from_secs(2)),
    );
    crate::test_pg::Cluster::execute(&url, &v9).await;
    let (a, _) = leased_pair(&url).await;
    let upgraded = SystemTime::now();
    assert_eq!(
        a.reap(3).await.unwrap().count,
        0,
        "its fresh wait has begun"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.reap(3).await.unwrap().count == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never timed out");
    }
    assert!(SystemTime::now() >= upgraded + Duration::from_millis(1_500));
    let task = a.get_task(id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let err = PostgresStore::connect(
        "postgres://errand@127.0.0.1:1/none",
        PostgresOptions {
            connect_timeout: Some(Duration::from_millis(300)),
            ..PostgresOptions::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot reach PostgreSQL at 127.0.0.1:1/none"),
        "{err}"
    );
}

/// Defect: a refused database was given up on after about half the
/// connect timeout (3000 ms: after 1.5 s; 4000 ms: after 3.1 s): the
/// retries stopped as soon as the next backoff would pass the limit. Now
/// the last retry is made just before it, and the whole wait is what the
/// flag says.
#[tokio::test]
async fn the_connect_timeout_is_the_whole_wait_for_a_refused_database() {
    for ms in [3_000, 4_000] {
        let limit = Duration::from_millis(ms);
        let started = tokio::time::Instant::now();
        let err = PostgresStore::connect(
            "postgres://errand@127.0.0.1:1/none",
            PostgresOptions {
                connect_timeout: Some(limit),
                ..PostgresOptions::default()
            },
        )
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let waited = started.elapsed();
        assert!(
            waited >= limit - Duration::from_millis(200) && waited < limit + Duration::from_secs(1),
            "{ms} ms asked, gave up after {waited:?}"
        );
    }
}

#[tokio::test]
async fn the_pending_limit_message_names_the_session_without_its_tenant() {
    let Some(url) = url().await else { return };
    let store = PostgresStore::connect(
        &url,
        PostgresOptions {
            max_pending_per_session: 1,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    let session = crate::tenant::key("acme", "s1");
    insert_new(&store, &task(&session, None, at(1))).await;
    let err = store
        .insert_task(&task(&session, None, at(2)))
        .await
        .expect_err("over the limit");
    assert!(matches!(err, StoreError::LimitReached(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("session \"s1\" has 1 unfinished tasks"),
        "{msg}"
    );
    assert!(!msg.contains("acme"), "the tenant leaked: {msg}");
}

/// A submit skipped behind a twin in the same batch (same idempotency key,
/// or the same joinable call) gets its twin's answer when the twin is
/// refused: never `New` for a row that is in no table.
#[tokio::test]
async fn a_twin_behind_a_refused_task_is_refused_too_not_new() {
    use crate::store::sql::batch::Counters;
    let Some(url) = url().await else { return };
    let options = PostgresOptions {
        max_pending_per_session: 1,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect(&url, options.clone()).await.unwrap();
    insert_new(&store, &task("s1", None, at(1))).await;
    let writer = Writer {
        pool: store.pool.clone(),
        server_id: store.server_id.clone(),
        options,
        counters: Arc::new(Counters::default()),
        contact: Arc::default(),
        health: Arc::default(),
    };
    let keyed = [task("s1", Some("k"), at(2)), task("s1", Some("k"), at(3))];
    let joinable = [task("s1", None, at(4)), task("s1", None, at(5))].map(|mut t| {
        t.call.joinable = true;
        t
    });
    for twins in [&keyed, &joinable] {
        let mut client = store.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let answers = writer
            .insert_in(&tx, &[&twins[0], &twins[1]])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for (t, a) in twins.iter().zip(&answers) {
            assert!(matches!(a, Err(StoreError::LimitReached(_))), "{a:?}");
            assert!(store.get_task(t.id).await.unwrap().is_none());
        }
    }
    // A retry of a batch that did commit is still `New`.
    let stored = task("s2", Some("k"), at(6));
    insert_new(&store, &stored).await;
    let mut client = store.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let again = writer.insert_in(&tx, &[&stored]).await.unwrap();
    assert!(matches!(again[..], [Ok(Inserted::New)]), "{again:?}");
}

/// A fallback run timed out in the shared queue by a server's queue timer
/// ends its parked call, as the reaper's timeout does: one completion, the
/// call's, naming the run; the run is gone.
#[tokio::test]
async fn a_fallback_run_timed_out_in_the_queue_ends_its_call() {
    use crate::model::{FallbackFor, Outcome, Primary, TaskState, codes};
    use crate::store::QueuedEnding;
    let Some(url) = url().await else { return };
    let store = open(&url).await;
    let call = task("s1", None, at(1));
    insert_new(&store, &call).await;
    store.park(call.id).await.unwrap();
    let mut run = task("s1", None, at(2));
    run.tool = "backup".into();
    run.call.fallback_for = Some(Box::new(FallbackFor {
        parent: call.id,
        primary: Primary {
            state: TaskState::Failed,
            code: "tool_error".into(),
            message: "broke".into(),
            attempts: 1,
        },
    }));
    insert_new(&store, &run).await;
    let timeout = Outcome::error(codes::QUEUE_TIMEOUT, "late");
    let ended = store.time_out_queued(run.id, timeout).await.unwrap();
    let Some(QueuedEnding::Finished(c)) = ended else {
        panic!("expected a completion, got {ended:?}");
    };
    assert_eq!((c.task_id, c.state), (call.id, TaskState::TimedOut));
    let done = store.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(
        done.iter().map(|c| c.task_id).collect::<Vec<_>>(),
        [call.id],
        "one completion, the call's"
    );
    let answered = done[0].notes.answered_by.as_ref().expect("FallbackUsed");
    assert_eq!((answered.task_id, &*answered.tool), (run.id, "backup"));
    assert_eq!(answered.primary.code, "tool_error");
    assert!(
        store.get_task(run.id).await.unwrap().is_none(),
        "the run is gone"
    );
}

/// A task queued again after a run (its lease ran out, or its server gave
/// it back when the worker went away) waits its queue timeout afresh: its
/// first deadline passed long ago, and neither the reaper nor a server's
/// queue timer ends it as "no worker took this call" because the run
/// outlasted it. Once the fresh wait is over, the reaper ends it.
#[tokio::test]
async fn a_task_queued_again_after_a_run_waits_its_queue_timeout_afresh() {
    let Some(url) = url().await else { return };
    let (a, b) = leased_pair(&url).await;
    let queued_again = |reclaimed: &TaskRecord| {
        assert_eq!(
            (reclaimed.state, reclaimed.attempts),
            (TaskState::Queued, 1)
        );
    };
    // Two calls submitted a minute ago with a 2 s queue timeout, taken at once.
    let submitted = SystemTime::now() - Duration::from_secs(60);
    let mut calls = Vec::new();
    for session in ["reclaimed", "released"] {
        let mut t = task(session, None, submitted);
        t.queue_deadline = Some(submitted + Duration::from_secs(2));
        insert_new(&a, &t).await;
        calls.push(t);
    }
    assert_eq!(a.claim("search", 10).await.unwrap().len(), 2);
    for t in &calls {
        a.record_dispatch(t.id, 1, submitted).wait().await.unwrap();
    }
    // a gives one back (its worker went away) and stops renewing the other.
    a.release(vec![calls[1].id]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.get_task(calls[0].id).await.unwrap().unwrap().state != TaskState::Queued {
        assert!(tokio::time::Instant::now() < deadline, "never reclaimed");
        b.reap(3).await.unwrap();
    }
    let waiting_since = SystemTime::now();
    b.reap(3).await.unwrap();
    for t in &calls {
        queued_again(&b.get_task(t.id).await.unwrap().unwrap());
        let ended = b.time_out_queued(t.id, Outcome::error("queue_timeout", "x"));
        assert!(ended.await.unwrap().is_none(), "its fresh wait is not over");
    }
    // After its queue timeout (2 s) from being queued again, it times out.
    let mut ended = 0;
    while ended < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never timed out");
        ended += b.reap(3).await.unwrap().count;
    }
    assert!(SystemTime::now() >= waiting_since + Duration::from_millis(1_500));
    for t in &calls {
        let task = b.get_task(t.id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::TimedOut);
    }
}

/// Defect: after a database outage longer than the lease, the first server
/// back reclaimed the running tasks of the others before they could renew
/// (every lease had expired while nobody could reach the database). A
/// lease is reclaimed only when its holder really stopped: a server back
/// from a silence longer than a lease reaps no lease until a lease after
/// its return, so the live ones renew first; one that never comes back is
/// reclaimed then.
#[tokio::test]
async fn after_an_outage_longer_than_the_lease_no_live_servers_task_is_reclaimed() {
    let Some(url) = url().await else { return };
    let (a, b) = leased_pair(&url).await;
    let t = task("s1", None, at(1));
    insert_new(&a, &t).await;
    assert_eq!(a.claim("search", 10).await.unwrap().len(), 1);
    a.record_dispatch(t.id, 1, at(2)).wait().await.unwrap();
    // Both servers in steady contact for more than a lease.
    for _ in 0..5 {
        assert_eq!(a.renew(&[t.id]).await.unwrap(), [t.id]);
        b.renew(&[]).await.unwrap();
        assert_eq!(b.reap(3).await.unwrap().count, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The outage: no server reaches the database for three leases.
    tokio::time::sleep(Duration::from_millis(900)).await;
    // b is back first: it renews and reaps, and a's task stays a's.
    b.renew(&[]).await.unwrap();
    assert_eq!(b.reap(3).await.unwrap().count, 0, "b reclaimed a live task");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.renew(&[t.id]).await.unwrap(), [t.id], "a lost its task");
    for _ in 0..6 {
        a.renew(&[t.id]).await.unwrap();
        b.renew(&[]).await.unwrap();
        assert_eq!(b.reap(3).await.unwrap().count, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.renew(&[t.id]).await.unwrap(), [t.id]);
    // a really stops: b, in steady contact, reclaims its task.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        b.renew(&[]).await.unwrap();
        if b.reap(3).await.unwrap().count == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reclaimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = b.get_task(t.id).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Queued, 1));
    // a's renewal no longer returns it, and a learns why: reclaimed, which
    // its worker is told as such (not as a client's cancel).
    assert!(a.renew(&[t.id]).await.unwrap().is_empty());
    let gone = Uuid::new_v4();
    assert_eq!(
        a.lost(&[t.id, gone]).await.unwrap(),
        [(t.id, LostTask::Reclaimed), (gone, LostTask::Gone)]
    );
    let (_, tell) = crate::scheduler::shared::lost_tell(&LostTask::Reclaimed);
    assert!(tell.starts_with("lease_lost: "), "{tell}");
}

/// Defect: a database that accepts connections but never answers made
/// every store call hang for the whole outage. Each one now fails with
/// UNAVAILABLE within the store's operation timeout; a submit retried with
/// its idempotency key after the database answers again is stored once.
#[tokio::test]
async fn a_silent_database_fails_each_call_within_the_timeout() {
    let Some(url) = url().await else { return };
    let (proxied, freeze) = errand_testkit::pg::freezable(&url).await;
    let options = PostgresOptions {
        op_timeout: Duration::from_millis(1_000),
        lease: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect(&proxied, options).await.unwrap();
    let t = task("s1", None, at(1));
    insert_new(&store, &t).await;
    freeze.send_replace(true);
    let keyed = task("s1", Some("k1"), at(2));
    macro_rules! fails_in_time {
        ($what:expr, $call:expr) => {{
            let started = tokio::time::Instant::now();
            let got = tokio::time::timeout(Duration::from_secs(6), $call)
                .await
                .unwrap_or_else(|_| panic!("{} hung on a silent database", $what));
            assert!(
                matches!(got, Err(StoreError::Unavailable(_))),
                "{}: {got:?}",
                $what
            );
            assert!(started.elapsed() < Duration::from_secs(4), "{}", $what);
        }};
    }
    fails_in_time!("get_task", store.get_task(t.id));
    fails_in_time!("insert_task", store.insert_task(&keyed));
    fails_in_time!("claim", store.claim("search", 10));
    fails_in_time!("renew", store.renew(&[t.id]));
    fails_in_time!("reap", store.reap(3));
    fails_in_time!("finish_task", store.finish_task(&succeed(&t, at(3))));
    let all = crate::store::TaskQuery {
        key_prefix: None,
        session: None,
        tool: None,
        states: Vec::new(),
        after: None,
        newest_first: false,
        limit: 10,
        fallback_runs: false,
    };
    fails_in_time!("list_tasks", store.list_tasks(&all));
    freeze.send_replace(false);
    // The database answers again: calls succeed, and the keyed submit,
    // retried, is stored once whether or not its first try landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let again = loop {
        match store.insert_task(&keyed).await {
            Ok(inserted) => break inserted,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "still failing: {e}"),
        }
    };
    assert!(
        matches!(again, Inserted::New | Inserted::Existing(_)),
        "{again:?}"
    );
    let stored = store.task_by_key("s1", "k1").await.unwrap().unwrap();
    assert_eq!(stored.id, keyed.id);
    assert!(store.get_task(t.id).await.unwrap().is_some());
}

/// Defect: `connect_timeout` was ignored when the database accepted TCP
/// and never answered: connecting hung, with nothing logged. Each attempt,
/// from TCP to a query's answer, now ends within the timeout.
#[tokio::test]
async fn the_connect_timeout_bounds_a_database_that_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = tokio::time::Instant::now();
    let silent = format!("postgres://errand@{addr}/none");
    let connecting = PostgresStore::connect(
        &silent,
        PostgresOptions {
            connect_timeout: Some(Duration::from_millis(1_000)),
            ..PostgresOptions::default()
        },
    );
    let err = tokio::time::timeout(Duration::from_secs(8), connecting)
        .await
        .expect("connecting hung on a silent database")
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("cannot reach PostgreSQL"), "{err}");
}

/// Every connection is bounded (TCP connect, unacknowledged data,
/// keepalives, `statement_timeout`, idle transactions), and what the URL
/// sets itself is kept (its options come last, so they win).
#[test]
fn connections_are_bounded_and_the_urls_settings_kept() {
    let mut plain = parse_url("postgres://errand@db:5432/errand").unwrap().0;
    bound_connections(&mut plain, Duration::from_millis(2_500));
    assert_eq!(
        plain.get_connect_timeout(),
        Some(&Duration::from_millis(2_500))
    );
    assert_eq!(
        plain.get_tcp_user_timeout(),
        Some(&Duration::from_millis(2_500))
    );
    assert_eq!(plain.get_keepalives_idle(), Duration::from_secs(10));
    assert_eq!(
        plain.get_options(),
        Some("-c statement_timeout=2500 -c idle_in_transaction_session_timeout=5000")
    );
    let mut theirs = parse_url(
        "postgres://errand@db/errand?connect_timeout=3&keepalives_idle=60&options=-c%20statement_timeout%3D0",
    )
    .unwrap().0;
    bound_connections(&mut theirs, Duration::from_millis(2_500));
    assert_eq!(theirs.get_connect_timeout(), Some(&Duration::from_secs(3)));
    assert_eq!(theirs.get_keepalives_idle(), Duration::from_secs(60));
    assert!(
        theirs
            .get_options()
            .unwrap()
            .ends_with("-c statement_timeout=0"),
        "{:?}",
        theirs.get_options()
    );
    for bad in [
        "",
        "  ",
        "postgres://",
        "postgres:///errand",
        "postgres://e@db/d?sslmode=bogus",
    ] {
        assert!(check_url(bad).is_err(), "{bad:?}");
    }
    assert!(check_url("postgres://e@db/d?sslmode=prefer").is_ok());
    assert!(check_url("postgres://e@db/d?sslmode=require").is_ok());
    assert!(check_url("host=/var/run/postgresql dbname=errand").is_ok());
}

/// Defect: a URL of another database (`mysql://...`) or of no known shape
/// was refused as `"mysql://..." has no value (key=value)`, which says
/// neither what is wrong nor what works, and repeats the URL (and any
/// password in it). Now it names the scheme (or the shape) and what is
/// supported, without the URL.
#[test]
fn a_url_of_another_scheme_or_shape_says_what_is_supported() {
    for (url, says) in [
        (
            "mysql://errand:secret@127.0.0.1/errand",
            "`mysql://` is not supported",
        ),
        ("sqlite:///var/lib/errand/secret.db", "--store sqlite"),
        ("redis://secret@h", "`redis://` is not supported"),
        ("errand:secret@127.0.0.1/errand", "postgres://"),
        ("127.0.0.1:5432", "postgres://"),
        ("postgres:/secret", "postgres://"),
    ] {
        let err = check_url(url).unwrap_err();
        assert!(err.contains(says), "{url}: {err}");
        assert!(
            err.contains("postgres://") && err.contains("key=value"),
            "{url}: {err}"
        );
        assert!(!err.contains("secret"), "{url}: the URL is repeated: {err}");
        assert!(err.len() < 400, "{err}");
    }
    assert!(check_url("postgresql://e@db/d").is_ok());
    assert!(check_url("host=db user=e dbname=d").is_ok());
}

/// Defect: a role that may not create tables in the database failed at
/// start with PostgreSQL's bare "permission denied for schema public".
/// Now the error names the role and what to fix.
#[tokio::test]
async fn a_role_without_create_on_the_schema_is_told_what_to_grant() {
    let Some(url) = url().await else { return };
    let db = url.rsplit('/').next().unwrap().to_string();
    let role = format!("lowly_{db}");
    crate::test_pg::Cluster::execute(&url, &format!("CREATE ROLE {role} LOGIN")).await;
    let lowly = url.replacen("errand@", &format!("{role}@"), 1);
    let err = PostgresStore::connect(&lowly, PostgresOptions::default())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(
        text.contains(&format!("GRANT CREATE ON SCHEMA public TO {role}"))
            && text.contains(&format!("createdb -O {role}")),
        "{text}"
    );
    assert!(text.len() < 800, "{text}");
}

/// Defect: an error of a class the store retries (57: the database shutting
/// down, a statement cancelled) lost its reason: "the database is
/// unavailable (db error)", where the cause was "FATAL: the database system
/// is shutting down". Every branch of `pg_error` keeps the source chain.
#[tokio::test]
async fn a_retried_database_error_keeps_its_reason() {
    let Some(url) = url().await else { return };
    let store = open(&url).await;
    let client = store.client().await.unwrap();
    let e = client
        .batch_execute("SET statement_timeout = 1; SELECT pg_sleep(1)")
        .await
        .expect_err("cancelled by its statement timeout");
    let err = errors::pg_error(e);
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("canceling statement due to statement timeout"),
        "{err}"
    );
}

/// A database on a free loopback port that asks every client for a
/// password with authentication request `request` (3 cleartext, 5 MD5 with
/// its salt, 10 SASL with its mechanisms), as PostgreSQL does for a role
/// pg_hba.conf does not trust; it turns down TLS. Its address.
async fn asking_for_a_password(request: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: u32 = 80_877_103;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    // A length-prefixed startup packet: SSLRequest or StartupMessage.
                    let Ok(len) = socket.read_u32().await else {
                        return;
                    };
                    let mut body = vec![0; (len as usize).saturating_sub(4)];
                    if socket.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if body.get(..4) == Some(&SSL_REQUEST.to_be_bytes()[..]) {
                        let _ = socket.write_all(b"N").await;
                        continue;
                    }
                    let mut reply = vec![b'R'];
                    reply.extend_from_slice(&(4 + request.len() as u32).to_be_bytes());
                    reply.extend_from_slice(request);
                    let _ = socket.write_all(&reply).await;
                    // Held open: the client is the one to give up.
                    let _ = socket.read(&mut [0; 64]).await;
                    return;
                }
            });
        }
    });
    addr
}

/// Defect: a database URL without a password, for a database that asks
/// for one, was retried for ever as "the database is unreachable (invalid
/// configuration: password missing)". Like a wrong password, it fails the
/// start at once, saying to put the password in the URL.
#[tokio::test]
async fn a_url_without_the_password_the_database_asks_for_fails_at_once() {
    let requests: [&[u8]; 3] = [
        &[0, 0, 0, 3],
        &[0, 0, 0, 5, 1, 2, 3, 4],
        b"\0\0\0\x0aSCRAM-SHA-256\0\0",
    ];
    for request in requests {
        let addr = asking_for_a_password(request).await;
        let url = format!("postgres://errand@{addr}/errand");
        let connecting = PostgresStore::connect(&url, PostgresOptions::default());
        let err = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .unwrap_or_else(|_| panic!("request {request:?}: still retrying"))
            .err()
            .expect("refused");
        assert!(!err.is_transient(), "{request:?}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("password missing") && text.contains("postgres://USER:PASSWORD@"),
            "{request:?}: {text}"
        );
    }
}

/// Every way a task leaves the shared queue is told to every server
/// (`LeftQueue`): a claim, a cancel, a queue timeout; so the server that
/// accepted it stops watching its queue deadline.
#[tokio::test]
async fn every_server_hears_of_each_task_that_left_the_queue() {
    let Some(url) = url().await else { return };
    let (a, b) = (open(&url).await, open(&url).await);
    let mut hints = a.hints().await;
    let tasks: Vec<_> = (0..3).map(|i| task("s1", None, at(i))).collect();
    for t in &tasks {
        insert_new(&a, t).await;
    }
    let claimed = b.claim("search", 1).await.unwrap();
    assert_eq!(claimed[0].id, tasks[0].id);
    assert!(b.cancel(tasks[1].id, "").await.unwrap().is_some());
    let outcome = Outcome::error(crate::model::codes::QUEUE_TIMEOUT, "no worker took it");
    assert!(
        b.time_out_queued(tasks[2].id, outcome)
            .await
            .unwrap()
            .is_some()
    );
    let mut left = std::collections::HashSet::new();
    while left.len() < tasks.len() {
        let hint = tokio::time::timeout(Duration::from_secs(20), hints.recv())
            .await
            .unwrap_or_else(|_| panic!("only {left:?} told"))
            .unwrap();
        if let SharedEvent::LeftQueue { task_ids } = hint {
            left.extend(task_ids);
        }
    }
    assert!(tasks.iter().all(|t| left.contains(&t.id)), "{left:?}");
}
