//! `finish_held_task`: the same completions as `finish_task`, whatever the
//! caller's copy of the task says.
use std::time::Duration;

use super::{assert_no_completions, at, insert_new, seqs, succeed, task};
use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState, codes};
use crate::store::Store;

/// Finishing with the task at hand gives what reading it back would: the
/// completion's head, seqs with no gap, one finish per task; a task never
/// stored, or a `task` that is not the finished one (a fallback run ending
/// its call), is not taken at its word.
pub(super) async fn finish_held_task_is_finish_task(store: &dyn Store) {
    let first = task("s1", None, at(1));
    let second = task("s1", None, at(2));
    insert_new(store, &first).await;
    insert_new(store, &second).await;

    let c = completion(store, &first, &succeed(&first, at(4))).await;
    assert_eq!((c.seq, c.task_id), (1, first.id));
    assert_eq!((&*c.session, &*c.tool), ("s1", "search"));
    assert_eq!(c.arguments, first.arguments);
    assert_eq!(c.elapsed, Duration::from_secs(3));
    assert_eq!(c.completed_at, at(4));

    // A second ending changes nothing and takes no seq: the next is 2.
    let late = Finish {
        state: TaskState::Failed,
        outcome: Outcome::error(codes::TOOL_ERROR, "late"),
        ..succeed(&first, at(5))
    };
    assert!(
        store
            .finish_held_task(&first, &late)
            .await
            .unwrap()
            .is_none()
    );
    let got = store.get_task(first.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.finished_at),
        (TaskState::Succeeded, Some(at(4)))
    );

    // Held but never stored: nothing is finished, no seq is taken.
    let ghost = task("s1", None, at(3));
    let ghostly = succeed(&ghost, at(6));
    assert!(
        store
            .finish_held_task(&ghost, &ghostly)
            .await
            .unwrap()
            .is_none()
    );

    // The held task is another one than the finish's: the finished task's
    // own head is in its completion.
    let other = TaskRecord {
        session: "elsewhere".into(),
        tool: "fetch".into(),
        arguments: r#"{"url":"x"}"#.into(),
        ..task("elsewhere", None, at(0))
    };
    let c = completion(store, &other, &succeed(&second, at(7))).await;
    assert_eq!((c.seq, c.task_id), (2, second.id));
    assert_eq!((&*c.session, &*c.tool), ("s1", "search"));
    assert_eq!(c.arguments, second.arguments);
    assert_eq!(c.elapsed, Duration::from_secs(5));

    let stored = store.completions_after("s1", 0, 10).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2]);
    assert_no_completions(store, "elsewhere").await;
}

/// The completion `finish_held_task(held, finish)` must give.
async fn completion(store: &dyn Store, held: &TaskRecord, finish: &Finish) -> CompletionRecord {
    (store.finish_held_task(held, finish).await)
        .unwrap()
        .expect("a completion")
}
