//! Streams opened with a token end when the token expires (issue 16 item 7).
use errand_client::pb;
use errand_tests::{raw::*, *};
use tonic::Code;

#[tokio::test]
async fn streams_end_at_their_tokens_expiry() {
    let tokens = Tokens::new();
    // Seconds from now: long enough to start the server and open both
    // streams on a loaded machine, short enough to wait for.
    let agent = tokens
        .add(&["--role", "agent", "--tenant", "t", "--expires", "5s"])
        .await;
    let worker = tokens
        .add(&["--role", "worker", "--tenant", "t", "--expires", "5s"])
        .await;
    let lasting = tokens.add(&["--role", "agent", "--tenant", "t"]).await;
    let server = Server::start(&strs(&tokens.flag())).await;

    let mut w = connect_worker(&server.addr, Some(&worker), vec![tool("search", "")])
        .await
        .expect("the worker connects before its token expires");
    let mut raw = server.raw_as(Some(&agent));
    let mut completions = raw
        .completions(pb::CompletionsRequest {
            session_id: "s".into(),
            after_seq: 0,
        })
        .await
        .expect("the stream opens before the token expires")
        .into_inner();
    // Both streams work while the token is valid: a submit by a token that
    // does not expire reaches the worker, its result reaches the stream.
    let other = server.client_as(&lasting).await;
    other.submit("s", "search", "{}").await.unwrap();
    let assignment = match within("the assignment", w.commands.message()).await {
        Ok(Some(pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Assignment(a)),
        })) => a,
        other => panic!("expected an assignment, got {other:?}"),
    };
    w.tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            task_id: assignment.task_id.clone(),
            attempt: assignment.attempt,
            outcome: Some(pb::task_result::Outcome::ResultJson("1".into())),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let first = within("the completion", completions.message()).await;
    assert_eq!(first.unwrap().unwrap().task_id, assignment.task_id);

    // Then each ends at the expiry, whatever it was doing.
    let ended = within("the worker stream's end", w.commands.message())
        .await
        .expect_err("the worker stream ends with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("token expired"), "{ended:?}");
    let ended = within("the completions stream's end", completions.message())
        .await
        .expect_err("the completions stream ends with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("token expired"), "{ended:?}");
    // And the token no longer opens anything.
    let again = connect_worker(&server.addr, Some(&worker), vec![tool("search", "")]).await;
    assert_eq!(again.err().map(|s| s.code()), Some(Code::Unauthenticated));
}
