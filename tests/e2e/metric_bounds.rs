//! Metrics stay bounded: a tool the server forgets takes its series with
//! it, so tool-name churn does not grow the scrape for ever.
use errand_client::pb;
use errand_tests::*;

/// Distinct `tool` label values of `family` in a scrape.
fn tools_of(text: &str, family: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix('{'))
        .filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next())
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn forgotten_tools_take_their_series_with_them() {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: one server's registry is enough");
        return;
    }
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-tools-per-tenant",
        "2",
        "--max-tools-per-worker",
        "2",
    ])
    .await;
    let url = server.metrics_url.clone().expect("the metrics line");
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    for i in 0..6 {
        // A fresh tool comes and goes; its one call times out in the queue,
        // so it leaves a submitted and a finished series behind.
        let tool = format!("churn_{i}");
        raw::worker_came_and_went(&server.addr, &tool).await;
        let call = pb::SubmitToolRequest {
            queue_timeout_ms: 1,
            ..tool_call("s", &tool)
        };
        submit_id(&client, call).await;
        let done = take_completions(&mut stream, 1).await.remove(0);
        assert_eq!(status_of(done.status), pb::TaskStatus::TimedOut);
    }
    let text = http_get(&url).await;
    for family in [
        "errand_tasks_submitted_total",
        "errand_tasks_finished_total",
    ] {
        let tools = tools_of(&text, family);
        // The registry keeps 2 tools; the others were forgotten to make room.
        assert!(tools.len() <= 2, "{family}: {tools:?}\n{text}");
        assert!(tools.contains("churn_5"), "{family}: {tools:?}");
    }
}
