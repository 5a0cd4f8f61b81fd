//! A failure's message (`ToolError.message`) is bounded by its own limit,
//! 4 KiB, whatever the call's result budget: a worker's error, a
//! fallback's `primary_error`. So every task and completion the limits
//! accept can be read (GetTask, ListTasks) and streamed, even by a client
//! at grpc's default 4 MiB receive limit.
use errand_client::pb;
use errand_tests::*;
use tokio_stream::StreamExt;

/// `ToolError.message`'s documented bound.
const MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

fn is_cut(message: &str, len: usize) {
    assert!(
        message.len() <= MAX_ERROR_MESSAGE_BYTES,
        "{} bytes",
        message.len()
    );
    assert!(
        message.ends_with(&format!("{len} bytes in all)")),
        "says it was cut and how long it was: {}",
        &message[message.len().saturating_sub(200)..]
    );
}

/// Trial finding 1: a 4 MiB primary error, a 4 MiB fallback result and
/// 256 KiB of arguments made an 8.65 MB task that neither GetTask nor
/// ListTasks(page_size=1) could send.
#[tokio::test]
async fn a_task_answered_by_a_fallback_after_a_huge_failure_can_be_read_and_listed() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["prim", "fb"], 2).await;
    let client = server.client().await;
    let arguments = format!(r#"{{"a":"{}"}}"#, "x".repeat(256 * 1024 - 8));
    let ack = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "F".into(),
            tool: "prim".into(),
            arguments_json: arguments,
            result_budget_bytes: 4 * 1024 * 1024,
            fallback: Some(pb::Fallback {
                kind: Some(pb::fallback::Kind::Tool("fb".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let huge = "é".repeat(2 * 1024 * 1024);
    worker.next().await.fail("boom", &huge);
    let run = worker.next().await;
    assert_eq!(run.task.tool, "fb");
    run.succeed(&format!("\"{}\"", "r".repeat(4 * 1024 * 1024 - 2)));

    let mut stream = client.completions("F", 0);
    let c = take_completions(&mut stream, 1).await.remove(0);
    let primary = c.fallback.unwrap().primary_error.unwrap();
    is_cut(&primary.message, huge.len());

    let task = client.get_task(&ack.task_id).await.expect("GetTask");
    let primary = task.fallback.unwrap().primary_error.unwrap();
    is_cut(&primary.message, huge.len());
    let page = client
        .list_tasks(pb::ListTasksRequest {
            session_id: "F".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("ListTasks(page_size=1)");
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].task_id, ack.task_id);
}

/// Trial finding 2: with a 4 MiB result budget a 4 MiB failure message
/// was kept inline, so `results_by_reference` still sent a 4.5 MB
/// completion and a client at grpc's default receive limit was stuck.
#[tokio::test]
async fn a_huge_failure_message_reaches_a_client_at_grpcs_default_receive_limit() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["prim"], 1).await;
    let client = server.client().await;
    let ack = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "prim".into(),
            arguments_json: "{}".into(),
            result_budget_bytes: 4 * 1024 * 1024,
            ..Default::default()
        })
        .await
        .unwrap();
    let huge = "m".repeat(4 * 1024 * 1024);
    worker.next().await.fail("boom", &huge);

    // server.raw(): tonic's stock client, whose receive limit is 4 MiB.
    let mut events = server
        .raw()
        .session_events(pb::SessionEventsRequest {
            session_id: "s".into(),
            results_by_reference: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let event = within("a completion", events.next())
        .await
        .expect("the stream ended")
        .expect("the completion fits the default receive limit");
    let Some(pb::session_event::Event::Completion(c)) = event.event else {
        panic!("{event:?}");
    };
    assert_eq!(c.task_id, ack.task_id);
    let Some(pb::completion::Outcome::Error(e)) = c.outcome else {
        panic!("an error");
    };
    assert_eq!(e.code, "boom");
    is_cut(&e.message, huge.len());
}
