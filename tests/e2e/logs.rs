//! What clients send reaches the server's log escaped and bounded, in both
//! log formats: no forged lines, no escape sequences, no megabyte lines.
use std::process::Stdio;

use errand_client::{endpoint, pb};
use errand_tests::*;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// A value meant to forge a line, colour the terminal and, `padding` bytes
/// long, fill the log.
fn hostile(tag: &str, padding: usize) -> String {
    format!(
        "{tag}\nERROR forged line\u{1b}[31mred{}",
        "x".repeat(padding)
    )
}

/// Starts `errand serve` with `--log-format format`, registers a worker with
/// a hostile name, sends a result with a hostile megabyte task_id, and returns the
/// log lines that mention them.
async fn logged(format: &str) -> Vec<String> {
    let (_server, addr, mut lines) =
        serve_logging(&["--log-format".into(), format.into()], "info").await;
    let mut worker = pb::worker_service_client::WorkerServiceClient::new(
        endpoint(&addr).unwrap().connect_lazy(),
    )
    .max_encoding_message_size(8 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            // Within the 256 bytes a worker name may have.
            worker_name: hostile("worker", 200),
            tools: vec![pb::Tool {
                name: "t".into(),
                ..Default::default()
            }],
            max_concurrency: 1,
        })),
    })
    .await
    .unwrap();
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            task_id: hostile("task", 1 << 20),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let _stream = worker
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let mut seen = Vec::new();
    within("both hostile values logged", async {
        while seen.len() < 2 {
            let line = lines.recv().await.expect("the server's log");
            if line.contains("forged") {
                seen.push(line);
            }
        }
    })
    .await;
    seen
}

fn assert_safe(lines: &[String]) {
    let (worker, task) = (&lines[0], &lines[1]);
    assert!(worker.contains("worker registered"), "{worker:.300}");
    assert!(task.contains("malformed task_id"), "{task:.300}");
    for line in lines {
        // The newline did not end the line: the forged text is on it, escaped.
        assert!(line.contains("\\nERROR forged line"), "{line:.300}");
        assert!(
            !line.contains("\u{1b}[31mred"),
            "a raw escape sequence: {line:.300}"
        );
        assert!(line.len() < 2048, "{} bytes", line.len());
    }
    assert!(task.contains("+1048"), "the cut is counted: {task:.400}");
}

#[tokio::test]
async fn client_values_are_escaped_and_cut_in_text_logs() {
    let lines = logged("text").await;
    assert_safe(&lines);
    assert!(lines[0].contains("u{1b}[31mred"), "{:.300}", lines[0]);
}

#[tokio::test]
async fn client_values_are_escaped_and_cut_in_json_logs() {
    let lines = logged("json").await;
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line");
    }
    assert_safe(&lines);
}

/// A refused TLS handshake on an HTTP listener is logged (at most a line
/// per 10 s, with how many): it went to debug only, so an operator whose
/// clients could not connect under mTLS saw nothing.
#[tokio::test]
async fn refused_tls_handshakes_are_logged() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::new();
    let mut child = Command::new(errand_bin())
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
        .args(["--ui-listen", "127.0.0.1:0"])
        .args(pki.serve_flags(true))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let ui = within("the dashboard", wait_line(&mut out, "errand dashboard on "))
        .await
        .trim_start_matches("errand dashboard on https://")
        .trim_end_matches('/')
        .to_string();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    // Plain HTTP on the TLS port: not a TLS hello.
    let mut conn = tokio::net::TcpStream::connect(&ui).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let line = within("the log line", async {
        while let Some(line) = err.next_line().await.unwrap() {
            if line.contains("refused TLS handshakes") {
                return line;
            }
        }
        panic!("the server's log ended");
    })
    .await;
    assert!(line.contains("WARN") && line.contains("times=1"), "{line}");
}
