//! The operator commands: `tasks`, `workers`, bulk `cancel`, `retry`.
//! People get an aligned table with relative times, `--json` one object per
//! line.
use std::{
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use errand_client::{Client, pb};
use serde_json::json;

use crate::output;

#[derive(ClapArgs)]
pub struct TasksArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// Only this session's tasks (default: every session you may see).
    #[arg(long)]
    session: Option<String>,
    /// Only these statuses, comma-separated: queued,running,succeeded,failed,cancelled,timed_out.
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    status: Vec<pb::TaskStatus>,
    /// Only this tool's tasks.
    #[arg(long)]
    tool: Option<String>,
    /// Most tasks shown, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// Only workers serving this tool.
    #[arg(long)]
    tool: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct CancelArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The task to cancel; or use --session for every matching task.
    #[arg(required_unless_present = "session", conflicts_with_all = ["session", "status", "tool"])]
    task_id: Option<String>,
    /// Cancel every queued or running task of this session.
    #[arg(long)]
    session: Option<String>,
    /// With --session: only these statuses (queued, running), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    status: Vec<pb::TaskStatus>,
    /// With --session: only this tool's tasks.
    #[arg(long)]
    tool: Option<String>,
    /// Why (at most 1 KiB): it reaches the worker and the completion's message.
    #[arg(long)]
    reason: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct RetryArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// A FAILED, TIMED_OUT or CANCELLED task to run again.
    task_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_status(s: &str) -> Result<pb::TaskStatus, String> {
    let name = format!("TASK_STATUS_{}", s.trim().to_ascii_uppercase());
    pb::TaskStatus::from_str_name(&name)
        .filter(|s| *s != pb::TaskStatus::Unspecified)
        .ok_or_else(|| {
            format!("{s:?} is not a status: use queued, running, succeeded, failed, cancelled or timed_out")
        })
}

async fn connect(server: &str, conn: &crate::ConnectArgs) -> Result<Client> {
    conn.client(server).await
}

pub async fn tasks(server: &str, args: TasksArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    let mut req = pb::ListTasksRequest {
        session_id: args.session.unwrap_or_default(),
        statuses: args.status.iter().map(|s| *s as i32).collect(),
        tool: args.tool.unwrap_or_default(),
        newest_first: true,
        ..Default::default()
    };
    let mut rows = Vec::new();
    let mut left = args.limit;
    while left > 0 {
        req.page_size = left.min(1000);
        let page = client.list_tasks(req.clone()).await?;
        left -= page.tasks.len() as u32;
        for t in &page.tasks {
            if args.json {
                out!("{}", output::task_json(t));
            } else {
                rows.push(vec![
                    t.task_id.clone(),
                    t.session_id.clone(),
                    t.tool.clone(),
                    output::status_name(t.status).to_string(),
                    ago(&t.created_at),
                    output::duration_text(Duration::from_millis(t.elapsed_ms)),
                    t.worker_name.clone(),
                ]);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    if !args.json {
        let head = [
            "TASK", "SESSION", "TOOL", "STATUS", "CREATED", "ELAPSED", "WORKER",
        ];
        out_raw!("{}", table(&head, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn workers(server: &str, args: WorkersArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    let workers = client
        .list_workers(args.tool.as_deref().unwrap_or_default())
        .await?;
    let mut rows = Vec::new();
    for w in &workers {
        if args.json {
            out!(
                "{}",
                json!({
                    "worker_id": w.worker_id,
                    "worker_name": w.worker_name,
                    "tools": w.tools,
                    "max_concurrency": w.max_concurrency,
                    "running": w.running,
                    "connected_at_ms": output::time(&w.connected_at),
                    "last_seen_ms": output::time(&w.last_seen),
                    "server": w.server,
                })
            );
        } else {
            rows.push(vec![
                w.worker_id.clone(),
                w.worker_name.clone(),
                w.tools.join(","),
                format!("{}/{}", w.running, w.max_concurrency),
                ago(&w.connected_at),
                ago(&w.last_seen),
            ]);
        }
    }
    if !args.json {
        let head = ["ID", "NAME", "TOOLS", "RUNNING", "CONNECTED", "LAST SEEN"];
        out_raw!("{}", table(&head, &rows));
    }
    if workers.is_empty() && !args.json {
        // ListWorkers answers with the workers connected to the server
        // asked; servers sharing a PostgreSQL store each list their own.
        eprintln!(
            "no workers are connected to this server ({}){}: this lists only the workers \
connected to the server asked; with a shared PostgreSQL store, workers connected to other \
servers are not listed (ask each with --server)",
            crate::shown_address(server),
            match &args.tool {
                Some(t) => format!(" serving tool {t}"),
                None => String::new(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(server: &str, args: CancelArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    if let Some(id) = &args.task_id {
        let task = client
            .cancel_with_reason(id, args.reason.as_deref().unwrap_or_default())
            .await?;
        output::print_task(&task, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(session) = args.session else {
        bail!("name a task, or a --session whose tasks to cancel");
    };
    let cancelled = client
        .cancel_tasks(pb::CancelTasksRequest {
            session_id: session.clone(),
            statuses: args.status.iter().map(|s| *s as i32).collect(),
            tool: args.tool.unwrap_or_default(),
            reason: args
                .reason
                .unwrap_or_else(|| "errand cancel --session".into()),
        })
        .await?;
    if args.json {
        out!("{}", json!({"session_id": session, "cancelled": cancelled}));
    } else {
        out!("cancelled {cancelled} tasks of session {session:?}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(server: &str, args: RetryArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    let again = client.retry_task(&args.task_id).await?;
    if args.json {
        out!("{}", crate::agent::retry_json(&again, &args.task_id));
    } else {
        // As submit: the task ID on stdout, the ack for people on stderr.
        out!("{}", again.task_id);
        eprintln!("{}", again.ack);
    }
    Ok(ExitCode::SUCCESS)
}

/// How long ago `t` was, in [`output::duration_text`]'s format: "12s ago", "5m3s ago".
pub fn ago(t: &Option<prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let at = SystemTime::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    format!("{} ago", output::duration_text(age))
}

/// Rows under a header, each column as wide as its widest cell; each cell [`shown`](output::shown) on one line.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| output::shown(c)).collect())
        .collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(head.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell from outside (a worker's name, a session ID) cannot break the
    /// table into forged rows or send terminal escapes.
    #[test]
    fn table_cells_stay_on_their_row() {
        let t = table(
            &["NAME", "N"],
            &[vec!["w\nforged  row\u{1b}[2J".into(), "1".into()]],
        );
        assert_eq!(
            t,
            "NAME                     N\nw\\nforged  row\\u001b[2J  1\n"
        );
    }

    #[test]
    fn tables_align_and_statuses_parse() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
        assert_eq!(parse_status("timed_out"), Ok(pb::TaskStatus::TimedOut));
        assert!(parse_status("bogus").is_err() && parse_status("unspecified").is_err());
        assert_eq!(ago(&None), "-");
    }
}
