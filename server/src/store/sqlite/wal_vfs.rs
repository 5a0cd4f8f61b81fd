//! A VFS for the writer's connection that gathers each commit's WAL frames
//! into one `pwrite`.
//!
//! SQLite writes a WAL frame as two `pwrite`s (its 24-byte header, then the
//! page), and a commit as all its frames then one `fdatasync`. Each call
//! pays the kernel's fixed cost again, which on this VM is most of a
//! frame's: 15 frames of 4 KiB and a sync cost 114-123 µs of CPU as 30
//! `pwrite`s and 78-79 µs as one (`bench/experiments/pwrite.c`). This VFS
//! is the platform's default one except for WAL files, whose contiguous
//! appends it keeps in memory until something needs them in the file: a
//! sync, a read, a truncation, the file's size, a file control, a write
//! elsewhere, the buffer reaching [`BUFFER_BYTES`], or the close. Then
//! they go in one `pwrite`, in the order SQLite wrote them.
//!
//! Durability and what readers see do not change on a connection with
//! `synchronous = FULL` (errand's writer): SQLite syncs the WAL at every
//! commit before it publishes the commit to other connections, and the
//! sync writes the buffer out first. A write error surfaces at that sync
//! (or at the first read), which fails the commit as the write would have.
//! With `synchronous = NORMAL` readers could be told of frames not yet in
//! the file, so the writer sets FULL and [`VFS_NAME`] is for it alone.
use std::{
    ffi::{CStr, c_char, c_int, c_void},
    ptr,
    sync::{
        OnceLock,
        atomic::{AtomicPtr, Ordering},
    },
};

use rusqlite::ffi;

/// The name the writer opens its connection with.
pub(super) const VFS_NAME: &CStr = c"errand-wal-gather";

/// Most bytes kept back, and so written at once: the unix VFS writes at
/// most 2^17 - 1 bytes per call (`seekAndWriteFd` masks the length to 17
/// bits, and a longer write would fail as a full disk). 31 frames of
/// 4 KiB; a bigger commit (a purge) writes as it goes.
const BUFFER_BYTES: usize = 0x1ffff;

/// The platform's default VFS, which this one wraps.
static REAL: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS once per process; `Err` with SQLite's code when it
/// could not (the caller then opens with the default VFS).
pub(super) fn register() -> Result<&'static CStr, c_int> {
    static DONE: OnceLock<Result<(), c_int>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite and returns the
        // default VFS, which lives as long as the process. The copy is
        // leaked, as SQLite keeps the pointer for good.
        unsafe {
            let real = ffi::sqlite3_vfs_find(ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            REAL.store(real, Ordering::Release);
            // The default VFS's other methods, copied, only read fields
            // copied with them (mxPathname); its xOpen, which reads
            // pAppData, is only ever called with its own pointer.
            let mut vfs = *real;
            vfs.pNext = ptr::null_mut();
            vfs.zName = VFS_NAME.as_ptr();
            vfs.szOsFile = (REAL_AT + (*real).szOsFile as usize) as c_int;
            vfs.xOpen = Some(open);
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    });
    done.map(|()| VFS_NAME)
}

// What the WAL files opened on this thread were asked and did (tests):
// writes SQLite made, writes that reached the file, and writes below the
// end of what came before them (a frame rewritten in place).
#[cfg(test)]
thread_local! {
    static STATS: std::cell::Cell<(u64, u64, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
}

#[cfg(test)]
fn count(asked: u64, written: u64, behind: u64) {
    STATS.with(|s| {
        let (a, w, b) = s.get();
        s.set((a + asked, w + written, b + behind));
    });
}

/// A WAL file: SQLite's handle, the appends not yet written, and the
/// default VFS's handle at [`REAL_AT`] bytes from its start.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    pending: Vec<u8>,
    /// The file offset of `pending`'s first byte.
    start: i64,
}

/// Where the default VFS's handle starts within ours (8-byte aligned, as
/// SQLite aligns the whole).
const REAL_AT: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REAL.load(Ordering::Acquire)
}

/// The default VFS's handle inside `file`.
///
/// # Safety
/// `file` was opened by [`open`] as a WAL file.
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated szOsFile = REAL_AT + the default's size.
    unsafe { file.cast::<u8>().add(REAL_AT).cast() }
}

/// # Safety
/// `file` was opened by [`open`] as a WAL file.
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods are static in the default VFS.
    unsafe { &*(*real(file)).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs();
    // SAFETY: the default VFS was found before this one was registered;
    // `file` has room for its handle (szOsFile is larger).
    unsafe {
        let Some(real_open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Any other file is the default VFS's own, in place.
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        let inner = real(file);
        (*inner).pMethods = ptr::null();
        let rc = real_open(real_vfs, name, inner, flags, out_flags);
        if rc == ffi::SQLITE_OK && !(*inner).pMethods.is_null() && (*(*inner).pMethods).iVersion < 3
        {
            // Methods without the fields WAL_METHODS passes on: unwrapped.
            if let Some(close) = (*(*inner).pMethods).xClose {
                close(inner);
            }
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            // SQLite does not close a handle whose open failed.
            (*file).pMethods = ptr::null();
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        ptr::write(
            file.cast::<WalFile>(),
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                pending: Vec::new(),
                start: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

/// Writes the appends kept back, if any; SQLite's code.
///
/// # Safety
/// `file` was opened by [`open`] as a WAL file.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per this function's contract.
    unsafe {
        let wal = &mut *file.cast::<WalFile>();
        if wal.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(file).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        #[cfg(test)]
        count(0, 1, 0);
        // Under BUFFER_BYTES, so it fits a c_int.
        let rc = write(
            real(file),
            wal.pending.as_ptr().cast(),
            wal.pending.len() as c_int,
            wal.start,
        );
        wal.pending.clear();
        rc
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes a handle [`open`] made and `amount` readable
    // bytes at `data`.
    unsafe {
        let len = usize::try_from(amount).unwrap_or(0);
        let wal = &mut *file.cast::<WalFile>();
        let end = wal.start + wal.pending.len() as i64;
        #[cfg(test)]
        count(1, 0, u64::from(!wal.pending.is_empty() && offset < end));
        if !wal.pending.is_empty() && (offset != end || wal.pending.len() + len > BUFFER_BYTES) {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if len > BUFFER_BYTES {
            let Some(write) = methods(file).xWrite else {
                return ffi::SQLITE_IOERR_WRITE;
            };
            #[cfg(test)]
            count(0, 1, 0);
            return write(real(file), data, amount, offset);
        }
        let wal = &mut *file.cast::<WalFile>();
        if wal.pending.is_empty() {
            wal.start = offset;
        }
        wal.pending
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a handle [`open`] made, once.
    unsafe {
        let flushed = flush(file);
        let closed = methods(file)
            .xClose
            .map_or(ffi::SQLITE_OK, |c| c(real(file)));
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Methods that need the file as SQLite wrote it: the appends kept back are
/// written first.
macro_rules! flushed_first {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite passes a handle [`open`] made.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(file).$field {
                    Some(f) => f(real(file), $($arg),*),
                    None => ffi::SQLITE_NOTFOUND,
                }
            }
        }
    };
}

/// Methods that do not touch the file's bytes: straight to the default VFS.
macro_rules! passed_on {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), $none:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite passes a handle [`open`] made.
            unsafe {
                match methods(file).$field {
                    Some(f) => f(real(file), $($arg),*),
                    None => $none,
                }
            }
        }
    };
}

flushed_first!(read, xRead, (buf: *mut c_void, amount: c_int, offset: i64));
flushed_first!(truncate, xTruncate, (size: i64));
flushed_first!(sync, xSync, (flags: c_int));
flushed_first!(file_size, xFileSize, (size: *mut i64));
flushed_first!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
flushed_first!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));
passed_on!(lock, xLock, (level: c_int), ffi::SQLITE_OK);
passed_on!(unlock, xUnlock, (level: c_int), ffi::SQLITE_OK);
passed_on!(reserved, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_OK);
passed_on!(sector_size, xSectorSize, (), 4096);
passed_on!(device, xDeviceCharacteristics, (), 0);
passed_on!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
passed_on!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
passed_on!(shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);
passed_on!(unfetch, xUnfetch, (offset: i64, page: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite passes a handle [`open`] made.
    unsafe {
        if let Some(f) = methods(file).xShmBarrier {
            f(real(file));
        }
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(reserved),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::STATS;

    /// The writer's settings on a connection through the VFS, and a reader
    /// on the default VFS.
    fn pair(dir: &std::path::Path) -> (Connection, Connection) {
        let path = dir.join("t.db");
        let vfs = super::register().expect("register");
        let writer = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), vfs).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
            )
            .unwrap();
        (writer, Connection::open(&path).unwrap())
    }

    fn sum(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// The WAL writes SQLite asked for and those that reached the file, on
    /// this thread, while `f` runs; and the writes behind an earlier one.
    fn writes(f: impl FnOnce()) -> (u64, u64, u64) {
        STATS.with(|s| s.set((0, 0, 0)));
        f();
        STATS.with(|s| s.get())
    }

    #[test]
    fn a_commit_goes_to_the_file_in_one_write_and_a_reader_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = pair(dir.path());
        let (asked, written, _) = writes(|| {
            let tx = writer.transaction().unwrap();
            for k in 0..8 {
                tx.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [k])
                    .unwrap();
            }
            tx.commit().unwrap();
        });
        // Two writes a frame (header, page), at least one frame a row.
        assert!(asked >= 16, "SQLite asked for {asked} writes");
        assert_eq!(written, 1, "{asked} writes asked, {written} made");
        assert_eq!(sum(&reader), (8, 8 * 3000));
    }

    #[test]
    fn a_commit_larger_than_one_write_is_whole_for_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = pair(dir.path());
        // 1 MiB of pages: many times BUFFER_BYTES, which one write may not
        // exceed (a longer one failed as a full disk).
        let (asked, written, _) = writes(|| {
            let tx = writer.transaction().unwrap();
            for k in 0..256 {
                tx.execute("INSERT INTO t VALUES (?1, zeroblob(4000))", [k])
                    .unwrap();
            }
            tx.commit().unwrap();
        });
        assert!(
            written > 1 && written * 20 < asked,
            "{asked} asked, {written} made"
        );
        assert_eq!(sum(&reader), (256, 256 * 4000));
    }

    #[test]
    fn frames_rewritten_in_place_and_a_restarted_wal_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = pair(dir.path());
        // A cache of a few pages spills the transaction's pages to the WAL
        // before its commit; rewriting them then writes their frames again
        // in place, behind the appends kept back.
        writer.execute_batch("PRAGMA cache_size = 4").unwrap();
        let (_, _, behind) = writes(|| {
            let tx = writer.transaction().unwrap();
            for k in 0..64 {
                tx.execute("INSERT INTO t VALUES (?1, randomblob(3000))", [k])
                    .unwrap();
            }
            tx.execute("UPDATE t SET v = randomblob(3001)", []).unwrap();
            tx.commit().unwrap();
        });
        assert!(behind > 0, "no frame was rewritten in place");
        assert_eq!(sum(&reader), (64, 64 * 3001));
        // The checkpoint reads the WAL back into the file; then a restart of
        // the WAL writes its header at offset 0, behind the appends.
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        writer
            .execute("INSERT INTO t VALUES (1000, zeroblob(10))", [])
            .unwrap();
        assert_eq!(sum(&reader), (65, 64 * 3001 + 10));
        drop(reader);
        writer.close().unwrap();
        let again = Connection::open(dir.path().join("t.db")).unwrap();
        let check: String = again
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert_eq!(sum(&again), (65, 64 * 3001 + 10));
    }
}
