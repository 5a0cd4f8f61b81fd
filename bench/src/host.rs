//! How fast the box was during a run: the share of its CPU time the
//! hypervisor gave to other guests (`steal` in `/proc/stat`), and the time
//! three fixed probes take: a register-only loop, a dependent load from
//! memory, and a thread wake round trip. Figures of one run are compared
//! with each other; across runs these say whether a slower figure was
//! errand's or the box's, and which part of the box (on the shared 2-core
//! VMs the benchmarks run on, the same binary has measured twice as slow an
//! hour later, with the register loop unchanged: bench/ANALYSIS.md item 22).
use std::{fs, hint::black_box, time::Instant};

use serde_json::{Value, json};

/// The first line of `/proc/stat` (all CPUs), in clock ticks: user, nice,
/// system, idle, iowait, irq, softirq, steal.
fn cpu_line() -> Option<[u64; 8]> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let mut out = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(out)
}

/// Samples `/proc/stat` at [`HostMeter::start`] and [`HostMeter::stop`].
pub struct HostMeter {
    start: Option<[u64; 8]>,
}

impl HostMeter {
    pub fn start() -> Self {
        Self { start: cpu_line() }
    }

    /// Over the span, as shares of all CPUs' time (0–1): `steal_share`, the
    /// time the hypervisor ran other guests while this one had work;
    /// `busy_share`, the time spent on anything but idle and I/O wait.
    /// `null` fields where `/proc/stat` could not be read.
    pub fn stop(&self) -> Value {
        let (Some(a), Some(b)) = (self.start, cpu_line()) else {
            return json!({"steal_share": null, "busy_share": null});
        };
        let d: Vec<u64> = a.iter().zip(b).map(|(a, b)| b.saturating_sub(*a)).collect();
        let total = d.iter().sum::<u64>().max(1) as f64;
        let idle = (d[3] + d[4]) as f64;
        json!({
            "steal_share": d[7] as f64 / total,
            "busy_share": (total - idle - d[7] as f64).max(0.0) / total,
        })
    }
}

/// Steps of the fixed loop [`core_loop_us`] times.
const LOOP_STEPS: u64 = 1 << 20;

/// Microseconds one thread takes for a fixed integer loop (1,048,576
/// dependent xorshift-multiply steps, a few ms), the best of
/// 5: a slower core minute (a busy sibling thread, a throttled or shared
/// host) shows as a larger figure. Run it before a measured span, not in it.
pub fn core_loop_us() -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut x: u64 = black_box(0x9E37_79B9_7F4A_7C15);
            for _ in 0..LOOP_STEPS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            }
            black_box(x);
            t.elapsed().as_secs_f64() * 1e6
        })
        .fold(f64::INFINITY, f64::min)
}

/// Slots of the ring [`memory_access_ns`] walks: 64 MiB of `usize`, beyond
/// the caches, so each step is a load from memory through the page tables.
const RING_SLOTS: usize = 8 << 20;

/// Nanoseconds per dependent load from memory: a walk of 2,000,000 steps
/// around one random cycle through [`RING_SLOTS`] slots (64 MiB), so no
/// prefetcher helps and most steps miss the caches and the TLB. It shows what
/// a register loop ([`core_loop_us`]) does not: a slower memory path, such
/// as nested virtualization's two-level page walks or a neighbour's traffic.
pub fn memory_access_ns() -> f64 {
    // Sattolo's algorithm: one cycle through every slot.
    let mut ring: Vec<usize> = (0..RING_SLOTS).collect();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for i in (1..RING_SLOTS).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % i as u64) as usize;
        ring.swap(i, j);
    }
    const STEPS: u32 = 2_000_000;
    let t = Instant::now();
    let mut at = black_box(0usize);
    for _ in 0..STEPS {
        at = ring[at];
    }
    black_box(at);
    t.elapsed().as_secs_f64() * 1e9 / f64::from(STEPS)
}

/// Round trips [`wake_round_trip_us`] times.
const ROUND_TRIPS: u32 = 20_000;

/// Mean microseconds for one thread to wake another blocked one and be
/// woken back (20,000 round trips over two `std::sync::mpsc` channels; the
/// threads go to sleep in between, so each hop is a futex wake and a
/// context switch, often on the other core). Every hand-off between the
/// server's threads (a tokio worker to the store's writer and back) pays
/// this; in a VM it costs an inter-processor interrupt, and a busy host
/// makes it slower while [`core_loop_us`] stays the same.
pub fn wake_round_trip_us() -> f64 {
    use std::sync::mpsc::channel;
    let (to_echo, echo_rx) = channel::<u32>();
    let (to_main, main_rx) = channel::<u32>();
    let echo = std::thread::spawn(move || {
        while let Ok(v) = echo_rx.recv() {
            if to_main.send(v).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..ROUND_TRIPS {
        if to_echo.send(i).is_err() || main_rx.recv().is_err() {
            break;
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS);
    drop(to_echo);
    let _ = echo.join();
    us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_fractions_and_the_loop_takes_time() {
        let meter = HostMeter::start();
        let us = core_loop_us();
        assert!(us > 0.0 && us.is_finite());
        let rtt = wake_round_trip_us();
        let ns = memory_access_ns();
        assert!(ns > 0.0 && ns.is_finite());
        assert!(rtt > 0.0 && rtt.is_finite());
        let host = meter.stop();
        for key in ["steal_share", "busy_share"] {
            let v = host[key].as_f64().expect("read from /proc/stat on Linux");
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
}
