//! `watch`: a session's completions, or with `--progress` its events, as
//! they come, across server restarts (through [`Follow`]).
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use errand_client::{Client, pb};

use crate::{follow::Follow, output};

#[derive(ClapArgs)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The session to follow.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Start after this seq (0: everything retained). One past the
    /// session's last seq is refused (OUT_OF_RANGE), as `ack` refuses it.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    after: u64,
    /// Stop after this many completions (at least 1).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Also show running tasks' progress (through SessionEvents).
    #[arg(long)]
    progress: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn watch(server: &str, args: WatchArgs) -> Result<ExitCode> {
    let client = args.conn.client(server).await?;
    if args.progress {
        return watch_events(&client, server, &args).await;
    }
    let mut stream = Follow::new(&client, server, &args.session, args.after, false);
    let mut seen = 0;
    loop {
        let completion = stream.next().await?;
        if args.json {
            out!("{}", output::completion_json(&completion));
        } else {
            out!("{}", output::completion_line(&completion));
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `watch --progress`: completions and progress from SessionEvents,
/// reconnecting after the last completion's seq when the server goes away.
async fn watch_events(client: &Client, server: &str, args: &WatchArgs) -> Result<ExitCode> {
    let request = pb::SessionEventsRequest {
        session_id: args.session.clone(),
        after_seq: args.after,
        include_progress: true,
        results_by_reference: false,
    };
    let mut stream = Follow::session_events(client, server, request, false);
    let mut seen = 0;
    loop {
        match stream.next_event().await? {
            pb::session_event::Event::Completion(c) => {
                if args.json {
                    out!(
                        "{}",
                        serde_json::json!({"completion": output::completion_json(&c)})
                    );
                } else {
                    out!("{}", output::completion_line(&c));
                }
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            pb::session_event::Event::Progress(p) => {
                if args.json {
                    out!(
                        "{}",
                        serde_json::json!({"progress": output::progress_json(&p)})
                    );
                } else {
                    out!("{}", output::progress_line(&p));
                }
            }
        }
    }
}
