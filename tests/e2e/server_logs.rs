//! What the server's own log lines say: names a client reads (tenant and
//! tool apart, never the internal key that joins them), refused TLS
//! handshakes on the gRPC port, as on the HTTP listeners, and its
//! PostgreSQL database: news only (no notice about its own schema at every
//! start), and that it answers again after warnings that it did not.
use errand_client::{ConnectOptions, Credentials, endpoint, pb};
use errand_tests::{pg, *};
use tokio::{io::AsyncWriteExt, sync::mpsc};

/// The log lines up to the first holding `needle`, that one included.
async fn lines_until(lines: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> Vec<String> {
    within(needle, async {
        let mut read = Vec::new();
        loop {
            let line = lines.recv().await.expect("the server's log");
            let last = line.contains(needle);
            read.push(line);
            if last {
                return read;
            }
        }
    })
    .await
}

/// A fresh PostgreSQL database's `--store` flags with `url`, or `None`
/// where PostgreSQL is not installed (the test is skipped, visibly).
async fn postgres() -> Option<String> {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return None;
    };
    Some(cluster.create_database().await)
}

#[tokio::test]
async fn worker_registrations_log_the_tenant_and_the_tool_names_apart() {
    let tokens = Tokens::new();
    let worker = tokens.add(&["--role", "worker", "--tenant", "beta"]).await;
    let mut args = tokens.flag().to_vec();
    args.extend(["--log-format".into(), "json".into()]);
    let (_child, addr, mut lines) = serve_logging(&args, "info").await;
    let mut client = pb::worker_service_client::WorkerServiceClient::with_interceptor(
        endpoint(&addr).unwrap().connect_lazy(),
        Credentials::new(Some(&worker)).unwrap(),
    );
    let register = |names: &[&str]| pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools: names
                .iter()
                .map(|n| pb::Tool {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            max_concurrency: 1,
        })),
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(register(&["research_topic"])).await.unwrap();
    let _stream = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let line = line_with(&mut lines, "\"worker registered\"").await;
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let fields = &json["fields"];
    assert_eq!(fields["tenant"], "beta", "{line}");
    assert_eq!(fields["tools"], "research_topic", "{line}");
    tx.send(register(&["summarize", "translate"]))
        .await
        .unwrap();
    let line = line_with(&mut lines, "\"worker registered more tools\"").await;
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["fields"]["tenant"], "beta", "{line}");
    assert_eq!(json["fields"]["tools"], "summarize, translate", "{line}");
    assert!(
        !line.contains("u{1f}") && !line.contains('\u{1f}'),
        "{line}"
    );
}

/// A refused TLS handshake on the gRPC port is logged as the HTTP
/// listeners log theirs (at most a line per 10 s, with how many): tonic
/// dropped it unseen, so an operator whose clients could not connect under
/// mTLS saw nothing.
#[tokio::test]
async fn refused_tls_handshakes_on_the_grpc_port_are_logged() {
    let pki = Pki::new();
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let mut args = pki.serve_flags(true);
    args.extend(tokens.flag());
    let (_child, addr, mut lines) = serve_logging(&args, "warn").await;
    // Plain HTTP/2 on the TLS port: not a TLS hello.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let line = line_with(&mut lines, "refused TLS handshakes").await;
    assert!(line.contains("WARN") && line.contains("times=1"), "{line}");

    // A client with its certificate still gets through, and the call
    // knows its peer's address (tonic's TLS connection info): a wrong
    // token is counted against 127.0.0.1.
    let options = |token: &str| ConnectOptions {
        token: Some(token.to_string()),
        tls: Some(pki.client(true)),
    };
    let client = errand_client::Client::connect_with(&addr, &options(&agent))
        .await
        .unwrap();
    client.list_tools().await.unwrap();
    let wrong = "ert_0000000000000000000000000000000000000000000000000000000000000000";
    let client = errand_client::Client::connect_with(&addr, &options(wrong))
        .await
        .unwrap();
    assert!(client.list_tools().await.is_err());
    let line = line_with(&mut lines, "refused calls without a valid token").await;
    assert!(line.contains("peer=127.0.0.1"), "{line}");
}

/// A client that connects to the gRPC TLS port and never says hello holds
/// nothing for longer than the handshake timeout: it is closed, and logged.
#[tokio::test]
async fn a_silent_client_on_the_grpc_tls_port_is_closed_within_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new();
    let mut args = pki.serve_flags(false);
    args.extend(["--handshake-timeout-ms".into(), "300".into()]);
    let (_child, addr, mut lines) = serve_logging(&args, "warn").await;
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let line = line_with(&mut lines, "refused TLS handshakes").await;
    assert!(line.contains("handshake"), "{line}");
    let mut buf = [0u8; 16];
    let read = within("the close", silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Defect: every start on an existing database logged, at INFO, PostgreSQL's
/// notice that errand's schema table "already exists, skipping".
#[tokio::test]
async fn a_start_on_an_existing_schema_logs_no_notice_of_it() {
    let Some(url) = postgres().await else { return };
    let store = ["--store", "postgres", "--database-url", url.as_str()];
    let (first, _, _) = serve_logging_on(&store, &[], "info").await;
    drop(first);
    let (_second, _, mut lines) = serve_logging_on(&store, &[], "info").await;
    let start = lines_until(&mut lines, "PostgreSQL store ready").await;
    assert!(
        !start
            .iter()
            .any(|l| l.contains("NOTICE") || l.contains("already exists")),
        "{start:#?}"
    );
}

/// Defect: warnings said the database did not answer, and nothing said
/// when it answered again. Now one INFO line does (at most one per 10 s).
#[tokio::test]
async fn a_database_that_answers_again_after_warnings_is_logged() {
    let Some(url) = postgres().await else { return };
    let (proxied, freeze) = pg::freezable(&url).await;
    let store = ["--store", "postgres", "--database-url", proxied.as_str()];
    let args = ["--database-timeout-ms", "1000", "--lease-ms", "1000"].map(String::from);
    let (_child, addr, mut lines) = serve_logging_on(&store, &args, "info").await;
    // Answered once the server serves, its start (and its reads) done.
    let client = errand_client::Client::connect(&addr).await.unwrap();
    client.list_tools().await.unwrap();
    freeze.send_replace(true);
    let warned = line_with(&mut lines, "renewing leases failed").await;
    assert!(warned.contains("WARN"), "{warned}");
    freeze.send_replace(false);
    let back = lines_until(&mut lines, "answers again").await;
    let line = back.last().unwrap();
    assert!(line.contains("INFO"), "{line}");
}

/// Defect: past the grace period the drain said "tasks still running will
/// run again at the next start" whatever the store: with servers sharing a
/// PostgreSQL database they go back to the shared queue at once (another
/// server claims them), and the memory store keeps nothing. Each store's
/// line now says what becomes of them.
#[tokio::test]
async fn the_drain_says_what_becomes_of_tasks_still_running_on_each_store() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().display().to_string();
    let mut stores = vec![
        (vec!["--store", "memory"], "lost"),
        (
            vec!["--store", "sqlite", "--data-dir", data.as_str()],
            "at the next start",
        ),
    ];
    let url = postgres().await;
    if let Some(url) = &url {
        stores.push((
            vec!["--store", "postgres", "--database-url", url.as_str()],
            "shared queue",
        ));
    }
    for (store, says) in stores {
        let args = ["--shutdown-grace-secs", "0"].map(String::from);
        let (mut child, addr, mut lines) = serve_logging_on(&store, &args, "warn").await;
        let channel = endpoint(&addr).unwrap().connect_lazy();
        let mut gate = GateWorker::on_channel(channel, &["search"], 1).await;
        let client = errand_client::Client::connect(&addr).await.unwrap();
        client.submit("s", "search", "{}").await.unwrap();
        let _running = gate.next().await;
        // SAFETY: kill(2) on the child this test started.
        unsafe {
            libc::kill(child.id().unwrap() as i32, libc::SIGTERM);
        }
        let line = line_with(&mut lines, "grace period over").await;
        assert!(line.contains(says), "{store:?}: {line}");
        within("the server's exit", child.wait()).await.unwrap();
    }
}
