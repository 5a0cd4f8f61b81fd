//! The tokens file is the server's list of who may call: a file others may
//! write is refused, and `token new --append` keeps it the owner's only.
use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Output, Stdio},
};

use errand_testkit::within;
use tokio::process::Command;

async fn errand(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(args)
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn append(path: &Path) -> Output {
    let out = errand(&[
        "token",
        "new",
        "--role",
        "agent",
        "--tenant",
        "acme",
        "--append",
        path.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    out
}

#[tokio::test]
async fn token_new_append_creates_and_keeps_the_file_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    append(&path).await;
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = append(&path).await;
    assert_eq!(mode(&path), 0o600);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was mode 666, now 600"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn serve_refuses_a_tokens_file_others_may_write_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    append(&path).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
    let out = errand(&[
        "serve",
        "--store",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--tokens-file",
        path.to_str().unwrap(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served: {stderr}");
    assert!(stderr.contains("writable by others (mode 646)"), "{stderr}");
    assert!(
        stderr.contains(&format!("run `chmod 600 {}`", path.display())),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("errand listening"));
}
