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
//! Under steady load the thread's pass never quite catches up: the writer
//! commits while it copies. Asked again after every commit, it ran pass
//! after pass of a few frames, each with two syncs (1,790 passes in 10 s at
//! an open-loop 5,000 submits/s), and those syncs slowed the writer's own
//! (ack p99 2.9-3.5 ms). So the writer asks once; when that pass is done,
//! the writer copies the few frames committed meanwhile itself, in its WAL
//! hook (a PASSIVE checkpoint of its own, which finds no writer to wait
//! for), and its next transaction restarts the WAL.
//!
//! Durability does not depend on it: a committed transaction is in the
//! fsynced WAL whether or not it has been checkpointed.
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, sync_channel},
    },
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
    /// Passes the thread has finished.
    passes: Arc<AtomicU64>,
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
        let passes = Arc::new(AtomicU64::new(0));
        let done = passes.clone();
        let thread = std::thread::Builder::new()
            .name("errand-store-checkpoint".into())
            .spawn(move || run(conn, nudged, &done))
            .map_err(|e| io_error("cannot start the store's checkpoint thread".into(), e))?;
        Ok(Self {
            nudge: Some(nudge),
            passes,
            thread: Some(thread),
        })
    }

    /// Installs the writer connection's WAL hook, which SQLite calls after
    /// each commit with the pages in the WAL: past [`WAL_PAGES`] it asks this
    /// thread for a pass, once; after that pass it checkpoints the rest
    /// itself (see the module's doc). It replaces SQLite's automatic
    /// checkpoint (that is a WAL hook too).
    pub(super) fn hook(&self, writer: &mut Connection) -> Result<(), StoreError> {
        let Some(nudge) = self.nudge.clone() else {
            return Ok(());
        };
        let passes = self.passes.clone();
        let mut rule = Rule::default();
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
                let finished = passes.load(Ordering::Acquire);
                match rule.after_commit(i64::from(pages), finished) {
                    Step::Nothing => {}
                    Step::Ask => {
                        if nudge.try_send(()).is_err() {
                            // A pass is pending already: ask again next time.
                            rule.asked = None;
                        }
                    }
                    // Busy (the thread is in a pass) or failed: the next
                    // commit asks again.
                    Step::CheckpointHere => {
                        let _ = wal.checkpoint();
                    }
                }
                Ok(())
            }))
            .map_err(|e| StoreError::Internal(format!("cannot watch the store's WAL: {e}")))
    }
}

/// What the writer does after a commit.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    /// Ask the thread for a pass.
    Ask,
    /// Checkpoint on the writer's connection: the frames committed during
    /// the thread's pass.
    CheckpointHere,
}

/// When the writer asks for a pass, and when it finishes one itself.
#[derive(Debug, Default)]
struct Rule {
    /// The passes finished when the writer asked for one; `None`: not asked.
    asked: Option<u64>,
}

impl Rule {
    /// `pages`: in the WAL after the commit; `finished`: passes finished.
    fn after_commit(&mut self, pages: i64, finished: u64) -> Step {
        if pages < WAL_PAGES {
            self.asked = None;
            return Step::Nothing;
        }
        match self.asked {
            None => {
                self.asked = Some(finished);
                Step::Ask
            }
            Some(at) if finished > at => {
                self.asked = None;
                Step::CheckpointHere
            }
            Some(_) => Step::Nothing,
        }
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

fn run(conn: Connection, nudged: Receiver<()>, passes: &AtomicU64) {
    while nudged.recv().is_ok() {
        // PASSIVE copies what no reader still needs and never waits for one.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            warn!(error = %e, "checkpointing the store's WAL failed; the next nudge tries again");
        }
        passes.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_asks_once_and_finishes_the_pass_itself() {
        let mut rule = Rule::default();
        assert_eq!(rule.after_commit(WAL_PAGES - 1, 0), Step::Nothing);
        assert_eq!(rule.after_commit(WAL_PAGES, 0), Step::Ask);
        // While the pass runs, more commits ask nothing more (before: a pass
        // of a few frames and two syncs per commit).
        assert_eq!(rule.after_commit(WAL_PAGES + 10, 0), Step::Nothing);
        assert_eq!(rule.after_commit(WAL_PAGES + 20, 0), Step::Nothing);
        // The pass is done: the frames committed meanwhile are copied here.
        assert_eq!(rule.after_commit(WAL_PAGES + 30, 1), Step::CheckpointHere);
        // The WAL restarted with the next transaction.
        assert_eq!(rule.after_commit(3, 1), Step::Nothing);
        assert_eq!(rule.after_commit(WAL_PAGES, 1), Step::Ask);
    }

    #[test]
    fn a_checkpoint_that_did_not_restart_the_wal_asks_again() {
        // A reader held old frames, so the WAL went on growing.
        let mut rule = Rule::default();
        assert_eq!(rule.after_commit(WAL_PAGES, 0), Step::Ask);
        assert_eq!(rule.after_commit(WAL_PAGES + 1, 1), Step::CheckpointHere);
        assert_eq!(rule.after_commit(WAL_PAGES + 2, 1), Step::Ask);
    }
}
