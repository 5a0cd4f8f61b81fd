//! A [`Handler`] that turns any program into a tool: the arguments JSON on its
//! stdin, its stdout as the result, a non-zero exit as a failure carrying its
//! stderr. Cancelling a task kills the program and everything it started.
use std::process::Stdio;

use async_trait::async_trait;
use errand_proto::v1 as pb;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::Command,
};
use tokio_util::sync::CancellationToken;

use crate::worker::Handler;

/// Runs `sh -c COMMAND` per task.
pub struct ExecTool {
    command: String,
    max_output_bytes: usize,
}

impl ExecTool {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

fn tool_error(code: &str, message: impl Into<String>) -> pb::ToolError {
    pb::ToolError {
        code: code.to_string(),
        message: message.into(),
    }
}

#[async_trait]
impl Handler for ExecTool {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError> {
        let mut command = Command::new("sh");
        #[cfg(target_os = "linux")]
        die_with_this_process(&mut command);
        let mut child = command
            .arg("-c")
            .arg(&self.command)
            .env("ERRAND_TASK_ID", &task.task_id)
            .env("ERRAND_SESSION_ID", &task.session_id)
            .env("ERRAND_TOOL", &task.tool)
            .env("ERRAND_ATTEMPT", task.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a cancel kills what it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                tool_error(
                    "spawn_failed",
                    format!("cannot start `sh -c {}`: {e}", self.command),
                )
            })?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let arguments = task.arguments_json.clone();
        // A program that ignores its input closes the pipe early: not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(arguments.as_bytes()).await;
        });
        let stdout = tokio::spawn(read_capped(
            child.stdout.take().expect("stdout is piped"),
            self.max_output_bytes,
        ));
        let stderr = tokio::spawn(read_capped(
            child.stderr.take().expect("stderr is piped"),
            64 * 1024,
        ));
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| tool_error("exec_failed", e.to_string()))?,
            _ = cancel.cancelled() => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: kill(2) on the process group we created; no memory is touched.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = child.wait().await;
                return Err(tool_error("cancelled", "the program was killed"));
            }
        };
        let (stdout, written) = stdout.await.unwrap_or_default();
        let (stderr, _) = stderr.await.unwrap_or_default();
        if !status.success() {
            let code = status.code().map_or_else(
                || "killed by a signal".to_string(),
                |c| format!("exit status {c}"),
            );
            let stderr = String::from_utf8_lossy(&stderr);
            return Err(tool_error(
                "exit_status",
                format!("{code}: {}", stderr.trim()),
            ));
        }
        if written > self.max_output_bytes {
            // The program's real output size, not that of the part kept.
            return Err(tool_error(
                "output_too_large",
                format!(
                    "the program wrote {written} bytes to stdout, the limit is {}",
                    self.max_output_bytes
                ),
            ));
        }
        Ok(as_json(&String::from_utf8_lossy(&stdout)))
    }
}

/// Has the kernel SIGKILL the program when this process dies
/// (`PR_SET_PDEATHSIG`), so a worker killed outright does not leave it
/// running beside the task's next attempt. It reaches `sh` and what `sh`
/// execs (a single command, or `exec` at the end); programs a shell forks
/// and leaves running are not reached. The signal follows the thread that
/// spawned: tokio's runtime threads live as long as the worker.
#[cfg(target_os = "linux")]
fn die_with_this_process(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (prctl, getppid), and nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The worker died before the call: the signal will not come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Stdout that is JSON stays JSON; anything else becomes a JSON string.
pub fn as_json(stdout: &str) -> String {
    let trimmed = stdout.trim();
    if !trimmed.is_empty() && serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
        trimmed.to_string()
    } else {
        serde_json::Value::String(trimmed.to_string()).to_string()
    }
}

/// Reads all of `reader`, keeping at most `max` bytes; returns them and how
/// many bytes were read in all.
async fn read_capped(mut reader: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total = total.saturating_add(n);
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    (kept, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15.3: the size reported is the program's, not the kept copy's.
    #[tokio::test]
    async fn output_over_the_limit_reports_its_real_size() {
        let tool = ExecTool {
            command: "head -c 5000 /dev/zero".into(),
            max_output_bytes: 1000,
        };
        let task = pb::Assignment {
            task_id: "t".into(),
            arguments_json: "{}".into(),
            ..Default::default()
        };
        let err = tool.run(task, CancellationToken::new()).await.unwrap_err();
        assert_eq!(err.code, "output_too_large");
        assert!(
            err.message.contains("5000 bytes") && err.message.contains("limit is 1000"),
            "{}",
            err.message
        );
    }

    #[test]
    fn stdout_becomes_json() {
        assert_eq!(as_json("{\"a\": 1}\n"), "{\"a\": 1}");
        assert_eq!(as_json("42"), "42");
        assert_eq!(as_json("hello world\n"), "\"hello world\"");
        assert_eq!(as_json(""), "\"\"");
    }
}
