//! What the server's own log lines say: names a client reads (tenant and
//! tool apart, never the internal key that joins them), and refused TLS
//! handshakes on the gRPC port, as on the HTTP listeners.
use errand_client::{ConnectOptions, Credentials, endpoint, pb};
use errand_tests::*;
use tokio::{io::AsyncWriteExt, sync::mpsc};

/// The first log line holding `needle`.
async fn line_with(lines: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    within(needle, async {
        loop {
            let line = lines.recv().await.expect("the server's log");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
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
