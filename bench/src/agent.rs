//! The load-generating agent: one function per workload of the benchmark.
//! Each connects to a running errand server, does a bounded amount of work
//! under a time limit, and returns its figures as one JSON object.
use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use errand_client::{Client, pb, pb::tool_service_client::ToolServiceClient};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use crate::{
    host, pace,
    stats::{CpuMeter, now_ns, rss_kib, summarize},
};

/// Waits (at most 20 s) until a worker serves `tool`.
pub(crate) async fn wait_for_tool(client: &Client, tool: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(tools) = client.list_tools().await
            && tools.iter().any(|t| t.name == tool && t.workers > 0)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no worker serves tool {tool:?} after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A prefix that keeps this run's sessions apart from any earlier run's.
pub(crate) fn run_id() -> String {
    format!("{:x}", now_ns())
}

/// The unsigned integer after `"key":` in a small JSON object written by the
/// bench worker (cheaper than parsing it on the agent's hot path).
fn field_u64(json: &str, key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern)? + pattern.len();
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn result_json(c: &pb::Completion) -> Option<&str> {
    match &c.outcome {
        Some(pb::completion::Outcome::ResultJson(s)) => Some(s),
        _ => None,
    }
}

/// Delivery latency of a completion: now minus the worker's send stamp.
fn delivery_ns(c: &pb::Completion) -> Option<u64> {
    let sent = field_u64(result_json(c)?, "t")?;
    Some(now_ns().saturating_sub(sent))
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

pub struct SubmitOpts {
    pub agents: usize,
    pub count: usize,
    /// Total submits per second across agents; 0 means as fast as possible.
    pub rate: f64,
    pub tool: String,
    pub max_secs: u64,
}

/// Workload 1: `agents` agents, each on its own connection and session,
/// submit `count` calls in all; acks/s and ack latency. With a server pid,
/// also the server's RSS before and after, per accepted task.
pub async fn submit(
    addr: &str,
    server_pid: Option<u32>,
    o: SubmitOpts,
    samples: Option<&Path>,
) -> anyhow::Result<Value> {
    let probe = Client::connect(addr).await?;
    wait_for_tool(&probe, &o.tool).await?;
    let rss_before = server_pid.and_then(rss_kib);
    let run = run_id();
    let mut clients = Vec::with_capacity(o.agents);
    for _ in 0..o.agents {
        clients.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.max_secs);
    let mut handles = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let n = o.count / o.agents + usize::from(i < o.count % o.agents);
        let session = format!("submit-{run}-{i}");
        let tool = o.tool.clone();
        let pace = (o.rate > 0.0).then(|| {
            (
                Duration::from_secs_f64(i as f64 / o.rate),
                Duration::from_secs_f64(o.agents as f64 / o.rate),
            )
        });
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            let mut errors = Vec::new();
            for k in 0..n {
                if Instant::now() > deadline {
                    break;
                }
                if let Some((offset, interval)) = pace {
                    let at = start + offset + interval.mul_f64(k as f64);
                    tokio::time::sleep_until(at.into()).await;
                }
                let t = Instant::now();
                match client
                    .submit(&session, &tool, &format!("{{\"i\":{k}}}"))
                    .await
                {
                    Ok(_) => latencies.push(ns(t.elapsed())),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(o.count);
    let mut errors = Vec::new();
    for h in handles {
        let (l, e) = h.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    let secs = start.elapsed().as_secs_f64();
    let accepted = latencies.len();
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server_pid.and_then(rss_kib);
    let per_task = match (rss_before, rss_after) {
        (Some(b), Some(a)) if accepted > 0 => {
            Some(a.saturating_sub(b) as f64 * 1024.0 / accepted as f64)
        }
        _ => None,
    };
    Ok(json!({
        "workload": "submit",
        "agents": o.agents,
        "rate": o.rate,
        "accepted": accepted,
        "errors": errors.len(),
        "first_error": errors.first(),
        "complete": accepted == o.count,
        "seconds": secs,
        "acks_per_s": accepted as f64 / secs,
        "ack": summarize(latencies, samples)?,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "bytes_per_task": per_task,
    }))
}

pub struct E2eOpts {
    pub agents: usize,
    pub count: usize,
    /// Most unfinished tasks per agent.
    pub window: usize,
    /// Concurrent submit calls per agent.
    pub pipeline: usize,
    pub tool: String,
    pub max_secs: u64,
    /// Submits per second in all (open loop: each submit waits for its slot,
    /// not for the previous answer); 0 is as fast as the window allows.
    pub rate: f64,
}

/// Workload 2 (and 3 under heavy load): `count` tasks through the workers,
/// each agent keeping at most `window` unfinished; tasks/s, CPU per task of
/// the given processes, and delivery latency of every completion.
pub async fn e2e(
    addr: &str,
    cpu_pids: &[u32],
    o: E2eOpts,
    samples: Option<&Path>,
) -> anyhow::Result<Value> {
    let probe = Client::connect(addr).await?;
    wait_for_tool(&probe, &o.tool).await?;
    let run = run_id();
    let mut clients = Vec::with_capacity(o.agents);
    for _ in 0..o.agents {
        clients.push(Client::connect(addr).await?);
    }
    let (core_loop_us, memory_ns, wake_us) = (
        host::core_loop_us(),
        host::memory_access_ns(),
        host::wake_round_trip_us(),
    );
    let host = host::HostMeter::start();
    let cpu = CpuMeter::start(cpu_pids);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.max_secs);
    // With a rate, a pacer thread deals the slots (agent i's k-th submit at
    // (k × agents + i) / rate): tokio's 1 ms timer would send them in bursts.
    let mut lanes = (o.rate > 0.0).then(|| {
        pace::lanes(
            start,
            Duration::from_secs_f64(1.0 / o.rate),
            o.count,
            o.agents,
        )
        .into_iter()
        .map(|rx| Arc::new(tokio::sync::Mutex::new(rx)))
    });
    let mut handles = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let n = o.count / o.agents + usize::from(i < o.count % o.agents);
        let slots = lanes.as_mut().and_then(Iterator::next);
        let session = format!("e2e-{run}-{i}");
        let mut stream = client.completions(&session, 0);
        let window = Arc::new(Semaphore::new(o.window));
        let next = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let first_error = Arc::new(Mutex::new(None::<String>));
        for _ in 0..o.pipeline {
            let (client, session, tool) = (client.clone(), session.clone(), o.tool.clone());
            let (window, next, failed, first_error, slots) = (
                window.clone(),
                next.clone(),
                failed.clone(),
                first_error.clone(),
                slots.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let k = match &slots {
                        // Open loop: this agent's next slot, when it is due.
                        Some(rx) => match rx.lock().await.recv().await {
                            Some(k) => k,
                            None => break,
                        },
                        None => next.fetch_add(1, Ordering::Relaxed),
                    };
                    if k >= n || Instant::now() > deadline {
                        break;
                    }
                    let Ok(permit) = window.acquire().await else {
                        break;
                    };
                    permit.forget();
                    if let Err(e) = client
                        .submit(&session, &tool, &format!("{{\"i\":{k}}}"))
                        .await
                    {
                        failed.fetch_add(1, Ordering::Relaxed);
                        window.add_permits(1);
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                }
            });
        }
        handles.push(tokio::spawn(async move {
            let mut delivery = Vec::with_capacity(n);
            let (mut got, mut not_ok) = (0usize, 0usize);
            let mut last = start;
            while got + failed.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                    Ok(Some(Ok(c))) => {
                        window.add_permits(1);
                        got += 1;
                        last = Instant::now();
                        if c.status != pb::TaskStatus::Succeeded as i32 {
                            not_ok += 1;
                        }
                        if let Some(d) = delivery_ns(&c) {
                            delivery.push(d);
                        }
                    }
                    Ok(Some(Err(e))) => {
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            let error = first_error.lock().unwrap().clone();
            (
                got,
                not_ok,
                failed.load(Ordering::Relaxed),
                last,
                delivery,
                error,
            )
        }));
    }
    let (mut done, mut not_ok, mut failed, mut last) = (0, 0, 0, start);
    let mut delivery = Vec::with_capacity(o.count);
    let mut first_error = None;
    for h in handles {
        let (g, b, f, l, d, e) = h.await?;
        done += g;
        not_ok += b;
        failed += f;
        last = last.max(l);
        delivery.extend(d);
        first_error = first_error.or(e);
    }
    let secs = (last - start).as_secs_f64().max(1e-9);
    let cpu = cpu.stop();
    let mut host = host.stop();
    host["core_loop_us"] = json!(core_loop_us);
    host["memory_access_ns"] = json!(memory_ns);
    host["wake_round_trip_us"] = json!(wake_us);
    let cpu_total: f64 = cpu.iter().map(|c| c.seconds).sum();
    Ok(json!({
        "workload": "e2e",
        "tool": o.tool,
        "tasks": done,
        "not_succeeded": not_ok,
        "submit_errors": failed,
        "first_error": first_error,
        "complete": done == o.count && not_ok == 0,
        "seconds": secs,
        "tasks_per_s": done as f64 / secs,
        "wall_us_per_task": secs * 1e6 / done.max(1) as f64,
        "cpu_us_per_task": cpu_total * 1e6 / done.max(1) as f64,
        // Per process (the last is this load generator): CPU seconds, the
        // seconds its threads waited for a CPU (how full the cores were),
        // and its CPU seconds by thread name.
        "cpu_seconds": (cpu.iter())
            .map(|c| json!({
                "pid": c.pid,
                "seconds": c.seconds,
                "run_queue_wait_seconds": c.waited,
                "by_thread": c.by_thread,
            }))
            .collect::<Vec<_>>(),
        "delivery": summarize(delivery, samples)?,
        // The box during the run (`host.rs`): CPU stolen by other guests,
        // how busy its CPUs were, and a fixed loop's time just before.
        "host": host,
    }))
}

/// Workload 3 under light load: one task at a time, `count` times; delivery
/// latency (worker send to agent receipt) and submit-to-completion time.
pub async fn delivery(addr: &str, count: usize, samples: Option<&Path>) -> anyhow::Result<Value> {
    let client = Client::connect(addr).await?;
    wait_for_tool(&client, "noop").await?;
    let session = format!("delivery-{}", run_id());
    let mut stream = client.completions(&session, 0);
    let warmup = (count / 10).max(1);
    let (mut delivery, mut round_trip) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for k in 0..warmup + count {
        let t = Instant::now();
        client.submit(&session, "noop", "{}").await?;
        let c = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .context("no completion within 10 s")?
            .context("the completions stream ended")??;
        let d = delivery_ns(&c).context("a completion without the worker's stamp")?;
        if k >= warmup {
            round_trip.push(ns(t.elapsed()));
            delivery.push(d);
        }
    }
    Ok(json!({
        "workload": "delivery",
        "tasks": count,
        "delivery": summarize(delivery, samples)?,
        "submit_to_completion": summarize(round_trip, None)?,
    }))
}

pub struct FanoutOpts {
    pub count: usize,
    pub max_sleep_ms: u64,
    /// The worker's concurrency, for the ideal makespan.
    pub concurrency: usize,
    pub pipeline: usize,
    pub seed: u64,
    pub max_secs: u64,
}

/// The sleeps of the fan-out workload: uniform in 0..=max, reproducible from
/// `seed` (xorshift64*), the same list the Python peers draw.
pub fn sleeps(count: usize, max_ms: u64, seed: u64) -> Vec<u64> {
    let mut x = seed.max(1);
    (0..count)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % (max_ms + 1)
        })
        .collect()
}

/// Workload 4: `count` tasks sleeping 0..max ms; time to the last completion
/// against sum(sleeps) / concurrency, and every result matched to its task.
pub async fn fanout(addr: &str, o: FanoutOpts, samples: Option<&Path>) -> anyhow::Result<Value> {
    let client = Client::connect(addr).await?;
    wait_for_tool(&client, "sleep").await?;
    let session = format!("fanout-{}", run_id());
    let sleeps = Arc::new(sleeps(o.count, o.max_sleep_ms, o.seed));
    let ids = Arc::new(Mutex::new(vec![String::new(); o.count]));
    let mut stream = client.completions(&session, 0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.max_secs);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    for _ in 0..o.pipeline {
        let (client, session, sleeps, ids, next, failed) = (
            client.clone(),
            session.clone(),
            sleeps.clone(),
            ids.clone(),
            next.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= sleeps.len() || Instant::now() > deadline {
                    break;
                }
                let args = format!("{{\"ms\":{},\"id\":{k}}}", sleeps[k]);
                match client.submit(&session, "sleep", &args).await {
                    Ok(ack) => ids.lock().unwrap()[k] = ack.task_id,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let mut received: Vec<(String, Option<u64>)> = Vec::with_capacity(o.count);
    let mut delivery = Vec::with_capacity(o.count);
    let mut last = start;
    while received.len() + failed.load(Ordering::Relaxed) < o.count && Instant::now() < deadline {
        if let Ok(next) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            let c = next.context("the completions stream ended")??;
            last = Instant::now();
            received.push((
                c.task_id.clone(),
                result_json(&c).and_then(|r| field_u64(r, "id")),
            ));
            if let Some(d) = delivery_ns(&c) {
                delivery.push(d);
            }
        }
    }
    let makespan = (last - start).as_secs_f64();
    // Match after the fact: a completion can overtake its own submit's answer.
    let ids = ids.lock().unwrap();
    let mut seen = vec![false; o.count];
    let mut matched = 0;
    for (task_id, id) in &received {
        if let Some(id) = id.map(|i| i as usize).filter(|&i| i < o.count)
            && ids[id] == *task_id
            && !seen[id]
        {
            seen[id] = true;
            matched += 1;
        }
    }
    let ideal = sleeps.iter().sum::<u64>() as f64 / 1e3 / o.concurrency as f64;
    Ok(json!({
        "workload": "fanout",
        "tasks": o.count,
        "received": received.len(),
        "matched": matched,
        "submit_errors": failed.load(Ordering::Relaxed),
        "complete": matched == o.count,
        "makespan_s": makespan,
        "ideal_s": ideal,
        "ratio": makespan / ideal.max(1e-9),
        "delivery": summarize(delivery, samples)?,
    }))
}

/// Workload 5: three tools of the given durations, dispatched at once by two
/// agents. The gather agent waits for all three before acting (as with
/// `asyncio.gather`); the errand agent acts on each completion as it lands.
/// Idle time is the time an agent is blocked and cannot act or talk.
pub async fn seed_claim(addr: &str, sleeps_ms: &[u64]) -> anyhow::Result<Value> {
    let client = Client::connect(addr).await?;
    wait_for_tool(&client, "sleep").await?;
    let run = run_id();
    let agent = |gather: bool| {
        let client = client.clone();
        let session = format!("seed-{}-{run}", if gather { "gather" } else { "errand" });
        let sleeps = sleeps_ms.to_vec();
        async move {
            let mut stream = client.completions(&session, 0);
            let start = Instant::now();
            let mut blocked = Duration::ZERO;
            for (id, ms) in sleeps.iter().enumerate() {
                let t = Instant::now();
                client
                    .submit(&session, "sleep", &format!("{{\"ms\":{ms},\"id\":{id}}}"))
                    .await?;
                blocked += t.elapsed();
            }
            let limit = Duration::from_millis(sleeps.iter().max().copied().unwrap_or(0) + 30_000);
            let mut actions = Vec::new();
            for _ in &sleeps {
                tokio::time::timeout(limit, stream.next())
                    .await
                    .context("a completion did not arrive")?
                    .context("the completions stream ended")??;
                actions.push(start.elapsed().as_secs_f64());
            }
            if gather {
                // Blocked from dispatch until the slowest returned; then acts on all.
                let all = start.elapsed();
                actions = vec![all.as_secs_f64(); sleeps.len()];
                blocked = all;
            }
            anyhow::Ok(json!({
                "first_action_s": actions[0],
                "actions_s": actions,
                "idle_s": blocked.as_secs_f64(),
            }))
        }
    };
    let (gather, errand) = tokio::join!(agent(true), agent(false));
    Ok(json!({
        "workload": "seed_claim",
        "sleeps_ms": sleeps_ms,
        "gather": gather?,
        "errand": errand?,
    }))
}

pub struct SessionsOpts {
    pub streams: usize,
    pub channels: usize,
    pub tasks: usize,
    pub rate: f64,
    pub max_secs: u64,
}

/// Workload 6: `streams` sessions each with an open `Completions` stream,
/// over `channels` connections; `tasks` flow round robin across them at
/// `rate` per second. Server RSS before, with the streams open, and after;
/// delivery latency of every completion.
pub async fn sessions(
    addr: &str,
    server_pid: Option<u32>,
    o: SessionsOpts,
    samples: Option<&Path>,
) -> anyhow::Result<Value> {
    let probe = Client::connect(addr).await?;
    wait_for_tool(&probe, "noop").await?;
    let run = run_id();
    let mut channels = Vec::with_capacity(o.channels);
    for _ in 0..o.channels {
        channels.push(errand_client::endpoint(addr)?.connect().await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = server_pid.and_then(rss_kib);
    let received = Arc::new(AtomicUsize::new(0));
    let delivery = Arc::new(Mutex::new(Vec::with_capacity(o.tasks)));
    let mut readers = Vec::with_capacity(o.streams);
    for s in 0..o.streams {
        let mut rpc = ToolServiceClient::new(channels[s % o.channels].clone());
        let request = pb::CompletionsRequest {
            session_id: format!("sessions-{run}-{s}"),
            after_seq: 0,
        };
        let mut stream = rpc.completions(request).await?.into_inner();
        let (received, delivery) = (received.clone(), delivery.clone());
        readers.push(tokio::spawn(async move {
            while let Ok(Some(c)) = stream.message().await {
                if let Some(d) = delivery_ns(&c) {
                    delivery.lock().unwrap().push(d);
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = server_pid.and_then(rss_kib);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.max_secs);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // With a rate, the pacing thread deals the slots (tokio's 1 ms timer
    // would send them in bursts); the submitters take them as they are due.
    let slots = (o.rate > 0.0).then(|| {
        let interval = Duration::from_secs_f64(1.0 / o.rate);
        let rx = pace::lanes(start, interval, o.tasks, 1).pop();
        Arc::new(tokio::sync::Mutex::new(rx.expect("one lane")))
    });
    let submitters = 16.min(o.tasks.max(1));
    for p in 0..submitters {
        let client = Client::from_channel(channels[p % o.channels].clone());
        let (next, failed, run, slots) = (next.clone(), failed.clone(), run.clone(), slots.clone());
        let (tasks, streams) = (o.tasks, o.streams);
        tokio::spawn(async move {
            loop {
                let k = match &slots {
                    Some(rx) => match rx.lock().await.recv().await {
                        Some(k) => k,
                        None => break,
                    },
                    None => next.fetch_add(1, Ordering::Relaxed),
                };
                if k >= tasks || Instant::now() > deadline {
                    break;
                }
                let session = format!("sessions-{run}-{}", k % streams);
                if client.submit(&session, "noop", "{}").await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while received.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < o.tasks
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let rss_after = server_pid.and_then(rss_kib);
    for r in &readers {
        r.abort();
    }
    let got = received.load(Ordering::Relaxed);
    let per_stream = match (rss_idle, rss_open) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1024.0 / o.streams as f64),
        _ => None,
    };
    let delivery = std::mem::take(&mut *delivery.lock().unwrap());
    Ok(json!({
        "workload": "sessions",
        "streams": o.streams,
        "tasks": o.tasks,
        "received": got,
        "submit_errors": failed.load(Ordering::Relaxed),
        "complete": got == o.tasks,
        "seconds": secs,
        "rss_idle_kib": rss_idle,
        "rss_streams_open_kib": rss_open,
        "rss_after_tasks_kib": rss_after,
        "bytes_per_stream": per_stream,
        "delivery": summarize(delivery, samples)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integer_fields() {
        assert_eq!(field_u64(r#"{"id":7,"t":123}"#, "t"), Some(123));
        assert_eq!(field_u64(r#"{"id":7,"t":123}"#, "id"), Some(7));
        assert_eq!(field_u64(r#"{"x":1}"#, "t"), None);
    }

    #[test]
    fn sleeps_are_reproducible_and_bounded() {
        let a = sleeps(1000, 50, 42);
        assert_eq!(a, sleeps(1000, 50, 42));
        assert!(a.iter().all(|&s| s <= 50));
        assert!(a.contains(&0) && a.contains(&50));
    }
}
