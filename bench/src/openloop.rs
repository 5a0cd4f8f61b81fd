//! Open-loop submits: requests leave on a fixed schedule whatever the server
//! does, and each one's latency is counted from its scheduled time, so a slow
//! answer that delays the next send is not excused (no coordinated omission).
use std::{
    path::Path,
    time::{Duration, Instant},
};

use errand_client::Client;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    agent::{run_id, wait_for_tool},
    stats::{CpuMeter, summarize},
};

pub struct OpenLoopOpts {
    /// Connections, each with its own session; requests go round robin.
    pub agents: usize,
    /// Submits per second, in all.
    pub rate: f64,
    pub seconds: f64,
    pub tool: String,
}

/// Submits `rate × seconds` calls at evenly spaced times; ack latency from
/// each call's scheduled time to its answer. With `server_pid`, the server's
/// CPU time per submit (from /proc), and this load generator's separately.
pub async fn open_loop(
    addr: &str,
    server_pid: Option<u32>,
    o: OpenLoopOpts,
    samples: Option<&Path>,
) -> anyhow::Result<Value> {
    let probe = Client::connect(addr).await?;
    wait_for_tool(&probe, &o.tool).await?;
    let run = run_id();
    let mut clients = Vec::with_capacity(o.agents);
    for _ in 0..o.agents {
        clients.push(Client::connect(addr).await?);
    }
    let count = (o.rate * o.seconds).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    // A request still unanswered this long after its slot counts as failed.
    let limit = Duration::from_secs(30);
    let cpu = CpuMeter::start(&server_pid.into_iter().collect::<Vec<_>>());
    let start = Instant::now() + Duration::from_millis(20);
    let mut inflight = JoinSet::new();
    let mut latencies = Vec::with_capacity(count);
    let (mut errors, mut first_error, mut max_inflight) = (0usize, None, 0usize);
    for k in 0..count {
        let at = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(at.into()).await;
        // Collect what finished meanwhile, without waiting.
        while let Some(done) = inflight.try_join_next() {
            match done? {
                Ok(ns) => latencies.push(ns),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        max_inflight = max_inflight.max(inflight.len());
        let client = clients[k % o.agents].clone();
        let session = format!("open-{run}-{}", k % o.agents);
        let tool = o.tool.clone();
        inflight.spawn(async move {
            let args = format!("{{\"i\":{k}}}");
            match tokio::time::timeout(limit, client.submit(&session, &tool, &args)).await {
                Ok(Ok(_)) => Ok(at.elapsed().as_nanos() as u64),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {limit:?}")),
            }
        });
    }
    while let Some(done) = inflight.join_next().await {
        match done? {
            Ok(ns) => latencies.push(ns),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu.stop();
    let per = |s: f64| s * 1e6 / count.max(1) as f64;
    let server_cpu = server_pid.map(|_| per(cpu[0].1));
    let own_cpu = per(cpu.last().map(|c| c.1).unwrap_or(0.0));
    Ok(json!({
        "workload": "open_loop",
        "agents": o.agents,
        "rate": o.rate,
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
    }))
}
