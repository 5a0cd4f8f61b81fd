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
//!
//! Finishes committed in one batch reach the hub from their own tasks, so
//! a session's seqs often arrive a little out of order. A completion ahead
//! of the next seq waits (at most `AHEAD` of them, for at most `GAP_WAIT`)
//! for the missing ones; only a gap that stays open costs a store read. On
//! the durable store that read was most of a feed's CPU under load.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    ByteWindow,
    hub::{SessionHub, Wake},
};
use crate::{
    error::Error,
    model::{CompletionRecord, SessionKey},
    store::SharedStore,
};

/// Completions read from the store per read.
const BATCH: usize = 256;

/// The least a replay read asks for (or the whole window, when smaller),
/// so a reader that frees a little at a time does not cost a store read
/// per completion.
const READ_FLOOR_BYTES: usize = 64 * 1024;

/// How long a stopping server waits for a reader to take one completion.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

/// Live completions held while an earlier seq is missing; one more means
/// the store is read instead.
const AHEAD: usize = 64;

/// How long a gap in the live seqs may stay open before the store is read:
/// the missing completion is committed and its task is about to announce it.
const GAP_WAIT: Duration = Duration::from_millis(20);

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
    /// the receiver is dropped or an error item ends them. Each completion
    /// is taken from `window` before it is queued: the reader gives it back
    /// ([`ByteWindow::give_back`]) once it has passed the completion on.
    pub fn open(
        &self,
        session: SessionKey,
        after_seq: u64,
        window: ByteWindow,
    ) -> mpsc::Receiver<FeedItem> {
        self.open_marked(session, after_seq, window, None)
    }

    /// [`Self::open`], and `caught_up` fires once the first replay from the
    /// store has been handed to the channel (its completions are in the
    /// receiver before the signal).
    pub fn open_marked(
        &self,
        session: SessionKey,
        after_seq: u64,
        window: ByteWindow,
        caught_up: Option<oneshot::Sender<()>>,
    ) -> mpsc::Receiver<FeedItem> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let feed = self.clone();
        tokio::spawn(async move {
            let out = Out { tx: &tx, window };
            if let Err(e) = feed
                .follow(session.as_key(), after_seq, &out, caught_up)
                .await
            {
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
        out: &Out<'_>,
        mut caught_up: Option<oneshot::Sender<()>>,
    ) -> Result<(), Error> {
        // Subscribe before the first read, so no completion falls between them.
        let mut live = self.hub.subscribe(session);
        let mut cursor = after_seq;
        'read_store: loop {
            loop {
                let bytes = read_bytes(&out.window);
                let batch = self
                    .store
                    .completions_within(session, cursor, BATCH, bytes)
                    .await
                    .map_err(|e| {
                        Error::Unavailable(format!(
                            "reading completions failed: {e}; reconnect with after_seq={cursor}"
                        ))
                    })?;
                let full = crate::store::read_may_continue(&batch, BATCH, bytes);
                for completion in batch {
                    let seq = completion.seq;
                    if !self.send(out, Arc::new(completion)).await? {
                        return Ok(());
                    }
                    cursor = seq;
                }
                if !full {
                    break;
                }
            }
            if let Some(signal) = caught_up.take() {
                // The reader may have stopped waiting for it.
                let _ = signal.send(());
            }
            if self.shutdown.is_cancelled() {
                // Everything stored before the stop has been sent.
                return Err(ended());
            }
            // Caught up: follow the broadcast while it brings the next seq,
            // holding completions that arrive ahead of it.
            let mut ahead: BTreeMap<u64, Arc<CompletionRecord>> = BTreeMap::new();
            let mut gap_since: Option<tokio::time::Instant> = None;
            loop {
                let gap_closes = async {
                    match gap_since {
                        Some(at) => tokio::time::sleep_until(at + GAP_WAIT).await,
                        None => std::future::pending().await,
                    }
                };
                let wake = tokio::select! {
                    wake = live.recv() => wake,
                    _ = out.tx.closed() => return Ok(()),
                    // One more read: completions of the drain go out first.
                    _ = self.shutdown.cancelled() => continue 'read_store,
                    // The missing seqs never came live: the store has them.
                    _ = gap_closes => continue 'read_store,
                };
                match wake {
                    Ok(Wake::Completion(c)) if c.seq <= cursor => {}
                    Ok(Wake::Completion(c)) if c.seq == cursor + 1 => {
                        let mut next = Some(c);
                        while let Some(c) = next {
                            let seq = c.seq;
                            if !self.send(out, c).await? {
                                return Ok(());
                            }
                            cursor = seq;
                            next = ahead.remove(&(cursor + 1));
                        }
                        ahead.retain(|&seq, _| seq > cursor);
                        gap_since = if ahead.is_empty() {
                            None
                        } else {
                            Some(tokio::time::Instant::now())
                        };
                    }
                    Ok(Wake::Completion(c)) if ahead.len() < AHEAD => {
                        gap_since.get_or_insert_with(tokio::time::Instant::now);
                        ahead.insert(c.seq, c);
                    }
                    Ok(Wake::Seq(seq)) if seq <= cursor => {}
                    // Too far ahead, a bare wake-up, or a lag: the store has it all.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue 'read_store,
                    Err(broadcast::error::RecvError::Closed) => return Err(ended()),
                }
            }
        }
    }

    /// Sends one completion once its bytes fit the window: `Ok(false)` when
    /// the reader has gone. While the server stops, a slow reader is waited
    /// for no longer than the flush allows.
    async fn send(&self, out: &Out<'_>, completion: Arc<CompletionRecord>) -> Result<bool, Error> {
        let send = async {
            tokio::select! {
                () = out.window.take(&completion) => {}
                () = out.tx.closed() => return false,
            }
            out.tx.send(Ok(completion)).await.is_ok()
        };
        tokio::pin!(send);
        Ok(tokio::select! {
            sent = &mut send => sent,
            _ = self.shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_FLUSH, &mut send).await {
                Ok(sent) => sent,
                Err(_) => return Err(ended()),
            },
        })
    }
}

/// How many bytes of completions a replay read may bring: what the window
/// has free (at least [`READ_FLOOR_BYTES`] or the window's size, at most
/// the store's [`COMPLETIONS_READ_BYTES`](crate::store::COMPLETIONS_READ_BYTES)).
/// A read's completions are held until the window takes them, so a stalled
/// reader's feed holds its window, a floor and one completion, not its
/// window and a whole read beside it.
fn read_bytes(window: &ByteWindow) -> usize {
    let floor = READ_FLOOR_BYTES.min(window.size());
    window
        .available()
        .clamp(floor, crate::store::COMPLETIONS_READ_BYTES.max(floor))
}

/// Where a feed sends: its channel, and the byte window its reader keeps.
struct Out<'a> {
    tx: &'a mpsc::Sender<FeedItem>,
    window: ByteWindow,
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
        complete_with(store, session, "1").await
    }

    /// [`complete`] with `result` as the task's result.
    async fn complete_with(store: &MemoryStore, session: &str, result: &str) -> CompletionRecord {
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
            delivery: Default::default(),
            call: Default::default(),
            notes: Default::default(),
            retry_of: None,
        };
        store.insert_task(&task).await.unwrap();
        let finish = Finish {
            task_id: task.id,
            state: TaskState::Succeeded,
            outcome: Outcome::Result(result.into()),
            attempts: 1,
            finished_at: SystemTime::now(),
            notes: Default::default(),
        };
        store.finish_task(&finish).await.unwrap().unwrap()
    }

    /// A window no test fills.
    fn wide() -> ByteWindow {
        ByteWindow::new(u32::MAX as usize)
    }

    async fn seq(rx: &mut mpsc::Receiver<FeedItem>) -> u64 {
        rx.recv().await.expect("an item").expect("a completion").seq
    }

    #[tokio::test]
    async fn replays_the_store_then_follows_the_hub() {
        let f = fixture();
        complete(&f.store, "s").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, wide());
        assert_eq!((seq(&mut rx).await, seq(&mut rx).await), (1, 2));
        let c = complete(&f.store, "s").await;
        f.hub.completed(c);
        assert_eq!(seq(&mut rx).await, 3);
    }

    /// A replay read cut short by the store's byte bound is not taken for
    /// the end of what is stored: every stored completion comes, with no
    /// live wake-up to prompt another read.
    #[tokio::test]
    async fn a_replay_goes_on_past_a_read_cut_at_its_byte_bound() {
        let f = fixture();
        let big = format!(
            "\"{}\"",
            "r".repeat(crate::store::COMPLETIONS_READ_BYTES / 3)
        );
        for _ in 0..5 {
            complete_with(&f.store, "s", &big).await;
        }
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, wide());
        for expected in 1..=5 {
            let next = tokio::time::timeout(Duration::from_secs(10), seq(&mut rx)).await;
            assert_eq!(next.ok(), Some(expected), "the replay stopped");
        }
    }

    #[tokio::test]
    async fn starts_after_the_cursor() {
        let f = fixture();
        complete(&f.store, "s").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 1, wide());
        assert_eq!(seq(&mut rx).await, 2);
    }

    #[tokio::test]
    async fn a_gap_in_the_broadcast_is_filled_from_the_store() {
        let f = fixture();
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, wide());
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
    async fn completions_announced_out_of_order_go_out_in_order_without_a_store_read() {
        let f = fixture();
        let (caught_up, replayed) = oneshot::channel();
        let mut rx = f
            .feed
            .open_marked(SessionKey::from_key("s"), 0, wide(), Some(caught_up));
        replayed.await.unwrap();
        // Completed in another store: a read of the feed's store finds none
        // of them, so whatever arrives came from the broadcast.
        let elsewhere = MemoryStore::default();
        let (one, two, three) = (
            complete(&elsewhere, "s").await,
            complete(&elsewhere, "s").await,
            complete(&elsewhere, "s").await,
        );
        f.hub.completed(three);
        f.hub.completed(one);
        f.hub.completed(two);
        let got = [seq(&mut rx).await, seq(&mut rx).await, seq(&mut rx).await];
        assert_eq!(got, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_stays_open_is_read_from_the_store() {
        let f = fixture();
        let (caught_up, replayed) = oneshot::channel();
        let mut rx = f
            .feed
            .open_marked(SessionKey::from_key("s"), 0, wide(), Some(caught_up));
        replayed.await.unwrap();
        complete(&f.store, "s").await;
        let second = complete(&f.store, "s").await;
        // 1's announcement never comes; the store has it once the wait ends.
        f.hub.completed(second);
        assert_eq!((seq(&mut rx).await, seq(&mut rx).await), (1, 2));
    }

    #[tokio::test]
    async fn other_sessions_are_not_sent() {
        let f = fixture();
        complete(&f.store, "other").await;
        complete(&f.store, "s").await;
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, wide());
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!((&*first.session, first.seq), ("s", 1));
    }

    #[tokio::test]
    async fn a_stop_sends_what_is_stored_then_ends_unavailable() {
        let f = fixture();
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, wide());
        complete(&f.store, "s").await;
        f.shutdown.cancel();
        assert_eq!(seq(&mut rx).await, 1);
        assert!(matches!(rx.recv().await, Some(Err(Error::Unavailable(_)))));
        assert!(rx.recv().await.is_none());
    }

    /// A replay read asks the store for what the window has free, so a
    /// stalled reader's feed does not hold a whole read beside its full
    /// window; never less than the floor (or the window, when smaller), never
    /// more than the store's own bound.
    #[tokio::test]
    async fn a_replay_read_asks_for_what_the_window_has_free() {
        let f = fixture();
        let big = complete_with(&f.store, "s", &format!("\"{}\"", "r".repeat(900_000))).await;
        let window = ByteWindow::new(1 << 20);
        assert_eq!(read_bytes(&window), 1 << 20);
        window.take(&big).await;
        let left = window.available();
        assert!((READ_FLOOR_BYTES..200_000).contains(&left));
        assert_eq!(read_bytes(&window), left);
        // A window the big one fills exactly: the floor, not nothing.
        let full = ByteWindow::new((1 << 20) - left);
        full.take(&big).await;
        assert_eq!((full.available(), read_bytes(&full)), (0, READ_FLOOR_BYTES));
        let small = ByteWindow::new(12_000);
        small.take(&complete(&f.store, "s").await).await;
        assert_eq!(read_bytes(&small), 12_000);
        let huge = ByteWindow::new(1 << 30);
        assert_eq!(read_bytes(&huge), crate::store::COMPLETIONS_READ_BYTES);
    }

    /// A reader that has not passed its completions on holds at most its
    /// window of them (one, when one alone fills it), however many its
    /// channel could take; each given back lets the next come.
    #[tokio::test]
    async fn a_slow_reader_holds_no_more_than_its_byte_window() {
        let f = fixture();
        let result = format!("\"{}\"", "r".repeat(10_000));
        for _ in 0..3 {
            complete_with(&f.store, "s", &result).await;
        }
        let window = ByteWindow::new(12_000);
        let mut rx = f.feed.open(SessionKey::from_key("s"), 0, window.clone());
        let first = rx.recv().await.unwrap().unwrap();
        for _ in 0..10 {
            // The feed runs on this thread: it has gone as far as it can.
            tokio::task::yield_now().await;
        }
        assert!(
            rx.try_recv().is_err(),
            "a second 10 kB completion was queued"
        );
        window.give_back(&first);
        let second = rx.recv().await.unwrap().unwrap();
        assert_eq!(second.seq, 2);
    }
}
