//! `errand-bench`: the Rust side of errand's benchmark. See `bench/README.md`.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use errand_bench::{agent, echo, floor, openloop, restart, workers};

#[derive(Parser)]
#[command(about = "Load generator, workers and echo for errand's benchmark (driven by bench/run)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bench tools (noop, sleep, stall) on errand's Rust worker runtime.
    Worker {
        #[arg(long)]
        addr: String,
        #[arg(long, value_delimiter = ',', default_values_t = workers::TOOLS.map(String::from))]
        tools: Vec<String>,
        #[arg(long, default_value_t = 256)]
        concurrency: u32,
        /// Stop after this long whatever happens.
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
    },
    /// Serve the plain tonic echo; prints "echo listening on ADDR".
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Sequential unary echo round trips.
    Echo {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 5000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// The disk's floor: fdatasync of small appends in DIR.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Syncs per second, paced as the open-loop bench paces submits (a
        /// disk's stalls come every second or so: a back-to-back run of a
        /// few hundred ms can miss them); 0 is back to back.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Bytes appended before each sync (a commit of the durable store
        /// writes a few 4 KiB WAL frames).
        #[arg(long, default_value_t = 128)]
        bytes: usize,
    },
    /// Workload 1: agents submitting as fast as they can (or at --rate).
    Submit {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, default_value_t = 1)]
        agents: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Total submits per second; 0 is as fast as possible.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value = "stall")]
        tool: String,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// The machine's floor for open-loop latency: how late a thread sleeping
    /// to evenly spaced slots wakes (errand not involved).
    Wake {
        /// Slots per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Open-loop submits at a fixed rate: ack latency from each scheduled time.
    OpenLoop {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, default_value_t = 16)]
        agents: usize,
        /// Submits per second, in all.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds measured, after the warm-up.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seconds sent first at the same rate, reported apart as `warmup`.
        #[arg(long, default_value_t = 1.0)]
        warmup_seconds: f64,
        #[arg(long, default_value = "stall")]
        tool: String,
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Writes "slot lateness_us ack_us" per submit, warm-up included.
        #[arg(long)]
        timeline: Option<PathBuf>,
    },
    /// Restart time: fill a data dir with retained tasks, time starts to serving.
    Restart {
        /// The errand binary.
        #[arg(long)]
        errand: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// Finished tasks to write into the store first (0: use the dir as it is).
        #[arg(long, default_value_t = 1_000_000)]
        fill: usize,
        /// Queued tasks to write too (recovery takes them up at each start).
        #[arg(long, default_value_t = 1000)]
        queued: usize,
        /// Timed starts after a clean stop.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Workload 2: tasks end to end through the workers.
    E2e {
        #[arg(long)]
        addr: String,
        /// Processes whose CPU time counts towards the per-task overhead.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[arg(long, default_value_t = 4)]
        agents: usize,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 512)]
        window: usize,
        #[arg(long, default_value_t = 32)]
        pipeline: usize,
        #[arg(long, default_value = "noop")]
        tool: String,
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
        /// Submits per second in all (open loop); 0 is as fast as the window allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// Workload 3, light load: one task at a time.
    Delivery {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// Workload 4: out-of-order fan-out of sleeping tasks.
    Fanout {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        max_sleep_ms: u64,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long, default_value_t = 32)]
        pipeline: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// Workload 5: the seed's claim, gather against errand.
    SeedClaim {
        #[arg(long)]
        addr: String,
        #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 5000, 15000])]
        sleeps_ms: Vec<u64>,
    },
    /// Workload 6: many sessions with open completion streams.
    Sessions {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        #[arg(long, default_value_t = 20)]
        channels: usize,
        #[arg(long, default_value_t = 20_000)]
        tasks: usize,
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
        #[arg(long)]
        samples: Option<PathBuf>,
    },
}

async fn run(command: Command) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(Some(match command {
        Command::Worker {
            addr,
            tools,
            concurrency,
            max_secs,
        } => {
            workers::serve(&addr, &tools, concurrency, max_secs).await?;
            return Ok(None);
        }
        Command::EchoServer { listen } => {
            echo::serve(&listen).await?;
            return Ok(None);
        }
        Command::Echo {
            addr,
            count,
            payload,
            samples,
        } => echo::measure(&addr, count, payload, samples.as_deref()).await?,
        Command::Fsync {
            dir,
            count,
            rate,
            bytes,
        } => floor::fsync(&dir, count, rate, bytes)?,
        Command::Wake { rate, seconds } => floor::wake(rate, seconds)?,
        Command::Submit {
            addr,
            server_pid,
            agents,
            count,
            rate,
            tool,
            max_secs,
            samples,
        } => {
            let o = agent::SubmitOpts {
                agents: agents.max(1),
                count,
                rate,
                tool,
                max_secs,
            };
            agent::submit(&addr, server_pid, o, samples.as_deref()).await?
        }
        Command::E2e {
            addr,
            pids,
            agents,
            count,
            window,
            pipeline,
            tool,
            max_secs,
            rate,
            samples,
        } => {
            let o = agent::E2eOpts {
                rate,
                agents: agents.max(1),
                count,
                window: window.max(1),
                pipeline: pipeline.max(1),
                tool,
                max_secs,
            };
            agent::e2e(&addr, &pids, o, samples.as_deref()).await?
        }
        Command::OpenLoop {
            addr,
            server_pid,
            agents,
            rate,
            seconds,
            warmup_seconds,
            tool,
            samples,
            timeline,
        } => {
            let o = openloop::OpenLoopOpts {
                agents: agents.max(1),
                rate: rate.max(1.0),
                seconds,
                warmup_seconds,
                tool,
            };
            openloop::open_loop(
                &addr,
                server_pid,
                o,
                samples.as_deref(),
                timeline.as_deref(),
            )
            .await?
        }
        Command::Restart {
            errand,
            data_dir,
            fill,
            queued,
            runs,
        } => {
            restart::restart(restart::RestartOpts {
                errand,
                data_dir,
                fill,
                queued,
                runs,
            })
            .await?
        }
        Command::Delivery {
            addr,
            count,
            samples,
        } => agent::delivery(&addr, count, samples.as_deref()).await?,
        Command::Fanout {
            addr,
            count,
            max_sleep_ms,
            concurrency,
            pipeline,
            seed,
            max_secs,
            samples,
        } => {
            let o = agent::FanoutOpts {
                count,
                max_sleep_ms,
                concurrency: concurrency.max(1),
                pipeline: pipeline.max(1),
                seed,
                max_secs,
            };
            agent::fanout(&addr, o, samples.as_deref()).await?
        }
        Command::SeedClaim { addr, sleeps_ms } => agent::seed_claim(&addr, &sleeps_ms).await?,
        Command::Sessions {
            addr,
            server_pid,
            streams,
            channels,
            tasks,
            rate,
            max_secs,
            samples,
        } => {
            let o = agent::SessionsOpts {
                streams: streams.max(1),
                channels: channels.max(1),
                tasks,
                rate,
                max_secs,
            };
            agent::sessions(&addr, server_pid, o, samples.as_deref()).await?
        }
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(Some(summary)) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("errand-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
