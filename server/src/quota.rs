//! Per-tenant and per-token limits the handlers enforce: open `Completions`
//! streams and connected workers per tenant (held as [`Slot`]s that give
//! their place back when dropped), and submits per second per token (a token
//! bucket that says how long to wait).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Counts of something each tenant holds, bounded per tenant.
#[derive(Default, Clone)]
pub struct SlotCounter {
    counts: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One counted thing; dropping it gives the place back.
pub struct Slot {
    counts: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    tenant: Arc<str>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SlotCounter {
    /// Takes a place for `tenant`, or says how many it already holds.
    pub fn acquire(&self, tenant: &Arc<str>, max: usize) -> Result<Slot, usize> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(tenant.clone()).or_default();
        if *count >= max {
            return Err(*count);
        }
        *count += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            tenant: tenant.clone(),
        })
    }

    /// Places held by every tenant together.
    #[cfg(test)]
    fn total(&self) -> usize {
        lock(&self.counts).values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// Submits per second per token: a bucket of `rate` tokens that refills at
/// `rate` per second, so a client may burst one second's worth.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets idle this long are full again and are forgotten.
const IDLE: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// `rate` 0 means no limit.
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one submit for `key` at `now`, or says how long to wait.
    pub fn take(&self, key: &Arc<str>, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = lock(&self.buckets);
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.rate,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_tenant_and_given_back() {
        let c = SlotCounter::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let s1 = c.acquire(&a, 2).unwrap();
        let _s2 = c.acquire(&a, 2).unwrap();
        assert_eq!(c.acquire(&a, 2).err(), Some(2));
        let _other = c.acquire(&b, 2).unwrap();
        drop(s1);
        let _s3 = c.acquire(&a, 2).unwrap();
        assert_eq!(c.total(), 3);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_says_when_to_retry() {
        let r = RateLimiter::new(10);
        let key: Arc<str> = "t".into();
        let t0 = Instant::now();
        for _ in 0..10 {
            r.take(&key, t0).unwrap();
        }
        let wait = r.take(&key, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(r.take(&key, t0 + Duration::from_millis(100)).is_ok());
        assert!(r.take(&"other".into(), t0).is_ok(), "buckets are per key");
        assert!(RateLimiter::new(0).take(&key, t0).is_ok());
    }
}
