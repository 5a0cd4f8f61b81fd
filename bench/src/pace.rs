//! Precise pacing for open-loop load. tokio's timer has a resolution of 1 ms
//! (`sleep_until` rounds each deadline up to the next tick), so a request paced
//! with it leaves up to a millisecond after its slot, and an open-loop
//! generator that counts from the slot reports that lateness as server
//! latency. Here a dedicated thread sleeps with `std::thread::sleep` to each
//! slot's absolute time, with its timer slack lowered to 1 ns, and fires the
//! slot (typically by spawning the request onto the tokio runtime). It sleeps
//! between slots, so it does not burn a core that the server needs.
use std::{
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

/// What the pacer does at each slot.
pub trait Slots: Send + 'static {
    /// Slot `k`, scheduled for `at`, is due. Runs on the pacer thread between
    /// two slots: whatever it blocks for delays the slots after it.
    fn fire(&mut self, k: usize, at: Instant);
}

/// Fires `slots` for every `k` in `0..count`, as soon as possible after
/// `at = start + k × interval`, on a new thread whose handle gives `slots`
/// back at the end. A slot missed because the thread was descheduled fires
/// late, never skipped, and keeps its scheduled `at`, so latency counted
/// from `at` is not excused (no coordinated omission).
pub fn pace<S: Slots>(start: Instant, interval: Duration, count: usize, slots: S) -> JoinHandle<S> {
    pace_batched(start, interval, count, Duration::ZERO, slots)
}

/// [`pace`], waking at most once per `min_gap`: each wake fires every slot
/// then due, in order, so a slot fires up to `min_gap` late (and keeps its
/// scheduled `at`). Each wake of the pacer, and each wake it causes on the
/// tokio runtime from outside it, is a context switch: one per slot made
/// the open-loop generator cost twice the closed loop's CPU per task.
pub fn pace_batched<S: Slots>(
    start: Instant,
    interval: Duration,
    count: usize,
    min_gap: Duration,
    mut slots: S,
) -> JoinHandle<S> {
    thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            lower_timer_slack();
            let slot = |k: usize| start + interval.mul_f64(k as f64);
            let mut last_wake: Option<Instant> = None;
            let mut k = 0;
            while k < count {
                let wake_at = match last_wake {
                    Some(last) => slot(k).max(last + min_gap),
                    None => slot(k),
                };
                let now = Instant::now();
                if wake_at > now {
                    thread::sleep(wake_at - now);
                }
                let now = Instant::now();
                last_wake = Some(now);
                // Slot k is due; so is every later one whose time has come.
                loop {
                    slots.fire(k, slot(k));
                    k += 1;
                    if k >= count || slot(k) > now {
                        break;
                    }
                }
            }
            slots
        })
        .expect("spawning the pacer thread")
}

/// Waits for the pacer thread `pacer` and gives its slots back.
pub fn finish<S>(pacer: JoinHandle<S>) -> anyhow::Result<S> {
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))
}

/// How often [`lanes`] wakes at most: at the half-peak rates of the end-to-end
/// bench (9,000-23,000 slots/s) a few slots per wake. A slot is then up to
/// this late, which the delivery latency those runs measure does not count.
/// (The sessions workload's 2,000 slots/s are 500 µs apart: one per wake.)
pub const LANES_MIN_GAP: Duration = Duration::from_micros(250);

/// Slots `0..count` at `start + j × interval`, dealt round robin over
/// `lanes` channels: lane `j % lanes` receives `j / lanes` at slot `j`'s time,
/// and closes after its last slot. For load whose senders wait on a slot
/// rather than sleep to it (a slot not taken at once is taken late, as it is
/// due, never skipped). Slots are dealt in batches at most
/// [`LANES_MIN_GAP`] apart.
pub fn lanes(
    start: Instant,
    interval: Duration,
    count: usize,
    lanes: usize,
) -> Vec<mpsc::UnboundedReceiver<usize>> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..lanes).map(|_| mpsc::unbounded_channel()).unzip();
    let deal = Deal {
        txs: txs.into_iter().map(Some).collect(),
        count,
    };
    // Detached: it ends after the last slot, having closed every lane.
    drop(pace_batched(start, interval, count, LANES_MIN_GAP, deal));
    rxs
}

struct Deal {
    txs: Vec<Option<mpsc::UnboundedSender<usize>>>,
    count: usize,
}

impl Slots for Deal {
    fn fire(&mut self, j: usize, _at: Instant) {
        let lane = j % self.txs.len();
        if let Some(tx) = &self.txs[lane] {
            // A lane whose receivers are gone (they stopped at a deadline) is
            // simply not fed.
            let _ = tx.send(j / self.txs.len());
        }
        if j + self.txs.len() >= self.count {
            self.txs[lane] = None; // its last slot
        }
    }
}

/// The kernel delays a sleeping thread's wake-up by up to its timer slack
/// (50 µs by default) to batch wake-ups; 1 ns makes the wake-up as punctual
/// as the scheduler allows. Best effort: on failure the slack stays 50 µs.
fn lower_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes
    // the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Record(Vec<(usize, Instant, Instant)>);

    impl Slots for Record {
        fn fire(&mut self, k: usize, at: Instant) {
            self.0.push((k, at, Instant::now()));
        }
    }

    #[test]
    fn lanes_deal_every_slot_round_robin_and_close() {
        let start = Instant::now() + Duration::from_millis(2);
        let mut rxs = lanes(start, Duration::from_micros(100), 10, 3);
        let got: Vec<Vec<usize>> = rxs
            .iter_mut()
            .map(|rx| std::iter::from_fn(|| rx.blocking_recv()).collect())
            .collect();
        assert_eq!(got, vec![vec![0, 1, 2, 3], vec![0, 1, 2], vec![0, 1, 2]]);
        assert!(Instant::now() >= start + Duration::from_micros(900));
    }

    #[test]
    fn batched_fires_every_slot_in_order_within_the_gap_of_its_time() {
        let start = Instant::now() + Duration::from_millis(2);
        let interval = Duration::from_micros(20);
        let gap = Duration::from_micros(500);
        let fired = pace_batched(start, interval, 200, gap, Record(Vec::new()))
            .join()
            .unwrap()
            .0;
        assert_eq!(fired.len(), 200);
        for (i, (k, at, now)) in fired.iter().enumerate() {
            assert_eq!(*k, i);
            assert_eq!(*at, start + interval.mul_f64(i as f64));
            assert!(*now >= *at, "never early");
        }
        // 4 ms of slots 20 us apart, woken at most every 500 us: a few
        // wakes, each firing many slots (the same `now` for a batch would be
        // too strict: a fire takes time; count the runs of slots fired late).
        let late = fired
            .iter()
            .filter(|(_, at, now)| *now > *at + interval)
            .count();
        assert!(late > 100, "slots were batched: {late} of 200 fired late");
    }

    #[test]
    fn fires_every_slot_in_order_at_or_after_its_time() {
        let start = Instant::now() + Duration::from_millis(5);
        let interval = Duration::from_micros(200);
        let fired = pace(start, interval, 100, Record(Vec::new()))
            .join()
            .unwrap()
            .0;
        assert_eq!(fired.len(), 100);
        for (i, (k, at, now)) in fired.into_iter().enumerate() {
            assert_eq!(k, i);
            assert_eq!(at, start + interval.mul_f64(i as f64));
            assert!(now >= at);
        }
    }
}
