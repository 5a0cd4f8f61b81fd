//! `errand serve` refuses a bad setting before it binds anything: it exits
//! non-zero and says which flag (and environment variable) to fix.
use std::process::{Output, Stdio};

use errand_testkit::within;
use tokio::process::Command;

/// Runs this package's `errand` with `args` and the environment `env`.
async fn errand(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting errand");
    within("errand to exit", child.wait_with_output())
        .await
        .expect("running errand")
}

fn refused(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "errand accepted it: {stderr}");
    assert!(stderr.contains(message), "stderr: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("errand listening on"),
        "it served before refusing: {stdout}"
    );
}

#[tokio::test]
async fn a_bad_flag_value_exits_non_zero_naming_the_flag() {
    let out = errand(
        &[
            "serve",
            "--store",
            "memory",
            "--listen",
            "127.0.0.1:0",
            "--max-attempts",
            "0",
        ],
        &[],
    )
    .await;
    refused(
        &out,
        "errand: invalid --max-attempts (ERRAND_MAX_ATTEMPTS): 0 is below the minimum, 1",
    );
    let out = errand(
        &[
            "serve",
            "--store",
            "memory",
            "--listen",
            "127.0.0.1:0",
            "--lease-ms",
            "299",
        ],
        &[],
    )
    .await;
    refused(
        &out,
        "invalid --lease-ms (ERRAND_LEASE_MS): 299 ms is under the shortest lease, 300 ms",
    );
}

#[tokio::test]
async fn a_bad_environment_value_is_refused_too() {
    let out = errand(
        &["serve", "--store", "memory", "--listen", "127.0.0.1:0"],
        &[("ERRAND_STREAM_BUFFER", "0")],
    )
    .await;
    refused(
        &out,
        "invalid --stream-buffer (ERRAND_STREAM_BUFFER): 0 is below the minimum, 1",
    );
}

#[tokio::test]
async fn help_documents_every_flag_with_its_environment_variable() {
    let out = errand(&["serve", "--help"], &[]).await;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let flags: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--"))
        .map(|l| l.split([' ', '=']).next().unwrap())
        .filter(|f| !["--help", "--version", "--server"].contains(f))
        .collect();
    assert!(flags.len() >= 35, "{flags:?}");
    for flag in flags {
        let section = help.split(&format!("      {flag}")).nth(1).unwrap();
        let section = section.split("\n      --").next().unwrap();
        assert!(section.contains("[env: ERRAND_"), "{flag} has no env var");
        let text = section.lines().nth(1).unwrap_or("").trim();
        assert!(!text.is_empty(), "{flag} is not documented");
    }
}

#[tokio::test]
async fn metrics_on_a_non_loopback_address_need_a_token() {
    let base = ["serve", "--store", "memory", "--listen", "127.0.0.1:0"];
    let out = errand(
        &[&base[..], &["--metrics-listen", "0.0.0.0:0"]].concat(),
        &[],
    )
    .await;
    refused(
        &out,
        "refusing to serve metrics on 0.0.0.0:0 without authentication: anyone who can reach it \
         could read every tenant's name, tool names and counts. Pass --metrics-token (ERRAND_METRICS_TOKEN)",
    );
    let out = errand(
        &[&base[..], &["--metrics-listen", "127.0.0.1:0"]].concat(),
        &[("ERRAND_METRICS_TOKEN", "short")],
    )
    .await;
    refused(
        &out,
        "invalid --metrics-token (ERRAND_METRICS_TOKEN): shorter than 16 characters",
    );
}
