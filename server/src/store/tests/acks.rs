//! What an acknowledgement removes and what it keeps until retention: a
//! SUCCEEDED result delivered truncated (`ReadResult` still reads it) and a
//! SUCCEEDED result of a call with a last-good fallback (a later identical
//! call may fall back to it). Every other acknowledged row goes; kept rows
//! never come back as completions.
use super::{at, finish_seq, insert_new, seqs, succeed, task};
use crate::model::{CallOptions, Fallback, Finish, Outcome, TaskRecord, TaskState, call};
use crate::store::{SessionSeqs, Store};

/// The server's `--result-budget-bytes` in these tests.
const DEFAULT_BUDGET: u64 = 64;

fn with_call(secs: u64, budget: u64, fallback: Option<Fallback>) -> TaskRecord {
    let mut t = task("s1", None, at(secs));
    t.call = CallOptions {
        result_budget: budget,
        args_hash: call::ArgsHash::of(&t.arguments),
        joinable: false,
        fallback,
        fallback_for: None,
    };
    t
}

fn result_of(t: &TaskRecord, bytes: usize, secs: u64) -> Finish {
    let mut f = succeed(t, at(secs));
    // A JSON string of `bytes` bytes in all; 'é' is two bytes, so a store
    // that counts characters instead of bytes sees it under the budget.
    let inner = "é".repeat((bytes - 2) / 2);
    f.outcome = Outcome::Result(format!("\"{inner}\""));
    f
}

pub(super) async fn ack_keeps_what_read_result_and_last_good_need(store: &dyn Store) {
    let last_good = Some(Fallback::LastGood { max_age_ms: 60_000 });
    // Kept: over its own budget; over the server's (budget 0, an older row).
    let big = with_call(1, 40, None);
    let big_default = with_call(2, 0, None);
    // Kept: a success a last-good fallback may answer with.
    let good = with_call(3, 100, last_good.clone());
    // Removed: within budget, no fallback; a tool fallback; a failure.
    let small = with_call(4, 0, None);
    let tool_fallback = with_call(5, 100, Some(Fallback::Tool("backup".into())));
    let failed = with_call(6, 40, last_good);
    for t in [&big, &big_default, &good, &small, &tool_fallback, &failed] {
        insert_new(store, t).await;
    }
    finish_seq(store, &result_of(&big, 50, 11)).await;
    finish_seq(store, &result_of(&big_default, 80, 12)).await;
    finish_seq(store, &result_of(&good, 10, 13)).await;
    finish_seq(store, &result_of(&small, 60, 14)).await;
    finish_seq(store, &result_of(&tool_fallback, 10, 15)).await;
    let mut fail = succeed(&failed, at(16));
    fail.state = TaskState::Failed;
    fail.outcome = Outcome::error("tool_error", "x".repeat(100));
    finish_seq(store, &fail).await;

    let acked = store
        .ack_completions("s1", 6, DEFAULT_BUDGET)
        .await
        .unwrap();
    assert_eq!(acked.removed, 6, "every completion is released");
    assert_eq!(acked.acked_seq, 6);
    for t in [&big, &big_default, &good] {
        let kept = store.get_task(t.id).await.unwrap();
        assert_eq!(
            kept.map(|k| k.state),
            Some(TaskState::Succeeded),
            "{:?} is kept",
            t.call
        );
    }
    for t in [&small, &tool_fallback, &failed] {
        assert!(
            store.get_task(t.id).await.unwrap().is_none(),
            "{:?} is removed",
            t.call
        );
    }
    // Kept rows are acknowledged all the same: never replayed, not counted.
    assert!(seqs(&store.completions_after("s1", 0, 10).await.unwrap()).is_empty());
    assert_eq!(
        store.session_seqs("s1").await.unwrap(),
        SessionSeqs {
            last_seq: 6,
            acked_seq: 6,
            unacknowledged: 0
        }
    );
    let found = store
        .last_good("s1", &good.tool, &good.call.args_hash, at(0))
        .await
        .unwrap();
    assert_eq!(found.map(|t| t.id), Some(good.id));
    // Acknowledging again releases nothing more and keeps them.
    assert_eq!(
        store
            .ack_completions("s1", 6, DEFAULT_BUDGET)
            .await
            .unwrap()
            .removed,
        0
    );
    assert!(store.get_task(big.id).await.unwrap().is_some());
    // A later completion is numbered on, and is the only one replayed.
    let next = with_call(20, 0, None);
    insert_new(store, &next).await;
    assert_eq!(finish_seq(store, &result_of(&next, 10, 21)).await, 7);
    assert_eq!(
        seqs(&store.completions_after("s1", 0, 10).await.unwrap()),
        [7]
    );
    assert_eq!(store.session_seqs("s1").await.unwrap().unacknowledged, 1);

    // Retention removes kept rows by their finish time, as any other.
    store.purge_finished_before(at(13)).await.unwrap();
    assert!(store.get_task(big.id).await.unwrap().is_none());
    assert!(store.get_task(big_default.id).await.unwrap().is_none());
    assert!(store.get_task(good.id).await.unwrap().is_some());
    store.purge_finished_before(at(20)).await.unwrap();
    assert!(store.get_task(good.id).await.unwrap().is_none());
    assert_eq!(
        seqs(&store.completions_after("s1", 0, 10).await.unwrap()),
        [7]
    );
}

/// A task submitted with an idempotency key is kept after its
/// acknowledgement until retention, whatever its ending, so a retried
/// submit still finds it instead of running the tool again (a client that
/// lost a submit's answer retries it; another reader of the session may
/// have acknowledged the result meanwhile). Retention frees the key.
pub(super) async fn ack_keeps_keyed_tasks_so_their_key_still_dedups(store: &dyn Store) {
    let ok = task("s1", Some("order-42"), at(1));
    let failed = task("s1", Some("order-43"), at(2));
    let plain = task("s1", None, at(3));
    for t in [&ok, &failed, &plain] {
        insert_new(store, t).await;
    }
    finish_seq(store, &succeed(&ok, at(11))).await;
    let mut fail = succeed(&failed, at(12));
    fail.state = TaskState::Failed;
    fail.outcome = Outcome::error("tool_error", "no such order");
    finish_seq(store, &fail).await;
    finish_seq(store, &succeed(&plain, at(13))).await;

    let acked = store
        .ack_completions("s1", 3, DEFAULT_BUDGET)
        .await
        .unwrap();
    assert_eq!(acked.removed, 3, "every completion is released");
    assert!(store.get_task(plain.id).await.unwrap().is_none());
    for t in [&ok, &failed] {
        let again = task("s1", t.idempotency_key.as_deref(), at(20));
        match store.insert_task(&again).await.unwrap() {
            crate::store::Inserted::Existing(earlier) => assert_eq!(earlier.id, t.id),
            other => panic!("a retried submit after the ack ran again: {other:?}"),
        }
        let key = t.idempotency_key.as_deref().unwrap();
        let by_key = store.task_by_key("s1", key).await.unwrap();
        assert_eq!(by_key.map(|k| k.id), Some(t.id));
    }
    // Kept, yet acknowledged: never replayed, not counted.
    assert!(seqs(&store.completions_after("s1", 0, 10).await.unwrap()).is_empty());
    assert_eq!(store.session_seqs("s1").await.unwrap().unacknowledged, 0);

    // Retention removes them by their finish time, and frees the key.
    store.purge_finished_before(at(12)).await.unwrap();
    assert!(store.get_task(ok.id).await.unwrap().is_none());
    assert!(store.get_task(failed.id).await.unwrap().is_some());
    insert_new(store, &task("s1", Some("order-42"), at(30))).await;
}
