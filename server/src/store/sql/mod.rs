//! What the SQLite and PostgreSQL stores share, written once: the column
//! encoding and decoding ([`codec`]), the group-commit queue that answers a
//! change only after its commit ([`batch`]), and the purge chunking
//! ([`Purge`]).
use std::time::SystemTime;

pub(crate) mod batch;
pub(crate) mod call_columns;
pub(crate) mod codec;
pub(crate) mod listing;

/// Rows one purge statement deletes: a large purge runs as several short
/// statements so it never holds the writer (SQLite) or its row locks
/// (PostgreSQL) for long.
pub(crate) const PURGE_CHUNK: i64 = 5_000;

/// A purge of the completions (and their tasks) that finished before
/// `cutoff`, run in steps of at most [`PURGE_CHUNK`] rows.
#[derive(Debug)]
pub(crate) struct Purge {
    pub cutoff: SystemTime,
    /// Completions removed by the steps so far.
    pub removed: u64,
}

impl Purge {
    pub fn new(cutoff: SystemTime) -> Self {
        Self { cutoff, removed: 0 }
    }

    /// Counts a step that deleted `n` rows. `true` when the step was full,
    /// so more rows may be left: run another.
    pub fn step(&mut self, n: u64) -> bool {
        self.removed += n;
        n >= PURGE_CHUNK as u64
    }
}
