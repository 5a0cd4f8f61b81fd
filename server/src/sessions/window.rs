//! A byte bound on the completions a session stream holds ahead of its
//! reader: the feed takes a completion's bytes before it queues it, the
//! stream gives them back as it hands the completion to the transport.
//!
//! The stream's channels are bounded by count (`--stream-buffer`), but a
//! completion holds its whole result (up to `--max-result-bytes`) until it
//! is rendered, so a count alone let one slow reader hold 64 × 4 MiB. With
//! the window it holds at most `--stream-buffer-bytes`, or one completion
//! when that one alone is larger, so everything accepted stays deliverable.
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::model::CompletionRecord;

/// What a completion costs beyond its texts (its record and the channel
/// slot), so a run of empty results is bounded too.
const RECORD_BYTES: usize = 256;

/// One stream's byte window. Clones share it.
#[derive(Clone, Debug)]
pub struct ByteWindow {
    free: Arc<Semaphore>,
    size: u32,
}

impl ByteWindow {
    /// A window of `bytes` (at least 1; capped at 4 GiB − 1, a semaphore's
    /// unit).
    pub fn new(bytes: usize) -> Self {
        let size = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        Self {
            free: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// The bytes `completion` holds while queued, never more than the
    /// whole window: one completion always fits.
    fn weight(&self, completion: &CompletionRecord) -> u32 {
        let bytes = completion.bytes().saturating_add(RECORD_BYTES);
        u32::try_from(bytes).unwrap_or(u32::MAX).min(self.size)
    }

    /// Waits until `completion` fits beside what is queued, then counts it.
    /// Cancel-safe: dropped while waiting, nothing is taken.
    pub async fn take(&self, completion: &CompletionRecord) {
        // Never closed, so acquiring only waits.
        if let Ok(permit) = self.free.acquire_many(self.weight(completion)).await {
            permit.forget();
        }
    }

    /// Gives back what [`Self::take`] counted for `completion`, now that the
    /// reader has it.
    pub fn give_back(&self, completion: &CompletionRecord) {
        self.free.add_permits(self.weight(completion) as usize);
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.free.available_permits()
    }

    /// The window's whole size in bytes.
    pub fn size(&self) -> usize {
        self.size as usize
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use futures::FutureExt;
    use uuid::Uuid;

    use super::*;
    use crate::model::{Outcome, TaskState};

    fn completion(result_bytes: usize) -> CompletionRecord {
        CompletionRecord {
            seq: 1,
            task_id: Uuid::nil(),
            session: "s".into(),
            tool: "t".into(),
            arguments: "{}".into(),
            state: TaskState::Succeeded,
            outcome: Outcome::Result(format!("\"{}\"", "x".repeat(result_bytes))),
            elapsed: Duration::ZERO,
            attempts: 1,
            completed_at: SystemTime::now(),
            result_budget: 0,
            notes: Default::default(),
            delivery: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_full_window_waits_until_the_reader_gives_bytes_back() {
        let window = ByteWindow::new(10_000);
        let big = completion(6_000);
        window.take(&big).await;
        let second = window.take(&big);
        tokio::pin!(second);
        assert!(
            (&mut second).now_or_never().is_none(),
            "a second 6 kB completion fit 10 kB"
        );
        window.give_back(&big);
        assert!(second.now_or_never().is_some(), "given back, it fits");
        window.give_back(&big);
        assert_eq!(window.available(), 10_000);
    }

    #[tokio::test]
    async fn a_completion_larger_than_the_window_still_goes_alone() {
        let window = ByteWindow::new(1_000);
        let huge = completion(50_000);
        window
            .take(&huge)
            .now_or_never()
            .expect("one completion always fits");
        assert_eq!(window.available(), 0);
        window.give_back(&huge);
        assert_eq!(window.available(), 1_000);
    }
}
