//! Store benchmark: submit + result throughput and latency, in-memory vs
//! durable SQLite, at several concurrencies.
//!
//! Each of N concurrent clients loops for a fixed time: `insert_task` (what a
//! `SubmitTool` waits for before it answers) then `finish_task` (what a worker
//! result waits for before its completion is streamed). With SQLite both are
//! durable (WAL, `synchronous=FULL`); group commit lets concurrent calls share
//! one fsync.
//!
//! ```text
//! cargo run --release -p errand-server --example store_bench -- [--seconds 3] [--max-tasks 200000] [--dir PATH]
//! ```
//! A row ends after `--seconds` or `--max-tasks` tasks, whichever comes first
//! (the in-memory store keeps every task it is given, so it needs the cap).
//! `--dir` picks the file system the SQLite files go on (default: the system
//! temp dir); put it on the disk you mean to measure, not a tmpfs.
//! `--postgres URL` adds rows for a PostgreSQL store on that database (its
//! tables are created if missing; use a scratch database).
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use errand_server::{
    model::{Finish, Outcome, TaskRecord, TaskState},
    store::{
        Store,
        memory::MemoryStore,
        postgres::{PostgresOptions, PostgresStore},
        sqlite::SqliteStore,
    },
};
use uuid::Uuid;

const CONCURRENCY: [usize; 3] = [1, 16, 256];

struct Run {
    tasks: usize,
    elapsed: Duration,
    submit: Vec<Duration>,
    result: Vec<Duration>,
    commits: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 3.0_f64;
    let mut max_tasks = 200_000_usize;
    let mut dir = std::env::temp_dir();
    let mut postgres: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().ok_or("--seconds needs a value")?.parse()?,
            "--max-tasks" => max_tasks = args.next().ok_or("--max-tasks needs a value")?.parse()?,
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir needs a value")?),
            "--postgres" => postgres = Some(args.next().ok_or("--postgres needs a URL")?),
            "-h" | "--help" => {
                println!(
                    "usage: store_bench [--seconds S] [--max-tasks N] [--dir PATH] [--postgres URL]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    let duration = Duration::from_secs_f64(seconds);
    println!(
        "store benchmark: {seconds} s per row; one task = insert_task + finish_task; \
         sqlite files under {}",
        dir.display()
    );
    println!();
    println!(
        "{:<8} {:>5} {:>9} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "store",
        "conc",
        "tasks",
        "tasks/s",
        "submit p50",
        "submit p99",
        "result p50",
        "result p99",
        "tasks/fsync"
    );
    for name in ["memory", "sqlite"] {
        for concurrency in CONCURRENCY {
            let scratch = tempfile::tempdir_in(&dir)?;
            let (store, sqlite): (Arc<dyn Store>, Option<Arc<SqliteStore>>) = match name {
                "memory" => (Arc::new(MemoryStore::default()), None),
                _ => {
                    let s = Arc::new(SqliteStore::open(scratch.path())?);
                    (s.clone(), Some(s))
                }
            };
            let before = sqlite.as_ref().map(|s| s.stats().commits);
            let mut run = run(store, concurrency, duration, max_tasks).await;
            run.commits = sqlite
                .as_ref()
                .zip(before)
                .map(|(s, b)| s.stats().commits - b);
            print_row(name, concurrency, &mut run);
        }
    }
    if let Some(url) = postgres {
        for concurrency in CONCURRENCY {
            let pg = Arc::new(PostgresStore::connect(&url, PostgresOptions::default()).await?);
            let before = pg.stats().commits;
            let mut run = run(pg.clone(), concurrency, duration, max_tasks).await;
            run.commits = Some(pg.stats().commits - before);
            print_row("postgres", concurrency, &mut run);
        }
    }
    Ok(())
}

async fn run(store: Arc<dyn Store>, concurrency: usize, duration: Duration, max: usize) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|i| {
            let store = store.clone();
            let stop = stop.clone();
            let started = started.clone();
            tokio::spawn(async move {
                let session = format!("session-{}", i % 64);
                let (mut submit, mut result) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) && started.fetch_add(1, Ordering::Relaxed) < max
                {
                    let task = task(&session);
                    let t0 = Instant::now();
                    store.insert_task(&task).await.expect("insert_task");
                    let t1 = Instant::now();
                    store.record_dispatch(task.id, 1, SystemTime::now());
                    let finish = Finish {
                        task_id: task.id,
                        state: TaskState::Succeeded,
                        outcome: Outcome::Result(r#"{"temperature_c":21,"sky":"clear"}"#.into()),
                        attempts: 1,
                        finished_at: SystemTime::now(),
                    };
                    let t2 = Instant::now();
                    store.finish_task(&finish).await.expect("finish_task");
                    submit.push(t1 - t0);
                    result.push(t2.elapsed());
                }
                (submit, result)
            })
        })
        .collect();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let (mut submit, mut result) = (Vec::new(), Vec::new());
    for c in clients {
        let (s, r) = c.await.expect("client");
        submit.extend(s);
        result.extend(r);
    }
    let elapsed = start.elapsed();
    timer.abort();
    Run {
        tasks: submit.len(),
        elapsed,
        submit,
        result,
        commits: None,
    }
}

fn task(session: &str) -> TaskRecord {
    TaskRecord {
        id: Uuid::new_v4(),
        session: session.into(),
        tool: "weather".into(),
        arguments: r#"{"city":"Lyon","units":"metric","days":3}"#.into(),
        timeout: Duration::from_secs(30),
        queue_deadline: Some(SystemTime::now() + Duration::from_secs(300)),
        idempotency_key: None,
        created_at: SystemTime::now(),
        state: TaskState::Queued,
        attempts: 0,
        started_at: None,
        finished_at: None,
        outcome: None,
        seq: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn print_row(store: &str, concurrency: usize, run: &mut Run) {
    run.submit.sort_unstable();
    run.result.sort_unstable();
    // Each task is two durable writes (submit and result) besides the
    // dispatch record that rides along.
    let per_fsync = run
        .commits
        .filter(|c| *c > 0)
        .map(|c| format!("{:.1}", run.tasks as f64 / c as f64))
        .unwrap_or_else(|| "-".into());
    println!(
        "{:<8} {:>5} {:>9} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>12}",
        store,
        concurrency,
        run.tasks,
        run.tasks as f64 / run.elapsed.as_secs_f64(),
        ms(percentile(&run.submit, 0.50)),
        ms(percentile(&run.submit, 0.99)),
        ms(percentile(&run.result, 0.50)),
        ms(percentile(&run.result, 0.99)),
        per_fsync,
    );
}
