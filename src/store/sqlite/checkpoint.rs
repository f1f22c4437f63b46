//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1000 pages: that
//! commit copies the WAL into the database file and syncs it before it returns, so one write in
//! a few hundred (and every large one) pays for the others. Here the writer's WAL hook only
//! wakes a task that checkpoints on a connection of its own, in parallel with the next
//! operations. Should the WAL still grow past [`INLINE_PAGES`] (a checkpoint that cannot keep
//! up), the commit checkpoints inline as SQLite would, so the WAL stays bounded.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::error::Result;

/// WAL size (pages) at which the background checkpoint is woken: SQLite's own default.
const WAKE_PAGES: c_int = 1000;
/// WAL size at which the committing connection checkpoints itself.
const INLINE_PAGES: c_int = 65_536;

unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    if pages >= INLINE_PAGES {
        // SAFETY: called by SQLite on `db`'s thread after a commit, where a checkpoint is
        // allowed; `name` is the database SQLite passed in.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    } else if pages >= WAKE_PAGES {
        // SAFETY: `ctx` is the Notify that `install` leaked for the connection's lifetime.
        unsafe { &*(ctx as *const Notify) }.notify_one();
    }
    ffi::SQLITE_OK
}

/// The background checkpointer of one database; it stops when this is dropped.
pub(super) struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hooks `writer`'s commits (which replaces SQLite's automatic checkpoint on that connection)
/// and starts the task that checkpoints on `conn`.
pub(super) async fn install(
    writer: &mut SqliteConnection,
    mut conn: SqliteConnection,
    name: String,
) -> Result<Checkpointer> {
    let wake = Arc::new(Notify::new());
    // The hook's context must outlive the connection, whose handle sqlx's worker thread closes
    // some time after the store is dropped: one small Notify per opened database is leaked.
    let ctx = Arc::into_raw(wake.clone()) as *mut c_void;
    {
        let mut handle = writer.lock_handle().await?;
        // SAFETY: the handle is locked out of sqlx's worker while the hook is set; `wal_hook`
        // matches the signature SQLite expects and `ctx` stays valid (see above).
        unsafe { ffi::sqlite3_wal_hook(handle.as_raw_handle().as_ptr(), Some(wal_hook), ctx) };
    }
    let task = tokio::spawn(async move {
        loop {
            wake.notified().await;
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await
            {
                Ok((busy, log, done)) => debug!(db = %name, busy, log, done, "checkpoint"),
                Err(e) => warn!(db = %name, "background checkpoint failed: {e}"),
            }
        }
    });
    Ok(Checkpointer(task))
}
