//! Whether the database answers, as the store's calls find out. Calls that
//! cannot reach it are logged by their callers, as warnings; once a call
//! reaches it again, one INFO line says so, so that the log tells when an
//! outage ended. A database that comes and goes gets at most one such line
//! per [`LOG_EVERY`] (as the server's other repeated lines), counting the
//! outages it ends.
use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::info;

use crate::store::StoreError;

/// Fewest seconds between two lines saying the database answers again.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Contact {
    /// Set by a call that could not reach the database, until the line
    /// saying it answers again: while it is clear (a healthy database),
    /// a call's answer takes no lock.
    troubled: AtomicBool,
    outages: Mutex<Outages>,
}

#[derive(Default)]
struct Outages {
    /// When the outage going on began: its first call that failed.
    since: Option<Instant>,
    /// Outages over and not yet logged: how many, and when the first began.
    ended: Option<(u64, Instant)>,
    /// When the last line was written.
    logged: Option<Instant>,
}

impl Contact {
    fn lock(&self) -> MutexGuard<'_, Outages> {
        self.outages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes note of a call's result: `Unavailable` did not reach the
    /// database, anything else (a refusal too) did.
    pub(super) fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Err(StoreError::Unavailable(_)) => self.unreached(),
            _ => self.reached(),
        }
    }

    /// A call could not reach the database.
    pub(super) fn unreached(&self) {
        let mut outages = self.lock();
        outages.since.get_or_insert_with(Instant::now);
        self.troubled.store(true, Ordering::Release);
    }

    /// A call reached the database: logs that it answers again, once per
    /// [`LOG_EVERY`] at most; outages ended meanwhile wait for the next
    /// call after it.
    pub(super) fn reached(&self) {
        if !self.troubled.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut outages = self.lock();
        if let Some(since) = outages.since.take() {
            outages.ended.get_or_insert((0, since)).0 += 1;
        }
        let Some((count, first)) = outages.ended else {
            return;
        };
        if outages
            .logged
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return;
        }
        outages.ended = None;
        outages.logged = Some(now);
        self.troubled.store(false, Ordering::Release);
        drop(outages);
        info!(
            outages = count,
            since_first_failure_ms = now.duration_since(first).as_millis() as u64,
            "PostgreSQL answers again"
        );
    }

    /// Outages over and not yet logged (tests).
    #[cfg(test)]
    fn unlogged(&self) -> u64 {
        self.lock().ended.map_or(0, |(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_when_it_ends_and_the_next_within_the_interval_waits() {
        let contact = Contact::default();
        contact.reached();
        assert!(!contact.troubled.load(Ordering::Acquire));
        contact.unreached();
        contact.unreached();
        contact.reached();
        assert!(
            contact.lock().logged.is_some(),
            "the first line is due at once"
        );
        assert_eq!(contact.unlogged(), 0);
        contact.reached();
        // A second outage within LOG_EVERY: held until then.
        contact.unreached();
        contact.reached();
        assert_eq!(contact.unlogged(), 1);
        assert!(contact.troubled.load(Ordering::Acquire));
        contact.lock().logged = Some(Instant::now() - LOG_EVERY);
        contact.unreached();
        contact.reached();
        assert_eq!(contact.unlogged(), 0, "both outages in one line");
        assert!(!contact.troubled.load(Ordering::Acquire));
    }
}
