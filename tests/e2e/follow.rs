//! `Client::follow_completions` and `Client::follow_session_events`: the
//! reconnecting completions and session-events streams with their
//! reconnections observable (the loss, each retry, the return).
use std::time::Duration;

use errand_client::{Client, FollowEvent, FollowOptions, endpoint, pb};
use errand_tests::{
    raw::{RawWorker, connect_worker, tool},
    *,
};
use tokio_stream::StreamExt;

/// Short waits, so that a test sees several retries while a server is down.
fn quick() -> FollowOptions {
    FollowOptions {
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..FollowOptions::default()
    }
}

async fn next_event(
    stream: &mut (impl tokio_stream::Stream<Item = Result<FollowEvent, errand_client::Error>> + Unpin),
) -> FollowEvent {
    within("a follow event", stream.next())
        .await
        .expect("the follow ended")
        .expect("the follow failed")
}

/// Across a server crash and restart, the follower reports the loss, each
/// retry (attempts counting up, waits doubling to the maximum) and the
/// return after the last seq it delivered; completions made while it was
/// away arrive once, and none is repeated.
#[tokio::test]
async fn following_reports_the_loss_each_retry_and_the_return_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["job"], 4).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let args = format!(r#"{{"i":{i}}}"#);
        ids.push(client.submit("f", "job", &args).await.unwrap().task_id);
    }
    let mut jobs = vec![
        worker.next().await,
        worker.next().await,
        worker.next().await,
    ];
    jobs.sort_by_key(|j| j.args()["i"].as_u64());
    // The third stays running across the crash and finishes after it.
    let _running = jobs.pop().unwrap();
    for job in jobs {
        job.succeed("1");
    }

    let mut follow = client.follow_completions("f", 0, quick());
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        match next_event(&mut follow).await {
            FollowEvent::Completion(c) => seqs.push(c.seq),
            other => panic!("before the crash: {other:?}"),
        }
    }

    server.kill().await;
    let FollowEvent::Lost { .. } = next_event(&mut follow).await else {
        panic!("no loss reported first")
    };
    // Retries count up from 1 with doubling waits, until a second one has
    // failed to reach the server.
    let mut expected_wait = Duration::from_millis(50);
    for attempt in 1..=2 {
        match next_event(&mut follow).await {
            FollowEvent::Retrying {
                attempt: a, wait, ..
            } => assert_eq!((a, wait), (attempt, expected_wait)),
            other => panic!("attempt {attempt}: {other:?}"),
        }
        expected_wait *= 2;
    }

    let addr = server.addr.clone();
    let args = vec!["--data-dir".into(), dir.path().display().to_string()];
    server = Server::start_on(&addr, args).await;
    let mut attempts = 2;
    loop {
        match next_event(&mut follow).await {
            FollowEvent::Retrying { attempt, wait, .. } => {
                attempts += 1;
                assert_eq!(attempt, attempts);
                assert!(wait <= Duration::from_millis(400), "{wait:?}");
            }
            FollowEvent::Reconnected { after_seq } => {
                assert_eq!(after_seq, 2, "it resumes after the last seq delivered");
                break;
            }
            other => panic!("while the server was down: {other:?}"),
        }
    }

    // The running task comes back to the worker (which reconnects by itself)
    // and finishes; then one more call.
    worker.next().await.succeed("2");
    let client = server.client().await;
    ids.push(client.submit("f", "job", "{}").await.unwrap().task_id);
    worker.next().await.succeed("3");
    let mut delivered = Vec::new();
    while seqs.len() < 4 {
        match next_event(&mut follow).await {
            FollowEvent::Completion(c) => {
                seqs.push(c.seq);
                delivered.push(c.task_id);
            }
            other => panic!("after the return: {other:?}"),
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4], "nothing missed, nothing repeated");
    assert_eq!(delivered, ids[2..]);
}

/// Nothing listening: with `first_failure_ends` the first failure is the
/// stream's one item; without, it retries (a retry, never a loss, since no
/// stream was open).
#[tokio::test]
async fn a_server_never_reached_ends_the_follow_or_is_retried_as_asked() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let client = Client::from_channel(endpoint(&addr).unwrap().connect_lazy());
    let ends = FollowOptions {
        first_failure_ends: true,
        ..quick()
    };
    let mut follow = client.follow_completions("s", 0, ends);
    let first = within("the failure", follow.next()).await;
    let Some(Err(e)) = first else {
        panic!("{first:?}")
    };
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(within("the end", follow.next()).await.is_none());

    let mut follow = client.follow_completions("s", 0, quick());
    for attempt in 1..=3 {
        match next_event(&mut follow).await {
            FollowEvent::Retrying {
                attempt: a, cause, ..
            } => {
                assert_eq!(a, attempt);
                assert!(cause.to_string().starts_with("UNAVAILABLE"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The plain stream is the same loop, silent: still waiting.
    let mut plain = client.completions("s", 0);
    let quiet = tokio::time::timeout(Duration::from_millis(300), plain.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

/// A progress report of `task_id` saying `message`.
async fn report(worker: &RawWorker, task_id: &str, message: &str) {
    let progress = pb::Progress {
        task_id: task_id.into(),
        progress: 1.0,
        total: 2.0,
        message: message.into(),
        ..Default::default()
    };
    let kind = pb::worker_message::Kind::Progress(progress);
    worker
        .tx
        .send(pb::WorkerMessage { kind: Some(kind) })
        .await
        .unwrap();
}

/// The session's events with progress, across a server crash and restart:
/// the same loss, retries and return as completions, resuming after the
/// last completion's seq; progress arrives before and after (reported
/// again by the worker that gets the task back); completions made while it
/// was away arrive once, and none is repeated.
#[tokio::test]
async fn following_session_events_brings_progress_and_completions_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--progress-interval", "50ms"];
    let mut server = Server::start_durable(dir.path(), &flags).await;
    let client = server.client().await;
    let mut worker = connect_worker(&server.addr, None, vec![tool("job", "")])
        .await
        .unwrap();
    let first = client.submit("p", "job", "{}").await.unwrap().task_id;
    assert_eq!(worker.assignment().await.task_id, first);
    worker.send_result(&first, "1", 0).await;
    // The second stays running across the crash and finishes after it.
    let second = client.submit("p", "job", "{}").await.unwrap().task_id;
    assert_eq!(worker.assignment().await.task_id, second);

    let request = pb::SessionEventsRequest {
        session_id: "p".into(),
        after_seq: 0,
        include_progress: true,
        results_by_reference: false,
    };
    let mut follow = client.follow_session_events(request, quick());
    let mut seqs = Vec::new();
    match next_event(&mut follow).await {
        FollowEvent::Completion(c) => seqs.push(c.seq),
        other => panic!("the replay: {other:?}"),
    }
    report(&worker, &second, "before the crash").await;
    match next_event(&mut follow).await {
        FollowEvent::Progress(p) => {
            assert_eq!(
                (p.task_id, p.message),
                (second.clone(), "before the crash".into())
            )
        }
        other => panic!("the progress: {other:?}"),
    }

    server.kill().await;
    drop(worker);
    let FollowEvent::Lost { .. } = next_event(&mut follow).await else {
        panic!("no loss reported first")
    };
    let FollowEvent::Retrying { attempt: 1, .. } = next_event(&mut follow).await else {
        panic!("no first retry")
    };
    let addr = server.addr.clone();
    let mut args = vec!["--data-dir".into(), dir.path().display().to_string()];
    args.extend(flags.map(String::from));
    server = Server::start_on(&addr, args).await;
    loop {
        match next_event(&mut follow).await {
            FollowEvent::Retrying { .. } => {}
            FollowEvent::Reconnected { after_seq } => {
                assert_eq!(after_seq, 1, "it resumes after the last completion's seq");
                break;
            }
            other => panic!("while the server was down: {other:?}"),
        }
    }

    // The running task comes back to a new worker, which reports on it and
    // finishes it; then one more call.
    let mut worker = connect_worker(&server.addr, None, vec![tool("job", "")])
        .await
        .unwrap();
    assert_eq!(worker.assignment().await.task_id, second);
    report(&worker, &second, "after the restart").await;
    let mut progress = Vec::new();
    let (mut delivered, mut ids) = (Vec::new(), vec![second.clone()]);
    let client = server.client().await;
    while seqs.len() < 3 {
        match next_event(&mut follow).await {
            FollowEvent::Progress(p) => {
                assert!(delivered.is_empty(), "progress after its completion");
                progress.push((p.task_id, p.message));
                worker.send_result(&second, "2", 0).await;
            }
            FollowEvent::Completion(c) => {
                seqs.push(c.seq);
                delivered.push(c.task_id);
                if delivered.len() == 1 {
                    let third = client.submit("p", "job", "{}").await.unwrap().task_id;
                    assert_eq!(worker.assignment().await.task_id, third);
                    worker.send_result(&third, "3", 0).await;
                    ids.push(third);
                }
            }
            other => panic!("after the return: {other:?}"),
        }
    }
    assert_eq!(progress, [(second.clone(), "after the restart".into())]);
    assert_eq!(seqs, [1, 2, 3], "nothing missed, nothing repeated");
    assert_eq!(delivered, ids);
}
