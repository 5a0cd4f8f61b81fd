//! End-to-end benchmark of no-op tasks: tasks/s (submit → worker → result →
//! completion on a stream) and the latency of `SubmitTool`'s answer (ack),
//! with 1, 2 and 3 servers on one PostgreSQL database, beside the embedded
//! stores. A program of the bench crate (`errand-bench-pg`): run `bench/pg/run.sh`, which writes
//! `bench/pg/RESULTS.md`.
//!
//! Everything runs on this machine: PostgreSQL (durable settings: fsync and
//! synchronous_commit on), the servers (release build), and this process,
//! which is both the agents and the workers.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use errand_client::{
    Client, endpoint, pb,
    worker::{self, Handler, WorkerConfig},
};
use errand_testkit::{ServeProcess as Server, pg};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

const SESSIONS: usize = 8;
const IN_FLIGHT: usize = 128;

struct Noop;

#[async_trait::async_trait]
impl Handler for Noop {
    async fn run(&self, _: pb::Assignment, _: CancellationToken) -> Result<String, pb::ToolError> {
        Ok("{}".into())
    }
}

struct Measured {
    label: String,
    tasks: usize,
    secs: f64,
    ack_p50_us: u64,
    ack_p99_us: u64,
    /// Acks of one submit at a time: the floor of a submit's latency.
    idle_p50_us: u64,
    idle_p99_us: u64,
    /// CPU seconds per 1,000 tasks: (postgres, errand servers, this process).
    cpu: (f64, f64, f64),
}

/// CPU seconds used so far by processes named `postgres`, `errand`, and
/// this one, from /proc.
fn cpu_now() -> (f64, f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    let me = std::process::id().to_string();
    let mut out = (0.0, 0.0, 0.0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let used = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        let secs = used / tick;
        if name == me {
            out.2 += secs;
        } else if comm == "postgres" {
            out.0 += secs;
        } else if comm == "errand" {
            out.1 += secs;
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/pg/RESULTS.md".into());
    let bin = pg::bin_dir().expect("PostgreSQL's binaries (Debian's postgresql package)");
    // Durable PostgreSQL: the defaults (fsync=on, synchronous_commit=on).
    let cluster = pg::Cluster::start(&bin, &[]);
    let mut rows = Vec::new();
    // BENCH_ONLY=postgres skips the embedded stores; BENCH_SERVERS=1 runs
    // only that many PostgreSQL servers.
    let only_pg = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "postgres");
    let max_servers: usize = std::env::var("BENCH_SERVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    if !only_pg {
        embedded(&mut rows, tasks).await;
    }
    for n in 1..=max_servers {
        let url = cluster.create_database().await;
        let mut servers = Vec::new();
        for _ in 0..n {
            let args = ["--store", "postgres", "--database-url", &url].map(String::from);
            servers.push(Server::start("127.0.0.1:0", &args).await);
        }
        let label = format!(
            "PostgreSQL store (durable), {n} server{}",
            if n > 1 { "s" } else { "" }
        );
        rows.push(run(&label, &servers, tasks).await);
    }

    let mut md = String::new();
    md.push_str(&format!(
        "| setup | tasks | tasks/s end to end | ack p50 / p99 ({IN_FLIGHT} in flight) | \
         ack p50 / p99 (1 in flight) | CPU s per 1k tasks: postgres / errand / agents+workers |\n"
    ));
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} |\n",
            r.label,
            r.tasks,
            r.tasks as f64 / r.secs,
            r.ack_p50_us as f64 / 1000.0,
            r.ack_p99_us as f64 / 1000.0,
            r.idle_p50_us as f64 / 1000.0,
            r.idle_p99_us as f64 / 1000.0,
            r.cpu.0,
            r.cpu.1,
            r.cpu.2,
        ));
    }
    print!("{md}");
    std::fs::write(&out, md).expect("writing the results table");
    eprintln!("table written to {out}");
}

/// The embedded stores, as the baseline: memory, then durable SQLite.
async fn embedded(rows: &mut Vec<Measured>, tasks: usize) {
    let server = Server::start("127.0.0.1:0", &["--store".into(), "memory".into()]).await;
    rows.push(run("memory store, 1 server", &[server], tasks).await);
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "--store".into(),
        "sqlite".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
    ];
    let server = Server::start("127.0.0.1:0", &args).await;
    rows.push(
        run(
            "SQLite store (embedded, durable), 1 server",
            &[server],
            tasks,
        )
        .await,
    );
}

/// Runs `tasks` no-op tasks through `servers`: one worker (concurrency 512)
/// per server, agents submitting through every server in turn with
/// [`IN_FLIGHT`] submits outstanding, each session followed by one stream.
async fn run(label: &str, servers: &[Server], tasks: usize) -> Measured {
    let stop = CancellationToken::new();
    for s in servers {
        let config = WorkerConfig {
            name: "noop".into(),
            tools: vec![pb::Tool {
                name: "noop".into(),
                description: "Does nothing.".into(),
                ..Default::default()
            }],
            max_concurrency: 512,
            token: None,
        };
        tokio::spawn(worker::run(
            endpoint(&s.addr).unwrap().connect_lazy(),
            config,
            Arc::new(Noop),
            stop.clone(),
            |_| {},
        ));
    }
    for s in servers {
        let client = Client::connect(&s.addr).await.unwrap();
        loop {
            let tools = client.list_tools().await.unwrap();
            if tools
                .iter()
                .any(|t| t.name == "noop" && t.workers as usize == servers.len())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let clients: Vec<Client> = servers
        .iter()
        .map(|s| Client::from_channel(endpoint(&s.addr).unwrap().connect_lazy()))
        .collect();
    // Warm up, then measure.
    drive(&clients, "warm", tasks / 10, IN_FLIGHT).await;
    let before = cpu_now();
    let (secs, mut acks) = drive(&clients, "run", tasks, IN_FLIGHT).await;
    let after = cpu_now();
    let (_, mut idle) = drive(&clients, "idle", 1000, 1).await;
    stop.cancel();
    acks.sort_unstable();
    idle.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let per_k = |a: f64, b: f64| (a - b) * 1000.0 / tasks as f64;
    let m = Measured {
        label: label.into(),
        tasks,
        secs,
        ack_p50_us: pct(&acks, 0.50),
        ack_p99_us: pct(&acks, 0.99),
        idle_p50_us: pct(&idle, 0.50),
        idle_p99_us: pct(&idle, 0.99),
        cpu: (
            per_k(after.0, before.0),
            per_k(after.1, before.1),
            per_k(after.2, before.2),
        ),
    };
    eprintln!(
        "{label}: {:.0} tasks/s, ack p50 {} µs, p99 {} µs",
        tasks as f64 / secs,
        m.ack_p50_us,
        m.ack_p99_us
    );
    m
}

/// Submits `tasks` tasks and waits for all their completions. Returns the
/// seconds from the first submit to the last completion, and each ack's
/// latency in µs.
async fn drive(clients: &[Client], tag: &str, tasks: usize, in_flight: usize) -> (f64, Vec<u64>) {
    let prefix = format!("{tag}-{}", uuid_like());
    let mut done = Vec::new();
    for s in 0..SESSIONS {
        let (tx, rx) = watch::channel(0usize);
        let client = clients[s % clients.len()].clone();
        let session = format!("{prefix}-{s}");
        tokio::spawn(async move {
            let mut stream = client.completions(&session, 0);
            let mut n = 0;
            while let Some(Ok(_)) = stream.next().await {
                n += 1;
                tx.send_replace(n);
            }
        });
        done.push(rx);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::with_capacity(tasks)));
    let started = Instant::now();
    let mut agents = Vec::new();
    for _ in 0..in_flight {
        let (clients, next, acks, prefix) =
            (clients.to_vec(), next.clone(), acks.clone(), prefix.clone());
        agents.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tasks {
                    break;
                }
                let session = format!("{prefix}-{}", i % SESSIONS);
                let t0 = Instant::now();
                clients[i % clients.len()]
                    .submit(&session, "noop", "{}")
                    .await
                    .expect("submit");
                mine.push(t0.elapsed().as_micros() as u64);
            }
            acks.lock().unwrap().extend(mine);
        }));
    }
    for a in agents {
        a.await.unwrap();
    }
    for (s, rx) in done.iter_mut().enumerate() {
        let want = (0..tasks).filter(|i| i % SESSIONS == s).count();
        rx.wait_for(|n| *n >= want).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    (secs, acks)
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
