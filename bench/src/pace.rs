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
    /// two slots: must not block.
    fn fire(&mut self, k: usize, at: Instant);
}

/// Fires `slots` for every `k` in `0..count`, as soon as possible after
/// `at = start + k × interval`, on a new thread whose handle gives `slots`
/// back at the end. A slot missed because the thread was descheduled fires
/// late, never skipped, and keeps its scheduled `at`, so latency counted
/// from `at` is not excused (no coordinated omission).
pub fn pace<S: Slots>(
    start: Instant,
    interval: Duration,
    count: usize,
    mut slots: S,
) -> JoinHandle<S> {
    thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            lower_timer_slack();
            for k in 0..count {
                let at = start + interval.mul_f64(k as f64);
                let now = Instant::now();
                if at > now {
                    thread::sleep(at - now);
                }
                slots.fire(k, at);
            }
            slots
        })
        .expect("spawning the pacer thread")
}

/// Slots `0..count` at `start + j × interval`, dealt round robin over
/// `lanes` channels: lane `j % lanes` receives `j / lanes` at slot `j`'s time,
/// and closes after its last slot. For load whose senders wait on a slot
/// rather than sleep to it (a slot not taken at once is taken late, as it is
/// due, never skipped).
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
    drop(pace(start, interval, count, deal));
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
