//! A VFS over SQLite's default one that writes each commit's WAL frames with one `pwrite`.
//!
//! SQLite appends a commit to the WAL frame by frame, each frame as two writes: its 24-byte
//! header, then the page. A small create commits about 17 pages, so 34 `pwrite`s; on ext4
//! each is a buffered write of its own (folio lookup, block mapping, dirtying), together about
//! half of the commit's time. This VFS gathers writes that continue exactly where the previous
//! write to the WAL ended (the frames of one commit) in a buffer and writes the buffer as one
//! `pwrite` when the page of a commit frame (a frame whose header carries the database size)
//! arrives. The commit is therefore wholly in the file before SQLite publishes it in the
//! wal-index, exactly as without the buffer: readers in this or another process, the
//! checkpointer and recovery after a crash see the same bytes at the same points.
//!
//! Everything else goes straight through: a write anywhere else (the WAL header at a restart,
//! a page rewritten in place within a transaction, checksum rewrites) first writes out what
//! is buffered and then goes to the file itself, and every other call on the WAL file (read,
//! sync, size, truncate, file control, close) writes out the buffer first. The buffer also
//! goes out whenever it reaches [`LIMIT`], so a large transaction's spilled frames take no
//! more memory than that. A failed write out drops the buffer and returns SQLite's error to
//! the write (or call) that caused it, so the transaction fails as it would have.
//!
//! Only WAL files are wrapped; the database file, the shared-memory index and temporary files
//! are the default VFS's own objects. Other programs (the `sqlite3` shell) open the same files
//! with the default VFS: the bytes on disk are the same.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections pass to `sqlite3_open_v2`.
pub const NAME: &CStr = c"regfs-walbuf";

/// The most a WAL file buffers before writing out (a transaction larger than this spills).
const LIMIT: usize = 256 << 10;

/// The most the default VFS writes in one call: its `seekAndWrite` masks a length with
/// 0x1ffff, and reports a longer write as a short one (SQLITE_FULL).
const MAX_WRITE: usize = 0x1ffff & !0xfff;

/// Size of a WAL frame header; bytes 4..8 are the database size after a commit frame, else 0.
const FRAME_HEADER: usize = 24;

/// Registers the VFS (once per process); `Err` says why it could not be.
pub fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    // SAFETY: register_once runs once per process (the OnceLock), which is all it requires.
    DONE.get_or_init(|| unsafe { register_once() }).clone()
}

/// The default VFS this one wraps, set once by [`register`].
static BASE: OnceLock<Vfs> = OnceLock::new();

struct Vfs(*mut ffi::sqlite3_vfs);
// SAFETY: an sqlite3_vfs is immutable once registered, and SQLite's default VFS is threadsafe:
// the pointer may be handed to and used from any thread.
unsafe impl Send for Vfs {}
// SAFETY: as for Send: nothing writes through the pointer after registration.
unsafe impl Sync for Vfs {}

fn base() -> *mut ffi::sqlite3_vfs {
    BASE.get().expect("walbuf VFS used before register()").0
}

/// # Safety
/// Must run at most once per process ([`register`] sees to it): the VFS object it registers
/// is leaked and must not be registered twice.
unsafe fn register_once() -> Result<(), String> {
    // SAFETY: sqlite3_vfs_find with NULL returns the default VFS (or NULL, checked), a static
    // object SQLite never frees; copying it by value and registering the leaked copy is what
    // SQLite's VFS shim documentation describes.
    unsafe {
        // Also initializes SQLite if nothing has yet.
        let default = ffi::sqlite3_vfs_find(std::ptr::null());
        if default.is_null() {
            return Err("SQLite has no default VFS".into());
        }
        let _ = BASE.set(Vfs(default));
        let mut vfs: ffi::sqlite3_vfs = *default;
        // A WAL file is ours followed by the default VFS's; any other is the default's alone.
        vfs.szOsFile = REAL_OFFSET as c_int + (*default).szOsFile;
        vfs.zName = NAME.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.xOpen = Some(open);
        // Every other method is the default VFS's own, which reads only pAppData and
        // mxPathname from the object it is given: both are copied.
        let vfs: &'static mut ffi::sqlite3_vfs = Box::leak(Box::new(vfs));
        match ffi::sqlite3_vfs_register(vfs, 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("sqlite3_vfs_register failed with code {rc}")),
        }
    }
}

/// A WAL file: our methods, the buffer, and after them (at [`REAL_OFFSET`]) the default VFS's
/// file object.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    /// Bytes written but not yet in the file, starting at `buf_off`.
    buf: Vec<u8>,
    buf_off: i64,
    /// Where the last write (buffered or not) ended: a write starting here continues it.
    last_end: i64,
    /// The last buffered write was a commit frame's header: its page ends the commit.
    commit_pending: bool,
}

const REAL_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// The default VFS's file object inside ours.
///
/// # Safety
/// `f` must be a file object this VFS allocated for a WAL file: SQLite gives every file
/// `szOsFile` bytes, which is [`REAL_OFFSET`] plus the default VFS's size.
unsafe fn real(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: the offset stays within the object's szOsFile bytes (see above).
    unsafe { (f as *mut u8).add(REAL_OFFSET) as *mut ffi::sqlite3_file }
}

/// The default VFS's methods for the file inside `f`.
///
/// # Safety
/// As for [`real`], and the inner file must be open (its `pMethods` set by the default VFS's
/// xOpen, which SQLite guarantees for every method it calls after a successful open).
unsafe fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: see the function's contract; the default VFS's method tables are static.
    unsafe { &*(*real(f)).pMethods }
}

/// Our part of the file object.
///
/// # Safety
/// `f` must be a WAL file object this VFS's [`open`] initialized, and not be used through
/// another reference meanwhile: SQLite calls a file's methods from one thread at a time (the
/// connection's mutex), so each call holds the only reference.
unsafe fn wal(f: *mut ffi::sqlite3_file) -> &'static mut WalFile {
    // SAFETY: see the function's contract; WalFile is repr(C) with the sqlite3_file first.
    unsafe { &mut *(f as *mut WalFile) }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls xOpen with `file` pointing to szOsFile uninitialized bytes (ours
    // plus the default VFS's, see `real`), which this initializes: the default VFS opens the
    // inner object, and only on success is our part written (with ptr::write: nothing to drop).
    unsafe {
        let base = base();
        let base_open = (*base).xOpen.expect("default VFS has xOpen");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(base, name, file, flags, out_flags);
        }
        let r = real(file);
        (*r).pMethods = std::ptr::null();
        let rc = base_open(base, name, r, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*r).pMethods.is_null()
                && let Some(close) = (*(*r).pMethods).xClose
            {
                close(r);
            }
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        let mut size: ffi::sqlite3_int64 = 0;
        if let Some(file_size) = (*(*r).pMethods).xFileSize {
            file_size(r, &mut size);
        }
        std::ptr::write(
            file as *mut WalFile,
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                buf: Vec::new(),
                buf_off: 0,
                last_end: size,
                commit_pending: false,
            },
        );
        ffi::SQLITE_OK
    }
}

/// Writes out the buffer; on failure drops it and returns the error.
///
/// # Safety
/// As for [`wal`] and [`methods`]: an open WAL file of this VFS, in one of its methods.
unsafe fn flush(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the caller's contract; the buffer's pieces are valid for their lengths.
    unsafe {
        let w = wal(f);
        let write = methods(f).xWrite.expect("default VFS file has xWrite");
        let mut rc = ffi::SQLITE_OK;
        let mut off = w.buf_off;
        for piece in w.buf.chunks(MAX_WRITE) {
            rc = write(
                real(f),
                piece.as_ptr() as *const c_void,
                piece.len() as c_int,
                off,
            );
            if rc != ffi::SQLITE_OK {
                break;
            }
            off += piece.len() as i64;
        }
        w.buf.clear();
        w.commit_pending = false;
        rc
    }
}

unsafe extern "C" fn wal_write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls xWrite on a file this VFS opened, with `data` valid for `amt`
    // bytes until it returns; the bytes are copied before returning.
    unsafe {
        let w = wal(f);
        let bytes = std::slice::from_raw_parts(data as *const u8, amt.max(0) as usize);
        let rc = if off == w.last_end {
            // The next bytes of a run of frames.
            if w.buf.is_empty() {
                w.buf_off = off;
            }
            w.buf.extend_from_slice(bytes);
            ffi::SQLITE_OK
        } else {
            // Anything else: what is buffered first, then this, in order.
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            methods(f).xWrite.expect("default VFS file has xWrite")(real(f), data, amt, off)
        };
        w.last_end = off + amt as i64;
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if bytes.len() == FRAME_HEADER {
            // The page of a commit frame always comes next, and ends the commit's frames.
            w.commit_pending = bytes[4..8] != [0, 0, 0, 0];
            return ffi::SQLITE_OK;
        }
        if w.commit_pending || w.buf.len() >= LIMIT {
            return flush(f);
        }
        ffi::SQLITE_OK
    }
}

/// Forwards a call to the default VFS's file after writing out the buffer.
macro_rules! flushed {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls the method on a file this VFS opened; the arguments are
            // passed on unchanged to the default VFS's method for the inner file.
            unsafe {
                let rc = flush(f);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(f).$method {
                    Some(m) => m(real(f), $($arg),*),
                    None => ffi::SQLITE_NOTFOUND,
                }
            }
        }
    };
}

/// Forwards a call to the default VFS's file as it is.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite calls the method on a file this VFS opened; the arguments are
            // passed on unchanged to the default VFS's method for the inner file.
            unsafe {
                match methods(f).$method {
                    Some(m) => m(real(f), $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

flushed!(wal_read, xRead, (buf: *mut c_void, amt: c_int, off: ffi::sqlite3_int64));
flushed!(wal_truncate, xTruncate, (size: ffi::sqlite3_int64));
flushed!(wal_sync, xSync, (flags: c_int));
flushed!(wal_file_size, xFileSize, (size: *mut ffi::sqlite3_int64));
flushed!(wal_file_control, xFileControl, (op: c_int, arg: *mut c_void));
forward!(wal_lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_OK);
forward!(wal_unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_OK);
forward!(wal_check_reserved, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_OK);
forward!(wal_sector_size, xSectorSize, () -> c_int, 4096);
forward!(wal_device, xDeviceCharacteristics, () -> c_int, 0);
forward!(wal_shm_map, xShmMap, (pg: c_int, sz: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
forward!(wal_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(wal_shm_barrier, xShmBarrier, () -> (), ());
forward!(wal_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
forward!(wal_fetch, xFetch, (off: ffi::sqlite3_int64, amt: c_int, out: *mut *mut c_void) -> c_int, {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
forward!(wal_unfetch, xUnfetch, (off: ffi::sqlite3_int64, p: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn wal_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls xClose once, last, on a file this VFS opened: the buffer is dropped
    // in place (our part was written with ptr::write and is never dropped otherwise) and the
    // methods cleared so that nothing calls it again.
    unsafe {
        let flushed = flush(f);
        let closed = match methods(f).xClose {
            Some(close) => close(real(f)),
            None => ffi::SQLITE_OK,
        };
        std::ptr::drop_in_place(&mut wal(f).buf);
        (*f).pMethods = std::ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device),
    xShmMap: Some(wal_shm_map),
    xShmLock: Some(wal_shm_lock),
    xShmBarrier: Some(wal_shm_barrier),
    xShmUnmap: Some(wal_shm_unmap),
    xFetch: Some(wal_fetch),
    xUnfetch: Some(wal_unfetch),
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    fn open(file: &Path) -> Connection {
        super::register().unwrap();
        let c =
            Connection::open_with_flags_and_vfs(file, OpenFlags::default(), super::NAME).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 0",
        )
        .unwrap();
        c
    }

    /// What a process that died now would leave: copies of the database and its WAL, opened
    /// with SQLite's default VFS (which recovers the WAL from its bytes alone).
    fn after_a_crash(file: &Path, into: &Path) -> Connection {
        let copy = into.join("copy.db");
        let _ = std::fs::remove_file(into.join("copy.db-wal"));
        let _ = std::fs::remove_file(into.join("copy.db-shm"));
        std::fs::copy(file, &copy).unwrap();
        let wal = file.with_extension("db-wal");
        if wal.exists() {
            std::fs::copy(&wal, into.join("copy.db-wal")).unwrap();
        }
        Connection::open(&copy).unwrap()
    }

    /// A database in a temp dir with a writer on this VFS, and a second temp dir for
    /// [`after_a_crash`]'s copies.
    fn fresh() -> (
        tempfile::TempDir,
        tempfile::TempDir,
        std::path::PathBuf,
        Connection,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let w = open(&file);
        (dir, crash, file, w)
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn intact(c: &Connection) {
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn every_commit_is_in_the_files_when_it_returns() {
        let (_dir, crash, file, w) = fresh();
        w.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t (v)",
        )
        .unwrap();
        // Another connection on the default VFS, as a reader in another process would be.
        let r = Connection::open(&file).unwrap();
        for i in 1..=300i64 {
            // Multi-page commits (the blob and its index entry overflow): several frames each.
            w.execute("INSERT INTO t (v) VALUES (randomblob(3000 + ?1))", [i])
                .unwrap();
            assert_eq!(count(&r), i);
            if i % 25 == 0 {
                let c = after_a_crash(&file, crash.path());
                assert_eq!(count(&c), i, "commit {i} is not wholly in the WAL file");
                intact(&c);
            }
            if i % 100 == 0 {
                // A checkpoint that empties the WAL: the next commit starts it again at 0.
                r.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            }
        }
        intact(&w);
    }

    #[test]
    fn spilled_frames_roll_back_and_large_commits_arrive_whole() {
        let (_dir, crash, file, w) = fresh();
        // A tiny page cache makes a transaction write its pages to the WAL before it commits.
        w.execute_batch(
            "PRAGMA cache_size = 10; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); \
             INSERT INTO t (v) VALUES (x'01')",
        )
        .unwrap();
        w.execute_batch(
            "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < 400) INSERT INTO t (v) SELECT randomblob(5000) FROM n; ROLLBACK",
        )
        .unwrap();
        assert_eq!(count(&w), 1);
        // Over the buffer's limit several times: written out in pieces, committed whole.
        w.execute_batch(
            "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < 700) INSERT INTO t (v) SELECT randomblob(5000) FROM n; COMMIT",
        )
        .unwrap();
        let r = Connection::open(&file).unwrap();
        assert_eq!(count(&r), 701);
        let c = after_a_crash(&file, crash.path());
        assert_eq!(count(&c), 701);
        intact(&c);
        intact(&w);
    }
}
