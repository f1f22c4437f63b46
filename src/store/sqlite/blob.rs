//! Large `REG_CONTENT_DATA` values through SQLite's incremental blob I/O.
//!
//! Binding a value makes SQLite copy it and building the row copies it again, so a 64 MiB write
//! through a bound parameter costs several times its size in memory. Here content moves in
//! [`CHUNK`]-sized pieces between a [`Content`] and the row's pages: the row is inserted with
//! `zeroblob(N)` and then filled, and a large value is read back the same way, so memory stays
//! at one chunk plus SQLite's page cache.

use rusqlite::{Connection, MAIN_DB};

use crate::content::{CHUNK, Content, SpoolPolicy, pieces};
use crate::err;
use crate::error::Result;

/// Runs long synchronous work on a runtime thread: tokio moves its other tasks elsewhere.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Fills the `REG_CONTENT` row `id`, inserted as `zeroblob(data.len())`, from `data`.
pub(super) fn fill(c: &Connection, id: i64, data: &Content) -> Result<()> {
    blocking(|| {
        let mut blob = c.blob_open(MAIN_DB, "REG_CONTENT", "REG_CONTENT_DATA", id, false)?;
        let len = data.len();
        if blob.len() as u64 != len {
            return Err(err!(
                EIO,
                "content {id} holds {} bytes, expected {len}",
                blob.len()
            ));
        }
        match data.as_slice() {
            Some(bytes) => {
                for (i, piece) in bytes.chunks(CHUNK).enumerate() {
                    blob.write_at(piece, i * CHUNK)?;
                }
            }
            None => {
                let mut buf = vec![0; CHUNK.min(len as usize)];
                for (offset, n) in pieces(len, CHUNK) {
                    data.read_exact_at(offset, &mut buf[..n])?;
                    blob.write_at(&buf[..n], offset as usize)?;
                }
            }
        }
        Ok(())
    })
}

/// Reads the `REG_CONTENT` row `id` into new content placed by `policy`.
pub(super) fn load(c: &Connection, id: i64, policy: &SpoolPolicy) -> Result<Content> {
    blocking(|| {
        let blob = c.blob_open(MAIN_DB, "REG_CONTENT", "REG_CONTENT_DATA", id, true)?;
        let len = blob.len() as u64;
        let mut content = policy.content_for(len)?;
        let mut buf = vec![0; CHUNK.min(len as usize)];
        for (offset, n) in pieces(len, CHUNK) {
            blob.read_at_exact(&mut buf[..n], offset as usize)?;
            content.write_at(policy, offset, &buf[..n])?;
        }
        Ok(content)
    })
}
