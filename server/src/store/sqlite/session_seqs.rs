//! The writer's copy of each session's seq counters (`sessions.last_seq`,
//! `sessions.acked_seq`), written back once per session per batch.
//!
//! Every finish takes its session's next seq and every ack reads and moves
//! the session's acknowledged seq. Done in SQL, that is a statement on the
//! `sessions` table per finish and two per ack. The writer is the only one
//! who changes the table, so it can keep the counters itself and write each
//! session it changed once, just before the batch's COMMIT: readers, who
//! only see committed batches, see the same rows as before.
//!
//! Rollback: a batch whose transaction SQLite rolled back, or whose commit
//! failed, may have moved counters that are not on disk. The writer then
//! [`SessionSeqs::forget`]s them all and reads them again. A counter kept
//! past a failed change that did not roll back is still right: a finish takes
//! its seq ([`SessionSeqs::took`]) only once its row is written, and an ack
//! moves its counter only once its delete succeeded.
use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::sql::codec::to_i64;

/// Most sessions kept between batches; past it the copy is dropped after a
/// batch's write-back and read again as sessions come back. Each entry is a
/// session name and two counters, so this bounds the copy to well under a
/// MiB for names of typical length.
const MOST_KEPT: usize = 4096;

/// A session's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Seqs {
    /// The seq of its latest completion (0: none yet).
    pub last: u64,
    /// The seq up to which it acknowledged its completions.
    pub acked: u64,
}

#[derive(Debug, Default)]
pub(super) struct SessionSeqs {
    known: HashMap<Box<str>, Seqs>,
    /// Sessions changed since the last write-back.
    changed: HashSet<Box<str>>,
}

impl SessionSeqs {
    /// The session's counters (zeros for a session with no row yet).
    pub fn get(&mut self, conn: &Connection, session: &str) -> rusqlite::Result<Seqs> {
        if let Some(seqs) = self.known.get(session) {
            return Ok(*seqs);
        }
        let seqs = conn
            .prepare_cached("SELECT last_seq, acked_seq FROM sessions WHERE session = ?1")?
            .query_row([session], |r| {
                Ok(Seqs {
                    last: r.get::<_, i64>(0)?.max(0) as u64,
                    acked: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })
            .optional()?
            .unwrap_or_default();
        self.known.insert(session.into(), seqs);
        Ok(seqs)
    }

    /// The seq the session's next completion takes (not taken yet: see
    /// [`Self::took`]).
    pub fn next(&mut self, conn: &Connection, session: &str) -> rusqlite::Result<u64> {
        Ok(self.get(conn, session)?.last + 1)
    }

    /// Records that the session's completion `seq` (from [`Self::next`])
    /// was written.
    pub fn took(&mut self, session: &str, seq: u64) {
        if let Some(seqs) = self.known.get(session).copied() {
            self.set(session, Seqs { last: seq, ..seqs });
        }
    }

    /// Moves the session's acknowledged seq to `acked` (read with
    /// [`Self::get`] first, so the session is known).
    pub fn ack(&mut self, session: &str, acked: u64) {
        if let Some(seqs) = self.known.get(session).copied() {
            self.set(session, Seqs { acked, ..seqs });
        }
    }

    fn set(&mut self, session: &str, seqs: Seqs) {
        if let Some(known) = self.known.get_mut(session) {
            *known = seqs;
        } else {
            self.known.insert(session.into(), seqs);
        }
        if !self.changed.contains(session) {
            self.changed.insert(session.into());
        }
    }

    /// Writes every changed session inside the batch's transaction, before
    /// its COMMIT.
    /// Outside a transaction (SQLite rolled it back unnoticed) it writes
    /// nothing, forgets every counter and fails, as the COMMIT would.
    pub fn write_back(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if conn.is_autocommit() {
            self.forget();
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some("no transaction to write the session counters in".into()),
            ));
        }
        let mut upsert = conn.prepare_cached(
            "INSERT INTO sessions (session, last_seq, acked_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (session) DO UPDATE SET last_seq = excluded.last_seq,
                 acked_seq = excluded.acked_seq",
        )?;
        for session in self.changed.drain() {
            if let Some(seqs) = self.known.get(&session) {
                upsert.execute(params![&*session, to_i64(seqs.last), to_i64(seqs.acked)])?;
            }
        }
        if self.known.len() > MOST_KEPT {
            self.known.clear();
        }
        Ok(())
    }

    /// Drops every counter, changed or not: the transaction they were
    /// changed in is gone.
    pub fn forget(&mut self) {
        self.known.clear();
        self.changed.clear();
    }
}
