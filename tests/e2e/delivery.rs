//! Submitting, and receiving completions: out of order, resumable, per session.
use errand_client::pb;
use errand_tests::*;

#[tokio::test]
async fn submit_answers_at_once_with_an_ack_for_the_model() {
    let server = Server::start(&[]).await;
    let _worker = server.gate_worker(&["research_topic"], 1).await;
    let client = server.client().await;
    let ack = client
        .submit("s1", "research_topic", r#"{"topic":"tides"}"#)
        .await
        .unwrap();
    // The worker holds the task: the submit did not wait for it.
    let task = ack.task.as_ref().unwrap();
    assert_eq!(task.task_id, ack.task_id);
    assert_eq!(status_of(task.status), pb::TaskStatus::Queued);
    for needle in [
        ack.task_id.as_str(),
        "research_topic",
        r#"{"topic":"tides"}"#,
        "fabricate",
        "later",
    ] {
        assert!(
            ack.ack.contains(needle),
            "ack lacks {needle:?}: {}",
            ack.ack
        );
    }
    let tools = client.list_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert!(tools[0].description.starts_with("test tool research_topic"));
    assert!(
        tools[0].description.contains("asynchronous"),
        "{}",
        tools[0].description
    );
    assert_eq!(tools[0].workers, 1);
}

#[tokio::test]
async fn results_arrive_in_completion_order_keyed_by_task_id() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["slow", "fast"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s1", 0);
    let slow = client.submit("s1", "slow", r#"{"n":1}"#).await.unwrap();
    let fast = client.submit("s1", "fast", r#"{"n":2}"#).await.unwrap();
    let (a, b) = (worker.next().await, worker.next().await);
    let (slow_job, fast_job) = if a.task.tool == "slow" {
        (a, b)
    } else {
        (b, a)
    };
    fast_job.succeed(r#"{"answer":"fast"}"#);
    let first = take_completions(&mut stream, 1).await.remove(0);
    slow_job.succeed(r#"{"answer":"slow"}"#);
    let second = take_completions(&mut stream, 1).await.remove(0);

    assert_eq!(
        (first.seq, first.task_id.as_str()),
        (1, fast.task_id.as_str())
    );
    assert_eq!(
        (second.seq, second.task_id.as_str()),
        (2, slow.task_id.as_str())
    );
    assert_eq!(first.tool, "fast");
    assert_eq!(first.arguments_json, r#"{"n":2}"#);
    assert_eq!(status_of(first.status), pb::TaskStatus::Succeeded);
    assert_eq!(
        first.outcome,
        Some(pb::completion::Outcome::ResultJson(
            r#"{"answer":"fast"}"#.into()
        ))
    );
    assert!(
        first.message.contains(&fast.task_id) && first.message.contains("fast"),
        "{}",
        first.message
    );
    assert_eq!(first.attempts, 1);
    let done = client.get_task(&slow.task_id).await.unwrap();
    assert_eq!(status_of(done.status), pb::TaskStatus::Succeeded);
    assert_eq!(done.seq, 2);
}

#[tokio::test]
async fn resume_after_seq_has_no_gap_and_no_duplicate() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 8).await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            client
                .submit("s", "t", &format!(r#"{{"i":{i}}}"#))
                .await
                .unwrap()
                .task_id,
        );
    }
    let mut first = client.completions("s", 0);
    for _ in 0..5 {
        worker.next().await.succeed("null");
    }
    let got = take_completions(&mut first, 2).await;
    assert_eq!(seqs(&got), [1, 2]);
    drop(first);

    // Reconnect after seq 2: exactly 3, 4, 5, then live ones.
    let mut resumed = client.completions("s", 2);
    let replayed = take_completions(&mut resumed, 3).await;
    assert_eq!(seqs(&replayed), [3, 4, 5]);
    client.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("null");
    let live = take_completions(&mut resumed, 1).await;
    assert_eq!(seqs(&live), [6]);
    let mut all: Vec<_> = got
        .iter()
        .chain(&replayed)
        .map(|c| c.task_id.clone())
        .collect();
    all.sort();
    ids.sort();
    assert_eq!(
        all, ids,
        "each task completed exactly once across the reconnect"
    );
}

#[tokio::test]
async fn sessions_never_see_each_others_completions() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 8).await;
    let client = server.client().await;
    let mut a = client.completions("alice", 0);
    let mut b = client.completions("bob", 0);
    let ta = client.submit("alice", "t", "{}").await.unwrap().task_id;
    let tb = client.submit("bob", "t", "{}").await.unwrap().task_id;
    for _ in 0..2 {
        worker.next().await.succeed("1");
    }
    let ca = take_completions(&mut a, 1).await.remove(0);
    let cb = take_completions(&mut b, 1).await.remove(0);
    assert_eq!(
        (ca.task_id, ca.seq, ca.session_id.as_str()),
        (ta, 1, "alice")
    );
    assert_eq!((cb.task_id, cb.seq, cb.session_id.as_str()), (tb, 1, "bob"));
    // Nothing else is pending on either stream: a third task in alice's
    // session shows up next on alice's stream, and bob's stays silent up to
    // his own next completion.
    let ta2 = client.submit("alice", "t", "{}").await.unwrap().task_id;
    worker.next().await.succeed("2");
    assert_eq!(take_completions(&mut a, 1).await[0].task_id, ta2);
    let tb2 = client.submit("bob", "t", "{}").await.unwrap().task_id;
    worker.next().await.succeed("3");
    let next_b = take_completions(&mut b, 1).await.remove(0);
    assert_eq!((next_b.task_id, next_b.seq), (tb2, 2));
}

#[tokio::test]
async fn several_streams_on_one_session_each_get_every_completion() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 8).await;
    let client = server.client().await;
    let mut streams: Vec<_> = (0..3).map(|_| client.completions("s", 0)).collect();
    for _ in 0..4 {
        client.submit("s", "t", "{}").await.unwrap();
    }
    for _ in 0..4 {
        worker.next().await.succeed("true");
    }
    for stream in &mut streams {
        assert_eq!(seqs(&take_completions(stream, 4).await), [1, 2, 3, 4]);
    }
}

#[tokio::test]
async fn acknowledged_completions_are_released() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 8).await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(client.submit("s", "t", "{}").await.unwrap().task_id);
        worker.next().await.succeed("0");
    }
    let mut stream = client.completions("s", 0);
    take_completions(&mut stream, 3).await;
    assert_eq!(client.ack_completions("s", 2).await.unwrap(), 2);
    let mut replay = client.completions("s", 0);
    assert_eq!(seqs(&take_completions(&mut replay, 1).await), [3]);
    // The first two tasks went with their completions.
    let gone = client.get_task(&ids[0]).await;
    assert_eq!(code(gone), tonic::Code::NotFound);
    assert!(client.get_task(&ids[2]).await.is_ok());
    // Seqs continue; they never restart after an acknowledgement.
    client.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("0");
    assert_eq!(seqs(&take_completions(&mut replay, 1).await), [4]);
}

/// Opens `Completions` and `SessionEvents` of `session` after `after_seq`
/// on `server`: each stream's status when it is refused, `None` when it
/// opens.
async fn open_after(server: &Server, session: &str, after_seq: u64) -> [Option<tonic::Status>; 2] {
    let mut raw = server.raw();
    let completions = raw
        .completions(pb::CompletionsRequest {
            session_id: session.into(),
            after_seq,
        })
        .await
        .err();
    let events = raw
        .session_events(pb::SessionEventsRequest {
            session_id: session.into(),
            after_seq,
            ..Default::default()
        })
        .await
        .err();
    [completions, events]
}

/// A seq the session never assigned (a typo, another session's seq) is
/// refused as AckCompletions refuses one: OUT_OF_RANGE naming the value and
/// the last seq, instead of a stream that waits silently and then skips
/// real completions numbered up to it.
#[tokio::test]
async fn after_seq_past_the_last_seq_is_out_of_range() {
    let server = Server::start(&[]).await;
    // A session with no completion yet: 0 opens, anything more is past the end.
    for opened in open_after(&server, "s", 0).await {
        assert!(opened.is_none(), "{opened:?}");
    }
    for refused in open_after(&server, "s", 1).await {
        let status = refused.expect("after_seq 1 on an empty session is refused");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert_eq!(
            status.message(),
            "after_seq 1 is beyond session \"s\"'s last seq, 0: follow from a seq you have \
             received (0: everything retained)"
        );
    }
    let mut worker = server.gate_worker(&["t"], 4).await;
    let client = server.client().await;
    for _ in 0..2 {
        client.submit("s", "t", "{}").await.unwrap();
        worker.next().await.succeed("null");
    }
    take_completions(&mut client.completions("s", 0), 2).await;
    for refused in open_after(&server, "s", u64::MAX).await {
        let status = refused.expect("a seq past the end is refused");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(
            status
                .message()
                .starts_with(&format!("after_seq {} is beyond", u64::MAX)),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("last seq, 2"),
            "{}",
            status.message()
        );
    }
    // At the last seq both open and wait for the next completion.
    for opened in open_after(&server, "s", 2).await {
        assert!(opened.is_none(), "{opened:?}");
    }
    let mut resumed = client.completions("s", 2);
    client.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("null");
    assert_eq!(seqs(&take_completions(&mut resumed, 1).await), [3]);
    // Another session's seq means nothing here.
    let refused = open_after(&server, "other", 3).await;
    assert!(
        refused.iter().all(|r| r
            .as_ref()
            .is_some_and(|s| s.code() == tonic::Code::OutOfRange)),
        "{refused:?}"
    );
}

/// On a shared database the last seq is the store's, not a server's: a
/// stream opened on a server that delivered none of the session's
/// completions resumes at the seq another server assigned, and is refused
/// just past it.
#[tokio::test]
async fn after_seq_is_checked_against_the_shared_store_on_postgres() {
    let Some(cluster) = pg::cluster() else {
        assert!(
            !on_postgres(),
            "ERRAND_TEST_STORE=postgres needs PostgreSQL"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED after_seq_is_checked_against_the_shared_store_on_postgres: PostgreSQL's \
             binaries are not installed"
        );
        return;
    };
    let url = cluster.create_database().await;
    let one = Server::start_postgres(&url, &[]).await;
    let two = Server::start_postgres(&url, &[]).await;
    let mut worker = one.gate_worker(&["t"], 1).await;
    let c1 = one.client().await;
    for _ in 0..3 {
        c1.submit("x", "t", "{}").await.unwrap();
        worker.next().await.succeed("null");
    }
    take_completions(&mut c1.completions("x", 0), 3).await;
    for opened in open_after(&two, "x", 3).await {
        assert!(opened.is_none(), "{opened:?}");
    }
    for refused in open_after(&two, "x", 4).await {
        let status = refused.expect("after_seq 4 is past the end");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(
            status.message().contains("last seq, 3"),
            "{}",
            status.message()
        );
    }
    let ack = two.client().await.ack_completions("x", 4).await;
    assert_eq!(code(ack), tonic::Code::OutOfRange);
}
