//! The store's part of issue 17's calls: joinable calls in flight, last-good
//! lookups, and finishes that carry notes and drop a fallback run.
use uuid::Uuid;

use super::{at, finish_seq, insert_new, succeed, task};
use crate::model::{
    Answered, CallOptions, Fallback, FallbackFor, Finish, FinishNotes, Outcome, Primary,
    TaskRecord, TaskState, call,
};
use crate::store::{Inserted, Store};

fn joinable(session: &str, args: &str, secs: u64) -> TaskRecord {
    let mut t = task(session, None, at(secs));
    t.arguments = args.into();
    t.call = CallOptions {
        result_budget: 100,
        args_hash: call::ArgsHash::of(args),
        joinable: true,
        fallback: Some(Fallback::LastGood { max_age_ms: 5 }),
        fallback_for: None,
    };
    t
}

pub(super) async fn joinable_calls_join_while_unfinished(store: &dyn Store) {
    let first = joinable("s1", r#"{"a":1,"b":2}"#, 1);
    insert_new(store, &first).await;
    let back = store.get_task(first.id).await.unwrap().unwrap();
    assert_eq!(back.call, first.call, "call options round-trip");
    // The same call, keys in another order: joined, nothing stored.
    let twin = joinable("s1", r#"{"b":2,"a":1}"#, 2);
    match store.insert_task(&twin).await.unwrap() {
        Inserted::Joined(t) => assert_eq!(t.id, first.id),
        other => panic!("expected a join, got {other:?}"),
    }
    assert!(store.get_task(twin.id).await.unwrap().is_none());
    // Other sessions, other arguments, and calls that do not join: stored.
    insert_new(store, &joinable("s2", r#"{"a":1,"b":2}"#, 3)).await;
    insert_new(store, &joinable("s1", r#"{"a":2,"b":2}"#, 4)).await;
    let mut off = joinable("s1", r#"{"a":1,"b":2}"#, 5);
    off.call.joinable = false;
    insert_new(store, &off).await;
    // Once finished, the call is never joined: it runs again.
    finish_seq(store, &succeed(&first, at(6))).await;
    insert_new(store, &joinable("s1", r#"{"a":1,"b":2}"#, 7)).await;
}

pub(super) async fn last_good_is_the_latest_own_success(store: &dyn Store) {
    let args = r#"{"city":"Lyon"}"#;
    let old = joinable("s1", args, 1);
    let newer = joinable("s1", args, 2);
    let failed = joinable("s1", args, 3);
    for t in [&old, &newer, &failed] {
        let mut t = (*t).clone();
        t.call.joinable = false;
        insert_new(store, &t).await;
    }
    finish_seq(store, &succeed(&old, at(10))).await;
    finish_seq(store, &succeed(&newer, at(20))).await;
    let mut fail = succeed(&failed, at(30));
    fail.state = TaskState::Failed;
    fail.outcome = Outcome::error("tool_error", "no");
    finish_seq(store, &fail).await;
    let hash = &old.call.args_hash;
    let found = store.last_good("s1", &old.tool, hash, at(5)).await.unwrap();
    assert_eq!(found.map(|t| t.id), Some(newer.id));
    assert!(
        store
            .last_good("s1", &old.tool, hash, at(21))
            .await
            .unwrap()
            .is_none(),
        "too old"
    );
    assert!(
        store
            .last_good("s2", &old.tool, hash, at(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .last_good("s1", "other", hash, at(5))
            .await
            .unwrap()
            .is_none()
    );
    // A result a fallback answered is not a good result of its own.
    let stale = joinable("s1", args, 40);
    let mut stale_t = stale.clone();
    stale_t.call.joinable = false;
    insert_new(store, &stale_t).await;
    let mut answered = succeed(&stale, at(50));
    answered.notes.answered_by = Some(Box::new(Answered {
        primary: primary(),
        tool: String::new(),
        last_good_age_ms: 30_000,
        task_id: newer.id,
    }));
    finish_seq(store, &answered).await;
    let found = store.last_good("s1", &old.tool, hash, at(5)).await.unwrap();
    assert_eq!(found.map(|t| t.id), Some(newer.id));
    let back = store.get_task(stale.id).await.unwrap().unwrap();
    assert_eq!(
        back.notes.answered_by, answered.notes.answered_by,
        "notes round-trip"
    );
    // The same call without a last-good fallback of its own, or with a
    // fallback tool, succeeded later: not an answer (only calls that ask
    // for one are candidates).
    for (secs, fallback) in [(60, None), (70, Some(Fallback::Tool("t\u{1f}b".into())))] {
        let mut plain = joinable("s1", args, secs);
        plain.call.joinable = false;
        plain.call.fallback = fallback;
        insert_new(store, &plain).await;
        finish_seq(store, &succeed(&plain, at(secs + 1))).await;
    }
    let found = store.last_good("s1", &old.tool, hash, at(5)).await.unwrap();
    assert_eq!(found.map(|t| t.id), Some(newer.id));
}

fn primary() -> Primary {
    Primary {
        state: TaskState::Failed,
        code: "tool_error".into(),
        message: "it broke".into(),
        attempts: 1,
    }
}

pub(super) async fn a_fallback_run_goes_with_its_call_s_finish(store: &dyn Store) {
    let parent = task("s1", None, at(1));
    insert_new(store, &parent).await;
    store.park(parent.id).await.unwrap();
    let mut run = task("s1", None, at(2));
    run.tool = "backup".into();
    run.call.fallback_for = Some(Box::new(FallbackFor {
        parent: parent.id,
        primary: primary(),
    }));
    insert_new(store, &run).await;
    let back = store.get_task(run.id).await.unwrap().unwrap();
    assert_eq!(back.call.fallback_for, run.call.fallback_for);
    let unfinished: Vec<Uuid> = store
        .unfinished_tasks()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert!(unfinished.contains(&parent.id) && unfinished.contains(&run.id));
    let finish = Finish {
        task_id: parent.id,
        state: TaskState::Succeeded,
        outcome: Outcome::Result("[42]".into()),
        attempts: 1,
        finished_at: at(3),
        notes: FinishNotes {
            summary: Some("the answer".into()),
            answered_by: Some(Box::new(Answered {
                primary: primary(),
                tool: "backup".into(),
                last_good_age_ms: 0,
                task_id: run.id,
            })),
            drop_run: Some(run.id),
        },
    };
    let c = store
        .finish_task(&finish)
        .await
        .unwrap()
        .expect("a completion");
    assert_eq!((c.seq, c.task_id), (1, parent.id));
    assert_eq!(c.notes.summary.as_deref(), Some("the answer"));
    assert_eq!(c.notes.answered_by, finish.notes.answered_by);
    assert!(
        store.get_task(run.id).await.unwrap().is_none(),
        "the run is gone"
    );
    let replay = store.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].notes.answered_by, finish.notes.answered_by);
    assert!(store.unfinished_tasks().await.unwrap().is_empty());
}
