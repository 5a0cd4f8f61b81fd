//! Open-loop submits: requests leave on a fixed schedule whatever the server
//! does, and each one's latency is counted from its scheduled time, so a slow
//! answer that delays the next send is not excused (no coordinated omission).
//! A thread of its own paces the sends ([`crate::pace`]): tokio's 1 ms timer
//! would add up to a millisecond of its own lateness to every figure.
//!
//! The first `warmup_seconds` run on the same schedule and are reported
//! apart: a fresh server's first requests on new connections and sessions
//! (cold caches, a new WAL file, the runtime's threads waking) would
//! otherwise be a third of the slowest 1 % of an 8,000-request run, and the
//! p99 would measure the start, not the steady rate.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use errand_client::Client;
use serde_json::{Value, json};
use tokio::{runtime::Handle, task::JoinSet};

use crate::{
    agent::{run_id, wait_for_tool},
    pace::{self, Slots, pace},
    stats::{CpuMeter, summarize},
};

pub struct OpenLoopOpts {
    /// Connections, each with its own session; requests go round robin.
    pub agents: usize,
    /// Submits per second, in all.
    pub rate: f64,
    /// Seconds measured, after the warm-up.
    pub seconds: f64,
    /// Seconds sent first at the same rate and reported apart (`warmup`).
    pub warmup_seconds: f64,
    pub tool: String,
}

/// Submits `rate × (warmup_seconds + seconds)` calls at evenly spaced times;
/// ack latency from each call's scheduled time to its answer, the warm-up's
/// apart. With `server_pid`, the server's CPU time per measured submit (from
/// /proc), and this load generator's separately. With `timeline`, writes
/// one line per submit, warm-up included, in slot order: the slot, its
/// lateness and its ack latency in µs (`-` for an error), to see when a
/// tail happened.
pub async fn open_loop(
    addr: &str,
    server_pid: Option<u32>,
    o: OpenLoopOpts,
    samples: Option<&Path>,
    timeline: Option<&Path>,
) -> anyhow::Result<Value> {
    let probe = Client::connect(addr).await?;
    wait_for_tool(&probe, &o.tool).await?;
    let run = run_id();
    let mut clients = Vec::with_capacity(o.agents);
    for _ in 0..o.agents {
        clients.push(Client::connect(addr).await?);
    }
    let count = (o.rate * o.seconds).round() as usize;
    let warm = (o.rate * o.warmup_seconds.max(0.0)).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    // A request still unanswered this long after its slot counts as failed.
    let limit = Duration::from_secs(30);
    let start = Instant::now() + Duration::from_millis(20);
    // CPU is counted from the first measured slot's time (within tokio's
    // 1 ms timer tick of it).
    let measured_from = start + interval.mul_f64(warm as f64);
    let sends = Sends {
        runtime: Handle::current(),
        sessions: (0..o.agents)
            .map(|i| format!("open-{run}-{i}").into())
            .collect(),
        clients,
        tool: o.tool.as_str().into(),
        limit,
        set: JoinSet::new(),
        warm,
        warmup: Outcomes::with_capacity(warm),
        outcomes: Outcomes::with_capacity(count),
        max_inflight: 0,
    };
    let pacer = pace(start, interval, warm + count, sends);
    tokio::time::sleep_until(measured_from.into()).await;
    let cpu = CpuMeter::start(&server_pid.into_iter().collect::<Vec<_>>());
    let mut sends = tokio::task::spawn_blocking(move || pace::finish(pacer)).await??;
    // The submits still in flight (each is bounded by `limit`).
    while let Some(done) = sends.set.join_next().await {
        sends.add(done);
    }
    let secs = measured_from.elapsed().as_secs_f64();
    let cpu = cpu.stop();
    if let Some(path) = timeline {
        let slot0 = monotonic_secs() - start.elapsed().as_secs_f64();
        write_timeline(
            path,
            slot0,
            &mut sends.warmup.slots,
            &mut sends.outcomes.slots,
        )?;
    }
    let Outcomes {
        latencies,
        lateness,
        errors,
        first_error,
        ..
    } = std::mem::take(&mut sends.outcomes);
    let max_inflight = sends.max_inflight;
    let per = |s: f64| s * 1e6 / count.max(1) as f64;
    let server_cpu = server_pid.map(|_| per(cpu[0].seconds));
    let own_cpu = per(cpu.last().map(|c| c.seconds).unwrap_or(0.0));
    Ok(json!({
        "workload": "open_loop",
        "agents": o.agents,
        "rate": o.rate,
        "warmup_seconds": o.warmup_seconds,
        "scheduled": count,
        "accepted": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "complete": errors == 0 && latencies.len() == count,
        "seconds": secs,
        "achieved_per_s": latencies.len() as f64 / secs,
        "max_in_flight": max_inflight,
        "server_cpu_us_per_submit": server_cpu,
        "loadgen_cpu_us_per_submit": own_cpu,
        "ack": summarize(latencies, samples)?,
        // Send time minus scheduled time: the generator's own error, which
        // the ack latency includes. Small next to the ack figures, or they
        // measure the generator.
        "lateness": summarize(lateness, None)?,
        // The warm-up's submits (not in the figures above).
        "warmup": {
            "scheduled": warm,
            "errors": sends.warmup.errors,
            "ack": summarize(sends.warmup.latencies, None)?,
        },
    }))
}

/// A submit's slot, its ack latency (or its error), and its lateness, both in
/// ns from its scheduled time.
type Outcome = (usize, Result<u64, String>, u64);

/// The pacer's state: it spawns each submit onto the runtime at its slot,
/// and collects those that finished meanwhile without waiting.
struct Sends {
    runtime: Handle,
    clients: Vec<Client>,
    sessions: Vec<Arc<str>>,
    tool: Arc<str>,
    limit: Duration,
    set: JoinSet<Outcome>,
    /// Slots below this are the warm-up's.
    warm: usize,
    warmup: Outcomes,
    outcomes: Outcomes,
    max_inflight: usize,
}

impl Sends {
    /// Files a finished submit under the warm-up or the measured run. A
    /// submit task does not panic; if one did, it counts as an error of the
    /// measured run.
    fn add(&mut self, done: Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok((k, ack, late)) if k < self.warm => self.warmup.add(k, ack, late),
            Ok((k, ack, late)) => self.outcomes.add(k, ack, late),
            Err(e) => self.outcomes.error(format!("a submit task failed: {e}")),
        }
    }
}

impl Slots for Sends {
    fn fire(&mut self, k: usize, at: Instant) {
        while let Some(done) = self.set.try_join_next() {
            self.add(done);
        }
        if k >= self.warm {
            self.max_inflight = self.max_inflight.max(self.set.len());
        }
        let client = self.clients[k % self.clients.len()].clone();
        let session = self.sessions[k % self.sessions.len()].clone();
        let (tool, limit) = (self.tool.clone(), self.limit);
        self.set.spawn_on(
            async move {
                let args = format!("{{\"i\":{k}}}");
                // The generator's own lateness: when the request really leaves.
                let late = at.elapsed().as_nanos() as u64;
                let ack = match tokio::time::timeout(limit, client.submit(&session, &tool, &args))
                    .await
                {
                    Ok(Ok(_)) => Ok(at.elapsed().as_nanos() as u64),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {limit:?}")),
                };
                (k, ack, late)
            },
            &self.runtime,
        );
    }
}

#[derive(Default)]
struct Outcomes {
    latencies: Vec<u64>,
    lateness: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
    /// (slot, lateness, ack latency) of each submit, in ns.
    slots: Vec<(usize, u64, Option<u64>)>,
}

impl Outcomes {
    fn with_capacity(n: usize) -> Self {
        Self {
            latencies: Vec::with_capacity(n),
            lateness: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    fn add(&mut self, k: usize, ack: Result<u64, String>, late: u64) {
        self.lateness.push(late);
        self.slots.push((k, late, ack.as_ref().ok().copied()));
        match ack {
            Ok(ns) => self.latencies.push(ns),
            Err(e) => self.error(e),
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Writes the submits of both phases in slot order (see [`open_loop`]).
fn write_timeline(
    path: &Path,
    slot0: f64,
    warmup: &mut [(usize, u64, Option<u64>)],
    measured: &mut [(usize, u64, Option<u64>)],
) -> anyhow::Result<()> {
    use std::io::Write;
    warmup.sort_unstable();
    measured.sort_unstable();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    // CLOCK_MONOTONIC, as `perf trace -T` prints it (in ms), to line a tail
    // up with what the server did then.
    writeln!(out, "# slot 0 at CLOCK_MONOTONIC {slot0:.6} s")?;
    for (k, late, ack) in warmup.iter().chain(measured.iter()) {
        let us = |ns: u64| ns as f64 / 1e3;
        match ack {
            Some(ack) => writeln!(out, "{k} {:.1} {:.1}", us(*late), us(*ack))?,
            None => writeln!(out, "{k} {:.1} -", us(*late))?,
        }
    }
    out.flush()?;
    Ok(())
}

/// CLOCK_MONOTONIC in seconds (what `Instant` reads on Linux).
fn monotonic_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
