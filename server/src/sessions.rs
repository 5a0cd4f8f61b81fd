//! Session streams: wake-ups for open `Completions` streams, and the loop
//! that replays a session's retained completions, then follows live ones.
//!
//! A stream keeps a cursor (the last seq it sent). It replays from the store
//! until it has caught up, then takes live completions straight from the
//! session's broadcast as they are committed, as long as each is the next
//! seq; on a gap (completions committed out of order by concurrent
//! finishes), a lag (a slow reader overran the broadcast) or a bare wake-up
//! it reads the store again. Replay and live delivery share one cursor, a
//! slow reader costs a bounded channel and nothing more, and nothing is
//! missed or sent twice: each stream sends seqs in order, each once.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use errand_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use crate::{core::Core, model::CompletionRecord};

/// Completions read from the store per read.
const BATCH: usize = 256;

/// Live completions buffered per watched session before slow readers lag
/// (and fall back to the store).
const LIVE_BUFFER: usize = 64;

/// What a session's streams hear.
#[derive(Clone, Debug)]
pub enum Wake {
    /// A completion, committed and readable from the store.
    Completion(Arc<CompletionRecord>),
    /// Completions up to this seq are readable from the store (for example
    /// finished by another server).
    Seq(u64),
}

/// How long a stopping server waits for a reader to take one completion.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// Wake-ups for sessions that have an open stream.
#[derive(Default)]
pub struct SessionHub {
    watchers: Mutex<HashMap<Arc<str>, broadcast::Sender<Wake>>>,
}

impl SessionHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, broadcast::Sender<Wake>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the session's wake-ups from now on.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<Wake> {
        let mut watchers = self.lock();
        match watchers.get(session) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(LIVE_BUFFER);
                watchers.insert(session.into(), tx);
                rx
            }
        }
    }

    /// Hands a committed completion to the session's streams.
    pub fn completed(&self, completion: CompletionRecord) {
        self.wake(
            &completion.session.clone(),
            Wake::Completion(Arc::new(completion)),
        );
    }

    /// Tells the session's streams that completions up to `seq` are readable.
    pub fn notify(&self, session: &str, seq: u64) {
        self.wake(session, Wake::Seq(seq));
    }

    fn wake(&self, session: &str, wake: Wake) {
        let mut watchers = self.lock();
        if let Some(tx) = watchers.get(session)
            && tx.send(wake).is_err()
        {
            // Every stream of the session has closed.
            watchers.remove(session);
        }
    }

    /// Forgets sessions whose streams have all closed.
    pub fn prune(&self) {
        self.lock().retain(|_, tx| tx.receiver_count() > 0);
    }

    /// The sessions with an open stream (shared mode checks their latest
    /// seq periodically, in case a wake-up from another server was lost).
    pub fn watched_sessions(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Number of sessions with at least one open stream.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }
}

/// The `Completions` stream of `session` from `after_seq` on.
pub fn completions(
    core: Arc<Core>,
    session: String,
    after_seq: u64,
) -> ReceiverStream<Result<pb::Completion, Status>> {
    let (tx, rx) = mpsc::channel(core.config().limits.stream_buffer);
    tokio::spawn(async move {
        if let Err(status) = follow(&core, &session, after_seq, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
        debug!(session_id = %session, "completions stream ended");
    });
    ReceiverStream::new(rx)
}

/// Sends completions until the client goes away (`Ok`) or the stream must end
/// with a status (`Err`). A stopping server still sends what is stored, then
/// ends the stream with UNAVAILABLE.
async fn follow(
    core: &Core,
    session: &str,
    after_seq: u64,
    tx: &mpsc::Sender<Result<pb::Completion, Status>>,
) -> Result<(), Status> {
    let shutdown = core.shutdown_token();
    // Subscribe before the first read, so no completion falls between them.
    let mut live = core.sessions().subscribe(session);
    let mut cursor = after_seq;
    'read_store: loop {
        loop {
            let batch = core
                .store()
                .completions_after(session, cursor, BATCH)
                .await
                .map_err(|e| {
                    Status::unavailable(format!(
                        "reading completions failed: {e}; reconnect with after_seq={cursor}"
                    ))
                })?;
            let full = batch.len() == BATCH;
            for completion in &batch {
                if !send(core, tx, completion).await? {
                    return Ok(());
                }
                cursor = completion.seq;
            }
            if !full {
                break;
            }
        }
        if shutdown.is_cancelled() {
            // Everything stored before the stop has been sent.
            return Err(ended());
        }
        // Caught up: follow the broadcast while it brings the next seq.
        loop {
            let wake = tokio::select! {
                wake = live.recv() => wake,
                _ = tx.closed() => return Ok(()),
                // One more read: completions of the drain go out first.
                _ = shutdown.cancelled() => continue 'read_store,
            };
            match wake {
                Ok(Wake::Completion(c)) if c.seq <= cursor => {}
                Ok(Wake::Completion(c)) if c.seq == cursor + 1 => {
                    if !send(core, tx, &c).await? {
                        return Ok(());
                    }
                    cursor = c.seq;
                }
                Ok(Wake::Seq(seq)) if seq <= cursor => {}
                // A gap, a bare wake-up, or a lag: the store has it all.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue 'read_store,
                Err(broadcast::error::RecvError::Closed) => return Err(ended()),
            }
        }
    }
}

/// Sends one completion: `Ok(false)` when the client has gone. While the
/// server stops, a slow reader is waited for no longer than the flush allows.
async fn send(
    core: &Core,
    tx: &mpsc::Sender<Result<pb::Completion, Status>>,
    completion: &CompletionRecord,
) -> Result<bool, Status> {
    let shutdown = core.shutdown_token();
    let send = tx.send(Ok(completion.to_proto()));
    tokio::pin!(send);
    let sent = tokio::select! {
        sent = &mut send => sent,
        _ = shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_FLUSH, &mut send).await {
            Ok(sent) => sent,
            Err(_) => return Err(ended()),
        },
    };
    if sent.is_err() {
        return Ok(false);
    }
    let waited = std::time::SystemTime::now()
        .duration_since(completion.completed_at)
        .unwrap_or_default();
    core.metrics().delivered_after(waited);
    Ok(true)
}

fn ended() -> Status {
    Status::unavailable(
        "the server is shutting down: reconnect with after_seq set to the last seq you processed",
    )
}
