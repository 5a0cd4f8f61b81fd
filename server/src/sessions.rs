//! Session streams: wake-ups for open `Completions` streams, and the loop
//! that replays a session's retained completions, then follows live ones.
//!
//! A stream keeps only a cursor (the last seq it sent) and reads the store
//! after it whenever the session's seq moves. Replay and live delivery are
//! one code path, a slow reader costs a bounded channel and nothing more,
//! and nothing is missed or sent twice: each stream sends seqs in order,
//! each once.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use errand_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use crate::core::Core;

/// Completions read from the store per wake-up.
const BATCH: usize = 256;

/// The latest seq of each session that has an open stream.
#[derive(Default)]
pub struct SessionHub {
    watchers: Mutex<HashMap<Arc<str>, watch::Sender<u64>>>,
}

impl SessionHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, watch::Sender<u64>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes whenever the session gets a new completion.
    pub fn subscribe(&self, session: &str) -> watch::Receiver<u64> {
        let mut watchers = self.lock();
        match watchers.get(session) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                watchers.insert(session.into(), tx);
                rx
            }
        }
    }

    /// Wakes the session's streams: `seq` is now readable from the store.
    pub fn notify(&self, session: &str, seq: u64) {
        let mut watchers = self.lock();
        if let Some(tx) = watchers.get(session) {
            if tx.receiver_count() == 0 {
                watchers.remove(session);
            } else {
                tx.send_if_modified(|latest| {
                    let newer = seq > *latest;
                    *latest = (*latest).max(seq);
                    newer
                });
            }
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
/// with a status (`Err`).
async fn follow(
    core: &Core,
    session: &str,
    after_seq: u64,
    tx: &mpsc::Sender<Result<pb::Completion, Status>>,
) -> Result<(), Status> {
    let shutdown = core.shutdown_token();
    let ended = || {
        Status::unavailable(
            "the server is shutting down: reconnect with after_seq set to the last seq you processed",
        )
    };
    // Subscribe before the first read, so no completion falls between them.
    let mut latest = core.sessions().subscribe(session);
    let mut cursor = after_seq;
    loop {
        latest.borrow_and_update();
        let batch = core
            .store()
            .completions_after(session, cursor, BATCH)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "reading completions failed: {e}; reconnect with after_seq={cursor}"
                ))
            })?;
        if batch.is_empty() {
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return Err(ended()) },
                _ = tx.closed() => return Ok(()),
                _ = shutdown.cancelled() => return Err(ended()),
            }
            continue;
        }
        for completion in batch {
            cursor = completion.seq;
            tokio::select! {
                sent = tx.send(Ok(completion.to_proto())) => if sent.is_err() { return Ok(()) },
                _ = shutdown.cancelled() => return Err(ended()),
            }
        }
    }
}
