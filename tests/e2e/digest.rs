//! What the session is waiting for (issue 17): `PendingDigest` lists the
//! pending calls and counts unacknowledged results, with a text for the
//! model that is empty once all is done and acknowledged; acknowledgement
//! is monotonic and stored, and replays leave acknowledged completions out.
use errand_client::pb;
use errand_tests::{
    raw::{connect_worker, tool},
    *,
};
use tokio_stream::StreamExt;
use tonic::Code;

async fn digest(server: &Server, max_bytes: u64) -> pb::PendingDigestResponse {
    server
        .raw()
        .pending_digest(pb::PendingDigestRequest {
            session_id: "s".into(),
            max_bytes,
        })
        .await
        .expect("PendingDigest")
        .into_inner()
}

async fn ack(server: &Server, up_to_seq: u64) -> Result<pb::AckCompletionsResponse, tonic::Status> {
    server
        .raw()
        .ack_completions(pb::AckCompletionsRequest {
            session_id: "s".into(),
            up_to_seq,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn the_digest_lists_exactly_the_pending_calls_and_is_empty_once_all_is_done_and_acked() {
    let server = Server::start(&[]).await;
    let empty = digest(&server, 0).await;
    assert!(
        empty.pending.is_empty() && empty.text.is_empty(),
        "{empty:?}"
    );
    let mut worker = connect_worker(&server.addr, None, vec![tool("crawl", "")])
        .await
        .unwrap();
    let client = server.client().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let args = format!(r#"{{"site":"s{n}"}}"#);
        ids.push(client.submit("s", "crawl", &args).await.unwrap().task_id);
    }
    // Another session's task is not this session's business.
    client.submit("other", "crawl", "{}").await.unwrap();
    let running = worker.assignment().await;
    assert_eq!(running.task_id, ids[0]);
    let progress = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Progress(pb::Progress {
            task_id: ids[0].clone(),
            progress: 2.0,
            total: 4.0,
            message: "page 2".into(),
            ..Default::default()
        })),
    };
    worker.tx.send(progress).await.unwrap();
    // The report is accepted once GetTask shows it.
    loop {
        if client.get_task(&ids[0]).await.unwrap().progress.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let d = digest(&server, 0).await;
    let listed: Vec<&str> = d.pending.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(listed, ids, "exactly the pending calls, oldest first");
    assert_eq!((d.pending_count, d.unacknowledged, d.last_seq), (3, 0, 0));
    assert_eq!(status_of(d.pending[0].status), pb::TaskStatus::Running);
    assert_eq!(
        d.pending[0].progress.as_ref().map(|p| p.progress),
        Some(2.0)
    );
    for id in &ids {
        assert!(d.text.contains(id.as_str()), "{}", d.text);
    }
    assert!(d.text.contains("(50%): page 2"), "{}", d.text);
    assert!(
        d.text.contains(r#"`crawl` {"site":"s2"}: queued for"#),
        "{}",
        d.text
    );
    // Bounded by max_bytes: tasks that do not fit are counted (here none
    // fits after the header).
    let small = digest(&server, 300).await;
    assert!(
        small.text.len() <= 300 && small.text.ends_with("- (3 not listed here.)\n"),
        "{}",
        small.text
    );

    // Four tasks in all (one of another session), one at a time.
    let mut next = running;
    for n in 0..4 {
        worker.send_result(&next.task_id, "1", 0).await;
        if n < 3 {
            next = worker.assignment().await;
        }
    }
    let mut stream = client.completions("s", 0);
    take_completions(&mut stream, 3).await;
    let d = digest(&server, 0).await;
    assert!(d.pending.is_empty() && d.pending_count == 0);
    assert_eq!((d.last_seq, d.acked_seq, d.unacknowledged), (3, 0, 3));
    assert_eq!(
        d.text,
        "No tool calls are pending. 3 results of earlier calls have arrived and have not yet been acknowledged.\n"
    );

    // Acknowledgement is monotonic and never beyond the last seq.
    let a = ack(&server, 2).await.unwrap();
    assert_eq!((a.removed, a.acked_seq), (2, 2));
    let a = ack(&server, 1).await.unwrap();
    assert_eq!(
        (a.removed, a.acked_seq),
        (0, 2),
        "a lower ack changes nothing"
    );
    let beyond = ack(&server, 4).await.unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");
    assert!(
        beyond.message().contains("last seq, 3"),
        "{}",
        beyond.message()
    );
    // A replay after the ack omits the acknowledged completions.
    let mut events = server
        .raw()
        .session_events(pb::SessionEventsRequest {
            session_id: "s".into(),
            after_seq: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = within("a replayed event", events.next())
        .await
        .unwrap()
        .unwrap();
    match first.event {
        Some(pb::session_event::Event::Completion(c)) => assert_eq!(c.seq, 3),
        other => panic!("a completion, got {other:?}"),
    }
    let d = digest(&server, 0).await;
    assert_eq!((d.acked_seq, d.unacknowledged), (2, 1));
    assert!(
        d.text.starts_with("No tool calls are pending. 1 result"),
        "{}",
        d.text
    );
    ack(&server, 3).await.unwrap();
    let d = digest(&server, 0).await;
    assert_eq!((d.acked_seq, d.unacknowledged, d.pending.len()), (3, 0, 0));
    assert_eq!(
        d.text, "",
        "nothing to say once all is done and acknowledged"
    );
}

#[tokio::test]
async fn a_digest_larger_than_the_message_limit_is_refused() {
    let server = Server::start(&[]).await;
    let err = server
        .raw()
        .pending_digest(pb::PendingDigestRequest {
            session_id: "s".into(),
            max_bytes: u64::MAX,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("max_bytes"), "{}", err.message());
    // Too small to say anything whole: "No tool calls are pending. ..." cut
    // to 10 bytes read "No tool", another message.
    let err = server
        .raw()
        .pending_digest(pb::PendingDigestRequest {
            session_id: "s".into(),
            max_bytes: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("max_bytes 10 is below 256"),
        "{}",
        err.message()
    );
    let err = ack(&server, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "no completion yet: {err:?}");
}

#[tokio::test]
async fn the_pending_count_counts_past_the_listed_hundred() {
    // On PostgreSQL most of these wait in the shared queue, not in this
    // server's live state: the count comes from the store.
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["crawl"], 1).await;
    let client = server.client().await;
    for n in 0..150 {
        let args = format!(r#"{{"site":"s{n}"}}"#);
        client.submit("s", "crawl", &args).await.unwrap();
    }
    let held = worker.next().await;
    let d = digest(&server, 0).await;
    assert_eq!(d.pending.len(), 100, "the listing stops at 100");
    assert_eq!(d.pending_count, 150);
    held.succeed("{}");
}
