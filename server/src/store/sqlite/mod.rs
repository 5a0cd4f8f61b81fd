//! The durable embedded store: SQLite in WAL mode with `synchronous=FULL`, in
//! `errand.db` inside the data dir. Once a call returns `Ok`, its change is on
//! disk (the WAL is fsynced at each commit).
//!
//! **Group commit.** One writer thread owns the only write connection. Callers
//! send their change over the bounded queue of `sql/batch.rs` (which says
//! how it pushes back, and why dispatch records never wait) and await a
//! oneshot answer; the writer takes everything queued (up to `MAX_BATCH`),
//! applies it in one transaction, commits with one fsync, and only then
//! answers every caller.
//! Submits and results that arrive while a commit is in flight therefore
//! share the next fsync: the cost of durability is one fsync per batch, not
//! one per task. WAL checkpoints run on their own thread (`checkpoint.rs`),
//! never inside a batch's commit. The writer's connection writes each
//! commit's WAL frames in one `pwrite` (`wal_vfs.rs`). Each change is one statement, or a savepoint when it takes
//! several (a tool registration), so a change that fails (a full disk) fails alone, unless SQLite
//! abandons the whole transaction, in which case every change of that batch
//! fails with it. A finish takes its seq, then writes its row, without a
//! savepoint (see `rows::finish_task`): one that fails between the two
//! loses that seq.
//!
//! **Reads** (`get_task`, `completions_after`, `unfinished_tasks`) use a small
//! pool of separate connections on the blocking thread pool: WAL lets them run
//! while the writer commits, and they only ever see whole commits, so a
//! session's completions appear in `seq` order with no gap (but the seq a
//! failed finish lost).
//!
//! **Data layout.** One `tasks` row per task; a finished task carries its
//! completion (`seq > 0`), so a completion costs no second row and removing a
//! completion removes its task and idempotency key with it. `sessions` keeps
//! each session's last seq, also after its completions are gone, so seqs never
//! repeat. The schema is versioned with `PRAGMA user_version` (`MIGRATIONS` in `schema.rs`);
//! a file written by a newer errand is refused rather than misread.
//!
//! **Start-up check.** `integrity.rs`: the whole file is checked at start
//! only when the last run did not stop cleanly (or the file changed since).
//! An emptied `errand.db` (0 bytes) where the data dir says a store was
//! written is refused before SQLite opens it, never taken as a new store.
//! `errand check-store` ([`check_store`]) refuses what the start refuses.
//! `errand backup` ([`backup_store`], `backup.rs`) copies the store while
//! a server writes it.
//!
//! **Errors.** `errors.rs`: messages carry no `store:` prefix (the server's
//! error type adds it once) and no path; an I/O error says which of the
//! store's files, what the OS said (errno) and what its operator can do.
//!
//! **Damaged rows.** `decode.rs` reads every row back: a row whose values
//! no longer decode is named (task ID, column, what is wrong), and never
//! takes the others down: recovery, listings and the tool registry leave
//! it out and log it at error level; a session's completions stop before
//! it, naming it, rather than skip it.
//!
//! **One server per data dir.** `errand.lock` in the data dir is held with an
//! exclusive advisory lock (`flock` through the `fs4` crate) for the store's
//! lifetime; a second server on the same dir fails at open with a clear error.
use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    thread::JoinHandle,
    time::SystemTime,
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};
use uuid::Uuid;

pub use super::sql::batch::WriterStats;
use super::sql::{
    Purge,
    batch::{self, Reply, writer_gone},
    codec::to_i64,
};
use super::{Acked, Durable, Inserted, SessionSeqs, Store, StoreError, StoredTool, TaskQuery};
use crate::model::{CompletionRecord, Finish, TaskHead, TaskRecord};
use crate::store::health::WriteHealth;
pub use backup::{BackedUp, backup_store};
use checkpoint::Checkpointer;
use decode::task_from_row;
use errors::{io_error, open_error, store_error_in};
use integrity::{BackgroundCheck, Start, StartCheck};
pub use integrity::{CLEAN_FILE, CheckState, Checked, SUSPECT_FILE, check_store};
use rows::{SELECT_COMPLETIONS, SELECT_TASK, SELECT_UNFINISHED};
use schema::{lock_data_dir, open_writer};
use writer::{Op, Writer};

mod backup;
mod checkpoint;
mod decode;
mod errors;
pub mod files;
mod integrity;
mod lost;
mod rows;
mod schema;
mod session_seqs;
#[cfg(test)]
mod tests;
mod tools;
mod wal_vfs;
mod writer;

/// The database file inside the data dir.
pub const DB_FILE: &str = "errand.db";
/// The lock file inside the data dir, held while a server runs.
pub const LOCK_FILE: &str = "errand.lock";

/// Read connections kept open, and most reads running at once.
const READERS: usize = 4;

/// The durable store. Dropping it lets the writer finish what is queued,
/// closes the database and releases the data dir.
pub struct SqliteStore {
    // Field order is drop order: in `Drop`, the check is stopped first, the
    // writer channel closes, the thread is joined, then readers close; the
    // lock goes last.
    tx: Option<batch::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    /// Dropped after the writer and the readers: its connection is the
    /// last, whose close folds the WAL into the file.
    checkpointer: Option<Checkpointer>,
    /// The check of a file that was not closed cleanly, while serving.
    /// Stopped first when the store is dropped.
    check: Option<BackgroundCheck>,
    /// Set once that check finds the file corrupt: writes fail with it.
    corrupt: Arc<OnceLock<StoreError>>,
    read_permits: Semaphore,
    data_dir: PathBuf,
    /// Whether writes go through; the writer notes each commit.
    health: Arc<WriteHealth>,
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating when missing) the data dir (mode 0700) and `errand.db`
    /// in it (0600, as are its `-wal`/`-shm` files; see [`files`]).
    ///
    /// Fails with a message that says what to do when the dir is in use by
    /// another server, the file is not an errand database or is found
    /// corrupt before serving, it was written by a newer errand, or it lost
    /// its store (emptied, where the data dir says a store was written:
    /// `integrity.rs`). After a crash the file is checked beside the
    /// serving store instead ([`Self::checked`]; `integrity.rs`).
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let Opening { lock, start, path } = Self::begin_open(data_dir)?;
        let (mut conn, left) = open_writer(&path, &start)?;
        if start.check != StartCheck::Skip && left == StartCheck::Skip {
            // Checked before serving, and sound (a restored file, say).
            integrity::remove_mark(data_dir, SUSPECT_FILE)?;
        }
        let corrupt = Arc::new(OnceLock::new());
        let check = match left {
            StartCheck::Beside => Some(BackgroundCheck::start(data_dir, corrupt.clone())?),
            StartCheck::Skip | StartCheck::Now => None,
        };
        let checkpointer = Checkpointer::start(&path)?;
        checkpointer.hook(&mut conn)?;
        let (tx, rx) = batch::queue();
        let health = Arc::new(WriteHealth::default());
        let writer = std::thread::Builder::new()
            .name("errand-store-writer".into())
            .spawn({
                let corrupt = corrupt.clone();
                let health = health.clone();
                move || Writer::new(conn, rx.counters(), corrupt, health).run(rx)
            })
            .map_err(|e| io_error("cannot start the store's writer thread".into(), e))?;
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        });
        // Open one reader now so a problem shows at start, not on first read.
        let first = readers.open()?;
        readers.put(first);
        info!(data_dir = %data_dir.display(), "store opened");
        Ok(SqliteStore {
            tx: Some(tx),
            writer: Some(writer),
            readers,
            checkpointer: Some(checkpointer),
            check,
            corrupt,
            read_permits: Semaphore::new(READERS),
            data_dir: data_dir.to_path_buf(),
            health,
            _lock: lock,
        })
    }

    /// The steps of [`Self::open`] before SQLite reads the file: the data
    /// dir, its lock, this start's marks (`integrity.rs`), and `errand.db`
    /// created empty when missing. Dropping what it returns leaves the data
    /// dir as a start that died there would (tests make one so).
    pub(super) fn begin_open(data_dir: &Path) -> Result<Opening, StoreError> {
        files::prepare_data_dir(data_dir)?;
        // Whether a server ran here before (see `integrity::start_check`).
        let lock_existed = data_dir.join(LOCK_FILE).exists();
        files::own_file(&data_dir.join(LOCK_FILE))?;
        let lock = lock_data_dir(data_dir)?;
        let start = integrity::start_check(data_dir, lock_existed)?;
        let path = data_dir.join(DB_FILE);
        files::own_file(&path)?;
        files::own_sidecars(&path)?;
        Ok(Opening { lock, start, path })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.tx.as_ref().map(|tx| tx.stats()).unwrap_or_default()
    }

    /// Where writes go; fails once a check found the file corrupt.
    fn queue(&self) -> Result<&batch::Sender<Op>, StoreError> {
        if let Some(e) = self.corrupt.get() {
            return Err(e.clone());
        }
        self.tx.as_ref().ok_or_else(writer_gone)
    }

    /// Waits for the check of a file that was not closed cleanly (see
    /// `integrity.rs`) and says how it ended; [`CheckState::Sound`] at once
    /// when this start needed none or checked before serving.
    pub async fn checked(&self) -> CheckState {
        match &self.check {
            Some(check) => check.finished().await,
            None => CheckState::Sound,
        }
    }

    /// Sends a change to the writer and waits until it is committed.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        self.queue()?.write(op).await
    }

    /// Runs a query on a read connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        // At most READERS reads at once, so at most READERS connections.
        let _permit = self
            .read_permits
            .acquire()
            .await
            .map_err(|_| writer_gone())?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = query(&conn).map_err(|e| store_error_in(&conn, e));
            readers.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a store read failed: {e}")))?
    }

    /// Runs `f` on the writer's connection between two batches (tests only).
    #[cfg(test)]
    pub(crate) fn with_writer(&self, f: impl FnOnce(&Connection) + Send + 'static) {
        (self.queue().and_then(|q| q.try_send(Op::Exec(Box::new(f)))))
            .expect("writer running, with room");
    }
}

/// What [`SqliteStore::begin_open`] leaves for the rest of the opening.
pub(super) struct Opening {
    /// The data dir's lock, held from now on.
    lock: File,
    start: Start,
    /// `errand.db`.
    path: PathBuf,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // A check still reading is cut short: the next start checks again.
        let sound = self
            .check
            .take()
            .is_none_or(|mut check| matches!(check.stop(), CheckState::Sound));
        // Closing the channel lets the writer drain what is queued and stop.
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!("the store's writer thread panicked");
                return;
            }
            // Closing the last connection folds the WAL into the file; then
            // the next start may skip the full check, if this one's found
            // the file sound.
            self.readers.lock().clear();
            drop(self.checkpointer.take());
            if sound {
                integrity::leave_clean_mark(&self.data_dir);
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// An unfinished task whose row does not read is left out, logged at
    /// error level (`decode.rs`): the others are taken up.
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(SELECT_UNFINISHED)?;
            let rows = stmt.query_map([], decode::task_or_unreadable)?;
            decode::readable("recovering unfinished tasks (this one is not run)", rows)
        })
        .await
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let task = Box::new(task.clone());
        self.write(|reply| Op::Insert(task, reply)).await
    }

    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) -> Durable {
        match (self.queue()).and_then(|q| q.record_dispatch(task_id, attempt, at)) {
            Ok(durable) => durable,
            Err(e) => {
                warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
                Durable::done(Err(e))
            }
        }
    }

    fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Durable {
        match (self.queue()).and_then(|q| q.record_requeue(task_id, attempt)) {
            Ok(durable) => durable,
            Err(e) => {
                warn!(task_id = %task_id, error = %e, "recording a requeue failed");
                Durable::done(Err(e))
            }
        }
    }

    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(finish.clone());
        self.write(|reply| Op::Finish(finish, None, reply)).await
    }

    async fn finish_held_task(
        &self,
        task: &TaskRecord,
        finish: &Finish,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        let head = (task.id == finish.task_id).then(|| Box::new(TaskHead::of(task)));
        let finish = Box::new(finish.clone());
        self.write(|reply| Op::Finish(finish, head, reply)).await
    }

    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(SELECT_TASK)?
                .query_row([&task_id.as_bytes()[..]], task_from_row)
                .optional()
        })
        .await
    }

    async fn last_good(
        &self,
        session: &str,
        tool: &str,
        args_hash: &crate::model::ArgsHash,
        not_before: SystemTime,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let (session, tool, hash) = (session.to_string(), tool.to_string(), args_hash.hex());
        let not_before = super::sql::codec::time_to_i64(not_before);
        self.read(move |conn| {
            conn.prepare_cached(rows::SELECT_LAST_GOOD)?
                .query_row(
                    rusqlite::params![session, tool, hash, not_before],
                    task_from_row,
                )
                .optional()
        })
        .await
    }

    async fn task_by_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let (session, key) = (session.to_string(), key.to_string());
        self.read(move |conn| {
            conn.prepare_cached(rows::SELECT_BY_KEY)?
                .query_row(rusqlite::params![session, key], task_from_row)
                .optional()
        })
        .await
    }

    /// A task whose row does not read is left out, logged at error level
    /// (`decode.rs`), and the page goes on with the next task in its place:
    /// a page is short only at the listing's end. (Counts still count it.)
    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let mut listed = Vec::new();
        let mut query = query.clone();
        let limit = query.limit;
        loop {
            let (sql, params) = super::sql::listing::select(&query, "tasks", |n| format!("?{n}"));
            let (page, last, left_out) = self
                .read(move |conn| {
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map(listing_values(params), decode::listed)?;
                    let (mut page, mut last, mut left_out) = (Vec::new(), None, 0);
                    for row in rows {
                        let (task, place) = row?;
                        last = place;
                        match task {
                            Ok(task) => page.push(task),
                            Err(unreadable) => {
                                decode::left_out("listing tasks", &unreadable);
                                left_out += 1;
                            }
                        }
                    }
                    Ok((page, last, left_out))
                })
                .await?;
            listed.extend(page);
            match last {
                // Rows were left out, and the last row read has a place to
                // go on from (an unreadable id or time has none).
                Some(last) if left_out > 0 && listed.len() < limit => {
                    query.after = Some(last);
                    query.limit = limit - listed.len();
                }
                _ => return Ok(listed),
            }
        }
    }

    async fn count_tasks(&self, query: &TaskQuery) -> Result<u64, StoreError> {
        let (sql, params) = super::sql::listing::count(query, "tasks", |n| format!("?{n}"));
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(listing_values(params), |row| row.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn completions_within(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        let session = session.to_string();
        let max_bytes = max_bytes.max(1);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(SELECT_COMPLETIONS)?;
            let rows = stmt.query_map(
                params![session, to_i64(after_seq), to_i64(limit as u64)],
                |row| Ok(decode::decode_task(row).and_then(|t| decode::completion(&t))),
            )?;
            // Never skipped (see `decode.rs`): those before an unreadable
            // one, or the error naming it when it comes first.
            let mut completions = Vec::new();
            // Rows past the byte bound are not read (`within_read_bytes`'s rule).
            let mut held = 0usize;
            for row in rows {
                if held >= max_bytes {
                    break;
                }
                match row? {
                    Ok(completion) => {
                        held = held.saturating_add(completion.bytes());
                        completions.push(completion);
                    }
                    Err(unreadable) if completions.is_empty() => {
                        error!(
                            tenant = %crate::logs::field(crate::tenant::of(&session)),
                            session = %crate::logs::field(crate::tenant::strip(&session)),
                            task_id = unreadable.task_id.map(tracing::field::display),
                            row = %unreadable.row,
                            problem = %unreadable.what,
                            "a stored completion cannot be read: its session's completions stop \
                             before it until the row is removed or the file restored"
                        );
                        return Err(unreadable.into_sqlite());
                    }
                    Err(_) => break,
                }
            }
            Ok(completions)
        })
        .await
    }

    async fn ack_completions(
        &self,
        session: &str,
        up_to_seq: u64,
        default_budget: u64,
    ) -> Result<Acked, StoreError> {
        let session = session.to_string();
        self.write(|reply| Op::Ack {
            session,
            up_to_seq,
            default_budget,
            reply,
        })
        .await
    }

    async fn session_seqs(&self, session: &str) -> Result<SessionSeqs, StoreError> {
        let session = session.to_string();
        self.read(move |conn| {
            let row: Option<(i64, i64, i64)> = conn
                .prepare_cached(
                    "SELECT s.last_seq, s.acked_seq,
                         (SELECT COUNT(*) FROM tasks t
                          WHERE t.session = s.session AND t.seq > 0 AND t.seq > s.acked_seq)
                     FROM sessions s WHERE s.session = ?1",
                )?
                .query_row([session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let (last, acked, count) = row.unwrap_or_default();
            Ok(SessionSeqs {
                last_seq: last.max(0) as u64,
                acked_seq: acked.max(0) as u64,
                unacknowledged: count.max(0) as u64,
            })
        })
        .await
    }

    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.write(|reply| Op::Purge(Purge::new(cutoff), reply))
            .await
    }

    async fn tools(&self) -> Result<Vec<StoredTool>, StoreError> {
        // A definition whose row does not read is left out, logged at
        // error level (`decode.rs`): the tool is known again once a worker
        // registers it.
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(decode::SELECT_TOOLS)?;
            let rows = stmt.query_map([], decode::tool_or_unreadable)?;
            decode::readable("loading the tool registry", rows)
        })
        .await
    }

    async fn put_tools(&self, tools: &[StoredTool]) -> Result<(), StoreError> {
        let tools = tools.to_vec();
        self.write(|reply| Op::PutTools(tools, reply)).await
    }

    async fn forget_tools(&self, names: &[String]) -> Result<u64, StoreError> {
        let names = names.to_vec();
        self.write(|reply| Op::ForgetTools(names, reply)).await
    }

    fn write_health(&self) -> Option<Arc<WriteHealth>> {
        Some(self.health.clone())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(Op::Probe).await
    }
}

// ---------------------------------------------------------------- readers

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path).map_err(|e| open_error(&self.path, e))?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(|e| open_error(&self.path, e))?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.lock().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < READERS {
            idle.push(conn);
        }
    }
}

/// A listing statement's parameters, bound as SQLite values.
fn listing_values(
    params: Vec<super::sql::listing::Param>,
) -> rusqlite::ParamsFromIter<Vec<rusqlite::types::Value>> {
    use super::sql::listing::Param;
    let values: Vec<rusqlite::types::Value> = params
        .into_iter()
        .map(|p| match p {
            Param::Text(s) => s.into(),
            Param::Int(n) => n.into(),
            Param::Id(id) => id.as_bytes().to_vec().into(),
        })
        .collect();
    rusqlite::params_from_iter(values)
}
