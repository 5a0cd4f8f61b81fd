//! Calls refused for a missing, wrong or expired token, per peer address:
//! counted in `errand_auth_failures_total{peer}`, logged at most once per
//! 10 s (with the count since the last line), and throttled: a peer gets a
//! budget of failures per minute (a bucket that refills evenly); past it,
//! its failing calls are answered RESOURCE_EXHAUSTED with `retry-after-ms`,
//! so well-behaved clients back off. Calls with a valid token always pass:
//! other clients behind the same address are not locked out.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracing::warn;

use crate::{
    logs::{self, Throttle},
    metrics::Metrics,
};

/// Peers tracked at once; past it, new peers share one bucket.
const MAX_PEERS: usize = 4096;
/// Peers given their own metric label; later ones are counted as "other".
const MAX_LABELS: usize = 256;
/// Where the addresses past [`MAX_PEERS`] (and calls with no address) count.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

pub struct FailedAuth {
    /// Failures per minute per peer; 0: counted and logged, not throttled.
    per_minute: u32,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    log: Throttle,
}

#[derive(Default)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    labeled: HashSet<IpAddr>,
}

struct Bucket {
    left: f64,
    at: Instant,
}

impl FailedAuth {
    pub fn new(per_minute: u32, metrics: Arc<Metrics>) -> Self {
        FailedAuth {
            per_minute,
            state: Mutex::default(),
            metrics,
            log: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// Records one failed call from `peer` (why: `reason`). `Err(wait)` when
    /// the peer is over its budget: it should retry after `wait`.
    pub fn failed(&self, peer: Option<IpAddr>, reason: &str, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut ip = peer.unwrap_or(OTHER);
        let label = if state.labeled.contains(&ip) || state.labeled.len() < MAX_LABELS {
            state.labeled.insert(ip);
            ip.to_string()
        } else {
            "other".to_string()
        };
        self.metrics.auth_failed(&label);
        if let Some(times) = self.log.ready() {
            warn!(peer = %ip, times, reason = %logs::field(reason), "refused calls without a valid token");
        }
        if self.per_minute == 0 {
            return Ok(());
        }
        let full = f64::from(self.per_minute);
        let rate = full / 60.0;
        if !state.buckets.contains_key(&ip) && state.buckets.len() >= MAX_PEERS {
            // Forget buckets that have refilled; if none has, share one.
            state
                .buckets
                .retain(|_, b| b.left + now.duration_since(b.at).as_secs_f64() * rate < full);
            if state.buckets.len() >= MAX_PEERS {
                ip = OTHER;
            }
        }
        let bucket = state.buckets.entry(ip).or_insert(Bucket {
            left: full,
            at: now,
        });
        bucket.left = (bucket.left + now.duration_since(bucket.at).as_secs_f64() * rate).min(full);
        bucket.at = now;
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.left) / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Load, LoadSource};

    struct Idle;
    impl LoadSource for Idle {
        fn load(&self) -> Load {
            Load::default()
        }
    }

    #[test]
    fn a_peer_past_its_budget_is_told_to_wait_and_others_are_not() {
        let metrics = Arc::new(Metrics::default());
        let f = FailedAuth::new(60, metrics.clone());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..60 {
            f.failed(Some(a), "wrong token", t).unwrap();
        }
        let wait = f.failed(Some(a), "wrong token", t).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        f.failed(Some(b), "wrong token", t).unwrap();
        // One a second comes back.
        f.failed(Some(a), "wrong token", t + Duration::from_secs(1))
            .unwrap();
        assert!(f.failed(Some(a), "x", t + Duration::from_secs(1)).is_err());
        let text = metrics.render(&Idle);
        assert!(
            text.contains(r#"errand_auth_failures_total{peer="10.0.0.1"} 63"#),
            "{text}"
        );
        assert!(
            text.contains(r#"errand_auth_failures_total{peer="10.0.0.2"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn peers_and_labels_are_bounded() {
        let metrics = Arc::new(Metrics::default());
        let f = FailedAuth::new(1, metrics.clone());
        let t = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            let _ = f.failed(Some(IpAddr::from(i.to_be_bytes())), "x", t);
        }
        let state = f.state.lock().unwrap();
        assert!(state.buckets.len() <= MAX_PEERS + 1);
        assert_eq!(state.labeled.len(), MAX_LABELS);
        drop(state);
        let text = metrics.render(&Idle);
        assert!(text.contains(r#"peer="other""#), "{text:.500}");
        assert!(
            text.lines()
                .filter(|l| l.starts_with("errand_auth_failures_total"))
                .count()
                <= MAX_LABELS + 1
        );
    }
}
