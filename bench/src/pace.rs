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
