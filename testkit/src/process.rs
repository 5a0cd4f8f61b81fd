//! The `errand` binary as a child process. Every wait is for an event (a
//! line on the child's stdout, its exit), bounded by [`EVENT_TIMEOUT`], so a
//! broken server fails the test instead of hanging it.
use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::OnceLock,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// How long any single awaited event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes too long.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Reads `lines` until one starts with `prefix` and returns it; panics if the
/// child closes its stdout first. Bound it with [`within`].
pub async fn wait_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    while let Some(line) = lines.next_line().await.expect("reading a child's stdout") {
        if line.starts_with(prefix) {
            return line;
        }
    }
    panic!("the process exited before printing {prefix:?}")
}

/// The `errand` binary: `$ERRAND_BIN` (what `scripts/test` sets after
/// building once), else `errand` in the target directory of the running
/// test (`target/debug/errand` for `cargo test`). Only when that file is
/// missing is it built, once per process, with `cargo build -p errand-cli`.
///
/// Without `$ERRAND_BIN` a stale build is used as it is: after changing the
/// server, run `cargo build --bin errand` (or `cargo test --workspace`, which
/// builds it) before `cargo test -p errand-tests`.
pub fn errand_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ERRAND_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "ERRAND_BIN={} is not a file: build it (cargo build --bin errand) or unset ERRAND_BIN",
                bin.display()
            );
            return bin;
        }
        let (bin, release) = beside_current_exe();
        if !bin.is_file() {
            build(&bin, release);
        }
        bin
    })
}

/// `errand` in the running program's target dir (tests live in
/// `target/PROFILE/deps/`, binaries in `target/PROFILE/`), and whether that
/// is a release build.
fn beside_current_exe() -> (PathBuf, bool) {
    let exe = std::env::current_exe().expect("the path of the running test");
    let mut dir = exe.parent().expect("the test's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the target profile directory");
    }
    (dir.join("errand"), dir.ends_with("release"))
}

fn build(bin: &Path, release: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "-q", "-p", "errand-cli", "--bin", "errand"];
    if release {
        args.push("--release");
    }
    eprintln!(
        "errand-testkit: no errand binary at {} and ERRAND_BIN is unset: running `cargo {}` once \
         (scripts/test builds it first and sets ERRAND_BIN)",
        bin.display(),
        args.join(" ")
    );
    let status = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(root)
        .status()
        .expect("running cargo build");
    assert!(
        status.success() && bin.is_file(),
        "building the errand binary failed; build it with `cargo build --bin errand` or set ERRAND_BIN"
    );
}

/// A running `errand serve`, killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// The address it listens on (`HOST:PORT`, from its listening line).
    pub addr: String,
    /// `http://ADDR/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    /// `http://ADDR/` when started with `--ui-listen`.
    pub ui_url: Option<String>,
    /// `http://ADDR` (no path) when started with `--a2a-listen`.
    pub a2a_url: Option<String>,
    /// `http://ADDR/mcp` when started with `--mcp-listen`.
    pub mcp_url: Option<String>,
}

impl ServeProcess {
    /// Starts `errand serve --listen LISTEN ARGS` and waits for its
    /// "errand listening on ADDR" line (port 0 picks a free port). Logs go to
    /// the test's stderr at `$RUST_LOG`, `warn` by default.
    pub async fn start(listen: &str, args: &[String]) -> ServeProcess {
        let mut child = Command::new(errand_bin())
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting errand serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut metrics_url = None;
        let mut ui_url = None;
        let mut a2a_url = None;
        let mut mcp_url = None;
        let line = within("the server's listening line", async {
            loop {
                let line = wait_line(&mut lines, "errand ").await;
                if let Some(url) = line.strip_prefix("errand metrics on ") {
                    metrics_url = Some(url.to_string());
                } else if let Some(url) = line.strip_prefix("errand dashboard on ") {
                    ui_url = Some(url.to_string());
                } else if let Some(card) = line.strip_prefix("errand a2a on ") {
                    let base = card.trim_end_matches("/.well-known/agent-card.json");
                    a2a_url = Some(base.to_string());
                } else if let Some(url) = line.strip_prefix("errand mcp on ") {
                    mcp_url = Some(url.to_string());
                } else if line.starts_with("errand listening on ") {
                    return line;
                }
            }
        })
        .await;
        let addr = line.trim_start_matches("errand listening on ").to_string();
        ServeProcess {
            child,
            addr,
            metrics_url,
            ui_url,
            a2a_url,
            mcp_url,
        }
    }

    /// The server's process ID.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("the server is running") as i32
    }

    /// Sends SIGTERM, as an orchestrator stopping it would.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we own and a valid signal.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        within("the server to exit", self.child.wait())
            .await
            .expect("waiting for the server")
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}
