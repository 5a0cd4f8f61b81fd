//! The machine's floors, measured in the same run as the figures they bound:
//! how long one `fdatasync` of a small append takes on the durable store's
//! file system, and how late a sleeping thread wakes on this machine's cores.
use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    pace::{Slots, finish, pace},
    stats::summarize,
};

/// `count` appends of `bytes` bytes to a file in `dir`, each followed by
/// `fdatasync`, back to back or paced at `rate` per second (at most 30 s in
/// all). `fdatasync` times each sync alone, and `over_1ms` is the share of
/// them over 1 ms. Paced, `from_slot` also counts each sync's end from its
/// slot, as an open-loop ack is counted: one stall then delays every slot
/// due during it, not just one sample.
pub fn fsync(dir: &Path, count: usize, rate: f64, bytes: usize) -> anyhow::Result<Value> {
    struct Syncs {
        file: std::fs::File,
        deadline: Instant,
        block: Vec<u8>,
        ns: Vec<u64>,
        from_slot: Vec<u64>,
        error: Option<std::io::Error>,
    }
    impl Slots for Syncs {
        fn fire(&mut self, _k: usize, at: Instant) {
            if self.error.is_some() || Instant::now() > self.deadline {
                return;
            }
            let t = Instant::now();
            match self
                .file
                .write_all(&self.block)
                .and_then(|()| self.file.sync_data())
            {
                Ok(()) => {
                    self.ns.push(t.elapsed().as_nanos() as u64);
                    self.from_slot.push(at.elapsed().as_nanos() as u64);
                }
                Err(e) => self.error = Some(e),
            }
        }
    }
    let path = dir.join("errand-bench-fsync.tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let start = Instant::now();
    let syncs = Syncs {
        file,
        deadline: start + Duration::from_secs(30),
        block: vec![b'x'; bytes.max(1)],
        ns: Vec::with_capacity(count),
        from_slot: Vec::with_capacity(count),
        error: None,
    };
    // Back to back is a pace whose every slot is already due; paced, the
    // slots past 30 s are not scheduled at all (the pacer would sleep to
    // each).
    let (interval, count) = if rate > 0.0 {
        let most = (rate * 30.0).floor() as usize;
        (Duration::from_secs_f64(1.0 / rate), count.min(most))
    } else {
        (Duration::ZERO, count)
    };
    let syncs = finish(pace(start, interval, count, syncs))?;
    drop(syncs.file);
    std::fs::remove_file(&path)?;
    if let Some(e) = syncs.error {
        return Err(e.into());
    }
    let over_1ms =
        |v: &[u64]| v.iter().filter(|&&ns| ns > 1_000_000).count() as f64 / v.len().max(1) as f64;
    let paced = (rate > 0.0).then(|| over_1ms(&syncs.from_slot));
    Ok(json!({
        "workload": "fsync",
        "rate": rate,
        "bytes": bytes,
        "over_1ms": over_1ms(&syncs.ns),
        "fdatasync": summarize(syncs.ns, None)?,
        "from_slot_over_1ms": paced,
        "from_slot": match paced {
            Some(_) => summarize(syncs.from_slot, None)?,
            None => Value::Null,
        },
    }))
}

/// How late a thread sleeping to evenly spaced slots wakes, with nothing else
/// of errand's running: `rate × seconds` slots paced as the open-loop
/// generator paces its submits ([`crate::pace`]). Its tail is the machine's
/// own (a virtual CPU descheduled by its host stalls every thread on it for
/// milliseconds), and an open-loop p99 cannot be lower than what it says.
/// `late_over_1ms` is the share of slots that woke more than 1 ms late.
pub fn wake(rate: f64, seconds: f64) -> anyhow::Result<Value> {
    struct Lateness(Vec<u64>);
    impl Slots for Lateness {
        fn fire(&mut self, _k: usize, at: Instant) {
            self.0.push(at.elapsed().as_nanos() as u64);
        }
    }
    let count = (rate.max(1.0) * seconds.max(0.0)).round() as usize;
    let start = Instant::now() + Duration::from_millis(5);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let late = finish(pace(
        start,
        interval,
        count,
        Lateness(Vec::with_capacity(count)),
    ))?
    .0;
    let over = late.iter().filter(|&&ns| ns > 1_000_000).count();
    Ok(json!({
        "workload": "wake",
        "rate": rate,
        "slots": late.len(),
        "late_over_1ms": over as f64 / late.len().max(1) as f64,
        "lateness": summarize(late, None)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_syncs_take_as_long_as_their_slots_and_leave_no_file() {
        let dir = std::env::temp_dir().join(format!("errand-floor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let r = fsync(&dir, 20, 1000.0, 8192).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(19), "paced at 1 ms");
        assert_eq!(r["fdatasync"]["n"], 20);
        assert_eq!(r["bytes"], 8192);
        assert!(!dir.join("errand-bench-fsync.tmp").exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn wake_reports_every_slot() {
        let r = wake(1000.0, 0.02).unwrap();
        assert_eq!(r["slots"], 20);
        assert_eq!(r["lateness"]["n"], 20);
        let share = r["late_over_1ms"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
    }
}
