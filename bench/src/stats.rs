//! Latency samples and their percentiles, process facts from `/proc`.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Write,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

/// Nanoseconds since the Unix epoch. Workers stamp results with it and
/// agents subtract it on receipt: both run on this machine's one clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises latencies given in nanoseconds as microseconds, and writes
/// them (one value in µs per line) to `path` for the plots when given.
pub fn summarize(mut ns: Vec<u64>, path: Option<&Path>) -> anyhow::Result<Value> {
    ns.sort_unstable();
    if let Some(path) = path {
        let mut out = std::io::BufWriter::new(fs::File::create(path)?);
        for v in &ns {
            writeln!(out, "{:.1}", *v as f64 / 1e3)?;
        }
        out.flush()?;
    }
    let us = |v: u64| (v as f64 / 1e3 * 10.0).round() / 10.0;
    let mean = if ns.is_empty() {
        0.0
    } else {
        ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len() as f64 / 1e3
    };
    Ok(json!({
        "n": ns.len(),
        "p50_us": us(percentile(&ns, 0.50)),
        "p99_us": us(percentile(&ns, 0.99)),
        "p999_us": us(percentile(&ns, 0.999)),
        "max_us": us(ns.last().copied().unwrap_or(0)),
        "mean_us": (mean * 10.0).round() / 10.0,
    }))
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User plus system CPU time of a process in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(named_ticks(&stat)?.1)
}

/// The command name and user plus system clock ticks of a `stat` file's text.
fn named_ticks(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may hold spaces and parentheses.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name.to_string(), utime + stime))
}

/// Each thread of `pid`: its name (the kernel keeps 15 bytes of it) and its
/// user plus system CPU time in clock ticks, by thread id
/// (`/proc/PID/task/TID/stat`).
pub fn thread_ticks(pid: u32) -> Option<HashMap<u32, (String, u64)>> {
    let mut threads = HashMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing is skipped.
        let Some(named) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| named_ticks(&stat))
        else {
            continue;
        };
        threads.insert(tid, named);
    }
    Some(threads)
}

/// Nanoseconds each thread of `pid` has spent runnable but waiting for a
/// CPU, by thread id: the second field of `/proc/PID/task/TID/schedstat`.
/// `None` when the kernel does not keep it (no `CONFIG_SCHED_INFO`).
pub fn run_queue_waits(pid: u32) -> Option<HashMap<u32, u64>> {
    let mut waits = HashMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing is skipped.
        let Ok(stat) = fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let wait = stat.split_whitespace().nth(1)?.parse().ok()?;
        waits.insert(tid, wait);
    }
    Some(waits)
}

/// CPU seconds used by the given processes (and this one) between two calls,
/// and the seconds their threads spent waiting for a CPU meanwhile.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<u64>,
    waits: Vec<Option<HashMap<u32, u64>>>,
    threads: Vec<Option<HashMap<u32, (String, u64)>>>,
}

/// One process's share of a measured span.
pub struct CpuUse {
    pub pid: u32,
    /// CPU seconds (user + system).
    pub seconds: f64,
    /// Seconds its threads were runnable but not running (run-queue wait;
    /// threads that ended within the span are not counted). `None` when
    /// the kernel does not report it.
    pub waited: Option<f64>,
    /// CPU seconds by thread name (tokio's workers, a store's writer, …);
    /// threads that ended within the span are not counted. `None` when
    /// `/proc/PID/task` could not be read.
    pub by_thread: Option<BTreeMap<String, f64>>,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> Self {
        let mut pids = pids.to_vec();
        pids.push(std::process::id());
        let start = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
        let waits = pids.iter().map(|&p| run_queue_waits(p)).collect();
        let threads = pids.iter().map(|&p| thread_ticks(p)).collect();
        Self {
            pids,
            start,
            waits,
            threads,
        }
    }

    /// Each process's use since `start`, in the order given; the last is this one.
    pub fn stop(&self) -> Vec<CpuUse> {
        // Linux reports /proc times in USER_HZ, 100 on every common configuration.
        const TICKS_PER_SEC: f64 = 100.0;
        self.pids
            .iter()
            .zip(&self.start)
            .zip(&self.waits)
            .zip(&self.threads)
            .map(|(((&pid, &s), before), threads_before)| {
                let now = cpu_ticks(pid).unwrap_or(s);
                let waited = before.as_ref().zip(run_queue_waits(pid)).map(|(b, now)| {
                    // Threads born within the span count from zero.
                    let ns: u64 = (now.iter())
                        .map(|(tid, w)| w.saturating_sub(b.get(tid).copied().unwrap_or(0)))
                        .sum();
                    ns as f64 / 1e9
                });
                let by_thread = threads_before
                    .as_ref()
                    .zip(thread_ticks(pid))
                    .map(|(b, now)| {
                        let mut by_name = BTreeMap::new();
                        for (tid, (name, ticks)) in now {
                            // Threads born within the span count from zero.
                            let from = b.get(&tid).map_or(0, |(_, t)| *t);
                            *by_name.entry(name).or_insert(0.0) +=
                                ticks.saturating_sub(from) as f64 / TICKS_PER_SEC;
                        }
                        by_name
                    });
                CpuUse {
                    pid,
                    seconds: now.saturating_sub(s) as f64 / TICKS_PER_SEC,
                    waited,
                    by_thread,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 0.999), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn a_thread_name_may_hold_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(named_ticks(stat), Some(("a (b) c".into(), 11 + 12)));
    }

    #[test]
    fn reads_own_rss_and_cpu() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_ticks(std::process::id()).is_some());
        let threads = thread_ticks(std::process::id()).expect("/proc/PID/task on Linux");
        assert!(threads.contains_key(&std::process::id()));
        let waits = run_queue_waits(std::process::id()).expect("schedstat on Linux");
        assert!(
            waits.contains_key(&std::process::id()),
            "the main thread is listed"
        );
    }
}
