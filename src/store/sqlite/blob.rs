//! SQLite's incremental blob I/O for `REG_CONTENT_DATA`, which sqlx does not wrap.
//!
//! Binding a value makes SQLite copy it (sqlx binds with `SQLITE_TRANSIENT`) and building the row
//! copies it again, so a 64 MiB write through a bound parameter costs three times its size in
//! memory. Here content moves in [`CHUNK`]-sized pieces between a [`Content`] and the row's
//! pages: the row is inserted with `zeroblob(N)` and then filled, and a large value is read the
//! same way, so memory stays at one chunk plus SQLite's page cache.

use std::ffi::{CStr, c_int, c_void};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

use crate::content::{CHUNK, Content, SpoolPolicy};
use crate::err;
use crate::error::Result;

/// An open handle on one `REG_CONTENT_DATA` value; closed on drop.
struct Blob {
    db: NonNull<ffi::sqlite3>,
    blob: *mut ffi::sqlite3_blob,
}

fn sqlite_error(db: NonNull<ffi::sqlite3>, rc: c_int, what: &str, id: i64) -> crate::Error {
    // SAFETY: `db` is a live connection the caller holds locked; errmsg returns a string owned by
    // it, copied before the lock is released.
    let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }.to_string_lossy();
    let mut e = err!(EIO, "{what} of content {id}: SQLite error {rc}: {msg}");
    if matches!(rc & 0xff, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) {
        e = e.transient();
    }
    e
}

impl Blob {
    fn open(db: NonNull<ffi::sqlite3>, id: i64, write: bool) -> Result<Self> {
        let mut blob = std::ptr::null_mut();
        // SAFETY: the names are NUL-terminated literals; `blob` receives the handle, which Drop
        // closes. The connection is locked out of sqlx's worker for the lifetime of `self`.
        let rc = unsafe {
            ffi::sqlite3_blob_open(
                db.as_ptr(),
                c"main".as_ptr(),
                c"REG_CONTENT".as_ptr(),
                c"REG_CONTENT_DATA".as_ptr(),
                id,
                c_int::from(write),
                &mut blob,
            )
        };
        if rc != ffi::SQLITE_OK {
            // A handle may be returned even on failure; it must still be closed.
            // SAFETY: closing a null or failed handle is allowed.
            let e = sqlite_error(db, rc, "opening", id);
            unsafe { ffi::sqlite3_blob_close(blob) };
            return Err(e);
        }
        Ok(Self { db, blob })
    }

    fn len(&self) -> u64 {
        // SAFETY: `self.blob` is open.
        unsafe { ffi::sqlite3_blob_bytes(self.blob) as u64 }
    }

    fn read(&mut self, offset: u64, buf: &mut [u8], id: i64) -> Result<()> {
        // SAFETY: `buf` is valid for `buf.len()` bytes; offsets are below the blob's size, which
        // SQLite checks too.
        let rc = unsafe {
            ffi::sqlite3_blob_read(
                self.blob,
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len() as c_int,
                offset as c_int,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(sqlite_error(self.db, rc, "reading", id));
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, buf: &[u8], id: i64) -> Result<()> {
        // SAFETY: as in `read`, for a source buffer.
        let rc = unsafe {
            ffi::sqlite3_blob_write(
                self.blob,
                buf.as_ptr().cast::<c_void>(),
                buf.len() as c_int,
                offset as c_int,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(sqlite_error(self.db, rc, "writing", id));
        }
        Ok(())
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: `self.blob` is open and closed once, here.
        unsafe { ffi::sqlite3_blob_close(self.blob) };
    }
}

/// Runs blocking work on a runtime thread: tokio moves its other tasks elsewhere meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Fills the `REG_CONTENT` row `id`, inserted as `zeroblob(data.len())`, from `data`.
pub(super) async fn fill(conn: &mut SqliteConnection, id: i64, data: &Content) -> Result<()> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    blocking(|| {
        let mut blob = Blob::open(db, id, true)?;
        let len = data.len();
        if blob.len() != len {
            return Err(err!(
                EIO,
                "content {id} holds {} bytes, expected {len}",
                blob.len()
            ));
        }
        match data.as_slice() {
            Some(bytes) => {
                for (i, piece) in bytes.chunks(CHUNK).enumerate() {
                    blob.write((i * CHUNK) as u64, piece, id)?;
                }
            }
            None => {
                let mut buf = vec![0; CHUNK.min(len as usize)];
                let mut offset = 0;
                while offset < len {
                    let n = CHUNK.min((len - offset) as usize);
                    data.read_exact_at(offset, &mut buf[..n])?;
                    blob.write(offset, &buf[..n], id)?;
                    offset += n as u64;
                }
            }
        }
        Ok(())
    })
}

/// Reads the `REG_CONTENT` row `id` into new content placed by `policy`.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    id: i64,
    policy: &SpoolPolicy,
) -> Result<Content> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    blocking(|| {
        let mut blob = Blob::open(db, id, false)?;
        let len = blob.len();
        let mut content = policy.content_for(len)?;
        let mut buf = vec![0; CHUNK.min(len as usize)];
        let mut offset = 0;
        while offset < len {
            let n = CHUNK.min((len - offset) as usize);
            blob.read(offset, &mut buf[..n], id)?;
            content.write_at(policy, offset, &buf[..n])?;
            offset += n as u64;
        }
        Ok(content)
    })
}
