//! A session's completions: replay what the store retains, then follow live
//! ones.
//!
//! A feed keeps a cursor (the last seq it sent). It replays from the store
//! until it has caught up, then takes live completions straight from the
//! session's broadcast as they are committed, as long as each is the next
//! seq; on a gap (completions committed out of order by concurrent
//! finishes), a lag (a slow reader overran the broadcast) or a bare wake-up
//! it reads the store again. Replay and live delivery share one cursor, a
//! slow reader costs a bounded channel and nothing more, and nothing is
//! missed or sent twice: each feed sends seqs in order, each once.
use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::hub::{SessionHub, Wake};
use crate::{
    error::Error,
    model::{CompletionRecord, SessionKey},
    store::SharedStore,
};

/// Completions read from the store per read.
const BATCH: usize = 256;

/// How long a stopping server waits for a reader to take one completion.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

/// One completion, or the error that ends the feed (always
/// [`Error::Unavailable`]: the client should reconnect from its last seq).
pub type FeedItem = Result<Arc<CompletionRecord>, Error>;

/// Opens session feeds over a store and a hub.
#[derive(Clone)]
pub struct Feed {
    store: SharedStore,
    hub: Arc<SessionHub>,
    shutdown: CancellationToken,
    /// Completions buffered per feed before it waits for its reader.
    buffer: usize,
}

impl Feed {
    /// `shutdown`: once cancelled, a feed sends what is stored, then ends
    /// with UNAVAILABLE. `buffer` is at least 1.
    pub fn new(
        store: SharedStore,
        hub: Arc<SessionHub>,
        shutdown: CancellationToken,
        buffer: usize,
    ) -> Self {
        Self {
            store,
            hub,
            shutdown,
            buffer: buffer.max(1),
        }
    }

    /// The completions of `session` with seq > `after_seq`, in order, until
    /// the receiver is dropped or an error item ends them.
    pub fn open(&self, session: SessionKey, after_seq: u64) -> mpsc::Receiver<FeedItem> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let feed = self.clone();
        tokio::spawn(async move {
            if let Err(e) = feed.follow(session.as_key(), after_seq, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
            debug!(session_id = %crate::logs::field(session.name()), "completions feed ended");
        });
        rx
    }

    /// Sends completions until the reader goes away (`Ok`) or the feed must
    /// end with an error (`Err`).
    async fn follow(
        &self,
        session: &str,
        after_seq: u64,
        tx: &mpsc::Sender<FeedItem>,
    ) -> Result<(), Error> {
        // Subscribe before the first read, so no completion falls between them.
        let mut live = self.hub.subscribe(session);
        let mut cursor = after_seq;
        'read_store: loop {
            loop {
                let batch = self
                    .store
                    .completions_after(session, cursor, BATCH)
                    .await
                    .map_err(|e| {
                        Error::Unavailable(format!(
                            "reading completions failed: {e}; reconnect with after_seq={cursor}"
                        ))
                    })?;
                let full = batch.len() == BATCH;
                for completion in batch {
                    let seq = completion.seq;
                    if !self.send(tx, Arc::new(completion)).await? {
                        return Ok(());
                    }
                    cursor = seq;
                }
                if !full {
                    break;
                }
            }
            if self.shutdown.is_cancelled() {
                // Everything stored before the stop has been sent.
                return Err(ended());
            }
            // Caught up: follow the broadcast while it brings the next seq.
            loop {
                let wake = tokio::select! {
                    wake = live.recv() => wake,
                    _ = tx.closed() => return Ok(()),
                    // One more read: completions of the drain go out first.
                    _ = self.shutdown.cancelled() => continue 'read_store,
                };
                match wake {
                    Ok(Wake::Completion(c)) if c.seq <= cursor => {}
                    Ok(Wake::Completion(c)) if c.seq == cursor + 1 => {
                        let seq = c.seq;
                        if !self.send(tx, c).await? {
                            return Ok(());
                        }
                        cursor = seq;
                    }
                    Ok(Wake::Seq(seq)) if seq <= cursor => {}
                    // A gap, a bare wake-up, or a lag: the store has it all.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue 'read_store,
                    Err(broadcast::error::RecvError::Closed) => return Err(ended()),
                }
            }
        }
    }

    /// Sends one completion: `Ok(false)` when the reader has gone. While the
    /// server stops, a slow reader is waited for no longer than the flush
    /// allows.
    async fn send(
        &self,
        tx: &mpsc::Sender<FeedItem>,
        completion: Arc<CompletionRecord>,
    ) -> Result<bool, Error> {
        let send = tx.send(Ok(completion));
        tokio::pin!(send);
        let sent = tokio::select! {
            sent = &mut send => sent,
            _ = self.shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_FLUSH, &mut send).await {
                Ok(sent) => sent,
                Err(_) => return Err(ended()),
            },
        };
        Ok(sent.is_ok())
    }
}

fn ended() -> Error {
    Error::Unavailable(
        "the server is shutting down: reconnect with after_seq set to the last seq you processed"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use uuid::Uuid;

    use super::*;
    use crate::{
        model::{Finish, Outcome, TaskRecord, TaskState},
        store::{Store, memory::MemoryStore},
    };

    struct Fixture {
        store: Arc<MemoryStore>,
        hub: Arc<SessionHub>,
        shutdown: CancellationToken,
        feed: Feed,
    }

    fn fixture() -> Fixture {
        let store = Arc::new(MemoryStore::default());
        let hub = Arc::new(SessionHub::default());
        let shutdown = CancellationToken::new();
        let feed = Feed::new(store.clone(), hub.clone(), shutdown.clone(), 4);
        Fixture {
            store,
            hub,
            shutdown,
            feed,
        }
    }

    /// Stores a task of `session` and finishes it; returns its completion.
    async fn complete(store: &MemoryStore, session: &str) -> CompletionRecord {
        let task = TaskRecord {
            id: Uuid::new_v4(),
            session: session.into(),
            tool: "t".into(),
            arguments: "{}".into(),
            timeout: Duration::from_secs(1),
            queue_deadline: None,
            idempotency_key: None,
            created_at: SystemTime::now(),
            state: TaskState::Queued,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outcome: None,
            seq: 0,
        };
        store.insert_task(&task).await.unwrap();
        let finish = Finish {
            task_id: task.id,
            state: TaskState::Succeeded,
            outcome: Outcome::Result("1".into()),
            attempts: 1,
            finished_at: SystemTime::now(),
        };
        store.finish_task(&finish).await.unwrap().unwrap()
    }

    async fn seq(rx: &mut mpsc::Receiver<FeedItem>) -> u64 {
        rx.recv().await.expect("an item").expect("a completion").seq
    }

    #[tokio::test]
    async fn replays_the_store_then_follows_the_hub() {
        let f = fixture();
        complete(&f.store, "s").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0);
        assert_eq!((seq(&mut rx).await, seq(&mut rx).await), (1, 2));
        let c = complete(&f.store, "s").await;
        f.hub.completed(c);
        assert_eq!(seq(&mut rx).await, 3);
    }

    #[tokio::test]
    async fn starts_after_the_cursor() {
        let f = fixture();
        complete(&f.store, "s").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 1);
        assert_eq!(seq(&mut rx).await, 2);
    }

    #[tokio::test]
    async fn a_gap_in_the_broadcast_is_filled_from_the_store() {
        let f = fixture();
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0);
        let first = complete(&f.store, "s").await;
        f.hub.completed(first);
        assert_eq!(seq(&mut rx).await, 1);
        // 2 is committed but its wake-up is lost; 3 is announced.
        complete(&f.store, "s").await;
        let third = complete(&f.store, "s").await;
        f.hub.completed(third);
        assert_eq!((seq(&mut rx).await, seq(&mut rx).await), (2, 3));
    }

    #[tokio::test]
    async fn other_sessions_are_not_sent() {
        let f = fixture();
        complete(&f.store, "other").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0);
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!((&*first.session, first.seq), ("s", 1));
    }

    #[tokio::test]
    async fn a_stop_sends_what_is_stored_then_ends_unavailable() {
        let f = fixture();
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0);
        complete(&f.store, "s").await;
        f.shutdown.cancel();
        assert_eq!(seq(&mut rx).await, 1);
        assert!(matches!(rx.recv().await, Some(Err(Error::Unavailable(_)))));
        assert!(rx.recv().await.is_none());
    }
}
