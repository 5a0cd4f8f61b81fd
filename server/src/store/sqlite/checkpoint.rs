//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the writer thread: every thousandth page or so, a commit
//! also copies the WAL back into the file and fsyncs it, and every caller
//! of that batch waits. Here the writer only nudges this thread after each
//! commit; it runs `PRAGMA wal_checkpoint(PASSIVE)`, which never blocks the
//! writer or readers, on the other core. Once a checkpoint has caught up,
//! the writer's next transaction starts the WAL again from its beginning,
//! so the WAL stays near [`WAL_PAGES`] pages under steady load.
//!
//! Durability does not depend on it: a committed transaction is in the
//! fsynced WAL whether or not it has been checkpointed.
use std::{
    path::Path,
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    thread::JoinHandle,
};

use rusqlite::Connection;
use tracing::warn;

use super::errors::{io_error, open_error};
use crate::store::StoreError;

/// WAL pages (4 KiB each, so 32 MiB) beyond which a commit asks for a
/// checkpoint. A checkpoint copies each page once however often the WAL
/// holds it, and the hot pages (the ends of the tables and indexes) are in
/// every batch: eight times SQLite's default of 1000 took the server's
/// median CPU per task from 132 to 119 µs (`errand-bench e2e`, 256
/// submitters, 3 runs of each interleaved). Under `journal_size_limit`
/// (64 MiB).
pub(super) const WAL_PAGES: i64 = 8192;

/// The writer's handle: nudges, never waits.
pub(super) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpoint connection to `path` and starts its thread.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        // FULL: a checkpoint fsyncs the file before the WAL may be reused.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| open_error(path, e))?;
        let (nudge, nudged) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("errand-store-checkpoint".into())
            .spawn(move || run(conn, nudged))
            .map_err(|e| io_error("cannot start the store's checkpoint thread".into(), e))?;
        Ok(Self {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Installs the writer connection's WAL hook, which SQLite calls after
    /// each commit with the pages in the WAL: past [`WAL_PAGES`] it nudges
    /// this thread. It replaces SQLite's automatic checkpoint (that is a WAL
    /// hook too). Nudges that come while one is pending merge into it.
    pub(super) fn hook(&self, writer: &mut Connection) -> Result<(), StoreError> {
        let Some(nudge) = self.nudge.clone() else {
            return Ok(());
        };
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                if i64::from(pages) >= WAL_PAGES {
                    let _ = nudge.try_send(());
                }
                Ok(())
            }))
            .map_err(|e| StoreError::Internal(format!("cannot watch the store's WAL: {e}")))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the store's checkpoint thread panicked");
        }
    }
}

fn run(conn: Connection, nudged: Receiver<()>) {
    while nudged.recv().is_ok() {
        // PASSIVE copies what no reader still needs and never waits for one.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            warn!(error = %e, "checkpointing the store's WAL failed; the next nudge tries again");
        }
    }
}
