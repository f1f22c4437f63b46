//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1000 pages: that
//! commit copies the WAL into the database file and syncs it before it returns, so one write in
//! a few hundred (and every large one) pays for the others. Here the writer's WAL hook only
//! wakes a thread, once per [`WAKE_PAGES`] new pages, that checkpoints on a connection of its
//! own in parallel with the next operations. It then takes the writer's lock for the short
//! rest (the pages committed meanwhile): with every page copied, the next write transaction
//! starts the WAL over instead of growing it. Should the WAL still reach [`INLINE_PAGES`], the
//! commit checkpoints inline as SQLite would, so the WAL stays bounded.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Weak};

use rusqlite::{Connection, ffi};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::Writer;
use crate::err;
use crate::error::Result;

/// New WAL pages after which the background checkpoint is woken: SQLite's own default.
const WAKE_PAGES: c_int = 1000;
/// WAL size (pages) at which the committing connection checkpoints itself.
const INLINE_PAGES: c_int = 65_536;

/// What the hook keeps between commits. Only the writer's commits call it, one at a time.
pub(super) struct HookState {
    wake: SyncSender<()>,
    /// WAL pages at the previous commit: fewer now means SQLite started the WAL over.
    last: AtomicI32,
    /// WAL pages at which to wake the thread next.
    next: AtomicI32,
}

/// The hook installed on a writer connection, owning its context: removed (and the context
/// freed) by [`Hook::remove`] when the writer is dropped.
pub(super) struct Hook(*const HookState);

// SAFETY: the pointer is an `Arc<HookState>` turned raw; HookState is Send and Sync, and it is
// only read through shared references.
unsafe impl Send for Hook {}
// SAFETY: as for Send: only shared references to the HookState are ever made from it.
unsafe impl Sync for Hook {}

impl Hook {
    /// Takes the hook off `conn` (its writer), then frees the context: SQLite calls the hook
    /// only from that connection's commits, so nothing uses the context afterwards.
    pub(super) fn remove(self, conn: &Connection) {
        // SAFETY: `conn` is the connection the hook was installed on; clearing it with a null
        // context is always allowed. The pointer came from `Arc::into_raw` in `install`.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), None, std::ptr::null_mut());
            drop(Arc::from_raw(self.0));
        }
    }
}

#[cfg(test)]
impl Hook {
    /// The context, weakly: gone once the hook is removed.
    pub(super) fn state(&self) -> std::sync::Weak<HookState> {
        // SAFETY: the pointer came from `Arc::into_raw` and the hook still owns that count;
        // the count added here is the one the temporary Arc gives back.
        unsafe {
            Arc::increment_strong_count(self.0);
            Arc::downgrade(&Arc::from_raw(self.0))
        }
    }
}

unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `ctx` is the HookState of a `Hook`, freed only after the hook is removed.
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
        // Full means a wake-up is pending already.
        let _ = state.wake.try_send(());
    }
    ffi::SQLITE_OK
}

/// The checkpoint thread of one database; it ends when this is dropped.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    wake: SyncSender<()>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
    }
}

fn checkpoint(conn: &Connection, name: &str, phase: &str) {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((busy, log, done)) => debug!(db = %name, phase, busy, log, done, "checkpoint"),
        Err(e) => warn!(db = %name, phase, "background checkpoint failed: {e}"),
    }
}

fn run(
    conn: Connection,
    writer: Weak<Mutex<Writer>>,
    name: String,
    wake: std::sync::mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
) {
    while wake.recv().is_ok() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        // The bulk, while writes go on...
        checkpoint(&conn, &name, "bulk");
        // ...and the pages they added, with writes held, so that the WAL can start over.
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let _hold = writer.blocking_lock();
        checkpoint(&conn, &name, "rest");
    }
}

/// Hooks the writer's commits (which replaces SQLite's automatic checkpoint on that
/// connection) and starts the thread that checkpoints on `conn`.
pub(super) async fn install(
    writer: &Arc<Mutex<Writer>>,
    conn: Connection,
    name: String,
) -> Result<Checkpointer> {
    let (wake, wakes) = sync_channel(1);
    let state = Arc::new(HookState {
        wake: wake.clone(),
        last: AtomicI32::new(0),
        next: AtomicI32::new(WAKE_PAGES),
    });
    // The context lives as long as the hook: the writer frees it when dropped (see `Hook`).
    let ctx = Arc::into_raw(state);
    {
        let mut w = writer.lock().await;
        // SAFETY: the connection is ours and idle (its lock is held); `wal_hook` matches the
        // signature SQLite expects and `ctx` stays valid until `Hook::remove`.
        unsafe { ffi::sqlite3_wal_hook(w.conn.handle(), Some(wal_hook), ctx as *mut c_void) };
        w.hook = Some(Hook(ctx));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (weak, thread_stop) = (Arc::downgrade(writer), stop.clone());
    std::thread::Builder::new()
        .name("regfs-checkpoint".into())
        .spawn(move || run(conn, weak, name, wakes, thread_stop))
        .map_err(|e| err!(EIO, "cannot start the checkpoint thread: {e}"))?;
    Ok(Checkpointer { stop, wake })
}
