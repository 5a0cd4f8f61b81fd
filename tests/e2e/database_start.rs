//! `errand serve --store postgres` before it serves: a database that is
//! down, silent or misconfigured, and signals while it waits for one.
use std::time::{Duration, Instant};

use errand_tests::{pg, *};

/// `errand serve --store postgres` with `args`, its output piped.
fn serve(data_dir: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(errand_bin())
        .args(["serve", "--store", "postgres", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("ERRAND_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A database that accepts TCP connections and never answers (a frozen
/// server, a blackholed connection): its address.
async fn silent_database() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

async fn stderr_of(child: tokio::process::Child) -> String {
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Defect: SIGTERM and SIGINT were ignored while `errand serve` waited for
/// an unreachable database at start (only SIGKILL stopped it).
#[tokio::test]
async fn a_signal_stops_serve_while_it_waits_for_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let child = serve(
            dir.path(),
            &["--database-url", "postgres://errand@127.0.0.1:1/none"],
        );
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // SAFETY: kill(2) on the child this test started.
        unsafe {
            libc::kill(child.id().unwrap() as i32, signal);
        }
        let started = Instant::now();
        let err = within("serve's exit after a signal", stderr_of(child)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "signal {signal}: took {:?}",
            started.elapsed()
        );
        assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    }
}

/// Defect: `--database-connect-timeout-ms` was ignored when the database
/// accepted TCP but never answered: `errand serve` hung silently.
#[tokio::test]
async fn the_connect_timeout_bounds_a_silent_database_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let addr = silent_database().await;
    let url = format!("postgres://errand@{addr}/errand");
    let child = serve(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--database-connect-timeout-ms",
            "1500",
        ],
    );
    let started = Instant::now();
    let out = within("serve's exit", child.wait_with_output())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    // Each failed attempt is logged, the last one too.
    assert!(
        err.contains("cannot reach PostgreSQL; giving up") && err.contains("no answer within"),
        "{err}"
    );
}

/// Defect: an empty or hostless database URL was retried for ever (as if
/// the database were down), not refused as an unset one is.
#[tokio::test]
async fn an_empty_or_hostless_database_url_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["", "postgres://", "postgres:///errand"] {
        let child = serve(dir.path(), &["--database-url", url]);
        let out = within("serve's exit", child.wait_with_output())
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url:?}: {err}");
        assert!(err.contains("--database-url"), "{url:?}: {err}");
    }
}

/// A connection error keeps its cause (tokio-postgres's source chain), not
/// only "error connecting to server".
#[tokio::test]
async fn a_connection_error_names_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let child = serve(
        dir.path(),
        &[
            "--database-url",
            "postgres://errand@127.0.0.1:1/none",
            "--database-connect-timeout-ms",
            "300",
        ],
    );
    let err = within("serve's exit", stderr_of(child)).await;
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

/// TLS settings that cannot work (here a CA file that is not there) are
/// refused at start, saying which, rather than retried as an unreachable
/// database is.
#[tokio::test]
async fn a_database_url_whose_tls_settings_cannot_work_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let child = serve(
        dir.path(),
        &[
            "--database-url",
            "postgres://errand@127.0.0.1:1/none?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ],
    );
    let out = within("serve's exit", child.wait_with_output())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("sslrootcert=/nonexistent/ca.pem"), "{err}");
}

/// Defect: the database going away between the store's connection and the
/// server's first reads (the tool registry) made `errand serve` exit
/// ("loading the tool registry from the store failed"), where an outage at
/// any other moment is waited out. Those reads are retried as connecting
/// is, until the database answers.
#[tokio::test]
async fn the_first_reads_are_retried_while_the_database_does_not_answer() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let store = ["--store", "postgres", "--database-url", url.as_str()];
    // The schema, made by a first start.
    let (first, addr, _) = serve_logging_on(&store, &[], "warn").await;
    let client = errand_client::Client::connect(&addr).await.unwrap();
    client.list_tools().await.unwrap();
    drop(first);
    // The tool registry does not answer: each read ends at the timeout.
    let release = pg::Cluster::lock_table(&url, "errand_tool_defs").await;
    let args = ["--database-timeout-ms", "1000"].map(String::from);
    let (mut child, addr, mut lines) = serve_logging_on(&store, &args, "info").await;
    let retried = line_with(&mut lines, "retrying").await;
    assert!(retried.contains("tool registry"), "{retried}");
    drop(release);
    let client = within("serving", errand_client::Client::connect(&addr))
        .await
        .unwrap();
    within("the tools", client.list_tools()).await.unwrap();
    assert!(child.try_wait().unwrap().is_none(), "serve exited");
}
