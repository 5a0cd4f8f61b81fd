//! Restart time with a large store: fills a data dir with retained tasks,
//! then times `errand serve` from spawn to the first answered RPC, after
//! clean stops (SIGTERM) and after a crash (SIGKILL).
use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use errand_client::Client;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::stats::summarize;

/// Finished tasks per session in a filled store.
const PER_SESSION: usize = 1000;

pub struct RestartOpts {
    pub errand: PathBuf,
    pub data_dir: PathBuf,
    /// Finished (retained) tasks to write first; 0 leaves the dir as it is.
    pub fill: usize,
    /// Unfinished (queued) tasks to write too, for recovery to take up.
    pub queued: usize,
    /// Timed starts after a clean stop.
    pub runs: usize,
}

/// A running `errand serve` on the data dir, and its address.
struct Serving {
    child: Child,
    addr: String,
}

/// Starts `errand serve` on `data_dir`; the times from spawn to its
/// "listening" line and to the first answered `ListTools`.
async fn start(errand: &Path, data_dir: &Path) -> anyhow::Result<(Serving, Duration, Duration)> {
    let t0 = Instant::now();
    let mut child = Command::new(errand)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", errand.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("errand listening on ") {
                return anyhow::Ok(addr.trim().to_string());
            }
        }
        bail!("errand serve exited before listening")
    })
    .await
    .context("errand serve did not listen within 120 s")??;
    let listening = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(c) = Client::connect(&addr).await
            && c.list_tools().await.is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("errand serve did not answer within 120 s of listening");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let serving = t0.elapsed();
    // Keep stdout drained so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((Serving { child, addr }, listening, serving))
}

/// Stops the server with `signal` ("TERM" or "KILL"); how long it took to exit.
async fn stop(mut s: Serving, signal: &str) -> anyhow::Result<Duration> {
    let pid = s.child.id().context("the server already exited")?;
    let t0 = Instant::now();
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    tokio::time::timeout(Duration::from_secs(60), s.child.wait())
        .await
        .context("the server did not exit within 60 s")??;
    Ok(t0.elapsed())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writes `finished` retained completions (in sessions of [`PER_SESSION`])
/// and `queued` unfinished tasks straight into the store errand created,
/// with the columns of its first schema version (later ones add columns with
/// defaults). Returns the seconds it took.
fn fill(db: &Path, finished: usize, queued: usize) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let mut conn = Connection::open(db)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let tx = conn.transaction()?;
    let now = now_ns();
    let run = now as u64;
    {
        let mut insert = tx.prepare(
            "INSERT INTO tasks (id, session, tool, arguments, timeout_ns, idempotency_key,
                 created_at, state, attempts, started_at, finished_at, result, error_code,
                 error_message, seq)
             VALUES (?1, ?2, 'noop', ?3, 0, NULL, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, ?10)",
        )?;
        let mut session_row =
            tx.prepare("INSERT OR REPLACE INTO sessions (session, last_seq) VALUES (?1, ?2)")?;
        for k in 0..finished + queued {
            let id = ((u128::from(run) << 64) | k as u128).to_be_bytes();
            let done = k < finished;
            let session = if done {
                format!("fill-{run:x}-{}", k / PER_SESSION)
            } else {
                format!("fill-{run:x}-queued")
            };
            let seq = if done {
                (k % PER_SESSION + 1) as i64
            } else {
                0
            };
            let arguments = format!("{{\"query\":\"retained task number {k:>12}\",\"i\":{k}}}");
            let at = now - ((finished + queued - k) as i64) * 1000;
            insert.execute(params![
                &id[..],
                session,
                arguments,
                at,
                if done { 2 } else { 0 },
                i64::from(done),
                done.then_some(at),
                done.then_some(at),
                done.then(|| format!("{{\"answer\":\"result of task {k:>12}\",\"t\":{at}}}")),
                seq,
            ])?;
            if done && (k % PER_SESSION + 1 == PER_SESSION || k + 1 == finished) {
                session_row.execute(params![session, seq])?;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(t0.elapsed().as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

/// Fills the data dir (errand makes the schema first), then times `runs`
/// starts after clean stops and one after a crash.
pub async fn restart(o: RestartOpts) -> anyhow::Result<Value> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&o.data_dir)?;
    let mut fill_s = None;
    if o.fill + o.queued > 0 {
        let (s, _, _) = start(&o.errand, &o.data_dir).await?;
        stop(s, "TERM").await?;
        let db = o.data_dir.join("errand.db");
        let (db2, finished, queued) = (db.clone(), o.fill, o.queued);
        fill_s = Some(tokio::task::spawn_blocking(move || fill(&db2, finished, queued)).await??);
    }
    let db_bytes = std::fs::metadata(o.data_dir.join("errand.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    // The first start after the fill is not timed: it warms the page cache
    // as any start after a running server would find it.
    let (s, _, _) = start(&o.errand, &o.data_dir).await?;
    stop(s, "TERM").await?;
    let (mut listening, mut serving, mut stops) = (Vec::new(), Vec::new(), Vec::new());
    let (mut each_ms, mut marked) = (Vec::new(), Vec::new());
    for _ in 0..o.runs.max(1) {
        marked.push(json!({
            "mark": o.data_dir.join("errand.clean").exists(),
            "wal": o.data_dir.join("errand.db-wal").metadata().map(|m| m.len()).ok(),
        }));
        let (s, l, sv) = start(&o.errand, &o.data_dir).await?;
        each_ms.push(ms(sv));
        listening.push(l.as_nanos() as u64);
        serving.push(sv.as_nanos() as u64);
        stops.push(stop(s, "TERM").await?.as_nanos() as u64);
    }
    // A crash: the next start finds no clean-stop mark.
    let (s, _, _) = start(&o.errand, &o.data_dir).await?;
    let addr = s.addr.clone();
    stop(s, "KILL").await?;
    let (s, after_crash_listen, after_crash) = start(&o.errand, &o.data_dir).await?;
    stop(s, "TERM").await?;
    Ok(json!({
        "workload": "restart",
        "retained_tasks": o.fill,
        "queued_tasks": o.queued,
        "fill_seconds": fill_s,
        "db_bytes": db_bytes,
        "runs": o.runs.max(1),
        "listening": summarize(listening, None)?,
        "serving": summarize(serving, None)?,
        "stop": summarize(stops, None)?,
        "serving_each_ms": each_ms,
        "clean_mark_before_each": marked,
        "after_crash_listening_ms": ms(after_crash_listen),
        "after_crash_serving_ms": ms(after_crash),
        "last_addr": addr,
    }))
}
