//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1000 pages: that
//! commit copies the WAL into the database file and syncs it before it returns, so one write in
//! a few hundred (and every large one) pays for the others. Here the writer's WAL hook only
//! wakes a task, once per [`WAKE_PAGES`] new pages, that checkpoints on a connection of its own
//! in parallel with the next operations. That task then takes the writer's lock for the short
//! rest (the pages committed meanwhile): with every page copied, the next write transaction
//! starts the WAL over instead of growing it. Should the WAL still reach [`INLINE_PAGES`], the
//! commit checkpoints inline as SQLite would, so the WAL stays bounded.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use tokio::sync::{Mutex, Notify};
use tracing::{debug, warn};

use super::Writer;
use crate::error::Result;

/// New WAL pages after which the background checkpoint is woken: SQLite's own default.
const WAKE_PAGES: c_int = 1000;
/// WAL size (pages) at which the committing connection checkpoints itself.
const INLINE_PAGES: c_int = 65_536;

/// What the hook keeps between commits. Only the writer's commits call it, one at a time.
struct HookState {
    wake: Notify,
    /// WAL pages at the previous commit: fewer now means SQLite started the WAL over.
    last: AtomicI32,
    /// WAL pages at which to wake the task next.
    next: AtomicI32,
}

unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `ctx` is the HookState that `install` leaked for the connection's lifetime.
    let state = unsafe { &*(ctx as *const HookState) };
    if pages < state.last.swap(pages, Ordering::Relaxed) {
        state.next.store(WAKE_PAGES, Ordering::Relaxed);
    }
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
    } else if pages >= state.next.load(Ordering::Relaxed) {
        state.next.store(pages + WAKE_PAGES, Ordering::Relaxed);
        state.wake.notify_one();
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

async fn checkpoint(conn: &mut SqliteConnection, name: &str, phase: &str) {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await
    {
        Ok((busy, log, done)) => debug!(db = %name, phase, busy, log, done, "checkpoint"),
        Err(e) => warn!(db = %name, phase, "background checkpoint failed: {e}"),
    }
}

/// Hooks the writer's commits (which replaces SQLite's automatic checkpoint on that
/// connection) and starts the task that checkpoints on `conn`.
pub(super) async fn install(
    writer: &Arc<Mutex<Writer>>,
    mut conn: SqliteConnection,
    name: String,
) -> Result<Checkpointer> {
    let state = Arc::new(HookState {
        wake: Notify::new(),
        last: AtomicI32::new(0),
        next: AtomicI32::new(WAKE_PAGES),
    });
    // The hook's context must outlive the connection, whose handle sqlx's worker thread closes
    // some time after the store is dropped: one small HookState per opened database is leaked.
    let ctx = Arc::into_raw(state.clone()) as *mut c_void;
    {
        let mut w = writer.lock().await;
        let mut handle = w.conn.lock_handle().await?;
        // SAFETY: the handle is locked out of sqlx's worker while the hook is set; `wal_hook`
        // matches the signature SQLite expects and `ctx` stays valid (see above).
        unsafe { ffi::sqlite3_wal_hook(handle.as_raw_handle().as_ptr(), Some(wal_hook), ctx) };
    }
    let writer = Arc::downgrade(writer);
    let task = tokio::spawn(async move {
        loop {
            state.wake.notified().await;
            // The bulk, while writes go on...
            checkpoint(&mut conn, &name, "bulk").await;
            // ...and the pages they added, with writes held, so that the WAL can start over.
            let Some(writer) = writer.upgrade() else {
                return;
            };
            let _hold = writer.lock().await;
            checkpoint(&mut conn, &name, "rest").await;
        }
    });
    Ok(Checkpointer(task))
}
