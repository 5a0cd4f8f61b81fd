//! [`Store::list_tasks`]: filters, tenant prefixes, both orders, and keyset
//! pages that neither repeat nor skip a task while others are inserted;
//! [`Store::count_tasks`]: every match, whatever the page.
use std::collections::HashSet;

use uuid::Uuid;

use super::{at, insert_new, succeed, task};
use crate::model::{TaskRecord, TaskState};
use crate::store::{Cursor, Store, TaskQuery};

fn query() -> TaskQuery {
    TaskQuery {
        key_prefix: None,
        session: None,
        tool: None,
        states: Vec::new(),
        after: None,
        newest_first: false,
        limit: 100,
        fallback_runs: false,
    }
}

fn ids(tasks: &[TaskRecord]) -> Vec<Uuid> {
    tasks.iter().map(|t| t.id).collect()
}

pub(in crate::store) async fn list_tasks_filters(store: &dyn Store) {
    let a1 = task("acme\u{1f}s1", None, at(1));
    let mut a2 = task("acme\u{1f}s2", None, at(2));
    a2.tool = "acme\u{1f}fetch".into();
    let b1 = task("beta\u{1f}s1", None, at(3));
    let anon = task("s1", None, at(4));
    for t in [&a1, &a2, &b1, &anon] {
        insert_new(store, t).await;
    }
    store.finish_task(&succeed(&a1, at(5))).await.unwrap();

    let all = store.list_tasks(&query()).await.unwrap();
    assert_eq!(
        ids(&all),
        ids(&[a1.clone(), a2.clone(), b1.clone(), anon.clone()])
    );
    assert_eq!(
        all[0].state,
        TaskState::Succeeded,
        "finished tasks are listed too"
    );

    let acme = TaskQuery {
        key_prefix: Some("acme\u{1f}".into()),
        ..query()
    };
    assert_eq!(
        ids(&store.list_tasks(&acme).await.unwrap()),
        vec![a1.id, a2.id]
    );
    let session = TaskQuery {
        session: Some("acme\u{1f}s2".into()),
        ..acme.clone()
    };
    assert_eq!(ids(&store.list_tasks(&session).await.unwrap()), vec![a2.id]);
    let tool = TaskQuery {
        tool: Some("acme\u{1f}fetch".into()),
        ..acme.clone()
    };
    assert_eq!(ids(&store.list_tasks(&tool).await.unwrap()), vec![a2.id]);
    let queued = TaskQuery {
        states: vec![TaskState::Queued],
        ..acme.clone()
    };
    assert_eq!(ids(&store.list_tasks(&queued).await.unwrap()), vec![a2.id]);
    let done = TaskQuery {
        states: vec![TaskState::Succeeded, TaskState::Failed],
        ..acme.clone()
    };
    assert_eq!(ids(&store.list_tasks(&done).await.unwrap()), vec![a1.id]);
    let newest = TaskQuery {
        newest_first: true,
        limit: 3,
        ..query()
    };
    assert_eq!(
        ids(&store.list_tasks(&newest).await.unwrap()),
        vec![anon.id, b1.id, a2.id]
    );
}

/// Walks every page of `q`, inserting a task (created "now", and one in
/// the past that sorts before the cursor) between pages.
async fn walk(store: &dyn Store, mut q: TaskQuery, n: &mut u64) -> Vec<Uuid> {
    let mut seen = Vec::new();
    loop {
        let page = store.list_tasks(&q).await.unwrap();
        assert!(page.len() <= q.limit);
        seen.extend(ids(&page));
        let Some(last) = page.last() else { break };
        q.after = Some(Cursor::of(last));
        *n += 1;
        insert_new(store, &task("s", None, at(1_000 + *n))).await;
        insert_new(store, &task("s", None, at(0))).await;
        if page.len() < q.limit {
            break;
        }
    }
    seen
}

pub(in crate::store) async fn list_tasks_pages_are_stable_under_inserts(store: &dyn Store) {
    // Equal creation times too: the ID breaks the tie.
    let mut before = Vec::new();
    for i in 0..25 {
        let t = task("s", None, at(10 + i / 3));
        insert_new(store, &t).await;
        before.push(t.id);
    }
    let mut n = 0;
    for newest_first in [false, true] {
        let q = TaskQuery {
            session: Some("s".into()),
            newest_first,
            limit: 4,
            ..query()
        };
        let seen = walk(store, q, &mut n).await;
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no task twice");
        for id in &before {
            assert!(unique.contains(id), "no task that was there is missed");
        }
    }
}

pub(in crate::store) async fn count_tasks_counts_every_match_not_a_page(store: &dyn Store) {
    assert_eq!(store.count_tasks(&query()).await.unwrap(), 0);
    let mut acme = Vec::new();
    for i in 0..7 {
        let t = task("acme\u{1f}s1", None, at(10 + i));
        insert_new(store, &t).await;
        acme.push(t);
    }
    let mut other = task("acme\u{1f}s2", None, at(30));
    other.tool = "acme\u{1f}fetch".into();
    insert_new(store, &other).await;
    insert_new(store, &task("beta\u{1f}s1", None, at(31))).await;
    store.finish_task(&succeed(&acme[0], at(40))).await.unwrap();
    store.finish_task(&succeed(&acme[1], at(41))).await.unwrap();

    let tenant = TaskQuery {
        key_prefix: Some("acme\u{1f}".into()),
        limit: 3,
        ..query()
    };
    let page = store.list_tasks(&tenant).await.unwrap();
    assert_eq!(page.len(), 3, "a page of three");
    assert_eq!(store.count_tasks(&tenant).await.unwrap(), 8, "every match");
    let later = TaskQuery {
        after: Some(Cursor::of(page.last().unwrap())),
        ..tenant.clone()
    };
    assert_eq!(
        store.count_tasks(&later).await.unwrap(),
        8,
        "the cursor does not change the count"
    );
    let cases = [
        (None, None, vec![], 9),
        (Some("acme\u{1f}s1"), None, vec![], 7),
        (None, Some("acme\u{1f}fetch"), vec![], 1),
        (None, None, vec![TaskState::Succeeded], 2),
        (Some("acme\u{1f}s1"), None, vec![TaskState::Queued], 5),
        (Some("acme\u{1f}s3"), None, vec![], 0),
    ];
    for (session, tool, states, want) in cases {
        let q = TaskQuery {
            session: session.map(Into::into),
            tool: tool.map(Into::into),
            states: states.clone(),
            newest_first: true,
            limit: 1,
            ..query()
        };
        assert_eq!(
            store.count_tasks(&q).await.unwrap(),
            want,
            "{session:?} {tool:?} {states:?}"
        );
    }
}

/// A fallback run answers its parked call and never takes a completion of
/// its own: listings and counts show the call only, unless asked for runs.
pub(in crate::store) async fn fallback_runs_are_listed_only_when_asked(store: &dyn Store) {
    use crate::model::{FallbackFor, Primary};
    let call = task("s1", None, at(1));
    insert_new(store, &call).await;
    store.park(call.id).await.unwrap();
    let mut run = task("s1", None, at(2));
    run.tool = "backup".into();
    run.call.fallback_for = Some(Box::new(FallbackFor {
        parent: call.id,
        primary: Primary {
            state: TaskState::Failed,
            code: "tool_error".into(),
            message: r#"a "run_for": lookalike"#.into(),
            attempts: 1,
        },
    }));
    insert_new(store, &run).await;
    // A call whose own fallback policy is a tool named like the marker.
    let mut other = task("s1", None, at(3));
    other.call.fallback = Some(crate::model::Fallback::Tool("run_for".into()));
    insert_new(store, &other).await;
    let pending = TaskQuery {
        session: Some("s1".into()),
        states: vec![TaskState::Queued, TaskState::Running],
        ..query()
    };
    assert_eq!(
        ids(&store.list_tasks(&pending).await.unwrap()),
        [call.id, other.id]
    );
    assert_eq!(store.count_tasks(&pending).await.unwrap(), 2);
    assert_eq!(store.count_tasks(&query()).await.unwrap(), 2);
    let with_runs = TaskQuery {
        fallback_runs: true,
        ..pending
    };
    assert_eq!(
        ids(&store.list_tasks(&with_runs).await.unwrap()),
        [call.id, run.id, other.id]
    );
    assert_eq!(store.count_tasks(&with_runs).await.unwrap(), 3);
}

/// A task whose worker left (or that a restart found running) is queued
/// again: a store that keeps no shared queue lists, filters and counts it
/// QUEUED from the requeue record's [`Durable`](crate::store::Durable) on;
/// a shared store keeps it held by this server. A stale requeue (the task
/// moved on) changes nothing, and the next attempt's dispatch applies.
pub(in crate::store) async fn a_requeue_lists_the_task_queued(store: &dyn Store) {
    let shared = store.shared().is_some();
    let t = task("s1", None, at(1));
    let done = task("s1", None, at(2));
    for t in [&t, &done] {
        insert_new(store, t).await;
    }
    let wait = |d: crate::store::Durable| async move { d.wait().await.expect("durable") };
    wait(store.record_dispatch(t.id, 1, at(3))).await;
    wait(store.record_dispatch(done.id, 1, at(3))).await;
    let mut finish = succeed(&done, at(4));
    finish.attempts = 1;
    store.finish_task(&finish).await.unwrap();
    wait(store.record_requeue(t.id, 1)).await;
    wait(store.record_requeue(done.id, 1)).await;

    let state = |s| TaskQuery {
        states: vec![s],
        ..query()
    };
    let got = store.get_task(t.id).await.unwrap().unwrap();
    let (listed, other) = if shared {
        (TaskState::Running, TaskState::Queued)
    } else {
        (TaskState::Queued, TaskState::Running)
    };
    assert_eq!(got.state, listed);
    assert_eq!((got.attempts, got.started_at), (1, Some(at(3))), "kept");
    assert_eq!(
        ids(&store.list_tasks(&state(listed)).await.unwrap()),
        [t.id]
    );
    assert_eq!(store.count_tasks(&state(listed)).await.unwrap(), 1);
    assert!(store.list_tasks(&state(other)).await.unwrap().is_empty());
    assert_eq!(store.count_tasks(&state(other)).await.unwrap(), 0);
    let unfinished = store.unfinished_tasks().await.unwrap();
    assert_eq!(ids(&unfinished), [t.id], "still unfinished");
    let finished = store.get_task(done.id).await.unwrap().unwrap();
    assert_eq!(
        finished.state,
        TaskState::Succeeded,
        "a finished task stays"
    );

    // The next attempt runs; a late requeue of the first changes nothing.
    wait(store.record_dispatch(t.id, 2, at(5))).await;
    wait(store.record_requeue(t.id, 1)).await;
    let got = store.get_task(t.id).await.unwrap().unwrap();
    assert_eq!((got.state, got.attempts), (TaskState::Running, 2));
    assert_eq!(
        ids(&store.list_tasks(&state(TaskState::Running)).await.unwrap()),
        [t.id]
    );
}
