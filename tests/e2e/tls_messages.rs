//! A client's TLS mistakes, each told apart and named with the setting that
//! fixes it: no CA for a TLS server, a CA that did not sign the server's
//! certificate, a CA file that holds no certificate, a client key that is
//! not the certificate's, an X.509 v1 client certificate, a missing client
//! certificate, TLS to a server without it; the CLI's one line and
//! `errand mcp --stdio`'s JSON-RPC error alike. Without a CA, TLS trusts the
//! system's trust store, as every gRPC client does, and says so when it
//! fails.
use errand_tests::*;

/// `errand ARGS` against `server`: its exit code and stderr.
async fn cli(server: &Server, args: &[&str]) -> (Option<i32>, String) {
    let out = server.cli(args).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A version 1 certificate (`openssl x509 -req` without extensions); its
/// key was thrown away: rustls refuses it before the key matters.
fn v1_cert() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../client/testdata/v1-client.pem"
    )
    .to_string()
}

#[tokio::test]
async fn cli_tls_mistakes_say_what_to_fix() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(&strs(&pki.serve_flags(false))).await;
    let ca = pki.path("ca.pem");

    // No CA: a plain-text client of a TLS server. The connection breaks at
    // the first call; the line still covers a server that is not running.
    let (code, err) = cli(&server, &["tools"]).await;
    assert_eq!(code, Some(1), "{err}");
    for words in ["serves TLS", "--tls-ca", "ERRAND_TLS_CA", "running"] {
        assert!(err.contains(words), "{words:?} not in {err}");
    }

    // The same for a worker: it connects, then its stream breaks. It says
    // so with the same advice, and goes on trying: a plain-text connection
    // broken at once is also what a server at its connection limit, or one
    // restarting, gives, and a worker outlives those.
    let mut worker = tokio::process::Command::new(errand_bin())
        .args([
            "worker",
            "--tool",
            "t",
            "--exec",
            "cat",
            "--server",
            &server.addr,
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(worker.stderr.take().unwrap()));
    let advice = within("the worker's advice", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("--tls-ca") {
                return line;
            }
        }
        panic!("the worker ended without advice")
    })
    .await;
    assert!(advice.contains("serves TLS"), "{advice}");
    within("the worker to try again", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("reconnecting") {
                return;
            }
        }
        panic!("the worker stopped instead of trying again")
    })
    .await;
    worker.kill().await.unwrap();

    // A worker whose CA did not sign the server's certificate stops at
    // once with the line: that is its settings, not the server's state.
    let other_ca = other.path("ca.pem");
    let out = within(
        "the worker to stop",
        tokio::process::Command::new(errand_bin())
            .args([
                "worker",
                "--tool",
                "t",
                "--exec",
                "cat",
                "--server",
                &server.addr,
            ])
            .args(["--tls-ca", &other_ca])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not sign"), "{err}");

    // A CA from another authority: a server is running; it is the CA.
    let (code, err) = cli(&server, &["tools", "--tls-ca", &other_ca]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("did not sign"), "{err}");
    assert!(err.contains(&other_ca), "{err}");
    assert!(!err.contains("start one"), "{err}");
    assert!(!err.contains("no errand server"), "{err}");

    // A CA file that holds no certificate: refused before connecting.
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    for not_a_ca in [pki.path("client.key"), pki.path("server.key"), empty] {
        let (code, err) = cli(&server, &["tools", "--tls-ca", &not_a_ca]).await;
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(&not_a_ca), "{err}");
        assert!(err.contains("holds no certificate"), "{err}");
        assert!(!err.contains("start one"), "{err}");
    }

    // TLS to a server without it.
    let plain = Server::start(&[]).await;
    let (code, err) = cli(&plain, &["tools", "--tls-ca", &ca]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not speak TLS"), "{err}");
    assert!(!err.contains("start one"), "{err}");
}

#[tokio::test]
async fn cli_client_certificate_mistakes_name_the_files() {
    let pki = Pki::new();
    let server = Server::start(&strs(&pki.serve_flags(true))).await;
    let ca = pki.path("ca.pem");
    let cert = pki.path("client.pem");

    // A key that is not the certificate's: both files, and why.
    let key = pki.path("server.key");
    let args = [
        "tools",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let (code, err) = cli(&server, &args).await;
    assert_eq!(code, Some(1), "{err}");
    for words in [cert.as_str(), key.as_str(), "not the certificate's"] {
        assert!(err.contains(words), "{words:?} not in {err}");
    }

    // An X.509 v1 certificate: the file, why, and how to make a v3 one.
    let v1 = v1_cert();
    let key = pki.path("client.key");
    let args = [
        "tools",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &v1,
        "--tls-key",
        &key,
    ];
    let (code, err) = cli(&server, &args).await;
    assert_eq!(code, Some(1), "{err}");
    for words in [v1.as_str(), "UnsupportedCertVersion", "extendedKeyUsage"] {
        assert!(err.contains(words), "{words:?} not in {err}");
    }

    // No client certificate for a server that requires one.
    let (code, err) = cli(&server, &["tools", "--tls-ca", &ca]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}

/// `errand mcp --stdio` without the CA: the JSON-RPC error carries the
/// CLI's advice, not "transport error".
#[tokio::test]
async fn mcp_stdio_without_the_ca_says_so() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::new();
    let server = Server::start(&strs(&pki.serve_flags(false))).await;
    let mut child = tokio::process::Command::new(errand_bin())
        .args(["mcp", "--stdio", "--server", &server.addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("an answer")).unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    for words in ["serves TLS", "--tls-ca", "ERRAND_TLS_CA"] {
        assert!(message.contains(words), "{words:?} not in {stdout}");
    }
}

/// `errand ARGS` with `SSL_CERT_FILE=store` standing for the system's trust
/// store (rustls-native-certs reads it instead of the platform's bundle):
/// its exit code, stdout and stderr.
async fn cli_trusting(store: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(errand_bin())
        .args(args)
        .env("SSL_CERT_FILE", store)
        .env_remove("SSL_CERT_DIR")
        .output()
        .await
        .expect("running errand");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An `https://` address without --tls-ca is verified against the system's
/// trust store (as the Go and Python SDKs and every gRPC client do): a
/// server whose certificate a CA of the system signed just works, for an
/// agent's commands and a worker alike; one whose certificate none signed,
/// or a system without CA certificates, fails saying so and naming
/// --tls-ca. A CA given is the only one trusted.
#[tokio::test]
async fn cli_https_without_tls_ca_trusts_the_systems_roots() {
    use tokio::io::AsyncBufReadExt;
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(&strs(&pki.serve_flags(false))).await;
    let https = format!("https://{}", server.addr);
    let (ca, other_ca) = (pki.path("ca.pem"), other.path("ca.pem"));

    // The system trusts the server's CA: https:// is all it takes.
    let (code, _, err) = cli_trusting(&ca, &["tools", "--server", &https]).await;
    assert_eq!(code, Some(0), "{err}");
    let mut worker = tokio::process::Command::new(errand_bin())
        .args([
            "worker", "--tool", "echo", "--exec", "cat", "--server", &https,
        ])
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(worker.stdout.take().unwrap()).lines();
    within(
        "the worker's registration over https://",
        wait_line(&mut lines, "errand worker registered"),
    )
    .await;
    let args = ["submit", "echo", "--args", r#"{"x":1}"#, "--wait"];
    let (code, out, err) = cli_trusting(&ca, &[&args[..], &["--server", &https]].concat()).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), r#"{"x":1}"#, "{err}");
    worker.kill().await.unwrap();

    // A certificate no CA of the system signed: said so, with the fix, and
    // not as a server that is not running.
    let (code, _, err) = cli_trusting(&other_ca, &["tools", "--server", &https]).await;
    assert_eq!(code, Some(1), "{err}");
    for words in [
        "system's trust store",
        &other_ca,
        "--tls-ca",
        "ERRAND_TLS_CA",
    ] {
        assert!(err.contains(words), "{words:?} not in {err}");
    }
    assert!(!err.contains("start one"), "{err}");
    assert!(!err.contains("no errand server"), "{err}");

    // A CA given is the only one trusted: the system's do not add to it.
    let (code, _, err) =
        cli_trusting(&ca, &["tools", "--server", &https, "--tls-ca", &other_ca]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("did not sign") && err.contains(&other_ca),
        "{err}"
    );
    let (code, _, err) =
        cli_trusting(&other_ca, &["tools", "--server", &https, "--tls-ca", &ca]).await;
    assert_eq!(code, Some(0), "{err}");

    // No CA certificate in the system's trust store (an empty bundle, none
    // at all): said plainly, with the fix, before connecting.
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    for store in [empty, pki.path("missing.pem")] {
        let (code, _, err) = cli_trusting(&store, &["tools", "--server", &https]).await;
        assert_eq!(code, Some(1), "{err}");
        for words in [
            "no CA certificate",
            "system's trust store",
            &store,
            "--tls-ca",
        ] {
            assert!(err.contains(words), "{words:?} not in {err}");
        }
        assert!(!err.contains("start one"), "{err}");
    }
}

/// TLS asked for by a client certificate alone (no --tls-ca, no https://)
/// trusts the system's trust store too: with mutual TLS, the client
/// certificate is all a client of a publicly trusted server gives.
#[tokio::test]
async fn cli_client_certificate_without_tls_ca_trusts_the_systems_roots() {
    let pki = Pki::new();
    let server = Server::start(&strs(&pki.serve_flags(true))).await;
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let args = [
        "tools",
        "--server",
        &server.addr,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let (code, _, err) = cli_trusting(&pki.path("ca.pem"), &args).await;
    assert_eq!(code, Some(0), "{err}");
}
