//! Authentication, tenant isolation and TLS: a server that is reached by
//! agents and workers that should not all trust each other.
use std::time::Duration;

use errand_client::{Client, ConnectOptions, pb};
use errand_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;

/// Every ToolService RPC once, with whatever credentials `raw` carries.
async fn every_agent_rpc(server: &Server, token: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut raw = server.raw_as(token);
    let id = "6f1c2a4e-0000-4000-8000-000000000000".to_string();
    let mut out = vec![];
    out.push((
        "ListTools",
        raw.list_tools(pb::ListToolsRequest::default())
            .await
            .unwrap_err()
            .code(),
    ));
    out.push((
        "SubmitTool",
        raw.submit_tool(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "search".into(),
            arguments_json: "{}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
    ));
    out.push((
        "Completions",
        raw.completions(pb::CompletionsRequest {
            session_id: "s".into(),
            after_seq: 0,
        })
        .await
        .err()
        .map(|s| s.code())
        .unwrap_or(Code::Ok),
    ));
    out.push((
        "GetTask",
        raw.get_task(pb::GetTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap_err()
        .code(),
    ));
    out.push((
        "CancelTask",
        raw.cancel_task(pb::CancelTaskRequest {
            task_id: id,
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
    ));
    out.push((
        "AckCompletions",
        raw.ack_completions(pb::AckCompletionsRequest {
            session_id: "s".into(),
            up_to_seq: 1,
        })
        .await
        .unwrap_err()
        .code(),
    ));
    out
}

#[tokio::test]
async fn without_a_valid_token_every_rpc_is_refused() {
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let worker = tokens
        .add(&["--role", "worker", "--tenant", "acme", "--tools", "search"])
        .await;
    let expired = tokens
        .add(&[
            "--role",
            "agent",
            "--tenant",
            "acme",
            "--expires",
            "2001-01-01T00:00:00Z",
        ])
        .await;
    let flags = tokens.flag();
    let server = Server::start(&strs(&flags)).await;

    let wrong = "ert_0000000000000000000000000000000000000000000000000000000000000000";
    for token in [
        None,
        Some(wrong),
        Some(expired.as_str()),
        Some("not a bearer"),
    ] {
        for (rpc, code) in every_agent_rpc(&server, token).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {token:?}");
        }
        assert_eq!(
            register_raw(&server.addr, token, "search").await,
            Code::Unauthenticated
        );
    }
    // The right tenant but the wrong role.
    for (rpc, code) in every_agent_rpc(&server, Some(&worker)).await {
        assert_eq!(code, Code::PermissionDenied, "{rpc} with a worker token");
    }
    assert_eq!(
        register_raw(&server.addr, Some(&agent), "search").await,
        Code::PermissionDenied
    );
    // A worker registering a tool outside its list.
    assert_eq!(
        register_raw(&server.addr, Some(&worker), "shell").await,
        Code::PermissionDenied
    );

    // And with the right tokens everything works.
    let mut gate = server.gate_worker_as(&worker, &["search"], 1).await;
    let client = server.client_as(&agent).await;
    let mut stream = client.completions("s", 0);
    let ack = client.submit("s", "search", r#"{"q":"x"}"#).await.unwrap();
    let job = gate.next().await;
    assert_eq!(job.task.session_id, "s", "workers see the client's names");
    assert_eq!(job.task.tool, "search");
    job.succeed("42");
    let done = take_completions(&mut stream, 1).await;
    assert_eq!(done[0].task_id, ack.task_id);
    assert_eq!(done[0].session_id, "s");
    assert_eq!(client.list_tools().await.unwrap()[0].name, "search");

    // The CLI takes the token from --token or ERRAND_TOKEN.
    let out = server.cli(&["tools"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"),
        "{out:?}"
    );
    let out = server.cli(&["tools", "--token", &agent]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("search"));
}

#[tokio::test]
async fn token_new_prints_the_secret_once_and_a_hashed_line() {
    let out = tokio::process::Command::new(errand_bin())
        .args([
            "token",
            "new",
            "--role",
            "worker",
            "--tenant",
            "acme",
            "--tools",
            "a,b",
            "--expires",
            "30d",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("ert_") && lines[0].len() == 68);
    assert!(lines[1].starts_with("sha256=") && !lines[1].contains(&lines[0][4..]));
    assert!(lines[1].contains("role=worker tenant=acme tools=a,b expires="));
    let bad = tokio::process::Command::new(errand_bin())
        .args([
            "token", "new", "--role", "agent", "--tenant", "acme", "--tools", "a",
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success(), "tools are for worker tokens only");
}

#[tokio::test]
async fn tenants_never_see_each_others_tasks_tools_or_completions() {
    let tokens = Tokens::new();
    let agent_a = tokens.add(&["--role", "agent", "--tenant", "a"]).await;
    let agent_b = tokens.add(&["--role", "agent", "--tenant", "b"]).await;
    let worker_a = tokens.add(&["--role", "worker", "--tenant", "a"]).await;
    let worker_b = tokens.add(&["--role", "worker", "--tenant", "b"]).await;
    let agent_c = tokens.add(&["--role", "agent", "--tenant", "c"]).await;
    let flags = tokens.flag();
    let server = Server::start(&strs(&flags)).await;
    let mut gate_a = server.gate_worker_as(&worker_a, &["search"], 4).await;
    let mut gate_b = server.gate_worker_as(&worker_b, &["search"], 4).await;
    let (a, b) = (
        server.client_as(&agent_a).await,
        server.client_as(&agent_b).await,
    );
    // The same session and tool names in both tenants.
    let mut stream_a = a.completions("s", 0);
    let mut stream_b = b.completions("s", 0);
    let task_a = a.submit("s", "search", r#"{"who":"a"}"#).await.unwrap();
    let task_b = b.submit("s", "search", r#"{"who":"b"}"#).await.unwrap();
    let job_a = gate_a.next().await;
    let job_b = gate_b.next().await;
    assert_eq!(job_a.args()["who"], "a", "a's worker gets a's task only");
    assert_eq!(job_b.args()["who"], "b", "b's worker gets b's task only");
    assert!(gate_a.try_next().is_none() && gate_b.try_next().is_none());

    // b cannot read or cancel a's task, nor learn it exists.
    let unknown = "6f1c2a4e-0000-4000-8000-000000000000";
    let missing = b.get_task(unknown).await.unwrap_err().to_string();
    let hidden = b.get_task(&task_a.task_id).await.unwrap_err();
    assert_eq!(hidden.code(), Some(Code::NotFound));
    assert_eq!(
        hidden.to_string(),
        missing.replace(unknown, &task_a.task_id),
        "the same answer as an unknown ID"
    );
    assert_eq!(
        b.cancel(&task_a.task_id).await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    assert_eq!(
        status_of(a.get_task(&task_a.task_id).await.unwrap().status),
        pb::TaskStatus::Running,
        "b's cancel changed nothing"
    );

    job_b.succeed(r#""for b""#);
    job_a.succeed(r#""for a""#);
    let got_a = take_completions(&mut stream_a, 1).await;
    let got_b = take_completions(&mut stream_b, 1).await;
    assert_eq!(got_a[0].task_id, task_a.task_id);
    assert_eq!(got_b[0].task_id, task_b.task_id);
    assert_eq!((got_a[0].seq, got_b[0].seq), (1, 1), "separate logs");
    // Nothing else arrives on either stream.
    let more = tokio::time::timeout(Duration::from_millis(300), stream_a.next()).await;
    assert!(more.is_err(), "a's stream saw something else: {more:?}");

    // Tools are per tenant too: c has none and is not told of a's or b's.
    let c = server.client_as(&agent_c).await;
    assert!(c.list_tools().await.unwrap().is_empty());
    let err = c.submit("s", "search", "{}").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    assert!(err.to_string().contains("none yet"), "{err}");
    assert_eq!(a.list_tools().await.unwrap().len(), 1);
}

/// `GET` of `url` (https://127.0.0.1:PORT/PATH) over TLS trusting the
/// test CA, with the client certificate when `identity`: the response's
/// status line and body, or why the connection failed.
async fn https_get(url: &str, pki: &Pki, identity: bool) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or(format!("not https: {url}"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pki.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if identity {
        let certs = CertificateDer::pem_slice_iter(&pki.client.0)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(&pki.client.1).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = Pki::new();
    let mut flags = pki.serve_flags(true);
    for f in [
        "--ui-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ] {
        flags.push(f.to_string());
    }
    let mut server = Server::start(&strs(&flags)).await;
    // The dashboard and metrics take the gRPC port's TLS and client CA: they
    // served plain HTTP to anyone, admin tokens and every task's data too.
    for url in [&server.ui_url, &server.metrics_url] {
        let url = url.clone().expect("the listener's line");
        assert!(url.starts_with("https://"), "{url}");
        let page = https_get(&url, &pki, true).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{url}: {page}");
        let refused = https_get(&url, &pki, false).await;
        let refused = refused.map_or(true, |r| !r.starts_with("HTTP/1.1 200"));
        assert!(refused, "{url} answered a client without a certificate");
        let plain = url.replace("https://", "http://");
        let (addr, _) = plain["http://".len()..].split_once('/').unwrap();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
            "{url} answered plain HTTP"
        );
    }
    server.tls = Some(pki.client(true));
    let mut gate = {
        // The Rust worker runtime over mTLS.
        let options = ConnectOptions {
            token: None,
            tls: Some(pki.client(true)),
        };
        let channel = errand_client::endpoint_with(&server.addr, &options)
            .unwrap()
            .connect_lazy();
        GateWorker::on_channel(channel, &["search"], 1).await
    };
    let client = Client::connect_with(
        &server.addr,
        &ConnectOptions {
            token: None,
            tls: Some(pki.client(true)),
        },
    )
    .await
    .unwrap();
    let mut stream = client.completions("s", 0);
    client.submit("s", "search", "{}").await.unwrap();
    gate.next().await.succeed("1");
    take_completions(&mut stream, 1).await;

    // Without a client certificate, or without TLS, nothing gets through.
    let no_cert = Client::connect_with(
        &server.addr,
        &ConnectOptions {
            token: None,
            tls: Some(pki.client(false)),
        },
    )
    .await;
    let refused = match no_cert {
        Err(_) => true,
        Ok(c) => c.list_tools().await.is_err(),
    };
    assert!(refused, "a client without a certificate got through");
    let plain = Client::connect(&server.addr).await;
    let refused = match plain {
        Err(_) => true,
        Ok(c) => c.list_tools().await.is_err(),
    };
    assert!(refused, "a plain-text client got through");

    // The CLI without its client certificate: one line saying so, exit 1.
    // It died silently of SIGPIPE in about a third of runs (a write to the
    // socket the server had closed with its TLS alert).
    for _ in 0..10 {
        let out = tokio::process::Command::new(errand_bin())
            .args(["tools", "--tls-ca", &pki.path("ca.pem")])
            .env("ERRAND_SERVER", &server.addr)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(stderr.starts_with("errand: "), "{stderr}");
    }

    // The CLI with --tls-ca, --tls-cert and --tls-key.
    let out = tokio::process::Command::new(errand_bin())
        .args([
            "tools",
            "--tls-ca",
            &pki.path("ca.pem"),
            "--tls-cert",
            &pki.path("client.pem"),
            "--tls-key",
            &pki.path("client.key"),
        ])
        .env("ERRAND_SERVER", &server.addr)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("search"));
}
